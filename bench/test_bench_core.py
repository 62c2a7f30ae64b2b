"""Core benchmarks: querycache paths side by side with the uncached work they replace or add to.

Every benchmark records ``extra_info = {"path": ..., "role": "raw" | "cached"}``; ``bench/report.py``
pairs the two roles of one path and prints the ratio of their medians (cached / raw).

Groups:
  l1-vs-sqlite    raw sqlite3 point query (10 rows)       vs an L1 hit through a wrapped connection
  l1-stats        an L1 hit with stats off                vs the same with stats on (what the counters cost)
  l1-vs-postgres  raw psycopg point query (10 rows)       vs an L1 hit through a wrapped connection
  codec           pickle.dumps / pickle.loads of a result vs the msgpack codec (never pickle in the cache)
  analysis        fresh parse (a unique text each call)   vs the memoized lookup of a seen text
  miss-overhead   uncached execute+fetchall (10 rows)     vs a cold miss through the wrapper (fills L1 + L2),
                  for sqlite and for PostgreSQL
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, Callable

import pytest

import querycache
from bench.conftest import record_path
from querycache.analysis import Analyzer

ROWS = 10
GRP = 3


def _counters(cache: querycache.QueryCache) -> dict[str, int]:
    s = cache.stats()
    return {
        "l1": s.hits["l1"],
        "l2": s.hits["l2"],
        "l3": s.hits["l3"],
        "misses": s.misses,
        "coalesced": s.coalesced,
        "bypasses": sum(s.bypasses.values()),
    }


def _l1_hit(benchmark: Any, cache: querycache.QueryCache, cur: Any, sql: str, expected: list[Any]) -> None:
    """Warm ``sql`` into L1, check one call is ``hit:L1``, benchmark, check every call was a hit."""

    def run() -> Any:
        cur.execute(sql, (GRP,))
        return cur.fetchall()

    first = run()
    assert cur.cache_status == "miss", cur.cache_status
    assert len(first) == ROWS
    again = run()
    assert cur.cache_status == "hit:L1", f"warmed point query was {cur.cache_status!r}, not hit:L1"
    assert again == expected
    before = _counters(cache)
    rows = benchmark(run)
    after = _counters(cache)
    assert rows == expected
    assert cur.cache_status == "hit:L1", cur.cache_status
    # Every benchmarked call was an L1 hit: nothing else moved, L1 hits did.
    for name in ("l2", "l3", "misses", "coalesced", "bypasses"):
        assert after[name] == before[name], f"{name} moved during the L1-hit benchmark: {before} -> {after}"
    assert after["l1"] > before["l1"]
    benchmark.extra_info["l1_hits"] = after["l1"] - before["l1"]


def _cold_miss(benchmark: Any, cache: querycache.QueryCache, cur: Any, sql: str) -> None:
    """Every call has a parameter never seen before: a cold miss that runs on the database and fills."""
    counter = itertools.count(1)

    def run() -> Any:
        cur.execute(sql, (GRP, -next(counter)))
        return cur.fetchall()

    rows = run()
    assert cur.cache_status == "miss", f"first unique-parameter read was {cur.cache_status!r}, not miss"
    assert len(rows) == ROWS
    before = _counters(cache)
    rows = benchmark(run)
    after = _counters(cache)
    assert len(rows) == ROWS
    assert cur.cache_status == "miss", cur.cache_status
    for name in ("l1", "l2", "l3", "coalesced", "bypasses"):
        assert after[name] == before[name], f"{name} moved during the miss benchmark: {before} -> {after}"
    assert after["misses"] > before["misses"]
    stats = cache.stats()
    benchmark.extra_info["misses"] = after["misses"] - before["misses"]
    benchmark.extra_info["not_filled"] = dict(stats.not_filled)


def _raw(benchmark: Any, cur: Any, sql: str, params: Callable[[], tuple[Any, ...]]) -> list[Any]:
    def run() -> Any:
        cur.execute(sql, params())
        return cur.fetchall()

    expected = run()
    assert len(expected) == ROWS
    rows = benchmark(run)
    assert len(rows) == ROWS
    return list(expected)


# -- 1. L1 hit vs raw sqlite ---------------------------------------------------------------
L1_SQLITE = "L1 hit vs raw sqlite3 point query (10 rows)"


@pytest.mark.benchmark(group="l1-vs-sqlite")
def test_l1_sqlite_raw(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, L1_SQLITE, "raw")
    _raw(benchmark, sqlite_db.cursor(), sqlite_sql["point"], lambda: (GRP,))


@pytest.mark.benchmark(group="l1-vs-sqlite")
def test_l1_sqlite_hit(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, L1_SQLITE, "cached")
    expected = sqlite_db.execute(sqlite_sql["point"], (GRP,)).fetchall()
    cache = querycache.QueryCache()
    conn = cache.wrap(sqlite_db)
    _l1_hit(benchmark, cache, conn.cursor(), sqlite_sql["point"], expected)


# -- 1b. the cost of statistics on the L1 hit path ---------------------------------------------
L1_STATS = "L1 hit with stats on (per-statement row, latency histogram) vs stats off (sqlite, 10 rows)"


@pytest.mark.benchmark(group="l1-stats")
@pytest.mark.parametrize("stats_on", [False, True], ids=["stats-off", "stats-on"])
def test_l1_hit_stats(benchmark: Any, stats_on: bool, sqlite_db: sqlite3.Connection,
                      sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, L1_STATS, "cached" if stats_on else "raw")
    expected = sqlite_db.execute(sqlite_sql["point"], (GRP,)).fetchall()
    cache = querycache.QueryCache.from_dict({"stats": {"enabled": stats_on}})
    conn = cache.wrap(sqlite_db)
    _l1_hit(benchmark, cache, conn.cursor(), sqlite_sql["point"], expected)
    rows = cache.stats().to_dict()["fingerprints"]
    assert bool(rows) is stats_on  # the switch did what it says


# -- 2. L1 hit vs raw PostgreSQL -------------------------------------------------------------
L1_PG = "L1 hit vs raw psycopg point query (10 rows)"


@pytest.mark.benchmark(group="l1-vs-postgres")
def test_l1_postgres_raw(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, L1_PG, "raw")
    _raw(benchmark, pg_connect().cursor(), pg_sql["point"], lambda: (GRP,))


@pytest.mark.benchmark(group="l1-vs-postgres")
def test_l1_postgres_hit(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, L1_PG, "cached")
    raw = pg_connect()
    expected = raw.execute(pg_sql["point"], (GRP,)).fetchall()
    cache = querycache.QueryCache()
    conn = cache.wrap(raw)
    assert conn.autocommit is True
    _l1_hit(benchmark, cache, conn.cursor(), pg_sql["point"], expected)


# -- 2b. codec: the msgpack codec vs pickle of the same result ------------------------------------
CODEC_ENCODE = "codec encode: querycache msgpack codec vs pickle.dumps (10 typed rows)"
CODEC_DECODE = "codec decode: querycache msgpack codec vs pickle.loads (10 typed rows)"


def _typed_result() -> Any:
    import datetime as dt
    import decimal
    import uuid as uuid_module

    from querycache.codec import Result

    tz = dt.timezone(dt.timedelta(hours=2))
    rows = [(i, f"item-{i:04d}", decimal.Decimal(f"{i}.25"), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz),
             dt.date(2024, 2, 29), uuid_module.UUID(int=i), None, True) for i in range(ROWS)]
    description = [(name, None, None, None, None, None, None) for name in
                   ("id", "name", "price", "ts", "day", "uid", "note", "flag")]
    return Result(description, rows, ROWS)


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("side", ["pickle", "codec"])
def test_codec_encode(benchmark: Any, side: str) -> None:
    import pickle

    from querycache.codec import encode

    record_path(benchmark, CODEC_ENCODE, "cached" if side == "codec" else "raw")
    result = _typed_result()
    out = benchmark(encode if side == "codec" else pickle.dumps, result)
    assert isinstance(out, bytes) and out


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("side", ["pickle", "codec"])
def test_codec_decode(benchmark: Any, side: str) -> None:
    import pickle

    from querycache.codec import decode, encode

    record_path(benchmark, CODEC_DECODE, "cached" if side == "codec" else "raw")
    result = _typed_result()
    data = encode(result) if side == "codec" else pickle.dumps(result)
    back = benchmark(decode if side == "codec" else pickle.loads, data)
    assert back.rows == result.rows


# -- 3. analysis: memoized lookup vs fresh parse ---------------------------------------------
ANALYSIS = "analysis: memoized lookup vs fresh parse (sqlite, qmark)"
ANALYSIS_SQL = "SELECT id, name, price FROM items WHERE grp = ? AND id > {n} ORDER BY id"


@pytest.mark.benchmark(group="analysis")
def test_analysis_fresh_parse(benchmark: Any) -> None:
    record_path(benchmark, ANALYSIS, "raw")
    analyzer = Analyzer("sqlite", "qmark")
    counter = itertools.count(1)

    def run() -> Any:
        return analyzer(ANALYSIS_SQL.format(n=next(counter)))  # a text never seen: parsed

    calls_before = analyzer.parses
    analysis = benchmark(run)
    assert analysis.cacheable, analysis
    # Every call parsed (nothing came from the memo).
    assert analyzer.parses - calls_before == next(counter) - 1


@pytest.mark.benchmark(group="analysis")
def test_analysis_memo_hit(benchmark: Any) -> None:
    record_path(benchmark, ANALYSIS, "cached")
    analyzer = Analyzer("sqlite", "qmark")
    sql = ANALYSIS_SQL.format(n=0)
    first = analyzer(sql)
    assert analyzer.parses == 1
    analysis = benchmark(analyzer, sql)
    assert analysis is first
    assert analyzer.parses == 1, "a seen text was parsed again"


# -- 4. miss overhead ----------------------------------------------------------------------
MISS_SQLITE = "miss overhead: sqlite execute+fetchall (10 rows), unique params"
MISS_PG = "miss overhead: psycopg execute+fetchall (10 rows), unique params"


@pytest.mark.benchmark(group="miss-overhead")
def test_miss_sqlite_raw(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, MISS_SQLITE, "raw")
    counter = itertools.count(1)
    _raw(benchmark, sqlite_db.cursor(), sqlite_sql["miss"], lambda: (GRP, -next(counter)))


@pytest.mark.benchmark(group="miss-overhead")
def test_miss_sqlite_cached(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, MISS_SQLITE, "cached")
    cache = querycache.QueryCache()
    conn = cache.wrap(sqlite_db)
    _cold_miss(benchmark, cache, conn.cursor(), sqlite_sql["miss"])


@pytest.mark.benchmark(group="miss-overhead")
def test_miss_postgres_raw(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, MISS_PG, "raw")
    counter = itertools.count(1)
    _raw(benchmark, pg_connect().cursor(), pg_sql["miss"], lambda: (GRP, -next(counter)))


@pytest.mark.benchmark(group="miss-overhead")
def test_miss_postgres_cached(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, MISS_PG, "cached")
    cache = querycache.QueryCache()
    conn = cache.wrap(pg_connect())
    assert conn.autocommit is True
    _cold_miss(benchmark, cache, conn.cursor(), pg_sql["miss"])


# -- 4b. miss overhead without the fill ----------------------------------------------------------
# docs/architecture.md "Performance budgets"s the miss path as "+20 µs, plus the fill after rows are delivered". A
# `/* cache ttl=0 */` hint keeps everything of a miss (analysis, plan, store lookup and stamp,
# execution, capture) but stores nothing, so this pair measures the part the 20 µs bound covers.
NOFILL_SQLITE = "miss overhead without the fill (ttl=0 hint): sqlite"
NOFILL_PG = "miss overhead without the fill (ttl=0 hint): psycopg"


@pytest.mark.benchmark(group="miss-overhead")
def test_nofill_sqlite_raw(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, NOFILL_SQLITE, "raw")
    counter = itertools.count(1)
    _raw(benchmark, sqlite_db.cursor(), "/* cache ttl=0 */ " + sqlite_sql["miss"], lambda: (GRP, -next(counter)))


@pytest.mark.benchmark(group="miss-overhead")
def test_nofill_sqlite_cached(benchmark: Any, sqlite_db: sqlite3.Connection, sqlite_sql: dict[str, str]) -> None:
    record_path(benchmark, NOFILL_SQLITE, "cached")
    cache = querycache.QueryCache()
    conn = cache.wrap(sqlite_db)
    _cold_miss(benchmark, cache, conn.cursor(), "/* cache ttl=0 */ " + sqlite_sql["miss"])
    assert cache.stats().fills == {"l1": 0, "l2": 0, "l3": 0}


@pytest.mark.benchmark(group="miss-overhead")
def test_nofill_postgres_raw(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, NOFILL_PG, "raw")
    counter = itertools.count(1)
    _raw(benchmark, pg_connect().cursor(), "/* cache ttl=0 */ " + pg_sql["miss"], lambda: (GRP, -next(counter)))


@pytest.mark.benchmark(group="miss-overhead")
def test_nofill_postgres_cached(benchmark: Any, pg_connect: Callable[[], Any], pg_sql: dict[str, str]) -> None:
    record_path(benchmark, NOFILL_PG, "cached")
    cache = querycache.QueryCache()
    conn = cache.wrap(pg_connect())
    _cold_miss(benchmark, cache, conn.cursor(), "/* cache ttl=0 */ " + pg_sql["miss"])
    assert cache.stats().fills == {"l1": 0, "l2": 0, "l3": 0}
