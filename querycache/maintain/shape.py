"""Which reads a write can maintain, and the SQL that maintains them (docs/maintenance.md).

A maintainable read is one ``SELECT`` over base tables (and non-recursive CTEs that only filter
and project base tables) joined by inner joins, grouped or globally aggregated, whose select list
holds only group keys, ``COUNT(*)``, ``COUNT(x)``, ``SUM(x)``, totals of those over every group
(``SUM(SUM(x)) OVER ()``) and uncorrelated scalar subqueries that are themselves one ``COUNT`` or
``SUM`` over such a join. ``ORDER BY`` (on output columns) and ``LIMIT``/``OFFSET`` are applied by
the cache to the whole grouped state. Anything else is refused with a reason, and its entries are
invalidated by writes as they always were.

For such a read the cache runs a *state query* instead of the statement: the statement's own
columns first, then hidden ones (every group key, every aggregate with the count of its non-NULL
inputs and, on PostgreSQL, each SUM's multiset of input scales (``scales_of``), ``COUNT(*)`` per
group, every scalar subquery with its count and scales), without ORDER BY and LIMIT; the rows the
application gets are derived from it (``state.py``). A write's *delta queries* are the grouped
part and each scalar part restricted to the rows the write touches (``alias.pk IN (...)``), run
before and after the write in its transaction.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import sqlglot
from sqlglot import exp

from querycache.analysis import fold_identifier
from querycache.invalidation.rows import Source, parse_named, source_of
from querycache.sqlparts import flatten

MARKER = "qc_restrict_marker"
MARKER_B = "qc_second_marker"  # not containing MARKER: each is replaced as text
_PLACEHOLDER = re.compile(r"%\((qc[pm]\d+)\)s|:(qc[pm]\d+)\b")


class Refused(Exception):
    """The read is not maintainable; ``reason`` is the short name counted in stats and explain."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Slot:
    """One aggregate of the grouped part: ``func`` is "sum" or "count"; ``star`` for COUNT(*);
    ``scaled``: a PostgreSQL SUM, whose hidden columns carry the multiset of its inputs' scales
    (``scales_of``)."""

    func: str
    star: bool
    scaled: bool = False


@dataclass(frozen=True, slots=True)
class Output:
    """Where an output column comes from: ("key", i), ("slot", j), ("total", j) (the sum of slot
    j over every group), ("scalar", k)."""

    kind: str
    index: int


@dataclass(frozen=True, slots=True)
class OrderKey:
    column: int
    desc: bool
    nulls_first: bool


@dataclass(frozen=True, slots=True)
class Shape:
    """A maintainable read. SQL texts use ``%(qcpN)s`` for the statement's parameters and
    ``%(qcmN)s`` for a restriction's keys; ``deltas[relation]`` is the grouped part's delta query
    for a write to ``relation`` (``schema.table``, folded; absent: the part does not read it),
    ``scalar_deltas[k][relation]`` the same for scalar part k; ``MARKER`` stands where the
    restriction goes."""

    state_sql: str
    width: int
    keys: int
    grouped: bool
    slots: tuple[Slot, ...]
    scalars: tuple[Slot, ...]
    outputs: tuple[Output, ...]
    order: tuple[OrderKey, ...]
    limit: Source | None
    offset: Source | None
    tables: frozenset[str]
    """The base tables read, by name (what version keys and registries are named after)."""
    deltas: dict[str, str]
    scalar_deltas: tuple[dict[str, str], ...]
    restrict_aliases: dict[tuple[int, str], tuple[str, ...]]
    """(part: -1 grouped, k scalar; relation) -> the aliases of that relation's occurrences."""
    filters: dict[tuple[int, str], str]
    """(part, relation) -> the conjuncts of the restricted SELECT's WHERE on that relation's one
    occurrence alone, its columns qualified by ``qc_t``: a write's rows that fail it in an image
    cannot change the part in that image (absent: no such conjunct, every write may)."""
    pair_deltas: dict[tuple[int, str, str], str]
    """(part, relation a, relation b), a < b -> the part's delta query restricted on both at once
    (``MARKER`` for a, ``MARKER_B`` for b): what two relations' changes share, for a fill caught
    up with both (docs/maintenance.md, "Fills under writes")."""

    @property
    def relations(self) -> set[str]:
        """Every relation a part of the read reads (what a write must name to maintain it)."""
        return set(self.deltas) | {r for deltas in self.scalar_deltas for r in deltas}

    @property
    def hidden_width(self) -> int:
        return self.keys + 3 * len(self.slots) + 1 + 3 * len(self.scalars)

    def delta_sql(self, part: int, table: str, pk: str, n: int, dialect: str) -> str | None:
        """The delta query of ``part`` for ``n`` keys of ``table`` (None: that part does not read it)."""
        template = (self.deltas if part < 0 else self.scalar_deltas[part]).get(table)
        if template is None:
            return None
        return restrict(template, self.restrict_aliases[(part, table)], pk, n, dialect)

    def pair_delta_sql(self, part: int, first: tuple[str, str, int], second: tuple[str, str, int],
                       dialect: str) -> str | None:
        """The delta query of ``part`` restricted to ``n`` keys of each of two relations (each
        ``(relation, pk, n)``, in name order; the second's keys are ``%(qcnI)s``)."""
        template = self.pair_deltas.get((part, first[0], second[0]))
        if template is None:
            return None
        found = restrict(template, self.restrict_aliases[(part, first[0])], first[1], first[2], dialect)
        return restrict(found, self.restrict_aliases[(part, second[0])], second[1], second[2], dialect,
                        MARKER_B, "qcn")


@functools.lru_cache(maxsize=256)
def restrict(template: str, aliases: tuple[str, ...], pk: str, n: int, dialect: str, marker: str = "",
             prefix: str = "qcm") -> str:
    marks = ", ".join(f"%({prefix}{i})s" for i in range(n)) if n else "NULL"
    column = exp.to_identifier(pk).sql(dialect=dialect)
    condition = " OR ".join(f"{exp.to_identifier(a).sql(dialect=dialect)}.{column} IN ({marks})" for a in aliases)
    return template.replace(marker or MARKER, f"({condition})")


SCALE_DIGITS = 19
"""Decimal digits per scale in ``scales_of``: 10**19 exceeds any COUNT (a bigint), so no count of
one scale ever carries into the next."""
SCALES = 32
"""Input scales tracked by ``scales_of``: 0 to 31 (a division's result commonly has a scale of 20
to 28); a larger one is not counted, and its answer is not maintained."""


@functools.lru_cache(maxsize=1)
def _scales_template() -> exp.Expression:
    cases = " ".join(f"WHEN {k} THEN 1e{SCALE_DIGITS * k}" for k in range(SCALES))
    node = sqlglot.parse_one(f"SUM(CASE SCALE(CAST(qc_scaled AS NUMERIC)) {cases} END)", read="postgres")
    if not isinstance(node, exp.Expression):
        raise TypeError(type(node).__name__)
    return node


def scales_of(arg: exp.Expression) -> exp.Expression:
    """PostgreSQL: ``SUM(10 ** (19 * scale(arg)))`` over the inputs, written as a CASE of
    literals (as cheap as ``scale()`` itself; ``power()`` tripled a fill's time). Its base-10**19
    digits are the number of non-NULL inputs of each scale: the multiset of scales, which a
    write's ``after - before`` maintains exactly like a sum, and whose largest member is the
    scale PostgreSQL gives ``sum(arg)`` over a numeric (docs/maintenance.md, "A write"; the
    server's own moving aggregate keeps a count of its largest scale for the same reason). An
    input of no scale (NaN, infinity) or a scale of ``SCALES`` or more is left out: the digits then
    add up to less than ``COUNT(arg)``, and the answer is not maintained."""
    node = _scales_template().copy()
    for column in list(node.find_all(exp.Column)):
        if column.name == "qc_scaled":
            column.replace(arg.copy())
    return node


_SHAPES: dict[tuple[str, str, str], Shape | Refused] = {}


def shape_of(sql: str, dialect: str, paramstyle: str, views: frozenset[str]) -> Shape:
    """The shape of a read (memoized per text); raises ``Refused``. ``views``: relation names that
    are not base tables (a restriction on them would not name the rows a write touched)."""
    key = (sql, dialect, paramstyle)
    found = _SHAPES.get(key)
    if found is None:
        try:
            found = _analyze(sql, dialect, paramstyle, views)
        except Refused as refused:
            found = refused
        except Exception:  # noqa: BLE001 - a form this module does not know: not maintained
            found = Refused("unparsed")
        if len(_SHAPES) > 4096:
            _SHAPES.clear()
        _SHAPES[key] = found
    if isinstance(found, Refused):
        raise found
    return found


# -- analysis ----------------------------------------------------------------------------------
def _analyze(sql: str, dialect: str, paramstyle: str, views: frozenset[str]) -> Shape:
    if dialect not in ("postgres", "mysql", "mariadb"):
        raise Refused("dialect")
    tree = parse_named(sql, dialect, paramstyle)
    if not isinstance(tree, exp.Select):
        raise Refused("not_select")
    if any(p.name and not p.name.startswith("qcp") for p in tree.find_all(exp.Placeholder)):
        raise Refused("named_parameters")
    ctes = _ctes(tree, views)
    _check_sources(tree, set(ctes), views)
    _check_top(tree)
    group_exprs = [g for g in (tree.args["group"].expressions if tree.args.get("group") else [])]
    if tree.args.get("group") and any(tree.args["group"].args.get(k) for k in ("rollup", "cube", "grouping_sets")):
        raise Refused("grouping_sets")
    group_sql = [g.sql(dialect=dialect) for g in group_exprs]
    slots: list[Slot] = []
    slot_exprs: list[exp.Expression] = []
    scalars: list[Slot] = []
    scalar_nodes: list[exp.Select] = []
    outputs: list[Output] = []
    names: list[str | None] = []
    for item in tree.expressions:
        node = item.this if isinstance(item, exp.Alias) else item
        if dialect != "postgres" and not isinstance(item, (exp.Alias, exp.Column)):
            # MySQL/MariaDB name such a column by its text as written; the state query is rendered
            # again (SUM(val) for sum(val)) and would give the application other names.
            raise Refused("unaliased")
        names.append(item.alias_or_name if isinstance(item, (exp.Alias, exp.Column)) else None)
        text = node.sql(dialect=dialect)
        if text in group_sql:
            outputs.append(Output("key", group_sql.index(text)))
        elif _aggregate(node) is not None:
            outputs.append(Output("slot", _slot(node, slots, slot_exprs, dialect)))
        elif isinstance(node, exp.Window):
            if any(node.args.get(k) for k in ("partition_by", "order", "spec")) or not isinstance(node.this, exp.Sum):
                raise Refused("window")
            inner = node.this.this
            if _aggregate(inner) is None:
                raise Refused("window")
            outputs.append(Output("total", _slot(inner, slots, slot_exprs, dialect)))
        elif isinstance(node, exp.Subquery):
            scalar_nodes.append(_scalar(node, ctes, views))
            agg = scalar_nodes[-1].expressions[0]
            agg = agg.this if isinstance(agg, exp.Alias) else agg
            func = "sum" if isinstance(agg, exp.Sum) else "count"
            scalars.append(Slot(func, isinstance(agg.this, exp.Star), func == "sum" and dialect == "postgres"))
            outputs.append(Output("scalar", len(scalars) - 1))
        else:
            raise Refused("select_item")
    if not group_exprs and not slots and not scalars:
        raise Refused("not_aggregate")
    if not group_exprs and any(o.kind == "total" for o in outputs):
        raise Refused("window")
    order = _order(tree, names, outputs, dialect)
    limit = _bound(tree.args.get("limit"))
    offset = _bound(tree.args.get("offset"))
    if any(tree.args.get(k) is not None and v is None for k, v in (("limit", limit), ("offset", offset))):
        raise Refused("limit")
    # The grouped part's aggregates: the slots, the count of non-NULL inputs of each and its
    # scales (NULL unless the slot is scaled), COUNT(*).
    hidden: list[exp.Expression] = [g.copy() for g in group_exprs]
    for slot, expr in zip(slots, slot_exprs, strict=True):
        hidden.append(expr.copy())
        hidden.append(exp.Count(this=exp.Star()) if slot.star else exp.Count(this=expr.this.copy()))
        hidden.append(scales_of(expr.this) if slot.scaled else exp.Null())
    hidden.append(exp.Count(this=exp.Star()))
    # The state query: the statement's columns, the hidden ones, each scalar with its count and scales.
    state = tree.copy()
    for clause in ("order", "limit", "offset"):
        state.set(clause, None)
    extra: list[exp.Expression] = [h.copy() for h in hidden]
    for node, scalar in zip(scalar_nodes, scalars, strict=True):
        extra.append(exp.Subquery(this=node.copy()))
        extra.append(exp.Subquery(this=_counted(node)))
        extra.append(exp.Subquery(this=_scaled(node)) if scalar.scaled else exp.Null())
    state.set("expressions", [*state.expressions,
                              *(exp.alias_(e, f"qc_h{i}") for i, e in enumerate(extra))])
    state_sql = _render(state, dialect)
    # The grouped part's delta query, per table it reads: hidden columns only, restricted.
    deltas: dict[str, str] = {}
    aliases: dict[tuple[int, str], tuple[str, ...]] = {}
    filters: dict[tuple[int, str], str] = {}
    grouped = tree.copy()
    for clause in ("order", "limit", "offset"):
        grouped.set(clause, None)
    grouped.set("expressions", [exp.alias_(h.copy(), f"qc_h{i}") for i, h in enumerate(hidden)])
    tables: set[str] = set()
    pairs: dict[tuple[int, str, str], str] = {}
    occurrences = _occurrences(grouped, ctes)
    for table, found in occurrences.items():
        tables.add(table.rsplit(".", 1)[-1])
        deltas[table], aliases[(-1, table)] = _restricted(grouped, found, dialect)
        _filter(found, dialect, filters, (-1, table))
    _pairs(grouped, occurrences, -1, dialect, pairs)
    scalar_deltas: list[dict[str, str]] = []
    for index, (node, scalar) in enumerate(zip(scalar_nodes, scalars, strict=True)):
        columns = [node.expressions[0], _counted(node).expressions[0],
                   _scaled(node).expressions[0] if scalar.scaled else exp.Null()]
        # Named apart: in the batch's derived table MySQL/MariaDB refuse two columns both named
        # COUNT(*) (an aggregate and its count).
        part = exp.Select(expressions=[exp.alias_((c.this if isinstance(c, exp.Alias) else c).copy(), f"qc_s{j}")
                                       for j, c in enumerate(columns)])
        part.set("from_", node.args["from_"].copy())
        part.set("joins", [j.copy() for j in node.args.get("joins") or []] or None)
        if node.args.get("where") is not None:
            part.set("where", node.args["where"].copy())
        if tree.args.get("with_") is not None:
            part.set("with_", tree.args["with_"].copy())
        mine: dict[str, str] = {}
        occurrences = _occurrences(part, ctes)
        for table, found in occurrences.items():
            tables.add(table.rsplit(".", 1)[-1])
            mine[table], aliases[(index, table)] = _restricted(part, found, dialect)
            _filter(found, dialect, filters, (index, table))
        _pairs(part, occurrences, index, dialect, pairs)
        scalar_deltas.append(mine)
    return Shape(state_sql, len(tree.expressions), len(group_exprs), bool(group_exprs), tuple(slots),
                 tuple(scalars), tuple(outputs), order, limit, offset, frozenset(tables), deltas,
                 tuple(scalar_deltas), aliases, filters, pairs)


def _pairs(part: exp.Select, occurrences: dict[str, list[tuple[exp.Select, exp.Table]]], index: int, dialect: str,
           out: dict[tuple[int, str, str], str]) -> None:
    """The part's delta queries restricted on two of its relations at once (Shape.pair_deltas)."""
    names = sorted(occurrences)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            out[(index, first, second)] = _restricted(part, occurrences[first], dialect, occurrences[second])[0]


def _ctes(tree: exp.Select, views: frozenset[str]) -> dict[str, exp.Select]:
    """The statement's CTEs by name; each must filter and project base tables only."""
    with_ = tree.args.get("with_")
    out: dict[str, exp.Select] = {}
    if with_ is None:
        return out
    if with_.args.get("recursive"):
        raise Refused("recursive_cte")
    for cte in with_.expressions:
        body = cte.this
        if not isinstance(body, exp.Select):
            raise Refused("cte")
        if any(body.args.get(k) for k in ("group", "having", "distinct", "limit", "offset", "qualify", "with_")):
            raise Refused("cte")
        if any(body.find_all(exp.AggFunc, exp.Window, exp.Subquery, exp.Exists)):
            raise Refused("cte")
        _check_sources(body, set(out), views)
        out[cte.alias.lower()] = body
    for name in out:
        _check_sources(out[name], set(out), views)
    return out


def _check_sources(select: exp.Select, ctes: set[str], views: frozenset[str]) -> None:
    from_ = select.args.get("from_")
    if from_ is None:
        raise Refused("no_from")
    sources = [from_.this, *(j.this for j in select.args.get("joins") or [])]
    for join in select.args.get("joins") or []:
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if side or kind not in ("", "INNER", "CROSS") or join.args.get("using") or join.args.get("method"):
            raise Refused("outer_join")
    for source in sources:
        if not isinstance(source, exp.Table) or not source.name or isinstance(source.this, exp.Func):
            raise Refused("derived_table")
        if not source.args.get("db") and source.name.lower() in ctes:
            continue
        if fold_identifier(source.name) in views:
            raise Refused("view")


def _check_top(tree: exp.Select) -> None:
    if any(tree.args.get(k) for k in ("having", "distinct", "qualify", "windows", "into", "locks", "sample")):
        raise Refused("clause")
    outside = [tree.args.get("where"), *(j.args.get("on") for j in tree.args.get("joins") or [])]
    for node in outside:
        if node is not None and any(node.find_all(exp.Subquery, exp.Exists, exp.Select)):
            raise Refused("subquery")
    if tree.args.get("group") is not None and any(tree.args["group"].find_all(exp.Subquery, exp.AggFunc)):
        raise Refused("group_by")


def _aggregate(node: exp.Expression) -> exp.Expression | None:
    """``node`` when it is COUNT(*), COUNT(x) or SUM(x) over an expression without aggregates."""
    if not isinstance(node, (exp.Count, exp.Sum)):
        return None
    arg = node.this
    if isinstance(arg, exp.Distinct) or arg is None:
        return None
    if isinstance(node, exp.Sum) and isinstance(arg, exp.Star):
        return None
    if not isinstance(arg, exp.Star) and any(arg.find_all(exp.AggFunc, exp.Window, exp.Subquery, exp.Select)):
        return None
    return node


def _slot(node: exp.Expression, slots: list[Slot], exprs: list[exp.Expression], dialect: str) -> int:
    text = node.sql(dialect=dialect)
    for i, seen in enumerate(exprs):
        if seen.sql(dialect=dialect) == text:
            return i
    func = "sum" if isinstance(node, exp.Sum) else "count"
    slots.append(Slot(func, isinstance(node.this, exp.Star), func == "sum" and dialect == "postgres"))
    exprs.append(node)
    return len(slots) - 1


def _scalar(node: exp.Subquery, ctes: dict[str, exp.Select], views: frozenset[str]) -> exp.Select:
    """An uncorrelated scalar subquery of one COUNT/SUM over base tables or CTEs."""
    select = node.this
    if not isinstance(select, exp.Select) or len(select.expressions) != 1:
        raise Refused("scalar_subquery")
    if any(select.args.get(k) for k in ("group", "having", "distinct", "order", "limit", "offset", "with_")):
        raise Refused("scalar_subquery")
    agg = select.expressions[0]
    agg = agg.this if isinstance(agg, exp.Alias) else agg
    if _aggregate(agg) is None:
        raise Refused("scalar_subquery")
    where = select.args.get("where")
    if where is not None and any(where.find_all(exp.Subquery, exp.Select, exp.Exists)):
        raise Refused("scalar_subquery")
    _check_sources(select, set(ctes), views)
    local = {(s.alias_or_name).lower() for s in [select.args["from_"].this,
                                                   *(j.this for j in select.args.get("joins") or [])]}
    for column in select.find_all(exp.Column):
        if not column.table or column.table.lower() not in local:
            raise Refused("correlated")  # a column that may name the outer query's rows
    return select


def _counted(node: exp.Select) -> exp.Select:
    """A scalar subquery with its aggregate replaced by the count of its non-NULL inputs."""
    out = node.copy()
    agg = out.expressions[0]
    agg = agg.this if isinstance(agg, exp.Alias) else agg
    arg = agg.this.copy()
    out.set("expressions", [exp.Count(this=arg)])
    return out


def _scaled(node: exp.Select) -> exp.Select:
    """A scalar subquery (a SUM) with its aggregate replaced by its inputs' scales (``scales_of``)."""
    out = node.copy()
    agg = out.expressions[0]
    agg = agg.this if isinstance(agg, exp.Alias) else agg
    out.set("expressions", [scales_of(agg.this)])
    return out


def _order(tree: exp.Select, names: list[str | None], outputs: list[Output], dialect: str) -> tuple[OrderKey, ...]:
    order = tree.args.get("order")
    if order is None:
        return ()
    texts = [(i.this if isinstance(i, exp.Alias) else i).sql(dialect=dialect) for i in tree.expressions]
    out = []
    for ordered in order.expressions:
        node = ordered.this
        column: int | None = None
        if isinstance(node, exp.Literal) and not node.is_string and str(node.this).isdigit():
            column = int(str(node.this)) - 1
        elif isinstance(node, exp.Column) and not node.table and node.name in names:
            column = names.index(node.name)
        elif node.sql(dialect=dialect) in texts:
            column = texts.index(node.sql(dialect=dialect))
        if column is None or not 0 <= column < len(outputs):
            raise Refused("order_by")
        out.append(OrderKey(column, bool(ordered.args.get("desc")), bool(ordered.args.get("nulls_first"))))
    return tuple(out)


def _bound(node: exp.Expression | None) -> Source | None:
    if node is None:
        return None
    value = node.args.get("expression") or node.this
    source = source_of(value) if isinstance(value, exp.Expression) else None
    if source is None or (source[0] == "lit" and not isinstance(source[1], int)):
        return None
    return source


def _occurrences(part: exp.Select, ctes: dict[str, exp.Select]) -> dict[str, list[tuple[exp.Select, exp.Table]]]:
    """Per base table of ``part`` (its CTEs seen into): the SELECT holding each occurrence."""
    found: dict[str, list[tuple[exp.Select, exp.Table]]] = {}
    with_ = part.args.get("with_")
    bodies = {c.alias.lower(): c.this for c in with_.expressions} if with_ is not None else {}
    used: dict[str, int] = {}

    def visit(select: exp.Select) -> None:
        for source in [select.args["from_"].this, *(j.this for j in select.args.get("joins") or [])]:
            assert isinstance(source, exp.Table)
            name = source.name.lower()
            if not source.args.get("db") and name in bodies:
                used[name] = used.get(name, 0) + 1
                if used[name] == 1:
                    visit(bodies[name])
                continue
            found.setdefault(qualified(source), []).append((select, source))

    visit(part)
    if any(count > 1 for count in used.values()):
        raise Refused("cte_twice")  # a restriction inside it (or a CTE it reads) restricts every use
    return found


def qualified(table: exp.Table) -> str:
    """A base table's name with its schema, folded: the relation a write must name to maintain it.
    Unqualified names are refused (the writer's search path may resolve them elsewhere)."""
    if not table.args.get("db"):
        raise Refused("unqualified")
    if table.args.get("catalog"):
        raise Refused("catalog_qualified")  # db.schema.table on one side, schema.table on the other
    parts = [table.args.get("catalog"), table.args["db"], table.this]
    return ".".join(fold_identifier(p.name) for p in parts if p is not None)


def _restricted(part: exp.Select, occurrences: list[tuple[exp.Select, exp.Table]], dialect: str,
                also: list[tuple[exp.Select, exp.Table]] | None = None) -> tuple[str, tuple[str, ...]]:
    """``part`` rendered with ``MARKER`` in the WHERE of the SELECT holding the occurrences (and
    ``MARKER_B`` in the one holding those of ``also``)."""
    marked = []
    for found, marker in ((occurrences, MARKER), *(((also, MARKER_B),) if also is not None else ())):
        if len({id(s) for s, _ in found}) != 1:
            raise Refused("self_join")
        marked.append((found[0][0], marker))
    aliases = tuple(t.alias_or_name for _, t in occurrences)
    originals = [(holder, holder.args.get("where")) for holder, _ in marked]
    for holder, marker in marked:
        holder.where(exp.column(marker), append=True, copy=False)
    try:
        return _render(part, dialect), aliases
    finally:
        for holder, original in reversed(originals):
            holder.set("where", original)


def _filter(occurrences: list[tuple[exp.Select, exp.Table]], dialect: str,
            out: dict[tuple[int, str], str], key: tuple[int, str]) -> None:
    """The conjuncts of the holder's WHERE that read only the one occurrence (see Shape.filters)."""
    if len(occurrences) != 1:
        return
    holder, table = occurrences[0]
    where = holder.args.get("where")
    if where is None:
        return
    alias = table.alias_or_name.lower()
    single = not holder.args.get("joins")
    kept = []
    for conjunct in flatten(where.this, exp.And):
        columns = list(conjunct.find_all(exp.Column))
        if not columns or any(isinstance(c.this, exp.Star) for c in columns):
            continue
        if not all((c.table.lower() == alias) if c.table else single for c in columns):
            continue
        copy = conjunct.copy()
        for column in copy.find_all(exp.Column):
            column.set("table", exp.to_identifier("qc_t"))
            column.set("db", None)
            column.set("catalog", None)
        kept.append(copy)
    if kept:
        node = kept[0]
        for conjunct in kept[1:]:
            node = exp.And(this=node, expression=conjunct)
        try:
            out[key] = _render(node, dialect)
        except Refused:
            pass


def _render(node: exp.Expression, dialect: str) -> str:
    text = node.sql(dialect=dialect)
    if "%" in _PLACEHOLDER.sub("", text):
        raise Refused("percent")
    return _PLACEHOLDER.sub(lambda m: f"%({m.group(1) or m.group(2)})s", text)


def bind(params: Sequence[object] | None, keys: Sequence[object] | None = None,
         second: Sequence[object] = ()) -> dict[str, object]:
    """The parameters of a state or delta query: the statement's, then the restriction's keys
    (and a second relation's, of ``Shape.pair_delta_sql``)."""
    bound = {f"qcp{i}": v for i, v in enumerate(params or ())}
    for i, key in enumerate(keys or ()):
        bound[f"qcm{i}"] = key
    for i, key in enumerate(second):
        bound[f"qcn{i}"] = key
    return bound
