"""Real databases for the tests, with executions counted where the driver sends them.

Counting happens in a driver-level cursor subclass (or sqlite's trace callback):
every statement that reaches the server is counted by its text, so tests assert
on real backend executions instead of trusting the cache's own counters.

A service that is down makes its tests skip locally and FAIL under ``CI=true``.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import uuid
from typing import Any, Iterator, NoReturn

import pytest

import querycache
from querycache.testing.redis_server import RedisServer

PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
MYSQL = dict(host=os.environ.get("QUERYCACHE_TEST_MYSQL_HOST", "127.0.0.1"), port=3306, user="root",
             password="", database="test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

EXECUTED: collections.Counter[str] = collections.Counter()


def _count(sql: Any) -> None:
    EXECUTED[str(sql)] += 1


def require(service: str, error: BaseException) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{service} is required under CI=true but unreachable: {error}")
    pytest.skip(f"{service} unreachable: {error}")


SHARED_REDIS = os.environ.get("QUERYCACHE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def maintaining_cache(store: str, prefix: str, **l2: object) -> querycache.QueryCache:
    """A QueryCache that maintains answers (docs/maintenance.md), on the memory store or on the
    shared Redis under a namespace of its own (``prefix`` and a random part); ``l2``: more of its
    l2 settings."""
    config: dict[str, Any] = {"invalidation": {"maintain": {"enabled": True}}}
    if store == "redis":
        shared_redis_up(SHARED_REDIS)
        config["l2"] = {"backend": "redis", "url": SHARED_REDIS, "namespace": prefix + uuid.uuid4().hex[:8], **l2}
    return querycache.QueryCache.from_dict(config)


def maintain_stats(cache: Any) -> dict[str, int]:
    """The ``maintain`` counters of a QueryCache's stats (docs/maintenance.md)."""
    found: dict[str, int] = cache.stats().to_dict()["maintain"]
    return found


def shared_redis_up(url: str = SHARED_REDIS) -> None:
    """Skip (fail under CI=true) unless the shared Redis answers a PING."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3) as client:
            client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require("Redis", exc)


def own_redis_server(directory: str | os.PathLike[str], password: str | None = None) -> RedisServer:
    """A redis-server of the test's own (querycache/testing/redis_server.py), not started yet;
    without the redis-server binary the test is skipped (failed under CI=true)."""
    try:
        return RedisServer(str(directory), password)
    except FileNotFoundError as exc:
        require("redis-server binary", exc)


_COUNTING: dict[str, type] = {}


def counting_class(driver: str) -> type:
    """The driver's cursor class, counting every statement it sends (one class per driver)."""
    if driver in _COUNTING:
        return _COUNTING[driver]
    if driver == "psycopg":
        import psycopg

        class PsycopgCounting(psycopg.Cursor):  # type: ignore[type-arg]
            def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
                _count(query)
                return super().execute(query, params, **kwargs)

        cls: type = PsycopgCounting
    elif driver == "psycopg2":
        import psycopg2.extensions

        class Psycopg2Counting(psycopg2.extensions.cursor):
            def execute(self, query: Any, vars: Any = None) -> Any:
                _count(query)
                return super().execute(query, vars)

        cls = Psycopg2Counting
    else:
        import pymysql.cursors

        class PyMySQLCounting(pymysql.cursors.Cursor):
            def execute(self, query: Any, args: Any = None) -> Any:
                _count(query)
                return super().execute(query, args)

        cls = PyMySQLCounting
    _COUNTING[driver] = cls
    return cls


class Database:
    """One backend under test: raw counted connections and helpers that speak its dialect."""

    name = ""
    ph = "?"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tables: list[str] = []
        self.views: list[str] = []

    def t(self, name: str) -> str:
        """A table name unique to this test."""
        return f"{self.prefix}_{name}"

    def connect(self, autocommit: bool = True) -> Any:
        raise NotImplementedError

    def admin(self, *statements: str) -> None:
        conn = self.connect(autocommit=True)
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
            if getattr(conn, "autocommit", True) is not True:
                conn.commit()
        finally:
            conn.close()

    def executions(self, needle: str) -> int:
        """Statements containing ``needle`` that reached the server (up to its first placeholder:
        sqlite reports statements with their parameters bound)."""
        needle = needle.split(self.ph)[0]
        return sum(n for sql, n in EXECUTED.items() if needle in sql)

    def cleanup(self) -> None:
        pass


class SqliteDatabase(Database):
    name = "sqlite"
    ph = "?"

    def __init__(self, prefix: str, path: str) -> None:
        super().__init__(prefix)
        self.path = path

    def connect(self, autocommit: bool = True) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None if autocommit else "", check_same_thread=False)
        conn.set_trace_callback(_count)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def admin(self, *statements: str) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        for statement in statements:
            conn.execute(statement)
        conn.close()


class PostgresDatabase(Database):
    name = "postgres"
    ph = "%s"

    def connect(self, autocommit: bool = True) -> Any:
        import psycopg

        return psycopg.connect(PG_DSN, autocommit=autocommit, cursor_factory=counting_class("psycopg"))

    def cleanup(self) -> None:
        conn = self.connect()
        cur = conn.cursor()
        # A failed test may leave transactions open that would block DROP forever: end those that
        # hold a lock on this test's own relations (never another test's, nor another run's).
        cur.execute("SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a WHERE a.datname = current_database() "
                    "AND a.pid <> pg_backend_pid() AND a.state LIKE 'idle in transaction%%' AND EXISTS ("
                    "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE l.pid = a.pid AND c.relname LIKE %s)", [self.prefix + "%"])
        for view in reversed(self.views):
            cur.execute(f"DROP VIEW IF EXISTS {view} CASCADE")
        for table in reversed(self.tables):
            cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.close()


class Psycopg2Database(PostgresDatabase):
    name = "psycopg2"

    def connect(self, autocommit: bool = True) -> Any:
        import psycopg2

        conn = psycopg2.connect(PG_DSN, cursor_factory=counting_class("psycopg2"))
        conn.autocommit = autocommit
        return conn


class MysqlDatabase(Database):
    name = "mysql"
    ph = "%s"

    def connect(self, autocommit: bool = True) -> Any:
        import pymysql

        return pymysql.connect(**MYSQL, autocommit=autocommit, cursorclass=counting_class("pymysql"))

    def cleanup(self) -> None:
        import pymysql

        conn = self.connect()
        cur = conn.cursor()
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        # A test that left a transaction open on its tables holds their metadata locks: wait for
        # them briefly, and only then end the open transactions (they may be another suite's, run
        # beside this one: killing them all at every cleanup broke that suite's connections).
        cur.execute("SET SESSION lock_wait_timeout = 1")
        drops = [f"DROP VIEW IF EXISTS {view}" for view in reversed(self.views)]
        drops += [f"DROP TABLE IF EXISTS {table}" for table in reversed(self.tables)]
        for drop in drops:
            try:
                cur.execute(drop)
            except pymysql.OperationalError as exc:  # not pymysql.err.: see test_maintain._driver_error
                if exc.args[0] != 1205:  # ER_LOCK_WAIT_TIMEOUT
                    raise
                self._end_open_transactions(cur)
                cur.execute(drop)
        conn.close()

    @staticmethod
    def _end_open_transactions(cur: Any) -> None:
        cur.execute("SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX "
                    "WHERE trx_mysql_thread_id <> CONNECTION_ID()")
        for (thread,) in cur.fetchall():
            try:
                cur.execute(f"KILL {int(thread)}")
            except Exception:  # noqa: BLE001 - it may have ended meanwhile
                pass


def _probe(db: Database, service: str) -> None:
    try:
        db.connect().close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require(service, exc)


def id_value_table(db: Database, name: str) -> str:
    """A table ``<name>`` (id int PRIMARY KEY, v int) of this test with the row (1, 10); dropped after it."""
    table = db.t(name)
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)", f"INSERT INTO {table} VALUES (1, 10)")
    return table


def make_database(kind: str, tmp_path: Any) -> Database:
    prefix = "qc" + uuid.uuid4().hex[:8]
    db: Database
    if kind == "sqlite":
        db = SqliteDatabase(prefix, str(tmp_path / "test.db"))
    elif kind == "postgres":
        db = PostgresDatabase(prefix)
        _probe(db, "PostgreSQL")
    elif kind == "psycopg2":
        db = Psycopg2Database(prefix)
        _probe(db, "PostgreSQL")
    else:
        db = MysqlDatabase(prefix)
        _probe(db, "MariaDB")
    return db


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    database = make_database(request.param, tmp_path)
    yield database
    database.cleanup()


@pytest.fixture
def pg(tmp_path: Any) -> Iterator[Database]:
    database = make_database("postgres", tmp_path)
    yield database
    database.cleanup()


@pytest.fixture
def pg2(tmp_path: Any) -> Iterator[Database]:
    database = make_database("psycopg2", tmp_path)
    yield database
    database.cleanup()


@pytest.fixture
def mysql(tmp_path: Any) -> Iterator[Database]:
    database = make_database("mysql", tmp_path)
    yield database
    database.cleanup()


@pytest.fixture
def sqlite_db(tmp_path: Any) -> Database:
    return make_database("sqlite", tmp_path)


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port (``own_redis_server``): tests may kill,
    restart, fill or flush it; the shared one is never touched."""
    server = own_redis_server(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cache() -> Iterator[querycache.QueryCache]:
    qc = querycache.QueryCache()
    yield qc
    qc.close()


def make_items(db: Database, rows: int = 5) -> str:
    """A table ``items(id, name, qty)`` with ``rows`` rows; returns its name."""
    table = db.t("items")
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(50), qty INTEGER)")
    values = ", ".join(f"({i}, 'item{i}', {i * 10})" for i in range(1, rows + 1))
    db.admin(f"INSERT INTO {table} VALUES {values}")
    return table


def make_orders(kind: str, tmp_path: Any) -> Database:
    """A database with ``orders(id, status, total)``: 40 rows, odd ids 'paid', total = 3 * id (the L3 tests)."""
    db = make_database(kind, tmp_path)
    table = db.t("orders")
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, status VARCHAR(10), total INTEGER)")
    db.admin(f"INSERT INTO {table} VALUES " + ", ".join(
        f"({i}, '{'paid' if i % 2 else 'open'}', {i * 3})" for i in range(1, 41)))
    return db


def run(conn: Any, sql: str, params: Any = None) -> tuple[list[Any], str | None]:
    cur = conn.cursor()
    if params is None:
        cur.execute(sql)
    else:
        cur.execute(sql, params)
    rows = list(cur.fetchall()) if cur.description is not None else []
    return rows, cur.cache_status
