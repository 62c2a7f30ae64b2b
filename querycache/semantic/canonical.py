"""The canonical form of a read: L3's proof of equivalence (docs/architecture.md).

Similarity only proposes a candidate; this module decides. Two reads are served from one
another only if their canonical forms are equal, and every rewrite that makes two texts
canonically equal is one that cannot change the result:

- parentheses are dropped: the form is a tree, printed with explicit structure;
- ``AND`` / ``OR`` chains are flattened and their operands sorted (both are associative and
  commutative in SQL's three-valued logic);
- the operands of ``=`` and ``<>`` are sorted, and ``5 < x`` is oriented as ``x > 5``;
- ``IN`` lists of constants are sorted;
- inner and comma joins become one set of sources with their ``ON`` conditions conjoined to
  ``WHERE`` (only when every join of the ``SELECT`` is inner or cross, without ``USING``,
  ``NATURAL`` or ``LATERAL``); the sources are sorted unless the output has a ``*``;
- table aliases are replaced by the table they stand for (a table read twice is numbered), and,
  in a statement over a single table without subqueries, unqualified columns outside
  ``ORDER BY`` / ``GROUP BY`` / ``HAVING`` are qualified by it (unless the name is an output alias);
- ``COUNT(<non-null literal>)`` is ``COUNT(*)``;
- the top-level output columns may come in another order: each keeps its output name, and a hit
  serves the candidate's columns permuted into this statement's order.

Everything else is compared exactly: every argument of every node, identifiers with their case
and quoting, literal text and kind (``'5'`` is not ``5``), and bound parameter values with their
Python type. A statement this module cannot prove anything about raises ``Ineligible`` with the
reason; it is then simply not looked up in (nor added to) L3.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from querycache.hints import scan
from querycache.keys import UnsupportedParam, _canonical
from querycache.sqlparts import flatten, split_outside_quotes

_MIRRORED: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE,
}
_SYMMETRIC = (exp.EQ, exp.NEQ)
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
_PARAM_PREFIX = "qcp"
_MAX_SQL = 100_000
_MAX_NODES = 20_000


class Ineligible(Exception):
    """The statement cannot take part in L3; ``reason`` says why (counted in stats)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Output:
    """One output column: the canonical form of its expression and, when known, its name."""

    form: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Canonical:
    """What L3 keeps and compares for one (statement, parameters)."""

    form: str
    """The whole canonical form (output columns as a sorted multiset when ``reorderable``)."""
    guards: str
    """The statement's guards: sorted literal and parameter values with their types, and its
    shape (aggregates, GROUP BY / ORDER BY / LIMIT / OFFSET / DISTINCT, output column count)."""
    outputs: tuple[Output, ...]
    """Output columns in this statement's order."""
    reorderable: bool

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.form.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    @property
    def guard_digest(self) -> str:
        return hashlib.blake2b(self.guards.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def permutation(target: Canonical, source: Canonical) -> tuple[int, ...] | None:
    """For each output column of ``target``, the index of the same column in ``source``; None
    when they cannot be matched one to one (then the candidate is not served)."""
    if len(target.outputs) != len(source.outputs):
        return None
    if not target.reorderable or not source.reorderable:
        return tuple(range(len(target.outputs))) if target.outputs == source.outputs else None
    unused: dict[Output, list[int]] = {}
    for j, out in enumerate(source.outputs):
        unused.setdefault(out, []).append(j)
    order = []
    for out in target.outputs:
        slots = unused.get(out)
        if not slots:
            return None
        order.append(slots.pop(0))
    return tuple(order)


def canonicalize(sql: str, dialect: str, paramstyle: str, params: Any) -> Canonical:
    """The canonical form of ``sql`` with ``params`` bound; raises ``Ineligible``."""
    if len(sql) > _MAX_SQL:
        raise Ineligible("too_large")
    scanned = scan(sql, dialect, paramstyle)
    text, bound = _bind(scanned.parse_text, dialect, paramstyle, params)
    try:
        trees = [t for t in sqlglot.parse(text, read=dialect) if t is not None]
    except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Ineligible("parse") from exc
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise Ineligible("not_a_query")
    tree: exp.Query = trees[0]
    try:
        return _Canonicalizer(tree, dialect, bound).run()
    except RecursionError as exc:
        raise Ineligible("too_deep") from exc


def _bind(text: str, dialect: str, paramstyle: str, params: Any) -> tuple[str, dict[str, str]]:
    """Positional placeholders renamed ``qcp0, qcp1...`` in text order (the order the driver
    binds them; a tree's argument order is not the text's); values typed as the L2 key types them."""
    bound: dict[str, str] = {}
    if params is None:
        return text, bound
    try:
        if isinstance(params, dict):
            for name, value in params.items():
                bound[str(name)] = repr(_canonical(value))
            if any(name.startswith(_PARAM_PREFIX) for name in bound):
                raise Ineligible("params")
            return text, bound
        if not isinstance(params, (list, tuple)):
            raise Ineligible("params")
        values = [repr(_canonical(v)) for v in params]
    except UnsupportedParam as exc:
        raise Ineligible("params") from exc
    token = "%s" if dialect == "postgres" and paramstyle in ("format", "pyformat") else "?"
    pieces = split_outside_quotes(text, token)
    if len(pieces) - 1 != len(values):
        raise Ineligible("params")
    marker = "%({})s" if token == "%s" else ":{}"
    out = [pieces[0]]
    for i, piece in enumerate(pieces[1:]):
        name = f"{_PARAM_PREFIX}{i}"
        bound[name] = values[i]
        out.append(marker.format(name))
        out.append(piece)
    return "".join(out), bound


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


class _Canonicalizer:
    def __init__(self, tree: exp.Query, dialect: str, bound: dict[str, str]) -> None:
        self.tree = tree
        self.dialect = dialect
        self.bound = bound
        self.used_params: set[str] = set()
        self.values: list[str] = []
        self.table_refs: dict[int, str] = {}  # id(Table node) -> canonical reference
        self.names: dict[str, str] = {}  # alias or table name (lower) -> canonical reference
        self.single_table: str | None = None
        self.output_aliases: set[str] = set()
        self.qualify_off = 0

    # -- entry --------------------------------------------------------------------------
    def run(self) -> Canonical:
        tree = self.tree
        nodes = 0
        for _ in tree.walk():
            nodes += 1
            if nodes > _MAX_NODES:
                raise Ineligible("too_large")
        self._resolve_tables()
        outputs: tuple[Output, ...] = ()
        reorderable = False
        if isinstance(tree, exp.Select):
            self.output_aliases = {self._key(p.args["alias"]) for p in tree.expressions if isinstance(p, exp.Alias)}
            outputs, reorderable = self._outputs(tree)
            body = self._select(tree, outputs, reorderable)
        else:
            body = self._form(cast(exp.Expression, tree))
        if set(self.bound) != self.used_params:
            raise Ineligible("params")
        shape = self._shape(tree, len(outputs))
        guards = f"{shape}|{sorted(self.values)!r}"
        return Canonical(form=f"{self.dialect}|{body}", guards=guards, outputs=outputs, reorderable=reorderable)

    # -- tables and aliases -------------------------------------------------------------
    def _key(self, identifier: Any) -> str:
        """How the database compares a name: PostgreSQL folds unquoted names to lower case;
        elsewhere compared exactly (MySQL's aliases are case-sensitive)."""
        if isinstance(identifier, exp.Identifier):
            if self.dialect == "postgres" and not identifier.quoted:
                return identifier.name.lower()
            return identifier.name
        return str(identifier)

    def _resolve_tables(self) -> None:
        tree = self.tree
        ctes = {self._key(c.args["alias"].this) for c in tree.find_all(exp.CTE) if c.args.get("alias")}
        tables = [t for t in tree.find_all(exp.Table) if t.name]
        real = tables  # CTE references too: a CTE's name is its own reference
        counts: dict[str, int] = {}
        for table in real:
            alias_node = table.args.get("alias")
            if alias_node is not None and alias_node.args.get("columns"):
                raise Ineligible("table_alias_columns")
            qualified = ".".join(self._key(p) for p in table.parts)
            count = counts.get(qualified, 0)
            counts[qualified] = count + 1
            self.table_refs[id(table)] = qualified if count == 0 else f"{qualified}#{count}"
        for table in real:
            alias_node = table.args.get("alias")
            if alias_node is not None and alias_node.this is not None:
                key = self._key(alias_node.this)
            elif counts[".".join(self._key(p) for p in table.parts)] == 1:
                key = self._key(table.this)  # referred to by its own name
            else:
                raise Ineligible("alias_reuse")  # the same table twice, one without an alias
            cte_reference = not table.args.get("db") and key == self._key(table.this) and key in ctes
            if key in self.names or (key in ctes and not cte_reference):
                raise Ineligible("alias_reuse")
            self.names[key] = self.table_refs[id(table)]
        if (len(tables) == 1 and not ctes
                and not any(tree.find_all(exp.Subquery, exp.Union, exp.Intersect, exp.Except, exp.Lateral))
                and len(list(tree.find_all(exp.Select))) == 1):
            self.single_table = self.table_refs[id(tables[0])]

    # -- output columns -----------------------------------------------------------------
    def _outputs(self, select: exp.Select) -> tuple[tuple[Output, ...], bool]:
        outputs = []
        reorderable = True
        for projection in select.expressions:
            if _is_star(projection):
                reorderable = False
            outputs.append(Output(self._form(projection), self._output_name(projection)))
        distinct = select.args.get("distinct")
        if distinct is not None and distinct.args.get("on") is not None:
            reorderable = False
        for clause in ("order", "group"):
            node = select.args.get(clause)
            if node is not None and any(
                isinstance(_unparen(e.this if isinstance(e, exp.Ordered) else e), exp.Literal)
                for e in node.expressions
            ):
                reorderable = False  # ORDER BY 1 / GROUP BY 1 name a column by its position
        return tuple(outputs), reorderable

    def _output_name(self, projection: exp.Expression) -> str | None:
        """The column name a client sees, when it follows from the tree; else the output is only
        eligible where the database names it from the expression's structure (PostgreSQL)."""
        if isinstance(projection, exp.Alias):
            return projection.alias
        if isinstance(projection, exp.Column):
            return projection.name
        if isinstance(projection, exp.Star):
            return "*"
        if self.dialect == "postgres":
            return None  # PostgreSQL names it from the parse tree: equal trees, equal names
        # MySQL and SQLite name such a column by its text as written, which the tree has lost.
        raise Ineligible("unnamed_output")

    # -- shape guard --------------------------------------------------------------------
    def _shape(self, tree: exp.Query, width: int) -> str:
        parts = [type(tree).__name__, f"w={width}"]
        if isinstance(tree, exp.Select):
            parts.append(f"distinct={tree.args.get('distinct') is not None}")
            group = tree.args.get("group")
            parts.append(f"group={len(group.expressions) if group is not None else -1}")
            order = tree.args.get("order")
            parts.append(f"order={len(order.expressions) if order is not None else -1}")
            for clause in ("limit", "offset"):
                node = tree.args.get(clause)
                parts.append(f"{clause}={node.sql(dialect=self.dialect) if node is not None else '-'}")
            parts.append(f"having={tree.args.get('having') is not None}")
        aggregates = sorted(type(a).__name__ for a in tree.find_all(*_AGGREGATES))
        parts.append(f"agg={','.join(aggregates)}")
        return ";".join(parts)

    # -- forms --------------------------------------------------------------------------
    def _select(self, select: exp.Select, outputs: tuple[Output, ...], reorderable: bool) -> str:
        args = dict(select.args)
        args.pop("expressions", None)
        from_ = args.pop("from_", None)
        joins = args.pop("joins", None) or []
        where = args.pop("where", None)
        conditions: list[exp.Expression] = [where.this] if where is not None else []
        if from_ is not None and self._inner_only(from_, joins):
            conditions += [j.args["on"] for j in joins if j.args.get("on") is not None]
            sources = [self._form(from_.this)] + [self._form(j.this) for j in joins]
            if not any(_is_star(p) for p in select.expressions):
                sources.sort()  # the order of inner-joined sources only orders the columns of a *
            source_form = "(Sources " + " ".join(sources) + ")"
        else:
            source_form = (self._form(from_) if from_ is not None else "") + "".join(self._form(j) for j in joins)
        operands = sorted(self._form(o) for c in conditions for o in flatten(c, exp.And))
        where_form = operands[0] if len(operands) == 1 else f"(And {' '.join(operands)})" if operands else ""
        columns = [f"{o.form}@{o.name}" for o in outputs]
        if reorderable:
            columns.sort()
        # ORDER BY names an output column first: PostgreSQL names an unaliased expression's
        # column after it ("count"), so with such a column, ORDER BY names are left as written.
        rest = self._args(args, skip_qualify=("order",) if any(o.name is None for o in outputs) else ())
        return f"(Select [{' '.join(columns)}] {source_form} where={where_form} {rest})"

    def _inner_only(self, from_: exp.From, joins: list[exp.Join]) -> bool:
        """Whether the joins may become one set of sources with their ON conditions in WHERE:
        inner or cross joins of tables only, each ON naming only tables joined so far (moved to
        WHERE, a condition that could not see its table would stop being an error)."""
        if not isinstance(from_.this, exp.Table) or id(from_.this) not in self.table_refs:
            return False
        visible = {self.table_refs[id(from_.this)]}
        for join in joins:
            if any(v for k, v in join.args.items() if k not in ("this", "on", "kind")):
                return False
            if (join.args.get("kind") or "").upper() not in ("", "INNER", "CROSS"):
                return False
            if not isinstance(join.this, exp.Table) or id(join.this) not in self.table_refs:
                return False
            visible.add(self.table_refs[id(join.this)])
            on = join.args.get("on")
            if on is None:
                continue
            if any(on.find_all(exp.Query, exp.Subquery)):
                return False
            for column in on.find_all(exp.Column):
                if not column.table or column.args.get("db") or column.args.get("catalog"):
                    return False
                if self.names.get(self._key(column.args["table"])) not in visible:
                    return False
        return True

    def _args(self, args: dict[str, Any], skip_qualify: tuple[str, ...] = ()) -> str:
        parts = []
        for key in sorted(args):
            value = args[key]
            if value is None or value is False or (isinstance(value, list) and not value):
                continue
            if key in skip_qualify:
                self.qualify_off += 1
                try:
                    parts.append(f"{key}={self._value(value)}")
                finally:
                    self.qualify_off -= 1
            else:
                parts.append(f"{key}={self._value(value)}")
        return " ".join(parts)

    def _value(self, value: Any) -> str:
        if isinstance(value, exp.Expression):
            return self._form(value)
        if isinstance(value, list):
            return "[" + " ".join(self._value(v) for v in value) + "]"
        return repr(value)

    def _form(self, node: exp.Expression) -> str:
        node = _unparen(node)
        if isinstance(node, (exp.And, exp.Or)):
            operands = sorted(self._form(o) for o in flatten(node, type(node)))
            return f"({type(node).__name__} {' '.join(operands)})"
        if isinstance(node, _SYMMETRIC):
            left, right = sorted((self._form(node.this), self._form(node.expression)))
            return f"({type(node).__name__} {left} {right})"
        mirrored = _MIRRORED.get(type(node))
        present = {k for k, v in node.args.items() if v is not None and v is not False and v != []}
        if mirrored is not None and present == {"this", "expression"}:
            # a < b is b > a: of the two ways to write it, the one whose text sorts first.
            left, right = self._form(node.this), self._form(node.expression)
            return min(f"({type(node).__name__} {left} {right})", f"({mirrored.__name__} {right} {left})")
        if isinstance(node, exp.In) and node.expressions and present == {"this", "expressions"}:
            # x IN (a, b) is x = a OR x = b: its items commute.
            return f"(In {self._form(node.this)} [{' '.join(sorted(self._form(i) for i in node.expressions))}])"
        if isinstance(node, exp.Count) and isinstance(_unparen(node.this), (exp.Literal, exp.Star)):
            # COUNT(1) counts rows as COUNT(*) does (a literal is never NULL; exp.Null is no Literal).
            rest = {k: v for k, v in node.args.items() if k != "this"}
            return f"(Count * {self._args(rest)})"
        if isinstance(node, exp.Literal):
            value = f"{'s' if node.is_string else 'n'}:{node.this}"
            self.values.append(value)
            return f"(Lit {value!r})"
        if isinstance(node, exp.Placeholder):
            name = node.name
            if name not in self.bound:
                raise Ineligible("params")
            self.used_params.add(name)
            value = f"p:{self.bound[name]}"
            self.values.append(value)
            return f"(Param {value!r})"
        if isinstance(node, exp.Identifier):
            # Unquoted names cannot hold spaces, quotes or parentheses: bare is unambiguous.
            return f"Q{node.name!r}" if node.quoted else node.name
        if isinstance(node, exp.Table) and id(node) in self.table_refs:
            args = {k: v for k, v in node.args.items() if k not in ("this", "db", "catalog", "alias")}
            return f"(Table {self.table_refs[id(node)]!r} {self._args(args)})"
        if isinstance(node, exp.Column):
            return self._column(node)
        if isinstance(node, exp.Select):
            outputs = tuple(Output(self._form(p), None) for p in node.expressions)
            return self._select(node, outputs, False)
        return f"({type(node).__name__} {self._args(node.args)})"

    def _column(self, column: exp.Column) -> str:
        table = column.args.get("table")
        if isinstance(column.this, exp.Star):
            pass
        elif table is not None and not column.args.get("catalog"):
            ref = self.names.get(self._key(table))
            db = column.args.get("db")
            if ref is not None and (db is None or ref == f"{self._key(db)}.{self._key(table)}"):
                return f"(Col {ref!r} {self._form(column.this)})"
        elif (table is None and self.single_table is not None and not self.qualify_off
              and self._key(column.this) not in self.output_aliases):
            return f"(Col {self.single_table!r} {self._form(column.this)})"
        return f"(Column {self._args(column.args)})"


def _is_star(projection: exp.Expression) -> bool:
    return isinstance(projection, exp.Star) or (
        isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star))
