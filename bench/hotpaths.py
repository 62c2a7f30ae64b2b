"""The hot paths against what they replace, side by side in one run, as ratios (issue 23).

    .venv/bin/python bench/hotpaths.py [--quick] [--json PATH] [--only sqlite,redis,postgres]

1. **L1 hit vs a raw sqlite3 point query.** The raw side is a plain in-memory sqlite3 connection
   running ``SELECT id, name, score FROM users WHERE id = ?`` (execute + fetchall, one row); the
   cached sides are an L1 hit of that same statement (1 row) and of a 10-row read
   (``... WHERE grp = ?``) through a wrapped sqlite3 connection of the same data. Goal <= 1.0x,
   bar 1.5x.
2. **L2 hit on Redis (L1 off) vs a raw redis-py GET of the same bytes** (the entry's value, stored
   under a key of its own on the same Redis), three runs in a row; then the same again in a child
   process that cannot import hiredis (redis-py's pure-Python parser, and redis-py packing the
   store's commands). Goal <= 1.25x in every run.
3. **The miss overhead on PostgreSQL**: a raw psycopg connection and a wrapped one, the raw and
   the wrapped call alternating in one loop, every call with a parameter never seen (a cold miss);
   once with a ``ttl=0`` hint (everything of a miss but the fill) and once with the fill into the
   memory L2 and L1. Goal: +20 µs over raw (docs/architecture.md, "Performance budgets": the fill
   comes on top).

Each comparison is timed in interleaved batches (raw, cached, raw, cached...; the order turns every
batch), so a noisy neighbour slows every side alike; a side's figure is the median over its
batches of the mean µs per call, its ratio that over the raw side's median from the same run. The
machine's load average is printed before and after. Timings are reported, never asserted: what
the script checks is that every timed cached call was what it claims (an L1 hit, an L2 hit, a
miss), by the cache's own counters. ``--quick`` (CI) runs fewer and shorter batches.

Redis: ``QUERYCACHE_BENCH_REDIS`` (default db 14 of 127.0.0.1:6379); PostgreSQL:
``QUERYCACHE_BENCH_PG``. A section whose service is unreachable is skipped with a note, unless
``CI=true``, where that fails the run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import querycache  # noqa: E402

REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
PG_DSN = os.environ.get("QUERYCACHE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
POINT = "SELECT id, name, score FROM users WHERE id = ?"
GROUP = "SELECT id, name, score FROM users WHERE grp = ?"
USERS = 1000
GROUPS = 100  # grp = id % 100: ten rows each


class Unavailable(Exception):
    """A service a section needs is not reachable."""


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def interleaved(sides: dict[str, Callable[[], object]], batches: int, per_batch: int) -> dict[str, float]:
    """Median over ``batches`` of each side's mean µs per call; the order of the sides turns."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm every side before timing
        for _ in range(min(per_batch, 200)):
            sides[name]()
    for batch in range(batches):
        shift = batch % len(names)
        for name in names[shift:] + names[:shift]:
            call = sides[name]
            started = time.perf_counter()
            for _ in range(per_batch):
                call()
            samples[name].append((time.perf_counter() - started) / per_batch * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


# -- 1. L1 hit vs a raw sqlite point query -----------------------------------------------------
def users_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL, "
                 "grp INTEGER NOT NULL)")
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)",
                     [(i, f"user-{i:04d}", i * 1.25, i % GROUPS) for i in range(1, USERS + 1)])
    conn.execute("CREATE INDEX users_grp ON users (grp)")
    conn.commit()
    return conn


def sqlite_section(quick: bool) -> dict[str, Any]:
    raw_cur = users_db().cursor()
    cache = querycache.QueryCache()
    cur = cache.wrap(users_db()).cursor()
    point, group = (7,), (3,)
    expected_point = raw_cur.execute(POINT, point).fetchall()
    expected_group = raw_cur.execute(GROUP, group).fetchall()
    assert len(expected_point) == 1 and len(expected_group) == 10
    for sql, params, expected in ((POINT, point, expected_point), (GROUP, group, expected_group)):
        cur.execute(sql, params)
        assert cur.fetchall() == expected and cur.cache_status == "miss", cur.cache_status
        cur.execute(sql, params)
        assert cur.fetchall() == expected and cur.cache_status == "hit:L1", cur.cache_status

    def raw() -> object:
        raw_cur.execute(POINT, point)
        return raw_cur.fetchall()

    def hit1() -> object:
        cur.execute(POINT, point)
        return cur.fetchall()

    def hit10() -> object:
        cur.execute(GROUP, group)
        return cur.fetchall()

    before = cache.stats()
    batches, per_batch = (15, 2000) if quick else (40, 5000)
    medians = interleaved({"raw": raw, "hit1": hit1, "hit10": hit10}, batches, per_batch)
    after = cache.stats()
    timed = 2 * (batches * per_batch + min(per_batch, 200))
    assert after.hits["l1"] - before.hits["l1"] == timed, "a timed call was not an L1 hit"
    assert after.misses == before.misses and after.hits["l2"] == before.hits["l2"]
    cache.close()
    return {
        "raw_point_us": medians["raw"],
        "l1_hit_1row_us": medians["hit1"], "l1_hit_1row_ratio": medians["hit1"] / medians["raw"],
        "l1_hit_10rows_us": medians["hit10"], "l1_hit_10rows_ratio": medians["hit10"] / medians["raw"],
    }


# -- 2. L2 hit on Redis vs a raw GET of the same bytes ----------------------------------------
def redis_section(quick: bool, runs: int = 3) -> dict[str, Any]:
    import redis
    from redis.utils import HIREDIS_AVAILABLE

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        raise Unavailable(f"Redis unreachable at {REDIS_URL}: {exc}") from exc
    namespace = "benchhot" + uuid.uuid4().hex[:6]
    cache = querycache.QueryCache.from_dict({
        "l1": {"enabled": False}, "l2": {"backend": "redis", "url": REDIS_URL, "namespace": namespace},
    })
    raw_key = "bench-raw:" + uuid.uuid4().hex
    try:
        cur = cache.wrap(users_db()).cursor()
        params = (3,)
        cur.execute(GROUP, params)
        expected = cur.fetchall()
        assert cur.cache_status == "miss", cur.cache_status
        cur.execute(GROUP, params)
        assert cur.fetchall() == expected and cur.cache_status == "hit:L2", cur.cache_status
        (entry_key,) = client.scan_iter(match=f"{namespace}:e:*")
        payload = client.hget(entry_key, "v")
        assert isinstance(payload, bytes)
        client.set(raw_key, payload)
        assert client.get(raw_key) == payload

        def raw() -> object:
            return client.get(raw_key)

        def hit() -> object:
            cur.execute(GROUP, params)
            return cur.fetchall()

        batches, per_batch = (9, 100) if quick else (21, 300)
        out: dict[str, Any] = {"hiredis": HIREDIS_AVAILABLE, "payload_bytes": len(payload), "runs": []}
        for _ in range(runs):
            before = cache.stats()
            medians = interleaved({"raw": raw, "hit": hit}, batches, per_batch)
            after = cache.stats()
            # A call whose lookup timed out (the store's 50 ms, on a loaded machine) ran on the
            # database, failing open: counted and reported; anything else is a broken benchmark.
            failed_open = (after.bypasses.get("store_unavailable", 0)
                           - before.bypasses.get("store_unavailable", 0))
            hits = after.hits["l2"] - before.hits["l2"]
            assert hits + failed_open == batches * per_batch + min(per_batch, 200), "a timed call was no L2 hit"
            assert after.misses == before.misses, "a timed call was a miss"
            out["runs"].append({"raw_get_us": medians["raw"], "l2_hit_us": medians["hit"],
                                "ratio": medians["hit"] / medians["raw"], "failed_open": failed_open})
        return out
    finally:
        client.delete(raw_key)
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        cache.close()


def redis_without_hiredis(quick: bool) -> dict[str, Any]:
    """The Redis section in a child process where ``import hiredis`` fails."""
    code = ("import sys, json; sys.modules['hiredis'] = None; sys.path.insert(0, 'bench');"
            f"import hotpaths; print(json.dumps(hotpaths.redis_section({quick!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the run without hiredis failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["hiredis"] is False
    return result


# -- 3. the miss overhead on PostgreSQL -----------------------------------------------------------
def postgres_section(quick: bool) -> dict[str, Any]:
    try:
        import psycopg
    except ImportError as exc:
        raise Unavailable(f"psycopg not installed: {exc}") from exc
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:
        raise Unavailable(f"PostgreSQL unreachable ({PG_DSN}): {exc}") from exc
    table = f"qc_bench_users_{uuid.uuid4().hex[:8]}"
    cache = querycache.QueryCache()
    raw_conn = psycopg.connect(PG_DSN, autocommit=True)
    wrapped = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    try:
        admin.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, name text NOT NULL, "
                      "score double precision NOT NULL, grp integer NOT NULL)")
        admin.execute(f"INSERT INTO {table} SELECT i, 'user-' || i, i * 1.25, i % {GROUPS} "
                      f"FROM generate_series(1, {USERS}) i")
        admin.execute(f"CREATE INDEX ON {table} (grp)")
        admin.execute(f"ANALYZE {table}")
        raw_cur, cur = raw_conn.cursor(), wrapped.cursor()
        counter = itertools.count(1)
        calls = 400 if quick else 3000
        out: dict[str, Any] = {"calls_each": calls}
        for name, hint in (("no_fill", "/* cache ttl=0 */ "), ("with_fill", "")):
            sql = f"{hint}SELECT id, name, score FROM {table} WHERE grp = %s AND id > %s"
            raw_times: list[float] = []
            cached_times: list[float] = []
            before = cache.stats()
            for i in range(calls + 50):
                params = (3, -next(counter))  # never seen: a cold miss
                pair = ((raw_cur, raw_times), (cur, cached_times))
                for target, times in (pair if i % 2 else pair[::-1]):
                    started = time.perf_counter()
                    target.execute(sql, params)
                    rows = target.fetchall()
                    elapsed = time.perf_counter() - started
                    if i >= 50:  # the first 50 warm both connections
                        times.append(elapsed * 1e6)
                    assert len(rows) == 10
                assert cur.cache_status == "miss", cur.cache_status
            after = cache.stats()
            assert after.misses - before.misses == calls + 50
            raw_us, cached_us = statistics.median(raw_times), statistics.median(cached_times)
            out[name] = {"raw_us": raw_us, "wrapped_us": cached_us, "overhead_us": cached_us - raw_us,
                         "ratio": cached_us / raw_us}
        return out
    finally:
        cache.close()
        raw_conn.close()
        admin.execute(f"DROP TABLE IF EXISTS {table}")
        admin.close()


# -- report -------------------------------------------------------------------------------------
def report(results: dict[str, Any]) -> str:
    lines = [f"load average before: {results['load_before']}; after: {results['load_after']} "
             f"(2 cores); python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}"]
    s = results.get("sqlite")
    if s:
        lines.append("L1 hit vs raw sqlite3 in-memory point query (execute + fetchall), goal <= 1.0x, bar 1.5x:")
        lines.append(f"  raw point query       {s['raw_point_us']:7.2f} us")
        lines.append(f"  L1 hit, 1 row         {s['l1_hit_1row_us']:7.2f} us   {s['l1_hit_1row_ratio']:.2f}x")
        lines.append(f"  L1 hit, 10 rows       {s['l1_hit_10rows_us']:7.2f} us   {s['l1_hit_10rows_ratio']:.2f}x")
    for label, key in (("hiredis", "redis"), ("pure-Python parser (no hiredis)", "redis_no_hiredis")):
        r = results.get(key)
        if r:
            lines.append(f"L2 hit on Redis (L1 off, 10 rows, {r['payload_bytes']} bytes) vs raw redis-py GET "
                         f"of the same bytes, {label}, goal <= 1.25x:")
            for n, run in enumerate(r["runs"], 1):
                note = f"   ({run['failed_open']} lookups timed out: ran uncached)" if run["failed_open"] else ""
                lines.append(f"  run {n}: GET {run['raw_get_us']:7.1f} us   L2 hit {run['l2_hit_us']:7.1f} us   "
                             f"{run['ratio']:.2f}x{note}")
    p = results.get("postgres")
    if p:
        lines.append(f"miss overhead on PostgreSQL (raw and wrapped alternating, {p['calls_each']} cold misses "
                     "each, medians), goal +20 us:")
        for name, label in (("no_fill", "without the fill (ttl=0)"), ("with_fill", "with the fill (L1 + memory L2)")):
            m = p[name]
            lines.append(f"  {label:32s} raw {m['raw_us']:7.1f} us   wrapped {m['wrapped_us']:7.1f} us   "
                         f"{m['overhead_us']:+6.1f} us ({m['ratio']:.2f}x)")
    for name, why in results.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter batches (CI)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only", default="sqlite,redis,postgres",
                        help="comma-separated sections: sqlite, redis, postgres (default all)")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - {"sqlite", "redis", "postgres"}
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; accepted: sqlite, redis, postgres")
    results: dict[str, Any] = {"load_before": loadavg(), "skipped": {}}
    runners: list[tuple[str, Callable[[bool], dict[str, Any]]]] = []
    if "sqlite" in sections:
        runners.append(("sqlite", sqlite_section))
    if "redis" in sections:
        runners += [("redis", redis_section), ("redis_no_hiredis", redis_without_hiredis)]
    if "postgres" in sections:
        runners.append(("postgres", postgres_section))
    for name, run in runners:
        if name == "redis_no_hiredis" and "redis" in results["skipped"]:
            continue
        try:
            results[name] = run(args.quick)
        except Unavailable as exc:
            if os.environ.get("CI") == "true":
                raise
            results["skipped"][name] = str(exc)
        print(f"[{name} done, load {loadavg()}]", file=sys.stderr, flush=True)
    results["load_after"] = loadavg()
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
