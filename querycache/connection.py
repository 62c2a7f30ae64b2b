"""CachedConnection: the PEP 249 connection, with the cache behind its cursors' ``execute``.

A wrapped connection behaves like the one it wraps: it reports the wrapped class through
``__class__`` and passes unknown attributes through. What the cache knows about the
connection lives in its ``Session`` (querycache/session.py), shared with its cursors.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from querycache.analysis import ALL_TABLES
from querycache.cursor import CachedCursor
from querycache.driver_methods import STATE_CHANGING_METHODS, BlobWriter, DriverMethod, TransactionBlock, tracked_method
from querycache.explain import explain
from querycache.l1 import L1Cache
from querycache.session import Session
from querycache.status import BypassReason

if TYPE_CHECKING:
    from types import TracebackType

    from querycache.cache import QueryCache

__all__ = ["CachedConnection", "CachedCursor"]

_TRACKED_METHODS = STATE_CHANGING_METHODS | {"query", "begin"}
# Attributes whose change may change the isolation level, or whether reads open a transaction.
_PLAN_CHANGING_ATTRIBUTES = frozenset({"isolation_level", "autocommit", "read_only", "deferrable"})


class CachedConnection:
    """A PEP 249 connection whose reads are answered from the cache when provably fresh."""

    _own = frozenset({"_raw", "_cache", "_session", "_cursors", "_closed", "__weakref__"})

    def __init__(self, cache: QueryCache, session: Session) -> None:
        object.__setattr__(self, "_raw", session.raw)
        self._cache = cache
        self._session = session
        self._closed = False
        self._cursors: weakref.WeakSet[CachedCursor] = weakref.WeakSet()

    # -- identity and pass-through -------------------------------------------------------
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._raw, name)
        if name in _TRACKED_METHODS and callable(value):
            return tracked_method(self._session, name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CachedConnection._own:
            object.__setattr__(self, name, value)
            return
        session = self._session
        in_tx = session.in_transaction()
        setattr(self._raw, name, value)
        session.reconcile(in_tx, ended_by_commit=True)
        if name in _PLAN_CHANGING_ATTRIBUTES:
            session.plans.clear()
        session.note_driver_state()

    def __repr__(self) -> str:
        return f"<querycache.CachedConnection wrapping {self._raw!r}>"

    @property
    def wrapped(self) -> Any:
        """The driver connection this wraps."""
        return self._raw

    @property
    def cache(self) -> QueryCache:
        return self._cache

    @property
    def database_id(self) -> str:
        return self._session.database_id

    @property
    def version_namespace(self) -> str:
        """What this connection's table versions are keyed by (see ServerState.version_namespace)."""
        return self._session.version_namespace

    @property
    def _l1(self) -> L1Cache | None:
        """This connection's L1 (tests look into it)."""
        return self._session.l1

    # -- PEP 249 ------------------------------------------------------------------------
    def cursor(self, *args: Any, **kwargs: Any) -> CachedCursor:
        cur = CachedCursor(self, self._session, self._raw.cursor(*args, **kwargs))
        self._cursors.add(cur)
        return cur

    def commit(self) -> None:
        self._session.end_transaction(self._raw.commit, committing=True)

    def rollback(self) -> None:
        self._session.end_transaction(self._raw.rollback, committing=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            in_tx = self._session.in_transaction() if not self._raw_closed() else False
            try:
                self._raw.close()
            finally:
                self._session.close(in_tx)

    def _raw_closed(self) -> bool:
        closed = getattr(self._raw, "closed", False)
        return bool(closed) if not callable(closed) else False

    @DriverMethod
    def execute(self, sql: Any, params: Any = None, *args: Any, **kwargs: Any) -> CachedCursor:
        """sqlite3 / psycopg ``Connection.execute``: a new cursor, executed through the cache."""
        cur = self.cursor()
        cur.execute(sql, params, *args, **kwargs) if params is not None or args or kwargs else cur.execute(sql)
        return cur

    @DriverMethod
    def executemany(self, sql: Any, seq_of_params: Any, *args: Any, **kwargs: Any) -> CachedCursor:
        cur = self.cursor()
        cur.executemany(sql, seq_of_params, *args, **kwargs)
        return cur

    @DriverMethod
    def executescript(self, script: str) -> CachedCursor:
        """sqlite3: commits first, then runs several statements: a write to every table."""
        session = self._session
        keys = {session.version_key(ALL_TABLES)} | session.tx.written
        try:
            session.publisher.around(keys, lambda: self._raw.executescript(script))
        finally:
            session.tx_ended()
            session.catalog_changed()
        cur = CachedCursor(self, session, self._raw.cursor())
        cur._start_bypass(BypassReason.MULTI_STATEMENT)
        return cur

    @DriverMethod
    def blobopen(self, table: str, column: str, row: int, /, *, readonly: bool = False, name: str = "main") -> Any:
        """sqlite3 incremental blob I/O: every write is tracked like an UPDATE of ``table``."""
        blob = self._raw.blobopen(table, column, row, readonly=readonly, name=name)
        if readonly:
            return blob
        session = self._session
        return BlobWriter(session, blob, session.write_keys(session.analyzer(f'UPDATE "{table}" SET x = 1')))

    @DriverMethod
    def deserialize(self, data: Any, /, *, name: str = "main") -> None:
        """sqlite3: replaces the whole database: a write to every table."""
        session = self._session
        session.publisher.around({session.version_key(ALL_TABLES)}, lambda: self._raw.deserialize(data, name=name))
        session.catalog_changed()

    @DriverMethod
    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        """psycopg ``Connection.transaction()``: its exit commits (or releases a savepoint)."""
        return TransactionBlock(self._session, self._raw.transaction(*args, **kwargs))

    def __enter__(self) -> CachedConnection:
        self._raw.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any:
        # sqlite3 and psycopg commit on a clean exit and roll back otherwise; PyMySQL closes.
        return self._session.end_transaction(lambda: self._raw.__exit__(exc_type, exc, tb),
                                             committing=exc_type is None)

    def explain(self, sql: str, params: Any = None) -> dict[str, Any]:
        """How this connection would answer ``sql`` right now, without running it: the analysis,
        the dependencies (catalog included), the keys, and the tier (``l1``, ``l2``, ``l3`` or
        ``database`` with the reason). The store lookup creates missing table versions, nothing else."""
        return explain(self._session, sql, params)

    def row_security_report(self) -> list[dict[str, Any]]:
        """The tables with row-level security this connection's database has, what their policies
        read, and whether their reads are cached (``querycache doctor --dsn``; docs/isolation.md)."""
        return self._session.row_security_report()
