"""Bounded staleness (``/* cache max_stale=S */``, ``ttl.max_stale_s``), refresh-ahead and background
refreshes (issue 19; docs/freshness.md, "Bounded staleness" and "Refreshes").

The promise checked here: after a write, a bounded read may get the answer of before the write for
at most S seconds after the write's first bump, never longer, while one refresh runs; strict reads
are unchanged. The stores are real (memory, and Redis on the shared server under a namespace and
version keys of the test's own), and so are the databases.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from typing import Any, Iterator

import pytest

import querycache
from querycache import Config, ConfigError
from querycache.backends.base import MISS, Backend
from querycache.backends.memory import MemoryBackend, ProcessClock
from querycache.backends.redis.backend import RedisBackend
from querycache.hints import scan
from tests.conftest import PG_DSN, SHARED_REDIS, Database, id_value_table, shared_redis_up

REDIS_URL = SHARED_REDIS
_redis_up = shared_redis_up


def _redis_config(**extra: Any) -> dict[str, Any]:
    return {"l2": {"backend": "redis", "url": REDIS_URL, "namespace": "st" + uuid.uuid4().hex[:8],
                   "timeout_ms": 500}, **extra}


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Backend]:
    backend: Backend
    if request.param == "memory":
        backend = MemoryBackend()
    else:
        _redis_up()
        backend = RedisBackend.from_config(Config.from_dict(_redis_config()))
    yield backend
    backend.close()


def _filled(backend: Backend, key: str, vk: list[str], value: bytes = b"old", ttl_s: float = 60,
            cost_ms: float = 0.0) -> int:
    found = backend.lookup(key, vk)
    assert backend.fill(key, value, vk, found.stamp, found.epoch, ttl_s, bounded=True, cost_ms=cost_ms)
    return found.stamp


def _bump(backend: Backend, vk: list[str]) -> None:
    token = uuid.uuid4().hex
    backend.begin_write(vk, token, 5000)
    backend.end_write(vk, token)


# -- the stores ------------------------------------------------------------------------------------

def test_a_stale_entry_is_served_within_its_bound_and_never_after(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _filled(store, key, vk)
    _bump(store, vk)
    assert store.lookup(key, vk).value is MISS  # strict: never
    found = store.lookup(key, vk, max_stale_ms=800, lease_ms=1000)
    assert found.value == b"old" and 0 <= found.stale_ms < 800
    assert found.refresh == 2  # not refreshed before it is half its bound old
    time.sleep(0.45)
    due = store.lookup(key, vk, max_stale_ms=800, lease_ms=1000)
    assert due.value == b"old" and due.refresh == 4  # this caller took the refresh
    again = store.lookup(key, vk, max_stale_ms=800, lease_ms=1000)
    assert again.value == b"old" and again.refresh == 2  # one refresh at a time
    time.sleep(0.4)
    late = store.lookup(key, vk, max_stale_ms=800, lease_ms=1000)
    assert late.value is MISS and late.stale_ms == -1  # past the bound: a miss like any other


def test_the_bound_counts_from_the_first_write_after_the_stamp(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _filled(store, key, vk)
    _bump(store, vk)
    time.sleep(0.5)
    _bump(store, vk)  # a later write does not restart the clock
    found = store.lookup(key, vk, max_stale_ms=2000, peek=True)
    assert found.value == b"old" and found.stale_ms >= 500


def test_a_pending_write_is_served_within_the_bound(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _filled(store, key, vk)
    token = uuid.uuid4().hex
    store.begin_write(vk, token, 5000)
    try:
        assert store.lookup(key, vk).value is MISS
        found = store.lookup(key, vk, max_stale_ms=1000, lease_ms=1000)
        assert found.value == b"old" and found.pending and found.refresh == 2
        time.sleep(0.55)  # its age counts from the write's phase 1
        due = store.lookup(key, vk, max_stale_ms=1000, lease_ms=1000)
        # Refreshed under the mark too: its bounded fill is stamped below the pending write.
        assert due.value == b"old" and due.pending and due.refresh == 4 and due.stale_ms >= 550
    finally:
        store.end_write(vk, token)


@pytest.fixture(params=["memory", "redis"])
def small_history(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A store whose writes keep 4 groups of bumps, each bump a group of its own."""
    backend: Backend
    if request.param == "memory":
        backend = MemoryBackend(clock=ProcessClock(history=(4, 0.0)))
    else:
        _redis_up()
        backend = RedisBackend(REDIS_URL, namespace="st" + uuid.uuid4().hex[:8], timeout_ms=500, history=(4, 0))
    yield backend
    backend.close()


def test_a_trimmed_history_refuses_rather_than_guesses(small_history: Backend) -> None:
    store = small_history
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _filled(store, key, vk)
    for i in range(9):  # more groups than the history keeps: the first bump after the stamp is gone
        _bump(store, vk)
        if i == 2:  # 3 writes, 6 bumps: no trim yet (past 8 groups it keeps 4), still answered
            assert store.lookup(key, vk, max_stale_ms=60_000, peek=True).value == b"old"
    assert store.lookup(key, vk, max_stale_ms=60_000, peek=True).value is MISS
    # A newer entry is judged by the bumps the history still has.
    _filled(store, key, vk, b"new")
    _bump(store, vk)
    assert store.lookup(key, vk, max_stale_ms=60_000, peek=True).value == b"new"


def test_bumps_close_together_are_one_group_whose_age_is_its_first(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _bump(store, vk)
    time.sleep(0.06)  # inside the 100 ms group of that bump
    _filled(store, key, vk)
    _bump(store, vk)  # joins the group that began before the stamp: its age counts from the group's start
    found = store.lookup(key, vk, max_stale_ms=60_000, peek=True)
    assert found.value == b"old" and found.stale_ms >= 50  # too old by up to the group, never too young


def test_bounded_fills_land_after_a_write_but_never_over_a_newer_answer(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    before = store.lookup(key, vk)
    _bump(store, vk)  # a write committed while the query ran
    assert not store.fill(key, b"strict", vk, before.stamp, before.epoch, 60)  # strict: refused
    assert store.fill(key, b"bounded", vk, before.stamp, before.epoch, 60, bounded=True)
    assert store.lookup(key, vk).value is MISS  # stale at once: served only within a bound
    assert store.lookup(key, vk, max_stale_ms=5000, peek=True).value == b"bounded"
    now = store.lookup(key, vk)
    assert store.fill(key, b"newer", vk, now.stamp, now.epoch, 60, bounded=True)
    assert not store.fill(key, b"older", vk, before.stamp, before.epoch, 60, bounded=True)
    assert store.lookup(key, vk).value == b"newer"
    token = uuid.uuid4().hex
    store.begin_write(vk, token, 5000)
    try:
        late = store.lookup(key, vk)
        assert late.pending and late.pending_floor == late.versions[vk[0]]
        assert not store.fill(key, b"pending", vk, late.stamp, late.epoch, 60)  # strict: refused
        # Bounded: stored below the pending write's bump, so stale at once (and its age runs from
        # that bump), whether or not the writer ever finishes.
        assert store.fill(key, b"pending", vk, late.stamp, late.epoch, 60, bounded=True)
        assert store.lookup(key, vk).value is MISS
        assert store.lookup(key, vk, max_stale_ms=5000, peek=True).value == b"pending"
    finally:
        store.end_write(vk, token)
    assert store.lookup(key, vk).value is MISS  # still stale for strict reads after the commit


def test_no_bounded_answer_inside_a_repeatable_read_snapshot(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    stamp = _filled(store, key, vk)
    _bump(store, vk)
    assert store.lookup(key, vk, tx_stamp=stamp + 10**9, max_stale_ms=5000, peek=True).value is MISS


def test_refresh_ahead_picks_one_caller_near_the_ttl(store: Backend) -> None:
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    _filled(store, key, vk, ttl_s=2, cost_ms=500)
    # 2 s left, a cost of 0.5 s: only a large factor (an unlucky draw) recomputes it this early.
    assert store.lookup(key, vk, early=1.0, lease_ms=1000).refresh == 0
    assert store.lookup(key, vk, early=0.0, lease_ms=1000).refresh == 0
    first = store.lookup(key, vk, early=5.0, lease_ms=1000)
    assert first.value == b"old" and first.refresh == 3
    second = store.lookup(key, vk, early=5.0, lease_ms=1000)
    assert second.value == b"old" and second.refresh == 0  # one recomputes; the others are served
    assert store.lookup(key, vk, early=5.0, peek=True).refresh == 0  # explain claims nothing


# -- configuration and hints --------------------------------------------------------------------------

def test_max_stale_hint_and_config_are_validated() -> None:
    cache = querycache.QueryCache()
    assert scan("/* cache max_stale=5 */ SELECT 1", "postgres", "pyformat").hints.max_stale == 5
    for bad in ("max_stale=-1", "max_stale=abc", "max_stale=3601"):
        hints = scan(f"/* cache {bad} */ SELECT 1", "postgres", "pyformat").hints
        assert hints.max_stale is None and "max_stale" in hints.warnings[0], bad
    with pytest.raises(ConfigError, match=r"ttl\.max_stale_s\.orders"):
        Config.from_dict({"ttl": {"max_stale_s": {"orders": 4000}}})
    with pytest.raises(ConfigError, match=r"ttl\.max_stale_s\.orders"):
        Config.from_dict({"ttl": {"max_stale_s": {"orders": -1}}})
    with pytest.raises(ConfigError, match=r"refresh\.workers"):
        Config.from_dict({"refresh": {"workers": 0}})
    with pytest.raises(querycache.QueryCacheError, match="refresh_connect"):
        cache.wrap(__import__("sqlite3").connect(":memory:"), refresh_connect="not callable")  # type: ignore[arg-type]
    cache.close()


# -- through wrapped connections -----------------------------------------------------------------------

def _read(conn: Any, sql: str) -> tuple[list[Any], str]:
    cur = conn.cursor()
    cur.execute(sql)
    rows = [tuple(r) for r in cur.fetchall()]
    status = cur.cache_status
    cur.close()
    return rows, status


def _write(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    cur.execute(sql)
    cur.close()
    if not getattr(conn, "autocommit", True):
        conn.commit()


def _table(db: Database) -> str:
    return id_value_table(db, "stale")


def _until(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[querycache.QueryCache]:
    if request.param == "memory":
        qc = querycache.QueryCache()
    else:
        _redis_up()
        qc = querycache.QueryCache.from_dict(_redis_config())
    yield qc
    qc.close()


def test_a_bounded_read_after_a_commit_is_answered_at_once_then_refreshed(db: Database,
                                                                            cache: querycache.QueryCache) -> None:
    table = _table(db)
    conn = cache.wrap(db.connect(), refresh_connect=db.connect)
    writer = cache.wrap(db.connect())
    sql = f"/* cache max_stale=2 */ SELECT sum(v) FROM {table}"
    strict = f"SELECT sum(v) AS total FROM {table}"  # another entry (a hint is not part of the key)
    assert _read(conn, sql) == ([(10,)], "miss")
    assert _read(conn, strict)[0] == [(10,)]
    _write(writer, f"UPDATE {table} SET v = 11 WHERE id = 1")
    assert _read(conn, strict) == ([(11,)], "miss")  # strict reads: as before
    rows, status = _read(conn, sql)
    assert (rows, status) == ([(10,)], "hit:L2")  # within its bound, the answer of before the write
    counts = cache.stats().to_dict()["staleness"]
    assert counts["served_stale"] == 1 and counts["age_seconds"]["count"] == 1
    # Half its bound old, a reader hands its refresh to the background (a connection of its own):
    # until it filled, the old answer (each one counted); then the new one.
    old = 1
    deadline = time.monotonic() + 10
    while (answer := _read(conn, sql)) == ([(10,)], "hit:L2") and time.monotonic() < deadline:
        old += 1
        time.sleep(0.01)
    assert answer[0] == [(11,)], answer
    assert _read(conn, sql) == ([(11,)], "hit:L1")
    counts = cache.stats().to_dict()["staleness"]
    assert counts["served_stale"] == old and counts["refreshes:stale:background"] == 1, counts
    conn.close()
    writer.close()


def test_without_refresh_connect_the_reader_that_takes_the_refresh_runs_it(
        db: Database, cache: querycache.QueryCache) -> None:
    table = _table(db)
    conn = cache.wrap(db.connect())
    writer = cache.wrap(db.connect())
    sql = f"/* cache max_stale=2 */ SELECT sum(v) FROM {table}"
    assert _read(conn, sql) == ([(10,)], "miss")
    _write(writer, f"UPDATE {table} SET v = 12 WHERE id = 1")
    assert _read(conn, sql) == ([(10,)], "hit:L2")  # within its bound
    time.sleep(1.05)  # half its bound old: the next reader takes the refresh
    assert _read(conn, sql) == ([(12,)], "miss")  # it took the refresh: it gets the new answer
    assert _read(conn, sql) == ([(12,)], "hit:L1")
    counts = cache.stats().to_dict()["staleness"]
    assert counts["refreshes:stale:foreground"] == 1 and counts["served_stale"] == 1


def test_per_table_bounds_from_the_config(pg: Database) -> None:
    table = _table(pg)
    other = pg.t("strict")
    pg.tables.append(other)
    pg.admin(f"CREATE TABLE {other} (id int PRIMARY KEY)", f"INSERT INTO {other} VALUES (1)")
    cache = querycache.QueryCache.from_dict({"ttl": {"max_stale_s": {table: 30}}})
    conn = cache.wrap(pg.connect(), refresh_connect=pg.connect)
    bounded = f"SELECT sum(v) FROM {table}"
    joined = f"SELECT sum(v) FROM {table} JOIN {other} ON {other}.id = {table}.id"
    assert conn.explain(bounded)["max_stale_s"] == 30 and conn.explain(joined)["max_stale_s"] == 0
    assert _read(conn, bounded)[1] == "miss" and _read(conn, joined)[1] == "miss"
    _write(cache.wrap(pg.connect()), f"UPDATE {table} SET v = 13 WHERE id = 1")
    assert _read(conn, bounded) == ([(10,)], "hit:L2")
    assert _read(conn, joined) == ([(13,)], "miss")  # a table without a bound: strict
    cache.close()


def test_never_older_than_the_bound_when_no_refresh_can_run(pg: Database) -> None:
    """Refreshes fail (their connections cannot be opened): the old answer is served for the bound,
    then never again; the reads that follow go to the database."""
    table = _table(pg)

    def broken() -> Any:
        raise OSError("no connection for refreshes")

    cache = querycache.QueryCache()
    conn = cache.wrap(pg.connect(), refresh_connect=broken)
    sql = f"/* cache max_stale=1 */ SELECT sum(v) FROM {table}"
    assert _read(conn, sql)[1] == "miss"
    _write(cache.wrap(pg.connect()), f"UPDATE {table} SET v = 14 WHERE id = 1")
    committed = time.monotonic()
    seen: list[tuple[float, list[Any], str]] = []
    while time.monotonic() - committed < 1.6:
        rows, status = _read(conn, sql)
        seen.append((time.monotonic() - committed, rows, status))
        time.sleep(0.01)
    old = [t for t, rows, _ in seen if rows == [(10,)]]
    assert old, "the bounded answer was never served"
    assert max(old) < 1.0, f"served {max(old):.3f} s after the commit, bound 1 s"
    assert all(rows == [(14,)] for t, rows, _ in seen if t >= 1.0)
    assert cache.stats().to_dict()["staleness"].get("refresh_errors", 0) >= 1
    cache.close()


def test_a_full_refresh_queue_sheds(pg: Database) -> None:
    table = _table(pg)
    started = threading.Event()
    release = threading.Event()

    def slow_connect() -> Any:
        started.set()
        release.wait(10)  # the one worker is busy opening its connection
        return pg.connect()

    cache = querycache.QueryCache.from_dict({"refresh": {"workers": 1, "queue": 1}})
    conn = cache.wrap(pg.connect(), refresh_connect=slow_connect)
    writer = cache.wrap(pg.connect())
    reads = [f"/* cache max_stale=3 */ SELECT sum(v) + {i} FROM {table}" for i in range(3)]
    for sql in reads:
        assert _read(conn, sql)[1] == "miss"
    _write(writer, f"UPDATE {table} SET v = 15 WHERE id = 1")
    time.sleep(1.55)  # half the bound: the reads take their refreshes
    statuses = [_read(conn, reads[0])[1]]
    assert started.wait(10)  # the worker runs the first refresh
    statuses += [_read(conn, sql)[1] for sql in reads[1:]]
    assert statuses == ["hit:L2"] * 3  # every one answered at once
    release.set()
    counts = cache.stats().to_dict()["staleness"]
    # One running, one queued, the third shed (its lease given back: the next read takes it again).
    assert counts["refreshes:stale:background"] == 2 and counts["shed"] == 1, counts
    assert started.is_set()
    assert _until(lambda: _read(conn, reads[0])[0] == [(15,)])
    assert _until(lambda: _read(conn, reads[2])[0] == [(17,)])
    cache.close()


def test_a_tenant_scoped_read_is_refreshed_in_its_tenant(pg: Database) -> None:
    table = _table(pg)
    cache = querycache.QueryCache()
    conn = cache.wrap(pg.connect(), refresh_connect=pg.connect)
    sql = f"/* cache max_stale=2 */ SELECT sum(v) FROM {table}"
    with cache.scope(tenant="acme"):
        assert _read(conn, sql)[1] == "miss"
    _write(cache.wrap(pg.connect()), f"UPDATE {table} SET v = 16 WHERE id = 1")
    with cache.scope(tenant="acme"):
        assert _read(conn, sql) == ([(10,)], "hit:L2")
        assert _until(lambda: _read(conn, sql)[0] == [(16,)])
    assert cache.stats().to_dict()["staleness"].get("refresh_skipped:other_scope", 0) == 0
    cache.close()


def test_refresh_ahead_keeps_a_hot_entry_from_expiring(pg: Database) -> None:
    """An entry read all the time and dearer than its TTL's last stretch is recomputed before it
    expires, in the background: none of its reads after the first is a miss."""
    table = _table(pg)
    fn = table + "_slow"
    pg.admin(f"CREATE FUNCTION {fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
             f"PERFORM pg_sleep(0.3); RETURN x; END $$")
    try:
        cache = querycache.QueryCache.from_dict({"refresh": {"early_beta": 4.0}})
        conn = cache.wrap(pg.connect(), refresh_connect=pg.connect)
        sql = f"/* cache ttl=2 */ SELECT {fn}(v) FROM {table} WHERE id = 1"
        assert _read(conn, sql)[1] == "miss"
        statuses = []
        began = time.monotonic()
        while time.monotonic() - began < 5.0:  # two and a half TTLs
            statuses.append(_read(conn, sql)[1])
            time.sleep(0.02)
        assert "miss" not in statuses, statuses
        counts = cache.stats().to_dict()["staleness"]
        assert counts.get("refreshes:ahead:background", 0) >= 2, counts
        cache.close()
    finally:
        pg.admin(f"DROP FUNCTION IF EXISTS {fn}(int)")


# -- real processes --------------------------------------------------------------------------------------

def _no_connection() -> Any:
    raise OSError("refreshes cannot connect")


def _reader_process(config: dict[str, Any], sql: str, seconds: float, refresh: str, out: Any) -> None:
    import psycopg

    cache = querycache.QueryCache.from_dict(config)
    connect = {"background": lambda: psycopg.connect(PG_DSN, autocommit=True), "foreground": None,
               "broken": _no_connection}[refresh]
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True), refresh_connect=connect)
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cur = conn.cursor()
        cur.execute(sql)
        value = cur.fetchall()[0][0]
        seen.append((time.monotonic(), int(value), cur.cache_status))
        cur.close()
        time.sleep(0.005)
    out.put((seen, cache.stats().to_dict()["staleness"]))
    cache.close()


@pytest.mark.parametrize("refresh", ["background", "foreground", "broken"])
def test_processes_never_read_older_than_the_bound(pg: Database, refresh: str) -> None:
    """A writer commits a new value every 150 ms for 3 s; three reader processes sharing Redis read
    with max_stale=1, their refreshes in the background, by the reader, or impossible (only the
    bound then ends the old answer). Every answer a reader got is at most 1 s older than the first
    commit it missed (the commit's time taken after it returned, the read's after it ended), plus
    0.2 s for the checker's own timing; once the writes stop every reader reaches the last value."""
    _redis_up()
    table = _table(pg)
    fn = table + "_slow"
    pg.admin(f"CREATE FUNCTION {fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
             f"PERFORM pg_sleep(0.2); RETURN x; END $$")
    config = _redis_config()
    sql = f"/* cache max_stale=1 */ SELECT {fn}(v) FROM {table} WHERE id = 1"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_reader_process, args=(config, sql, 6.0, refresh, out)) for _ in range(3)]
    try:
        for p in procs:
            p.start()
        time.sleep(1.5)  # the readers are up and reading
        writer = querycache.QueryCache.from_dict(config)
        wconn = writer.wrap(pg.connect())
        commits = [(0.0, 10)]
        for value in range(11, 31):
            _write(wconn, f"UPDATE {table} SET v = {value} WHERE id = 1")
            commits.append((time.monotonic(), value))
            time.sleep(0.15)
        results = [out.get(timeout=60) for _ in procs]
        writer.close()
    finally:
        for p in procs:
            p.join(30)
        pg.admin(f"DROP FUNCTION IF EXISTS {fn}(int)")
    last_commit = commits[-1][0]
    served_stale = 0
    for seen, counts in results:
        served_stale += counts.get("served_stale", 0)
        for ended, value, status in seen:
            missed = [t for t, v in commits if v > value and t > 0 and t < ended]
            if missed:
                age = ended - min(missed)
                assert age < 1.0 + 0.2, (age, value, status)  # + the checker's own slack, stated
        assert any(v == 30 for t, v, _ in seen if t > last_commit + 1.3), "a reader never reached the last value"
    assert served_stale > 0, "no answer was served within its bound: the test proved nothing"


def test_a_lost_history_refuses_rather_than_restarting_the_clock() -> None:
    """An evicted or expired history (Redis keeps it with a TTL): the next bump must not look like
    the first one after an older stamp."""
    import hashlib

    import redis

    _redis_up()
    store = RedisBackend.from_config(Config.from_dict(_redis_config()))
    vk = [f"db\x1fst_{uuid.uuid4().hex[:8]}"]
    key = "e:" + uuid.uuid4().hex
    try:
        _filled(store, key, vk)
        _bump(store, vk)  # the first write after the stamp
        time.sleep(1.1)
        history = "qc:h:" + hashlib.blake2b(vk[0].encode(), digest_size=16).hexdigest()
        assert redis.Redis.from_url(REDIS_URL).delete(history) == 1  # what an eviction does
        _bump(store, vk)
        found = store.lookup(key, vk, max_stale_ms=1000, peek=True)
        assert found.value is MISS, found  # 1.1 s after its first invalidation: past a 1 s bound
    finally:
        store.close()


def _forked_child(config: dict[str, Any], table: str, out: Any) -> None:
    import psycopg

    cache = _FORK_PARENT[0]
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True),
                      refresh_connect=lambda: psycopg.connect(PG_DSN, autocommit=True))
    writer = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    sql = f"/* cache max_stale=2 */ SELECT sum(v) FROM {table}"
    _read(conn, sql)
    _write(writer, f"UPDATE {table} SET v = 21 WHERE id = 1")
    _read(conn, sql)  # served stale; half its bound old, a read hands the refresh to the child's pool
    out.put(_until(lambda: _read(conn, sql)[0] == [(21,)], 10))


_FORK_PARENT: list[querycache.QueryCache] = []


def test_refreshes_run_in_a_forked_child(pg: Database) -> None:
    """The parent's refresh threads do not survive fork(): the child starts its own."""
    _redis_up()
    table = _table(pg)
    config = _redis_config(refresh={"workers": 1})
    cache = querycache.QueryCache.from_dict(config)
    _FORK_PARENT[:] = [cache]
    conn = cache.wrap(pg.connect(), refresh_connect=pg.connect)
    sql = f"/* cache max_stale=2 */ SELECT sum(v) FROM {table}"
    _read(conn, sql)
    _write(cache.wrap(pg.connect()), f"UPDATE {table} SET v = 20 WHERE id = 1")
    _read(conn, sql)  # the parent's one worker thread starts
    assert _until(lambda: _read(conn, sql)[0] == [(20,)])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_forked_child, args=(config, table, out))
    child.start()
    try:
        assert out.get(timeout=30) is True
    finally:
        child.join(30)
        cache.close()
