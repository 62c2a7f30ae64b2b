"""Soak: a long mixed workload with Redis restarts in the middle; memory, threads, connections, stale reads.

    .venv/bin/python bench/soak.py                  # 10 minutes (issue 9)
    .venv/bin/python bench/soak.py --duration 60    # a short run

Worker processes (``--processes``, spawned) each run ``--threads`` threads, every thread with its own
wrapped psycopg connection (autocommit) of the process's one ``QueryCache`` on the Redis store, with
the library's defaults otherwise (row-level invalidation, coalescing, L1 under coherence leases). The
Redis is the run's own ``redis-server`` on a free port, without persistence: it is killed (SIGKILL)
and started again ``--restarts`` times, evenly spread, so every process sees its store vanish,
come back empty under a new incarnation, and its breaker open and close.

Operations on a PostgreSQL table of ``--rows`` counters in 20 groups, Zipfian over ids (s = 1.1):
40 % a counter by id, 30 % a group's count and sum, 20 % a range of ids, 10 % writes
``UPDATE ... SET v = v + 1 WHERE id = %s RETURNING v``. A writer records the value it committed once
``execute`` has returned (autocommit: committed) in memory shared by the processes; a read takes
those values *before* it starts and its answer must show at least them (a counter never goes down;
a group's or range's sum at least the sum of its counters). Below is a **stale read**; it is counted
for every answer, the ones from the database included.

Each process samples every ``--sample`` seconds: RSS (``/proc/self/statm``), live threads, open file
descriptors; the parent samples the run's PostgreSQL connections (``pg_stat_activity``, by
application name). Reported: operations, hit ratio, errors, stale reads, and per process the RSS
slope (least squares over the second half of the run, after warm-up) and the start/end counts of
threads and descriptors. Writes ``bench/results/soak.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from itertools import accumulate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
RESULTS = ROOT / "bench" / "results"
GROUPS = 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def statements(table: str) -> dict[str, str]:
    return {
        "point": f"SELECT id, v FROM {table} WHERE id = %s",
        "group": f"SELECT count(*), sum(v) FROM {table} WHERE grp = %s",
        "range": f"SELECT count(*), sum(v) FROM {table} WHERE id >= %s AND id < %s",
        "write": f"UPDATE {table} SET v = v + 1 WHERE id = %s RETURNING v",
    }


def worker(index: int, args: dict[str, Any], table: str, redis_url: str, committed: Any, stop: Any,
           results: Any, ready: Any) -> None:
    import psycopg

    import querycache

    cache = querycache.QueryCache.from_dict({"l2": {"backend": "redis", "url": redis_url, "timeout_ms": 100,
                                                    "namespace": "soak"},
                                             "invalidation": {"row_level": not args["table_level"]}})
    sql = statements(table)
    rows, threads = args["rows"], args["threads"]
    weights = list(accumulate(1 / (i + 1) ** 1.1 for i in range(rows)))
    counts = {"ops": 0, "cached": 0, "stale": 0, "errors": 0}
    errors: list[str] = []
    lock = threading.Lock()

    def floor(ids: range | list[int]) -> int:
        return sum(committed[i] for i in ids)

    def run(thread: int) -> None:
        rng = random.Random(index * 1000 + thread)
        wrap = (lambda c: c) if args["uncached"] else cache.wrap
        conn = wrap(psycopg.connect(PG_DSN, autocommit=True, application_name=table))
        cur = conn.cursor()
        local = {"ops": 0, "cached": 0, "stale": 0, "errors": 0}
        while not stop.is_set():
            pick = rng.random()
            row = 1 + bisect_left(weights, rng.random() * weights[-1])
            try:
                if pick < 0.1:
                    cur.execute(sql["write"], (row,))
                    value = cur.fetchone()[0]
                    with committed.get_lock():
                        committed[row] = max(committed[row], value)
                else:
                    if pick < 0.5:
                        ids: range | list[int] = [row]
                        query, params = sql["point"], (row,)
                    elif pick < 0.8:
                        group = row % GROUPS
                        ids = range(group if group else GROUPS, rows + 1, GROUPS)
                        query, params = sql["group"], (group,)
                    else:
                        lo = max(1, row - 5)
                        ids = range(lo, min(rows + 1, lo + 10))
                        query, params = sql["range"], (lo, lo + 10)
                    expected = floor(ids)  # before the read starts
                    cur.execute(query, params)
                    got = cur.fetchall()
                    seen = got[0][1]  # the counter, or the sum of the counters
                    if seen is None or int(seen) < expected:
                        local["stale"] += 1
                    status = str(getattr(cur, "cache_status", "db"))
                    if status.startswith("hit:") or status == "coalesced":
                        local["cached"] += 1
                local["ops"] += 1
            except Exception as exc:  # noqa: BLE001 - counted: the cache must never raise what the driver would not
                local["errors"] += 1
                with lock:
                    if len(errors) < 20:
                        errors.append(f"{type(exc).__name__}: {exc}")
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                conn = wrap(psycopg.connect(PG_DSN, autocommit=True, application_name=table))
                cur = conn.cursor()
        conn.close()
        with lock:
            for key, value in local.items():
                counts[key] += value

    samples: list[dict[str, float]] = []
    start = time.monotonic()

    def sample() -> None:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        samples.append({"t": round(time.monotonic() - start, 1), "rss_mb": round(rss / 2**20, 2),
                        "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd"))})

    sample()
    with ready.get_lock():
        ready.value += 1
    pool = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for t in pool:
        t.start()
    while not stop.wait(args["sample"]):
        sample()
    for t in pool:
        t.join(30)
    sample()
    stats = cache.stats().to_dict()
    cache.close()
    time.sleep(0.5)  # let the cache's threads finish before the last count
    sample()
    results.put({"process": index, **counts, "error_samples": errors, "samples": samples,
                 "fail_open": stats["fail_open"], "hits": stats["hits"], "misses": stats["misses"],
                 "leaked_threads": samples[-1]["threads"] - samples[0]["threads"]})


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (y per x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--restarts", type=int, default=2, help="Redis kills + restarts, evenly spread")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--uncached", action="store_true", help="raw connections: the checker's self-test")
    p.add_argument("--table-level", action="store_true", help="invalidation.row_level: false")
    args = p.parse_args()
    import psycopg

    table = f"qcsoak_{os.getpid()}"
    admin = psycopg.connect(PG_DSN, autocommit=True)
    admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL)")
    admin.execute(f"INSERT INTO {table} SELECT g, g % {GROUPS}, 0 FROM generate_series(1, {args.rows}) g")
    admin.execute(f"CREATE INDEX ON {table} (grp)")
    from querycache.testing.redis_server import RedisServer

    redis_dir = tempfile.mkdtemp(prefix="qcsoak")
    redis = RedisServer(redis_dir)  # the run's own: a free port, kept across restarts
    redis.start()
    ctx = mp.get_context("spawn")
    committed = ctx.Array("q", args.rows + 1)
    stop, results, ready = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    procs = [ctx.Process(target=worker, args=(i, vars(args), table, redis.url, committed, stop, results, ready))
             for i in range(args.processes)]
    connections: list[tuple[float, int]] = []
    restarts: list[float] = []
    try:
        for proc in procs:
            proc.start()
        while ready.value < args.processes:
            time.sleep(0.1)
        print(f"soak: {args.processes} processes x {args.threads} threads, {args.duration:.0f} s, "
              f"Redis on port {redis.port} restarted {args.restarts} times", flush=True)
        start = time.monotonic()
        plan = [start + args.duration * (k + 1) / (args.restarts + 1) for k in range(args.restarts)]
        while (now := time.monotonic()) < start + args.duration:
            if plan and now >= plan[0]:
                plan.pop(0)
                redis.stop()  # SIGKILL
                time.sleep(1.0)  # a second without a store: breakers open, queries go to the database
                redis.start()
                restarts.append(round(time.monotonic() - start, 1))
                print(f"  {restarts[-1]:.0f} s: Redis killed and restarted", flush=True)
            count = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                  (table,)).fetchone()
            connections.append((round(now - start, 1), int(count[0]) if count else -1))
            time.sleep(min(args.sample, max(0.1, start + args.duration - time.monotonic())))
        stop.set()
        reports = sorted((results.get(timeout=120) for _ in procs), key=lambda r: r["process"])
        for proc in procs:
            proc.join(30)
        time.sleep(1)
        left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (table,)).fetchone()
    finally:
        stop.set()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        redis.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        admin.execute(f"DROP TABLE IF EXISTS {table}")
    report(args, reports, connections, restarts, int(left[0]) if left else -1)


def report(args: argparse.Namespace, reports: list[dict[str, Any]], connections: list[tuple[float, int]],
           restarts: list[float], left: int) -> None:
    lines = [f"Soak: {args.processes} processes x {args.threads} threads, {args.duration:.0f} s, "
             f"{args.rows} counters, Redis killed and restarted at {restarts} s; "
             f"{time.strftime('%Y-%m-%d %H:%M %Z')}", "",
             "| process | operations | cached | errors | stale reads | fail-open | RSS start / end MB "
             "| RSS slope, 2nd half, MB/min | threads start / end | fds start / end |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        s = r["samples"]
        half = [(x["t"] / 60, x["rss_mb"]) for x in s if x["t"] >= args.duration / 2]
        r["rss_slope_mb_per_min"] = round(slope(half), 3)
        lines.append(f"| {r['process']} | {r['ops']:,} | {r['cached'] / max(1, r['ops']):.1%} | {r['errors']} "
                     f"| {r['stale']} | {r['fail_open']} | {s[0]['rss_mb']} / {s[-1]['rss_mb']} "
                     f"| {r['rss_slope_mb_per_min']} | {s[0]['threads']} / {s[-1]['threads']} "
                     f"| {s[0]['fds']} / {s[-1]['fds']} |")
    peak = max((c for _, c in connections), default=0)
    lines += ["", f"PostgreSQL connections of the run: peak {peak}, after the processes ended {left}. "
              f"Error samples: {[e for r in reports for e in r['error_samples']][:5]}"]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.md").write_text(text + "\n")
    (RESULTS / "soak.json").write_text(json.dumps({"config": vars(args), "restarts_s": restarts,
                                                   "pg_connections": connections, "pg_connections_left": left,
                                                   "processes": reports}, indent=2))


if __name__ == "__main__":
    main()
