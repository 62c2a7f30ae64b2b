"""``querycache bench``: a dependency-free, side-by-side timing of the hot paths on sqlite (a raw
point query, an L1 hit with stats on and off, a miss filling the memory L2).

Each path is timed in interleaved batches (raw, hit, miss, raw, hit, miss...), so a
noisy neighbour slows all of them alike; the report is the median per call and its
ratio to the raw query measured in the same run.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import time
from typing import Callable

from querycache.cache import QueryCache

_SQL = "SELECT id, name, grp FROM items WHERE grp = ? AND id > ?"


def _database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER)")
    conn.execute("CREATE INDEX items_grp ON items (grp)")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, f"item {i}", i % 100) for i in range(1, 1001)])
    return conn


def measure(rounds: int = 20000, batches: int = 20) -> dict[str, dict[str, float]]:
    """Per path: the median µs per call and its ratio to the raw query's (``querycache bench --json``)."""
    raw = _database()
    raw_cur = raw.cursor()
    cache = QueryCache()
    quiet = QueryCache.from_dict({"stats": {"enabled": False}})
    hit_cur = cache.wrap(_database()).cursor()
    quiet_cur = quiet.wrap(_database()).cursor()
    miss_cur = cache.wrap(_database()).cursor()
    for cur in (hit_cur, quiet_cur):
        cur.execute(_SQL, (7, 0))
        cur.fetchall()
    counter = itertools.count(1)

    def raw_call() -> object:
        raw_cur.execute(_SQL, (7, 0))
        return raw_cur.fetchall()

    def hit_call() -> object:
        hit_cur.execute(_SQL, (7, 0))
        return hit_cur.fetchall()

    def quiet_call() -> object:
        quiet_cur.execute(_SQL, (7, 0))
        return quiet_cur.fetchall()

    def miss_call() -> object:
        miss_cur.execute(_SQL, (7, -next(counter)))  # a new key each call: always a cold miss
        return miss_cur.fetchall()

    paths: dict[str, Callable[[], object]] = {
        "raw sqlite point query": raw_call, "L1 hit": hit_call, "L1 hit, stats off": quiet_call,
        "miss (memory L2 fill)": miss_call,
    }
    per_batch = max(1, rounds // batches)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(batches):
        for name, call in paths.items():
            started = time.perf_counter()
            for _ in range(per_batch):
                call()
            samples[name].append((time.perf_counter() - started) / per_batch * 1e6)
    for cur in (hit_cur, quiet_cur):
        cur.execute(_SQL, (7, 0))
        assert cur.cache_status == "hit:L1", cur.cache_status
    cache.close()
    quiet.close()
    raw_median = statistics.median(samples["raw sqlite point query"])
    return {
        name: {"median_us": statistics.median(values), "ratio_to_raw": statistics.median(values) / raw_median}
        for name, values in samples.items()
    }
