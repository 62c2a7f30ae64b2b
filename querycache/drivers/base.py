"""What the cache must know about a driver: dialect, transaction state, scope and catalog.

One adapter class per driver family, chosen once when a connection is wrapped.
Every question that needs the server runs through ``internal_query``, which
leaves the connection's transaction state as it found it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from querycache.analysis import VOLATILE_FUNCTIONS
from querycache.analysis import fold as fold_user_name
from querycache.analysis import fold_identifier as fold
from querycache.drivers.row_security import RowSecurity

# Statement parameters as PEP 249 takes them: a sequence (positional) or a mapping (named).
Params = Sequence[object] | Mapping[str, object]


class DBAPICursor(Protocol):
    """What the cache itself calls on a PEP 249 cursor of the wrapped connection."""

    @property
    def description(self) -> Sequence[Sequence[object]] | None: ...

    @property
    def rowcount(self) -> int: ...

    def execute(self, operation: str, parameters: Params = ..., /) -> object: ...

    def fetchall(self) -> Sequence[Sequence[object]]: ...

    def close(self) -> object: ...


class DBAPIConnection(Protocol):
    """What the cache itself calls on a PEP 249 connection (driver adapters read more of it)."""

    def cursor(self) -> DBAPICursor: ...

    def commit(self) -> object: ...

    def rollback(self) -> object: ...


@dataclass
class Catalog:
    """Dependencies the SQL text does not show, resolved once per database (docs/freshness.md).

    ``relations`` holds every relation name the database knows (folded); a read of
    any other name is not cached, since it may be a view or table created after
    the catalog was read.
    """

    relations: set[str] = field(default_factory=set)
    read_deps: dict[str, set[str]] = field(default_factory=dict)
    write_deps: dict[str, set[str]] = field(default_factory=dict)
    writes_everything: set[str] = field(default_factory=set)
    volatile_functions: set[str] = field(default_factory=set)
    # User-defined functions that may write or change the session: a read calling one is a call.
    user_volatile_functions: set[str] = field(default_factory=set)
    deterministic_functions: set[str] | None = None
    complete: bool = True
    # Tables with row-level security (folded name): what their policies read (docs/isolation.md).
    row_security: dict[str, RowSecurity] = field(default_factory=dict)

    @property
    def row_security_settings(self) -> frozenset[str]:
        """Every setting a policy of this database reads: each one is part of a row-level scope."""
        return frozenset().union(*(r.settings for r in self.row_security.values()))

    def row_security_of(self, tables: Iterable[str]) -> list[RowSecurity]:
        found = self.row_security
        return [found[t] for t in sorted(tables) if t in found] if found else []

    def add_read_dep(self, name: str, dep: str) -> None:
        self.read_deps.setdefault(fold(name), set()).add(fold(dep))

    def add_write_dep(self, name: str, dep: str) -> None:
        self.write_deps.setdefault(fold(name), set()).add(fold(dep))

    def close_over(self) -> None:
        """Make dependency maps transitive (a view over a view over a partitioned table...)."""
        for deps in (self.read_deps, self.write_deps):
            changed = True
            while changed:
                changed = False
                for name, targets in deps.items():
                    extra: set[str] = set()
                    for target in targets:
                        extra |= deps.get(target, set())
                    extra -= targets
                    extra.discard(name)
                    if extra:
                        targets |= extra
                        changed = True

    def drop_volatile_views(self, definitions: dict[str, set[str] | None]) -> None:
        """Views whose definition calls a volatile function (or cannot be read) are not relations:
        reads of them, and of views over them, are never cached."""
        bad = {fold(v) for v, functions in definitions.items()
               if functions is None or functions & (self.volatile_functions | VOLATILE_FUNCTIONS)}
        changed = True
        while changed:
            changed = False
            for name, deps in self.read_deps.items():
                if name not in bad and deps & bad:
                    bad.add(name)
                    changed = True
        self.relations -= bad

    def expand_reads(self, tables: Iterable[str]) -> set[str]:
        out = set()
        for t in tables:
            out.add(t)
            out |= self.read_deps.get(t, set())
        return out

    def expand_writes(self, tables: Iterable[str], configured: Mapping[str, list[str]]) -> tuple[set[str], bool]:
        """Tables a write to ``tables`` may change, and whether that is the whole database."""
        out: set[str] = set()
        everything = False
        for t in tables:
            out.add(t)
            out |= self.write_deps.get(t, set())
        for t in list(out):
            if t in configured:
                out |= {fold_user_name(x) for x in configured[t]}
            elif t in self.writes_everything:
                everything = True
        return out, everything


@dataclass(frozen=True)
class ServerState:
    """What one round trip at wrap time (and after SET/USE...) reads from the server."""

    database_id: str
    scope: tuple[Any, ...]
    isolation: str
    replica: bool
    # What table versions are keyed by: everything one connection's SQL can name. PostgreSQL: the
    # database; MySQL: the server (any schema is one qualifier away); sqlite: all files (ATTACH).
    version_namespace: str = ""
    # What row-level security policies may read beyond ``scope`` (the settings asked for, the session
    # user...): part of the scope of reads of tables with row-level security only.
    row_security_scope: tuple[Any, ...] = ()


class DriverAdapter:
    """Defaults for a PEP 249 driver this module knows nothing more about."""

    dialect = "postgres"
    family = "generic"
    # Whether a rollback can leave writes behind (MySQL's non-transactional engines).
    bump_on_rollback = False
    # What ``cursor.execute`` returns: the cursor, the row count (PyMySQL) or None (psycopg2).
    execute_returns = "cursor"
    supported = False

    def __init__(self, conn: object, module: ModuleType | None) -> None:
        self.module = module
        self.paramstyle: str = getattr(module, "paramstyle", "qmark")

    # -- transaction state, read from the driver after every call -------------------------
    def in_transaction(self, conn: DBAPIConnection) -> bool:
        return False

    def in_error(self, conn: DBAPIConnection) -> bool:
        return False

    def after_statement(self, conn: DBAPIConnection) -> None:
        """Called after every statement the wrapper sends (drivers that cannot report state)."""

    def after_transaction_end(self, conn: DBAPIConnection) -> None:
        """Called after commit, rollback or an implicit commit."""

    def note_autocommit(self, conn: DBAPIConnection, value: bool | None) -> None:
        """``SET autocommit = ...`` was sent as SQL (drivers that cache the setting client-side)."""

    def open_transaction(self, conn: DBAPIConnection) -> None:
        """Begin the transaction a read would have begun, when that read is answered from cache."""
        self.internal_query(conn, "SELECT 1", keep_transaction=True)

    def autocommit(self, conn: DBAPIConnection) -> bool:
        return bool(getattr(conn, "autocommit", False))

    def reads_open_transaction(self, conn: DBAPIConnection) -> bool:
        """Whether a SELECT outside a transaction begins one (non-autocommit drivers)."""
        return not self.autocommit(conn)

    def write_opens_transaction(self, conn: DBAPIConnection, is_dml: bool) -> bool:
        """Whether a write outside a transaction begins one (so it becomes visible only at commit)."""
        return not self.autocommit(conn)

    # How the driver hands back several rows (PyMySQL: a tuple).
    rows_container: type = list

    def driver_isolation(self, conn: DBAPIConnection) -> str | None:
        """An isolation level the driver imposes on each transaction it begins, if any."""
        return None

    # -- server state ---------------------------------------------------------------
    def internal_query(self, conn: DBAPIConnection, sql: str, params: Sequence[object] | None = None,
                       keep_transaction: bool = False) -> list[tuple[Any, ...]]:
        """Run ``sql`` on a raw cursor; a transaction this opened is rolled back (unless kept)."""
        was_in_tx = self.in_transaction(conn)
        cur = conn.cursor()
        try:
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            rows = list(cur.fetchall()) if cur.description is not None else []
        finally:
            self.after_statement(conn)
            try:
                cur.close()
            except Exception:  # noqa: BLE001 - closing a raw cursor must never mask the query's error
                pass
            if not was_in_tx and not keep_transaction and self.in_transaction(conn):
                conn.rollback()
                self.after_transaction_end(conn)
        return [tuple(r) if not isinstance(r, dict) else tuple(r.values()) for r in rows]

    def server_state(self, conn: DBAPIConnection, settings: Sequence[str],
                     row_security_settings: Sequence[str] | None = None) -> ServerState:
        """The server's state; ``row_security_settings`` (None: the database has no row-level
        security) are read into ``row_security_scope``."""
        name = f"{self.family}:{uuid.uuid4().hex}"
        return ServerState(name, (), "unknown", False, name)

    def load_catalog(self, conn: DBAPIConnection) -> Catalog:
        return Catalog(complete=False)

    def transaction_probe(self, conn: DBAPIConnection) -> Callable[[DBAPIConnection], bool]:
        """``in_transaction`` as the L1 hit path calls it (chosen once per cursor): a getter in C
        where the driver keeps the flag as an attribute."""
        return self.in_transaction

    def shape_probe(self, raw_cursor: object) -> Callable[[object], Hashable]:
        """``shape_token`` as the L1 hit path calls it (chosen once per cursor)."""
        return self.shape_token

    def shape_token(self, raw_cursor: object) -> Hashable:
        """A cheap hashable stand-in for ``cursor_shape`` (L1 keys)."""
        cursor_class: type = type(raw_cursor)
        return cursor_class

    def cursor_shape(self, raw_cursor: object) -> str:
        """What decides the Python type of rows (row factory, cursor class): part of every key."""
        return type(raw_cursor).__qualname__


def view_definition(sql: str | None, dialect: str) -> tuple[set[str], set[str]] | None:
    """(tables, functions) a view's definition names, or None when it cannot be parsed."""
    if not sql:
        return None
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (SqlglotError, ValueError, TypeError, RecursionError):
        return None
    tables = {fold(t.name) for t in tree.find_all(exp.Table) if t.name}
    functions = {str(f.name).lower() if isinstance(f, exp.Anonymous) else f.sql_name().lower()
                 for f in tree.find_all(exp.Func)}
    return tables, functions


def process_local_id() -> str:
    return f"{os.getpid()}:{uuid.uuid4().hex}"
