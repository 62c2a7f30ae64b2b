"""Cost growth of an L2 lookup with the number of tables a query reads (1, 2, 4, 8, 16).

    .venv/bin/python bench/l2_tables.py [--quick] [--rounds N]

An entry depends on one version key per table it read, and a lookup checks every one of them (the
memory store walks them under its lock; the Redis lookup script reads each version and each pending
mark). Two measurements, on the memory store and on Redis (db 14 by default; ``QUERYCACHE_BENCH_REDIS``):

1. **Store lookup**: ``backend.lookup(key, version_keys)`` of a fresh entry (500 bytes) whose version
   keys cover N tables; what the store itself costs.
2. **L2 hit, end to end**: ``execute`` + ``fetchall`` of a sqlite query joining N tables (10 rows),
   L1 off, so every call is ``hit:L2`` (the analysis is memoized; then the keys, the lookup, decoding).

Every N is timed in the same loop in random order (batches of calls, the median of the batches), so
the ratio to one table compares figures taken side by side on this noisy machine. Prints a Markdown
table and writes ``bench/results/l2_tables.json`` and ``bench/results/l2_tables.md``. The Redis keys
of the run (its namespace's entries and the table versions it created) are deleted at the end, also
on error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import querycache  # noqa: E402 - after the checkout is on the path
from querycache.backends.memory import MemoryBackend  # noqa: E402
from querycache.backends.redis import CLOCK, HOLDERS  # noqa: E402

REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
RESULTS = ROOT / "bench" / "results"
TABLES = (1, 2, 4, 8, 16)
ROWS = 10
VALUE = bytes(range(256)) * 2  # 512 bytes: about a 10-row result


def _timed(calls: dict[str, Callable[[], Any]], rounds: int, batch: int) -> dict[str, float]:
    """Median µs per call of each callable: ``rounds`` batches of ``batch`` calls, callables in a
    new random order every round."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    rng = random.Random(7)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            call = calls[name]
            t0 = time.perf_counter()
            for _ in range(batch):
                call()
            samples[name].append((time.perf_counter() - t0) / batch * 1e6)
    return {name: statistics.median(xs) for name, xs in samples.items()}


def store_lookups(backend: Any, database_id: str, rounds: int, batch: int,
                  reference: dict[str, Callable[[], Any]] | None = None) -> dict[str, float]:
    """Median µs of ``lookup`` of a fresh entry depending on N tables, per N (and of the ``reference``
    calls, timed in the same loop)."""
    calls: dict[str, Callable[[], Any]] = dict(reference or {})
    for n in TABLES:
        version_keys = tuple(f"{database_id}\x1fbench_t{i}" for i in range(n))
        key = f"{backend.namespace}:e:-:{uuid.uuid4().hex}"
        first = backend.lookup(key, version_keys)
        assert backend.fill(key, VALUE, version_keys, first.stamp, first.epoch, ttl_s=600)
        found = backend.lookup(key, version_keys)
        assert found.value == VALUE, f"{backend.name}: the entry over {n} tables is not fresh"

        def call(key: str = key, version_keys: tuple[str, ...] = version_keys) -> Any:
            return backend.lookup(key, version_keys)

        calls[str(n)] = call
    return _timed(calls, rounds, batch)


def _sqlite(n_tables: int) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    for i in range(1, n_tables + 1):
        conn.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        conn.executemany(f"INSERT INTO t{i} VALUES (?, ?)", [(r, f"t{i} row {r}") for r in range(1, ROWS + 1)])
    conn.commit()
    return conn


def join_sql(n: int) -> str:
    joins = "".join(f" JOIN t{i} ON t{i}.id = t1.id" for i in range(2, n + 1))
    return f"SELECT t1.id, t1.v, t{n}.v FROM t1{joins} WHERE t1.id <= ?"


def l2_hits(cache: querycache.QueryCache, rounds: int, batch: int) -> dict[str, float]:
    """Median µs of execute + fetchall answered from L2 (L1 off) for a join of N tables, per N."""
    conn = cache.wrap(_sqlite(max(TABLES)))
    calls: dict[str, Callable[[], Any]] = {}
    for n in TABLES:
        cur = conn.cursor()
        sql = join_sql(n)
        cur.execute(sql, (ROWS,))
        assert len(cur.fetchall()) == ROWS and cur.cache_status == "miss", cur.cache_status
        cur.execute(sql, (ROWS,))
        cur.fetchall()
        assert cur.cache_status == "hit:L2", (n, cur.cache_status)

        def call(cur: Any = cur, sql: str = sql) -> Any:
            cur.execute(sql, (ROWS,))
            return cur.fetchall()

        calls[str(n)] = call
    timed = _timed(calls, rounds, batch)
    for n in TABLES:  # every timed call was a hit: nothing invalidated them meanwhile
        cur = conn.cursor()
        cur.execute(join_sql(n), (ROWS,))
        cur.fetchall()
        assert cur.cache_status == "hit:L2", (n, cur.cache_status)
    conn.close()
    return timed


def _clock_keys(client: Any) -> set[bytes]:
    return {key for pattern in ("qc:v:*", "qc:p:*") for key in client.scan_iter(match=pattern, count=1000)}


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"L2 lookup cost vs tables per query: medians of {meta['rounds']} batches per cell, every N in the same "
             f"loop (µs per call; ratio to 1 table). {meta['machine']}, Redis {meta['redis_version']}, "
             f"a raw redis-py PING in the same loop as the Redis lookups: {meta['redis_ping_us']:.0f} µs. "
             f"{meta['started']}.", "",
             "| path | " + " | ".join(f"{n} table{'s' if n > 1 else ''}" for n in TABLES) + " |",
             "|---|" + "---:|" * len(TABLES)]
    for row in rows:
        base = row["us"]["1"]
        cells = [f"{row['us'][str(n)]:,.1f} ({row['us'][str(n)] / base:.2f}x)" for n in TABLES]
        lines.append(f"| {row['path']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--rounds", type=int, default=None, help="batches per cell (default 40; --quick 8)")
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 40)
    import redis

    from querycache.backends.redis import RedisBackend

    client = redis.Redis.from_url(args.redis_url)
    before = _clock_keys(client)
    clock_existed = bool(client.exists(CLOCK))
    run_id = uuid.uuid4().hex[:8]
    namespace = f"bench-l2t-{run_id}"
    database_id = f"bench-l2t-{run_id}"
    rows: list[dict[str, Any]] = []
    store = RedisBackend(args.redis_url, namespace=namespace, timeout_ms=2000)
    caches: list[querycache.QueryCache] = []
    try:
        memory = MemoryBackend(namespace=namespace)
        rows.append({"path": "memory store: lookup of a fresh entry", "store": "memory", "kind": "lookup",
                     "batch": 2000, "us": store_lookups(memory, database_id, rounds, 2000)})
        print(f"memory lookup: {rows[-1]['us']}", flush=True)
        rows.append({"path": "Redis store: lookup of a fresh entry (one script call)", "store": "redis",
                     "kind": "lookup", "batch": 100,
                     "us": store_lookups(store, database_id, rounds, 100, {"ping": client.ping})})
        ping_us = rows[-1]["us"].pop("ping")
        print(f"redis lookup: {rows[-1]['us']}", flush=True)
        for name, l2 in (("memory", {}), ("redis", {"backend": "redis", "url": args.redis_url,
                                                    "namespace": namespace + "-e2e", "timeout_ms": 2000})):
            cache = querycache.QueryCache.from_dict({"l1": {"enabled": False}, "l2": l2})
            caches.append(cache)
            batch = 500 if name == "memory" else 100
            rows.append({"path": f"L2 hit on the {name} store (L1 off), sqlite join of N tables, execute + fetchall",
                         "store": name, "kind": "l2_hit", "batch": batch, "us": l2_hits(cache, rounds, batch)})
            print(f"{name} L2 hit: {rows[-1]['us']}", flush=True)
        meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": rounds,
                "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
                "redis_version": client.info("server")["redis_version"], "redis_ping_us": ping_us,
                "loadavg": os.getloadavg()}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "l2_tables.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
        md = markdown(meta, rows)
        (RESULTS / "l2_tables.md").write_text(md)
        print()
        print(md)
    finally:
        for cache in caches:
            cache.flush("l2")
            cache.close()
        store.flush()
        store.close()
        new = _clock_keys(client) - before  # this run's table versions (its database id is its own)
        if new:
            client.delete(*new)
        if not clock_existed:  # this run created the store's clock: its lease holders are this run's too
            client.delete(CLOCK, HOLDERS, *client.scan_iter(match="qc:ack:*", count=1000))
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
