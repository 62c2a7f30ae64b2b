"""Row-level dependencies (issue 10): which rows a read can depend on, which rows a write touches.

A read that constrains a table's column to constants (``t.c = 5``, ``t.c IN (1, 2)``,
``t.c IS NULL``, or through join equalities: ``p.cat = v.cat AND p.cat = 5`` pins ``v.cat``
too) depends only on that table's rows in those *buckets* (``t.c = 5``); a write whose rows,
before and after, fall in other buckets cannot change it. Everything else depends on the
table's ``any`` bucket, bumped by every write to the table. Anything not understood here is
simply not pinned (the table-level answer), so correctness never rests on this module finding
a pin, only on a pin it finds being implied by the statement.

Where a conjunct is looked for: the top-level ``AND`` of each ``SELECT``'s ``WHERE`` (for every
table of that ``SELECT``), the ``ON`` of an inner join (both sides), the ``ON`` of a ``LEFT``
join (its right side only: the left side's rows are all kept). Nothing under ``OR``/``NOT``,
``HAVING`` or a ``FULL``/``RIGHT`` join pins anything.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any, cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from querycache.analysis import VOLATILE_FUNCTIONS, fold_identifier
from querycache.hints import scan
from querycache.invalidation.keys import bucket_key
from querycache.sqlparts import flatten, split_outside_quotes

MAX_VALUES_PER_TABLE = 16
_TRUE = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "off", "0"})

# Where a pinned value comes from: ("lit", value) or ("param", index or name).
Source = tuple[str, Any]
NULL_SOURCE: Source = ("lit", None)


@dataclass(frozen=True, slots=True)
class ReadPins:
    """Per table read (folded name): ``None`` (depends on any row) or column -> value sources."""

    tables: dict[str, dict[str, tuple[Source, ...]] | None]

    def columns(self) -> set[tuple[str, str]]:
        return {(t, c) for t, pins in self.tables.items() if pins for c in pins}


def bucket_value(value: Any) -> str | None:
    """The bucket of a value: values the database may compare as equal always share one
    (over-sharing only costs invalidations). None: not bucketable (the table is read as ``any``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "n:1" if value else "n:0"
    if isinstance(value, int):
        return f"n:{value}"
    if isinstance(value, (float, decimal.Decimal)):
        if isinstance(value, decimal.Decimal) and value.is_finite() and value.adjusted() > 30:
            return "n:huge"  # int() of 1e999999 would build a million digits
        try:
            as_int = int(value)
        except (OverflowError, ValueError):
            return None
        return f"n:{as_int}" if value == as_int else "n:fraction"
    if isinstance(value, uuid.UUID):
        return bucket_value(str(value))
    if isinstance(value, (bytes, bytearray, memoryview, dt.date, dt.time, dt.timedelta)):
        return None
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        if lowered in _TRUE:
            return "n:1"
        if lowered in _FALSE:
            return "n:0"
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:
            number = None
        if number is not None and number.is_finite():
            return bucket_value(number)
        if not text.isascii():
            # Collations equate non-ASCII text in ways no folding here reproduces exactly
            # (accents, ligatures, expansions): all of it shares one bucket.
            return "s:non-ascii"
        # ASCII: case-insensitive collations and trailing-space padding; hashed, so that a value
        # never reaches a key's text (separators in it could split a bump message).
        return "s:" + hashlib.blake2b(lowered.encode(), digest_size=8).hexdigest()
    return None


_MYSQL_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def bucket_values(value: Any, dialect: str, reading: bool) -> list[str] | None:
    """The buckets of ``value``: for a row holding it (``reading`` False), every bucket the row
    is in; for a statement comparing a column with it (``reading`` True), every bucket a matching
    row may be in. None: the statement is read as "any row".

    * MySQL compares a string with a number by the string's numeric prefix ('5abc' = 5, 'abc' = 0):
      there a string is also in its number's bucket.
    * Collations may equate non-ASCII text with other text (accents, ligatures, expansions): a
      non-ASCII value is in the one "non-ascii" bucket, every pinned string read also depends on
      it, and a read comparing with non-ASCII text is not pinned at all."""
    bucket = bucket_value(value)
    if bucket is None:
        return None
    if bucket == "s:non-ascii" and reading:
        return None
    buckets = [bucket]
    if bucket.startswith("s:") and reading:
        buckets.append("s:non-ascii")
    if dialect in ("mysql", "mariadb") and isinstance(value, str) and bucket.startswith("s:"):
        match = _MYSQL_NUMBER.match(value)
        prefix = bucket_value(decimal.Decimal(match.group(0).strip()) if match else 0)
        if prefix is None:
            return None
        buckets.append(prefix)
    return buckets


def bucket_keys(table_key: str, column: str, value: Any, dialect: str, reading: bool) -> list[str] | None:
    """The version keys of the buckets ``value`` falls in for ``column`` of the table ``table_key``
    (None: not bucketable; the table is then read or written as "any")."""
    found = bucket_values(value, dialect, reading)
    return None if found is None else [bucket_key(table_key, column, bucket) for bucket in found]


def name_placeholders(text: str, dialect: str, paramstyle: str) -> tuple[str, int] | None:
    """``text`` with positional placeholders renamed ``qcp0, qcp1...`` in text order, and how many;
    None for paramstyles this module does not bind."""
    if dialect == "postgres" and paramstyle in ("format", "pyformat"):
        token = "%s"
    elif paramstyle in ("format", "pyformat", "qmark"):
        token = "?"  # the scanner has turned MySQL's %s into ?
    else:
        return text, 0  # named and numeric parameters keep their names
    pieces = split_outside_quotes(text, token)
    marker = "%(qcp{})s" if token == "%s" else ":qcp{}"
    out = [pieces[0]]
    for i, piece in enumerate(pieces[1:]):
        out.append(marker.format(i))
        out.append(piece)
    return "".join(out), len(pieces) - 1


def parse_named(sql: str, dialect: str, paramstyle: str) -> exp.Expression | None:
    scanned = scan(sql, dialect, paramstyle)
    named = name_placeholders(scanned.parse_text, dialect, paramstyle)
    if named is None:
        return None
    try:
        trees = [t for t in sqlglot.parse(named[0], read=dialect) if t is not None]
    except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return cast(exp.Expression, trees[0]) if len(trees) == 1 else None


def source_of(node: exp.Expression) -> Source | None:
    """A constant's source, or None when ``node`` is not a plain constant."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Literal):
        if node.is_string:
            return ("lit", str(node.this))
        text = str(node.this)
        try:
            return ("lit", int(text))
        except ValueError:
            try:
                return ("lit", decimal.Decimal(text))
            except decimal.InvalidOperation:
                return None
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        inner = source_of(node.this)
        return ("lit", -inner[1]) if inner is not None else None
    if isinstance(node, exp.Boolean):
        return ("lit", bool(node.this))
    if isinstance(node, exp.Placeholder):
        name = node.name
        if name.startswith("qcp") and name[3:].isdigit():
            return ("param", int(name[3:]))
        return ("param", name) if name else None
    return None


def resolve(source: Source, params: Any) -> Any:
    kind, ref = source
    if kind == "lit":
        return ref
    if isinstance(ref, int):
        return params[ref]
    return params[ref]


Occurrence = int  # id() of an exp.Table node


def read_pins(sql: str, dialect: str, paramstyle: str) -> ReadPins | None:
    """The pins of a read, or None when the statement cannot be analyzed (then: table level)."""
    tree = parse_named(sql, dialect, paramstyle)
    if tree is None or not isinstance(tree, exp.Query):
        return None
    ctes = {c.alias.lower() for c in tree.find_all(exp.CTE)}
    occurrences: dict[Occurrence, str] = {}
    for table in tree.find_all(exp.Table):
        if table.name and (table.args.get("db") or table.name.lower() not in ctes):
            occurrences[id(table)] = fold_identifier(table.name)
    pinned: dict[Occurrence, dict[str, set[Source]]] = {}
    for select in tree.find_all(exp.Select):
        _pin_select(select, occurrences, pinned)
    tables: dict[str, dict[str, tuple[Source, ...]] | None] = {}
    for occ, name in occurrences.items():
        pins = pinned.get(occ)
        if name in tables and tables[name] is None:
            continue
        if not pins:
            tables[name] = None
            continue
        # One column is enough: the rows that matter all have it in those values. The column
        # with the fewest values (then by name) is the one depended on.
        column = min(pins, key=lambda c: (len(pins[c]), c))
        mine = tables.setdefault(name, {})
        assert mine is not None
        merged = set(mine.get(column, ())) | pins[column]
        mine[column] = tuple(sorted(merged, key=repr))
        if sum(len(v) for v in mine.values()) > MAX_VALUES_PER_TABLE:
            tables[name] = None
    return ReadPins(tables)


def _pin_select(select: exp.Select, occurrences: dict[Occurrence, str],
                pinned: dict[Occurrence, dict[str, set[Source]]]) -> None:
    from_ = select.args.get("from_")
    sources: list[exp.Expression] = [from_.this] if from_ is not None else []
    joins = select.args.get("joins") or []
    sources += [j.this for j in joins]
    local = {id(s): s for s in sources if isinstance(s, exp.Table) and id(s) in occurrences}
    aliases: dict[str, Occurrence] = {}
    for node in local.values():
        assert isinstance(node, exp.Table)
        key = (node.alias or node.name).lower()
        if key in aliases:
            return  # ambiguous names: pin nothing here
        aliases[key] = id(node)
    only = next(iter(local)) if len(local) == 1 and len(sources) == 1 else None
    # Conjunct groups and the occurrences each may pin. WHERE and inner-join ON conditions hold
    # for every output row: they pin every table of the SELECT. A LEFT join's ON (with them) pins
    # only its right side: the left side's rows are all kept, matched or not.
    main: list[exp.Expression] = []
    where = select.args.get("where")
    if where is not None:
        main += flatten(where.this, exp.And)
    lefts: list[tuple[list[exp.Expression], Occurrence]] = []
    for join in joins:
        on = join.args.get("on")
        if on is None or any(join.args.get(k) for k in ("using", "method")):
            continue
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if side == "" and kind in ("", "INNER", "CROSS"):
            main += flatten(on, exp.And)
        elif side == "LEFT" and id(join.this) in local:
            lefts.append((flatten(on, exp.And), id(join.this)))
    groups: list[tuple[list[exp.Expression], set[Occurrence]]] = [(main, set(local))]
    groups += [(on + main, {occ}) for on, occ in lefts]

    def column_of(node: exp.Expression) -> tuple[Occurrence, str] | None:
        while isinstance(node, exp.Paren):
            node = node.this
        if (not isinstance(node, exp.Column) or isinstance(node.this, exp.Star) or node.args.get("db")
                or node.this.args.get("quoted")):
            return None  # quoted names keep their case: not folded here, not pinned
        if node.table:
            occ = aliases.get(node.table.lower())
        else:
            occ = only
        return (occ, node.name.lower()) if occ is not None else None

    for conjuncts, allowed in groups:
        parent: dict[tuple[Occurrence, str], tuple[Occurrence, str]] = {}

        def find(x: tuple[Occurrence, str], parent: dict[tuple[Occurrence, str], tuple[Occurrence, str]] = parent
                 ) -> tuple[Occurrence, str]:
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        constants: dict[tuple[Occurrence, str], set[Source]] = {}
        for conjunct in conjuncts:
            if isinstance(conjunct, exp.EQ):
                left, right = column_of(conjunct.this), column_of(conjunct.expression)
                if left and right:
                    parent[find(left)] = find(right)
                    continue
                column, value = (left, conjunct.expression) if left else (right, conjunct.this)
                source = source_of(value) if column else None
                if column and source is not None:
                    constants.setdefault(column, set()).add(source)
            elif isinstance(conjunct, exp.In) and not conjunct.args.get("query"):
                column = column_of(conjunct.this)
                items = [source_of(i) for i in conjunct.expressions]
                if column and items and all(i is not None for i in items):
                    constants.setdefault(column, set()).update(i for i in items if i is not None)
            elif (isinstance(conjunct, exp.Is) and isinstance(conjunct.expression, exp.Null)
                  and not conjunct.args.get("negate")):  # PostgreSQL's IS NOT NULL: Is(negate=True), no pin
                column = column_of(conjunct.this)
                if column:
                    constants.setdefault(column, set()).add(NULL_SOURCE)
        by_class: dict[tuple[Occurrence, str], set[Source]] = {}
        for column, values in constants.items():
            by_class.setdefault(find(column), set()).update(values)
        members: dict[tuple[Occurrence, str], list[tuple[Occurrence, str]]] = {}
        for column in set(parent) | set(parent.values()) | set(constants):
            members.setdefault(find(column), []).append(column)
        for root, values in by_class.items():
            for occ, col in members.get(root, [root]):
                if occ in allowed:
                    mine = pinned.setdefault(occ, {}).setdefault(col, set())
                    mine.update(values)


# -- writes --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WritePlan:
    """What a single-table INSERT / UPDATE / DELETE says about the rows it touches."""

    kind: str  # "insert" | "update" | "delete"
    table: str  # folded name
    target_sql: str  # the target as written (with its alias), for the pre-read; an INSERT's table
    where_sql: str | None  # the WHERE with parameters as %(qcpN)s and % doubled, for the pre-read
    assigned: dict[str, Source | None]  # UPDATE: column -> its new constant, None if not constant
    insert_columns: tuple[str, ...] = ()
    insert_rows: tuple[tuple[Source | None, ...], ...] = ()


@functools.lru_cache(maxsize=4096)
def write_plan(sql: str, dialect: str, paramstyle: str) -> WritePlan | None:
    """None when the rows a write touches cannot be pinned down here (then: table level).

    Memoized per text, like the analysis: parsing and rendering cost about 2 ms per write, and
    sqlglot's generator kept about 110 bytes per rendering alive (found by the soak benchmark's
    memory slope). A plan is never mutated by its users."""
    if dialect not in ("postgres", "mysql", "mariadb"):
        return None
    tree = parse_named(sql, dialect, paramstyle)
    if tree is None or any(p.name and not p.name.startswith("qcp") for p in tree.find_all(exp.Placeholder)):
        return None  # named parameters: not bound here
    present = {k for k, v in tree.args.items() if v}
    if any(tree.find_all(exp.Subquery, exp.Select)) and not isinstance(tree, exp.Insert):
        return None  # a write whose rows depend on other tables' rows: table level
    if isinstance(tree, exp.Insert):
        if present - {"this", "expression", "returning"} or not isinstance(tree.expression, exp.Values):
            return None  # ON CONFLICT / ON DUPLICATE KEY, INSERT ... SELECT, IGNORE, OVERWRITE...
        schema = tree.this
        if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
            return None  # no column list: the columns' order is the catalog's
        columns = tuple(c.name.lower() for c in schema.expressions if isinstance(c, exp.Identifier))
        if len(columns) != len(schema.expressions):
            return None
        rows = []
        for row in tree.expression.expressions:
            if not isinstance(row, exp.Tuple) or len(row.expressions) != len(columns):
                return None
            rows.append(tuple(source_of(v) for v in row.expressions))
        return WritePlan("insert", fold_identifier(schema.this.name), schema.this.sql(dialect=dialect), None, {},
                         columns, tuple(rows))
    if isinstance(tree, (exp.Update, exp.Delete)):
        allowed = {"this", "expressions", "where", "returning", "limit", "order"}
        target = tree.this
        if present - allowed or not isinstance(target, exp.Table) or target.args.get("joins"):
            return None  # UPDATE ... FROM, DELETE ... USING, multi-table forms
        where = tree.args.get("where")
        if where is not None and _volatile(where, dialect):
            return None  # evaluated again by the write, it may pick other rows than the pre-read did
        where_sql = _render(where.this, dialect) if where is not None else None
        if where is not None and where_sql is None:
            return None
        assigned: dict[str, Source | None] = {}
        for assignment in tree.expressions if isinstance(tree, exp.Update) else []:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                return None
            assigned[assignment.this.name.lower()] = source_of(assignment.expression)
        return WritePlan("update" if isinstance(tree, exp.Update) else "delete", fold_identifier(target.name),
                         target.sql(dialect=dialect), where_sql, assigned)
    return None


# PostgreSQL's clock of the transaction: the pre-read and the write always share one.
_TRANSACTION_CLOCK = frozenset({"now", "current_timestamp", "current_date", "current_time", "localtime",
                                "localtimestamp", "transaction_timestamp"})


def _volatile(node: exp.Expression, dialect: str) -> bool:
    """Whether ``node`` calls a function whose value may differ between two statements."""
    stable = _TRANSACTION_CLOCK if dialect == "postgres" else frozenset()
    for func in node.find_all(exp.Func):
        name = str(func.name).lower() if isinstance(func, exp.Anonymous) else func.sql_name().lower()
        if name in VOLATILE_FUNCTIONS and name not in stable:
            return True
    return False


def _render(node: exp.Expression, dialect: str) -> str | None:
    import re

    text = node.sql(dialect=dialect)
    if "%" in re.sub(r"%\(qcp\d+\)s", "", text):
        return None  # a literal % means %% or % depending on whether parameters are passed
    text = re.sub(r"%\(qcp(\d+)\)s|:qcp(\d+)\b", lambda m: f"\x00{m.group(1) or m.group(2)}\x00", text)
    return re.sub("\x00(\\d+)\x00", r"%(qcp\1)s", text.replace("%", "%%"))
