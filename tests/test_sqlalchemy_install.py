"""``querycache.sqlalchemy.install(engine, cache)``: every connection of a sync engine's pool wrapped.

The ORM scenario of tests/test_sqlalchemy_orm.py runs on installed engines (psycopg 3, psycopg2,
PyMySQL, sqlite) with the raw run's results; then what a checkout sees of the one before it on the same
pooled connection: its L1 (kept), an uncommitted transaction (rolled back on return, through the
wrapper), session state (a SET undone by that rollback, or committed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

import querycache
from querycache.connection import CachedConnection
from querycache.sqlalchemy import install, installed_cache, uninstall
from tests.conftest import MYSQL, PG_DSN, Database
from tests.test_sqlalchemy_orm import run_on_engines as _run

FIXTURES = {"sqlite": "sqlite_db", "postgres": "pg", "psycopg2": "pg2", "mysql": "mysql"}
_PG = dict(item.split("=", 1) for item in PG_DSN.split())


def url(db: Database, kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{db.path}"  # type: ignore[attr-defined]
    if kind == "mysql":
        return f"mysql+pymysql://{MYSQL['user']}@{MYSQL['host']}:{MYSQL['port']}/{MYSQL['database']}"
    driver = "psycopg2" if kind == "psycopg2" else "psycopg"
    return (f"postgresql+{driver}://{_PG.get('user', 'postgres')}@{_PG.get('host', '127.0.0.1')}:"
            f"{_PG.get('port', '5432')}/{_PG.get('dbname', 'test')}")




@pytest.mark.parametrize("kind", ["sqlite", "postgres", "psycopg2", "mysql"])
def test_orm_scenario_installed_equals_raw(kind: str, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue(FIXTURES[kind])
    raw = _run(db, f"{db.prefix}r", sa.create_engine(url(db, kind)), sa.create_engine(url(db, kind)))
    with querycache.QueryCache() as cache:
        engine = install(sa.create_engine(url(db, kind)), cache)
        engine2 = install(sa.create_engine(url(db, kind)), cache)
        with engine.connect() as conn:
            assert type(conn.connection.dbapi_connection) is CachedConnection
        wrapped = _run(db, f"{db.prefix}w", engine, engine2)
        stats = cache.stats().to_dict()
    assert raw.stale == [], raw.stale
    assert wrapped.stale == [], wrapped.stale
    assert len(raw.results) > 20
    differing = [(label, r, w) for (label, r), (_, w) in zip(raw.results, wrapped.results, strict=True) if r != w]
    assert differing == [], differing
    assert stats["hits"]["l1"] + stats["hits"]["l2"] > 0, stats
    assert stats["fail_open"] == 0, stats


def _status(conn: sa.Connection, sql: str) -> tuple[list[Any], str]:
    # text(), not exec_driver_sql(): that one passes its empty parameters as an immutabledict, which the
    # wrapper does not take for a parameter mapping (bypass:unknown).
    result = conn.execute(sa.text(sql))
    status = result.context.cursor.cache_status
    return [tuple(row) for row in result.all()], status


@pytest.fixture
def one_connection(pg: Database, cache: querycache.QueryCache) -> Iterator[tuple[sa.Engine, str]]:
    """An installed psycopg engine whose pool holds one connection (every checkout gets it), and a table."""
    table = pg.t("checkout")
    pg.tables.append(table)
    pg.admin(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)", f"INSERT INTO {table} VALUES (1, 'public')")
    engine = install(sa.create_engine(url(pg, "postgres"), poolclass=QueuePool, pool_size=1, max_overflow=0), cache)
    yield engine, table
    engine.dispose()


def test_a_pooled_connections_l1_outlives_its_checkouts(one_connection: tuple[sa.Engine, str]) -> None:
    engine, table = one_connection
    sql = f"SELECT v FROM {table} WHERE id = 1"
    with engine.connect() as conn:
        first = conn.connection.dbapi_connection
        assert _status(conn, sql) == ([("public",)], "miss")
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is first
        assert _status(conn, sql) == ([("public",)], "hit:L1")


def test_reset_on_return_rolls_back_through_the_wrapper(one_connection: tuple[sa.Engine, str],
                                                        pg: Database) -> None:
    engine, table = one_connection
    sql = f"SELECT v FROM {table} WHERE id = 1"
    observer = install(sa.create_engine(url(pg, "postgres")), querycache.QueryCache())
    try:
        with engine.connect() as conn:
            assert _status(conn, sql)[0] == [("public",)]
        with engine.connect() as conn:  # not committed: the pool rolls it back on return
            conn.exec_driver_sql(f"UPDATE {table} SET v = 'uncommitted' WHERE id = 1")
            assert _status(conn, sql) == ([("uncommitted",)], "bypass:tx_dirty")
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.wrapped.info.transaction_status == 0  # IDLE: rolled back
            assert _status(conn, sql)[0] == [("public",)]
        with observer.connect() as conn:
            assert _status(conn, sql)[0] == [("public",)]
        with engine.begin() as conn:  # committed
            conn.exec_driver_sql(f"UPDATE {table} SET v = 'committed' WHERE id = 1")
        with observer.connect() as conn:
            assert _status(conn, sql)[0] == [("committed",)]
        with engine.connect() as conn:
            assert _status(conn, sql)[0] == [("committed",)]
    finally:
        cache = installed_cache(observer)
        observer.dispose()
        assert cache is not None
        cache.close()


def test_session_state_of_one_checkout_is_the_scope_of_the_next(one_connection: tuple[sa.Engine, str],
                                                                pg: Database) -> None:
    """A search_path SET in a checkout that the pool then rolls back is gone in the next one (and so
    are the entries read under it); one that was committed stays, as on the raw connection."""
    engine, table = one_connection
    schema = f"{pg.prefix}_s1"
    pg.admin(f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.{table} (id int PRIMARY KEY, v text)",
             f"INSERT INTO {schema}.{table} VALUES (1, 'in {schema}')")
    sql = f"SELECT v FROM {table} WHERE id = 1"
    try:
        with engine.connect() as conn:
            assert _status(conn, sql) == ([("public",)], "miss")
            conn.exec_driver_sql(f"SET search_path TO {schema}")
            assert _status(conn, sql) == ([(f"in {schema}",)], "miss")
            assert _status(conn, sql) == ([(f"in {schema}",)], "hit:L1")
        with engine.connect() as conn:  # the rollback on return undid the SET
            assert conn.exec_driver_sql("SHOW search_path").scalar() == '"$user", public'
            assert _status(conn, sql) == ([("public",)], "hit:L1")
            conn.exec_driver_sql(f"SET search_path TO {schema}")
            conn.commit()
        with engine.connect() as conn:  # committed: the connection keeps it
            assert conn.exec_driver_sql("SHOW search_path").scalar() == schema
            assert _status(conn, sql) == ([(f"in {schema}",)], "hit:L1")
    finally:
        engine.dispose()
        pg.admin(f"DROP SCHEMA {schema} CASCADE")


def test_pre_ping_and_recycled_connections_are_wrapped(pg: Database, cache: querycache.QueryCache) -> None:
    engine = install(sa.create_engine(url(pg, "postgres"), pool_pre_ping=True), cache)
    try:
        with engine.connect() as conn:
            first = conn.connection.dbapi_connection
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        with engine.connect() as conn:
            conn.invalidate()  # the next checkout opens a new connection
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection is not first
            assert type(conn.connection.dbapi_connection) is CachedConnection
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_uninstall_and_errors(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    engine = install(sa.create_engine(url(sqlite_db, "sqlite")), cache)
    assert installed_cache(engine) is cache
    with pytest.raises(querycache.QueryCacheError, match="installed on this engine already"):
        install(engine, cache)
    uninstall(engine)
    assert installed_cache(engine) is None
    with engine.connect() as conn:
        assert type(conn.connection.dbapi_connection) is not CachedConnection
    with pytest.raises(querycache.QueryCacheError, match="no cache is installed"):
        uninstall(engine)
    engine.dispose()

    with pytest.raises(TypeError, match="must be a sqlalchemy Engine, got str"):
        install("sqlite://", cache)  # type: ignore[arg-type]

    # creator= returning wrapped connections, and install() too: said at the first connect.
    double = install(sa.create_engine("sqlite://", creator=lambda: cache.wrap(sqlite_db.connect())), cache)
    with pytest.raises(querycache.QueryCacheError, match=r"use either creator=lambda: cache\.wrap"):
        double.connect()
    double.dispose()


def test_async_engine_is_refused(pg: Database, cache: querycache.QueryCache) -> None:
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url(pg, "postgres"))
    with pytest.raises(querycache.QueryCacheError, match=r"AsyncEngine .* is not supported yet"):
        install(engine, cache)  # type: ignore[arg-type]
    with pytest.raises(querycache.QueryCacheError, match=r"AsyncEngine .* is not supported yet"):
        install(engine.sync_engine, cache)


def test_an_unsupported_driver_is_refused(cache: querycache.QueryCache) -> None:
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class OtherDriver(SQLiteDialect_pysqlite):
        driver = "otherdriver"

    name = f"qc{uuid.uuid4().hex[:6]}"
    globals()[name] = OtherDriver
    registry.register(f"sqlite.{name}", __name__, name)
    engine = sa.create_engine(f"sqlite+{name}://")
    with pytest.raises(querycache.QueryCacheError,
                       match=r"sqlite\+otherdriver driver is not supported; accepted: psycopg \(psycopg 3\)"):
        install(engine, cache)


@pytest.mark.parametrize("ping", ["the dialect's", "SELECT 1"])
def test_pre_ping_reaches_the_server(ping: str, pg: Database, cache: querycache.QueryCache) -> None:
    """pool_pre_ping's ``SELECT 1`` (SQLAlchemy 2.0's on PostgreSQL; 2.1 sends ``;``) is a read without
    tables, which the cache answers: pinged through the wrapper, a connection the server closed would
    pass its ping from the L1 and the query after it fail. install() pings the driver's connection."""
    engine = sa.create_engine(url(pg, "postgres"), poolclass=QueuePool, pool_size=1, max_overflow=0,
                              pool_pre_ping=True)
    if ping == "SELECT 1":
        vars(engine.dialect)["_dialect_specific_select_one"] = "SELECT 1"  # as SQLAlchemy 2.0 pings
    install(engine, cache)
    try:
        for _ in range(3):  # the second and third checkouts ping
            with engine.connect() as conn:
                pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        admin = pg.connect()
        try:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            admin.close()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
            assert type(conn.connection.dbapi_connection) is CachedConnection
    finally:
        engine.dispose()


def test_database_id_is_passed_to_wrap(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    engine = install(sa.create_engine(url(sqlite_db, "sqlite")), cache, database_id="shop-db")
    try:
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.database_id == "shop-db"
    finally:
        engine.dispose()


def test_connect_listeners_added_after_install_are_in_the_scope(pg: Database, cache: querycache.QueryCache) -> None:
    """A connect listener added after install() runs on the driver's connection, after the wrap: what it
    SETs must still key the entries its connection fills (else another engine would be served them)."""
    from sqlalchemy import event

    table = pg.t("listener")
    schema = f"{pg.prefix}_s2"
    pg.tables.append(table)
    pg.admin(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)", f"INSERT INTO {table} VALUES (1, 'public')",
             f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.{table} (id int PRIMARY KEY, v text)",
             f"INSERT INTO {schema}.{table} VALUES (1, 'tenant')")
    tenant = install(sa.create_engine(url(pg, "postgres")), cache)

    @event.listens_for(tenant, "connect")
    def set_search_path(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET search_path TO {schema}")
        cursor.close()
        dbapi_connection.commit()

    plain = install(sa.create_engine(url(pg, "postgres")), cache)
    sql = f"SELECT v FROM {table} WHERE id = 1"
    try:
        for _ in range(2):
            with tenant.connect() as conn:
                assert _status(conn, sql)[0] == [("tenant",)]
        with plain.connect() as conn:
            assert _status(conn, sql) == ([("public",)], "miss")
        with tenant.connect() as conn:
            assert _status(conn, sql) == ([("tenant",)], "hit:L1")
    finally:
        tenant.dispose()
        plain.dispose()
        pg.admin(f"DROP SCHEMA {schema} CASCADE")
