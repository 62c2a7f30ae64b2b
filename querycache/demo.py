"""The demo workload: a read-mostly shop on sqlite, run uncached and cached, side by side.

Both runs execute the same seeded sequence of statements on identical copies of the
database; every cached answer is compared with the uncached answer of the same
step, so the demo also counts stale reads (there must be none).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from querycache.cache import QueryCache
from querycache.config import Config

CATEGORIES = 24
PRODUCTS = 2000
CUSTOMERS = 5000
ORDERS = 30000

Params = Callable[[random.Random], tuple[Any, ...]]
READS: list[tuple[int, str, Params]] = [
    # (weight, sql, parameter maker)
    (40, "SELECT id, name, price FROM products WHERE id = ?", lambda r: (_zipf(r, PRODUCTS),)),
    (20, "SELECT name, email FROM customers WHERE id = ?", lambda r: (_zipf(r, CUSTOMERS),)),
    (15, "SELECT p.category, count(*), sum(o.qty * p.price) FROM orders o JOIN products p ON p.id = o.product_id "
         "WHERE p.category = ? GROUP BY p.category", lambda r: (r.randrange(CATEGORIES),)),
    (10, "SELECT c.name, count(o.id) AS n FROM customers c JOIN orders o ON o.customer_id = c.id "
         "WHERE c.id BETWEEN ? AND ? GROUP BY c.name ORDER BY n DESC LIMIT 10",
     lambda r: (lambda lo: (lo, lo + 50))(_zipf(r, CUSTOMERS - 50))),
    (10, "SELECT product_id, sum(qty) FROM orders WHERE customer_id = ? GROUP BY product_id ORDER BY 2 DESC",
     lambda r: (_zipf(r, CUSTOMERS),)),
    (5, "SELECT count(*), avg(price) FROM products WHERE category = ? AND price > ?",
     lambda r: (r.randrange(CATEGORIES), float(r.randrange(5, 50)))),
]
WRITES: list[tuple[str, Params]] = [
    ("INSERT INTO orders (customer_id, product_id, qty) VALUES (?, ?, ?)",
     lambda r: (_zipf(r, CUSTOMERS), _zipf(r, PRODUCTS), r.randrange(1, 5))),
    ("UPDATE products SET price = price + 0.5 WHERE id = ?", lambda r: (_zipf(r, PRODUCTS),)),
]


def _zipf(rng: random.Random, n: int) -> int:
    """A skewed id in [1, n]: a few hot rows, a long tail (as real traffic has)."""
    return min(n, int(rng.paretovariate(1.2)) if rng.random() < 0.8 else rng.randrange(1, n + 1))


def build_database(path: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
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


def make_workload(n: int, write_ratio: float, seed: int = 11) -> list[tuple[str, tuple[Any, ...], bool]]:
    rng = random.Random(seed)
    weights = [w for w, _, _ in READS]
    steps = []
    for _ in range(n):
        if rng.random() < write_ratio:
            sql, make = rng.choice(WRITES)
            steps.append((sql, make(rng), True))
        else:
            _, sql, make_read = rng.choices(READS, weights)[0]
            steps.append((sql, make_read(rng), False))
    return steps


@dataclass
class DemoResult:
    statements: int
    uncached_s: float
    cached_s: float
    stale_reads: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.uncached_s / self.cached_s if self.cached_s else 0.0


def _run_steps(conn: Any, steps: list[tuple[str, tuple[Any, ...], bool]],
               progress: Callable[[int], None] | None) -> tuple[list[Any], float]:
    """Every step's rows, and the seconds the whole sequence took."""
    cur = conn.cursor()
    answers: list[Any] = []
    started = time.perf_counter()
    for i, (sql, params, _) in enumerate(steps):
        cur.execute(sql, params)
        answers.append(cur.fetchall())
        if progress is not None and i % 500 == 499:
            progress(500)
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress(len(steps) % 500)
    return answers, elapsed


def run_demo(statements: int = 20000, write_ratio: float = 0.01, config: Config | None = None,
             progress: Callable[[int], None] | None = None) -> DemoResult:
    """Run the workload uncached, then cached, on two copies of one database; compare every answer."""
    workdir = Path(tempfile.mkdtemp(prefix="querycache-demo-"))
    try:
        plain_path, cached_path = workdir / "plain.db", workdir / "cached.db"
        build_database(plain_path)
        shutil.copy(plain_path, cached_path)
        steps = make_workload(statements, write_ratio)

        plain = sqlite3.connect(plain_path, isolation_level=None)
        expected, uncached_s = _run_steps(plain, steps, progress)
        plain.close()

        cache = QueryCache(config)
        conn = cache.wrap(sqlite3.connect(cached_path, isolation_level=None))
        answers, cached_s = _run_steps(conn, steps, progress)
        stale = sum(1 for got, want in zip(answers, expected, strict=False) if got != want)
        snapshot = cache.stats().to_dict()
        conn.close()
        cache.close()
        return DemoResult(len(steps), uncached_s, cached_s, stale, snapshot)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
