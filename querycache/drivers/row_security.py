"""Row-level security: what a table's policies read besides its rows (docs/isolation.md).

PostgreSQL evaluates a table's policies with the reading session's state: its settings
(``current_setting('app.tenant')``), its identity (``current_user``, ``session_user``) and the
grants of that identity (``pg_has_role``). A cached answer of such a table may only be shared
between sessions that agree on every one of them, so the catalog load reads each policy's
expression and lists what it reads. A policy whose expression the analyzer cannot see into
(a user function other than a one-line SQL function, a subquery on another table, a setting named
by an expression) makes the table *opaque*: its reads are not cached unless the configuration or
a hint declares the settings the policy reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# Built-ins whose answer depends on the reading identity and the catalog's grants only. The
# identity is part of every scope already, and a GRANT or REVOKE through a wrapped connection
# invalidates every entry of the database (a DDL statement).
_PRIVILEGE_FUNCTIONS = frozenset({
    "pg_has_role", "has_table_privilege", "has_column_privilege", "has_any_column_privilege",
    "has_schema_privilege", "has_database_privilege", "has_function_privilege", "has_sequence_privilege",
    "has_type_privilege", "has_language_privilege", "has_server_privilege", "has_tablespace_privilege",
    "has_foreign_data_wrapper_privilege", "has_parameter_privilege", "row_security_active",
})
# Syntax sqlglot models as functions (casts, CASE helpers, array literals, AND/OR and other
# operators): no state of their own.
_SYNTAX = (exp.Cast, exp.TryCast, exp.Coalesce, exp.Nullif, exp.Greatest, exp.Least, exp.Array, exp.If,
           exp.Case, exp.Paren, exp.Connector, exp.Binary, exp.Predicate, exp.Unary)
# Column-like spellings sqlglot leaves as identifiers.
_IDENTITY_WORDS = {"current_user": "current_user", "current_role": "current_user", "user": "current_user",
                   "session_user": "session_user"}


@dataclass(frozen=True)
class RowSecurity:
    """What the policies of one table with row-level security read (for reads: SELECT and ALL policies)."""

    table: str
    forced: bool = False
    policies: tuple[str, ...] = ()
    settings: frozenset[str] = frozenset()
    # "current_user", "session_user": parts of the session identity the policies compare with.
    identity: frozenset[str] = frozenset()
    # Why the analyzer cannot see into a policy (None: it can).
    opaque: str | None = None
    # Tables a policy's subquery reads: a write to them changes what the table shows.
    reads_tables: frozenset[str] = frozenset()

    def describe(self) -> str:
        parts = [f"settings {', '.join(sorted(self.settings)) or '(none)'}",
                 f"identity {', '.join(sorted(self.identity | {'current_user'}))}"]
        if self.forced:
            parts.append("FORCE (owner filtered too)")
        if self.opaque:
            parts.append(f"opaque: {self.opaque}")
        return "; ".join(parts)


@dataclass
class _PolicyReads:
    settings: set[str] = field(default_factory=set)
    identity: set[str] = field(default_factory=set)
    opaque: list[str] = field(default_factory=list)


def _literal_text(node: exp.Expression) -> str | None:
    while isinstance(node, (exp.Cast, exp.TryCast, exp.Paren)):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    return None


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _parse(text: str) -> exp.Expression | None:
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except (SqlglotError, ValueError, TypeError, RecursionError):
        return None
    return tree if isinstance(tree, exp.Expression) else None


def _scan(expression: str, deterministic: frozenset[str], reads: _PolicyReads) -> None:
    tree = _parse(f"SELECT 1 WHERE {expression}")
    where = tree.args.get("where") if tree is not None else None
    if where is None:
        reads.opaque.append(f"cannot parse {expression!r}")
        return
    _scan_tree(where, deterministic, reads)


def _scan_function(name: str, language: str, body: str, deterministic: frozenset[str], reads: _PolicyReads) -> None:
    """See into a user function a policy calls: a SQL function whose body is one SELECT of
    expressions (no FROM, no further user function) reads what those expressions read."""
    tree = _parse(body.strip().rstrip(";")) if language == "sql" and body.strip() else None
    if not isinstance(tree, exp.Select) or tree.args.get("from") or tree.args.get("from_"):
        reads.opaque.append(f"calls the user function {name}() ({language}), which querycache cannot see into")
        return
    inner = _PolicyReads()
    for projection in tree.expressions:
        _scan_tree(projection, deterministic, inner)
    reads.settings |= inner.settings
    reads.identity |= inner.identity
    reads.opaque.extend(f"{name}() {why}" for why in inner.opaque)


def _scan_tree(root: exp.Expression, deterministic: frozenset[str], reads: _PolicyReads) -> None:
    for node in root.walk():
        if isinstance(node, (exp.Select, exp.Subquery, exp.Exists)):
            reads.opaque.append("a subquery")
        elif isinstance(node, exp.CurrentUser):
            reads.identity.add("current_user")
        elif isinstance(node, exp.SessionUser):
            reads.identity.add("session_user")
        elif isinstance(node, exp.Column) and not node.table and node.name.lower() in _IDENTITY_WORDS \
                and not node.this.quoted:
            reads.identity.add(_IDENTITY_WORDS[node.name.lower()])
        elif isinstance(node, exp.Func) and not isinstance(node, _SYNTAX):
            name = _function_name(node)
            if name == "current_setting":
                setting = _literal_text(node.expressions[0]) if node.expressions else None
                if setting is None:
                    reads.opaque.append("current_setting() of a name that is not a literal")
                else:
                    reads.settings.add(setting.lower())
            elif name in _PRIVILEGE_FUNCTIONS:
                reads.identity.add("current_user")
            elif name not in deterministic:
                reads.opaque.append(f"calls {name}()")


def row_security(table: str, forced: bool, policies: Iterable[tuple[str, str | None, str | None]],
                 deterministic: frozenset[str], user_functions: Iterable[tuple[str, str, str]] = (),
                 other_tables: Iterable[str] = ()) -> RowSecurity:
    """What reads of ``table`` depend on, from its SELECT/ALL policies (name, USING, WITH CHECK),
    the user functions (name, language, body) and other relations those policies depend on
    (``pg_depend``), and the immutable functions of the database (``deterministic``)."""
    reads = _PolicyReads()
    names = []
    called = {name: (language, body) for name, language, body in user_functions}
    for name, using, check in policies:
        names.append(name)
        for expression in (using, check):
            if expression:
                _scan(expression, deterministic | frozenset(called), reads)
    for name, (language, body) in sorted(called.items()):
        _scan_function(name, language, body, deterministic, reads)
    others = frozenset(t.lower() for t in other_tables)
    if others:
        reads.opaque.append(f"reads {', '.join(sorted(others))}")
    opaque = "; ".join(dict.fromkeys(reads.opaque)) or None
    return RowSecurity(table.lower(), forced, tuple(names), frozenset(reads.settings), frozenset(reads.identity),
                       opaque, others)
