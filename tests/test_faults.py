"""Fault injection (issue 9, part 3): the network to Redis, Redis itself, and PostgreSQL fail
while wrapped connections work, on real servers and real sockets.

For every fault:

- every query result equals the same query run on a raw (uncached) connection right after;
- an exception, if any, is exactly the one the raw driver raises (fail open: a store fault
  raises nothing);
- the connection's transaction state is the one the raw connection has;
- once the fault has cleared, no read (in this process, or in another one spawned here) sees
  data older than a write committed through a wrapped connection;
- for store faults, the breaker opens (``fail_open`` counted) and closes again.

The network faults go through ``tests/faultproxy.py`` between both processes and the test's
own redis-server (both processes share the broken network, as an outage of the route to Redis
would). Redis restart, FLUSHALL and SIGKILL of Redis or of a writer are covered by
``tests/test_redis_processes.py`` and ``tests/backends/test_redis.py`` and not repeated here.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
import uuid
from typing import Any, Iterator

import pytest

import querycache
from querycache.testing.redis_server import RedisServer
from tests.conftest import PG_DSN, Database
from tests.faultproxy import FaultProxy

TIMEOUT_MS = 100
LEASE_MS = 500


def _cache(url: str, namespace: str) -> Any:
    # stats.publish_interval_s: the stats publisher is a store client too; a long interval keeps
    # it from talking to the store behind a test's back (see test_first_read_after_outage_*).
    return querycache.QueryCache.from_dict(
        {"l2": {"backend": "redis", "url": url, "namespace": namespace, "timeout_ms": TIMEOUT_MS},
         "invalidation": {"lease_ms": LEASE_MS}, "stats": {"publish_interval_s": 3600}})


# -- another process ------------------------------------------------------------------------------


def worker(url: str, namespace: str, pipe: Any) -> None:
    """Spawned: runs ("read", sql) -> (rows, cache_status) through its own cache and connection."""
    import psycopg

    cache = _cache(url, namespace)
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
    pipe.send("ready")
    while True:
        command = pipe.recv()
        if command[0] == "read":
            cur = conn.cursor()
            cur.execute(command[1])
            pipe.send(([tuple(r) for r in cur.fetchall()], cur.cache_status))
        else:
            cache.close()
            pipe.send("closed")
            return


class Worker:
    def __init__(self, url: str, namespace: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(url, namespace, child), daemon=True)
        self.proc.start()
        # Generous: spawning a Python process with these imports takes ~1 s; 60 s means "hung".
        assert self.pipe.poll(60) and self.pipe.recv() == "ready"

    def read(self, sql: str) -> tuple[list[tuple[Any, ...]], str]:
        self.pipe.send(("read", sql))
        assert self.pipe.poll(60), "the worker did not answer within 60 s"
        rows, status = self.pipe.recv()
        return rows, status

    def warm(self, sql: str) -> None:
        """Read until the answer comes from a cache tier (the entry is there, the lease held)."""
        deadline = time.monotonic() + 20
        while not self.read(sql)[1].startswith("hit"):
            assert time.monotonic() < deadline, "the worker never got a cache hit"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.pipe.send(("close",))
            if self.pipe.poll(10):
                self.pipe.recv()
        self.proc.kill()
        self.proc.join(10)


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def redis_server(own_redis: RedisServer) -> RedisServer:
    return own_redis


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(redis_server.port)
    yield fault_proxy
    fault_proxy.close()


class Tables:
    """counter(id, v) with one row v=0, items(id, name, qty) with 20 rows; the queries read them."""

    def __init__(self, db: Database) -> None:
        self.counter, self.items = db.t("counter"), db.t("items")
        db.tables += [self.counter, self.items]
        db.admin(f"CREATE TABLE {self.counter} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
                 f"INSERT INTO {self.counter} VALUES (1, 0)",
                 f"CREATE TABLE {self.items} (id INTEGER PRIMARY KEY, name VARCHAR(50), qty INTEGER)",
                 f"INSERT INTO {self.items} SELECT g, 'item' || g, g * 10 FROM generate_series(1, 20) g")
        self.point = f"SELECT v FROM {self.counter} WHERE id = 1"
        self.queries = [self.point, f"SELECT count(*), sum(qty) FROM {self.items}",
                        f"SELECT id, name, qty FROM {self.items} WHERE qty > 50 ORDER BY id",
                        f"SELECT i.name, c.v FROM {self.items} i JOIN {self.counter} c ON c.id = i.id"]


def outcome(conn: Any, sql: str) -> tuple[Any, str | None]:
    """(("rows", rows) or ("error", class, sqlstate), cache_status)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return ("rows", [tuple(r) for r in cur.fetchall()]), getattr(cur, "cache_status", None)
    except Exception as exc:  # noqa: BLE001 - compared with what the raw driver raises
        return ("error", type(exc), getattr(getattr(exc, "diag", None), "sqlstate", None)), None


def same(wrapped: Any, raw: Any, sql: str) -> str | None:
    """Run ``sql`` wrapped then raw; the results (or errors) and transaction states must be equal."""
    got, status = outcome(wrapped, sql)
    expected, _ = outcome(raw, sql)
    assert got == expected, f"{sql}: wrapped {got} ({status}), raw {expected}"
    assert wrapped.info.transaction_status == raw.info.transaction_status, sql
    return status


def value(wrapped: Any, tables: Tables) -> tuple[int, str]:
    cur = wrapped.cursor()
    cur.execute(tables.point)
    return cur.fetchall()[0][0], cur.cache_status


def fail_open(cache: Any) -> int:
    return int(cache.stats().to_dict()["fail_open"])


def until_closed(cache: Any, wrapped: Any, raw: Any, sql: str) -> None:
    """Read ``sql`` (checked against raw) until the breaker has closed again."""
    # Generous: the breaker's cooldown is 1 s; 20 s only passes if it never closes.
    deadline = time.monotonic() + 20
    while True:
        same(wrapped, raw, sql)
        if cache.backend.breaker_state == "closed":
            return
        assert time.monotonic() < deadline, f"the breaker stayed {cache.backend.breaker_state}"
        time.sleep(0.05)


# -- the network between the app and Redis --------------------------------------------------------

NETWORK_FAULTS = {
    "blackhole": ("blackhole", 0.0),
    "reset": ("reset", 0.0),
    "half_open": ("half_open", 0.0),
    "latency_over_timeout": ("latency", 4 * TIMEOUT_MS),
}


@pytest.mark.parametrize("fault", list(NETWORK_FAULTS))
def test_network_fault_between_app_and_redis(fault: str, pg: Database, proxy: FaultProxy) -> None:
    """Reads during the fault go to the database (fail open) with the raw answer, errors and
    transaction state; a write during it lands and every read sees it; once the store is back the
    breaker closes, caching resumes, and neither process reads anything older than a write.

    After the fault clears this process first reads a table the writes did not touch (reading the
    written table first is ``test_first_read_after_outage_*`` below).
    """
    tables = Tables(pg)
    namespace = "f" + uuid.uuid4().hex[:8]
    cache = _cache(proxy.url, namespace)
    conn, raw = cache.wrap(pg.connect()), pg.connect()
    txconn, rawtx = cache.wrap(pg.connect(autocommit=False)), pg.connect(autocommit=False)
    other = Worker(proxy.url, namespace)
    try:
        for sql in tables.queries:
            same(conn, raw, sql)
        deadline = time.monotonic() + 20
        while same(conn, raw, tables.point) != "hit:L1":
            assert time.monotonic() < deadline, "no L1 lease before the fault"
            time.sleep(0.05)
        other.warm(tables.point)
        before = fail_open(cache)

        mode, latency_ms = NETWORK_FAULTS[fault]
        proxy.set_mode(mode, latency_ms)
        for _ in range(3):
            for sql in tables.queries:
                same(conn, raw, sql)
        for sql in tables.queries:  # in a transaction: the same state as uncached after each read
            same(txconn, rawtx, sql)
        txconn.rollback()
        rawtx.rollback()
        assert txconn.info.transaction_status == rawtx.info.transaction_status
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 1 WHERE id = 1")
        assert outcome(raw, tables.point)[0] == ("rows", [(1,)])
        for _ in range(3):
            assert value(conn, tables)[0] == 1
            assert other.read(tables.point)[0] == [(1,)]
        assert fail_open(cache) > before
        assert cache.backend.breaker_state == "open"

        proxy.set_mode("pass")
        until_closed(cache, conn, raw, tables.queries[1])
        for _ in range(5):
            assert value(conn, tables)[0] == 1
            assert other.read(tables.point)[0] == [(1,)]
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 2 WHERE id = 1")
        statuses = set()
        for _ in range(10):
            found, status = value(conn, tables)
            rows, other_status = other.read(tables.point)
            assert (found, rows) == (2, [(2,)]), (status, other_status)
            statuses |= {status, other_status}
            time.sleep(0.02)
        assert statuses & {"hit:L1", "hit:L2"}, f"caching did not resume: {statuses}"
        for sql in tables.queries:
            same(conn, raw, sql)
    finally:
        other.stop()
        for c in (conn, raw, txconn, rawtx):
            c.close()
        cache.close()


def test_latency_below_the_timeout_keeps_caching(pg: Database, proxy: FaultProxy) -> None:
    """20 ms added each way (the timeout is 100 ms): slower, still cached, still fresh."""
    tables = Tables(pg)
    namespace = "f" + uuid.uuid4().hex[:8]
    cache = _cache(proxy.url, namespace)
    conn, raw = cache.wrap(pg.connect()), pg.connect()
    other = Worker(proxy.url, namespace)
    try:
        proxy.set_mode("latency", 20)
        statuses = set()
        for round_ in range(4):
            for sql in tables.queries:
                statuses.add(same(conn, raw, sql))
            conn.cursor().execute(f"UPDATE {tables.counter} SET v = {round_ + 1} WHERE id = 1")
            assert value(conn, tables)[0] == round_ + 1
            assert other.read(tables.point)[0] == [(round_ + 1,)]
            fresh = cache.wrap(pg.connect())  # no L1: answered by L2 or the database
            for sql in tables.queries:
                statuses.add(same(fresh, raw, sql))
            fresh.close()
        # Not asserted: fail_open == 0 (a loaded machine may stretch one round trip past 100 ms).
        assert "hit:L2" in statuses, statuses
    finally:
        other.stop()
        conn.close()
        raw.close()
        cache.close()




def _write_during_reset(pg: Database, proxy: FaultProxy, cache: Any, tables: Tables) -> Any:
    conn = cache.wrap(pg.connect())
    for _ in range(3):
        value(conn, tables)  # fills L2 with v=0
    proxy.set_mode("reset")
    conn.cursor().execute(f"UPDATE {tables.counter} SET v = 1 WHERE id = 1")
    assert cache.backend.breaker_state == "open"
    proxy.set_mode("pass")
    time.sleep(cache.backend.breaker_cooldown_s + 0.1)  # the breaker lets the next call through
    return conn


def test_first_read_after_outage_in_the_writing_process(pg: Database, proxy: FaultProxy) -> None:
    """The write committed during the outage, its bump could not be published: the first read of
    its table after the outage must not be an L2 hit on the entry filled before it (v=0). The
    process announces what it could not before answering from the store again (found by this test:
    the lookup ran first)."""
    tables = Tables(pg)
    cache = _cache(proxy.url, "f" + uuid.uuid4().hex[:8])
    conn = _write_during_reset(pg, proxy, cache, tables)
    try:
        assert value(conn, tables) == (1, "miss"), "the first read after the outage"
    finally:
        conn.close()
        cache.close()


def test_first_read_after_outage_in_another_process(pg: Database, proxy: FaultProxy) -> None:
    """The same, read by another process while the writer's process makes no store call of its own:
    its subscriber announces the outage's writes as soon as it reconnects (found by this test: the
    writer's next query did, up to a TTL later)."""
    tables = Tables(pg)
    namespace = "f" + uuid.uuid4().hex[:8]
    cache = _cache(proxy.url, namespace)
    other = Worker(proxy.url, namespace)
    try:
        other.warm(tables.point)  # its own L2 entry (v=0), filled before the outage
        conn = _write_during_reset(pg, proxy, cache, tables)
        # Its breaker may be half-open too (its subscriber failed): a few reads, all must see v=1.
        for _ in range(3):
            rows, status = other.read(tables.point)
            assert rows == [(1,)], f"another process read {rows} ({status}) after the outage"
        conn.close()
    finally:
        other.stop()
        cache.close()


@contextlib.contextmanager
def _warmed(pg: Database, url: str, tables: Tables) -> Iterator[tuple[Any, Any, Any, Worker]]:
    """This process's cache (a wrapped and a raw connection) and a second process's, on the store at
    ``url``, each with the workload's entries filled; everything closed afterwards."""
    namespace = "f" + uuid.uuid4().hex[:8]
    cache = _cache(url, namespace)
    conn, raw = cache.wrap(pg.connect()), pg.connect()
    other = Worker(url, namespace)
    try:
        for sql in tables.queries:
            same(conn, raw, sql)
        other.warm(tables.point)
        yield cache, conn, raw, other
    finally:
        other.stop()
        conn.close()
        raw.close()
        cache.close()


# -- Redis itself: a slow script, memory limits ---------------------------------------------------


def test_slow_script_on_redis_fails_open_within_the_timeout(pg: Database, redis_server: RedisServer) -> None:
    """Another client runs a 3 s Lua busy loop (Redis serves nobody meanwhile): lookups time out
    after l2.timeout_ms and the queries go to the database; afterwards caching resumes, fresh."""
    import redis

    tables = Tables(pg)
    with _warmed(pg, redis_server.url, tables) as (cache, conn, raw, other):
        busy = redis.Redis(port=redis_server.port, socket_timeout=30)
        loop = ("local s = tonumber(redis.call('TIME')[1]) "
                "while tonumber(redis.call('TIME')[1]) < s + 3 do end return 1")
        script = threading.Thread(target=busy.eval, args=(loop, 0), daemon=True)
        script.start()
        time.sleep(0.2)  # the script has started (it is the only command of this client)
        before = fail_open(cache)
        fresh = cache.wrap(pg.connect())  # no L1: it must ask the store
        for sql in tables.queries:
            started = time.monotonic()
            same(fresh, raw, sql)
            # Generous: fail open takes one timeout (0.1 s); waiting for the script would take
            # until it ends (~2.8 s from here). Only a read that waits on the store crosses 1.5 s.
            assert time.monotonic() - started < 1.5, sql
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 1 WHERE id = 1")
        assert value(conn, tables)[0] == 1
        assert fail_open(cache) > before
        assert cache.backend.breaker_state == "open"
        script.join(30)
        until_closed(cache, conn, raw, tables.queries[1])
        for _ in range(5):
            assert value(conn, tables)[0] == 1
            assert value(fresh, tables)[0] == 1
            assert other.read(tables.point)[0] == [(1,)]
        fresh.close()
        busy.close()


def _fill_memory(client: Any, headroom: int) -> None:
    """Set maxmemory ``headroom`` bytes above what is used, then fill it with keys without a TTL."""
    from redis.exceptions import OutOfMemoryError

    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + headroom)
    junk = b"x" * 4096
    for i in range(10 * headroom // len(junk)):
        try:
            client.set(f"junk:{i}", junk)
        except OutOfMemoryError:
            return
    raise AssertionError("Redis never refused a write")




@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru"])
def test_out_of_memory_redis(policy: str, pg: Database, redis_server: RedisServer) -> None:
    """Redis refuses writes (OOM): fills fail (counted, never an error), bumps fail; no read may be
    served from an entry older than a write; once memory is back, caching resumes, fresh.

    Under volatile-lru Redis first evicts every key with a TTL (entries, pending marks, leases)
    before it refuses writes, so no entry outlives the failed bump. noeviction keeps them: the
    lookup script carries a shebang without allow-oom, so Redis 7 refuses it while out of memory
    and reads fail open (found by this test: lookups ran and served entries older than the
    refused bumps)."""
    import redis

    tables = Tables(pg)
    client = redis.Redis(port=redis_server.port)
    client.config_set("maxmemory-policy", policy)
    with _warmed(pg, redis_server.url, tables) as (cache, conn, raw, other):
        _fill_memory(client, 256 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", b"y" * 65536)
        before = fail_open(cache)
        fresh = cache.wrap(pg.connect())
        for sql in [*tables.queries, f"SELECT name FROM {tables.items} WHERE id = 3"]:
            same(fresh, raw, sql)  # misses whose fills are refused
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 1 WHERE id = 1")
        for _ in range(3):
            assert value(conn, tables)[0] == 1
            assert value(fresh, tables)[0] == 1
            assert other.read(tables.point)[0] == [(1,)]
        assert fail_open(cache) > before
        client.config_set("maxmemory", 0)
        client.delete(*[f"junk:{i}" for i in range(2000)])
        until_closed(cache, conn, raw, tables.queries[1])
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 2 WHERE id = 1")
        for _ in range(5):
            assert value(conn, tables)[0] == 2
            assert other.read(tables.point)[0] == [(2,)]
        fresh.close()




def test_allkeys_lru_eviction_of_clock_and_version_keys(pg: Database, redis_server: RedisServer) -> None:
    """allkeys-lru (which `doctor` rejects) evicts clock, version and pending keys along with entries:
    an evicted version counts as changed, an evicted clock starts a new epoch; never a stale read.
    Row level (found by this test): the columns readers pin lived in a key of their own, whose
    eviction made writers bump only "any"; they now live in the clock's hash."""
    import redis

    tables = Tables(pg)
    client = redis.Redis(port=redis_server.port)
    client.config_set("maxmemory-policy", "allkeys-lru")
    with _warmed(pg, redis_server.url, tables) as (cache, conn, raw, other):
        assert any("allkeys-lru" in p for p in cache.backend.health_problems())
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 512 * 1024)
        junk = b"x" * 8192
        for round_ in range(1, 13):
            for i in range(100):  # 800 kB of junk: beyond the limit, so older keys are evicted
                client.set(f"junk:{round_}:{i}", junk)
            for sql in tables.queries:
                same(conn, raw, sql)
            if round_ % 3 == 0:
                conn.cursor().execute(f"UPDATE {tables.counter} SET v = {round_} WHERE id = 1")
            expected = round_ - round_ % 3
            assert value(conn, tables)[0] == expected
            assert other.read(tables.point)[0] == [(expected,)]
        assert int(client.info("stats")["evicted_keys"]) > 0
        client.config_set("maxmemory", 0)
        conn.cursor().execute(f"UPDATE {tables.counter} SET v = 100 WHERE id = 1")
        for _ in range(5):
            assert value(conn, tables)[0] == 100
            assert other.read(tables.point)[0] == [(100,)]



# -- PostgreSQL: a backend killed mid-query, deadlock and serialization failure on COMMIT ----------


def _terminate_when_active(pid: int, started: threading.Event) -> None:
    """Wait until backend ``pid`` runs a statement, then pg_terminate_backend it (only that pid)."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is not None and row[0] == "active":
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                return
            time.sleep(0.005)


def _killed(conn: Any, sql: str, named: bool = False) -> tuple[Any, Any]:
    """Run ``sql`` while its backend is terminated; (error class, transaction status)."""
    started = threading.Event()
    killer = threading.Thread(target=_terminate_when_active, args=(conn.info.backend_pid, started), daemon=True)
    killer.start()
    started.wait(30)
    error: Any = None
    try:
        cur = conn.cursor(name="qc_fault_cursor") if named else conn.cursor()
        cur.execute(sql)
        while cur.fetchmany(1000):
            pass
    except Exception as exc:  # noqa: BLE001 - compared with the raw driver's
        error = type(exc)
    killer.join(30)
    return error, conn.info.transaction_status


@pytest.mark.parametrize("named", [False, True], ids=["client_cursor", "server_cursor"])
def test_backend_terminated_mid_query(named: bool, pg: Database, proxy: FaultProxy) -> None:
    """pg_terminate_backend while the statement runs (a client-side cursor: during execute; a
    server-side one: between fetches): the wrapped connection raises the raw driver's class and
    is left in the raw one's state; writes through other wrapped connections stay visible."""
    tables = Tables(pg)
    big = pg.t("big")
    pg.tables.append(big)
    pg.admin(f"CREATE TABLE {big} (id INTEGER PRIMARY KEY)", f"INSERT INTO {big} SELECT generate_series(1, 4000)")
    # Seconds of work (16 M pairs), so the kill lands while it runs; it ends with the backend.
    slow = f"SELECT count(*) FROM {big} a, {big} b WHERE a.id + b.id = -1"
    if named:
        slow = f"SELECT a.id, b.id FROM {big} a, {big} b WHERE a.id + b.id > 0"
    namespace = "f" + uuid.uuid4().hex[:8]
    cache = _cache(proxy.url, namespace)
    other = Worker(proxy.url, namespace)
    conn, raw = cache.wrap(pg.connect(autocommit=not named)), pg.connect(autocommit=not named)
    check, check_raw = cache.wrap(pg.connect()), pg.connect()
    try:
        other.warm(tables.point)
        for sql in tables.queries:
            same(check, check_raw, sql)
        expected = _killed(raw, slow, named)
        got = _killed(conn, slow, named)
        assert expected[0] is not None, "the raw statement was not interrupted"
        assert got == expected
        assert conn.closed and raw.closed
        check.cursor().execute(f"UPDATE {tables.counter} SET v = 1 WHERE id = 1")
        for _ in range(3):
            for sql in tables.queries:
                same(check, check_raw, sql)
            assert other.read(tables.point)[0] == [(1,)]
    finally:
        other.stop()
        for c in (conn, raw, check, check_raw):
            c.close()
        cache.close()


def _two_transactions(pg: Database, connect: Any, first: list[str], second: list[str], level: str) -> list[Any]:
    """Run ``first`` on one connection and ``second`` on another, each in a transaction at
    ``level``, then COMMIT both at once; returns per connection (error class or None, status)."""
    conns = [connect(), connect()]
    out: list[Any] = [None, None]
    try:
        for conn in conns:
            conn.cursor().execute("SET deadlock_timeout = '100ms'")
            conn.commit()
            conn.cursor().execute(f"BEGIN ISOLATION LEVEL {level}")
        for a, b in zip(first, second, strict=True):  # interleaved, statement by statement
            for conn, sql in ((conns[0], a), (conns[1], b)):
                cur = conn.cursor()
                cur.execute(sql)
                if cur.description is not None:
                    cur.fetchall()

        def commit(i: int) -> None:
            try:
                conns[i].commit()
                out[i] = (None, conns[i].info.transaction_status)
            except Exception as exc:  # noqa: BLE001 - compared with the raw driver's
                out[i] = (type(exc), conns[i].info.transaction_status)

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return sorted(out, key=lambda r: r[0] is not None)  # the committed one first
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("conflict", ["deadlock", "serialization"])
def test_failed_commit(conflict: str, pg: Database, redis_server: RedisServer) -> None:
    """COMMIT fails: a deadlock between two deferred unique checks (READ COMMITTED), or SSI's
    "canceled on commit attempt" after write skew (SERIALIZABLE). The victim's error and state are
    the raw driver's (``DeadlockDetected`` / ``SerializationFailure``, then idle).

    Versions: the wrapper bumps the victim's tables anyway. docs/freshness.md says phase 2 runs "whatever
    its outcome except a rollback the driver confirms"; a COMMIT that raised is such a rollback,
    but ``_end_transaction`` runs phase 2 on every COMMIT outcome (needless invalidation, never a
    stale read): asserted below by the invalidation counts. No read after either commit is stale.
    """
    import psycopg

    table = pg.t("pair")
    pg.tables.append(table)
    if conflict == "deadlock":
        pg.admin(f"CREATE TABLE {table} (k INTEGER, v INTEGER, UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)")
        first = [f"INSERT INTO {table} VALUES (1, 1)", f"INSERT INTO {table} VALUES (2, 1)"]
        second = [f"INSERT INTO {table} VALUES (2, 2)", f"INSERT INTO {table} VALUES (1, 2)"]
        level, error = "READ COMMITTED", psycopg.errors.DeadlockDetected
    else:
        pg.admin(f"CREATE TABLE {table} (k INTEGER, v INTEGER)", f"INSERT INTO {table} VALUES (1, 10), (2, 20)")
        first = [f"SELECT sum(v) FROM {table} WHERE k = 1", f"INSERT INTO {table} VALUES (2, 1)"]
        second = [f"SELECT sum(v) FROM {table} WHERE k = 2", f"INSERT INTO {table} VALUES (1, 2)"]
        level, error = "SERIALIZABLE", psycopg.errors.SerializationFailure
    expected = _two_transactions(pg, lambda: pg.connect(autocommit=False), first, second, level)
    pg.admin(f"DELETE FROM {table} WHERE (k, v) NOT IN ((1, 10), (2, 20))")  # as before the raw run
    assert expected[1][0] is error, expected
    cache = _cache(redis_server.url, "f" + uuid.uuid4().hex[:8])
    reader, raw = cache.wrap(pg.connect()), pg.connect()
    queries = [f"SELECT k, v FROM {table} ORDER BY k, v", f"SELECT count(*) FROM {table}"]
    try:
        for sql in queries * 2:
            same(reader, raw, sql)  # cached before the transactions
        before = cache.stats().to_dict()["invalidations"].get(table, 0)
        got = _two_transactions(pg, lambda: cache.wrap(pg.connect(autocommit=False)), first, second, level)
        assert got == expected
        assert not issubclass(got[1][0], querycache.QueryCacheError)
        assert cache.stats().to_dict()["invalidations"].get(table, 0) - before == 2  # both bumped
        for sql in queries * 2:
            same(reader, raw, sql)
        other = Worker(redis_server.url, cache.namespace)
        try:
            for sql in queries:
                assert other.read(sql)[0] == outcome(raw, sql)[0][1]
        finally:
            other.stop()
    finally:
        reader.close()
        raw.close()
        cache.close()
