"""One contender's worker process: its clients (cached or not), the operation stream, the checker."""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
import time
import traceback
from array import array
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from querycache.benchmark.engines import Engine, engine
from querycache.benchmark.schema import (
    MONTHS,
    REGIONS,
    REWRITES,
    STATUSES,
    Layout,
    Scale,
    Sql,
    month_start,
    product_price_cents,
)
from querycache.codec import Result, decode, encode

CONTENDERS: dict[str, str] = {
    "uncached": "uncached driver connection",
    "qc-l1": "querycache L1 only",
    "qc-mem": "querycache L1 + L2 memory (default)",
    "qc-redis": "querycache L1 + L2 Redis",
    "qc-redis-nocoalesce": "querycache L1 + L2 Redis, request coalescing off",
    "qc-redis-l3": "querycache L1 + L2 Redis + L3 (n-gram embedder, every read)",
    "qc-redis-rows": "querycache L1 + L2 Redis, row-level invalidation",
    "qc-redis-maintain": "querycache L1 + L2 Redis, row-level invalidation + maintained answers",
    "qc-redis-maintain-nocatchup": "as qc-redis-maintain, without catching up fills that writes land during",
    "qc-redis-stale2": "querycache L1 + L2 Redis, row-level invalidation; revenue and top carry max_stale=2, "
                       "refreshed in the background",
    "qc-redis-stale30": "querycache L1 + L2 Redis, row-level invalidation; revenue and top carry max_stale=30, "
                        "refreshed in the background",
    "aside-ttl": "hand-written Redis cache-aside, TTL, no invalidation",
    "dogpile": "dogpile.cache Redis, distributed_lock, TTL",
}
QC = {"qc-l1", "qc-mem", "qc-redis", "qc-redis-nocoalesce", "qc-redis-l3", "qc-redis-rows", "qc-redis-maintain",
      "qc-redis-maintain-nocatchup", "qc-redis-stale2", "qc-redis-stale30"}
# Contenders whose reads of some kinds carry a staleness bound (seconds): those may be stale, by at most that.
BOUNDED: dict[str, dict[str, int]] = {"qc-redis-stale2": {"revenue": 2, "top": 2},
                                      "qc-redis-stale30": {"revenue": 30, "top": 30}}
SEMANTIC = {"qc-redis-l3"}  # needs the semantic extra (numpy, faiss)
PER_PROCESS = {"qc-l1", "qc-mem"}  # their stores live in each process: not coherent across processes
READ_KINDS = ("customer", "order", "range", "revenue", "top")
WRITE_KINDS = ("w_update", "w_item", "w_customer")
# Relative weights of the reads, and of the writes, which take --write-ratio of all operations: an order's
# status and amount, a new order item (and its order's amount), a customer's name and region.
READ_WEIGHTS = {"customer": 25, "order": 30, "range": 25, "revenue": 10, "top": 10}
WRITE_WEIGHTS = {"w_update": 2, "w_item": 2, "w_customer": 1}
RANGE_MONTHS = 12
REVENUE_MONTHS = 3
TOP_MONTHS = 1
ERROR_SAMPLES = 5
STALE_SAMPLES = 10
COMMIT_LOG = 1 << 16  # commits the checker remembers (when, what): the age of a stale read is looked up there


@dataclass(frozen=True)
class Spec:
    contender: str
    process: int
    threads: int
    duration_s: float
    seed: int
    schema: str
    scale: Scale
    zipf_s: float
    write_ratio: float
    target: str  # the engine's connection string (engines.engine)
    redis_url: str
    namespace: str  # querycache namespace / cache-aside and dogpile key prefix: unique per contender run
    ttl_s: int
    rewrite_share: float = 0.0
    qc_overrides: dict[str, Any] = field(default_factory=dict)
    database: str = "postgres"  # engines.ENGINES
    ops: int = 0  # operations of this process, split over its threads (a count bound); 0: duration_s bounds

    def thread_ops(self, index: int) -> int:
        """Thread ``index``'s share of ``ops``."""
        return self.ops // self.threads + (index < self.ops % self.threads)


class Zipf:
    """Ranks 1..n with P(k) ~ 1 / k**s; rank -> item through a seeded permutation (hot items spread out)."""

    def __init__(self, items: list[int], s: float, seed: int) -> None:
        total = 0.0
        self.cdf: list[float] = []
        for k in range(1, len(items) + 1):
            total += 1.0 / k**s
            self.cdf.append(total)
        self.total = total
        self.items = list(items)
        random.Random(seed).shuffle(self.items)

    def draw(self, rng: random.Random) -> int:
        i = bisect.bisect_left(self.cdf, rng.random() * self.total)
        return self.items[min(i, len(self.items) - 1)]


class Ops:
    """The operation stream: a pure function of the thread's seed, identical for every contender."""

    def __init__(self, spec: Spec) -> None:
        sc, s, seed = spec.scale, spec.zipf_s, spec.seed
        self.customers = Zipf(list(range(1, sc.customers + 1)), s, seed + 1)
        self.orders = Zipf(list(range(1, sc.orders + 1)), s, seed + 2)
        self.range_start = Zipf(list(range(MONTHS - RANGE_MONTHS + 1)), s, seed + 3)
        self.revenue_start = Zipf(list(range(MONTHS - REVENUE_MONTHS + 1)), s, seed + 4)
        self.top_start = Zipf(list(range(MONTHS - TOP_MONTHS + 1)), s, seed + 5)
        self.products = sc.products
        self.rewrite_share = spec.rewrite_share
        self.kinds = [*READ_KINDS, *WRITE_KINDS]
        read_total = sum(READ_WEIGHTS.values())
        write_total = sum(WRITE_WEIGHTS.values())
        weights = [READ_WEIGHTS[k] / read_total * (1 - spec.write_ratio) for k in READ_KINDS]
        weights += [WRITE_WEIGHTS[k] / write_total * spec.write_ratio for k in WRITE_KINDS]
        self.cum = list(_accumulate(weights))

    def draw(self, rng: random.Random) -> tuple[str, tuple[Any, ...], int]:
        """(kind, parameters, which text of the read: 0 as written, 1.. a rewrite)."""
        kind = self.kinds[min(bisect.bisect_left(self.cum, rng.random() * self.cum[-1]), len(self.kinds) - 1)]
        rewrite = rng.random() < self.rewrite_share
        variant = 1 + rng.randrange(REWRITES) if rewrite and kind in READ_WEIGHTS else 0
        return (kind, self._params(kind, rng), variant)

    def _params(self, kind: str, rng: random.Random) -> tuple[Any, ...]:
        if kind == "customer":
            return (self.customers.draw(rng),)
        if kind == "order":
            return (self.orders.draw(rng),)
        if kind == "range":
            m = self.range_start.draw(rng)
            return (self.customers.draw(rng), month_start(m), month_start(m + RANGE_MONTHS))
        if kind == "revenue":
            m = self.revenue_start.draw(rng)
            return (month_start(m), month_start(m + REVENUE_MONTHS))
        if kind == "top":
            m = self.top_start.draw(rng)
            return (month_start(m), month_start(m + TOP_MONTHS))
        if kind == "w_customer":
            cid = self.customers.draw(rng)
            return (f"customer {cid} {rng.randrange(1_000_000)}", rng.randrange(REGIONS), cid)
        oid = self.orders.draw(rng)
        if kind == "w_update":
            return (rng.choice(STATUSES), Decimal(rng.randint(1, 999)) / 100, oid)
        product = 1 + rng.randrange(self.products)
        qty = rng.randint(1, 5)
        return (oid, product, qty, Decimal(product_price_cents(product)) / 100)


def _accumulate(xs: list[float]) -> list[float]:
    out, t = [], 0.0
    for x in xs:
        t += x
        out.append(t)
    return out


# -- clients --------------------------------------------------------------------------------------


class Client:
    """``read`` returns the rows and where they came from; writes go through ``conn``. Parameters are
    passed as the workload draws them and adapted to the driver here."""

    def __init__(self, spec: Spec, shared: Any, db: Engine) -> None:
        self.spec = spec
        self.shared = shared
        self.db = db
        self.adapt = db.adapt
        self.raw = db.connect(spec.schema)
        self.conn = self._wrap(self.raw)

    def _wrap(self, raw: Any) -> Any:
        return raw

    def reconnect(self) -> None:
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self.raw = self.db.connect(self.spec.schema)
        self.conn = self._wrap(self.raw)

    def run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with closing(self.conn.cursor()) as cur:  # sqlite3's cursor is no context manager
            cur.execute(sql, self.adapt(params))
            return [tuple(r) for r in cur.fetchall()]

    def bump(self, update: str, params: tuple[Any, ...], version_sql: str, key: int) -> tuple[int, int]:
        """Run an UPDATE that raises a version, in autocommit like on every database; (a version
        committed once it returned, statements sent)."""
        if self.db.update_returns:
            return int(self.run(update, params)[0][0]), 1
        with closing(self.conn.cursor()) as cur:
            cur.execute(update, self.adapt(params))
        # No UPDATE ... RETURNING (MariaDB): read the version back on the driver's own connection, past
        # any cache. It is ours or a later writer's, committed either way, which is all the checker
        # records. (Not a transaction around both: querycache's row-level invalidation keeps an UPDATE
        # in a transaction at table level, and qc-redis-rows would not measure what it does on PostgreSQL.)
        with closing(self.raw.cursor()) as cur:
            cur.execute(version_sql, (key,))
            return int(cur.fetchall()[0][0]), 2

    def read(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], str]:
        return self.run(sql, params), "db"

    def close(self) -> None:
        self.raw.close()


class QcClient(Client):
    def _wrap(self, raw: Any) -> Any:
        if self.spec.contender in BOUNDED:  # their bounded answers are recomputed in the background
            return self.shared.wrap(raw, refresh_connect=lambda: self.db.connect(self.spec.schema))
        return self.shared.wrap(raw)

    def read(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], str]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, self.adapt(params))
            rows = [tuple(r) for r in cur.fetchall()]
            return rows, str(cur.cache_status)
        finally:
            cur.close()


def _key(spec: Spec, sql: str, params: tuple[Any, ...]) -> str:
    return f"{spec.namespace}:" + hashlib.sha1((sql + "|" + repr(params)).encode()).hexdigest()


class AsideClient(Client):
    """What most teams write: key = hash(sql, params); GET; on a miss run and SETEX. Writes invalidate nothing."""

    def read(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], str]:
        key = _key(self.spec, sql, params)
        blob = self.shared.get(key)
        if blob is not None:
            rows: list[tuple[Any, ...]] = decode(blob).rows
            return rows, "hit"
        rows = self.run(sql, params)
        # The library's codec, not pickle: nothing read back from Redis may run code.
        self.shared.setex(key, self.spec.ttl_s, encode(Result(None, rows, len(rows))))
        return rows, "miss"


class DogpileClient(Client):
    def read(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], str]:
        created: list[bool] = []

        def creator() -> list[tuple[Any, ...]]:
            created.append(True)
            return self.run(sql, params)

        rows: list[tuple[Any, ...]] = self.shared.get_or_create(_key(self.spec, sql, params), creator)
        return rows, "miss" if created else "hit"


def is_cached(status: str) -> bool:
    return status in ("hit", "coalesced") or status.startswith("hit:")


def qc_config(contender: str, redis_url: str, namespace: str) -> dict[str, Any]:
    """The querycache configuration of a querycache contender (``QueryCache.from_dict``)."""
    redis: dict[str, Any] = {"l2": {"backend": "redis", "url": redis_url, "namespace": namespace}}
    # Table-level invalidation for all but qc-redis-rows, as when these contenders were first measured
    # (row-level invalidation became the default later): the two stay side by side.
    table: dict[str, Any] = {"invalidation": {"row_level": False}}
    configs: dict[str, dict[str, Any]] = {
        "qc-l1": table | {"l2": {"enabled": False}},
        "qc-mem": table,
        "qc-redis": table | redis,
        "qc-redis-nocoalesce": table | redis | {"coalesce": {"enabled": False}},
        "qc-redis-l3": table | redis | {"l3": {"enabled": True, "model": "ngram", "all_reads": True}},
        "qc-redis-rows": redis | {"invalidation": {"row_level": True}},
        "qc-redis-maintain": redis | {"invalidation": {"row_level": True, "maintain": {"enabled": True}}},
        "qc-redis-maintain-nocatchup": redis | {"invalidation": {"row_level": True, "maintain": {
            "enabled": True, "catch_up": False}}},
        "qc-redis-stale2": redis | {"invalidation": {"row_level": True}},
        "qc-redis-stale30": redis | {"invalidation": {"row_level": True}},
    }
    return configs[contender]


def make_shared(spec: Spec) -> Any:
    """The process-wide cache object of a contender (a QueryCache, a Redis client, a dogpile region)."""
    if spec.contender in QC:
        import querycache

        cfg = qc_config(spec.contender, spec.redis_url, spec.namespace)
        for k, v in spec.qc_overrides.items():
            cfg.setdefault(k, {}).update(v)
        cache = querycache.QueryCache.from_dict(cfg)
        if cache.backend.name == "redis":  # a warm process holds its L1 coherence lease
            deadline = time.monotonic() + 10
            while cache.backend.l1_epoch.startswith("\x00no-lease"):
                if time.monotonic() > deadline:
                    raise RuntimeError("no L1 coherence lease from Redis within 10 s")
                time.sleep(0.02)
        if cache.l3 is not None and not cache.l3.worker.wait_ready(60):
            raise RuntimeError(f"L3 embedder not ready within 60 s: {cache.l3.worker.load_error}")
        return cache
    if spec.contender == "aside-ttl":
        import redis

        return redis.Redis.from_url(spec.redis_url)
    if spec.contender == "dogpile":
        from dogpile.cache import make_region

        return make_region().configure(
            "dogpile.cache.redis", expiration_time=spec.ttl_s,
            arguments={"url": spec.redis_url, "distributed_lock": True, "thread_local_lock": False,
                       "lock_timeout": 30, "redis_expiration_time": spec.ttl_s * 2})
    return None


CLIENTS: dict[str, type[Client]] = {"uncached": Client, "aside-ttl": AsideClient, "dogpile": DogpileClient}
CLIENTS |= {name: QcClient for name in QC}


# -- the checker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedState:
    """The checker's memory, shared by every worker process of a schema (``multiprocessing`` raw
    arrays, handed to the processes when they start): per order and per customer id the highest
    committed version, per month the sum of its orders' versions, and the lock that keeps them
    consistent."""

    orders: Any
    customers: Any
    month_sums: Any
    lock: Any
    log: CommitLog


@dataclass(frozen=True)
class CommitLog:
    """The last ``COMMIT_LOG`` commits, a ring in shared memory: when each was recorded (monotonic, the
    same clock in every process), whose (0 an order, 1 a customer; its id), its new version, and for an
    order its month and how much it raised the month's sum. ``head[0]``: how many were ever recorded."""

    when: Any
    kind: Any
    ident: Any
    version: Any
    month: Any
    delta: Any
    head: Any

    @classmethod
    def create(cls, raw_array: Any) -> CommitLog:
        n = COMMIT_LOG
        return cls(raw_array("d", n), raw_array("b", n), raw_array("q", n), raw_array("q", n), raw_array("i", n),
                   raw_array("q", n), raw_array("q", 1))


class Committed:
    """Per order and customer id, the highest version whose write has committed (recorded after commit
    returned), shared by every process of the run; per month, the sum of the orders' versions; and the
    log of recent commits, from which the age of a stale read is told."""

    def __init__(self, shared: SharedState, layout: Layout) -> None:
        self.versions = shared.orders
        self.customer_versions = shared.customers
        self.month_sums = shared.month_sums
        self.lock = shared.lock
        self.log = shared.log
        self.layout = layout

    def _append(self, kind: int, ident: int, version: int, month: int, delta: int) -> None:
        log = self.log
        i = log.head[0] % COMMIT_LOG
        log.when[i], log.kind[i], log.ident[i] = time.monotonic(), kind, ident
        log.version[i], log.month[i], log.delta[i] = version, month, delta
        log.head[0] += 1

    def record(self, oid: int, version: int) -> None:
        with self.lock:
            old = self.versions[oid]
            if version > old:
                self.versions[oid] = version
                month = self.layout.month[oid]
                self.month_sums[month] += version - old
                self._append(0, oid, version, month, version - old)

    def record_customer(self, cid: int, version: int) -> None:
        with self.lock:
            if version > self.customer_versions[cid]:
                self.customer_versions[cid] = version
                self._append(1, cid, version, -1, 0)

    def expected(self, kind: str, params: tuple[Any, ...]) -> tuple[Any, int]:
        """What a read must at least see, taken before it starts (None: nothing to check), and the
        commit log's head then (for ``age``)."""
        with self.lock:
            return self._expected(kind, params), self.log.head[0]

    def _expected(self, kind: str, params: tuple[Any, ...]) -> Any:
        if kind == "customer":
            return self.customer_versions[params[0]]
        if kind == "order":
            return self.versions[params[0]]
        if kind == "range":
            lo = (params[1].year - 2024) * 12 + params[1].month - 1
            return {oid: self.versions[oid] for oid in self.layout.by_customer[params[0]]
                    if lo <= self.layout.month[oid] < lo + RANGE_MONTHS}
        if kind in ("revenue", "top"):
            lo = (params[0].year - 2024) * 12 + params[0].month - 1
            n = REVENUE_MONTHS if kind == "revenue" else TOP_MONTHS
            return sum(self.month_sums[m] for m in range(lo, lo + n))
        return None

    def age(self, kind: str, params: tuple[Any, ...], expected: Any, head: int, seen: Any, now: float
            ) -> tuple[float, bool]:
        """How long before ``now`` the first commit a stale read missed was recorded (seconds), and
        whether that is exact (False: the commit fell out of the log; the age is at least that)."""
        if kind == "range":
            ages = [self._version_age(0, oid, seen_v, head, now) for oid, (seen_v, _) in seen.items()]
            return max(a for a, _ in ages), all(exact for _, exact in ages)
        if kind in ("customer", "order"):
            return self._version_age(1 if kind == "customer" else 0, params[0], seen, head, now)
        lo = (params[0].year - 2024) * 12 + params[0].month - 1
        months = range(lo, lo + (REVENUE_MONTHS if kind == "revenue" else TOP_MONTHS))
        log, total = self.log, expected
        # Walk back from the read's start: before each commit of these months the sum was lower by its
        # delta; the commit after which the sum first exceeded what the read saw is the first it missed.
        for j in range(head - 1, max(head - COMMIT_LOG, 0) - 1, -1):
            i = j % COMMIT_LOG
            if log.kind[i] == 0 and log.month[i] in months:
                total -= log.delta[i]
                if total <= seen:
                    return now - log.when[i], True
        return now - log.when[max(head - COMMIT_LOG, 0) % COMMIT_LOG], False

    def _version_age(self, kind: int, ident: int, seen: int, head: int, now: float) -> tuple[float, bool]:
        """The age of the first commit of ``ident`` above version ``seen`` (see ``age``)."""
        log = self.log
        first = None
        for j in range(head - 1, max(head - COMMIT_LOG, 0) - 1, -1):
            i = j % COMMIT_LOG
            if log.kind[i] == kind and log.ident[i] == ident:
                if log.version[i] <= seen:
                    break
                first = log.when[i]
        else:
            if head > COMMIT_LOG:
                return now - log.when[head % COMMIT_LOG], False
        return (now - first, True) if first is not None else (0.0, True)

    @staticmethod
    def check(kind: str, expected: Any, rows: list[tuple[Any, ...]]) -> tuple[bool, Any]:
        """(stale?, what the read saw)."""
        if kind == "customer":
            seen = rows[0][4] if rows else -1
            return seen < expected, seen
        if kind == "order":
            seen = rows[0][3] if rows else -1
            return seen < expected, seen
        if kind == "range":
            seen_map = {r[0]: r[4] for r in rows}
            missing = set(expected) - set(seen_map)
            if missing:
                raise AssertionError(f"range scan lost rows {sorted(missing)[:5]}")
            behind = {oid: (v, expected[oid]) for oid, v in seen_map.items() if v < expected.get(oid, 0)}
            return bool(behind), behind
        seen_sum = int(rows[0][-1] or 0) if rows else 0
        return seen_sum < expected, seen_sum


# -- one thread, one process -----------------------------------------------------------------------


@dataclass
class ThreadResult:
    started: float = 0.0
    ended: float = 0.0
    ops: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    read_ms: array[float] = field(default_factory=lambda: array("d"))
    read_kind: array[int] = field(default_factory=lambda: array("b"))  # index into READ_KINDS, per read_ms
    write_ms: array[float] = field(default_factory=lambda: array("d"))
    db_statements: int = 0
    checked: int = 0
    checked_cached: int = 0
    stale_cached: int = 0
    stale_db: int = 0
    stale_samples: list[dict[str, Any]] = field(default_factory=list)
    stale_ages: list[tuple[str, float, bool]] = field(default_factory=list)  # (kind, age s, exact) per stale read
    checked_cached_kinds: Counter[str] = field(default_factory=Counter)
    stale_kinds: Counter[str] = field(default_factory=Counter)  # stale reads served by a cache, per read kind
    rewritten_statuses: Counter[str] = field(default_factory=Counter)  # statuses of the rewritten texts
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    # Per second since the start (index = whole seconds): operations, reads, reads answered from a cache.
    ops_per_s: list[int] = field(default_factory=list)
    reads_per_s: list[int] = field(default_factory=list)
    cached_per_s: list[int] = field(default_factory=list)

    def tick(self, second: int) -> None:
        """Count one operation started in ``second``."""
        while len(self.ops_per_s) <= second:
            self.ops_per_s.append(0)
            self.reads_per_s.append(0)
            self.cached_per_s.append(0)
        self.ops_per_s[second] += 1


def _bumped(cur: Any, update: str, params: tuple[Any, ...], version_sql: str, key: int) -> int:
    """In an open transaction: run an UPDATE that raises the version of row ``key``; the new version,
    returned by the UPDATE itself or read back where UPDATE has no RETURNING (the UPDATE's row lock
    keeps other writers out until the commit, and a transaction sees its own writes)."""
    cur.execute(update, params)
    if cur.description is None:
        cur.execute(version_sql, (key,))
    return int(cur.fetchall()[0][0])


def write(client: Client, sql: Sql, committed: Committed, kind: str, params: tuple[Any, ...]) -> int:
    """Run one write, then record the version it committed; returns the statements it sent."""
    if kind == "w_customer":
        version, sent = client.bump(sql.update_customer, params, sql.customer_version, params[2])
        # committed: from now on no read may see an older version of this customer
        committed.record_customer(params[2], version)
        return sent
    if kind == "w_update":
        version, sent = client.bump(sql.update_order, params, sql.order_version, params[2])
        committed.record(params[2], version)
        return sent
    oid, product, qty, price = params
    with client.db.transaction(client.conn) as cur:
        cur.execute(sql.insert_item, client.adapt((oid, product, qty, price)))
        version = _bumped(cur, sql.bump_order, client.adapt((price * qty, oid)), sql.order_version, oid)
    committed.record(oid, version)
    return 2 if sql.update_returns else 3


def run_thread(spec: Spec, index: int, client: Client, ops: Ops, sql: Sql, committed: Committed,
               go: threading.Event, origin_box: list[float], out: ThreadResult) -> None:
    rng = random.Random(spec.seed * 1_000_003 + spec.process * 1_000 + index)
    go.wait()
    origin = origin_box[0]  # the same for every thread of the process
    deadline = origin + spec.duration_s if not spec.ops else float("inf")
    quota = spec.thread_ops(index) if spec.ops else -1
    hints = {kind: f"/* cache max_stale={s} */ " for kind, s in BOUNDED.get(spec.contender, {}).items()}
    out.started = time.monotonic()
    while out.ops != quota:
        now = time.monotonic()
        if now >= deadline:
            break
        second = int(now - origin)
        kind, params, variant = ops.draw(rng)
        out.ops += 1
        out.kinds[kind] += 1
        out.tick(second)
        try:
            if kind in READ_WEIGHTS:
                text = sql.variants[kind][variant]
                expected, head = committed.expected(kind, params)
                t0 = time.perf_counter()
                rows, status = client.read(hints.get(kind, "") + text.sql, text.bind(params))
                out.read_ms.append((time.perf_counter() - t0) * 1000)
                rows = text.restore(rows)
                if variant:
                    out.rewritten_statuses[status] += 1
                out.read_kind.append(READ_KINDS.index(kind))
                out.statuses[status] += 1
                cached = is_cached(status)
                out.reads_per_s[second] += 1
                out.cached_per_s[second] += cached
                if not cached:
                    out.db_statements += 1
                if expected is None:
                    continue
                stale, seen = committed.check(kind, expected, rows)
                out.checked += 1
                out.checked_cached += cached
                if cached:
                    out.checked_cached_kinds[kind] += 1
                if stale:
                    if cached:
                        out.stale_cached += 1
                        out.stale_kinds[kind] += 1
                        age, exact = committed.age(kind, params, expected, head, seen, time.monotonic())
                        out.stale_ages.append((kind, age, exact))
                    else:
                        out.stale_db += 1
                    if len(out.stale_samples) < STALE_SAMPLES:
                        out.stale_samples.append({"kind": kind, "params": repr(params), "status": status,
                                                  "expected": repr(expected), "seen": repr(seen),
                                                  "t": time.monotonic() - out.started})
            else:
                t0 = time.perf_counter()
                out.db_statements += write(client, sql, committed, kind, params)
                out.write_ms.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # noqa: BLE001 - counted and reported per contender
            name = f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            out.errors[name] += 1
            if len(out.error_samples) < ERROR_SAMPLES:
                out.error_samples.append(f"{kind} {params!r}\n{traceback.format_exc()}")
            if client.db.broken(client.raw):
                client.reconnect()
    out.ended = time.monotonic()


def worker_main(spec: Spec, shared_state: SharedState, ready: Any, go: Any, results: Any) -> None:
    """Process entry point: open clients, report ready, wait for ``go``, run, send the results."""
    try:
        layout = Layout(spec.scale)
        ops = Ops(spec)
        db = engine(spec.database, spec.target)
        sql = Sql(spec.schema, spec.database)
        committed = Committed(shared_state, layout)
        shared = make_shared(spec)
        clients = [CLIENTS[spec.contender](spec, shared, db) for _ in range(spec.threads)]
        for c in clients:  # load the analyzer, scope and catalog before the clock starts
            c.read(sql.warm, (1,))
        start = threading.Event()
        origin_box = [0.0]
        outs = [ThreadResult() for _ in clients]
        threads = [threading.Thread(target=run_thread, args=(spec, i, c, ops, sql, committed, start, origin_box,
                                                              outs[i]), daemon=True) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
    except Exception:  # noqa: BLE001 - the parent reports it
        ready.put((spec.process, traceback.format_exc()))
        return
    ready.put((spec.process, None))
    go.wait()
    origin_box[0] = time.monotonic()
    start.set()
    for t in threads:
        # A count-bounded run has no end to wait for but its count; a hung thread then hangs the run.
        t.join(spec.duration_s + 120 if not spec.ops else None)
    hung = sum(t.is_alive() for t in threads)
    stats: dict[str, Any] = {}
    if spec.contender in QC:
        stats = shared.stats(top=8).to_dict()
    for c in clients:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - a hung thread may still hold it
            pass
    if spec.contender in QC:
        shared.close()
    results.put({"process": spec.process, "hung": hung, "stats": stats, "threads": [
        {"started": o.started, "ended": o.ended, "ops": o.ops, "kinds": dict(o.kinds), "statuses": dict(o.statuses),
         "read_ms": o.read_ms.tobytes(), "read_kind": o.read_kind.tobytes(),
         "write_ms": o.write_ms.tobytes(), "db_statements": o.db_statements,
         "checked": o.checked, "checked_cached": o.checked_cached, "stale_cached": o.stale_cached,
         "stale_db": o.stale_db, "stale_samples": o.stale_samples, "stale_ages": o.stale_ages,
         "errors": dict(o.errors),
         "checked_cached_kinds": dict(o.checked_cached_kinds), "stale_kinds": dict(o.stale_kinds),
         "rewritten_statuses": dict(o.rewritten_statuses),
         "error_samples": o.error_samples, "ops_per_s": o.ops_per_s, "reads_per_s": o.reads_per_s,
         "cached_per_s": o.cached_per_s} for o in outs]})
