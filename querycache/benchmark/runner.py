"""Orchestration: schema, contenders one after another (same seeds), the sweep, the report, cleanup."""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from querycache.benchmark import schema as sch
from querycache.benchmark.engines import ENGINES, Engine, engine, mysql_params
from querycache.benchmark.progress import GenerationProgress
from querycache.benchmark.report import figures, markdown
from querycache.benchmark.worker import (
    BOUNDED,
    CONTENDERS,
    PER_PROCESS,
    QC,
    READ_KINDS,
    READ_WEIGHTS,
    SEMANTIC,
    WRITE_WEIGHTS,
    CommitLog,
    SharedState,
    Spec,
    is_cached,
    qc_config,
    worker_main,
)

DESCRIPTION = ("Workload benchmark: querycache vs uncached vs TTL caches on a generated shop schema "
               "(PostgreSQL, MariaDB or sqlite).")
RESULTS = Path("bench") / "results"  # relative to the current directory: the checkout's bench/results
PG_DSN = os.environ.get("QUERYCACHE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
MYSQL_URL = os.environ.get("QUERYCACHE_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/11")
# The Redis store's global keys (querycache/backends/redis.py): epoch and counter, lease holders, their
# acknowledgements of bumps.
CLOCK, HOLDERS, ACKS = "qc:clock", "qc:holders", "qc:ack:*"


def log(msg: str) -> None:
    print(msg, flush=True)


def percentile(sorted_xs: list[float], p: float) -> float | None:
    """Nearest rank."""
    if not sorted_xs:
        return None
    k = max(0, min(len(sorted_xs) - 1, int(-(-p * len(sorted_xs) // 100)) - 1))
    return sorted_xs[k]


@dataclass
class Dataset:
    """One schema of the run (generated or reused), and the checker's shared memory for it."""

    schema: str
    scale: sch.Scale
    rows: dict[str, int]
    state: SharedState

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())


def target(args: argparse.Namespace) -> str:
    """The chosen engine's connection string."""
    return str({"postgres": args.pg_dsn, "mariadb": args.mysql_url, "sqlite": args.sqlite_dir}[args.database])


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = "wl_" + uuid.uuid4().hex[:8]
        # sqlite without --sqlite-dir: a directory of this run's own, removed at the end
        self.temp_dir = tempfile.mkdtemp(prefix="querycache-bench-") if args.database == "sqlite" and \
            not args.sqlite_dir else None
        if self.temp_dir is not None:
            args.sqlite_dir = self.temp_dir
        self.target = target(args)
        self.db: Engine = engine(args.database, self.target)
        self.ctx = mp.get_context("spawn")
        self.created: list[str] = []  # datasets this run generated: cleanup drops them (unless --keep)
        self.counter = 0
        self.redis_clock_before: set[bytes] | None = None
        self.redis_clock_existed = True

    # -- database ----------------------------------------------------------------------------------

    def one(self, dataset: str, sql: str) -> Any:
        return self.db.one(dataset, sql)

    def setup(self) -> Dataset:
        """Note the store's clock keys (cleanup deletes the ones this run adds); the main dataset."""
        import redis

        with redis.Redis.from_url(self.args.redis_url) as client:
            self.redis_clock_before = self._clock_keys(client)
            self.redis_clock_existed = bool(client.exists(CLOCK))
        return self.dataset(self.args.schema or self.prefix, self.args.scale)

    def table(self, schema: str, name: str) -> str:
        return f"{schema}.{name}" if self.db.qualified else name

    def dataset(self, schema: str, scale_factor: float) -> Dataset:
        """``schema`` as it is if it exists, else generated at ``scale_factor``."""
        if self.db.exists(schema):
            log(f"reusing {self.db.where(schema)}")
            scale = sch.Scale(*(int(self.one(schema, f"SELECT count(*) FROM {self.table(schema, t)}"))
                                for t in ("customers", "products", "orders")))
        else:
            scale = sch.Scale.of(scale_factor)
            t0 = time.monotonic()
            self.created.append(schema)  # before creating: a failure half way still drops it
            log(f"generating {self.db.where(schema)} on {self.db.label}: {scale.total_rows:,} rows "
                f"({scale.customers:,} customers, {scale.products:,} products, {scale.orders:,} orders, "
                f"{scale.items:,} items)")
            self.db.prepare(schema)
            with GenerationProgress(sch.steps(self.db.name, schema, scale)) as progress:
                sch.create(lambda sql: self.db.execute(schema, sql), self.db.name, schema, scale, progress.done)
            log(f"generated in {time.monotonic() - t0:.1f} s")
        rows = {t: int(self.one(schema, f"SELECT count(*) FROM {self.table(schema, t)}"))
                for t in ("customers", "products", "orders", "order_items")}
        log(f"rows: {rows} = {sum(rows.values()):,}")
        return Dataset(schema, scale, rows, self.committed_state(schema, scale))

    def drop(self, schema: str) -> None:
        """Drop a dataset this run generated, now (a sweep's, once measured: disk and cache space)."""
        if schema in self.created and not self.args.keep:
            self.db.drop(schema)
            self.created.remove(schema)
            log(f"dropped {self.db.where(schema)}")

    def committed_state(self, schema: str, scale: sch.Scale) -> SharedState:
        """The checker's shared memory for ``schema``, starting from the versions already committed
        there (a reused schema)."""
        state = SharedState(self.ctx.RawArray("q", scale.orders + 1), self.ctx.RawArray("q", scale.customers + 1),
                            self.ctx.RawArray("q", sch.MONTHS), self.ctx.Lock(), CommitLog.create(self.ctx.RawArray))
        if not self.db.has_column(schema, "customers", "version"):
            raise RuntimeError(f"{self.db.where(schema)} predates customers.version: drop it and let the run "
                               "generate one")
        for oid, version in self.db.execute(schema, f"SELECT id, version FROM {self.table(schema, 'orders')} "
                                                    "WHERE version > 0"):
            state.orders[oid] = version
            state.month_sums[sch.order_month(oid)] += version
        for cid, version in self.db.execute(schema, f"SELECT id, version FROM {self.table(schema, 'customers')} "
                                                    "WHERE version > 0"):
            state.customers[cid] = version
        return state

    def _clock_keys(self, client: Any) -> set[bytes]:
        """querycache's per-table keys in the store: versions, pending marks, row-level dependency columns."""
        return {key for pattern in ("qc:v:*", "qc:p:*")
                for key in client.scan_iter(match=pattern, count=1000)}

    def cleanup(self) -> None:
        for schema in list(self.created):
            if self.args.keep:
                reuse = f" --sqlite-dir {self.args.sqlite_dir}" if self.args.database == "sqlite" else ""
                log(f"kept {self.db.where(schema)} (--keep; reuse with --schema {schema}{reuse})")
                continue
            try:
                self.drop(schema)
            except Exception as exc:  # noqa: BLE001 - clean up the rest
                print(f"cleanup: drop {self.db.where(schema)}: {exc!r}", file=sys.stderr)
        try:
            self.db.close()
        except Exception as exc:  # noqa: BLE001 - report, do not mask the run's own error
            print(f"cleanup: closing the {self.db.label} connection: {exc!r}", file=sys.stderr)
        if self.temp_dir is not None and not self.args.keep:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        try:
            import redis

            with redis.Redis.from_url(self.args.redis_url) as client:
                deleted = 0
                for pattern in (f"{self.prefix}*", f"_lock{self.prefix}*"):  # namespaces, keys; dogpile locks
                    keys = list(client.scan_iter(match=pattern, count=1000))
                    if keys:
                        deleted += client.delete(*keys)
                if self.redis_clock_before is not None and not self.args.keep:
                    # querycache's table versions of this run's tables (shared by namespaces): a missing
                    # version key is recreated at the current counter, so deleting one only invalidates.
                    new = self._clock_keys(client) - self.redis_clock_before
                    if new:
                        deleted += client.delete(*new)
                    if not self.redis_clock_existed:
                        # This run's processes created the store's clock, so its lease holders and their
                        # acknowledgements are this run's too.
                        deleted += client.delete(CLOCK, HOLDERS, *client.scan_iter(match=ACKS, count=1000))
                log(f"deleted {deleted} Redis keys of this run")
        except Exception as exc:  # noqa: BLE001 - report, do not mask the run's own error
            print(f"cleanup: Redis keys: {exc!r}", file=sys.stderr)

    # -- one contender -----------------------------------------------------------------------------

    def contender(self, data: Dataset, name: str, threads: int, processes: int, duration_s: float,
                  ops: int = 0) -> dict[str, Any]:
        """One contender's measurement: ``duration_s`` seconds, or with ``ops`` that many operations in
        all (split over processes and threads)."""
        self.counter += 1
        namespace = f"{self.prefix}-{self.counter}-{name}"
        specs = [Spec(name, p, threads, duration_s, self.args.seed, data.schema, data.scale, self.args.zipf,
                      self.args.write_ratio, self.target, self.args.redis_url, namespace, self.args.ttl,
                      self.args.rewrites, database=self.args.database,
                      ops=ops // processes + (p < ops % processes))
                 for p in range(processes)]
        ready: Any = self.ctx.Queue()
        results: Any = self.ctx.Queue()
        go = self.ctx.Event()
        procs = [self.ctx.Process(target=worker_main, args=(s, data.state, ready, go, results), daemon=True)
                 for s in specs]
        counters_before = self.db.counters(data.schema)
        load_before = os.getloadavg()[0]
        for p in procs:
            p.start()
        out: list[dict[str, Any]] = []
        setup_errors: list[str] = []
        try:
            for _ in procs:
                _, err = ready.get(timeout=180)
                if err:
                    setup_errors.append(err)
            if setup_errors:
                raise RuntimeError("worker setup failed:\n" + "\n".join(setup_errors))
            go.set()
            for _ in procs:
                out.append(self._result(results, procs, duration_s + 300 if not ops else None))
        except queue.Empty as exc:
            raise RuntimeError(f"{name}: a worker process did not answer (hang?)") from exc
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.terminate()
        counters: dict[str, int] | None = None
        if counters_before is not None:
            time.sleep(1.0)  # exited backends have flushed their statistics
            after = self.db.counters(data.schema)
            assert after is not None
            counters = {k: after[k] - counters_before[k] for k in after}
        return self.summarize(name, threads, processes, duration_s, ops, out, counters, load_before)

    @staticmethod
    def _result(results: Any, procs: list[Any], timeout: float | None) -> Any:
        """The next process's results; without a timeout (a count bound), as long as a process lives to
        send them."""
        if timeout is not None:
            return results.get(timeout=timeout)
        while True:
            try:
                return results.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("the worker processes exited without their results") from None

    def summarize(self, name: str, threads: int, processes: int, duration_s: float, ops_bound: int,
                  out: list[dict[str, Any]], pg: dict[str, int] | None, load_before: float) -> dict[str, Any]:
        ths = [t for p in out for t in p["threads"]]
        reads: array[float] = array("d")
        read_kind: array[int] = array("b")
        writes: array[float] = array("d")
        statuses: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for t in ths:
            reads.frombytes(t["read_ms"])
            read_kind.frombytes(t["read_kind"])
            writes.frombytes(t["write_ms"])
            statuses.update(t["statuses"])
            kinds.update(t["kinds"])
            errors.update(t["errors"])
        r, w = sorted(reads), sorted(writes)
        ops = sum(t["ops"] for t in ths)
        elapsed = max(t["ended"] for t in ths) - min(t["started"] for t in ths)
        n_reads = sum(statuses.values())
        cached = sum(v for k, v in statuses.items() if is_cached(k))
        res: dict[str, Any] = {
            "contender": name, "description": CONTENDERS[name], "threads": threads, "processes": processes,
            "duration_s": duration_s if not ops_bound else None, "ops_bound": ops_bound or None,
            "elapsed_s": round(elapsed, 3), "ops": ops,
            "throughput_ops_s": round(ops / elapsed, 1) if elapsed > 0 else None,
            "reads": n_reads, "writes": len(w), "kinds": dict(kinds),
            "read_latency_ms": {f"p{p}": _r(percentile(r, p)) for p in (50, 95, 99)}
            | {"max": _r(r[-1] if r else None)},
            "read_latency_ms_by_kind": _by_kind(reads, read_kind),
            "write_latency_ms": {f"p{p}": _r(percentile(w, p)) for p in (50, 95, 99)},
            "statuses": dict(statuses.most_common()),
            "cache_answered_ratio": round(cached / n_reads, 4) if n_reads else None,
            "db_statements": sum(t["db_statements"] for t in ths),
            # PostgreSQL's per-table counters; None (the report's "-") on the other databases
            "pg_table_scans": pg["seq_scan"] + pg["idx_scan"] if pg is not None else None, "pg_counters": pg,
            "checked_reads": sum(t["checked"] for t in ths),
            "checked_cached_reads": sum(t["checked_cached"] for t in ths),
            "stale_reads": sum(t["stale_cached"] for t in ths),
            "stale_reads_from_db": sum(t["stale_db"] for t in ths),
            "checked_cached_reads_by_kind": dict(sum((Counter(t["checked_cached_kinds"]) for t in ths), Counter())),
            "stale_reads_by_kind": dict(sum((Counter(t["stale_kinds"]) for t in ths), Counter())),
            "rewritten_statuses": dict(sum((Counter(t["rewritten_statuses"]) for t in ths), Counter())),
            "stale_samples": [s for t in ths for s in t["stale_samples"]][:20],
            "stale_age_s": _ages([a for t in ths for a in t["stale_ages"]]),
            "staleness_bound_s": BOUNDED.get(name) or None,
            "errors": sum(errors.values()), "error_kinds": dict(errors),
            "error_samples": [s for t in ths for s in t["error_samples"]][:5],
            "hung_threads": sum(p["hung"] for p in out),
            "timeline": _timeline(ths),
            "loadavg_1m_before": load_before,
        }
        if name in QC:
            res["querycache_stats"] = [p["stats"] for p in out]
            res["querycache"] = _sum_qc([p["stats"] for p in out])
        return res


def _ages(ages: list[tuple[str, float, bool]]) -> dict[str, Any]:
    """The age of the stale reads served from a cache (seconds from the commit recorded first among
    those each missed, to the read's end): per read kind and over all, p50/p99/max; ``at_least``
    counts reads whose missed commit had left the checker's log (their age is a lower bound)."""
    def summary(xs: list[float]) -> dict[str, Any]:
        xs = sorted(xs)
        return {"n": len(xs), "p50": _r3(percentile(xs, 50)), "p99": _r3(percentile(xs, 99)),
                "max": _r3(xs[-1] if xs else None)}
    out: dict[str, Any] = {"all": summary([a for _, a, _ in ages])}
    for kind in sorted({k for k, _, _ in ages}):
        out[kind] = summary([a for k, a, _ in ages if k == kind])
    out["at_least"] = sum(1 for _, _, exact in ages if not exact)
    return out


def _r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def bound_violations(res: dict[str, Any]) -> list[str]:
    """Why a contender's stale reads fail the run: any, from a strict querycache contender; for a
    bounded one, a stale read of a kind without a bound, or older than its bound plus ``AGE_SLACK_S``
    (the checker records a commit after it returned and a read when it ended)."""
    name = res["contender"]
    if name not in QC or (name in PER_PROCESS and res["processes"] > 1):
        return []
    bounds = BOUNDED.get(name, {})
    problems = []
    if res["stale_reads_from_db"]:
        problems.append(f"{name}: {res['stale_reads_from_db']} stale reads from the database")
    for kind, n in res["stale_reads_by_kind"].items():
        if kind not in bounds:
            problems.append(f"{name}: {n} stale {kind} reads (no staleness bound)")
        else:
            oldest = res["stale_age_s"].get(kind, {}).get("max") or 0.0
            if oldest > bounds[kind] + AGE_SLACK_S:
                problems.append(f"{name}: a {kind} read {oldest:.3f} s old, bound {bounds[kind]} s")
    return problems


AGE_SLACK_S = 0.25


def _timeline(threads: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Per second since the start, summed over threads and processes: operations, reads, reads
    answered from a cache and their ratio (None in a second without reads)."""
    width = max((len(t["ops_per_s"]) for t in threads), default=0)
    ops, reads, cached = [0] * width, [0] * width, [0] * width
    for t in threads:
        for i, n in enumerate(t["ops_per_s"]):
            ops[i] += n
        for i, n in enumerate(t["reads_per_s"]):
            reads[i] += n
        for i, n in enumerate(t["cached_per_s"]):
            cached[i] += n
    return {"second": list(range(width)), "ops": ops, "reads": reads, "cached": cached,
            "hit_ratio": [round(c / r, 4) if r else None for c, r in zip(cached, reads, strict=True)]}


def _by_kind(reads: array[float], kinds: array[int]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for i, kind in enumerate(READ_KINDS):
        xs = sorted(x for x, k in zip(reads, kinds, strict=True) if k == i)
        out[kind] = {"n": len(xs), "p50": _r(percentile(xs, 50)), "p99": _r(percentile(xs, 99))}
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _sum_qc(stats: list[dict[str, Any]]) -> dict[str, Any]:
    hits: Counter[str] = Counter()
    bypasses: Counter[str] = Counter()
    not_filled: Counter[str] = Counter()
    coalesce: Counter[str] = Counter()
    semantic: Counter[str] = Counter()
    maintain: Counter[str] = Counter()
    misses = coalesced = fail_open = 0
    for s in stats:
        maintain.update(s.get("maintain", {}))
        semantic.update({k: v for k, v in s.get("semantic", {}).items() if isinstance(v, int)})
        hits.update({k: v for k, v in s.get("hits", {}).items() if v})
        bypasses.update(s.get("bypasses", {}))
        not_filled.update(s.get("not_filled", {}))
        coalesce.update(s.get("coalesce", {}))
        misses += s.get("misses", 0)
        coalesced += s.get("coalesced", 0)
        fail_open += s.get("fail_open", 0)
    lookups = sum(hits.values()) + misses + coalesced + sum(bypasses.values())
    ratio = {f"{k}_hit_ratio": round(v / lookups, 4) for k, v in hits.items()} if lookups else {}
    return {"hits": dict(hits), "misses": misses, "coalesced": coalesced, "bypasses": dict(bypasses),
            "not_filled": dict(not_filled), "coalesce": dict(coalesce), "fail_open": fail_open,
            **({"semantic": dict(semantic)} if semantic else {}),
            **({"maintain": dict(maintain)} if maintain else {}),
            "lookups": lookups, **ratio}


def versions(run: Run) -> dict[str, Any]:
    import redis

    import querycache

    with redis.Redis.from_url(run.args.redis_url) as client:
        redis_version = str(client.info("server")["redis_version"])
    dogpile_version = "-"
    if importlib.util.find_spec("dogpile") is not None:
        import dogpile

        dogpile_version = dogpile.__version__
    return {run.db.name: run.db.server_version(), "database": f"{run.db.label} {run.db.server_version()}",
            "driver": run.db.driver_version(), "redis": redis_version, "python": platform.python_version(),
            "querycache": querycache.__version__, "dogpile.cache": dogpile_version, "redis-py": redis.__version__}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": model, "memory": mem,
            "loadavg": os.getloadavg()}


def parse(argv: list[str] | None, prog: str = "python -m bench") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    p.add_argument("--quick", action="store_true",
                   help="scale 0.05, 5 s per contender, 3 s sweep cells (about 2 minutes)")
    p.add_argument("--scale", type=float, default=None, help="1.0 = 1.02M rows (default); --quick: 0.05")
    p.add_argument("--database", choices=ENGINES, default="postgres",
                   help="where the schema is generated and the workload runs (default postgres)")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, default=None,
                       help="seconds per contender (default 20; --quick 5)")
    bound.add_argument("--ops", type=int, default=None, metavar="N",
                       help="instead of a duration: N operations per contender in all (split over threads and "
                            "processes); also per sweep cell")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf skew s over ids and periods")
    p.add_argument("--write-ratio", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--ttl", type=int, default=60, help="TTL of the cache-aside and dogpile contenders (s)")
    p.add_argument("--rewrites", type=float, default=0.2,
                   help="share of reads sent as a rewritten text of the same question (other aliases, column "
                        "and predicate order...), the same for every contender (default 0.2)")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated: " + ", ".join(CONTENDERS))
    p.add_argument("--sweep", action="store_true", help="also throughput vs threads (--sweep-threads, 1 process) "
                   "for the --sweep-contenders")
    p.add_argument("--sweep-threads", default="1,2,4,8,16")
    p.add_argument("--scale-sweep", default="", metavar="FACTORS",
                   help="also throughput vs data scale, e.g. 0.1,0.5,1.0: a schema generated per factor "
                        "(dropped once measured), --threads threads, for the --sweep-contenders")
    p.add_argument("--sweep-contenders", default="uncached,qc-mem,qc-redis,aside-ttl")
    p.add_argument("--sweep-duration", type=float, default=None, help="seconds per sweep cell (default 8; --quick 3)")
    p.add_argument("--keep", action="store_true",
                   help="keep the schema / database / sqlite file (and its Redis table versions)")
    p.add_argument("--schema", default=None,
                   help="reuse this schema (MariaDB: database; sqlite: file <name>.db in --sqlite-dir) if it "
                        "exists, e.g. one kept with --keep")
    p.add_argument("--pg-dsn", default=PG_DSN, help="--database postgres: a libpq DSN (env QUERYCACHE_BENCH_PG)")
    p.add_argument("--mysql-url", default=MYSQL_URL,
                   help="--database mariadb: mysql://user[:password]@host[:port]/database to connect to (env "
                        "QUERYCACHE_BENCH_MYSQL; default %(default)s); the run creates its own database wl_<hex> "
                        "there and drops it at the end")
    p.add_argument("--sqlite-dir", default=None,
                   help="--database sqlite: the directory of the run's file wl_<hex>.db (default: a new temporary "
                        "directory, removed at the end)")
    p.add_argument("--redis-url", default=REDIS_URL)
    p.add_argument("--out", default=str(RESULTS),
                   help="directory for workload.json / workload.md (default: bench/results in the current directory)")
    a = p.parse_args(argv)
    a.scale = a.scale if a.scale is not None else (0.05 if a.quick else 1.0)
    a.duration = a.duration if a.duration is not None else (5.0 if a.quick else 20.0)
    a.sweep_duration = a.sweep_duration if a.sweep_duration is not None else (3.0 if a.quick else 8.0)
    if a.ops is not None and a.ops < 1:
        p.error("--ops: at least 1")
    a.ops = a.ops or 0
    if a.ops:  # the count bounds every measurement
        a.duration = a.sweep_duration = 0.0
    if a.database == "mariadb":
        try:
            mysql_params(a.mysql_url)
        except ValueError as exc:
            p.error(str(exc))
    if a.schema and a.database == "sqlite" and not a.sqlite_dir:
        p.error("--schema with --database sqlite: give the --sqlite-dir it was kept in")
    a.contenders = [c.strip() for c in a.contenders.split(",") if c.strip()]
    a.sweep_contenders = [c.strip() for c in a.sweep_contenders.split(",") if c.strip()]
    unknown = [c for c in a.contenders + a.sweep_contenders if c not in CONTENDERS]
    if unknown:
        p.error(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
    try:
        a.sweep_threads = [int(x) for x in a.sweep_threads.split(",") if x.strip()]
        a.scale_sweep = [float(x) for x in a.scale_sweep.split(",") if x.strip()]
    except ValueError as exc:
        p.error(f"--sweep-threads / --scale-sweep: comma-separated numbers ({exc})")
    if a.schema and not a.schema.startswith("wl_"):
        p.error("--schema must start with wl_")
    driver = {"postgres": ("psycopg", "querycache[postgres]"), "mariadb": ("pymysql", "querycache[mysql]"),
              "sqlite": ("sqlite3", "Python's sqlite3")}[a.database]
    needed = {driver[0]: driver[1], "redis": "querycache[redis]"}
    if "dogpile" in a.contenders + a.sweep_contenders:
        needed["dogpile"] = "dogpile.cache"
    missing = [f"{module} ({install})" for module, install in needed.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        p.error(f"missing: {', '.join(missing)}; pip install them (or choose other --contenders)")
    a.skipped = []
    absent = [m for m in ("numpy", "faiss") if importlib.util.find_spec(m) is None]
    for name in [c for c in a.contenders + a.sweep_contenders if c in SEMANTIC and absent]:
        for chosen in (a.contenders, a.sweep_contenders):
            if name in chosen:
                chosen.remove(name)
        a.skipped.append(f"{name}: needs the semantic extra (missing {', '.join(absent)}): "
                         "pip install 'querycache[semantic]'")
    a.notes = []
    if a.database == "sqlite" and {"qc-redis-maintain", "qc-redis-maintain-nocatchup"} & {
            *a.contenders, *a.sweep_contenders}:
        a.notes.append("qc-redis-maintain on sqlite: maintained answers cover PostgreSQL and MySQL/MariaDB "
                       "only, so it runs as qc-redis-rows there")
    if a.database == "sqlite" and "qc-redis-rows" in a.contenders + a.sweep_contenders:
        # Session.row_level: row-level invalidation covers PostgreSQL and MySQL/MariaDB; elsewhere it is off
        a.notes.append("qc-redis-rows on sqlite: querycache's row-level invalidation covers PostgreSQL and "
                       "MySQL/MariaDB only, so it runs at table level there (the same as qc-redis)")
    return a


def _measure(run: Run, data: Dataset, name: str, threads: int, processes: int, duration_s: float,
             failures: list[str], label: str) -> dict[str, Any] | None:
    """One contender on one dataset; None when it failed (noted in ``failures``: the others still run)."""
    bound = f"{run.args.ops:,} operations" if run.args.ops else f"{duration_s} s"
    log(f"-- {label}{name}: {CONTENDERS[name]} ({threads} threads x {processes} processes, {bound}, "
        f"{data.rows_total:,} rows)")
    try:
        res = run.contender(data, name, threads, processes, duration_s, run.args.ops)
    except Exception as exc:  # noqa: BLE001 - the other contenders still run
        failures.append(f"{label}{name} ({threads} threads, {data.rows_total:,} rows): {exc!r}")
        log(f"   FAILED: {exc!r}")
        return None
    lat = res["read_latency_ms"]
    log(f"   {res['throughput_ops_s']} ops/s, read p50 {lat['p50']} ms p99 {lat['p99']} ms, "
        f"cache {res['cache_answered_ratio']:.1%}, stale {res['stale_reads']} "
        f"(db {res['stale_reads_from_db']}; age s {res['stale_age_s']['all']}), errors {res['errors']}, "
        f"statuses {res['statuses']}")
    return res


def _cell(res: dict[str, Any]) -> dict[str, Any]:
    """A sweep cell: the result without the per-process statistics and the per-second timeline."""
    return {k: v for k, v in res.items() if k not in ("querycache_stats", "timeline")}


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    """Run the benchmark with command-line arguments ``argv``; the exit status (1: a contender failed,
    or a querycache contender served a stale read)."""
    args = parse(argv, prog)
    for note in args.skipped:
        log(f"skipped {note}")
    for note in args.notes:
        log(f"note: {note}")
    t_start = time.monotonic()
    run = Run(args)
    results: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    scale_sweep: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        data = run.setup()
        meta: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "versions": versions(run),
            "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
            "database": {"engine": run.db.name, "label": run.db.label, "version": run.db.server_version(),
                         "dataset": run.db.where(data.schema)},
            "schema": data.schema, "rows": data.rows, "rows_total": data.rows_total,
            "config": {"scale": args.scale, "threads": args.threads, "processes": args.processes,
                       "database": args.database, "bound": "ops" if args.ops else "duration",
                       "ops": args.ops or None, "duration_s": args.duration if not args.ops else None,
                       "zipf_s": args.zipf, "write_ratio": args.write_ratio,
                       "seed": args.seed, "ttl_s": args.ttl, "contenders": args.contenders,
                       "read_weights": dict(READ_WEIGHTS), "write_weights": dict(WRITE_WEIGHTS),
                       "rewrite_share": args.rewrites, "sweep_contenders": args.sweep_contenders,
                       "sweep_threads": args.sweep_threads if args.sweep else [], "scale_sweep": args.scale_sweep,
                       "sweep_duration_s": args.sweep_duration if not args.ops else None,
                       "querycache_config": {name: qc_config(name, args.redis_url, f"{run.prefix}-<n>-{name}")
                                             for name in args.contenders if name in QC}},
            "skipped": args.skipped, "notes": args.notes,
        }
        for name in args.contenders:
            res = _measure(run, data, name, args.threads, args.processes, args.duration, failures, "")
            if res is not None:
                results.append(res)
        if args.sweep:
            for n in args.sweep_threads:
                for name in args.sweep_contenders:
                    res = _measure(run, data, name, n, 1, args.sweep_duration, failures, "threads sweep: ")
                    if res is not None:
                        sweep.append(_cell(res))
        for i, factor in enumerate(args.scale_sweep):
            same = factor == args.scale and not args.schema
            scaled = data if same else run.dataset(f"{run.prefix}_s{i}", factor)
            for name in args.sweep_contenders:
                res = _measure(run, scaled, name, args.threads, 1, args.sweep_duration, failures, "scale sweep: ")
                if res is not None:
                    scale_sweep.append(_cell(res) | {"scale": factor, "rows_total": scaled.rows_total})
            if not same:
                run.drop(scaled.schema)
        meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
        meta["failures"] = failures
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "workload.json").write_text(json.dumps(
            {**meta, "contenders": results, "sweep": sweep, "scale_sweep": scale_sweep}, indent=2, default=str))
        drawn, note = figures(meta, results, sweep, scale_sweep, out)
        md = markdown(meta, results, sweep, scale_sweep, drawn, note)
        (out / "workload.md").write_text(md)
        print()
        print(md)
        log(f"wrote {', '.join(str(out / n) for n in ['workload.json', 'workload.md', *drawn])} "
            f"({meta['elapsed_s']} s)")
    finally:
        run.cleanup()
    # The memory store and L1-only are per process: across processes they are not meant to be coherent.
    problems = [p for r in [*results, *sweep, *scale_sweep] for p in bound_violations(r)]
    for problem in problems:
        log(f"FAIL {problem}")
    return 1 if failures or problems else 0
