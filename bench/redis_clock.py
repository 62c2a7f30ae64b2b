"""Redis benchmarks for the shared L2 store and its clock, everything side by side in one run.

    .venv/bin/python bench/redis_clock.py [--quick] [--seed N]

Needs PostgreSQL (database ``test``; ``QUERYCACHE_BENCH_PG``) and Redis (db 14 by default;
``QUERYCACHE_BENCH_REDIS``). The machine is small and noisy, so every figure is a comparison with
its uncached counterpart measured in the same loop, in random order:

1. **Miss overhead on Redis.** A PostgreSQL point query (10 rows, a table created for the run)
   raw vs through a wrapped connection where every call is a cold miss (a new parameter each
   call: lookup round trip, query, fill of L1 + Redis L2), and the same with ``/* cache ttl=0 */``
   (lookup round trip, no fill). A raw redis-py PING and the bare lookup script are timed in the
   same loop, and the Redis commands of each kind of call are counted (untimed): the design budget
   is ``delta <= store round trips x round trip + 20 µs`` (docs/architecture.md, "Performance
   budgets"), checked with both as the round trip.
2. **Invalidation throughput.** Commits/s of a transaction updating N tables (N = 1, 4, 16), raw
   psycopg vs wrapped (two-phase bump around COMMIT + waiting for acknowledgements), with no
   other process and with 3 other processes (multiprocessing spawn) holding a QueryCache with a
   live coherence lease on the same Redis.
3. **Bump delivery.** Time from just before a bump is published (``begin_write``: phase 1,
   ``end_write``: phase 2) until another process's subscriber applied it to its mirror
   (``backend.versions[key] >= seq``; recorded by a dict subclass installed as that process's
   mirror, at the moment the subscriber stores the value), vs a raw redis-py PUBLISH (and a PUBLISH
   from a one-line Lua script) to a plain redis-py subscriber in another process, interleaved;
   plus how long the writer's ``wait_for_acks`` took, with 1 and with 3 lease holders.
   ``time.perf_counter_ns()`` is CLOCK_MONOTONIC on Linux: comparable across processes.

Prints Markdown tables and writes ``bench/results/redis.json`` and ``bench/results/redis.md``.
Every section drops its tables, closes its caches and stops its processes, also on error; a
failing section is reported and the others still run (exit status 1 then).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import gc
import itertools
import json
import math
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, cast
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
import redis.connection  # noqa: E402

import querycache  # noqa: E402
from querycache.backends.redis import HOLDERS, RedisBackend  # noqa: E402
from querycache.invalidation.keys import any_rows_key, database_table_key  # noqa: E402

REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
PG_DSN = os.environ.get("QUERYCACHE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
RESULTS = ROOT / "bench" / "results"
JSON_PATH = RESULTS / "redis.json"
MD_PATH = RESULTS / "redis.md"

LEASE_MS = 500
ROWS = 10
GRP = 3
TABLE_COUNTS = (1, 4, 16)
OTHER_PROCESSES = 3
MISS_OVERHEAD_MAX_US = 20.0  # docs/architecture.md, "Performance budgets": on top of the store round trips
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0

FULL = {"miss_rounds": 5000, "commits": 400, "bumps": 2000, "warmup": 100}
QUICK = {"miss_rounds": 800, "commits": 60, "bumps": 200, "warmup": 20}


# -- small helpers --------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt(value: Any, spec: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def cache_config(namespace: str) -> dict[str, Any]:
    return {"l2": {"backend": "redis", "url": REDIS_URL, "namespace": namespace},
            "invalidation": {"mode": "strict", "lease_ms": LEASE_MS}}


def redis_backend(cache: querycache.QueryCache) -> RedisBackend:
    backend = cache.backend
    if not isinstance(backend, RedisBackend):
        raise RuntimeError(f"expected the Redis backend, got {backend!r}")
    return backend


def close_cache(cache: querycache.QueryCache) -> None:
    """Drop this run's entries (its own namespace) from Redis, then close the cache."""
    try:
        cache.flush("l2")
    finally:
        cache.close()


def live_holders(client: redis.Redis) -> list[str]:
    """Lease holders whose lease has not run out (by the store's clock, as the ack script sees it)."""
    secs, usecs = client.time()
    now_ms = secs * 1000 + usecs // 1000
    members = cast(list[bytes], client.zrangebyscore(HOLDERS, now_ms, "+inf"))
    return [m.decode() for m in members]


class HolderWatch:
    """Samples the store's live lease holders every 100 ms (own thread, own client) and keeps those
    this script did not start: another process on the same Redis db makes writers wait for it too."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="holder-watch", daemon=True)

    def __enter__(self) -> HolderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            while not self._stop.wait(0.1):
                with contextlib.suppress(redis.RedisError):
                    self._seen.update(live_holders(client))
        finally:
            client.close()

    def take(self) -> list[str]:
        """Foreign holders seen since the last call."""
        seen, self._seen = self._seen, set()
        return sorted(h for h in seen if h not in self.known)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_HANDSHAKE = frozenset({"HELLO", "CLIENT", "SELECT", "AUTH"})


@contextlib.contextmanager
def count_redis_calls(backend: RedisBackend) -> Iterator[collections.Counter[str]]:
    """Count the Redis commands this thread sends (scripts by name); for a separate, untimed phase.

    Scripts are counted where the backend sends them (``RedisBackend.observe_scripts``), other commands
    where redis-py writes them (``AbstractConnection.send_command``). A new connection's handshake is not
    counted.
    """
    counts: collections.Counter[str] = collections.Counter()
    original = cast(Callable[..., Any], redis.connection.AbstractConnection.send_command)
    me = threading.get_ident()

    def counting(self: Any, *args: Any, **options: Any) -> Any:
        command = str(args[0]).upper()
        # Scripts are counted where the backend sends them (below), whichever way it packs them.
        if threading.get_ident() == me and command not in _HANDSHAKE and command not in ("EVALSHA", "EVAL"):
            counts[command] += 1
        return original(self, *args, **options)

    def counting_script(script: str) -> None:
        if threading.get_ident() == me:
            counts[f"script:{script}"] += 1

    backend.observe_scripts(counting_script)
    try:
        with mock.patch.object(redis.connection.AbstractConnection, "send_command", counting):
            yield counts
    finally:
        backend.observe_scripts(None)


def per_call(counts: collections.Counter[str], calls: int) -> dict[str, float]:
    return {name: round(n / calls, 2) for name, n in sorted(counts.items())}


# -- child processes (multiprocessing spawn) ------------------------------------------------------
class _TimedMirror(dict[str, int]):
    """A version mirror that records when the subscriber stores a value under the tracked key.

    ``RedisBackend`` only ever writes its mirror with ``mirror[key] = seq``; this records
    ``(seq, perf_counter_ns())`` right after each such store for ``tracked``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tracked: str | None = None
        self.applied: list[tuple[int, int]] = []

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        if key == self.tracked:
            self.applied.append((value, time.perf_counter_ns()))


def holder_main(conn: Connection, url: str, namespace: str, lease_ms: int) -> None:
    """Another process holding a QueryCache on the same Redis: a live lease, acknowledging bumps.

    Commands (tuples over the pipe): ``("track", key)``, ``("records",)``, ``("version", key)``,
    ``("stop",)``.
    """
    cache: querycache.QueryCache | None = None
    try:
        cache = querycache.QueryCache.from_dict(
            {"l2": {"backend": "redis", "url": url, "namespace": namespace},
             "invalidation": {"mode": "strict", "lease_ms": lease_ms}})
        backend = redis_backend(cache)
        mirror = _TimedMirror()
        mirror.update(backend.versions)
        backend.versions = mirror
        cache.mirror_versions = mirror
        resyncs = [0]

        def count_resync() -> None:
            resyncs[0] += 1

        backend.on_resync(count_resync)
        deadline = time.monotonic() + 10
        while not backend.has_lease:
            if time.monotonic() > deadline:
                conn.send(("error", "no coherence lease 10 s after start"))
                return
            time.sleep(0.01)
        conn.send(("ready", os.getpid(), backend.holder))
        while True:
            command = conn.recv()
            if command[0] == "track":
                mirror.tracked = command[1]
                mirror.applied = []
                resyncs[0] = 0
                conn.send(("ok",))
            elif command[0] == "records":
                conn.send(("records", list(mirror.applied), resyncs[0], backend.has_lease))
            elif command[0] == "version":
                conn.send(("version", backend.versions.get(command[1])))
            elif command[0] == "stop":
                conn.send(("bye",))
                return
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    except Exception:  # noqa: BLE001 - report anything to the parent, which fails the section
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if cache is not None:
            cache.close()


def raw_subscriber_main(conn: Connection, url: str, channel: str) -> None:
    """The baseline: a plain redis-py subscriber recording when each integer payload arrived."""
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    received: dict[int, int] = {}
    try:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + 10
        while True:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                break
            if time.monotonic() > deadline:
                conn.send(("error", "no subscribe confirmation in 10 s"))
                return
        conn.send(("ready", os.getpid(), channel))
        while True:
            message = pubsub.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                now = time.perf_counter_ns()
                received.setdefault(int(message["data"]), now)
            if conn.poll():
                command = conn.recv()
                if command[0] == "records":
                    conn.send(("records", dict(received)))
                elif command[0] == "clear":
                    received.clear()
                    conn.send(("ok",))
                elif command[0] == "stop":
                    conn.send(("bye",))
                    return
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    except Exception:  # noqa: BLE001 - report anything to the parent, which fails the section
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            pubsub.close()
        client.close()


class Child:
    """One spawned process and the parent's end of its pipe."""

    def __init__(self, name: str, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
        self.process.start()
        child_conn.close()
        self.info: tuple[Any, ...] = ()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> tuple[Any, ...]:
        self.info = self._reply(timeout, "ready")
        return self.info

    def request(self, *command: Any, expect: str, timeout: float = REPLY_TIMEOUT_S) -> tuple[Any, ...]:
        self.conn.send(command)
        return self._reply(timeout, expect)

    def _reply(self, timeout: float, expect: str) -> tuple[Any, ...]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{self.name} (pid {self.process.pid}) did not answer within {timeout:g} s")
        reply = cast(tuple[Any, ...], self.conn.recv())
        if reply[0] != expect:
            raise RuntimeError(f"{self.name}: expected {expect!r}, got {reply!r}")
        return reply

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.process.is_alive():
                self.conn.send(("stop",))
                if self.conn.poll(5):
                    self.conn.recv()
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(3)
        self.conn.close()


@contextlib.contextmanager
def children(stack_name: str, specs: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> Iterator[list[Child]]:
    """Start every child at once (spawn is slow), wait until all are ready, stop them all at the end."""
    started: list[Child] = []
    try:
        for i, (target, args) in enumerate(specs):
            started.append(Child(f"{stack_name}-{i}", target, *args))
        for child in started:
            child.wait_ready()
        yield started
    finally:
        for child in started:
            child.stop()


def start_holders(stack: contextlib.ExitStack, client: redis.Redis, count: int, namespace: str) -> list[Child]:
    """``count`` holder processes whose leases are live in the store (checked there), plus a margin."""
    holders = stack.enter_context(children("holder", [(holder_main, (REDIS_URL, namespace, LEASE_MS))] * count))
    ids = {child.info[2] for child in holders}
    deadline = time.monotonic() + 5
    while not ids <= set(live_holders(client)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"holders {sorted(ids - set(live_holders(client)))} never showed a live lease")
        time.sleep(0.02)
    time.sleep(0.3)  # a lease renewal or two more: settled
    return holders


# -- section 1: miss overhead ---------------------------------------------------------------------
def bench_miss(admin: psycopg.Connection[Any], tag: str, rounds: int, warmup: int) -> dict[str, Any]:
    table = f"qc_bench_redis_{tag}_items"
    admin.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, grp integer NOT NULL, name text NOT NULL, "
                  f"price double precision NOT NULL)")
    try:
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (id, grp, name, price) VALUES (%s, %s, %s, %s)",
                            [(i, GRP, f"item-{i:02d}", i * 1.25) for i in range(1, ROWS + 1)])
        admin.execute(f"ANALYZE {table}")
        with contextlib.ExitStack() as stack:
            cache = querycache.QueryCache.from_dict(cache_config(f"qcbench-{tag}-miss"))
            stack.callback(close_cache, cache)
            backend = redis_backend(cache)
            raw = stack.enter_context(psycopg.connect(PG_DSN, autocommit=True))
            wrapped = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
            stack.callback(wrapped.close)
            client = redis.Redis.from_url(REDIS_URL)
            stack.callback(client.close)
            raw_cur, cached_cur = raw.cursor(), wrapped.cursor()
            sql = f"SELECT id, name, price FROM {table} WHERE grp = %s AND id > %s"
            sql_ttl0 = "/* cache ttl=0 */ " + sql
            counter = itertools.count(1)
            statuses: dict[str, collections.Counter[str]] = {"cached": collections.Counter(),
                                                             "cached_ttl0": collections.Counter()}
            bad_rows = [0]

            def query(cur: Any, text: str) -> None:
                cur.execute(text, (GRP, -next(counter)))  # a parameter never used before: a new key
                if len(cur.fetchall()) != ROWS:
                    bad_rows[0] += 1

            query(cached_cur, sql)
            # The version keys a read of the table looks up (the database, the catalog, the table): the
            # store-side reference is one bare lookup script with them, for an entry that does not exist.
            prefix = wrapped.version_namespace + "\x1f"
            version_keys = sorted(k for k in backend.versions if k.startswith(prefix))
            entry_prefix = f"{cache.namespace}:e:bench-{tag}-"

            variants: dict[str, Callable[[], object]] = {
                "raw": lambda: query(raw_cur, sql),
                "cached": lambda: query(cached_cur, sql),
                "raw_ttl0": lambda: query(raw_cur, sql_ttl0),
                "cached_ttl0": lambda: query(cached_cur, sql_ttl0),
                "ping": client.ping,
                "lookup": lambda: backend.lookup(entry_prefix + str(next(counter)), version_keys),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            before = cache.stats()
            with no_gc():
                for i in range(warmup + rounds):
                    random.shuffle(names)
                    for name in names:
                        t0 = time.perf_counter_ns()
                        variants[name]()
                        elapsed = time.perf_counter_ns() - t0
                        if name in statuses:
                            statuses[name][str(cached_cur.cache_status)] += 1
                        if i >= warmup:
                            times[name].append(elapsed / 1000)
            after = cache.stats()
            # Untimed: what each kind of call sends to Redis.
            trips: dict[str, dict[str, float]] = {}
            for name in ("cached", "cached_ttl0"):
                with count_redis_calls(backend) as counts:
                    for _ in range(50):
                        variants[name]()
                trips[name] = per_call(counts, 50)
        med = {name: pct(values, 0.5) for name, values in times.items()}
        rows = []
        for label, raw_name, cached_name in (
            ("cold miss incl. fill (L1 + Redis L2) vs raw psycopg point query (10 rows)", "raw", "cached"),
            ("miss without fill (`/* cache ttl=0 */`) vs raw psycopg point query (10 rows)", "raw_ttl0",
             "cached_ttl0"),
        ):
            delta = med[cached_name] - med[raw_name]
            n_trips = sum(trips[cached_name].values())
            budget_ping = n_trips * med["ping"] + MISS_OVERHEAD_MAX_US
            budget_lookup = n_trips * med["lookup"] + MISS_OVERHEAD_MAX_US
            rows.append({
                "path": label, "raw_median_us": med[raw_name], "cached_median_us": med[cached_name],
                "raw_p90_us": pct(times[raw_name], 0.9), "cached_p90_us": pct(times[cached_name], 0.9),
                "ratio": ratio(med[cached_name], med[raw_name]), "delta_us": delta,
                "redis_calls_per_call": trips[cached_name], "store_round_trips": n_trips,
                "budget_ping_us": budget_ping, "within_budget_ping": delta <= budget_ping,
                "budget_lookup_us": budget_lookup, "within_budget_lookup": delta <= budget_lookup,
                "client_side_us": delta - n_trips * med["lookup"],
                "statuses": dict(statuses[cached_name]), "rounds": len(times[cached_name]),
            })
        return {
            "rows": rows, "redis_ping_median_us": med["ping"], "redis_ping_p90_us": pct(times["ping"], 0.9),
            "lookup_script_median_us": med["lookup"], "lookup_script_p90_us": pct(times["lookup"], 0.9),
            "version_keys": len(version_keys),
            "rounds": rounds, "warmup": warmup, "wrong_row_counts": bad_rows[0],
            "misses_counted": after.misses - before.misses,
            "fills": {tier: after.fills[tier] - before.fills[tier] for tier in after.fills},
            "fail_open": after.fail_open - before.fail_open,
            "not_filled": dict(after.not_filled),
        }
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {table}")


# -- section 2: invalidation throughput -----------------------------------------------------------
def bench_invalidation(admin: psycopg.Connection[Any], tag: str, commits: int, warmup: int) -> dict[str, Any]:
    tables = [f"qc_bench_redis_{tag}_w{i:02d}" for i in range(max(TABLE_COUNTS))]
    rows: list[dict[str, Any]] = []
    checks: list[str] = []
    try:
        for table in tables:
            admin.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, v bigint NOT NULL)")
            admin.execute(f"INSERT INTO {table} VALUES (1, 0)")
        with contextlib.ExitStack() as stack:
            cache = querycache.QueryCache.from_dict(cache_config(f"qcbench-{tag}-inv"))
            stack.callback(close_cache, cache)
            backend = redis_backend(cache)
            raw = stack.enter_context(psycopg.connect(PG_DSN))
            wrapped = cache.wrap(psycopg.connect(PG_DSN))
            stack.callback(wrapped.close)
            client = redis.Redis.from_url(REDIS_URL)
            stack.callback(client.close)
            raw_cur, cached_cur = raw.cursor(), wrapped.cursor()
            statuses: collections.Counter[str] = collections.Counter()

            def transaction(conn: Any, cur: Any, n: int, track: bool) -> None:
                for table in tables[:n]:
                    cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
                    if track:
                        statuses[str(cur.cache_status)] += 1
                conn.commit()

            watch = stack.enter_context(HolderWatch({backend.holder}))
            for case, others in (("no other process", 0), (f"{OTHER_PROCESSES} other processes with leases",
                                                           OTHER_PROCESSES)):
                with contextlib.ExitStack() as case_stack:
                    holders = (start_holders(case_stack, client, others, f"qcbench-{tag}-inv-h")
                               if others else [])
                    watch.known.update(h.info[2] for h in holders)
                    seen = [h for h in live_holders(client) if h != backend.holder]
                    for holder in holders:
                        holder.request("track", "", expect="ok")  # resets its resync count
                    writer_resyncs = backend.resyncs
                    for n in TABLE_COUNTS:
                        times: dict[str, list[float]] = {"raw": [], "cached": []}
                        names = list(times)
                        watch.take()
                        with no_gc():
                            for i in range(warmup + commits):
                                random.shuffle(names)
                                for name in names:
                                    t0 = time.perf_counter_ns()
                                    if name == "raw":
                                        transaction(raw, raw_cur, n, False)
                                    else:
                                        transaction(wrapped, cached_cur, n, True)
                                    if i >= warmup:
                                        times[name].append((time.perf_counter_ns() - t0) / 1e9)
                        with count_redis_calls(backend) as counts:  # untimed
                            for _ in range(20):
                                transaction(wrapped, cached_cur, n, False)
                        raw_cps = len(times["raw"]) / sum(times["raw"])
                        cached_cps = len(times["cached"]) / sum(times["cached"])
                        rows.append({
                            "case": case, "other_processes": others, "live_other_holders": len(seen),
                            "tables": n, "commits": commits,
                            "raw_commits_per_s": raw_cps, "cached_commits_per_s": cached_cps,
                            "ratio": cached_cps / raw_cps,
                            "raw_median_ms": pct(times["raw"], 0.5) * 1e3,
                            "cached_median_ms": pct(times["cached"], 0.5) * 1e3,
                            "raw_p99_ms": pct(times["raw"], 0.99) * 1e3,
                            "cached_p99_ms": pct(times["cached"], 0.99) * 1e3,
                            "redis_calls_per_commit": per_call(counts, 20),
                            "foreign_holders": watch.take(),
                        })
                    if backend.resyncs != writer_resyncs:
                        checks.append(f"{case}: the writer's mirror was resynced "
                                      f"{backend.resyncs - writer_resyncs} time(s) during the run")
                    # Every holder must have applied the last bump of every table, without resyncs.
                    for holder in holders:
                        _, _, resyncs, leased = holder.request("records", expect="records")
                        if resyncs or not leased:
                            checks.append(f"{case}: holder {holder.info[2]} resynced its mirror {resyncs} "
                                          f"time(s){'' if leased else ' and had no lease at the end'}")
                        for table in tables:
                            # A row-level write bumps its table's "any row" bucket, not the table key.
                            key = any_rows_key(database_table_key(wrapped.version_namespace, table))
                            want = backend.versions.get(key)
                            got = holder.request("version", key, expect="version")[1]
                            if want is None or got is None or got < want:
                                checks.append(f"{case}: holder {holder.info[2]} has {table} at {got}, "
                                              f"writer at {want}")
            if set(statuses) != {"bypass:write"}:
                checks.append(f"wrapped UPDATE statuses: {dict(statuses)}")
        return {"rows": rows, "commits": commits, "warmup": warmup, "problems": checks,
                "update_statuses": dict(statuses)}
    finally:
        for table in tables:
            admin.execute(f"DROP TABLE IF EXISTS {table}")


# -- section 3: bump delivery ----------------------------------------------------------------------
def _summary(label: str, values_us: Sequence[float], expected: int, base: dict[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "path": label, "n": len(values_us), "expected": expected, "missing": expected - len(values_us),
        "p50_us": pct(values_us, 0.5), "p99_us": pct(values_us, 0.99),
        "max_us": max(values_us) if values_us else math.nan,
    }
    if base is not None:
        row["ratio_p50"] = ratio(row["p50_us"], base["p50_us"])
        row["ratio_p99"] = ratio(row["p99_us"], base["p99_us"])
    return row


def delivery_pass(backend: RedisBackend, holders: list[Child], subscriber: Child, channel: str,
                  client: redis.Redis, key: str, bumps: int, label: str) -> dict[str, Any]:
    for holder in holders:
        holder.request("track", key, expect="ok")
    subscriber.request("clear", expect="ok")
    writer_resyncs = backend.resyncs
    sent_raw: dict[int, int] = {}
    sent_lua: dict[int, int] = {}  # payloads bumps + i: the same subscriber, told apart by value
    sent_qc: list[tuple[int, int, int, int, int]] = []  # (p, t before begin, s, t before end, wait ns)
    lua_publish = client.register_script("return redis.call('PUBLISH', ARGV[1], ARGV[2])")
    kinds = ["qc", "raw", "lua"]
    with no_gc():
        for i in range(bumps):
            random.shuffle(kinds)
            for kind in kinds:
                if kind == "raw":
                    t0 = time.perf_counter_ns()
                    client.publish(channel, str(i))
                    sent_raw[i] = t0
                elif kind == "lua":
                    t0 = time.perf_counter_ns()
                    lua_publish(args=[channel, str(bumps + i)])
                    sent_lua[bumps + i] = t0
                else:
                    token = uuid.uuid4().hex
                    t0 = time.perf_counter_ns()
                    p = backend.begin_write([key], token, 30000)
                    t1 = time.perf_counter_ns()
                    s = backend.end_write([key], token)
                    t2 = time.perf_counter_ns()
                    backend.wait_for_acks()
                    sent_qc.append((p, t0, s, t1, time.perf_counter_ns() - t2))
                time.sleep(random.uniform(0.002, 0.004))
    time.sleep(0.5)  # stragglers
    raw_received = cast(dict[int, int], subscriber.request("records", expect="records")[1])
    per_holder: list[dict[int, int]] = []
    problems: list[str] = []
    for holder in holders:
        _, applied, resyncs, leased = holder.request("records", expect="records")
        first: dict[int, int] = {}
        for value, t in applied:
            first.setdefault(value, t)
        per_holder.append(first)
        if resyncs:
            problems.append(f"{label}: holder {holder.info[2]} resynced its mirror {resyncs} time(s)")
        if not leased:
            problems.append(f"{label}: holder {holder.info[2]} had no lease at the end")
    if backend.resyncs != writer_resyncs:
        problems.append(f"{label}: the writer's mirror was resynced {backend.resyncs - writer_resyncs} time(s)")

    raw_lat = [(raw_received[i] - t0) / 1000 for i, t0 in sent_raw.items() if i in raw_received]
    base = _summary("raw redis-py PUBLISH -> plain redis-py subscriber (other process)", raw_lat, bumps, None)
    lua_lat = [(raw_received[i] - t0) / 1000 for i, t0 in sent_lua.items() if i in raw_received]
    out_rows = [base, _summary("raw PUBLISH from a one-line Lua script (EVALSHA) -> same subscriber", lua_lat,
                               bumps, base)]
    phase1_all: list[float] = []
    phase1_worst: list[float] = []
    phase2_all: list[float] = []
    phase2_worst: list[float] = []
    for p, t0, s, t1, _ in sent_qc:
        got1 = [first[p] - t0 for first in per_holder if p in first]
        got2 = [first[s] - t1 for first in per_holder if s in first]
        phase1_all += [ns / 1000 for ns in got1]
        phase2_all += [ns / 1000 for ns in got2]
        if len(got1) == len(per_holder):
            phase1_worst.append(max(got1) / 1000)
        if len(got2) == len(per_holder):
            phase2_worst.append(max(got2) / 1000)
    n_h = len(holders)
    if n_h == 1:
        out_rows.append(_summary("querycache bump, phase 1 (`begin_write`) -> holder's mirror", phase1_all,
                                 bumps, base))
        out_rows.append(_summary("querycache bump, phase 2 (`end_write`, right after phase 1) -> holder's mirror",
                                 phase2_all, bumps, base))
    else:
        out_rows.append(_summary(f"querycache bump, phase 1 -> each of {n_h} holders' mirrors (pooled)",
                                 phase1_all, bumps * n_h, base))
        out_rows.append(_summary(f"querycache bump, phase 1 -> slowest of {n_h} holders", phase1_worst,
                                 bumps, base))
        out_rows.append(_summary(f"querycache bump, phase 2 -> slowest of {n_h} holders", phase2_worst,
                                 bumps, base))
    waits = [w / 1000 for *_, w in sent_qc]
    wait_row = _summary(f"writer's `wait_for_acks` after phase 2 ({n_h} lease holder{'s' * (n_h > 1)})",
                        waits, bumps, None)
    wait_row["over_lease"] = sum(1 for w in waits if w >= LEASE_MS * 1000)
    out_rows.append(wait_row)
    for row in out_rows:
        if row["missing"]:
            problems.append(f"{label}: {row['missing']} of {row['expected']} never arrived for: {row['path']}")
    if wait_row["over_lease"]:
        problems.append(f"{label}: {wait_row['over_lease']} `wait_for_acks` calls lasted >= the lease "
                        f"({LEASE_MS} ms): a holder never acknowledged")
    return {"holders": n_h, "rows": out_rows, "problems": problems}


def bench_delivery(tag: str, bumps: int) -> dict[str, Any]:
    key = f"qcbench-{tag}\x1fprobe"
    channel = f"qcbench:raw:{tag}"
    passes = []
    with contextlib.ExitStack() as stack:
        client = redis.Redis.from_url(REDIS_URL)
        stack.callback(client.close)
        cache = querycache.QueryCache.from_dict(cache_config(f"qcbench-{tag}-pub"))
        stack.callback(close_cache, cache)
        backend = redis_backend(cache)
        watch = stack.enter_context(HolderWatch({backend.holder}))
        (subscriber,) = stack.enter_context(children("raw-subscriber", [(raw_subscriber_main,
                                                                          (REDIS_URL, channel))]))
        holders: list[Child] = []
        for count, label in ((1, "1 holder"), (OTHER_PROCESSES - 1, f"{OTHER_PROCESSES} holders")):
            holders += start_holders(stack, client, count, f"qcbench-{tag}-pub-h")
            watch.known.update(h.info[2] for h in holders)
            others = [h for h in live_holders(client) if h != backend.holder]
            watch.take()
            passes.append(delivery_pass(backend, holders, subscriber, channel, client, key, bumps, label))
            passes[-1]["live_other_holders"] = len(others)
            passes[-1]["foreign_holders"] = foreign = watch.take()
            if foreign:
                passes[-1]["problems"].append(f"{label}: lease holders not started by this script were live "
                                              f"during the pass: {foreign}")
    return {"bumps": bumps, "passes": passes}


# -- report -----------------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    commit = meta["commit"][:10] + (" (querycache/ modified)" if "modified" in meta["commit"] else "")
    lines = [
        "# querycache Redis benchmarks (`bench/redis_clock.py`)",
        "",
        f"{meta['date']} · {meta['mode']} mode · Python {meta['python']} · Redis {meta['redis_version']} · "
        f"PostgreSQL {meta['postgres_version']} · {meta['cpus']} CPUs · commit {commit} · "
        f"lease {LEASE_MS} ms · {meta['elapsed_s']:.0f} s",
        "",
        "Every figure is measured in this run; each comparison in one loop, in random order.",
    ]
    miss = result["sections"].get("miss")
    lines += ["", "## 1. Miss overhead on Redis (PostgreSQL point query, 10 rows)", ""]
    if miss and "rows" in miss:
        lines += [
            "| path | raw median µs | querycache median µs | ratio | delta µs | Redis calls per call | "
            "delta - store round trips (lookup script) | budget: RT = PING | budget: RT = lookup script | statuses |",
            "|---|---:|---:|---:|---:|---|---:|---|---|---|",
        ]
        for row in miss["rows"]:
            calls = ", ".join(f"{k} {v:g}" for k, v in row["redis_calls_per_call"].items())
            b_ping = (f"<= {row['budget_ping_us']:.0f}: {'OK' if row['within_budget_ping'] else '**OVER**'}")
            b_lookup = (f"<= {row['budget_lookup_us']:.0f}: {'OK' if row['within_budget_lookup'] else '**OVER**'}")
            lines.append(f"| {row['path']} | {fmt(row['raw_median_us'])} | {fmt(row['cached_median_us'])} | "
                         f"{fmt(row['ratio'], '.2f')} | {fmt(row['delta_us'], '+.1f')} | {calls} | "
                         f"{fmt(row['client_side_us'], '+.1f')} | {b_ping} | {b_lookup} | "
                         f"{', '.join(f'{k} {v}' for k, v in sorted(row['statuses'].items()))} |")
        lines += ["", f"Same loop: raw redis-py PING median {fmt(miss['redis_ping_median_us'])} µs; the bare lookup "
                  f"script ({miss['version_keys']} version keys, absent entry) median "
                  f"{fmt(miss['lookup_script_median_us'])} µs. Budget (docs/architecture.md): delta <= round trips "
                  f"x RT + {MISS_OVERHEAD_MAX_US:g} µs. {miss['rounds']} rounds of each (after {miss['warmup']} "
                  f"warm-up rounds); every call a new parameter. Fills during the run: {miss['fills']}; "
                  f"fail-open: {miss['fail_open']}."]
    else:
        lines.append(f"failed: {result['errors'].get('miss', 'not run')}")
    inv = result["sections"].get("invalidation")
    lines += ["", "## 2. Invalidation throughput (transaction updating N tables, then COMMIT)", ""]
    if inv and "rows" in inv:
        lines += [
            "| other processes (live leases) | N tables | raw commits/s | querycache commits/s | ratio | "
            "raw median ms | querycache median ms | querycache p99 ms | Redis calls per commit |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in inv["rows"]:
            lines.append(f"| {row['other_processes']} ({row['live_other_holders']}) | {row['tables']} | "
                         f"{fmt(row['raw_commits_per_s'], '.0f')} | {fmt(row['cached_commits_per_s'], '.0f')} | "
                         f"{fmt(row['ratio'], '.2f')} | {fmt(row['raw_median_ms'], '.2f')} | "
                         f"{fmt(row['cached_median_ms'], '.2f')} | {fmt(row['cached_p99_ms'], '.2f')} | "
                         f"{', '.join(f'{k} {v:g}' for k, v in row['redis_calls_per_commit'].items())} |")
        lines += ["", f"{inv['commits']} commits of each per row (after {inv['warmup']} warm-up); commits/s = "
                  "commits / time spent in them; ratio = querycache / raw. Redis calls per commit: counted in 20 "
                  "extra (untimed) commits; `acked` is `wait_for_acks` polling."]
    else:
        lines.append(f"failed: {result['errors'].get('invalidation', 'not run')}")
    dl = result["sections"].get("delivery")
    lines += ["", "## 3. Bump delivery to another process, and the writer's wait for acknowledgements", ""]
    if dl and "passes" in dl:
        lines += [
            "| lease holders | path | n | p50 µs | p99 µs | max µs | p50 / raw | p99 / raw |",
            "|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for one in dl["passes"]:
            for row in one["rows"]:
                lines.append(f"| {one['holders']} ({one['live_other_holders']}) | {row['path']} | {row['n']} | "
                             f"{fmt(row['p50_us'])} | {fmt(row['p99_us'])} | {fmt(row['max_us'], '.0f')} | "
                             f"{fmt(row.get('ratio_p50'), '.2f')} | {fmt(row.get('ratio_p99'), '.2f')} |")
        lines += ["", f"{dl['bumps']} bumps and {dl['bumps']} publishes of each raw kind per pass, interleaved in "
                  "random order, "
                  "2-4 ms apart. Lease holders: other processes (in parentheses: live leases seen in the "
                  "store). Delivery = until the subscriber stored the bump in its mirror (before its ack)."]
    else:
        lines.append(f"failed: {result['errors'].get('delivery', 'not run')}")
    lines += ["", "## Findings of this run", ""]
    notes = result["notes"]
    lines += [f"- {note}" for note in notes] if notes else ["- nothing unexpected"]
    return "\n".join(lines) + "\n"


def findings(result: dict[str, Any]) -> list[str]:
    notes: list[str] = []
    sections = result["sections"]
    miss = sections.get("miss")
    if miss and "rows" in miss:
        for row in miss["rows"]:
            other = {k: v for k, v in row["statuses"].items() if k != "miss"}
            if other:
                notes.append(f"{row['path']}: statuses other than miss: {other}")
            if not row["within_budget_lookup"]:
                notes.append(f"over budget even with RT = the lookup script: {row['path']}: "
                             f"+{row['delta_us']:.1f} µs > {row['budget_lookup_us']:.1f} µs")
        if miss["wrong_row_counts"]:
            notes.append(f"{miss['wrong_row_counts']} queries returned other than {ROWS} rows")
        if miss["fail_open"]:
            notes.append(f"fail-open during the miss benchmark: {miss['fail_open']}")
    inv = sections.get("invalidation")
    if inv and "rows" in inv:
        notes += inv["problems"]
        for row in inv["rows"]:
            if row["foreign_holders"]:
                notes.append(f"invalidation ({row['case']}, N={row['tables']}): lease holders not started by "
                             f"this script were live during the row: {row['foreign_holders']}")
            if row["live_other_holders"] != row["other_processes"]:
                notes.append(f"invalidation ({row['case']}): {row['live_other_holders']} live other holders in "
                             f"the store, expected {row['other_processes']}")
    dl = sections.get("delivery")
    if dl and "passes" in dl:
        for one in dl["passes"]:
            notes += one["problems"]
    for name, error in result["errors"].items():
        notes.append(f"section {name} failed: {error.strip().splitlines()[-1]}")
    return notes


def _git(*args: str) -> str:
    """A read-only git query (no index refresh: GIT_OPTIONAL_LOCKS=0); '' when git is unavailable."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=5,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def _commit() -> str:
    commit = _git("rev-parse", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", "querycache"):
        commit += " (querycache/ modified)"
    return commit


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random orders and gaps")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    random.seed(args.seed)
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    result: dict[str, Any] = {"sections": {}, "errors": {}}
    try:
        result["meta"] = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if args.quick else "full", "sizes": sizes, "seed": args.seed,
            "python": platform.python_version(), "redis_version": redis_version,
            "postgres_version": admin.info.parameter_status("server_version") or "?",
            "cpus": os.cpu_count(), "commit": _commit(), "redis_url": REDIS_URL, "lease_ms": LEASE_MS,
            "command": " ".join([Path(sys.executable).name, "bench/redis_clock.py", *argv]),
        }
        sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("miss", lambda: bench_miss(admin, tag, sizes["miss_rounds"], sizes["warmup"])),
            ("invalidation", lambda: bench_invalidation(admin, tag, sizes["commits"], sizes["warmup"] // 5)),
            ("delivery", lambda: bench_delivery(tag, sizes["bumps"])),
        ]
        for name, run in sections:
            t0 = time.monotonic()
            print(f"[{name}] running ...", flush=True)
            try:
                result["sections"][name] = run()
            except Exception:  # noqa: BLE001 - report it, run the other sections
                result["errors"][name] = traceback.format_exc()
                print(result["errors"][name], file=sys.stderr, flush=True)
            print(f"[{name}] {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        admin.close()
    result["meta"]["elapsed_s"] = time.monotonic() - started
    result["notes"] = findings(result)
    text = markdown(result)
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    MD_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {JSON_PATH.relative_to(ROOT)} and {MD_PATH.relative_to(ROOT)}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
