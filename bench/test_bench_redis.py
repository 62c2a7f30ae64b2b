"""L2 hit on Redis vs one raw redis-py GET of the same bytes (docs/architecture.md "Performance budgets": <= 1.25x).

The L2 hit runs with L1 disabled, so every call is a full ``hit:L2``: one Lua round trip that
returns the entry with its table versions and pending marks, then decoding. The raw side is a
plain ``GET`` of a key holding exactly the bytes of that entry, on the same Redis.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from typing import Any

import pytest

import querycache
from bench.conftest import SQLITE_POINT, record_path
from bench.test_bench_core import GRP

REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
PATH = "L2 hit on Redis vs raw redis-py GET of the same bytes (10 rows)"


def _redis() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no Redis to benchmark
        pytest.skip(f"Redis unreachable: {exc}")
    return client


@pytest.fixture
def l2_cache(sqlite_db: sqlite3.Connection) -> Any:
    _redis()
    cache = querycache.QueryCache.from_dict({
        "l1": {"enabled": False},
        "l2": {"backend": "redis", "url": REDIS_URL, "namespace": "bench" + uuid.uuid4().hex[:6]},
    })
    yield cache, cache.wrap(sqlite_db)
    cache.close()


@pytest.mark.benchmark(group="l2-vs-redis-get")
def test_l2_hit_redis(benchmark: Any, l2_cache: Any) -> None:
    record_path(benchmark, PATH, "cached")
    cache, conn = l2_cache
    cur = conn.cursor()

    def run() -> Any:
        cur.execute(SQLITE_POINT, (GRP,))
        return cur.fetchall()

    run()
    assert cur.cache_status == "miss"
    run()
    assert cur.cache_status == "hit:L2", cur.cache_status
    before = cache.stats().hits["l2"]
    rows = benchmark(run)
    assert len(rows) == 10 and cur.cache_status == "hit:L2"
    assert cache.stats().misses == 1 and cache.stats().hits["l2"] > before


@pytest.mark.benchmark(group="l2-vs-redis-get")
def test_raw_redis_get(benchmark: Any, l2_cache: Any) -> None:
    record_path(benchmark, PATH, "raw")
    cache, conn = l2_cache
    cur = conn.cursor()
    cur.execute(SQLITE_POINT, (GRP,))
    cur.fetchall()
    client = _redis()
    entry_keys = list(client.scan_iter(match=f"{cache.namespace}:e:*"))
    assert len(entry_keys) == 1
    payload = client.hget(entry_keys[0], "v")
    key = "bench-raw:" + uuid.uuid4().hex
    client.set(key, payload)
    try:
        value = benchmark(client.get, key)
        assert value == payload
    finally:
        client.delete(key)
