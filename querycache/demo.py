"""The demo: every tier at work on a read-mostly shop, each cached answer checked against the database.

Everything runs twice on two copies of one sqlite database, uncached and cached (taking turns by
blocks of statements, so that both runs see the same load on the machine):

1. A web app's pool: several connections take turns over one seeded sequence of reads (some of
   them rewritten twins of others: other aliases, column order, a comparison turned around) and
   a few writes. A read repeated on its connection is an L1 hit, one first read by another
   connection an L2 hit, a rewrite of a cached statement an L3 hit. Both runs execute the same
   steps in the same order, so every cached answer that differs from the uncached run's answer
   of the same step is a stale answer (there must be none).
2. A stampede: many callers ask one cold, expensive statement at the same moment; the database
   runs it once, the others get the leader's result (coalesced).
3. A write, then a read: one connection reads a row (an L1 hit), another one updates it, the next
   read returns the new value (checked against the database).

With Redis (``redis_url``), the same runs in two processes sharing the store: the steps of
phase 1 go to the processes in turns (still one order, so still comparable), the stampede's
callers are split between the processes, and phase 3's write comes from the other process.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import random
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from querycache.cache import QueryCache
from querycache.config import Config

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

CATEGORIES = 24
PRODUCTS = 2000
CUSTOMERS = 5000
ORDERS = 30000

Params = Callable[[random.Random], tuple[Any, ...]]
Step = tuple[str, tuple[Any, ...], bool]

_PRODUCT = "SELECT id, name, price FROM products WHERE id = ?"
_CATEGORY = ("SELECT p.category, count(*) AS n, sum(o.qty * p.price) AS revenue FROM orders o "
             "JOIN products p ON p.id = o.product_id WHERE p.category = ? GROUP BY p.category")
READS: list[tuple[int, str, Params]] = [
    # (weight, sql, parameter maker)
    (40, _PRODUCT, lambda r: (_zipf(r, PRODUCTS),)),
    (20, "SELECT name, email FROM customers WHERE id = ?", lambda r: (_zipf(r, CUSTOMERS),)),
    (15, _CATEGORY, lambda r: (r.randrange(CATEGORIES),)),
    (10, "SELECT c.name, count(o.id) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
         "WHERE c.id BETWEEN ? AND ? GROUP BY c.name ORDER BY n DESC LIMIT 10",
     lambda r: (lambda lo: (lo, lo + 50))(_zipf(r, CUSTOMERS - 50))),
    (10, "SELECT product_id, sum(qty) FROM orders WHERE customer_id = ? GROUP BY product_id ORDER BY 2 DESC",
     lambda r: (_zipf(r, CUSTOMERS),)),
    (5, "SELECT count(*), avg(price) FROM products WHERE category = ? AND price > ?",
     lambda r: (r.randrange(CATEGORIES), float(r.randrange(5, 50)))),
    # Rewritten twins of the first and third statements, as another part of an application (or
    # an ORM) would write them: only L3 can answer them from the originals' entries.
    (5, "SELECT p.price, p.name, p.id FROM products AS p WHERE ? = p.id", lambda r: (_zipf(r, PRODUCTS),)),
    (5, "SELECT sum(o.qty * p.price) AS revenue, count(*) AS n, p.category FROM products AS p "
        "JOIN orders AS o ON o.product_id = p.id WHERE ? = p.category GROUP BY p.category",
     lambda r: (r.randrange(CATEGORIES),)),
]
WRITES: list[tuple[str, Params]] = [
    ("INSERT INTO orders (customer_id, product_id, qty) VALUES (?, ?, ?)",
     lambda r: (_zipf(r, CUSTOMERS), _zipf(r, PRODUCTS), r.randrange(1, 5))),
    ("UPDATE products SET price = price + 0.5 WHERE id = ?", lambda r: (_zipf(r, PRODUCTS),)),
]
# Cold and expensive (about 0.3 s on sqlite here): what a stampede hurts most.
STAMPEDE = ("SELECT c.id % 10 AS bucket, count(*) AS n FROM customers c JOIN products p "
            "ON (c.id + p.id) % 97 = 0 GROUP BY bucket ORDER BY bucket")
_STAMPEDE_MARK = "% 97"
BLOCK = 250
"""With two processes, phase 1's steps go to them in turns of this many."""


def _zipf(rng: random.Random, n: int) -> int:
    """A skewed id in [1, n]: a few hot rows, a long tail (as real traffic has)."""
    return min(n, int(rng.paretovariate(1.2)) if rng.random() < 0.8 else rng.randrange(1, n + 1))


def build_database(path: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA journal_mode = WAL;
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category INTEGER, price REAL);
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, product_id INTEGER, qty INTEGER);
        CREATE INDEX orders_customer ON orders (customer_id);
        """
    )
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)",
                     [(i, f"product {i}", i % CATEGORIES, round(rng.uniform(1, 100), 2))
                      for i in range(1, PRODUCTS + 1)])
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"customer {i}", f"c{i}@example.com") for i in range(1, CUSTOMERS + 1)])
    conn.executemany("INSERT INTO orders (customer_id, product_id, qty) VALUES (?, ?, ?)",
                     [(rng.randrange(1, CUSTOMERS + 1), rng.randrange(1, PRODUCTS + 1), rng.randrange(1, 5))
                      for _ in range(ORDERS)])
    conn.commit()
    conn.close()


def make_workload(n: int, write_ratio: float, seed: int = 11) -> list[Step]:
    rng = random.Random(seed)
    weights = [w for w, _, _ in READS]
    steps: list[Step] = []
    for _ in range(n):
        if rng.random() < write_ratio:
            sql, make = rng.choice(WRITES)
            steps.append((sql, make(rng), True))
        else:
            _, sql, make_read = rng.choices(READS, weights)[0]
            steps.append((sql, make_read(rng), False))
    return steps


def semantic_available() -> str | None:
    """None if L3 can run here, else why not (the n-gram embedder needs numpy and FAISS only)."""
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # ValueError: blocked (sys.modules[name] is None)
            return True

    missing = [m for m in ("numpy", "faiss") if absent(m)]
    if missing:
        return (f"not installed ({', '.join(missing)} missing): pip install 'querycache[l3]' (the default "
                "n-gram embedder, no torch) or 'querycache[semantic]'")
    return None


def demo_config(redis_url: str | None = None, namespace: str | None = None, l3: bool = True) -> Config:
    """The embedded default (or the same on Redis) with L3 on for every read, default embedder."""
    data: dict[str, Any] = {"l3": {"enabled": l3, "all_reads": True}}
    if redis_url:
        data["l2"] = {"backend": "redis", "url": redis_url, "namespace": namespace or "querycache-demo",
                      "timeout_ms": 1000}
    return Config.from_dict(data)


# -- one process's side: a pool of connections, cached or not --------------------------------------

@dataclass
class Ran:
    """What a run of steps answered: rows, cache statuses (None uncached), wall times, seconds
    spent in the statements (and after each step, how many so far: the picture's time axis)."""

    answers: list[Any] = field(default_factory=list)
    statuses: list[str | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    seconds: float = 0.0
    executions: int = 0
    elapsed: list[float] = field(default_factory=list)

    def extend(self, other: Ran) -> None:
        self.answers += other.answers
        self.statuses += other.statuses
        self.times += other.times
        self.elapsed += [self.seconds + e for e in other.elapsed]
        self.seconds += other.seconds
        self.executions += other.executions


class Pool:
    """``size`` connections to ``path`` (wrapped by ``cache`` if given), used in turns."""

    def __init__(self, path: Path, size: int, cache: QueryCache | None) -> None:
        self.path = path
        self.cache = cache
        self._stampede_runs = 0
        self._count_lock = threading.Lock()
        self.connections = [self.connect() for _ in range(size)]
        self._turn = 0

    def connect(self) -> Any:
        raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        raw.set_trace_callback(self._trace)  # counts what reaches the database, not what the cache says
        return self.cache.wrap(raw) if self.cache is not None else raw

    def _trace(self, statement: str) -> None:
        if _STAMPEDE_MARK in statement:
            with self._count_lock:
                self._stampede_runs += 1

    def stampede_executions(self) -> int:
        """How many times the stampede statement reached the database so far."""
        with self._count_lock:
            return self._stampede_runs

    def run(self, steps: list[Step], progress: Callable[[int], None] | None = None) -> Ran:
        ran = Ran()
        for i, (sql, params, _) in enumerate(steps):
            cur = self.connections[self._turn % len(self.connections)].cursor()
            self._turn += 1
            started = time.perf_counter()
            cur.execute(sql, params)
            ran.answers.append(cur.fetchall())
            ran.seconds += time.perf_counter() - started
            ran.elapsed.append(ran.seconds)
            ran.statuses.append(getattr(cur, "cache_status", None))
            ran.times.append(time.time())
            cur.close()
            if progress is not None and i % 250 == 249:
                progress(250)
        if progress is not None:
            progress(len(steps) % 250)
        return ran

    def stampede(self, callers: int, at: float) -> Ran:
        """``callers`` threads, each on its own connection, run STAMPEDE at wall time ``at``."""
        connections = [self.connect() for _ in range(callers)]
        results: list[Any] = [None] * callers
        statuses: list[str | None] = [None] * callers
        times = [0.0] * callers
        before = self.stampede_executions()

        def call(i: int) -> None:
            time.sleep(max(0.0, at - time.time()))
            cur = connections[i].cursor()
            cur.execute(STAMPEDE)
            results[i] = cur.fetchall()
            statuses[i] = getattr(cur, "cache_status", None)
            times[i] = time.time()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for conn in connections:
            conn.close()
        return Ran(results, statuses, times, max(times) - at, self.stampede_executions() - before,
                   [t - at for t in times])

    def execute(self, index: int, sql: str, params: tuple[Any, ...]) -> tuple[list[Any], str | None]:
        cur = self.connections[index].cursor()
        cur.execute(sql, params)
        rows = cur.fetchall()
        status = getattr(cur, "cache_status", None)
        cur.close()
        return rows, status

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def _other_process(pipe: Connection, path: str, size: int, redis_url: str, namespace: str, l3: bool) -> None:
    """The second process (Redis mode): runs what the first one sends, answers with the results."""
    cache = QueryCache(demo_config(redis_url, namespace, l3))
    pool = Pool(Path(path), size, cache)
    try:
        while True:
            command, *args = pipe.recv()
            if command == "run":
                pipe.send(pool.run(args[0]))
            elif command == "stampede":
                pipe.send(pool.stampede(args[0], args[1]))
            elif command == "execute":
                pipe.send(pool.execute(*args))
            elif command == "stats":
                pipe.send(cache.stats().to_dict())
            else:
                break
    finally:
        pool.close()
        cache.close()
        pipe.close()


class _Remote:
    """The second process, driven through a pipe."""

    def __init__(self, path: Path, size: int, redis_url: str, namespace: str, l3: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_other_process, args=(child, str(path), size, redis_url,
                                                                     namespace, l3), daemon=True)
        self.process.start()
        child.close()

    def call(self, *message: Any) -> Any:
        self.pipe.send(message)
        return self.pipe.recv()

    def close(self) -> None:
        try:
            self.pipe.send(("close",))
        except OSError:
            pass
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()


# -- the whole demo ------------------------------------------------------------------------------------

@dataclass
class DemoResult:
    statements: int
    write_ratio: float
    connections: int
    processes: int
    backend: str
    l3_unavailable: str | None
    uncached: Ran
    cached: Ran
    stampede_callers: int
    stampede_uncached: Ran
    stampede_cached: Ran
    write_read: dict[str, Any]
    stats: dict[str, Any]
    stale_reads: int = 0

    @property
    def speedup(self) -> float:
        return self.uncached.seconds / self.cached.seconds if self.cached.seconds else 0.0

    def answers_by_tier(self) -> dict[str, int]:
        """Cached answers of every phase by where they came from (both processes)."""
        out = {"l1": 0, "l2": 0, "l3": 0, "coalesced": 0, "database": 0, "bypass": 0}
        for status in self.cached.statuses + self.stampede_cached.statuses + self.write_read["statuses"]:
            out[_tier(status)] += 1
        return out


def _tier(status: str | None) -> str:
    if status and status.startswith("hit:"):
        return status[4:].lower()
    if status == "coalesced":
        return "coalesced"
    if status and status.startswith("bypass:"):
        return "bypass"
    return "database"


def _sum_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("hits", "fills", "bypasses", "not_filled"):
        merged = dict(a.get(key) or {})
        for name, value in (b.get(key) or {}).items():
            merged[name] = merged.get(name, 0) + value
        out[key] = merged
    for key in ("misses", "coalesced", "fail_open"):
        out[key] = a.get(key, 0) + b.get(key, 0)
    semantic = dict(a.get("semantic") or {})
    for name, value in (b.get("semantic") or {}).items():
        if isinstance(value, int):
            semantic[name] = semantic.get(name, 0) + value
    out["semantic"] = {k: v for k, v in semantic.items() if isinstance(v, int)}
    return out


def run_demo(statements: int = 10000, write_ratio: float = 0.002, *, connections: int = 4,
             stampede_callers: int = 16, redis_url: str | None = None,
             progress: Callable[[int], None] | None = None) -> DemoResult:
    """Run the three phases uncached, then cached; compare every cached answer with the truth."""
    l3_unavailable = semantic_available()
    namespace = f"querycache-demo-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="querycache-demo-"))
    remote: _Remote | None = None
    try:
        plain_path, cached_path = workdir / "plain.db", workdir / "cached.db"
        build_database(plain_path)
        shutil.copy(plain_path, cached_path)
        steps = make_workload(statements, write_ratio)

        plain = Pool(plain_path, connections, None)
        cache = QueryCache(demo_config(redis_url, namespace, l3_unavailable is None))
        pool = Pool(cached_path, connections, cache)
        if redis_url:
            remote = _Remote(cached_path, connections, redis_url, namespace, l3_unavailable is None)
            remote.call("stats")  # started and connected before the clock runs
        # Uncached and cached take turns by blocks, so that both see the same load on the machine.
        uncached, cached = Ran(), Ran()
        for turn, begin in enumerate(range(0, len(steps), BLOCK)):
            block = steps[begin:begin + BLOCK]
            uncached.extend(plain.run(block, progress))
            if remote is not None and turn % 2:
                cached.extend(remote.call("run", block))
                if progress is not None:
                    progress(len(block))
            else:
                cached.extend(pool.run(block, progress))
        stampede_uncached = plain.stampede(stampede_callers, time.time() + 0.1)
        plain.close()

        at = time.time() + (0.5 if remote is not None else 0.1)
        if remote is not None:
            remote.pipe.send(("stampede", stampede_callers - stampede_callers // 2, at))
            stampede_cached = pool.stampede(stampede_callers // 2, at)
            stampede_cached.extend(remote.pipe.recv())
            stampede_cached.seconds = max(stampede_cached.times) - at  # both halves started at ``at``
            stampede_cached.elapsed = [t - at for t in stampede_cached.times]
        else:
            stampede_cached = pool.stampede(stampede_callers, at)

        write_read = _write_then_read(pool, remote, cached_path)
        stats = cache.stats().to_dict()
        if remote is not None:
            stats = _sum_stats(stats, remote.call("stats"))
        pool.close()
        if redis_url:
            cache.flush()
        cache.close()

        result = DemoResult(len(steps), write_ratio, connections, 2 if remote else 1,
                            "redis" if redis_url else "memory", l3_unavailable, uncached, cached,
                            stampede_callers, stampede_uncached, stampede_cached, write_read, stats)
        stale = sum(1 for got, want in zip(cached.answers, uncached.answers, strict=True) if got != want)
        stale += sum(1 for got in stampede_cached.answers if got != stampede_uncached.answers[0])
        result.stale_reads = stale + (0 if write_read["fresh"] else 1)
        return result
    finally:
        if remote is not None:
            remote.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _write_then_read(pool: Pool, remote: _Remote | None, path: Path) -> dict[str, Any]:
    """Connection 0 reads product 1 twice (the second time from L1); another connection (with Redis:
    in the other process) raises its price; connection 0 reads it again: it must see the new price."""
    read, write = _PRODUCT, "UPDATE products SET price = price + 1 WHERE id = ?"
    statuses: list[str | None] = []
    for _ in range(2):
        rows, status = pool.execute(0, read, (1,))
        statuses.append(status)
    before = rows[0][2]
    if remote is not None:
        remote.call("execute", 0, write, (1,))
    else:
        pool.execute(1 % len(pool.connections), write, (1,))
    rows, status = pool.execute(0, read, (1,))
    statuses.append(status)
    truth = sqlite3.connect(path)
    try:
        expected = truth.execute(read, (1,)).fetchall()
    finally:
        truth.close()
    return {"before": before, "after": rows[0][2], "cached_status_before": statuses[1], "status_after": status,
            "fresh": rows == expected, "writer": "the other process" if remote is not None else "connection 2",
            "statuses": statuses}


# -- presenting it -------------------------------------------------------------------------------------

def summary(result: DemoResult) -> dict[str, Any]:
    tiers = result.answers_by_tier()
    counters = result.stats
    hits = counters["hits"]
    total = result.statements
    return {
        "statements": total,
        "write_ratio": result.write_ratio,
        "backend": result.backend,
        "processes": result.processes,
        "connections": result.connections,
        "l3": "on (ngram embedder, every read)" if result.l3_unavailable is None else f"off: {result.l3_unavailable}",
        "uncached_seconds": round(result.uncached.seconds, 4),
        "cached_seconds": round(result.cached.seconds, 4),
        "speedup": round(result.speedup, 2),
        "hit_ratio": {"l1": round(hits["l1"] / total, 4), "l2": round(hits["l2"] / total, 4),
                      "l3": round(hits["l3"] / total, 4),
                      "any": round((hits["l1"] + hits["l2"] + hits["l3"]) / total, 4)},
        "answers": tiers,
        "misses": counters["misses"],
        "bypasses": counters["bypasses"],
        "stampede": {"callers": result.stampede_callers,
                     "executions": result.stampede_cached.executions,
                     "uncached_executions": result.stampede_uncached.executions,
                     "coalesced": sum(1 for s in result.stampede_cached.statuses if s == "coalesced"),
                     "seconds": round(result.stampede_cached.seconds, 3),
                     "uncached_seconds": round(result.stampede_uncached.seconds, 3)},
        "write_then_read": {k: v for k, v in result.write_read.items() if k != "statuses"},
        "shed": {k: v for k, v in (counters.get("semantic") or {}).items() if k.startswith("shed:")},
        "stale_reads": result.stale_reads,
    }


def report_lines(result: DemoResult) -> list[str]:
    data = summary(result)
    tiers, stampede, wr = data["answers"], data["stampede"], data["write_then_read"]
    where = ("embedded default: sqlite, in-memory L2, 1 process" if result.backend == "memory" else
             "sqlite, Redis L2 shared by 2 processes")
    pool = f"a pool of {result.connections} connections" + (" in each process" if result.processes > 1 else "")
    lines = [
        f"querycache demo ({where}; L3 {data['l3']})",
        "",
        f"1. web app       {result.statements} statements ({result.write_ratio:.1%} writes, about 9 % rewritten "
        f"twins) on {pool}",
        f"   speed-up      {result.speedup:.2f}x: uncached {result.uncached.seconds:.2f} s, "
        f"cached {result.cached.seconds:.2f} s",
        f"   hit ratio     L1 {data['hit_ratio']['l1']:.1%}, L2 {data['hit_ratio']['l2']:.1%}, "
        f"L3 {data['hit_ratio']['l3']:.1%}, all tiers {data['hit_ratio']['any']:.1%}",
        f"2. stampede      {stampede['callers']} callers at once on a cold statement"
        + (" (split between the 2 processes)" if result.processes > 1 else "")
        + f": the database ran it {stampede['executions']} time(s) (uncached: {stampede['uncached_executions']}), "
        f"{stampede['coalesced']} coalesced; {stampede['seconds']:.2f} s vs {stampede['uncached_seconds']:.2f} s",
        f"3. write, read   product 1 read from {wr['cached_status_before']}, {wr['writer']} raised its price "
        f"{wr['before']} -> {wr['after'] if wr['fresh'] else '?'}; the next read: {wr['status_after']}, "
        + ("fresh" if wr["fresh"] else "STALE"),
        "",
        "answers by tier  (all phases) " + ", ".join(f"{name} {tiers[key]}" for key, name in (
            ("l1", "L1"), ("l2", "L2"), ("l3", "L3"), ("coalesced", "coalesced"), ("database", "database"),
            ("bypass", "writes"))),
        f"misses {data['misses']}; bypasses {data['bypasses']}"
        + (f"; L3 lookups shed {data['shed']}" if data["shed"] else ""),
        f"stale answers    {result.stale_reads} (every cached answer compared with the database's)",
    ]
    if result.l3_unavailable is not None:
        lines.append(f"L3 was off: the semantic extra is {result.l3_unavailable}")
    return lines


def write_picture(result: DemoResult, path: Path) -> str | None:
    """Answers by tier over time (the cached run) as a PNG; None, or why not."""
    try:
        import matplotlib
    except ImportError:
        return "skipped: matplotlib is not installed (pip install matplotlib)"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Time: seconds spent in the cached run's statements (the uncached blocks between them left out),
    # then the stampede.
    stampede_at = result.cached.seconds + 0.02
    events = list(zip(result.cached.elapsed + [stampede_at + e for e in result.stampede_cached.elapsed],
                      result.cached.statuses + result.stampede_cached.statuses, strict=True))
    end = max(t for t, _ in events)
    buckets = 60
    width = max(end / buckets, 1e-3)
    series = {name: [0] * buckets for name in ("l1", "l2", "l3", "coalesced", "database", "bypass")}
    for t, status in events:
        series[_tier(status)][min(buckets - 1, int(t / width))] += 1
    labels = {"l1": "L1", "l2": "L2", "l3": "L3", "coalesced": "coalesced", "database": "database (miss)",
              "bypass": "writes"}
    colours = {"l1": "#2b8a3e", "l2": "#1971c2", "l3": "#9c36b5", "coalesced": "#e8590c",
               "database": "#868e96", "bypass": "#c92a2a"}
    xs = [(i + 0.5) * width for i in range(buckets)]
    totals = [sum(counts[i] for counts in series.values()) or 1 for i in range(buckets)]
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    bottom = [0.0] * buckets
    for name, counts in series.items():
        shares = [100 * c / n for c, n in zip(counts, totals, strict=True)]
        ax.bar(xs, shares, width=width * 0.95, bottom=bottom, label=f"{labels[name]}: {sum(counts)}",
               color=colours[name])
        bottom = [b + c for b, c in zip(bottom, shares, strict=True)]
    first_answer = stampede_at + min(result.stampede_cached.elapsed)
    ax.annotate(f"stampede: {len(result.stampede_cached.times)} callers,\nthe database ran it "
                f"{result.stampede_cached.executions} time(s)", (first_answer, 50), xytext=(-12, 0),
                textcoords="offset points", ha="right", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "none", "alpha": 0.9},
                arrowprops={"arrowstyle": "->", "linewidth": 0.8})
    where = "embedded (memory L2)" if result.backend == "memory" else "Redis L2, 2 processes"
    ax.set_title(f"querycache demo, {where}: where answers came from ({result.speedup:.1f}x faster, "
                 f"{result.stale_reads} stale)")
    ax.set_xlabel("seconds of cached work (statements only)")
    ax.set_ylabel(f"% of answers per {width * 1000:.0f} ms")
    ax.set_ylim(0, 100)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="answers")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
