"""Stampede benchmark: N callers hit one cold key of a slow PostgreSQL query at the same moment.

    .venv/bin/python bench/stampede.py            # full: N = 8, 64, 256 (under 5 minutes)
    .venv/bin/python bench/stampede.py --quick    # N = 8, 64, shorter query (under a minute)

Scenarios, run side by side (interleaved, one N at a time, in the same run):

* ``qc-on``: querycache, coalescing on, embedded memory store, threads of this process;
* ``qc-off``: the same with ``coalesce: {enabled: false}``;
* ``qc-redis``: querycache, coalescing on, Redis store, ``--processes`` processes (N / P threads each);
* ``dogpile-mem``: a dogpile.cache ``dogpile.cache.memory`` region, ``region.get_or_create(key, creator)``
  around the same raw psycopg query, threads of this process;
* ``dogpile-redis``: dogpile.cache's ``dogpile.cache.redis`` backend with ``distributed_lock=True``
  (default ``lock_sleep`` 0.1 s), ``--processes`` processes.

The query is ``SELECT id, <p>_slow(v) FROM <p> WHERE id = 1 AND k = k`` with a fresh literal ``k`` per
run (and a fresh cache, namespace or dogpile key), so every run starts cold. ``<p>_slow`` takes
``nextval`` of a sequence and sleeps (declared IMMUTABLE, a lie told only so that querycache treats the
read as cacheable): **executions are counted by PostgreSQL**, the sequence being restarted before
each run. Every caller has its own connection, opened and warmed with one unrelated read before the
release; when N exceeds the connection budget (derived from ``SHOW max_connections``), the callers
share a pool of connections instead (``conns`` column): a caller takes a connection from the pool
after the release, and that wait is part of its latency.

Latency is per caller, from the release (the moment the coordinating process sets the start event:
``time.monotonic``, one clock for all processes on Linux) to the rows in hand. Percentiles are
nearest-rank over every caller of every repetition. Every caller's rows are compared with the
expected row; errors, wrong rows and hangs are counted and reported.

Writes ``bench/results/stampede.json`` (every run, every caller's latency, querycache's coalescing
counters) and ``bench/results/stampede.md``, and prints the Markdown table. The table, function and
sequence are dropped at the end, and the Redis keys this run created (its own prefixes, in
``--redis-url``'s database) are deleted, even on error.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
JSON_PATH = RESULTS / "stampede.json"
MD_PATH = RESULTS / "stampede.md"
PG_DSN = os.environ.get("QUERYCACHE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14")

SCENARIOS: dict[str, str] = {
    "qc-on": "querycache, coalescing on, memory store, 1 process",
    "qc-off": "querycache, coalescing off, memory store, 1 process",
    "qc-redis": "querycache, coalescing on, Redis store, {P} processes",
    "dogpile-mem": "dogpile.cache memory region, 1 process",
    "dogpile-redis": "dogpile.cache Redis, distributed_lock, {P} processes",
}
CROSS_PROCESS = {"qc-redis", "dogpile-redis"}
# Each run's "callers" in the JSON: one row per caller, these fields (ms after the release).
CALLER_FIELDS = ["process", "status", "latency_ms", "woke_ms", "conn_wait_ms"]
EXPECTED_ROWS = [(1, 10)]


# -- one run, in one process ------------------------------------------------------------------------

@dataclass
class Objects:
    """Names of the database objects of this benchmark run."""

    table: str
    seq: str
    fn: str

    def sql(self, k: int) -> str:
        return f"SELECT id, {self.fn}(v) FROM {self.table} WHERE id = 1 AND {k} = {k}"

    @property
    def warm_sql(self) -> str:
        return f"SELECT count(*) FROM {self.table}"


@dataclass
class RunSpec:
    """What one process does in one run (picklable: sent to worker processes)."""

    scenario: str
    threads: int
    conns: int
    sql: str
    warm_sql: str
    key: str  # querycache Redis namespace, or the dogpile key
    redis_url: str
    redis_timeout_ms: int
    max_wait_ms: int
    lease_ms: int
    join_timeout_s: float


@dataclass
class CallerResult:
    started: float  # monotonic: the thread woke up after the release
    got_conn: float  # it had a connection (later than started only with a shared pool)
    done: float  # rows in hand (or the error)
    status: str
    ok: bool
    error: str | None = None
    rows: str | None = None  # repr of wrong rows


@dataclass
class LocalResult:
    released: float  # monotonic time this process released its threads
    callers: list[CallerResult]
    hung: int
    stats: dict[str, Any] = field(default_factory=dict)


def _qc_config(spec: RunSpec) -> dict[str, Any]:
    coalesce = {"enabled": spec.scenario != "qc-off", "max_wait_ms": spec.max_wait_ms, "lease_ms": spec.lease_ms}
    if spec.scenario == "qc-redis":
        l2: dict[str, Any] = {"backend": "redis", "url": spec.redis_url, "namespace": spec.key,
                              "timeout_ms": spec.redis_timeout_ms}
    else:
        l2 = {"backend": "memory"}
    return {"l2": l2, "coalesce": coalesce}


def _qc_stats(cache: Any) -> dict[str, Any]:
    d: dict[str, Any] = cache.stats().to_dict()
    return {key: d[key] for key in ("hits", "misses", "coalesced", "coalesce", "bypasses", "not_filled", "fail_open")}


def run_local(spec: RunSpec, before_release: Callable[[], None]) -> LocalResult:
    """Open and warm ``spec.conns`` connections, start ``spec.threads`` callers, call
    ``before_release`` once they all wait, release them, and collect what each one got."""
    import psycopg

    cache: Any = None
    region: Any = None
    raw_conns: list[Any] = []
    if spec.scenario.startswith("qc-"):
        import querycache

        cache = querycache.QueryCache.from_dict(_qc_config(spec))
        if spec.scenario == "qc-redis":  # wait for this process's L1 coherence lease, as a warm process has
            deadline = time.monotonic() + 10
            while cache.backend.l1_epoch.startswith("\x00no-lease"):
                if time.monotonic() > deadline:
                    raise RuntimeError("no L1 coherence lease from Redis within 10 s")
                time.sleep(0.02)
    else:
        from dogpile.cache import make_region

        if spec.scenario == "dogpile-mem":
            region = make_region().configure("dogpile.cache.memory", expiration_time=300)
        else:
            region = make_region().configure("dogpile.cache.redis", expiration_time=300, arguments={
                "url": spec.redis_url, "distributed_lock": True, "thread_local_lock": False,
                "lock_timeout": 60, "redis_expiration_time": 600})
    pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
    try:
        for _ in range(spec.conns):
            raw = psycopg.connect(PG_DSN, autocommit=True)
            raw_conns.append(raw)
            conn = cache.wrap(raw) if cache is not None else raw
            cur = conn.cursor()
            cur.execute(spec.warm_sql)  # scope, catalog and analyzer loaded: callers reach the cache together
            cur.fetchall()
            cur.close()
            pool.put(conn)

        def call(conn: Any) -> tuple[list[tuple[Any, ...]], str]:
            if cache is not None:
                cur = conn.cursor()
                cur.execute(spec.sql)
                rows = [tuple(r) for r in cur.fetchall()]
                status = str(cur.cache_status)
                cur.close()
                return rows, status
            created: list[bool] = []

            def creator() -> list[tuple[Any, ...]]:
                created.append(True)
                with conn.cursor() as cur:
                    cur.execute(spec.sql)
                    return [tuple(r) for r in cur.fetchall()]

            value = region.get_or_create(spec.key, creator)
            return [tuple(r) for r in value], "created" if created else "cached"

        ready = threading.Barrier(spec.threads + 1)
        release = threading.Event()
        out: list[CallerResult | None] = [None] * spec.threads

        def caller(i: int) -> None:
            ready.wait()
            release.wait()
            started = time.monotonic()
            conn = pool.get()
            got_conn = time.monotonic()
            try:
                rows, status = call(conn)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                out[i] = CallerResult(started, got_conn, time.monotonic(), "error", False, repr(exc))
            else:
                done = time.monotonic()
                ok = rows == EXPECTED_ROWS
                out[i] = CallerResult(started, got_conn, done, status, ok, None, None if ok else repr(rows))
            finally:
                pool.put(conn)

        threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(spec.threads)]
        for t in threads:
            t.start()
        ready.wait(60)
        before_release()
        released = time.monotonic()
        release.set()
        deadline = time.monotonic() + spec.join_timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        callers = [c for c in out if c is not None]
        hung = sum(1 for t in threads if t.is_alive())
        stats = _qc_stats(cache) if cache is not None else {}
        return LocalResult(released, callers, hung, stats)
    finally:
        for raw in raw_conns:
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - a hung caller may still hold it
                pass
        if cache is not None:
            cache.close()


def worker_main(index: int, tasks: Any, results: Any, go: MpEvent) -> None:
    """A worker process: runs each RunSpec it is sent; ``go`` releases all workers at once."""
    import dogpile.cache  # noqa: F401 - imported before the first run, not during it
    import psycopg  # noqa: F401

    import querycache  # noqa: F401

    while True:
        spec = tasks.get()
        if spec is None:
            return

        def wait_for_go() -> None:
            results.put(("ready", index, None))
            if not go.wait(120):
                raise RuntimeError("no start signal within 120 s")

        try:
            res = run_local(spec, wait_for_go)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            results.put(("error", index, repr(exc)))
        else:
            results.put(("done", index, res))


# -- the coordinating process -----------------------------------------------------------------------

class Workers:
    """``n`` spawned worker processes, reused for every cross-process run."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.go = ctx.Event()
        self.results: Any = ctx.Queue()
        self.tasks: list[Any] = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=worker_main, args=(i, self.tasks[i], self.results, self.go), daemon=True)
                      for i in range(n)]
        for p in self.procs:
            p.start()

    def run(self, spec: RunSpec, timeout_s: float) -> tuple[float, list[LocalResult], list[str]]:
        """(release time, each worker's result, errors). Raises on a hang."""
        n = len(self.procs)
        for q in self.tasks:
            q.put(spec)
        ready = 0
        errors: list[str] = []
        done: list[LocalResult] = []
        while ready + len(errors) < n:
            kind, index, payload = self.results.get(timeout=180)
            if kind == "ready":
                ready += 1
            elif kind == "error":
                errors.append(f"worker {index}: {payload}")
        released = time.monotonic()
        self.go.set()
        try:
            while len(done) + len(errors) < n:
                try:
                    kind, index, payload = self.results.get(timeout=timeout_s)
                except queue.Empty:
                    raise RuntimeError(f"{spec.scenario}: a worker process did not finish within {timeout_s} s") \
                        from None
                if kind == "done":
                    done.append(payload)
                elif kind == "error":
                    errors.append(f"worker {index}: {payload}")
        finally:
            self.go.clear()
        return released, done, errors

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    return sorted_xs[max(0, math.ceil(q * len(sorted_xs)) - 1)]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import psycopg

        self.args = args
        self.prefix = "sb" + uuid.uuid4().hex[:8]
        self.objects = Objects(self.prefix, self.prefix + "_runs", self.prefix + "_slow")
        self.admin = psycopg.connect(PG_DSN, autocommit=True)
        self.created = False
        self.redis_prefixes: list[str] = []
        self.counter = 0
        self.workers: Workers | None = None
        self.clock_keys_before: set[bytes] | None = None

    def _clock_keys(self, client: Any) -> set[bytes]:
        return set(client.scan_iter(match="qc:v:*", count=1000))

    def setup(self) -> None:
        o, sleep_s = self.objects, self.args.sleep
        if "qc-redis" in self.args.scenarios:
            import redis

            with redis.Redis.from_url(self.args.redis_url) as client:
                self.clock_keys_before = self._clock_keys(client)
        self.created = True
        for stmt in (
            f"CREATE TABLE {o.table} (id int PRIMARY KEY, v int NOT NULL)",
            f"INSERT INTO {o.table} VALUES (1, 10)",
            f"CREATE SEQUENCE {o.seq}",
            f"CREATE FUNCTION {o.fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
            f"PERFORM nextval('{o.seq}'); PERFORM pg_sleep({sleep_s}); RETURN x; END $$",
        ):
            self.admin.execute(stmt)

    def cleanup(self) -> None:
        o = self.objects
        if self.created:
            for stmt in (f"DROP FUNCTION IF EXISTS {o.fn}(int)", f"DROP SEQUENCE IF EXISTS {o.seq}",
                         f"DROP TABLE IF EXISTS {o.table}"):
                try:
                    self.admin.execute(stmt)
                except Exception as exc:  # noqa: BLE001 - clean up the rest
                    print(f"cleanup: {stmt}: {exc!r}", file=sys.stderr)
        self.admin.close()
        if self.redis_prefixes or self.clock_keys_before is not None:
            try:
                import redis

                with redis.Redis.from_url(self.args.redis_url) as client:
                    for prefix in self.redis_prefixes:
                        for pattern in (f"{prefix}*", f"_lock{prefix}*"):  # querycache namespace; dogpile key, lock
                            keys = list(client.scan_iter(match=pattern, count=1000))
                            if keys:
                                client.delete(*keys)
                    if self.clock_keys_before is not None:
                        # querycache's table versions are shared by every namespace (qc:v:<hash>): the
                        # ones that appeared during this run are this run's table's (dropped above). A
                        # version key that is missing is recreated at the current counter, which only
                        # invalidates older entries, so deleting one is safe even if someone shared it.
                        new = self._clock_keys(client) - self.clock_keys_before
                        if new:
                            client.delete(*new)
            except Exception as exc:  # noqa: BLE001 - report, do not mask the run's own error
                print(f"cleanup: Redis keys: {exc!r}", file=sys.stderr)

    def server_info(self) -> dict[str, Any]:
        def one(sql: str) -> Any:
            row = self.admin.execute(sql).fetchone()
            assert row is not None
            return row[0]

        return {
            "postgres": one("SHOW server_version"),
            "max_connections": int(one("SHOW max_connections")),
            "superuser_reserved_connections": int(one("SHOW superuser_reserved_connections")),
            "client_connections_before": int(one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")),
        }

    def executions(self) -> int:
        row = self.admin.execute(
            f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {self.objects.seq}").fetchone()
        assert row is not None
        return int(row[0])

    def run(self, scenario: str, n: int, conns: int) -> dict[str, Any]:
        args = self.args
        self.counter += 1
        key = f"{self.prefix}-{self.counter}"
        if scenario in CROSS_PROCESS:
            self.redis_prefixes.append(key)
        procs = args.processes if scenario in CROSS_PROCESS else 1
        waves = math.ceil(n / conns)
        join_timeout = 30.0 + waves * (args.sleep + args.max_wait_ms / 1000) * 2
        spec = RunSpec(scenario, n // procs, conns // procs, self.objects.sql(self.counter), self.objects.warm_sql,
                       key, args.redis_url, args.redis_timeout_ms, args.max_wait_ms, args.lease_ms, join_timeout)
        self.admin.execute(f"ALTER SEQUENCE {self.objects.seq} RESTART")
        errors: list[str] = []
        if scenario in CROSS_PROCESS:
            if self.workers is None:
                self.workers = Workers(args.processes)
            released, locals_, errors = self.workers.run(spec, join_timeout + 30)
        else:
            local = run_local(spec, lambda: None)
            released, locals_ = local.released, [local]
        time.sleep(0.05)  # a straggler's nextval is counted too
        executions = self.executions()
        callers = [c for res in locals_ for c in res.callers]
        per_caller = [[i, c.status, round((c.done - released) * 1000, 3), round((c.started - released) * 1000, 3),
                       round((c.got_conn - c.started) * 1000, 3)]
                      for i, res in enumerate(locals_) for c in res.callers]  # CALLER_FIELDS
        hung = n - len(callers)  # still running at the deadline, or lost with a failed worker process
        stats: dict[str, Any] = {}
        for res in locals_:
            for k, v in res.stats.items():
                if isinstance(v, int):
                    stats[k] = stats.get(k, 0) + v
                elif isinstance(v, dict):
                    merged = stats.setdefault(k, {})
                    for kk, vv in v.items():
                        merged[kk] = merged.get(kk, 0) + vv
        return {
            "scenario": scenario, "n": n, "conns": conns, "processes": procs, "sql": spec.sql,
            "executions": executions,
            "start_skew_ms": round(max((c.started - released) * 1000 for c in callers), 3) if callers else None,
            "statuses": dict(Counter(c.status for c in callers)),
            "errors": [c.error for c in callers if c.error] + errors,
            "wrong_rows": [c.rows for c in callers if c.rows],
            "hung": hung,
            "querycache_stats": stats,
            "callers": per_caller,
        }


def summarize(runs: list[dict[str, Any]], ns: list[int], scenarios: list[str]) -> list[dict[str, Any]]:
    rows = []
    for n in ns:
        for scenario in scenarios:
            mine = [r for r in runs if r["n"] == n and r["scenario"] == scenario]
            if not mine:
                continue
            lat = sorted(c[2] for r in mine for c in r["callers"])
            statuses: Counter[str] = Counter()
            for r in mine:
                statuses.update(r["statuses"])
            rows.append({
                "n": n, "scenario": scenario, "conns": mine[0]["conns"], "processes": mine[0]["processes"],
                "repetitions": len(mine),
                "executions": [r["executions"] for r in mine],
                "p50_ms": quantile(lat, 0.50) if lat else None,
                "p99_ms": quantile(lat, 0.99) if lat else None,
                "max_ms": lat[-1] if lat else None,
                "start_skew_max_ms": max(r["start_skew_ms"] or 0.0 for r in mine),
                "statuses": dict(statuses.most_common()),
                "errors": sum(len(r["errors"]) for r in mine),
                "wrong_rows": sum(len(r["wrong_rows"]) for r in mine),
                "hung": sum(r["hung"] for r in mine),
            })
    return rows


def markdown(summary: list[dict[str, Any]], runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    p = meta["processes"]
    lines = [
        "# Stampede: N callers on one cold key of a slow query",
        "",
        f"Measured {meta['date']} with `{meta['command']}` ({meta['mode']} mode): query sleeps "
        f"{meta['sleep_s']} s in PostgreSQL {meta['postgres']}, Redis {meta['redis']}, dogpile.cache "
        f"{meta['dogpile']}, {meta['cpus']} CPUs; {meta['repeat']} repetition(s) per cell, scenarios "
        "interleaved. Executions are counted by PostgreSQL (one per repetition); latency is from the "
        "release to the rows in hand, nearest-rank over all callers of all repetitions; skew = the last "
        "caller's wake-up after the release.",
        "",
        f"Settings: querycache `coalesce: {{max_wait_ms: {meta['max_wait_ms']}, lease_ms: {meta['lease_ms']}}}`, "
        f"Redis store `l2.timeout_ms: {meta['redis_timeout_ms']}`; dogpile `expiration_time=300`, Redis lock "
        "with its default `lock_sleep=0.1`.",
        "",
        "| N | scenario | conns | executions | p50 ms | p99 ms | max ms | skew ms | statuses | errors / wrong / hung |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in summary:
        label = SCENARIOS[row["scenario"]].format(P=p)
        statuses = ", ".join(f"{k} {v}" for k, v in row["statuses"].items())
        execs = " / ".join(str(e) for e in row["executions"])
        lines.append(
            f"| {row['n']} | {label} | {row['conns']} | {execs} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
            f"{row['max_ms']:.0f} | {row['start_skew_max_ms']:.0f} | {statuses} | "
            f"{row['errors']} / {row['wrong_rows']} / {row['hung']} |")
    extra = [r for r in runs if r["scenario"] != "qc-off" and r["executions"] > 1]
    if extra:
        lines += ["", "Runs of a coalescing scenario with more than one execution:", ""]
        for r in extra:
            qs = r["querycache_stats"]
            detail = (f"; querycache fail_open {qs.get('fail_open')}, bypasses {qs.get('bypasses')}, "
                      f"coalesce {qs.get('coalesce')}") if qs else ""
            lines.append(f"* N={r['n']} {r['scenario']} repetition {r['repetition']}: {r['executions']} executions, "
                         f"statuses {r['statuses']}, max {max(c[2] for c in r['callers']):.0f} ms{detail}")
    if any(row["conns"] < row["n"] for row in summary):
        lines += ["", f"conns < N: PostgreSQL allows {meta['max_connections']} connections, so those callers "
                  f"share a pool of {meta['pool']} connections (a caller waits for a free one after the "
                  "release, inside its latency); at most that many queries can run at once."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="N = 8, 64; 0.2 s query; one repetition (< 60 s)")
    ap.add_argument("--n", type=int, nargs="+", help="caller counts (default 8 64 256; --quick: 8 64)")
    ap.add_argument("--sleep", type=float, help="seconds the query sleeps (default 0.5; --quick: 0.2)")
    ap.add_argument("--repeat", type=int, help="repetitions per cell (default 5; --quick: 1)")
    ap.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("--processes", type=int, default=4, help="processes of the cross-process scenarios")
    ap.add_argument("--pool", type=int, default=64,
                    help="most connections a run opens (lowered further to fit max_connections)")
    ap.add_argument("--redis-url", default=REDIS_URL)
    ap.add_argument("--redis-timeout-ms", type=int, default=50, help="querycache l2.timeout_ms (library default 50)")
    ap.add_argument("--max-wait-ms", type=int, default=5000, help="querycache coalesce.max_wait_ms")
    ap.add_argument("--lease-ms", type=int, default=30000, help="querycache coalesce.lease_ms")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    args = ap.parse_args(argv)
    args.n = args.n or ([8, 64] if args.quick else [8, 64, 256])
    args.sleep = args.sleep if args.sleep is not None else (0.2 if args.quick else 0.5)
    args.repeat = args.repeat or (1 if args.quick else 5)
    for n in args.n:
        if n % args.processes:
            ap.error(f"N={n} is not a multiple of --processes={args.processes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import dogpile
    import psycopg
    import redis

    import querycache

    began = time.monotonic()
    bench = Bench(args)
    runs: list[dict[str, Any]] = []
    try:
        info = bench.server_info()
        # Keep every run well under the server's limit: a quarter of it stays free for everyone else.
        budget = int((info["max_connections"] - info["superuser_reserved_connections"]) * 0.75) \
            - info["client_connections_before"]
        pool = min(args.pool, budget) // args.processes * args.processes
        if pool < args.processes:
            raise SystemExit(f"not enough free PostgreSQL connections: budget {budget}")
        redis_version = str(redis.Redis.from_url(args.redis_url).info("server")["redis_version"])
        bench.setup()
        for n in args.n:
            conns = min(n, pool)
            for rep in range(args.repeat):
                order = args.scenarios[rep % len(args.scenarios):] + args.scenarios[:rep % len(args.scenarios)]
                for scenario in order:
                    run = bench.run(scenario, n, conns)
                    run["repetition"] = rep
                    runs.append(run)
                    lat = sorted(c[2] for c in run["callers"])
                    print(f"N={n:<3} rep {rep} {scenario:<13} executions {run['executions']:<3} "
                          f"p50 {quantile(lat, 0.5) if lat else float('nan'):7.0f} ms  "
                          f"max {lat[-1] if lat else float('nan'):7.0f} ms  {run['statuses']}"
                          + (f"  errors {run['errors'][:3]}" if run["errors"] else "")
                          + (f"  wrong {run['wrong_rows'][:3]}" if run["wrong_rows"] else "")
                          + (f"  hung {run['hung']}" if run["hung"] else ""), file=sys.stderr, flush=True)
    finally:
        if bench.workers is not None:
            bench.workers.close()
        bench.cleanup()
    summary = summarize(runs, args.n, args.scenarios)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python bench/stampede.py", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "sleep_s": args.sleep, "repeat": args.repeat, "n": args.n, "processes": args.processes, "pool": pool,
        "redis_timeout_ms": args.redis_timeout_ms, "max_wait_ms": args.max_wait_ms, "lease_ms": args.lease_ms,
        "postgres": info["postgres"], "max_connections": info["max_connections"],
        "client_connections_before": info["client_connections_before"], "redis": redis_version,
        "dogpile": dogpile.__version__, "psycopg": psycopg.__version__, "querycache": querycache.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
        "elapsed_s": round(time.monotonic() - began, 1),
        "caller_fields": CALLER_FIELDS,
    }
    md = markdown(summary, runs, meta)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        JSON_PATH.write_text(  # one line per run: each holds every caller
            '{"meta": ' + json.dumps(meta, indent=1) + ',\n"summary": ' + json.dumps(summary, indent=1)
            + ',\n"runs": [\n' + ",\n".join(json.dumps(r) for r in runs) + "\n]}\n")
        MD_PATH.write_text(md)
    print(md)
    print(f"({meta['elapsed_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
