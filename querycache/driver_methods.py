"""Driver methods past ``execute`` that can run SQL or end a transaction, tracked like it.

``DriverMethod`` makes a wrapper method exist only where the driver has one of that name;
the rest wraps what a method returns: psycopg's ``transaction()`` block and ``copy()``,
sqlite3's blobs, PyMySQL's ``query()`` and ``begin()``, and the calls that change session
or transaction state (docs/freshness.md, "Transactions").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from querycache.analysis import StatementKind

if TYPE_CHECKING:
    from types import TracebackType

    from querycache.session import Session

# Calls after which the wrapper reads the transaction (and maybe the scope) from the driver again.
STATE_CHANGING_METHODS = frozenset(
    {"autocommit", "select_db", "set_session", "set_isolation_level", "reset", "ping",
     "set_client_encoding", "tpc_begin", "tpc_commit", "tpc_rollback", "tpc_prepare", "change_user",
     "set_character_set"}
)
_SCOPE_CHANGING_METHODS = frozenset({"select_db", "set_session", "reset", "change_user", "ping"})


class NoSuchMethod(AttributeError, TypeError):
    """The driver has no such method. An AttributeError for ``hasattr`` and attribute access; a
    TypeError too, which is what ``with`` raises for an object that is no context manager."""


class DriverMethod:
    """A method of the wrapper that exists only where the wrapped driver object has one of that name:
    ``hasattr`` (dbapi20, SQLAlchemy, an application's feature probes) must see the driver's own
    surface, and calling what the driver lacks must fail as it would on the driver."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self._method = method
        self._name = method.__name__
        self.__doc__ = method.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self._method
        raw = instance.wrapped
        if not hasattr(raw, self._name):
            if self._name in ("__enter__", "__exit__"):
                raise NoSuchMethod(f"{type(raw).__name__!r} object does not support the context manager protocol")
            raise NoSuchMethod(f"{type(raw).__name__!r} object has no attribute {self._name!r}")
        return self._method.__get__(instance, owner)


def tracked_method(session: Session, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """The driver's connection method ``name``, tracked (the pass-through of ``CachedConnection``)."""
    family = session.adapter.family
    if name == "query" and family == "mysql":
        return _sql_method(session, method)
    if name == "begin" and family == "mysql":
        return _begin_method(session, method)
    if name in STATE_CHANGING_METHODS:
        return _after_call(session, method, name)
    return method


def _after_call(session: Session, method: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        was_in_tx = session.in_transaction()
        try:
            return method(*args, **kwargs)
        finally:
            session.reconcile(was_in_tx, ended_by_commit=name not in ("tpc_rollback", "reset"))
            session.note_driver_state()
            if name in _SCOPE_CHANGING_METHODS:
                session.refresh_scope()
            if name == "autocommit":
                session.adapter.note_autocommit(session.raw, None)
                session.note_driver_state()
    return call


def _sql_method(session: Session, method: Callable[..., Any]) -> Callable[..., Any]:
    """PyMySQL ``Connection.query(sql)``: SQL sent past any cursor, tracked like ``execute``."""
    def call(sql: Any, *args: Any, **kwargs: Any) -> Any:
        def action() -> Any:
            try:
                return method(sql, *args, **kwargs)
            finally:
                session.adapter.after_statement(session.raw)

        if isinstance(sql, str) and session.analyzer(sql).kind is StatementKind.TRANSACTION:
            return session.end_transaction(action, committing=True)
        keys = session.statement_write_keys(sql)
        return session.run_write(keys, action, False) if keys else action()
    return call


def _begin_method(session: Session, method: Callable[..., Any]) -> Callable[..., Any]:
    """PyMySQL ``begin()``: inside a transaction the server commits it first (an implicit commit)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        candidate = session.current_stamp()
        if session.in_transaction():
            result = session.end_transaction(lambda: method(*args, **kwargs), committing=True)
        else:
            result = method(*args, **kwargs)
        session.tx.begin(candidate)
        session.adapter.after_statement(session.raw)
        return result
    return call


class BlobWriter:
    """A sqlite3 Blob whose writes publish their table like a write statement."""

    def __init__(self, session: Session, blob: Any, keys: set[str]) -> None:
        self._session = session
        self._blob = blob
        self._keys = keys

    def write(self, data: Any) -> None:
        self._session.run_write(self._keys, lambda: self._blob.write(data), False)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._session.run_write(self._keys, lambda: self._blob.__setitem__(index, value), False)

    def __getitem__(self, index: Any) -> Any:
        return self._blob[index]

    def __len__(self) -> int:
        return len(self._blob)

    def __enter__(self) -> BlobWriter:
        self._blob.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._blob.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blob, name)


class TransactionBlock:
    """psycopg's ``with conn.transaction():``, with the two-phase publish around its commit."""

    def __init__(self, session: Session, block: Any) -> None:
        self._session = session
        self._block = block
        self._outer = False

    def __enter__(self) -> Any:
        session = self._session
        self._outer = not session.in_transaction()
        candidate = session.stamp_candidate() if self._outer else None
        result = self._block.__enter__()
        if self._outer:
            session.tx.begin(candidate)
        return result

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any:
        session = self._session
        if not self._outer:
            if exc_type is not None:
                session.tx.rolled_back_to_savepoint()
            return self._block.__exit__(exc_type, exc, tb)
        try:
            if exc_type is None and session.tx.written:
                return session.publish_end(lambda: self._block.__exit__(exc_type, exc, tb), committing=True)
            return self._block.__exit__(exc_type, exc, tb)
        finally:
            session.tx_ended()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._block, name)


class CopyBlock:
    """psycopg's ``with cursor.copy(...)``: a write, published around the block in autocommit."""

    def __init__(self, session: Session, keys: set[str], block: Any) -> None:
        self._session = session
        self._keys = keys
        self._block = block
        self._token = ""
        self._autocommit = False

    def __enter__(self) -> Any:
        session = self._session
        self._autocommit = not session.in_transaction()
        if self._keys and self._autocommit:
            self._token = session.publisher.begin(self._keys)
        return self._block.__enter__()

    def __exit__(self, *exc: object) -> Any:
        session = self._session
        try:
            return self._block.__exit__(*exc)
        finally:
            if self._keys:
                if self._autocommit:
                    session.publisher.end(self._keys, self._token)
                    session.publisher.count(self._keys)
                if session.in_transaction():
                    session.tx.wrote(self._keys)
