"""Row-level vs table-level invalidation vs hand-written cache-aside on a read-mostly shop workload.

    .venv/bin/python bench/row_level.py            # 4 threads, 20 s per contender
    .venv/bin/python bench/row_level.py --quick    # 8 s per contender, smaller data

PostgreSQL tables (created, then dropped at the end): ``products`` (50 categories; ``version`` bumped by
every update) and ``orders`` (product, qty). Operations, Zipfian (s = 1.1) over products and categories,
95 % reads / 5 % writes:

* 45 % category aggregate over the products of one category (count, price sum, version sum);
* 35 % point lookup of a product by id (with its version);
* 15 % order count and quantity of one product;
* writes: 70 % ``UPDATE products SET price = price + 1, version = version + 1 WHERE id = %s``,
  30 % ``INSERT INTO orders ... VALUES (...)`` (autocommit: each write is committed when it returns).

Contenders, one after another on the same seeded streams: ``uncached``; querycache with table-level
invalidation (``qc-table``); querycache with ``invalidation.row_level: true`` (``qc-row``); both on the
embedded memory store (one process, 4 threads); a hand-written Redis cache-aside with a 30 s TTL
(``cache-aside``: GET, else query and SETEX; no invalidation: what most teams write).

Stale-read checker: writers count their committed writes per product, per category and per
product's orders; a read takes those counts *before* it starts, and its answer must show at least
that many (a product's version, a category's version sum, a product's order count over its
initial count). An answer below is a stale read. Counted for every contender, uncached included
(the checker's self-test: it must find none there).

Writes ``bench/results/row_level.json`` and ``.md`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from bisect import bisect_left
from itertools import accumulate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import querycache  # noqa: E402
from querycache.config import Config  # noqa: E402

PG_DSN = os.environ.get("QUERYCACHE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
REDIS_URL = os.environ.get("QUERYCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/12")
RESULTS = ROOT / "bench" / "results"
CATEGORIES = 50
PREFIX = f"qcrl{os.getpid()}"
P, O = f"{PREFIX}_products", f"{PREFIX}_orders"  # noqa: E741

AGGREGATE = f"SELECT COUNT(*), SUM(price), SUM(version), MAX(name) FROM {P} WHERE category = %s"
POINT = f"SELECT id, name, price, version FROM {P} WHERE id = %s"
ORDERS = f"SELECT COUNT(*), SUM(qty) FROM {O} WHERE product_id = %s"
UPDATE = f"UPDATE {P} SET price = price + 1, version = version + 1 WHERE id = %s"
INSERT = f"INSERT INTO {O} (id, product_id, qty) VALUES (%s, %s, %s)"


class Zipf:
    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        weights = [1 / (k ** s) for k in range(1, n + 1)]
        self.cumulative = list(accumulate(weights))
        self.rng = rng
        self.order = list(range(n))
        rng.shuffle(self.order)  # the popular keys are spread over the id range

    def __call__(self) -> int:
        i = bisect_left(self.cumulative, self.rng.random() * self.cumulative[-1])
        return self.order[min(i, len(self.order) - 1)]


class Checker:
    def __init__(self, base_orders: dict[int, int], category_of: dict[int, int]) -> None:
        self.lock = threading.Lock()
        self.product: dict[int, int] = {}
        self.category: dict[int, int] = {}
        self.orders: dict[int, int] = {}
        self.base_orders = base_orders
        self.category_of = category_of
        self.stale = 0
        self.checked = 0

    def updated(self, pid: int) -> None:
        with self.lock:
            self.product[pid] = self.product.get(pid, 0) + 1
            cat = self.category_of[pid]
            self.category[cat] = self.category.get(cat, 0) + 1

    def inserted(self, pid: int) -> None:
        with self.lock:
            self.orders[pid] = self.orders.get(pid, 0) + 1

    def check(self, ok: bool) -> None:
        with self.lock:
            self.checked += 1
            self.stale += not ok


def setup(conn: Any, products: int, orders: int) -> tuple[dict[int, int], dict[int, int]]:
    started = time.perf_counter()
    conn.execute(f"DROP TABLE IF EXISTS {O}, {P}")
    conn.execute(f"CREATE TABLE {P} (id INTEGER PRIMARY KEY, category INTEGER NOT NULL, name TEXT, "
                 f"price INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 0)")
    conn.execute(f"INSERT INTO {P} SELECT g, g % {CATEGORIES}, 'product ' || g, 10 + g % 90, 0 "
                 f"FROM generate_series(0, {products - 1}) g")
    conn.execute(f"CREATE TABLE {O} (id BIGINT PRIMARY KEY, product_id INTEGER NOT NULL, qty INTEGER NOT NULL)")
    conn.execute(f"INSERT INTO {O} SELECT g, (g::bigint * 7919) % {products}, 1 + g % 5 "
                 f"FROM generate_series(1, {orders}) g")
    conn.execute(f"CREATE INDEX ON {O} (product_id)")
    # No index on category: a category aggregate scans the products (the expensive read).
    conn.execute(f"ANALYZE {P}")
    conn.execute(f"ANALYZE {O}")
    base = dict(conn.execute(f"SELECT product_id, COUNT(*) FROM {O} GROUP BY product_id").fetchall())
    category_of = dict(conn.execute(f"SELECT id, category FROM {P}").fetchall())
    print(f"[setup] {products:,} products, {orders:,} orders in {time.perf_counter() - started:.1f} s", flush=True)
    return {int(k): int(v) for k, v in base.items()}, {int(k): int(v) for k, v in category_of.items()}


def run_contender(name: str, threads: int, duration: float, products: int, seed: int,
                  base: dict[int, int], category_of: dict[int, int], next_order: list[int],
                  write_ratio: float = 0.05) -> dict[str, Any]:
    import psycopg

    checker = Checker(base, category_of)
    cache = None
    redis_client = None
    if name.startswith("qc-"):
        cache = querycache.QueryCache(Config.from_dict({
            "invalidation": {"row_level": name == "qc-row"}, "ttl": {"default_s": 600, "max_s": 3600}}))
    elif name == "cache-aside":
        import redis

        redis_client = redis.Redis.from_url(REDIS_URL)
        redis_client.flushdb()
    counts = {"ops": 0, "reads": 0, "hits": 0, "writes": 0}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        products_z = Zipf(products, 1.1, rng)
        categories_z = Zipf(CATEGORIES, 1.1, rng)
        raw = psycopg.connect(PG_DSN, autocommit=True)
        conn = cache.wrap(raw) if cache is not None else raw
        ops = reads = hits = writes = 0

        def read(sql: str, params: tuple[Any, ...]) -> tuple[list[Any], bool]:
            if redis_client is not None:
                key = f"ca:{sql}:{params}"
                found = redis_client.get(key)
                if found is not None:
                    return json.loads(found), True
                rows = [list(r) for r in raw.execute(sql, params).fetchall()]
                redis_client.set(key, json.dumps(rows, default=str), ex=30)
                return rows, False
            cur = conn.cursor()
            cur.execute(sql, params)
            rows = [list(r) for r in cur.fetchall()]
            return rows, str(getattr(cur, "cache_status", "")).startswith("hit")

        try:
            while not stop.is_set():
                roll = rng.random()
                if roll >= write_ratio:
                    kind = rng.random()
                    if kind < 45 / 95:
                        cat = categories_z()
                        with checker.lock:
                            floor = checker.category.get(cat, 0)
                        rows, hit = read(AGGREGATE, (cat,))
                        checker.check(int(rows[0][2] or 0) >= floor)
                    elif kind < 80 / 95:
                        pid = products_z()
                        with checker.lock:
                            floor = checker.product.get(pid, 0)
                        rows, hit = read(POINT, (pid,))
                        checker.check(int(rows[0][3]) >= floor)
                    else:
                        pid = products_z()
                        with checker.lock:
                            floor = base.get(pid, 0) + checker.orders.get(pid, 0)
                        rows, hit = read(ORDERS, (pid,))
                        checker.check(int(rows[0][0]) >= floor)
                    reads += 1
                    hits += hit
                else:
                    pid = products_z()
                    if rng.random() < 0.7:
                        conn.cursor().execute(UPDATE, (pid,)) if cache is not None else raw.execute(UPDATE, (pid,))
                        checker.updated(pid)
                    else:
                        with lock:
                            next_order[0] += 1
                            oid = next_order[0]
                        args = (oid, pid, 1 + rng.randrange(5))
                        conn.cursor().execute(INSERT, args) if cache is not None else raw.execute(INSERT, args)
                        checker.inserted(pid)
                    writes += 1
                ops += 1
        except Exception as exc:  # noqa: BLE001 - reported in the results
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            raw.close()
            with lock:
                counts["ops"] += ops
                counts["reads"] += reads
                counts["hits"] += hits
                counts["writes"] += writes

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    row_level = cache.stats().to_dict().get("row_level", {}) if cache is not None else {}
    if cache is not None:
        cache.close()
    if redis_client is not None:
        redis_client.flushdb()
    result = {"contender": name, "threads": threads, "seconds": round(elapsed, 1),
              "ops_per_s": round(counts["ops"] / elapsed, 1), "reads": counts["reads"], "writes": counts["writes"],
              "hit_ratio": round(counts["hits"] / counts["reads"], 3) if counts["reads"] else 0.0,
              "stale_reads": checker.stale, "checked_reads": checker.checked, "errors": errors[:5],
              "row_level_stats": row_level}
    print(f"[{name}] {result}", flush=True)
    return result


def markdown(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    base = next((r["ops_per_s"] for r in results if r["contender"] == "uncached"), None)
    lines = [f"{meta['products']:,} products in {CATEGORIES} categories, {meta['orders']:,} orders; "
             f"{meta['threads']} threads, {meta['duration']} s per contender, {meta['write_ratio']:.1%} writes, "
             "Zipf s=1.1",
             "", "| contender | ops/s | x uncached | hit ratio | stale reads / checked |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        ratio = f"{r['ops_per_s'] / base:.1f}x" if base else "-"
        lines.append(f"| {r['contender']} | {r['ops_per_s']:,} | {ratio} | {r['hit_ratio']:.1%} | "
                     f"{r['stale_reads']:,} / {r['checked_reads']:,} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--contenders", default="uncached,qc-table,qc-row,cache-aside")
    parser.add_argument("--write-ratio", type=float, default=0.05, help="share of operations that write")
    args = parser.parse_args()
    products, orders = (50_000, 200_000) if args.quick else (200_000, 1_000_000)
    duration = args.duration or (8.0 if args.quick else 20.0)
    admin = psycopg.connect(PG_DSN, autocommit=True)
    results = []
    try:
        base, category_of = setup(admin, products, orders)
        next_order = [orders + 1]
        for name in [c.strip() for c in args.contenders.split(",") if c.strip()]:
            results.append(run_contender(name, args.threads, duration, products, 7, base, category_of, next_order,
                                         args.write_ratio))
            admin.execute(f"UPDATE {P} SET version = 0, price = 10 + id % 90 WHERE version <> 0")
            admin.execute(f"DELETE FROM {O} WHERE id > {orders}")
            next_order[0] = orders + 1
    finally:
        admin.execute(f"DROP TABLE IF EXISTS {O}, {P}")
        admin.close()
    meta = {"products": products, "orders": orders, "threads": args.threads, "duration": duration,
            "cpus": os.cpu_count(), "write_ratio": args.write_ratio}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "row_level.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    text = markdown(meta, results)
    (RESULTS / "row_level.md").write_text(text)
    print(text)
    if any(r["contender"] == "uncached" and r["stale_reads"] for r in results):
        print("CHECKER SELF-TEST FAILED: stale reads on the uncached contender")


if __name__ == "__main__":
    main()
