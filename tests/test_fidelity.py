"""A cached answer is indistinguishable from a live one: same values, same types, same description.

Each test reads a row of every interesting type live (raw connection), then through
the cache three times: miss, L1 hit, and L2 hit (from a second connection of the same cache,
which goes through the msgpack codec), once per store: the memory store and Redis.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

import querycache
from tests.conftest import Database


@pytest.fixture(params=["memory", "redis"])
def store_cache(request: pytest.FixtureRequest) -> Iterator[querycache.QueryCache]:
    """A cache on each L2 store: the codec's bytes cross Redis in the second case."""
    if request.param == "memory":
        qc = querycache.QueryCache()
    else:
        from tests.backends.test_redis import REDIS_URL, _leased, _redis_up

        _redis_up(REDIS_URL)
        qc = querycache.QueryCache.from_dict({"l2": {"backend": "redis", "url": REDIS_URL, "timeout_ms": 2000,
                                                     "namespace": "fid" + uuid.uuid4().hex[:8]}})
        _leased(qc.backend)  # L1 answers only under a lease: the second read must be able to hit L1
    yield qc
    qc.close()


def _fetch(conn: Any, sql: str) -> tuple[list[Any], Any, int, str | None]:
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    return rows, cur.description, cur.rowcount, getattr(cur, "cache_status", None)


def _assert_same(live: list[Any], cached: list[Any]) -> None:
    assert len(live) == len(cached)
    for live_row, cached_row in zip(live, cached, strict=True):
        assert type(live_row) is type(cached_row)
        for a, b in zip(live_row, cached_row, strict=True):
            assert type(a) is type(b), (a, b)
            if isinstance(a, memoryview):
                assert bytes(a) == bytes(b)
            else:
                assert a == b
                assert repr(a) == repr(b)


def _check(db: Database, cache: querycache.QueryCache, sql: str) -> None:
    raw = db.connect()
    live_rows, live_desc, live_count, _ = _fetch(raw, sql)
    first = cache.wrap(db.connect())
    second = cache.wrap(db.connect())
    statuses = []
    for conn in (first, first, second):
        rows, desc, count, status = _fetch(conn, sql)
        statuses.append(status)
        _assert_same(list(live_rows), list(rows))
        assert type(rows) is type(live_rows)
        assert [tuple(c)[:2] for c in desc] == [tuple(c)[:2] for c in live_desc]
        assert [c[0] for c in desc] == [c[0] for c in live_desc]
        assert count == live_count
    assert statuses == ["miss", "hit:L1", "hit:L2"], cache.stats().to_dict()["not_filled"]


@pytest.mark.parametrize("driver", ["pg", "pg2"])
def test_postgres_types_round_trip(driver: str, request: pytest.FixtureRequest,
                                   store_cache: querycache.QueryCache) -> None:
    pg: Database = request.getfixturevalue(driver)
    table = pg.t("types")
    pg.tables.append(table)
    pg.admin(
        f"CREATE TABLE {table} (n numeric(12,4), big bigint, f double precision, ts timestamptz, "
        f"tsn timestamp, d date, t time, ttz timetz, iv interval, b bytea, u uuid, j jsonb, js json, "
        f"arr integer[], tarr text[], nul text, flag boolean)",
        f"INSERT INTO {table} VALUES (1234.5600, 9223372036854775807, -0.0, '2024-03-31 01:30:00+02', "
        f"'2024-01-02 03:04:05.123456', '2024-02-29', '23:59:59.999999', '10:00:00+05:30', "
        f"'1 day 02:03:04.5', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
        f"'{{\"a\": [1, 2.5, null, \"x\"], \"b\": {{\"c\": true}}}}', '[1, \"two\"]', "
        f"'{{1,2,NULL}}', '{{\"a b\",c}}', NULL, true)",
    )
    _check(pg, store_cache, f"SELECT * FROM {table}")


def test_postgres_timezone_is_part_of_scope(pg: Database, cache: querycache.QueryCache) -> None:
    conn = cache.wrap(pg.connect())
    sql = "SELECT '2024-06-01 12:00:00+00'::timestamptz"
    conn.cursor().execute("SET TIME ZONE 'UTC'")
    utc = _fetch(conn, sql)
    conn.cursor().execute("SET TIME ZONE 'Asia/Tokyo'")
    tokyo = _fetch(conn, sql)
    assert tokyo[3] == "miss"
    assert repr(utc[0]) != repr(tokyo[0])
    raw = pg.connect()
    raw.execute("SET TIME ZONE 'Asia/Tokyo'")
    assert repr(raw.execute(sql).fetchall()) == repr(tokyo[0])


def test_mysql_types_round_trip(mysql: Database, store_cache: querycache.QueryCache) -> None:
    table = mysql.t("types")
    mysql.tables.append(table)
    mysql.admin(
        f"CREATE TABLE {table} (n DECIMAL(12,4), big BIGINT, f DOUBLE, dt DATETIME(6), d DATE, t TIME(6), "
        f"b VARBINARY(10), bl BLOB, j JSON, nul VARCHAR(5), e ENUM('x','y'), bit1 BIT(8), y YEAR)",
        f"INSERT INTO {table} VALUES (1234.5600, 9223372036854775807, 2.5, '2024-01-02 03:04:05.123456', "
        f"'2024-02-29', '-838:59:59.000000', 0x00ff10, 'blob', '{{\"a\": [1, 2]}}', NULL, 'y', b'101', 2024)",
    )
    _check(mysql, store_cache, f"SELECT * FROM {table}")


def test_sqlite_types_round_trip(sqlite_db: Database, store_cache: querycache.QueryCache) -> None:
    table = sqlite_db.t("types")
    sqlite_db.admin(f"CREATE TABLE {table} (i INTEGER, r REAL, t TEXT, b BLOB, n)",
                    f"INSERT INTO {table} VALUES (9223372036854775807, -0.0, 'ünï', x'00ff', NULL)")
    raw = sqlite_db.connect()
    live = _fetch(raw, f"SELECT * FROM {table}")
    a = store_cache.wrap(sqlite_db.connect())
    b = store_cache.wrap(sqlite_db.connect())
    for conn, status in ((a, "miss"), (a, "hit:L1"), (b, "hit:L2")):
        rows, desc, count, got = _fetch(conn, f"SELECT * FROM {table}")
        _assert_same(live[0], rows)
        assert desc == live[1]
        assert count == live[2]
        assert got == status


def test_row_factories_are_part_of_the_key(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    import sqlite3

    table = sqlite_db.t("rf")
    sqlite_db.admin(f"CREATE TABLE {table} (a INTEGER, b TEXT)", f"INSERT INTO {table} VALUES (1, 'x')")
    conn = cache.wrap(sqlite_db.connect())
    sql = f"SELECT a, b FROM {table}"
    assert _fetch(conn, sql)[0] == [(1, "x")]
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    cur.execute(sql)
    row = cur.fetchone()
    assert isinstance(row, sqlite3.Row) and row["b"] == "x"
    assert cur.cache_status == "miss"
    cur.execute(sql)
    assert isinstance(cur.fetchone(), sqlite3.Row)
    assert cur.cache_status == "hit:L1"


def test_psycopg_dict_rows_are_copied(pg: Database, cache: querycache.QueryCache) -> None:
    from psycopg.rows import dict_row

    conn = cache.wrap(pg.connect())
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT 1 AS a, '{\"k\": 1}'::jsonb AS j")
    first = cur.fetchall()
    first[0]["a"] = 99
    first[0]["j"]["k"] = 2  # a caller mutating its rows must not change the cache
    cur.execute("SELECT 1 AS a, '{\"k\": 1}'::jsonb AS j")
    assert cur.cache_status == "hit:L1"
    assert cur.fetchall() == [{"a": 1, "j": {"k": 1}}]
    plain = conn.cursor()
    plain.execute("SELECT 1 AS a, '{\"k\": 1}'::jsonb AS j")
    assert plain.fetchall() == [(1, {"k": 1})]


@pytest.mark.parametrize("kind", ["postgres", "psycopg2", "mysql"])
def test_execute_return_value_matches_driver(kind: str, request: pytest.FixtureRequest,
                                             cache: querycache.QueryCache) -> None:
    db: Database = request.getfixturevalue({"postgres": "pg", "psycopg2": "pg2", "mysql": "mysql"}[kind])
    raw_cur = db.connect().cursor()
    live = raw_cur.execute("SELECT 1")
    conn = cache.wrap(db.connect())
    for _ in range(2):
        cur = conn.cursor()
        got = cur.execute("SELECT 1")
        if live is raw_cur:
            assert got is cur
        else:
            assert got == live


def test_psycopg_execute_options_are_passed_and_cached(pg: Database, cache: querycache.QueryCache) -> None:
    conn = cache.wrap(pg.connect())
    statuses = []
    for _ in range(2):
        cur = conn.cursor()
        cur.execute("SELECT 1::int, 'x'::text", prepare=True, binary=True)
        assert cur.fetchall() == [(1, "x")]
        statuses.append(cur.cache_status)
    assert statuses == ["miss", "hit:L1"]


@pytest.mark.parametrize("kind", ["sqlite", "mysql", "postgres"])
def test_column_names_written_differently_are_kept(kind: str, request: pytest.FixtureRequest,
                                                   cache: querycache.QueryCache) -> None:
    """MySQL and SQLite name an unaliased expression's column by its text as written: two
    spellings that normalize alike must not share an entry (they did: the second got the first's
    column name). PostgreSQL names it by its structure (``count``), so there they may share."""
    from tests.conftest import make_database

    db = make_database(kind, request.getfixturevalue("tmp_path"))
    try:
        table = db.t("names")
        db.tables.append(table)
        db.admin(f"CREATE TABLE {table} (a INTEGER)", f"INSERT INTO {table} VALUES (1), (2)")
        conn = cache.wrap(db.connect())
        raw = db.connect()
        for sql in (f"select count(*), max(a) from {table}", f"SELECT COUNT(*), MAX(a) FROM {table}",
                    f"select  count( * ), max( a ) from {table}", f"SELECT COUNT(*) AS n, a FROM {table} GROUP BY a"):
            cur = conn.cursor()
            cur.execute(sql)
            rows = [tuple(r) for r in cur.fetchall()]
            expected = raw.cursor()
            expected.execute(sql)
            assert [d[0] for d in cur.description] == [d[0] for d in expected.description], (sql, cur.cache_status)
            assert sorted(rows) == sorted(tuple(r) for r in expected.fetchall())
        raw.close()
    finally:
        db.cleanup()
