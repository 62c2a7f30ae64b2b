"""Generate the semantic (L3) query-pair corpora: ``equivalent.yaml`` and ``near_miss.yaml``.

Every pair is built from one of the base query templates below (``@template``), instantiated with
literal values drawn from the template's parameter domains, and rendered to SQL twice:

* equivalent pairs render the same query with two surface styles that differ by one (or, for
  ``combined`` / ``keyword_case_and_spacing``, several) meaning-preserving rewrites: other table
  aliases, conjuncts reordered, IN lists reordered, comma joins, redundant parentheses, ``!=``,
  ``COUNT(1)``, comparisons turned around, select list reordered, keyword case and layout;
* near-miss pairs render two queries that differ by one small change of meaning (a literal, ``<``
  vs ``<=``, AND vs OR, ASC vs DESC, LIMIT, NOT, a column, a table, INNER vs LEFT JOIN, DISTINCT,
  an aggregate, the grouping column, two literals swapped, an IN list element), with the same style.

Everything is deterministic (fixed seed, no dependence on dict or set order). With ``--verify``
(the way the committed files are produced) every candidate pair is run on PostgreSQL against
``schema.sql``; a candidate that errors, that is empty (equivalent pairs only: an empty result
proves nothing), whose two sides do not compare as required, or that differs only by whitespace
and case, is dropped (counts per kind and reason are printed) and the next candidate of the same
kind is drawn, until each kind has its quota. Results are compared with
``tests.test_semantic_corpus.comparable`` (the same rule the test applies).

Usage, from the repository root::

    .venv/bin/python tests/corpus/semantic/generate.py --verify          # writes both YAML files
    .venv/bin/python tests/corpus/semantic/generate.py --dry-run --verify  # report only

The DSN comes from ``QUERYCACHE_TEST_PG`` (default: the test suite's local PostgreSQL).
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import random
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SCHEMA = HERE / "schema.sql"
EQUIVALENT_PATH = HERE / "equivalent.yaml"
NEAR_MISS_PATH = HERE / "near_miss.yaml"
PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
SEED = 20_240_611
EQ_PER_KIND = 34
NM_PER_KIND = 42
MAX_CANDIDATES = 400  # per kind: a kind that cannot fill its quota from this many is a template bug

EQ_KINDS = ["table_alias", "predicate_order", "in_list_order", "join_syntax", "parentheses", "not_equal",
            "count_star", "comparison_orientation", "column_order", "keyword_case_and_spacing", "combined"]
NM_KINDS = ["literal", "lt_le", "and_or", "asc_desc", "limit", "not", "column", "table", "join_type",
            "distinct", "aggregate", "group_by", "swapped_literals", "in_list"]

# --------------------------------------------------------------------------------------------------
# SQL text helpers
# --------------------------------------------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^']|'')*'")


def outside_quotes(text: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to the parts of ``text`` outside single-quoted string literals."""
    out, pos = [], 0
    for m in _QUOTED.finditer(text):
        out.append(fn(text[pos:m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(fn(text[pos:]))
    return "".join(out)


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes and parentheses."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def normalized(sql: str) -> str:
    """Case- and whitespace-insensitive form: what a plain normalizing cache key would see."""
    sql = outside_quotes(sql, str.lower)
    sql = re.sub(r"\s+", " ", sql)
    return re.sub(r"\s*([(),=<>!])\s*", r"\1", sql).strip()


def _stable(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


# --------------------------------------------------------------------------------------------------
# Query model
# --------------------------------------------------------------------------------------------------

LITERAL = re.compile(r"^(-?\d+(\.\d+)?|'(?:[^']|'')*'|(DATE|TIMESTAMP|INTERVAL) '[^']*'|TRUE|FALSE)$")
COLUMN = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "<>": "<>"}
STRICT = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


@dataclass
class Cmp:
    left: str
    op: str
    right: str


@dataclass
class InList:
    expr: str
    values: list[str]
    negated: bool = False


@dataclass
class IsNull:
    expr: str
    negated: bool = False


@dataclass
class Raw:
    text: str


Pred = Cmp | InList | IsNull | Raw

_CMP = re.compile(r"^([^'<>=!]+?)\s*(<=|>=|<>|=|<|>)\s*(.+)$", re.S)
_IN = re.compile(r"^(.+?)\s+(NOT\s+)?IN\s*\((.*)\)$", re.S)
_ISNULL = re.compile(r"^([\w.]+)\s+IS\s+(NOT\s+)?NULL$")


def parse_pred(text: str) -> Pred:
    text = text.strip()
    if re.match(r"^(NOT\b|EXISTS\b|\()", text):
        return Raw(text)
    m = _ISNULL.match(text)
    if m:
        return IsNull(m.group(1), bool(m.group(2)))
    m = _IN.match(text)
    if m and "SELECT" not in m.group(3) and "(" not in m.group(1):
        return InList(m.group(1), split_top(m.group(3)), bool(m.group(2)))
    if " LIKE " in text or " BETWEEN " in text or " IN (" in text or " OR " in text:
        return Raw(text)
    m = _CMP.match(text)
    if m and "SELECT" not in m.group(1):
        return Cmp(m.group(1).strip(), m.group(2), m.group(3).strip())
    return Raw(text)


def negate(pred: Pred, rng: random.Random) -> Pred:
    """The same predicate with NOT added or removed (one keyword, where the syntax allows it)."""
    if isinstance(pred, InList):
        return replace(pred, negated=not pred.negated)
    if isinstance(pred, IsNull):
        return replace(pred, negated=not pred.negated)
    if isinstance(pred, Cmp):
        text = f"{pred.left} {pred.op} {pred.right}"
        return Raw(f"NOT {text}" if rng.random() < 0.5 else f"NOT ({text})")
    text = pred.text
    if text.startswith("NOT EXISTS"):
        return Raw(text[len("NOT "):])
    if text.startswith("EXISTS"):
        return Raw("NOT " + text)
    head = text.split("SELECT")[0]  # the part before any subquery
    for negative, positive in ((" NOT LIKE ", " LIKE "), (" NOT BETWEEN ", " BETWEEN "), (" NOT IN (", " IN (")):
        if negative in head:
            return Raw(text.replace(negative, positive, 1))
        if positive in head:
            return Raw(text.replace(positive, negative, 1))
    if text.startswith("NOT "):
        return Raw(text[len("NOT "):].removeprefix("(").removesuffix(")") if text.startswith("NOT (") else text[4:])
    return Raw(f"NOT {text}" if COLUMN.match(text) else f"NOT ({text})")


@dataclass
class Tbl:
    name: str  # schema-qualified table, or a CTE name
    key: str  # the alias as written in the template; expressions refer to columns as key.column
    join: str | None = None  # None: first table; else "JOIN" / "LEFT JOIN"
    on: list[Pred] = field(default_factory=list)

    @property
    def bare(self) -> str:
        return self.name.split(".")[-1]


@dataclass
class Query:
    select: list[str]
    tables: list[Tbl]
    where: list[Pred] = field(default_factory=list)
    conn: list[str] = field(default_factory=list)  # connectors between WHERE predicates
    group: list[str] = field(default_factory=list)
    having: list[Pred] = field(default_factory=list)
    hconn: list[str] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    distinct: bool = False
    ctes: list[tuple[str, Query]] = field(default_factory=list)

    def all_tables(self) -> list[Tbl]:
        out = [t for _, q in self.ctes for t in q.all_tables()]
        return out + list(self.tables)

    def all_queries(self) -> list[Query]:
        return [q for _, c in self.ctes for q in c.all_queries()] + [self]


def Q(select: Sequence[str], frm: Sequence[Any], where: Sequence[str] = (), group: Sequence[str] = (),
      having: Sequence[str] = (), order: Sequence[str] = (), limit: int | None = None, offset: int | None = None,
      distinct: bool = False, ctes: Sequence[tuple[str, Query]] = ()) -> Query:
    """Build a query from SQL fragments: ``frm`` holds "schema.table key" strings and
    ``(join keyword, "schema.table key", on condition(s))`` tuples; ``order`` items may end in ASC/DESC."""
    tables = []
    for item in frm:
        if isinstance(item, str):
            name, key = item.split()
            tables.append(Tbl(name, key))
        else:
            kw, decl, on = item
            name, key = decl.split()
            conds = [on] if isinstance(on, str) else list(on)
            tables.append(Tbl(name, key, kw, [parse_pred(c) for c in conds]))
    orders = []
    for item in order:
        m = re.match(r"^(.*?)\s+(ASC|DESC)$", item)
        orders.append((m.group(1), m.group(2)) if m else (item, ""))
    wh = [parse_pred(w) for w in where]
    hv = [parse_pred(h) for h in having]
    return Query(list(select), tables, wh, ["AND"] * max(0, len(wh) - 1), list(group), hv,
                 ["AND"] * max(0, len(hv) - 1), orders, limit, offset, distinct, list(ctes))


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------

RESERVED = {"all", "and", "any", "as", "asc", "by", "case", "cast", "desc", "do", "end", "for", "from", "in",
            "is", "on", "or", "to", "order", "group", "limit", "user", "with", "not", "only", "some",
            "table", "where", "select", "join", "left", "full", "cross", "using", "into", "array", "both"}


@dataclass
class Style:
    alias: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (alias|table|bare, alias name)
    use_as: bool = False
    layout: str = "clauses"  # line | clauses | indent
    case: str = "upper"  # upper | lower | title | mixed
    tight: bool = False  # no blanks around comparison operators and after commas
    ne: str = "<>"
    count1: bool = False
    pred_perm: int | None = None  # seed of a (non-identity) permutation of every conjunct list
    in_perm: int | None = None  # seed of a permutation of every IN list
    join_style: str = "explicit"  # explicit | inner | comma_first | comma_last | cross
    parens: str = ""  # "" | each | all | first2 | nested
    orient: str = ""  # "" | literals | columns | first
    col_perm: int | None = None
    case_seed: int = 0


def perm(n: int, seed: int) -> list[int]:
    order = list(range(n))
    if n < 2:
        return order
    rng = random.Random(seed)
    while order == list(range(n)):
        rng.shuffle(order)
    return order


def raw_aliases(q: Query) -> set[str]:
    """Identifiers used as qualifiers inside raw predicate texts (subquery aliases)."""
    names: set[str] = set()
    for sub in q.all_queries():
        preds = sub.where + sub.having + [p for t in sub.tables for p in t.on]
        for p in preds:
            if isinstance(p, Raw):
                names.update(re.findall(r"\b([a-z_][a-z0-9_]*)\.[a-z_]", p.text))
    return names


def has_subquery(q: Query) -> bool:
    for sub in q.all_queries():
        for p in sub.where + sub.having + [p for t in sub.tables for p in t.on]:
            if "SELECT" in render_pred_plain(p):
                return True
    return False


def render_pred_plain(p: Pred) -> str:
    if isinstance(p, Cmp):
        return f"{p.left} {p.op} {p.right}"
    if isinstance(p, InList):
        return f"{p.expr} {'NOT ' if p.negated else ''}IN ({', '.join(p.values)})"
    if isinstance(p, IsNull):
        return f"{p.expr} IS {'NOT ' if p.negated else ''}NULL"
    return p.text


def alias_modes(q: Query) -> list[str]:
    """Which alias modes the query allows: 'alias' always; 'table' (no alias, columns qualified
    by table name) if table names are unique; 'bare' (no qualifier) for a single-table query."""
    tables = q.all_tables()
    modes = ["alias"]
    bares = [t.bare for t in tables]
    if len(set(bares)) == len(bares) and not set(bares) & raw_aliases(q):
        modes.append("table")
    if len(tables) == 1 and not has_subquery(q) and not q.ctes:
        modes.append("bare")
    return modes


def alias_style(q: Query, mode: str) -> dict[str, tuple[str, str]]:
    return {t.key: (mode, t.key if mode == "alias" else "") for t in q.all_tables()}


def alternative_aliases(q: Query, current: dict[str, tuple[str, str]], rng: random.Random,
                        rename: str = "all") -> dict[str, tuple[str, str]]:
    tables = q.all_tables()
    taken = {name for mode, name in current.values() if mode == "alias"} | raw_aliases(q)
    taken |= {t.bare for t in tables}
    out = dict(current)
    keys = [t.key for t in tables]
    if rename == "one":
        keys = [rng.choice(keys)]
    for i, t in enumerate(tables):
        if t.key not in keys:
            continue
        old = current.get(t.key, ("alias", t.key))[1]
        cands = [*ALIAS_POOL.get(t.bare, []), t.key + "1", t.key + "2", f"t{i + 1}", t.bare[:3]]
        rng.shuffle(cands)
        for cand in cands:
            if cand != old and cand not in taken and cand not in RESERVED and cand.isidentifier():
                out[t.key] = ("alias", cand)
                taken.add(cand)
                break
    return out


# Aliases people and tools write for these tables (besides the template's own key, t1.., key1..).
ALIAS_POOL = {
    "customers": ["cust", "cu", "cs", "customer"], "orders": ["ord", "od", "ords"],
    "order_items": ["item", "li", "itm"],
    "products": ["prod", "pr", "pd"], "sales": ["sa", "sl", "sale"], "lineitem": ["li", "line", "lin"],
    "customer": ["cust", "cu"], "nation": ["na", "nat"], "region": ["re", "reg"], "supplier": ["su", "supp"],
    "part": ["pa", "pt"], "partsupp": ["psu", "psp"],
}

_REF = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*|\*)")


class Renderer:
    def __init__(self, q: Query, st: Style) -> None:
        self.q = q
        self.st = st
        self.qual: dict[str, str] = {}
        for t in q.all_tables():
            mode, name = st.alias.get(t.key, ("alias", t.key))
            self.qual[t.key] = {"alias": name, "table": t.bare, "bare": ""}[mode]
        self.in_count = 0
        self.list_count = 0

    def ref(self, text: str) -> str:
        def sub(part: str) -> str:
            def one(m: re.Match[str]) -> str:
                key, col = m.group(1), m.group(2)
                if key not in self.qual:
                    return m.group()
                q = self.qual[key]
                return f"{q}.{col}" if q else col
            return _REF.sub(one, part)
        return outside_quotes(text, sub)

    def op(self, op: str) -> str:
        return op if self.st.tight else f" {op} "

    def pred(self, p: Pred, flip: bool) -> str:
        if isinstance(p, Cmp):
            left, op, right = self.ref(p.left), p.op, self.ref(p.right)
            if flip:
                left, op, right = right, FLIP[op], left
            return f"{left}{self.op(op)}{right}"
        if isinstance(p, InList):
            values = list(p.values)
            if self.st.in_perm is not None and len(values) > 1:
                order = perm(len(values), self.st.in_perm + self.in_count)
                values = [values[i] for i in order]
            self.in_count += 1
            sep = "," if self.st.tight else ", "
            return f"{self.ref(p.expr)} {'NOT ' if p.negated else ''}IN ({sep.join(values)})"
        if isinstance(p, IsNull):
            return f"{self.ref(p.expr)} IS {'NOT ' if p.negated else ''}NULL"
        return self.ref(p.text)

    def flips(self, preds: list[Pred], where: bool) -> list[bool]:
        out = []
        first_done = False
        for p in preds:
            flip = False
            if isinstance(p, Cmp):
                lit = bool(LITERAL.match(p.right))
                cols = bool(COLUMN.match(p.left) and COLUMN.match(p.right))
                if self.st.orient == "literals" and lit and where:
                    flip = True
                elif self.st.orient == "columns" and cols:
                    flip = True
                elif self.st.orient == "first" and lit and where and not first_done:
                    flip = first_done = True
            out.append(flip)
        return out

    def conjunction(self, preds: list[Pred], conns: list[str], where: bool, parens: str = "") -> str:
        if not preds:
            return ""
        texts = [self.pred(p, f) for p, f in zip(preds, self.flips(preds, where), strict=True)]
        all_and = all(c == "AND" for c in conns)
        if all_and and self.st.pred_perm is not None and len(texts) > 1:
            order = perm(len(texts), self.st.pred_perm + self.list_count)
            texts = [texts[i] for i in order]
        self.list_count += 1
        if parens == "each":
            texts = [f"({t})" for t in texts]
        joiner = "\n    AND " if (self.st.layout == "indent" and where) else " AND "
        if not all_and:
            out = texts[0]
            for c, t in zip(conns, texts[1:], strict=True):
                out += f" {c} {t}"
            return out
        if parens == "first2" and len(texts) > 2:
            texts = [f"({texts[0]} AND {texts[1]})", *texts[2:]]
        if parens == "nested" and len(texts) > 1:
            out = texts[0]
            for t in texts[1:]:
                out = f"({out} AND {t})"
            return out
        out = joiner.join(texts)
        if parens == "all":
            out = f"({out})"
        return out

    def decl(self, t: Tbl) -> str:
        mode, name = self.st.alias.get(t.key, ("alias", t.key))
        if mode != "alias":
            return t.name
        return f"{t.name} AS {name}" if self.st.use_as else f"{t.name} {name}"

    def render(self, q: Query | None = None, indent: str = "") -> str:
        q = self.q if q is None else q
        st = self.st
        nl = "\n" if st.layout != "line" else " "
        parts: list[str] = []
        if q.ctes:
            ctes = []
            for name, sub in q.ctes:
                body = self.render(sub, indent + "    ")
                if st.layout == "line":
                    ctes.append(f"{name} AS ({body})")
                else:
                    ctes.append(f"{name} AS (\n{body}\n{indent})")
            parts.append(f"{indent}WITH " + ", ".join(ctes))
        select = [self.ref(s) for s in q.select]
        if st.col_perm is not None and len(select) > 1:
            order = perm(len(select), st.col_perm)
            select = [select[i] for i in order]
        if st.count1:
            select = [s.replace("COUNT(*)", "COUNT(1)") for s in select]
        head = "SELECT DISTINCT" if q.distinct else "SELECT"
        sep = "," if st.tight else ", "
        if st.layout == "indent":
            parts.append(f"{indent}{head}\n" + ",\n".join(f"{indent}    {s}" for s in select))
        else:
            parts.append(f"{indent}{head} " + sep.join(select))
        # FROM and joins
        comma = st.join_style in ("comma_first", "comma_last", "cross") and all(
            t.join in (None, "JOIN") for t in q.tables) and len(q.tables) > 1
        where_preds, where_conns, moved = list(q.where), list(q.conn), []
        if comma:
            moved = [p for t in q.tables for p in t.on]
            joiner = " CROSS JOIN " if st.join_style == "cross" else ", "
            frm = joiner.join(self.decl(t) for t in q.tables)
            parts.append(f"{indent}FROM {frm}" if st.layout != "indent" else f"{indent}FROM\n{indent}    {frm}")
        else:
            lines = [self.decl(q.tables[0])]
            for t in q.tables[1:]:
                kw = t.join or "JOIN"
                if kw == "JOIN" and st.join_style == "inner":
                    kw = "INNER JOIN"
                on_conns = ["AND"] * (len(t.on) - 1)
                lines.append(f"{kw} {self.decl(t)} ON {self.conjunction(t.on, on_conns, where=False)}")
            if st.layout == "line":
                parts.append(f"{indent}FROM " + " ".join(lines))
            elif st.layout == "clauses":
                parts.append(f"{indent}FROM {lines[0]}" + "".join(f"\n{indent}{x}" for x in lines[1:]))
            else:
                parts.append(f"{indent}FROM\n" + "\n".join(f"{indent}    {x}" for x in lines))
        if moved:
            if any(c != "AND" for c in where_conns):
                inner = self.conjunction(where_preds, where_conns, where=True)
                where_preds, where_conns = [Raw(f"({inner})")], []
            if st.join_style == "comma_last":
                where_preds = where_preds + moved
            else:
                where_preds = moved + where_preds
            where_conns = ["AND"] * (len(where_preds) - 1)
        if where_preds:
            body = self.conjunction(where_preds, where_conns, where=True, parens=st.parens)
            parts.append(f"{indent}WHERE {body}" if st.layout != "indent" else f"{indent}WHERE\n{indent}    {body}")
        if q.group:
            body = sep.join(self.ref(g) for g in q.group)
            parts.append(f"{indent}GROUP BY {body}")
        if q.having:
            body = self.conjunction(q.having, q.hconn, where=True, parens=st.parens if not where_preds else "")
            if st.count1:
                body = body.replace("COUNT(*)", "COUNT(1)")
            parts.append(f"{indent}HAVING {body}")
        if q.order:
            items = []
            for expr, direction in q.order:
                e = self.ref(expr)
                if st.count1:
                    e = e.replace("COUNT(*)", "COUNT(1)")
                items.append(f"{e} {direction}" if direction else e)
            parts.append(f"{indent}ORDER BY " + sep.join(items))
        if q.limit is not None:
            parts.append(f"{indent}LIMIT {q.limit}")
        if q.offset is not None:
            parts.append(f"{indent}OFFSET {q.offset}")
        return nl.join(parts) if st.layout != "line" else " ".join(p.strip() for p in parts)


def apply_case(sql: str, case: str, seed: int) -> str:
    if case == "upper":
        return sql
    rng = random.Random(seed)

    def word(m: re.Match[str]) -> str:
        w = m.group()
        if case == "lower":
            return w.lower()
        if case == "title":
            return w.capitalize()
        return rng.choice([w.lower(), w, w.capitalize()])

    return outside_quotes(sql, lambda part: re.sub(r"\b[A-Z][A-Z_]*\b", word, part))


def render(q: Query, st: Style) -> str:
    sql = Renderer(q, st).render()
    if st.ne == "!=":
        sql = outside_quotes(sql, lambda part: part.replace("<>", "!="))
    sql = apply_case(sql, st.case, st.case_seed)
    return "\n".join(line.rstrip() for line in sql.split("\n"))


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


TemplateFn = Callable[[dict[str, Any]], "Query"]


@dataclass
class Template:
    name: str
    fn: Callable[[dict[str, Any]], Query]
    params: dict[str, tuple[str, Any]]
    swap: list[tuple[str, str]]


TEMPLATES: list[Template] = []


def template(swap: Sequence[tuple[str, str]] = (), **params: tuple[str, Any]) -> Callable[[TemplateFn], TemplateFn]:
    """Register a base query (named after its function). Parameter kinds: lit (one literal), lim (a
    LIMIT / OFFSET count), col (a column), table, agg, grp (grouping column), join (JOIN / LEFT JOIN),
    distinct, list (``(pool, size)``: an IN list of ``size`` values from ``pool``)."""
    def deco(fn: TemplateFn) -> TemplateFn:
        TEMPLATES.append(Template(fn.__name__, fn, params, list(swap)))
        return fn
    return deco


def q_(values: list[str]) -> list[str]:
    return [f"'{v}'" for v in values]


def inl(values: list[str]) -> str:
    return ", ".join(values)


def lit(*values: Any) -> tuple[str, list[str]]:
    return ("lit", [str(v) for v in values])


def nlit(*values: int) -> tuple[str, list[str]]:
    return ("lim", [str(v) for v in values])


def qlit(*values: str) -> tuple[str, list[str]]:
    return ("lit", q_(list(values)))


def dlit(*values: str) -> tuple[str, list[str]]:
    return ("lit", [f"DATE '{v}'" for v in values])


def tslit(*values: str) -> tuple[str, list[str]]:
    return ("lit", [f"TIMESTAMP '{v}'" for v in values])


COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "JP"]
SEGMENTS = ["consumer", "corporate", "home_office"]
STATUSES = ["pending", "shipped", "delivered", "cancelled", "returned"]
CHANNELS = ["web", "mobile", "store"]
CATEGORIES = ["electronics", "books", "toys", "garden", "kitchen", "sports"]
SALES_REGIONS = ["north", "south", "east", "west", "central"]
CITIES = ["Paris", "Lyon", "Berlin", "Munich", "Hamburg", "New York", "Chicago", "Austin", "London", "Manchester",
          "Madrid", "Amsterdam", "Tokyo", "Milan"]
MIDNIGHTS = ["2023-03-02", "2023-04-01", "2023-05-31", "2023-07-10", "2023-09-08", "2023-11-17", "2024-01-06",
             "2024-02-15", "2024-04-05", "2024-06-04", "2024-08-13", "2024-10-02"]
MKT_SEGMENTS = ["AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY"]
TPCH_REGIONS = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
NATIONS = ["FRANCE", "GERMANY", "BRAZIL", "CANADA", "JAPAN", "CHINA", "INDIA", "KENYA", "PERU", "RUSSIA"]
SHIPMODES = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"]
PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
TPCH_DATES = ["1993-01-01", "1993-07-01", "1994-01-01", "1994-07-01", "1995-01-01", "1995-07-01", "1996-01-01",
              "1996-07-01", "1997-01-01"]

# ---- qc_sem: customers ----------------------------------------------------------------------------


@template(id=lit(7, 12, 25, 42, 77, 103, 150, 188),
          col=("col", ["c.email", "c.city", "c.signup_date", "c.credit_limit"]))
def customer_point_lookup(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", p["col"]], ["qc_sem.customers c"], [f"c.id = {p['id']}"])


@template(country=qlit(*COUNTRIES), segment=qlit(*SEGMENTS),
          col=("col", ["c.email", "c.city", "c.signup_date"]))
def customers_by_country_segment(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", p["col"]], ["qc_sem.customers c"],
             [f"c.country = {p['country']}", f"c.segment = {p['segment']}"], order=["c.id"])


@template(limit_=lit(1000, 1500, 2500, 3000, 4000), country=qlit(*COUNTRIES),
          n=nlit(5, 10, 20))
def customers_credit_top(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "c.credit_limit"], ["qc_sem.customers c"],
             ["c.is_active", f"c.credit_limit >= {p['limit_']}", f"c.country <> {p['country']}"],
             order=["c.credit_limit DESC", "c.id"], limit=int(p["n"]))


@template(d=dlit("2022-06-01", "2023-01-01", "2023-06-01", "2024-01-01"),
          grp=("grp", ["c.country", "c.segment", "c.city"]))
def customers_count_by_group(p: dict[str, Any]) -> Query:
    return Q([p["grp"], "COUNT(*) AS customers"], ["qc_sem.customers c"], [f"c.signup_date >= {p['d']}"],
             group=[p["grp"]], order=[p["grp"]])


@template(countries=("list", (q_(COUNTRIES), 3)))
def customers_missing_email(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "c.country"], ["qc_sem.customers c"],
             ["c.email IS NULL", f"c.country IN ({inl(p['countries'])})"], order=["c.id"])


@template(d=dlit("2022-09-01", "2023-03-01", "2023-09-01", "2024-03-01"),
          dist=("distinct", [True, False]))
def customers_distinct_country_segment(p: dict[str, Any]) -> Query:
    return Q(["c.country", "c.segment"], ["qc_sem.customers c"], ["c.is_active", f"c.signup_date < {p['d']}"],
             distinct=p["dist"])


@template(country=qlit(*COUNTRIES), jt=("join", ["JOIN", "LEFT JOIN"]))
def customers_referrer_self_join(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "r.name AS referrer"],
             ["qc_sem.customers c", (p["jt"], "qc_sem.customers r", "r.id = c.referred_by")],
             [f"c.country = {p['country']}"], order=["c.id"])


@template(min_id=lit(100, 150, 170, 175), jt=("join", ["LEFT JOIN", "JOIN"]),
          segment=qlit(*SEGMENTS))
def customers_order_counts(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "COUNT(o.id) AS order_count"],
             ["qc_sem.customers c", (p["jt"], "qc_sem.orders o", "o.customer_id = c.id")],
             [f"c.id > {p['min_id']}", f"c.segment = {p['segment']}"], group=["c.id", "c.name"], order=["c.id"])


@template(countries=("list", (q_(COUNTRIES), 3)),
          grp=("grp", ["c.segment", "c.country", "c.is_active"]))
def customers_signup_year_segment(p: dict[str, Any]) -> Query:
    return Q(["EXTRACT(YEAR FROM c.signup_date) AS yr", p["grp"], "COUNT(*) AS n"], ["qc_sem.customers c"],
             [f"c.country IN ({inl(p['countries'])})"], group=["EXTRACT(YEAR FROM c.signup_date)", p["grp"]],
             order=["yr", p["grp"]])


@template(pat=qlit("a%", "m%", "%1@%", "%5@example.com", "t%"), city=qlit(*CITIES))
def customers_email_like(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "c.email"], ["qc_sem.customers c"],
             [f"c.email LIKE {p['pat']}", f"c.city <> {p['city']}"], order=["c.id"])


@template(country=qlit(*COUNTRIES), n=nlit(5, 10, 15), off=nlit(5, 10, 20))
def customers_page(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "c.city"], ["qc_sem.customers c"], [f"c.country = {p['country']}"],
             order=["c.name", "c.id"], limit=int(p["n"]), offset=int(p["off"]))


@template(lo=lit(1000, 1500, 2000), hi=lit(3000, 3500, 4500), segment=qlit(*SEGMENTS),
          swap=[("lo", "hi")])
def customers_credit_band(p: dict[str, Any]) -> Query:
    return Q(["c.id", "c.name", "c.credit_limit", "c.segment"], ["qc_sem.customers c"],
             [f"c.credit_limit > {p['lo']}", f"c.credit_limit < {p['hi']}", f"c.segment <> {p['segment']}"],
             order=["c.credit_limit", "c.id"])


# ---- qc_sem: orders -------------------------------------------------------------------------------


@template(status=qlit(*STATUSES), amt=lit(100, 250, 500, 1000), n=nlit(10, 20, 25),
          col=("col", ["o.total", "o.created_at"]))
def orders_by_status_top(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.customer_id", "o.total", "o.created_at"], ["qc_sem.orders o"],
             [f"o.status = {p['status']}", f"o.total > {p['amt']}"], order=[f"{p['col']} DESC", "o.id"],
             limit=int(p["n"]))


@template(t1=tslit(*[f"{d} 00:00:00" for d in MIDNIGHTS[:6]]),
          t2=tslit(*[f"{d} 00:00:00" for d in MIDNIGHTS[6:]]), ch=qlit(*CHANNELS), swap=[("t1", "t2")])
def orders_time_window(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.status", "o.total"], ["qc_sem.orders o"],
             [f"o.created_at >= {p['t1']}", f"o.created_at < {p['t2']}", f"o.channel = {p['ch']}"],
             order=["o.created_at", "o.id"])


@template(status=qlit(*STATUSES), agg=("agg", ["SUM", "AVG", "MAX", "MIN"]),
          t=tslit("2023-07-01", "2024-01-01", "2024-04-01"))
def orders_monthly_revenue(p: dict[str, Any]) -> Query:
    return Q(["DATE_TRUNC('month', o.created_at) AS month", "COUNT(*) AS orders", f"{p['agg']}(o.total) AS revenue"],
             ["qc_sem.orders o"], [f"o.status <> {p['status']}", f"o.created_at >= {p['t']}"],
             group=["DATE_TRUNC('month', o.created_at)"], order=["month"])


@template(statuses=("list", (q_(STATUSES), 3)), k=lit(50, 100, 150),
          agg=("agg", ["AVG", "SUM", "MAX"]))
def orders_channel_stats(p: dict[str, Any]) -> Query:
    return Q(["o.channel", "COUNT(*) AS n_orders", f"{p['agg']}(o.total) AS total_value"], ["qc_sem.orders o"],
             [f"o.status IN ({inl(p['statuses'])})"], group=["o.channel"], having=[f"COUNT(*) > {p['k']}"])


@template(pr=lit(1, 2, 3, 4), n=nlit(10, 15, 30), ch=qlit(*CHANNELS))
def orders_with_coupon(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.coupon_code", "o.total"], ["qc_sem.orders o"],
             ["o.coupon_code IS NOT NULL", f"o.priority <= {p['pr']}", f"o.channel <> {p['ch']}"],
             order=["o.id"], limit=int(p["n"]))


@template(status=qlit("pending", "cancelled"), ch=qlit(*CHANNELS), pr=lit(2, 3, 4))
def orders_unshipped(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.customer_id", "o.status"], ["qc_sem.orders o"],
             ["o.shipped_at IS NULL", f"o.status <> {p['status']}", f"o.channel = {p['ch']}",
              f"o.priority > {p['pr']}"], order=["o.id"])


@template(q1=lit(1, 2, 3), q2=lit(3, 4, 5), ch=qlit(*CHANNELS), swap=[("q1", "q2")])
def orders_priority_month(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.priority", "o.total"], ["qc_sem.orders o"],
             [f"o.priority > {p['q1']}", f"EXTRACT(MONTH FROM o.created_at) < {p['q2']}", f"o.channel = {p['ch']}"],
             order=["o.id"])


@template(cid=lit(3, 17, 38, 64, 99, 120, 177))
def orders_customer_history(p: dict[str, Any]) -> Query:
    return Q(["o.id", "COALESCE(o.coupon_code, 'NONE') AS coupon", "o.total", "o.status"], ["qc_sem.orders o"],
             [f"o.customer_id = {p['cid']}"], order=["o.created_at DESC", "o.id"])


@template(pr=lit(1, 2, 3, 4, 5), ch=qlit(*CHANNELS), n=nlit(20, 30))
def orders_size_bucket(p: dict[str, Any]) -> Query:
    return Q(["o.id", "CASE WHEN o.total > 1000 THEN 'large' ELSE 'small' END AS size", "o.status"],
             ["qc_sem.orders o"], [f"o.priority = {p['pr']}", f"o.channel = {p['ch']}"], order=["o.id"],
             limit=int(p["n"]))


@template(t=tslit("2023-06-01", "2023-10-01", "2024-02-01"),
          cd=("distinct", ["DISTINCT ", ""]))
def orders_distinct_customers_by_status(p: dict[str, Any]) -> Query:
    return Q(["o.status", f"COUNT({p['cd']}o.customer_id) AS customers"], ["qc_sem.orders o"],
             [f"o.created_at < {p['t']}"], group=["o.status"], order=["o.status"])


@template(statuses=("list", (q_(STATUSES), 2)), amt=lit(2000, 3000, 5000), n=nlit(5, 10))
def orders_big_spenders(p: dict[str, Any]) -> Query:
    return Q(["o.customer_id", "SUM(o.total) AS spent"], ["qc_sem.orders o"],
             [f"o.status IN ({inl(p['statuses'])})"], group=["o.customer_id"], having=[f"SUM(o.total) > {p['amt']}"],
             order=["spent DESC", "o.customer_id"], limit=int(p["n"]))


@template(cids=("list", (["5", "17", "23", "42", "64", "88", "120"], 3)))
def orders_rank_per_customer(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.customer_id", "o.total",
              "ROW_NUMBER() OVER (PARTITION BY o.customer_id ORDER BY o.total DESC, o.id) AS rn"],
             ["qc_sem.orders o"], [f"o.customer_id IN ({inl(p['cids'])})"], order=["o.customer_id", "rn"])


@template(country=qlit(*COUNTRIES), status=qlit(*STATUSES))
def orders_in_country_subquery(p: dict[str, Any]) -> Query:
    return Q(["o.id", "o.total"], ["qc_sem.orders o"],
             [f"o.customer_id IN (SELECT cx.id FROM qc_sem.customers cx WHERE cx.country = {p['country']})",
              f"o.status = {p['status']}"], order=["o.id"])


@template(status=qlit(*STATUSES), grp=("grp", ["o.channel", "o.priority"]))
def orders_weekday_profile(p: dict[str, Any]) -> Query:
    return Q(["EXTRACT(DOW FROM o.created_at) AS dow", p["grp"], "COUNT(*) AS orders"], ["qc_sem.orders o"],
             [f"o.status = {p['status']}"], group=["EXTRACT(DOW FROM o.created_at)", p["grp"]],
             order=["dow", p["grp"]])


# ---- qc_sem: joins --------------------------------------------------------------------------------


@template(country=qlit(*COUNTRIES), status=qlit(*STATUSES), amt=lit(200, 500, 800))
def orders_join_customers(p: dict[str, Any]) -> Query:
    return Q(["o.id", "c.name", "c.country", "o.total"],
             ["qc_sem.orders o", ("JOIN", "qc_sem.customers c", "c.id = o.customer_id")],
             [f"c.country = {p['country']}", f"o.status = {p['status']}", f"o.total >= {p['amt']}"], order=["o.id"])


@template(agg=("agg", ["SUM", "AVG", "MAX"]), k=lit(20, 40, 60),
          statuses=("list", (q_(STATUSES), 2)))
def revenue_by_country(p: dict[str, Any]) -> Query:
    return Q(["c.country", f"{p['agg']}(o.total) AS revenue", "COUNT(*) AS orders"],
             ["qc_sem.orders o", ("JOIN", "qc_sem.customers c", "c.id = o.customer_id")],
             [f"o.status IN ({inl(p['statuses'])})"], group=["c.country"], having=[f"COUNT(*) > {p['k']}"],
             order=["revenue DESC", "c.country"])


@template(status=qlit(*STATUSES), t=tslit("2023-04-01", "2023-09-01", "2024-03-01"),
          agg=("agg", ["SUM", "AVG", "MAX"]))
def category_sales_for_status(p: dict[str, Any]) -> Query:
    return Q(["p.category", f"{p['agg']}(oi.quantity) AS units", "SUM(oi.quantity * oi.unit_price) AS gross"],
             ["qc_sem.order_items oi", ("JOIN", "qc_sem.orders o", "o.id = oi.order_id"),
              ("JOIN", "qc_sem.products p", "p.id = oi.product_id")],
             [f"o.status = {p['status']}", f"o.created_at >= {p['t']}"], group=["p.category"], order=["p.category"])


@template(segment=qlit(*SEGMENTS), cats=("list", (q_(CATEGORIES), 3)),
          ch=qlit(*CHANNELS), cd=("distinct", ["DISTINCT ", ""]))
def country_category_matrix(p: dict[str, Any]) -> Query:
    return Q(["c.country", "p.category", f"COUNT({p['cd']}o.id) AS orders", "SUM(oi.quantity) AS units"],
             ["qc_sem.customers c", ("JOIN", "qc_sem.orders o", "o.customer_id = c.id"),
              ("JOIN", "qc_sem.order_items oi", "oi.order_id = o.id"),
              ("JOIN", "qc_sem.products p", "p.id = oi.product_id")],
             [f"c.segment = {p['segment']}", f"p.category IN ({inl(p['cats'])})", f"o.channel <> {p['ch']}"],
             group=["c.country", "p.category"], order=["c.country", "p.category"])


@template(oid=lit(2, 14, 57, 240, 611, 999, 1164))
def order_lines_detail(p: dict[str, Any]) -> Query:
    return Q(["oi.id", "p.name", "oi.quantity", "oi.unit_price"],
             ["qc_sem.order_items oi", ("JOIN", "qc_sem.products p", "p.id = oi.product_id")],
             [f"oi.order_id = {p['oid']}"], order=["oi.id"])


@template(cat=qlit(*CATEGORIES), jt=("join", ["LEFT JOIN", "JOIN"]))
def product_units_sold(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "SUM(oi.quantity) AS units"],
             ["qc_sem.products p", (p["jt"], "qc_sem.order_items oi", "oi.product_id = p.id")],
             [f"p.category = {p['cat']}"], group=["p.id", "p.name"], order=["p.id"])


@template(status=qlit(*STATUSES), dist=("distinct", [True, False]), ch=qlit(*CHANNELS))
def cities_with_orders(p: dict[str, Any]) -> Query:
    return Q(["c.city"], ["qc_sem.customers c", ("JOIN", "qc_sem.orders o", "o.customer_id = c.id")],
             [f"o.status = {p['status']}", f"o.channel = {p['ch']}"], distinct=p["dist"])


@template(q=lit(2, 3, 4, 5), agg=("agg", ["AVG", "MAX", "SUM"]),
          cnt=("agg", ["COUNT(oi.discount)", "COUNT(*)"]))
def discount_by_category(p: dict[str, Any]) -> Query:
    return Q(["p.category", f"{p['agg']}(oi.discount) AS discount", f"{p['cnt']} AS lines"],
             ["qc_sem.order_items oi", ("JOIN", "qc_sem.products p", "p.id = oi.product_id")],
             [f"oi.quantity > {p['q']}"], group=["p.category"], order=["p.category"])


@template(q=lit(2, 3, 4), cnt=("agg", ["COUNT(*)", "COUNT(oi.discount)"]), n=nlit(10, 20),
          min_order=lit(100, 500, 900))
def order_line_counts(p: dict[str, Any]) -> Query:
    return Q(["oi.order_id", f"{p['cnt']} AS n_lines"], ["qc_sem.order_items oi"],
             [f"oi.quantity >= {p['q']}", f"oi.order_id > {p['min_order']}"], group=["oi.order_id"],
             order=["oi.order_id"], limit=int(p["n"]))


@template(k=lit(4, 6, 8), n=nlit(5, 10, 15), status=qlit("cancelled", "returned", "pending"))
def top_customers_cte(p: dict[str, Any]) -> Query:
    cte = Q(["o.customer_id", "SUM(o.total) AS spent", "COUNT(*) AS orders"], ["qc_sem.orders o"],
            [f"o.status <> {p['status']}"], group=["o.customer_id"])
    return Q(["c.name", "c.country", "t.spent"],
             ["customer_totals t", ("JOIN", "qc_sem.customers c", "c.id = t.customer_id")],
             [f"t.orders >= {p['k']}"], order=["t.spent DESC", "c.id"], limit=int(p["n"]),
             ctes=[("customer_totals", cte)])


@template(status=qlit(*STATUSES), countries=("list", (q_(COUNTRIES), 3)))
def country_order_share_cte(p: dict[str, Any]) -> Query:
    cte = Q(["c.country", "COUNT(*) AS orders"],
            ["qc_sem.orders o", ("JOIN", "qc_sem.customers c", "c.id = o.customer_id")],
            [f"o.status = {p['status']}"], group=["c.country"])
    return Q(["x.country", "x.orders"], ["per_country x"], [f"x.country IN ({inl(p['countries'])})"],
             order=["x.country"], ctes=[("per_country", cte)])


# ---- qc_sem: products -----------------------------------------------------------------------------


@template(lo=lit(20, 40, 60), hi=lit(100, 150, 180), cat=qlit(*CATEGORIES),
          swap=[("lo", "hi")])
def products_price_between(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "p.price"], ["qc_sem.products p"],
             [f"p.price BETWEEN {p['lo']} AND {p['hi']}", f"p.category = {p['cat']}"], order=["p.price", "p.id"])


@template(price=lit(41, 53, 97, 121), stock=lit(18, 59, 89, 111), swap=[("price", "stock")])
def products_cheap_in_stock(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "p.price", "p.stock"], ["qc_sem.products p"],
             [f"p.price < {p['price']}", f"p.stock > {p['stock']}", "NOT p.discontinued"], order=["p.id"])


@template(col=("col", ["p.brand", "p.weight_kg"]), cat=qlit(*CATEGORIES))
def products_missing_attribute(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "p.category"], ["qc_sem.products p"],
             [f"{p['col']} IS NULL", f"p.category <> {p['cat']}"], order=["p.id"])


@template(cat=qlit(*CATEGORIES), n=nlit(5, 8, 12), col=("col", ["p.stock", "p.price", "p.released_on"]))
def products_top_by(p: dict[str, Any]) -> Query:
    return Q(["p.name", "p.stock", "p.price"], ["qc_sem.products p"], [f"p.category <> {p['cat']}"],
             order=[f"{p['col']} DESC", "p.id"], limit=int(p["n"]))


@template(k=lit(14, 17, 25), brand=qlit("Acme", "Globex", "Initech", "Umbrella", "Stark"))
def category_price_stats(p: dict[str, Any]) -> Query:
    return Q(["p.category", "MIN(p.price) AS min_price", "MAX(p.price) AS max_price", "COUNT(*) AS products"],
             ["qc_sem.products p"], ["p.discontinued = FALSE", f"p.brand <> {p['brand']}"], group=["p.category"],
             having=[f"COUNT(*) >= {p['k']}"], order=["p.category"])


@template(cat=qlit(*CATEGORIES), ch=qlit(*CHANNELS))
def products_never_ordered(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name"], ["qc_sem.products p"],
             [f"p.id NOT IN (SELECT x.product_id FROM qc_sem.order_items x JOIN qc_sem.orders y ON y.id = x.order_id "
              f"WHERE y.channel = {p['ch']})", f"p.category <> {p['cat']}"], order=["p.id"])


@template(t=tslit("2024-06-01", "2024-09-01", "2024-11-01"), price=lit(50, 100, 150))
def products_recently_ordered(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "p.price"], ["qc_sem.products p"],
             ["EXISTS (SELECT 1 FROM qc_sem.order_items x JOIN qc_sem.orders y ON y.id = x.order_id "
              f"WHERE x.product_id = p.id AND y.created_at >= {p['t']})", f"p.price > {p['price']}"], order=["p.id"])


@template(cat=qlit(*CATEGORIES), brands=("list", (q_(["Acme", "Globex", "Initech",
                                                                                       "Umbrella", "Stark"]), 3)))
def products_above_category_avg(p: dict[str, Any]) -> Query:
    return Q(["p.id", "p.name", "p.price"], ["qc_sem.products p"],
             [f"p.price > (SELECT AVG(px.price) FROM qc_sem.products px WHERE px.category = {p['cat']})",
              f"p.brand IN ({inl(p['brands'])})"], order=["p.id"])


@template(cats=("list", (q_(CATEGORIES), 2)), dist=("distinct", [True, False]),
          stock=lit(50, 100, 150))
def products_brand_catalog(p: dict[str, Any]) -> Query:
    return Q(["p.brand", "p.category"], ["qc_sem.products p"],
             [f"p.category IN ({inl(p['cats'])})", f"p.stock > {p['stock']}"], distinct=p["dist"])


# ---- qc_sem: sales --------------------------------------------------------------------------------


@template(ch=qlit(*CHANNELS), agg=("agg", ["SUM", "AVG", "MAX"]),
          grp=("grp", ["s.region", "s.channel", "s.rep_name"]))
def sales_region_year(p: dict[str, Any]) -> Query:
    return Q([p["grp"], "EXTRACT(YEAR FROM s.sale_date) AS yr", f"{p['agg']}(s.amount) AS revenue"], ["qc_sem.sales s"],
             [f"s.channel <> {p['ch']}"], group=[p["grp"], "EXTRACT(YEAR FROM s.sale_date)"], order=[p["grp"], "yr"])


@template(d1=dlit("2023-01-15", "2023-04-01", "2023-07-01"),
          d2=dlit("2023-10-01", "2024-01-01", "2024-06-30"), col=("col", ["s.amount", "s.quantity"]),
          swap=[("d1", "d2")])
def sales_rep_performance(p: dict[str, Any]) -> Query:
    return Q(["s.rep_name", "COUNT(*) AS deals", f"SUM({p['col']}) AS volume"], ["qc_sem.sales s"],
             [f"s.sale_date >= {p['d1']}", f"s.sale_date < {p['d2']}", "s.rep_name IS NOT NULL"],
             group=["s.rep_name"], order=["volume DESC", "s.rep_name"])


@template(amt=lit(500, 1000, 1500), q=lit(3, 5, 8), n=nlit(10, 20))
def sales_big_deals(p: dict[str, Any]) -> Query:
    return Q(["s.id", "s.sale_date", "s.amount"], ["qc_sem.sales s"],
             [f"s.amount > {p['amt']}", f"s.quantity >= {p['q']}"], order=["s.amount DESC", "s.id"], limit=int(p["n"]))


@template(q1=lit(2, 3, 4), q2=lit(6, 7, 8), region=qlit(*SALES_REGIONS),
          swap=[("q1", "q2")])
def sales_quantity_window(p: dict[str, Any]) -> Query:
    return Q(["s.id", "s.quantity", "s.amount"], ["qc_sem.sales s"],
             [f"s.quantity > {p['q1']}", f"s.quantity < {p['q2']}", f"s.region = {p['region']}"], order=["s.id"])


@template(region=qlit(*SALES_REGIONS), jt=("join", ["LEFT JOIN", "JOIN"]))
def sales_by_customer_country(p: dict[str, Any]) -> Query:
    return Q(["c.country", "COUNT(*) AS sales_count", "SUM(s.amount) AS revenue"],
             ["qc_sem.sales s", (p["jt"], "qc_sem.customers c", "c.id = s.customer_id")],
             [f"s.region = {p['region']}"], group=["c.country"], order=["c.country"])


@template(region=qlit(*SALES_REGIONS),
          cnt=("agg", ["COUNT(*)", "COUNT(s.customer_id)", "COUNT(s.rep_name)"]))
def sales_counts_nullable(p: dict[str, Any]) -> Query:
    return Q(["s.channel", f"{p['cnt']} AS cnt"], ["qc_sem.sales s"], [f"s.region = {p['region']}"],
             group=["s.channel"], order=["s.channel"])


@template(region=qlit(*SALES_REGIONS), amt=lit(3000, 6000, 9000),
          agg=("agg", ["SUM", "AVG", "MAX"]))
def sales_monthly_cte(p: dict[str, Any]) -> Query:
    cte = Q(["DATE_TRUNC('month', s.sale_date) AS month", f"{p['agg']}(s.amount) AS revenue"], ["qc_sem.sales s"],
            [f"s.region = {p['region']}"], group=["DATE_TRUNC('month', s.sale_date)"])
    return Q(["m.month", "m.revenue"], ["monthly m"], [f"m.revenue > {p['amt']}"], order=["m.month"],
             ctes=[("monthly", cte)])


@template(d1=dlit("2023-02-01", "2023-05-01", "2023-08-01"),
          d2=dlit("2023-12-31", "2024-03-31", "2024-09-30"), grp=("grp", ["s.region", "s.channel", "s.rep_name"]),
          swap=[("d1", "d2")])
def sales_region_channel(p: dict[str, Any]) -> Query:
    return Q([p["grp"], "SUM(s.quantity) AS units"], ["qc_sem.sales s"],
             [f"s.sale_date BETWEEN {p['d1']} AND {p['d2']}"], group=[p["grp"]], order=[p["grp"]])


# ---- qc_sem: same query on another table / join partner -----------------------------------------


@template(table=("table", ["qc_sem.order_items", "qc_sem.sales"]), pid=lit(10, 20, 30))
def units_per_product_source(p: dict[str, Any]) -> Query:
    return Q(["t.product_id", "SUM(t.quantity) AS units"], [f"{p['table']} t"], [f"t.product_id <= {p['pid']}"],
             group=["t.product_id"], order=["t.product_id"])


@template(table=("table", ["qc_sem.customers", "qc_sem.products"]), lo=lit(5, 40, 80),
          hi=lit(20, 60, 100))
def id_name_range(p: dict[str, Any]) -> Query:
    return Q(["x.id", "x.name"], [f"{p['table']} x"], [f"x.id BETWEEN {p['lo']} AND {p['hi']}"], order=["x.id"])


@template(table=("table", ["qc_sem.orders", "qc_sem.sales"]),
          cid=lit(11, 29, 58, 87, 116, 145))
def channel_mix_for_customer(p: dict[str, Any]) -> Query:
    return Q(["t.channel", "COUNT(*) AS n"], [f"{p['table']} t"], [f"t.customer_id = {p['cid']}"],
             group=["t.channel"], order=["t.channel"])


@template(table=("table", ["qc_sem.orders", "qc_sem.sales"]), ch=qlit(*CHANNELS))
def buyers_per_country(p: dict[str, Any]) -> Query:
    return Q(["c.country", "COUNT(DISTINCT c.id) AS buyers"],
             ["qc_sem.customers c", ("JOIN", f"{p['table']} t", "t.customer_id = c.id")],
             [f"t.channel = {p['ch']}"], group=["c.country"], order=["c.country"])


@template(table=("table", ["qc_sem.order_items", "qc_sem.sales"]), q=lit(3, 4, 5),
          cat=qlit(*CATEGORIES))
def product_lines_priced(p: dict[str, Any]) -> Query:
    return Q(["p.name", "t.quantity", "t.unit_price"],
             [f"{p['table']} t", ("JOIN", "qc_sem.products p", "p.id = t.product_id")],
             [f"t.quantity > {p['q']}", f"p.category = {p['cat']}"], order=["t.id"], limit=15)


@template(table=("table", ["qc_sem.orders", "qc_sem.sales"]), cids=("list", ([str(c) for c in range(3, 200, 11)], 4)))
def activity_for_customers(p: dict[str, Any]) -> Query:
    return Q(["t.id", "t.customer_id", "t.channel"], [f"{p['table']} t"],
             [f"t.customer_id IN ({inl(p['cids'])})"], order=["t.id"], limit=20)


@template(table=("table", ["qc_sem.order_items", "qc_sem.sales"]), n=nlit(5, 10))
def discounted_lines_per_product(p: dict[str, Any]) -> Query:
    return Q(["t.product_id", "COUNT(*) AS lines"], [f"{p['table']} t"], ["t.discount > 0"],
             group=["t.product_id"], order=["lines DESC", "t.product_id"], limit=int(p["n"]))


@template(table=("table", ["qc_sem.order_items", "qc_sem.sales"]), price=lit(50, 100, 150))
def gross_by_category_source(p: dict[str, Any]) -> Query:
    return Q(["p.category", "SUM(t.quantity * t.unit_price) AS gross"],
             ["qc_sem.products p", ("JOIN", f"{p['table']} t", "t.product_id = p.id")],
             [f"p.price > {p['price']}"], group=["p.category"], order=["p.category"])


@template(extra=("grp", ["", ", c.segment", ", c.city", ", c.is_active"]), d=dlit("2022-06-01", "2023-01-01"))
def customers_per_country_hidden_group(p: dict[str, Any]) -> Query:
    return Q(["c.country", "COUNT(*) AS customers"], ["qc_sem.customers c"], [f"c.signup_date >= {p['d']}"],
             group=[f"c.country{p['extra']}"])


# ---- qc_tpch ---------------------------------------------------------------------------------------


@template(d=dlit("1994-06-30", "1995-06-17", "1996-12-01", "1998-09-02"))
def tpch_q1_pricing_summary(p: dict[str, Any]) -> Query:
    return Q(["l.l_returnflag", "l.l_linestatus", "SUM(l.l_quantity) AS sum_qty",
              "SUM(l.l_extendedprice) AS sum_base_price",
              "SUM(l.l_extendedprice * (1 - l.l_discount)) AS sum_disc_price",
              "AVG(l.l_quantity) AS avg_qty", "COUNT(*) AS count_order"], ["qc_tpch.lineitem l"],
             [f"l.l_shipdate <= {p['d']}"], group=["l.l_returnflag", "l.l_linestatus"],
             order=["l.l_returnflag", "l.l_linestatus"])


@template(seg=qlit(*MKT_SEGMENTS), d1=dlit("1995-03-15", "1994-03-15", "1996-03-15"),
          d2=dlit("1995-03-15", "1994-03-15", "1996-03-15"), n=nlit(10, 20))
def tpch_q3_shipping_priority(p: dict[str, Any]) -> Query:
    return Q(["l.l_orderkey", "SUM(l.l_extendedprice * (1 - l.l_discount)) AS revenue", "o.o_orderdate",
              "o.o_shippriority"],
             ["qc_tpch.customer c", ("JOIN", "qc_tpch.orders o", "c.c_custkey = o.o_custkey"),
              ("JOIN", "qc_tpch.lineitem l", "l.l_orderkey = o.o_orderkey")],
             [f"c.c_mktsegment = {p['seg']}", f"o.o_orderdate < {p['d1']}", f"l.l_shipdate > {p['d2']}"],
             group=["l.l_orderkey", "o.o_orderdate", "o.o_shippriority"],
             order=["revenue DESC", "o.o_orderdate", "l.l_orderkey"], limit=int(p["n"]))


@template(region=qlit(*TPCH_REGIONS), d1=dlit("1993-01-01", "1994-01-01", "1995-01-01"),
          d2=dlit("1996-01-01", "1997-01-01", "1998-01-01"), swap=[("d1", "d2")])
def tpch_q5_local_supplier_volume(p: dict[str, Any]) -> Query:
    return Q(["n.n_name", "SUM(l.l_extendedprice * (1 - l.l_discount)) AS revenue"],
             ["qc_tpch.customer c", ("JOIN", "qc_tpch.orders o", "c.c_custkey = o.o_custkey"),
              ("JOIN", "qc_tpch.lineitem l", "l.l_orderkey = o.o_orderkey"),
              ("JOIN", "qc_tpch.supplier s", ["l.l_suppkey = s.s_suppkey", "c.c_nationkey = s.s_nationkey"]),
              ("JOIN", "qc_tpch.nation n", "s.s_nationkey = n.n_nationkey"),
              ("JOIN", "qc_tpch.region r", "n.n_regionkey = r.r_regionkey")],
             [f"r.r_name = {p['region']}", f"o.o_orderdate >= {p['d1']}", f"o.o_orderdate < {p['d2']}"],
             group=["n.n_name"], order=["revenue DESC", "n.n_name"])


@template(d1=dlit("1993-01-01", "1994-01-01", "1995-01-01"),
          d2=dlit("1995-01-01", "1996-01-01", "1997-01-01"), dlo=lit("0.02", "0.05", "0.06"),
          dhi=lit("0.07", "0.08", "0.09"), qty=lit(10, 24, 30, 40), swap=[("d1", "d2"), ("dlo", "dhi")])
def tpch_q6_forecast_revenue(p: dict[str, Any]) -> Query:
    return Q(["SUM(l.l_extendedprice * l.l_discount) AS revenue"], ["qc_tpch.lineitem l"],
             [f"l.l_shipdate >= {p['d1']}", f"l.l_shipdate < {p['d2']}",
              f"l.l_discount BETWEEN {p['dlo']} AND {p['dhi']}", f"l.l_quantity < {p['qty']}"])


@template(d1=dlit("1993-10-01", "1994-01-01", "1995-04-01"), flag=qlit("R", "A", "N"),
          n=nlit(10, 20))
def tpch_q10_returned_items(p: dict[str, Any]) -> Query:
    return Q(["c.c_custkey", "c.c_name", "SUM(l.l_extendedprice * (1 - l.l_discount)) AS revenue", "c.c_acctbal",
              "n.n_name"],
             ["qc_tpch.customer c", ("JOIN", "qc_tpch.orders o", "c.c_custkey = o.o_custkey"),
              ("JOIN", "qc_tpch.lineitem l", "l.l_orderkey = o.o_orderkey"),
              ("JOIN", "qc_tpch.nation n", "c.c_nationkey = n.n_nationkey")],
             [f"o.o_orderdate >= {p['d1']}", f"o.o_orderdate < {p['d1']} + INTERVAL '3 month'",
              f"l.l_returnflag = {p['flag']}"],
             group=["c.c_custkey", "c.c_name", "c.c_acctbal", "n.n_name"], order=["revenue DESC", "c.c_custkey"],
             limit=int(p["n"]))


@template(modes=("list", (q_(SHIPMODES), 2)), d1=dlit("1993-01-01", "1994-01-01", "1995-01-01"),
          d2=dlit("1995-01-01", "1996-01-01", "1997-01-01"), swap=[("d1", "d2")])
def tpch_q12_shipmodes(p: dict[str, Any]) -> Query:
    return Q(["l.l_shipmode",
              "SUM(CASE WHEN o.o_orderpriority = '1-URGENT' OR o.o_orderpriority = '2-HIGH' THEN 1 ELSE 0 END) "
              "AS high_line_count",
              "SUM(CASE WHEN o.o_orderpriority <> '1-URGENT' AND o.o_orderpriority <> '2-HIGH' THEN 1 ELSE 0 END) "
              "AS low_line_count"],
             ["qc_tpch.orders o", ("JOIN", "qc_tpch.lineitem l", "o.o_orderkey = l.l_orderkey")],
             [f"l.l_shipmode IN ({inl(p['modes'])})", "l.l_commitdate < l.l_receiptdate",
              "l.l_shipdate < l.l_commitdate", f"l.l_receiptdate >= {p['d1']}", f"l.l_receiptdate < {p['d2']}"],
             group=["l.l_shipmode"], order=["l.l_shipmode"])


@template(jt=("join", ["LEFT JOIN", "JOIN"]),
          word=qlit("%special%requests%", "%special%", "%comment 1%"))
def tpch_q13_customer_distribution(p: dict[str, Any]) -> Query:
    cte = Q(["c.c_custkey", "COUNT(o.o_orderkey) AS c_count"],
            ["qc_tpch.customer c", (p["jt"], "qc_tpch.orders o", ["c.c_custkey = o.o_custkey",
                                                                    f"o.o_comment NOT LIKE {p['word']}"])],
            group=["c.c_custkey"])
    return Q(["co.c_count", "COUNT(*) AS custdist"], ["c_orders co"], group=["co.c_count"],
             order=["custdist DESC", "co.c_count DESC"], ctes=[("c_orders", cte)])


@template(d1=dlit("1995-09-01", "1994-03-01", "1996-06-01", "1993-11-01"),
          kind=qlit("PROMO%", "STANDARD%", "SMALL%"))
def tpch_q14_promo_effect(p: dict[str, Any]) -> Query:
    return Q([f"100.00 * SUM(CASE WHEN p.p_type LIKE {p['kind']} THEN l.l_extendedprice * (1 - l.l_discount) "
              "ELSE 0 END) / SUM(l.l_extendedprice * (1 - l.l_discount)) AS promo_revenue"],
             ["qc_tpch.lineitem l", ("JOIN", "qc_tpch.part p", "l.l_partkey = p.p_partkey")],
             [f"l.l_shipdate >= {p['d1']}", f"l.l_shipdate < {p['d1']} + INTERVAL '1 month'"])


@template(d1=dlit("1993-07-01", "1994-01-01", "1995-10-01"),
          d2=dlit("1996-01-01", "1996-07-01", "1997-04-01"), swap=[("d1", "d2")])
def tpch_q4_order_priority(p: dict[str, Any]) -> Query:
    return Q(["o.o_orderpriority", "COUNT(*) AS order_count"], ["qc_tpch.orders o"],
             [f"o.o_orderdate >= {p['d1']}", f"o.o_orderdate < {p['d2']}",
              "EXISTS (SELECT 1 FROM qc_tpch.lineitem x WHERE x.l_orderkey = o.o_orderkey "
              "AND x.l_commitdate < x.l_receiptdate)"],
             group=["o.o_orderpriority"], order=["o.o_orderpriority"])


@template(qty=lit(150, 200, 250), n=nlit(10, 20))
def tpch_q18_large_volume(p: dict[str, Any]) -> Query:
    return Q(["c.c_name", "c.c_custkey", "o.o_orderkey", "o.o_orderdate", "o.o_totalprice",
              "SUM(l.l_quantity) AS total_qty"],
             ["qc_tpch.customer c", ("JOIN", "qc_tpch.orders o", "c.c_custkey = o.o_custkey"),
              ("JOIN", "qc_tpch.lineitem l", "o.o_orderkey = l.l_orderkey")],
             [f"o.o_orderkey IN (SELECT x.l_orderkey FROM qc_tpch.lineitem x GROUP BY x.l_orderkey "
              f"HAVING SUM(x.l_quantity) > {p['qty']})"],
             group=["c.c_name", "c.c_custkey", "o.o_orderkey", "o.o_orderdate", "o.o_totalprice"],
             order=["o.o_totalprice DESC", "o.o_orderdate", "o.o_orderkey"], limit=int(p["n"]))


@template(nation=qlit(*NATIONS), n=nlit(10, 15))
def tpch_q11_stock_value(p: dict[str, Any]) -> Query:
    return Q(["ps.ps_partkey", "SUM(ps.ps_supplycost * ps.ps_availqty) AS value"],
             ["qc_tpch.partsupp ps", ("JOIN", "qc_tpch.supplier s", "ps.ps_suppkey = s.s_suppkey"),
              ("JOIN", "qc_tpch.nation n", "s.s_nationkey = n.n_nationkey")],
             [f"n.n_name = {p['nation']}"], group=["ps.ps_partkey"], order=["value DESC", "ps.ps_partkey"],
             limit=int(p["n"]))


@template(brand=qlit("Brand#11", "Brand#23", "Brand#45", "Brand#32"),
          sizes=("list", ([str(s) for s in (1, 4, 8, 15, 22, 29, 36, 43, 49)], 4)), cd=("distinct", ["DISTINCT ", ""]))
def tpch_q16_part_supplier(p: dict[str, Any]) -> Query:
    return Q(["p.p_brand", "p.p_type", "p.p_size", f"COUNT({p['cd']}ps.ps_suppkey) AS supplier_cnt"],
             ["qc_tpch.partsupp ps", ("JOIN", "qc_tpch.part p", "p.p_partkey = ps.ps_partkey")],
             [f"p.p_brand <> {p['brand']}", f"p.p_size IN ({inl(p['sizes'])})",
              "ps.ps_suppkey NOT IN (SELECT x.s_suppkey FROM qc_tpch.supplier x "
              "WHERE x.s_comment LIKE '%Customer%Complaints%')"],
             group=["p.p_brand", "p.p_type", "p.p_size"],
             order=["supplier_cnt DESC", "p.p_brand", "p.p_type", "p.p_size"])


@template(regions=("list", (q_(TPCH_REGIONS), 2)))
def tpch_nations_in_regions(p: dict[str, Any]) -> Query:
    return Q(["n.n_name", "r.r_name"],
             ["qc_tpch.nation n", ("JOIN", "qc_tpch.region r", "n.n_regionkey = r.r_regionkey")],
             [f"r.r_name IN ({inl(p['regions'])})"], order=["n.n_name"])


@template(bal=lit(0, 500, 1000), nks=("list", ([str(k) for k in range(0, 25, 2)], 5)),
          col=("col", ["s.s_acctbal", "s.s_name"]))
def tpch_supplier_balances(p: dict[str, Any]) -> Query:
    return Q(["s.s_suppkey", "s.s_name", "s.s_acctbal"], ["qc_tpch.supplier s"],
             [f"s.s_acctbal > {p['bal']}", f"s.s_nationkey IN ({inl(p['nks'])})"],
             order=[f"{p['col']} DESC", "s.s_suppkey"])


@template(bal=lit(0, 1000, 3000, 5000), agg=("agg", ["AVG", "SUM", "MIN", "MAX"]))
def tpch_segment_balances(p: dict[str, Any]) -> Query:
    return Q(["c.c_mktsegment", "COUNT(*) AS customers", f"{p['agg']}(c.c_acctbal) AS acctbal"],
             ["qc_tpch.customer c"], [f"c.c_acctbal > {p['bal']}"], group=["c.c_mktsegment"],
             order=["c.c_mktsegment"])


@template(d1=dlit("1993-01-01", "1994-06-01", "1995-01-01"),
          d2=dlit("1996-01-01", "1997-06-01", "1998-01-01"), grp=("grp", ["o.o_orderpriority", "o.o_orderstatus"]),
          swap=[("d1", "d2")])
def tpch_orders_priority_status(p: dict[str, Any]) -> Query:
    return Q([p["grp"], "COUNT(*) AS orders"], ["qc_tpch.orders o"],
             [f"o.o_orderdate BETWEEN {p['d1']} AND {p['d2']}"], group=[p["grp"]], order=[p["grp"]])


@template(ok=lit(3, 77, 250, 612, 1024, 1499))
def tpch_lineitems_of_order(p: dict[str, Any]) -> Query:
    return Q(["l.l_linenumber", "l.l_partkey", "l.l_quantity", "l.l_extendedprice"], ["qc_tpch.lineitem l"],
             [f"l.l_orderkey = {p['ok']}"], order=["l.l_linenumber"])


@template(cont=qlit("SM CASE", "MED BOX", "LG BAG", "JUMBO JAR", "WRAP PKG", "SM DRUM"),
          size=lit(10, 25, 40), n=nlit(5, 10))
def tpch_parts_by_container(p: dict[str, Any]) -> Query:
    return Q(["p.p_partkey", "p.p_name", "p.p_retailprice"], ["qc_tpch.part p"],
             [f"p.p_container <> {p['cont']}", f"p.p_size <= {p['size']}"],
             order=["p.p_retailprice DESC", "p.p_partkey"], limit=int(p["n"]))


@template(instr=qlit("DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"),
          qty=lit(10, 25, 40), agg=("agg", ["AVG", "MAX", "SUM"]))
def tpch_shipmode_stats(p: dict[str, Any]) -> Query:
    return Q(["l.l_shipmode", "COUNT(*) AS lines", f"{p['agg']}(l.l_discount) AS disc"], ["qc_tpch.lineitem l"],
             [f"l.l_shipinstruct <> {p['instr']}", f"l.l_quantity > {p['qty']}"], group=["l.l_shipmode"])


@template(nk=lit(2, 7, 11, 20, 24), jt=("join", ["LEFT JOIN", "JOIN"]))
def tpch_customer_order_counts(p: dict[str, Any]) -> Query:
    return Q(["c.c_custkey", "c.c_name", "COUNT(o.o_orderkey) AS orders"],
             ["qc_tpch.customer c", (p["jt"], "qc_tpch.orders o", "o.o_custkey = c.c_custkey")],
             [f"c.c_nationkey = {p['nk']}"], group=["c.c_custkey", "c.c_name"], order=["c.c_custkey"])


@template(st=qlit("F", "O", "P"), agg=("agg", ["SUM", "AVG", "MAX"]))
def tpch_revenue_by_year(p: dict[str, Any]) -> Query:
    return Q(["EXTRACT(YEAR FROM o.o_orderdate) AS o_year", f"{p['agg']}(o.o_totalprice) AS total"],
             ["qc_tpch.orders o"], [f"o.o_orderstatus = {p['st']}"], group=["EXTRACT(YEAR FROM o.o_orderdate)"],
             order=["o_year"])


@template(sk=lit(3, 9, 14, 22, 31, 38), qty=lit(1000, 3000, 6000),
          col=("col", ["ps.ps_availqty", "ps.ps_supplycost"]))
def tpch_partsupp_for_supplier(p: dict[str, Any]) -> Query:
    return Q(["ps.ps_partkey", "ps.ps_availqty", "ps.ps_supplycost"], ["qc_tpch.partsupp ps"],
             [f"ps.ps_suppkey = {p['sk']}", f"{p['col']} > {p['qty']}"], order=["ps.ps_partkey"])


@template(mode=qlit(*SHIPMODES), d=dlit(*TPCH_DATES), n=nlit(10, 25),
          col=("col", ["l.l_commitdate", "l.l_shipdate"]))
def tpch_late_lineitems(p: dict[str, Any]) -> Query:
    return Q(["l.l_orderkey", "l.l_linenumber", "l.l_receiptdate"], ["qc_tpch.lineitem l"],
             [f"l.l_receiptdate > {p['col']} + 20", f"l.l_shipmode = {p['mode']}", f"l.l_shipdate >= {p['d']}"],
             order=["l.l_receiptdate", "l.l_orderkey", "l.l_linenumber"], limit=int(p["n"]))


@template(rk=lit(0, 1, 2, 3, 4), cd=("distinct", ["DISTINCT ", ""]))
def tpch_nation_supply_demand(p: dict[str, Any]) -> Query:
    return Q(["n.n_name", f"COUNT({p['cd']}s.s_suppkey) AS suppliers", "COUNT(DISTINCT c.c_custkey) AS customers"],
             ["qc_tpch.nation n", ("JOIN", "qc_tpch.supplier s", "s.s_nationkey = n.n_nationkey"),
              ("JOIN", "qc_tpch.customer c", "c.c_nationkey = n.n_nationkey")],
             [f"n.n_regionkey = {p['rk']}"], group=["n.n_name"], order=["n.n_name"])


@template(size=lit(10, 20, 30, 40), dist=("distinct", [True, False]))
def tpch_part_brands(p: dict[str, Any]) -> Query:
    return Q(["p.p_mfgr", "p.p_brand"], ["qc_tpch.part p"], [f"p.p_size > {p['size']}"], distinct=p["dist"])


@template(prios=("list", (q_(PRIORITIES), 2)), amt=lit(50000, 100000, 150000),
          n=nlit(10, 20))
def tpch_orders_by_priority(p: dict[str, Any]) -> Query:
    return Q(["o.o_orderkey", "o.o_custkey", "o.o_totalprice"], ["qc_tpch.orders o"],
             [f"o.o_orderpriority IN ({inl(p['prios'])})", f"o.o_totalprice > {p['amt']}"],
             order=["o.o_totalprice DESC", "o.o_orderkey"], limit=int(p["n"]))


@template(seg=qlit(*MKT_SEGMENTS), d=dlit(*TPCH_DATES), st=qlit("F", "O"))
def tpch_customer_orders_join(p: dict[str, Any]) -> Query:
    return Q(["o.o_orderkey", "c.c_name", "o.o_totalprice", "o.o_orderdate"],
             ["qc_tpch.orders o", ("JOIN", "qc_tpch.customer c", "c.c_custkey = o.o_custkey")],
             [f"c.c_mktsegment = {p['seg']}", f"o.o_orderdate < {p['d']}", f"o.o_orderstatus = {p['st']}"],
             order=["o.o_orderdate DESC", "o.o_orderkey"], limit=25)


@template(brand=qlit("Brand#12", "Brand#23", "Brand#34", "Brand#41"),
          q1=lit(1, 5, 10), q2=lit(20, 30, 40), swap=[("q1", "q2")])
def tpch_discounted_revenue(p: dict[str, Any]) -> Query:
    return Q(["SUM(l.l_extendedprice * (1 - l.l_discount)) AS revenue", "COUNT(*) AS lines"],
             ["qc_tpch.lineitem l", ("JOIN", "qc_tpch.part p", "p.p_partkey = l.l_partkey")],
             [f"p.p_brand = {p['brand']}", f"l.l_quantity >= {p['q1']}", f"l.l_quantity <= {p['q2']}",
              "l.l_shipmode IN ('AIR', 'REG AIR')", "l.l_shipinstruct = 'DELIVER IN PERSON'"])


@template(region=qlit(*TPCH_REGIONS), bal=lit(0, 300, 900))
def tpch_supplier_nation_region(p: dict[str, Any]) -> Query:
    return Q(["s.s_name", "n.n_name", "s.s_acctbal"],
             ["qc_tpch.supplier s", ("JOIN", "qc_tpch.nation n", "s.s_nationkey = n.n_nationkey"),
              ("JOIN", "qc_tpch.region r", "n.n_regionkey = r.r_regionkey")],
             [f"r.r_name = {p['region']}", f"s.s_acctbal >= {p['bal']}"], order=["s.s_acctbal DESC", "s.s_name"])


# --------------------------------------------------------------------------------------------------
# Instances, styles, rewrites, mutations
# --------------------------------------------------------------------------------------------------


def draw_params(tpl: Template, rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, domain) in tpl.params.items():
        if kind == "list":
            pool, k = domain
            idx = sorted(rng.sample(range(len(pool)), k))
            out[name] = [pool[i] for i in idx]
        else:
            out[name] = rng.choice(domain)
    return out


def base_style(q: Query, rng: random.Random, rich: bool) -> Style:
    """A style for side a (and, for near-miss pairs, side b). ``rich`` also draws the rewrite
    dimensions, so near-miss pairs come in every surface form."""
    modes = alias_modes(q)
    mode = rng.choices(modes, weights=[6, 2, 2][: len(modes)])[0]
    st = Style(alias=alias_style(q, mode), use_as=rng.random() < 0.35,
               layout=rng.choice(["line", "clauses", "clauses", "indent"]),
               case=rng.choices(["upper", "lower"], weights=[4, 1])[0], case_seed=rng.randrange(1 << 30))
    if rich:
        if rng.random() < 0.2:
            st.ne = "!="
        if rng.random() < 0.15:
            st.count1 = True
        if rng.random() < 0.15:
            st.join_style = rng.choice(["comma_first", "inner"])
        if rng.random() < 0.15:
            st.parens = "each"
        if rng.random() < 0.2:
            st.alias = alternative_aliases(q, st.alias, rng) if mode == "alias" else st.alias
    return st


def conjunct_lists(q: Query) -> list[tuple[list[Pred], list[str]]]:
    out = []
    for sub in q.all_queries():
        out.append((sub.where, sub.conn))
        out.append((sub.having, sub.hconn))
        out.extend((t.on, ["AND"] * (len(t.on) - 1)) for t in sub.tables if t.join)
    return out


def all_preds(q: Query) -> list[Pred]:
    return [p for preds, _ in conjunct_lists(q) for p in preds]


# ---- equivalence rewrites: (query, base style, rng) -> rewritten style or None ---------------------


def rw_table_alias(q: Query, st: Style, rng: random.Random) -> Style | None:
    modes = alias_modes(q)
    current = {m for m, _ in st.alias.values()}
    options = []
    if current == {"alias"}:
        options += ["rename", "rename_one", "rename"]
        options += [m for m in modes if m != "alias"]
    else:
        options += ["alias", "alias"]
        options += [m for m in modes if m not in current and m != "alias"]
    choice = rng.choice(options)
    if choice in ("rename", "rename_one"):
        alias = alternative_aliases(q, st.alias, rng, "one" if choice == "rename_one" and len(st.alias) > 1 else "all")
        return replace(st, alias=alias, use_as=rng.random() < 0.5)
    if choice == "alias":
        alias = alternative_aliases(q, alias_style(q, "alias"), rng) if rng.random() < 0.5 else alias_style(q, "alias")
        return replace(st, alias=alias, use_as=rng.random() < 0.5)
    return replace(st, alias=alias_style(q, choice))


def rw_predicate_order(q: Query, st: Style, rng: random.Random) -> Style | None:
    lists = [(p, c) for p, c in conjunct_lists(q) if len(p) > 1 and all(x == "AND" for x in c)]
    if not lists and not (st.join_style.startswith("comma") and q.where):
        return None
    return replace(st, pred_perm=rng.randrange(1, 1 << 20))


def rw_in_list_order(q: Query, st: Style, rng: random.Random) -> Style | None:
    if not any(isinstance(p, InList) and len(p.values) > 1 for p in all_preds(q)):
        return None
    return replace(st, in_perm=rng.randrange(1, 1 << 20))


def rw_join_syntax(q: Query, st: Style, rng: random.Random) -> Style | None:
    subs = [s for s in q.all_queries() if len(s.tables) > 1 and all(t.join in (None, "JOIN") for t in s.tables)]
    if not subs:
        return None
    options = [x for x in ("comma_first", "comma_last", "comma_first", "inner", "cross") if x != st.join_style]
    return replace(st, join_style=rng.choice(options))


def rw_parentheses(q: Query, st: Style, rng: random.Random) -> Style | None:
    if not (q.where or q.having) or st.parens:
        return None
    n = len(q.where) if q.where else len(q.having)
    options = ["each", "all"] + (["first2", "nested"] if n > 2 else ["nested"] if n > 1 else [])
    return replace(st, parens=rng.choice(options))


def rw_not_equal(q: Query, st: Style, rng: random.Random) -> Style | None:
    if "<>" not in render(q, st) or st.ne != "<>":
        return None
    return replace(st, ne="!=")


def rw_count_star(q: Query, st: Style, rng: random.Random) -> Style | None:
    if "COUNT(*)" not in Renderer(q, replace(st, count1=False)).render() or st.count1:
        return None
    return replace(st, count1=True)


def rw_comparison_orientation(q: Query, st: Style, rng: random.Random) -> Style | None:
    preds = all_preds(q)
    lits = [p for p in preds if isinstance(p, Cmp) and LITERAL.match(p.right)]
    cols = [p for p in preds if isinstance(p, Cmp) and COLUMN.match(p.left) and COLUMN.match(p.right)]
    options = (["literals", "literals", "first"] if lits else []) + (["columns"] if cols else [])
    if not options or st.orient:
        return None
    return replace(st, orient=rng.choice(options))


def rw_column_order(q: Query, st: Style, rng: random.Random) -> Style | None:
    if len(q.select) < 2:
        return None
    return replace(st, col_perm=rng.randrange(1, 1 << 20))


SIMPLE_REWRITES: dict[str, Callable[[Query, Style, random.Random], Style | None]] = {
    "table_alias": rw_table_alias,
    "predicate_order": rw_predicate_order,
    "in_list_order": rw_in_list_order,
    "join_syntax": rw_join_syntax,
    "parentheses": rw_parentheses,
    "not_equal": rw_not_equal,
    "count_star": rw_count_star,
    "comparison_orientation": rw_comparison_orientation,
    "column_order": rw_column_order,
}


def rw_case_spacing(st: Style, rng: random.Random) -> Style:
    layouts = [x for x in ("line", "clauses", "indent") if x != st.layout]
    cases = [x for x in ("upper", "lower", "title", "mixed") if x != st.case]
    return replace(st, layout=rng.choice(layouts), case=rng.choice(cases), tight=rng.random() < 0.4,
                   case_seed=rng.randrange(1 << 30))


def equivalent_pair(kind: str, tpl: Template, rng: random.Random) -> tuple[str, str] | None:
    params = draw_params(tpl, rng)
    q = tpl.fn(params)
    st = base_style(q, rng, rich=False)
    if kind in SIMPLE_REWRITES:
        st_b = SIMPLE_REWRITES[kind](q, st, rng)
    elif kind == "keyword_case_and_spacing":
        names = list(SIMPLE_REWRITES)
        rng.shuffle(names)
        st_b = None
        for name in names:
            st_b = SIMPLE_REWRITES[name](q, st, rng)
            if st_b is not None:
                break
        if st_b is None:
            return None
        st_b = rw_case_spacing(st_b, rng)
    else:  # combined: two or three rewrites at once
        names = list(SIMPLE_REWRITES)
        rng.shuffle(names)
        want = rng.choice([2, 2, 3])
        st_b, applied = st, 0
        for name in names:
            nxt = SIMPLE_REWRITES[name](q, st_b, rng)
            if nxt is not None and render(q, nxt) != render(q, st_b):
                st_b, applied = nxt, applied + 1
            if applied == want:
                break
        if applied < 2:
            return None
    if st_b is None:
        return None
    return render(q, st), render(q, st_b)


# ---- near-miss mutations ---------------------------------------------------------------------------

PARAM_KIND = {"literal": "lit", "column": "col", "table": "table", "aggregate": "agg", "group_by": "grp",
              "join_type": "join", "distinct": "distinct", "in_list": "list"}


def mutate_params(kind: str, tpl: Template, params: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    if kind == "swapped_literals":
        pairs = [(a, b) for a, b in tpl.swap if params[a] != params[b]]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        out = dict(params)
        out[a], out[b] = params[b], params[a]
        return out
    ptype = PARAM_KIND[kind]
    names = [n for n, (k, _) in tpl.params.items() if k == ptype]
    if not names:
        return None
    name = rng.choice(names)
    domain = tpl.params[name][1]
    out = dict(params)
    if ptype == "list":
        pool, _ = domain
        current = list(params[name])
        spare = [v for v in pool if v not in current]
        if not spare:
            return None
        new = rng.choice(spare)
        if rng.random() < 0.5:
            current[rng.randrange(len(current))] = new
        else:
            current.insert(rng.randrange(len(current) + 1), new)
        out[name] = current
    else:
        others = [v for v in domain if v != params[name]]
        out[name] = rng.choice(others)
    return out


def mutate_query(kind: str, q: Query, rng: random.Random) -> Query | None:
    q = copy.deepcopy(q)
    if kind == "lt_le":
        spots = [(preds, i) for preds, _ in conjunct_lists(q) for i, p in enumerate(preds)
                 if isinstance(p, Cmp) and p.op in STRICT and "SELECT" not in p.right]
        if not spots:
            return None
        preds, i = rng.choice(spots)
        preds[i] = replace(preds[i], op=STRICT[preds[i].op])
        return q
    if kind == "and_or":
        spots = [(sub, "conn") for sub in q.all_queries() if len(sub.where) > 1]
        spots += [(sub, "hconn") for sub in q.all_queries() if len(sub.having) > 1]
        if not spots:
            return None
        sub, attr = rng.choice(spots)
        conns = getattr(sub, attr)
        conns[rng.randrange(len(conns))] = "OR"
        return q
    if kind == "asc_desc":
        if not q.order:
            return None
        i = 0 if rng.random() < 0.75 or len(q.order) == 1 else rng.randrange(len(q.order))
        expr, direction = q.order[i]
        q.order[i] = (expr, "DESC" if direction in ("", "ASC") else rng.choice(["", "ASC"]))
        return q
    if kind == "limit":
        if q.limit is None:
            return None
        options = ["plus", "minus", "double"] + (["offset"] if q.offset is None else ["offset_change", "offset_drop"])
        choice = rng.choice(options)
        if choice == "plus":
            q.limit += 1
        elif choice == "minus" and q.limit > 1:
            q.limit -= 1
        elif choice == "double":
            q.limit *= 2
        elif choice == "offset":
            q.offset = rng.choice([1, 5, q.limit])
        elif choice == "offset_change":
            q.offset = (q.offset or 0) + rng.choice([1, 5])
        else:
            q.offset = None
        return q
    if kind == "not":
        spots = [(sub.where, i) for sub in q.all_queries() for i in range(len(sub.where))]
        if not spots:
            return None
        preds, i = rng.choice(spots)
        preds[i] = negate(preds[i], rng)
        return q
    raise ValueError(kind)


def near_miss_pair(kind: str, tpl: Template, rng: random.Random) -> tuple[str, str] | None:
    params = draw_params(tpl, rng)
    if kind in PARAM_KIND or kind == "swapped_literals":
        other = mutate_params(kind, tpl, params, rng)
        if other is None:
            return None
        qa, qb = tpl.fn(params), tpl.fn(other)
    else:
        qa = tpl.fn(params)
        mutated = mutate_query(kind, qa, rng)
        if mutated is None:
            return None
        qb = mutated
    st = base_style(qa, rng, rich=True)
    if kind in ("and_or", "join_type"):  # OR must not meet comma-join conditions; LEFT JOIN has no comma form
        st.join_style = "explicit"
    if kind == "table":
        st.alias = alias_style(qa, "alias") if rng.random() < 0.7 else st.alias
    if set(alias_modes(qb)) != set(alias_modes(qa)) and any(m != "alias" for m, _ in st.alias.values()):
        st.alias = alias_style(qa, "alias")
    return render(qa, st), render(qb, st)


# --------------------------------------------------------------------------------------------------
# Candidate streams, verification, output
# --------------------------------------------------------------------------------------------------


@dataclass
class Pair:
    kind: str
    template: str
    a: str
    b: str


def candidates(kind: str, equivalent: bool) -> Iterator[Pair]:
    """An endless (bounded by attempts), deterministic stream of candidate pairs of one kind:
    templates are visited round-robin in a seeded order, each visit with fresh parameters."""
    rng = random.Random(SEED + _stable(kind, equivalent))
    make = equivalent_pair if equivalent else near_miss_pair
    seen: set[tuple[str, str]] = set()
    order = list(TEMPLATES)
    for _round in range(60):
        rng.shuffle(order)
        for tpl in order:
            pair = make(kind, tpl, rng)
            if pair is None:
                continue
            a, b = pair
            if (a, b) in seen or a == b:
                continue
            seen.add((a, b))
            yield Pair(kind, tpl.name, a, b)


class Verifier:
    def __init__(self, dsn: str) -> None:
        import psycopg

        sys.path.insert(0, str(ROOT))
        from tests.test_semantic_corpus import comparable, results_differ, same_result

        self.comparable, self.same_result, self.results_differ = comparable, same_result, results_differ
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(SCHEMA.read_text(encoding="utf-8"))
        self.conn.execute("SET statement_timeout = '10s'")

    def run(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.execute(sql)
        assert cur.description is not None
        return [d.name for d in cur.description], [tuple(r) for r in cur.fetchall()]

    def check(self, pair: Pair, equivalent: bool) -> str | None:
        """None if the pair is good, else the reason to drop it."""
        if normalized(pair.a) == normalized(pair.b):
            return "whitespace/case only"
        try:
            ra = self.run(pair.a)
            rb = self.run(pair.b)
        except Exception as exc:  # noqa: BLE001 - any database error drops the pair
            return f"error: {type(exc).__name__}"
        if len(set(ra[0])) != len(ra[0]):
            return "duplicate output column names"
        if equivalent:
            if not ra[1]:
                return "empty result (vacuous)"
            if not self.same_result(pair.a, ra, rb):
                return "results differ"
            return None
        if not self.results_differ(pair.a, ra, rb):
            return "same result"
        return None


def build(kinds: list[str], equivalent: bool, quota: int, verifier: Verifier | None,
          drops: dict[str, collections.Counter[str]]) -> list[Pair]:
    out: list[Pair] = []
    for kind in kinds:
        got = 0
        for n, pair in enumerate(candidates(kind, equivalent)):
            if n >= MAX_CANDIDATES or got == quota:
                break
            reason = verifier.check(pair, equivalent) if verifier else None
            if reason:
                drops[kind][reason] += 1
                continue
            out.append(pair)
            got += 1
        if got < quota:
            print(f"warning: {kind}: only {got} of {quota} pairs", file=sys.stderr)
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write(path: Path, pairs: list[Pair], prefix: str, header: str) -> None:
    counters: collections.Counter[str] = collections.Counter()
    entries = []
    for pair in pairs:
        counters[pair.kind] += 1
        entries.append({"id": f"{prefix}-{pair.kind}-{counters[pair.kind]:03d}-{pair.template}", "kind": pair.kind,
                        "a": pair.a, "b": pair.b})
    body = yaml.dump(entries, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")


HEADER = """\
# GENERATED by tests/corpus/semantic/generate.py --verify: do not edit by hand, re-run the generator.
# {what}
# Each entry: id ({prefix}-<kind>-<n>-<base template>), kind, a, b (PostgreSQL, literals inline).
# Data: tests/corpus/semantic/schema.sql (schemas qc_sem and qc_tpch). Every pair was run on PostgreSQL
# when generated ({verified}) and is re-checked by tests/test_semantic_corpus.py.
# Counts per kind: {counts}
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="run every candidate on PostgreSQL and drop failures")
    ap.add_argument("--dry-run", action="store_true", help="report only, do not write the YAML files")
    ap.add_argument("--dsn", default=PG_DSN)
    args = ap.parse_args(argv)
    started = time.monotonic()
    verifier = Verifier(args.dsn) if args.verify else None
    eq_drops: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    nm_drops: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    eq = build(EQ_KINDS, True, EQ_PER_KIND, verifier, eq_drops)
    nm = build(NM_KINDS, False, NM_PER_KIND, verifier, nm_drops)
    for title, kinds, pairs, drops in (("equivalent", EQ_KINDS, eq, eq_drops), ("near_miss", NM_KINDS, nm, nm_drops)):
        counts = collections.Counter(p.kind for p in pairs)
        templates = {p.template for p in pairs}
        print(f"{title}: {len(pairs)} pairs from {len(templates)} base templates")
        for kind in kinds:
            dropped = sum(drops[kind].values())
            detail = ", ".join(f"{r}: {n}" for r, n in sorted(drops[kind].items()))
            print(f"  {kind:26} kept {counts[kind]:3}  dropped {dropped:3}" + (f"  ({detail})" if detail else ""))
    used = {p.template for p in eq + nm}
    print(f"templates: {len(TEMPLATES)} defined, {len(used)} used; {time.monotonic() - started:.1f} s")
    if not args.dry_run:
        verified = "verified: failing candidates dropped" if verifier else "NOT verified"
        for path, pairs, prefix, what in (
                (EQUIVALENT_PATH, eq, "eq", "Equivalent pairs: a and b return the same result (same column names, "
                                            "same rows; same order when a has a top-level ORDER BY)."),
                (NEAR_MISS_PATH, nm, "nm", "Near-miss pairs: a and b look almost identical but return different "
                                           "results (column names or rows differ).")):
            counts = collections.Counter(p.kind for p in pairs)
            header = HEADER.format(what=what, prefix=prefix, verified=verified,
                                   counts=", ".join(f"{k} {n}" for k, n in counts.items()) + f"; total {len(pairs)}")
            write(path, pairs, prefix, header)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
