"""querycache/read.py: ``explain`` and ``execute`` ask one ``bypass_reason``, so they agree.

Each case puts a sqlite connection in a state where a cached read must not be answered from
the cache, then checks that ``explain`` names the reason ``execute`` reports in
``cache_status`` (and never a tier ``execute`` would not use).
"""

from __future__ import annotations

import sqlite3
from typing import Callable

import pytest

import querycache
from querycache.connection import CachedConnection

SQL = "SELECT v FROM t WHERE id = ?"


def _warm(cache: querycache.QueryCache) -> CachedConnection:
    conn = cache.wrap(sqlite3.connect(":memory:"))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.commit()
    cur = conn.cursor()
    for expected in ("miss", "hit:L1"):
        cur.execute(SQL, (1,))
        cur.fetchall()
        assert cur.cache_status == expected
    assert conn.explain(SQL, (1,))["tier"] == "l1"
    return conn


def _dirty_transaction(conn: CachedConnection) -> None:
    conn.cursor().execute("INSERT INTO t VALUES (2, 'b')")  # sqlite3 opens a transaction before it


def _temp_table(conn: CachedConnection) -> None:
    conn.cursor().execute("CREATE TEMP TABLE scratch (x INTEGER)")


def _disabled(conn: CachedConnection) -> None:
    conn.cache.enabled = False


@pytest.mark.parametrize(("make_state", "reason"), [
    (_dirty_transaction, "tx_dirty"),
    (_temp_table, "temp_table"),
    (_disabled, "disabled"),
])
def test_explain_reports_the_bypass_execute_takes(make_state: Callable[..., None], reason: str) -> None:
    cache = querycache.QueryCache()
    try:
        conn = _warm(cache)
        make_state(conn)
        explained = conn.explain(SQL, (1,))
        cur = conn.cursor()
        cur.execute(SQL, (1,))
        cur.fetchall()
        assert cur.cache_status == f"bypass:{reason}"
        assert explained["tier"] == "database"
        assert explained["why"] == f"bypass:{reason}"
    finally:
        cache.close()


def test_explain_with_unsupported_params_reports_unknown() -> None:
    cache = querycache.QueryCache()
    try:
        conn = _warm(cache)
        params = (object(),)
        explained = conn.explain(SQL, params)
        assert explained["why"] == "bypass:unknown"
    finally:
        cache.close()
