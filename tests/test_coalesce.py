"""Request coalescing: a cold key is computed once, however many callers ask, in one process or many.

Executions are counted on the database side: the slow query calls ``<prefix>_slow(v)``, a
function that takes ``nextval`` of a sequence (sequences ignore transactions) and sleeps. It is
declared IMMUTABLE, a lie told only so that the cache treats the read as cacheable; the count
is what PostgreSQL itself ran.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from typing import Any, Callable

import pytest

import querycache
from tests.backends.test_redis import REDIS_URL, _leased, _redis_up
from tests.conftest import PG_DSN, Database, id_value_table


class Slow:
    """A table ``<t>`` (id, v), a counting sequence and the slow function, in PostgreSQL."""

    def __init__(self, pg: Database, sleep_s: float = 0.8, fail_first: bool = False) -> None:
        self.pg = pg
        self.table = pg.t("coal")
        self.seq = self.table + "_runs"
        self.fn = self.table + "_slow"
        pg.tables.append(self.table)
        fail = f"IF currval('{self.seq}') = 1 THEN RAISE EXCEPTION 'leader failed on purpose'; END IF;" \
            if fail_first else ""
        pg.admin(
            f"CREATE TABLE {self.table} (id int PRIMARY KEY, v int NOT NULL)",
            f"INSERT INTO {self.table} VALUES (1, 10)",
            f"CREATE SEQUENCE {self.seq}",
            f"CREATE FUNCTION {self.fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
            f"PERFORM nextval('{self.seq}'); PERFORM pg_sleep({sleep_s}); {fail} RETURN x; END $$",
        )
        self.sql = f"SELECT id, {self.fn}(v) FROM {self.table} WHERE id = 1"

    def runs(self) -> int:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            row = conn.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {self.seq}").fetchone()
        assert row is not None
        return int(row[0])

    def cleanup(self) -> None:
        self.pg.admin(f"DROP FUNCTION IF EXISTS {self.fn}(int)", f"DROP SEQUENCE IF EXISTS {self.seq}")


@pytest.fixture
def slow(pg: Database) -> Any:
    made: list[Slow] = []

    def make(**kwargs: Any) -> Slow:
        made.append(Slow(pg, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.cleanup()


def _together(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` in n threads released at once; returns each result or exception."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            out[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _warm(conns: list[Any], table: str) -> list[Any]:
    """Connections that have run a read already (scope, catalog and analyzer loaded), so that
    callers released together reach the cache together."""
    for conn in conns:
        _read(conn, f"SELECT count(*) FROM {table}")
    return conns


def _read(conn: Any, sql: str) -> tuple[list[Any], str]:
    cur = conn.cursor()
    cur.execute(sql)
    return list(cur.fetchall()), cur.cache_status


def test_threads_of_one_process_run_a_cold_key_once(slow: Callable[..., Slow], pg: Database,
                                                    cache: querycache.QueryCache) -> None:
    s = slow()
    conns = _warm([cache.wrap(pg.connect()) for _ in range(32)], s.table)
    out = _together(32, lambda i: _read(conns[i], s.sql))
    assert s.runs() == 1
    assert all(rows == [(1, 10)] for rows, _ in out), out
    statuses = sorted(status for _, status in out)
    assert statuses.count("miss") == 1 and statuses.count("coalesced") == 31, statuses
    stats = cache.stats().to_dict()
    assert stats["coalesced"] == 31 and stats["coalesce"]["leaders"] == 1


def test_each_follower_gets_its_own_copy(pg: Database, cache: querycache.QueryCache) -> None:
    table = pg.t("json")
    pg.tables.append(table)
    pg.admin(f"CREATE TABLE {table} (id int, doc jsonb)", f"INSERT INTO {table} VALUES (1, '{{\"a\": [1]}}')")
    sql = f"SELECT doc, pg_sleep(0) IS NULL FROM {table}"  # pg_sleep: volatile, so not cached at all
    plain = f"SELECT doc FROM {table}"
    conns = _warm([cache.wrap(pg.connect()) for _ in range(8)], table)
    out = _together(8, lambda i: _read(conns[i], plain))
    docs = [rows[0][0] for rows, _ in out]
    docs[0]["a"].append("mutated")
    assert all(d == {"a": [1]} for d in docs[1:]), docs
    assert _read(conns[1], sql)[1] == "bypass:volatile"


def test_leader_error_is_its_own_and_one_follower_retries(slow: Callable[..., Slow], pg: Database,
                                                         cache: querycache.QueryCache) -> None:
    import psycopg

    s = slow(sleep_s=0.5, fail_first=True)
    conns = _warm([cache.wrap(pg.connect()) for _ in range(16)], s.table)
    out = _together(16, lambda i: _read(conns[i], s.sql))
    errors = [o for o in out if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.RaiseException), out
    assert "leader failed on purpose" in str(errors[0])
    good = [o for o in out if not isinstance(o, Exception)]
    assert all(rows == [(1, 10)] for rows, _ in good)
    assert s.runs() == 2  # the failed leader, then exactly one new leader
    assert cache.stats().to_dict()["coalesce"]["reelections"] >= 1


def test_follower_after_a_commit_does_not_get_the_leaders_older_rows(slow: Callable[..., Slow], pg: Database,
                                                                     cache: querycache.QueryCache) -> None:
    s = slow(sleep_s=1.0)
    leader_conn, follower_conn, writer = _warm([cache.wrap(pg.connect()) for _ in range(3)], s.table)
    results: dict[str, Any] = {}
    leader = threading.Thread(target=lambda: results.setdefault("leader", _read(leader_conn, s.sql)))
    leader.start()
    time.sleep(0.3)  # the leader's query is running, on the old value
    writer.cursor().execute(f"UPDATE {s.table} SET v = 20 WHERE id = 1")  # commit() returned
    follower = _read(follower_conn, s.sql)  # starts after the commit, while the leader still runs
    leader.join()
    assert results["leader"] == ([(1, 10)], "miss")
    assert follower == ([(1, 20)], "miss"), follower
    # It did wait for the leader (one leader with a follower), and then ran the query again: the
    # leader's rows predate the commit (its fill was refused, so it had nothing to hand over).
    assert cache.stats().to_dict()["coalesce"]["leaders"] == 1
    assert s.runs() == 2


def test_repeatable_read_follower_keeps_its_snapshot(slow: Callable[..., Slow], pg: Database,
                                                     cache: querycache.QueryCache) -> None:
    s = slow(sleep_s=0.8)
    other = pg.t("other")
    pg.tables.append(other)
    pg.admin(f"CREATE TABLE {other} (id int)", f"INSERT INTO {other} VALUES (1)")
    tx_conn, leader_conn, writer = _warm([cache.wrap(pg.connect()) for _ in range(3)], s.table)
    cur = tx_conn.cursor()
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    cur.execute(f"SELECT id FROM {other}")  # pins the snapshot: v is 10 in it
    writer.cursor().execute(f"UPDATE {s.table} SET v = 30 WHERE id = 1")
    results: dict[str, Any] = {}
    leader = threading.Thread(target=lambda: results.setdefault("leader", _read(leader_conn, s.sql)))
    leader.start()
    time.sleep(0.2)
    rows, _status = _read(tx_conn, s.sql)  # joins the flight; the leader reads 30
    leader.join()
    assert results["leader"][0] == [(1, 30)]
    assert rows == [(1, 10)], "a repeatable-read transaction got rows from after its snapshot"
    assert cache.stats().to_dict()["coalesce"]["handover_refused"] == 1  # it did join the flight
    cur.execute("COMMIT")


def test_followers_wait_at_most_max_wait(slow: Callable[..., Slow], pg: Database) -> None:
    s = slow(sleep_s=1.5)
    cache = querycache.QueryCache.from_dict({"coalesce": {"max_wait_ms": 200}})
    try:
        conns = _warm([cache.wrap(pg.connect()) for _ in range(4)], s.table)
        out = _together(4, lambda i: _read(conns[i], s.sql))
        assert all(rows == [(1, 10)] for rows, _ in out)
        assert s.runs() == 4  # each follower gave up after 200 ms and ran it itself
        assert cache.stats().to_dict()["coalesce"]["timeouts"] == 3
    finally:
        cache.close()


def test_coalescing_can_be_switched_off(slow: Callable[..., Slow], pg: Database) -> None:
    s = slow(sleep_s=0.3)
    cache = querycache.QueryCache.from_dict({"coalesce": {"enabled": False}})
    try:
        conns = _warm([cache.wrap(pg.connect()) for _ in range(4)], s.table)
        _together(4, lambda i: _read(conns[i], s.sql))
        assert s.runs() == 4
    finally:
        cache.close()


# -- across processes (Redis) ---------------------------------------------------------------------

def _redis_cache(namespace: str, **coalesce: Any) -> querycache.QueryCache:
    return querycache.QueryCache.from_dict({
        "l2": {"backend": "redis", "url": REDIS_URL, "namespace": namespace, "timeout_ms": 500},
        "coalesce": {"max_wait_ms": 10000, **coalesce}})


def caller_process(namespace: str, sql: str, threads: int, start: Any, results: Any, coalesce: dict[str, Any],
                   ready: Any) -> None:
    import psycopg

    try:
        cache = _redis_cache(namespace, **coalesce)
        _leased(cache.backend)
        table = sql.split(" FROM ")[1].split()[0]
        conns = _warm([cache.wrap(psycopg.connect(PG_DSN, autocommit=True)) for _ in range(threads)], table)
        with ready.get_lock():
            ready.value += 1
        start.wait(60)
        out = _together(threads, lambda i: _read(conns[i], sql))
        results.put([(o if not isinstance(o, Exception) else repr(o)) for o in out])
        cache.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put([f"process failed: {exc!r}"])


def _processes(n: int, target: Any, args: Callable[[Any, Any, Any], tuple[Any, ...]]) -> tuple[list[Any], Any, Any]:
    ctx = mp.get_context("spawn")
    start, results, ready = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    procs = [ctx.Process(target=target, args=args(start, results, ready)) for _ in range(n)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while ready.value < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.value == n, "the processes did not get ready"
    return procs, start, results


def _callers(sql: str, processes: int, threads: int) -> list[Any]:
    """``processes`` x ``threads`` callers of ``sql`` released at once; what each got."""
    namespace = "co" + uuid.uuid4().hex[:8]
    procs, start, results = _processes(
        processes, caller_process, lambda st, res, rd: (namespace, sql, threads, st, res, {}, rd))
    start.set()
    out = [row for _ in procs for row in results.get(timeout=120)]
    for p in procs:
        p.join(30)
    return out


def test_64_callers_in_4_processes_run_a_cold_key_once(slow: Callable[..., Slow]) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=1.0)
    out = _callers(s.sql, 4, 16)
    assert len(out) == 64 and all(o[0] == [(1, 10)] for o in out), out
    assert s.runs() == 1
    statuses = sorted(o[1] for o in out)
    assert statuses.count("miss") == 1 and statuses.count("coalesced") == 63, statuses


def leader_process(namespace: str, sql: str, started: Any, coalesce: dict[str, Any]) -> None:
    import psycopg

    cache = _redis_cache(namespace, **coalesce)
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    cache.backend.lookup = _announce(cache.backend.lookup, started)  # type: ignore[method-assign]
    _read(conn, sql)  # killed while this runs


def _announce(lookup: Any, started: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        found = lookup(*args, **kwargs)
        started.set()  # the lease is taken: the query starts now
        return found
    return wrapped


def test_killed_leader_process_releases_followers_at_lease_expiry(slow: Callable[..., Slow]) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=3.0)
    namespace = "ck" + uuid.uuid4().hex[:8]
    coalesce = {"lease_ms": 1000}
    ctx = mp.get_context("spawn")
    # The followers first (spawning takes seconds here), then the leader: it must still be running
    # its query when they arrive.
    procs, start, results = _processes(
        2, caller_process, lambda st, res, rd: (namespace, s.sql, 4, st, res, coalesce, rd))
    started = ctx.Event()
    leader = ctx.Process(target=leader_process, args=(namespace, s.sql, started, coalesce))
    leader.start()
    assert started.wait(60)
    began = time.monotonic()
    start.set()
    time.sleep(0.3)
    os.kill(leader.pid, signal.SIGKILL)  # type: ignore[arg-type]
    leader.join(10)
    out = [row for _ in procs for row in results.get(timeout=120)]
    took = time.monotonic() - began
    for p in procs:
        p.join(30)
    assert all(o[0] == [(1, 10)] for o in out), out
    assert s.runs() == 2  # the killed leader's, then one new leader's
    # Bound from the issue: lease TTL + max_wait (+ the 3 s query the new leader runs).
    assert took < 1.0 + 10.0 + 3.0 + 5.0, took


def test_cross_process_follower_after_a_commit_runs_again(slow: Callable[..., Slow], pg: Database) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=1.5)
    namespace = "cc" + uuid.uuid4().hex[:8]
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    leader = ctx.Process(target=leader_process, args=(namespace, s.sql, started, {}))
    leader.start()
    try:
        assert started.wait(60)
        cache = _redis_cache(namespace)
        _leased(cache.backend)
        writer = cache.wrap(pg.connect())
        writer.cursor().execute(f"UPDATE {s.table} SET v = 40 WHERE id = 1")  # returned: acknowledged
        follower = cache.wrap(pg.connect())
        rows, status = _read(follower, s.sql)
        assert rows == [(1, 40)], (rows, status)
        cache.close()
    finally:
        leader.join(30)


# -- stale-while-revalidate ------------------------------------------------------------------------

@pytest.fixture(params=["memory", "redis"])
def any_cache(request: pytest.FixtureRequest) -> Any:
    # Stale-while-revalidate on its own: refresh-ahead (on by default) would also recompute these
    # entries, whose queries cost more than their TTL, before it ends (tests/test_staleness.py).
    no_early = {"refresh": {"early_beta": 0}}
    if request.param == "memory":
        qc = querycache.QueryCache.from_dict(no_early)
    else:
        _redis_up(REDIS_URL)
        qc = querycache.QueryCache.from_dict({
            "l2": {"backend": "redis", "url": REDIS_URL, "namespace": "sw" + uuid.uuid4().hex[:8],
                   "timeout_ms": 500}, "coalesce": {"max_wait_ms": 10000}, **no_early})
        _leased(qc.backend)
    yield qc
    qc.close()


def test_swr_serves_the_old_entry_while_one_caller_refreshes(slow: Callable[..., Slow], pg: Database,
                                                             any_cache: querycache.QueryCache) -> None:
    s = slow(sleep_s=1.5)
    sql = "/* cache ttl=1 swr=30 */ " + s.sql
    conns = _warm([any_cache.wrap(pg.connect()) for _ in range(8)], s.table)
    assert _read(conns[0], sql) == ([(1, 10)], "miss")
    time.sleep(1.2)  # past the TTL, inside the window
    began = time.monotonic()
    out = _together(8, lambda i: (_read(conns[i], sql), time.monotonic()))
    assert s.runs() == 2  # the first fill, then exactly one refresh
    statuses = sorted(o[0][1] for o in out)
    assert statuses.count("miss") == 1, statuses  # the refresher
    assert all(o[0][0] == [(1, 10)] for o in out)
    served_old = [t - began for (rows, status), t in out if status != "miss"]
    assert max(served_old) < 1.0, "the others must not wait for the refresh"  # the query sleeps 1.5 s
    counts = any_cache.stats().to_dict()["coalesce"]
    assert counts["swr_refreshes"] == 1
    assert _read(conns[1], sql)[1] in ("hit:L1", "hit:L2")  # refreshed: fresh again


def test_swr_never_serves_an_entry_a_write_invalidated(slow: Callable[..., Slow], pg: Database,
                                                        any_cache: querycache.QueryCache) -> None:
    s = slow(sleep_s=0.0)
    sql = "/* cache ttl=1 swr=30 */ " + s.sql
    reader, writer = _warm([any_cache.wrap(pg.connect()) for _ in range(2)], s.table)
    assert _read(reader, sql) == ([(1, 10)], "miss")
    writer.cursor().execute(f"UPDATE {s.table} SET v = 11 WHERE id = 1")
    time.sleep(1.2)
    assert _read(reader, sql) == ([(1, 11)], "miss")
    writer.cursor().execute(f"UPDATE {s.table} SET v = 12 WHERE id = 1")
    assert _read(reader, sql) == ([(1, 12)], "miss")


def test_swr_under_concurrent_writes_never_older_than_the_last_commit(pg: Database,
                                                                      any_cache: querycache.QueryCache) -> None:
    table = pg.t("swr")
    pg.tables.append(table)
    pg.admin(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)", f"INSERT INTO {table} VALUES (1, 0)")
    sql = f"/* cache ttl=1 swr=60 */ SELECT v FROM {table} WHERE id = 1"
    committed = [0]
    stop = threading.Event()
    stale: list[tuple[int, int, str]] = []
    statuses: dict[str, int] = {}

    def write() -> None:
        conn = any_cache.wrap(pg.connect())
        cur = conn.cursor()
        while not stop.is_set():
            cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1 RETURNING v")
            committed[0] = cur.fetchall()[0][0]  # autocommit: the commit has returned
            # Sometimes right away, sometimes after the 1 s TTL: entries then reach their window.
            time.sleep(0.05 if committed[0] % 2 else 1.3)

    def read() -> None:
        conn = any_cache.wrap(pg.connect())
        while not stop.is_set():
            floor = committed[0]
            rows, status = _read(conn, sql)
            statuses[status] = statuses.get(status, 0) + 1
            if rows[0][0] < floor:
                stale.append((rows[0][0], floor, status))
            time.sleep(0.002)  # leave the writer its share of the GIL

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(6.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert committed[0] >= 6
    assert not stale, (stale[:5], statuses)
    counts = any_cache.stats().to_dict()["coalesce"]
    assert counts.get("swr_refreshes", 0) > 0, (counts, statuses)  # the window was used under writes


def test_ttl_and_swr_per_table_and_hint() -> None:
    from querycache.analysis import Analyzer

    cache = querycache.QueryCache.from_dict({"ttl": {"default_s": 300, "max_s": 3600,
                                                     "tables": {"rates": 60, "countries": 3000},
                                                     "swr_s": 0, "swr_tables": {"countries": 600}}})
    try:
        plain = Analyzer("sqlite", "qmark")("SELECT 1 FROM t")
        hinted = Analyzer("sqlite", "qmark")("/* cache ttl=20 swr=5 */ SELECT 1 FROM t")
        assert cache._ttl_for(plain, {"countries"}) == 3000  # a table's own TTL, longer than the default
        assert cache._ttl_for(plain, {"countries", "orders"}) == 300  # orders has none: the default
        assert cache._ttl_for(plain, {"countries", "rates"}) == 60  # the smallest wins
        assert cache._ttl_for(hinted, {"rates"}) == 20
        assert cache._swr_for(plain, {"countries"}, 3000) == 600  # capped: 3000 + 600 <= 3600
        assert cache._swr_for(plain, {"countries", "orders"}, 300) == 0  # orders: no window
        assert cache._swr_for(hinted, {"orders"}, 20) == 5
        assert cache._swr_for(plain, {"countries"}, 0) == 0  # ttl=0 stores nothing
    finally:
        cache.close()


def test_a_leaders_rows_never_reach_another_tenant(slow: Callable[..., Slow], pg: Database,
                                                  cache: querycache.QueryCache) -> None:
    s = slow(sleep_s=0.5)
    conns = _warm([cache.wrap(pg.connect()) for _ in range(8)], s.table)

    def call(i: int) -> tuple[list[Any], str]:
        with cache.scope(tenant=f"tenant-{i % 2}"):
            return _read(conns[i], s.sql)

    out = _together(8, call)
    assert s.runs() == 2  # one leader per tenant
    assert sorted(status for _, status in out).count("miss") == 2


def test_leader_error_across_processes_one_retry(slow: Callable[..., Slow]) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=0.5, fail_first=True)
    out = _callers(s.sql, 4, 4)
    errors = [o for o in out if isinstance(o, str)]
    assert len(errors) == 1 and "leader failed on purpose" in errors[0], out
    assert all(o[0] == [(1, 10)] for o in out if not isinstance(o, str))
    assert s.runs() == 2  # the failed leader, then exactly one new leader in all four processes


# -- regressions found by the review of this change --------------------------------------------

def test_without_a_lease_l1_never_answers(pg: Database) -> None:
    """A process whose subscriber lost its lease must not serve L1 entries filled meanwhile
    (they carried the constant no-lease token, which matched itself)."""
    _redis_up(REDIS_URL)
    cache = _redis_cache("nl" + uuid.uuid4().hex[:8])
    try:
        backend: Any = cache.backend
        backend._stop.set()  # the subscriber stops: the lease runs out, nobody renews it
        backend._subscriber.join(5)
        backend._lease_until = 0.0
        assert backend.l1_epoch != backend.l1_epoch  # a value equal to no other
        table = make_table(pg)
        conn = cache.wrap(pg.connect())
        sql = f"SELECT v FROM {table} WHERE id = 1"
        assert _read(conn, sql)[1] == "miss"
        assert _read(conn, sql)[1] == "hit:L2"  # not hit:L1
    finally:
        cache.close()


def make_table(pg: Database) -> str:
    return id_value_table(pg, "plain")


def test_explain_claims_no_lease_and_no_refresh(slow: Callable[..., Slow], pg: Database) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=0.0)
    sql = "/* cache ttl=1 swr=30 */ " + s.sql
    namespace = "xp" + uuid.uuid4().hex[:8]
    explainer, reader = _redis_cache(namespace), _redis_cache(namespace)
    try:
        _read(reader.wrap(pg.connect()), sql)
        time.sleep(1.2)  # past the TTL, inside the window
        assert explainer.wrap(pg.connect()).explain(sql)["tier"] == "l2"
        assert explainer.backend._held == {}  # type: ignore[attr-defined]
        # So the refresh is still there to take for the next caller.
        assert _read(reader.wrap(pg.connect()), sql)[1] == "miss"
        assert s.runs() == 2
    finally:
        explainer.close()
        reader.close()


def test_swr_one_refresh_per_key_within_a_process_on_redis(slow: Callable[..., Slow], pg: Database) -> None:
    _redis_up(REDIS_URL)
    s = slow(sleep_s=1.0)
    sql = "/* cache ttl=1 swr=30 */ " + s.sql
    cache = _redis_cache("sp" + uuid.uuid4().hex[:8])
    try:
        _leased(cache.backend)
        conns = _warm([cache.wrap(pg.connect()) for _ in range(4)], s.table)
        assert _read(conns[0], sql)[1] == "miss"
        time.sleep(1.2)
        refresher = threading.Thread(target=_read, args=(conns[1], sql))
        refresher.start()
        deadline = time.monotonic() + 10
        while not cache.backend._held:  # type: ignore[attr-defined]  # until the refresh lease is taken
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for conn in conns[2:]:
            assert _read(conn, sql) == ([(1, 10)], "hit:L2")  # the old entry, no second refresh
        refresher.join()
        assert s.runs() == 2
    finally:
        cache.close()


def test_reelected_follower_keeps_the_original_deadline(pg: Database) -> None:
    """The leader fails; the re-elected follower meets another process's lease: its total wait
    stays within max_wait_ms (it used to start a new one)."""
    _redis_up(REDIS_URL)
    table = pg.t("rel")
    seq, fn = table + "_runs", table + "_slow"
    pg.tables.append(table)
    pg.admin(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)", f"INSERT INTO {table} VALUES (1, 10)",
             f"CREATE SEQUENCE {seq}",
             f"CREATE FUNCTION {fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
             f"IF nextval('{seq}') = 1 THEN PERFORM pg_sleep(2.9); RAISE EXCEPTION 'first run fails'; END IF; "
             f"PERFORM pg_sleep(5); RETURN x; END $$")
    sql = f"SELECT id, {fn}(v) FROM {table} WHERE id = 1"
    namespace = "rl" + uuid.uuid4().hex[:8]
    ours = _redis_cache(namespace, max_wait_ms=3000)
    other = _redis_cache(namespace)  # stands for another process: its own lease holder
    try:
        _leased(ours.backend)
        _leased(other.backend)
        first, second = _warm([ours.wrap(pg.connect()) for _ in range(2)], table)
        (elsewhere,) = _warm([other.wrap(pg.connect())], table)
        times: dict[str, float] = {}

        def call(name: str, conn: Any, delay: float) -> None:
            time.sleep(delay)
            began = time.monotonic()
            try:
                _read(conn, sql)
            except Exception:  # noqa: BLE001 - the first leader fails on purpose
                pass
            times[name] = time.monotonic() - began

        threads = [threading.Thread(target=call, args=args) for args in
                   (("first", first, 0.0), ("elsewhere", elsewhere, 0.1), ("second", second, 0.2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # The other process's run (5 s, from 2.9 s) outlasts the second's 3 s: it waits its 3 s in all,
        # then runs the query itself (5 s): about 8 s. With a new max_wait after the re-election (at
        # 2.9 s) it waited 2.7 + 3 s, then ran it: about 10.7 s.
        assert times["second"] < 9.35, times
    finally:
        ours.close()
        other.close()
        pg.admin(f"DROP FUNCTION IF EXISTS {fn}(int)", f"DROP SEQUENCE IF EXISTS {seq}")
