"""Fixtures for the querycache benchmarks (outside the tests' testpaths; run ``bench/report.py``).

* ``sqlite_db``: a fresh in-memory sqlite3 connection holding ``items`` (1000 rows).
* ``pg_table`` / ``pg_connect``: the same table in PostgreSQL database ``test``, created once per
  session under a unique name and dropped at the end; skipped when PostgreSQL is unreachable.

In both, ``grp = <n>`` for any n in 0..99 selects exactly ``ROWS_PER_GROUP`` (10) rows.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# The package is not installed in the venv: import it from the checkout.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_DSN = os.environ.get("QUERYCACHE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
N_ROWS = 1000
N_GROUPS = 100
ROWS_PER_GROUP = N_ROWS // N_GROUPS  # 10


def record_path(benchmark: Any, path: str, role: str) -> None:
    """Say which path this benchmark measures and its side (``"raw"`` or ``"cached"``):
    ``bench/report.py`` pairs the two sides of a path and prints the ratio of their medians."""
    benchmark.extra_info["path"] = path
    benchmark.extra_info["role"] = role


def _rows() -> list[tuple[int, int, str, float]]:
    return [(i, i % N_GROUPS, f"item-{i:04d}", round(i * 1.25, 2)) for i in range(N_ROWS)]


# -- sqlite -------------------------------------------------------------------------------
SQLITE_POINT = "SELECT id, name, price FROM items WHERE grp = ?"
# Same shape, one more (unique, always-true) parameter so that every call is a distinct cache key.
SQLITE_MISS = "SELECT id, name, price FROM items WHERE grp = ? AND id > ?"


def make_sqlite() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, grp INTEGER NOT NULL, name TEXT NOT NULL, "
                 "price REAL NOT NULL)")
    conn.executemany("INSERT INTO items (id, grp, name, price) VALUES (?, ?, ?, ?)", _rows())
    conn.execute("CREATE INDEX items_grp ON items (grp)")
    conn.commit()
    (count,) = conn.execute("SELECT count(*) FROM items WHERE grp = 3").fetchone()
    assert count == ROWS_PER_GROUP
    return conn


@pytest.fixture
def sqlite_db() -> Iterator[sqlite3.Connection]:
    conn = make_sqlite()
    try:
        yield conn
    finally:
        conn.close()


# -- PostgreSQL ---------------------------------------------------------------------------
def _pg_module() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dev dependency
        pytest.skip(f"psycopg not installed: {exc}")
    return psycopg


@pytest.fixture(scope="session")
def pg_table() -> Iterator[str]:
    """Create ``qc_bench_items_<random>`` in database ``test``; yield its name; drop it."""
    psycopg = _pg_module()
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any connection failure means: skip
        pytest.skip(f"PostgreSQL unreachable ({PG_DSN}): {exc}")
    table = f"qc_bench_items_{uuid.uuid4().hex[:8]}"
    try:
        admin.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, grp integer NOT NULL, "
                      f"name text NOT NULL, price double precision NOT NULL)")
        with admin.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (id, grp, name, price) VALUES (%s, %s, %s, %s)", _rows())
        admin.execute(f"CREATE INDEX {table}_grp ON {table} (grp)")
        admin.execute(f"ANALYZE {table}")
        (count,) = admin.execute(f"SELECT count(*) FROM {table} WHERE grp = 3").fetchone()
        assert count == ROWS_PER_GROUP
        yield table
    finally:
        try:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
        finally:
            admin.close()


@pytest.fixture
def pg_connect(pg_table: str) -> Iterator[Callable[[], Any]]:
    """A factory of autocommit psycopg connections to the database holding ``pg_table``."""
    psycopg = _pg_module()
    opened: list[Any] = []

    def connect() -> Any:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in opened:
            conn.close()


@pytest.fixture
def sqlite_sql() -> dict[str, str]:
    """``point``: 10 rows for ``(grp,)``; ``miss``: 10 rows for ``(grp, <any negative int>)``."""
    return {"point": SQLITE_POINT, "miss": SQLITE_MISS}


@pytest.fixture
def pg_sql(pg_table: str) -> dict[str, str]:
    """The PostgreSQL spelling (``%s``) of ``sqlite_sql``, on ``pg_table``."""
    return {
        "point": f"SELECT id, name, price FROM {pg_table} WHERE grp = %s",
        "miss": f"SELECT id, name, price FROM {pg_table} WHERE grp = %s AND id > %s",
    }
