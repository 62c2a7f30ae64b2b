"""SQLAlchemy 2 (sync engines): ``install(engine, cache)`` wraps every DBAPI connection the engine's
pool opens (docs/integrations.md).

The wrap happens in a pool ``connect`` listener added after the dialect's own: the dialect sets up
the driver connection first (psycopg2's ``register_uuid``, a C function, accepts only psycopg2's own
connection type, so it must see the raw one), reads the server's version on it, and only then the
pool's entry is given the wrapped connection, the one every checkout, execute, commit, rollback,
pool reset and close goes through. Each pooled connection keeps its own L1 for its lifetime; what
checkouts may share is decided by the scope the wrapper reads from the server (docs/integrations.md,
"What a checkout sees").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, cast

from querycache.errors import QueryCacheError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import ConnectionPoolEntry

    from querycache.cache import QueryCache

__all__ = ["SUPPORTED_DRIVERS", "install", "installed_cache", "uninstall"]

# SQLAlchemy dialect driver names -> what the wrapper knows them as.
SUPPORTED_DRIVERS = {"psycopg": "psycopg 3", "psycopg2": "psycopg2", "pymysql": "PyMySQL", "pysqlite": "sqlite3"}

# Where install() leaves its listeners, on the engine (dispose() recreates the pool with the same events).
_INSTALLED = "_querycache_install"
# In a pool entry's info: connect listeners ran on the driver's connection after it was wrapped.
_RESCOPE = "querycache_rescope"


def install(engine: Engine, cache: QueryCache, *, database_id: str | None = None) -> Engine:
    """Put ``cache`` in front of every DBAPI connection ``engine``'s pool opens from now on; returns
    ``engine``. Connections the pool holds already are closed first (``engine.dispose()``): call it
    before the engine's first use (an in-memory sqlite database would be lost). ``database_id``:
    as for ``cache.wrap``. Sync engines only; ``AsyncEngine`` is not supported yet."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if type(engine).__name__ == "AsyncEngine" or (isinstance(engine, Engine) and engine.dialect.is_async):
        raise QueryCacheError("querycache.sqlalchemy.install: AsyncEngine (and the sync_engine of one) is not "
                              "supported yet: async drivers are not wrapped yet; pass a sync Engine from "
                              "sqlalchemy.create_engine()")
    if not isinstance(engine, Engine):
        raise TypeError(f"querycache.sqlalchemy.install: engine must be a sqlalchemy Engine, "
                        f"got {type(engine).__name__}")
    driver = engine.dialect.driver
    if driver not in SUPPORTED_DRIVERS:
        raise QueryCacheError(f"querycache.sqlalchemy.install: the {engine.dialect.name}+{driver} driver is not "
                              f"supported; accepted: " + ", ".join(f"{name} ({what})" for name, what in
                                                                   SUPPORTED_DRIVERS.items()))
    if getattr(engine, _INSTALLED, None) is not None:
        raise QueryCacheError("querycache.sqlalchemy.install: a cache is installed on this engine already; "
                              "uninstall(engine) first")

    def wrap_new_connection(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
        from querycache.connection import CachedConnection

        if isinstance(dbapi_connection, CachedConnection):
            raise QueryCacheError("querycache.sqlalchemy.install: the engine's creator= returns wrapped connections "
                                  "already; use either creator=lambda: cache.wrap(...) or install(), not both")
        wrapped = cache.wrap(dbapi_connection, database_id=database_id)
        # The entry (a _ConnectionRecord; the interface type declares the attribute read-only) hands
        # this to every checkout (``_ConnectionFairy.dbapi_connection``) and closes it.
        cast(Any, connection_record).dbapi_connection = wrapped
        listeners = list(engine.pool.dispatch.connect)
        if listeners and listeners[-1] is not wrap_new_connection:
            # connect listeners added after install() run next, on the driver's connection (the event
            # hands them all the same object): what they SET the wrapper reads at the first checkout.
            connection_record.info[_RESCOPE] = True

    def rescope_first_checkout(dbapi_connection: Any, connection_record: ConnectionPoolEntry,
                               connection_proxy: object) -> None:
        if connection_record.info.pop(_RESCOPE, False):
            # Again at the end of a transaction they left open, as after any SET inside one.
            dbapi_connection._session.scope_changed()

    engine.dispose()
    event.listen(engine, "connect", wrap_new_connection)
    event.listen(engine, "checkout", rescope_first_checkout)
    _ping_the_driver(engine)
    setattr(engine, _INSTALLED, _Installed(cache, wrap_new_connection, rescope_first_checkout))
    return engine


class _Installed:
    __slots__ = ("cache", "checkout", "connect")

    def __init__(self, cache: QueryCache, connect: Callable[..., None], checkout: Callable[..., None]) -> None:
        self.cache = cache
        self.connect = connect
        self.checkout = checkout


def _ping_the_driver(engine: Engine) -> None:
    """pool_pre_ping must reach the server: its statement (``SELECT 1`` before SQLAlchemy 2.1, still on
    sqlite) is a read without tables that the cache answers, so a connection the server closed would
    pass its ping. The dialect's own ping runs on the driver's connection instead; each supported
    dialect's ping leaves the transaction state as it found it (psycopg pings in autocommit, PyMySQL
    calls ``ping()``, sqlite3 opens no transaction for a SELECT)."""
    from querycache.connection import CachedConnection

    dialect = engine.dialect
    ping = type(dialect).do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        raw = dbapi_connection.wrapped if type(dbapi_connection) is CachedConnection else dbapi_connection
        return ping(dialect, raw)

    cast(Any, dialect).do_ping = do_ping


def installed_cache(engine: Engine) -> QueryCache | None:
    """The cache ``install`` put on ``engine``, if any."""
    found: _Installed | None = getattr(engine, _INSTALLED, None)
    return found.cache if found is not None else None


def uninstall(engine: Engine) -> None:
    """Stop wrapping new connections and close the pooled ones (``engine.dispose()``)."""
    from sqlalchemy import event

    found: _Installed | None = getattr(engine, _INSTALLED, None)
    if found is None:
        raise QueryCacheError("querycache.sqlalchemy.uninstall: no cache is installed on this engine")
    event.remove(engine, "connect", found.connect)
    event.remove(engine, "checkout", found.checkout)
    vars(engine.dialect).pop("do_ping", None)
    delattr(engine, _INSTALLED)
    engine.dispose()
