"""The races of the freshness rule (docs/freshness.md), each forced into its worst order with a gate
instead of left to chance.

The gate is ``<prefix>_gate(x)``: a PostgreSQL function that waits for an advisory lock the test
holds (declared IMMUTABLE, a lie told only so that the cache treats the read as cacheable). A read
``SELECT id, v, <gate>(id) FROM t WHERE id = 1`` has taken its snapshot, read the row and then
stops inside the database until the test releases the gate: whatever the test does meanwhile
(a commit, an invalidation, a flush, a restart of the store) happens after the reader's stamp and
snapshot and before its fill. Every answer is compared with the database's; executions are not
trusted to counters.

Races: fill vs commit (memory store, Redis, a commit from another process), fill vs explicit
invalidation and vs a flush, L1 of one process vs a commit in another, the subscriber's
connection killed while another process commits, and a coalescing leader vs a writer.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import querycache
from querycache.testing.redis_server import RedisServer
from tests.backends.test_redis import _leased
from tests.conftest import PG_DSN, Database, own_redis_server

GATE_KEY = 424242


class Gate:
    """A table (id, v) and a function that blocks while the test holds advisory lock GATE_KEY."""

    def __init__(self, pg: Database) -> None:
        import psycopg

        self.pg = pg
        self.table = pg.t("gated")
        self.fn = self.table + "_gate"
        pg.tables.append(self.table)
        pg.admin(f"CREATE TABLE {self.table} (id int PRIMARY KEY, v int NOT NULL)",
                 f"INSERT INTO {self.table} VALUES (1, 10), (2, 20)",
                 f"CREATE FUNCTION {self.fn}(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN "
                 f"PERFORM pg_advisory_lock_shared({GATE_KEY}); PERFORM pg_advisory_unlock_shared({GATE_KEY}); "
                 f"RETURN x; END $$")
        self.gated = f"SELECT id, v, {self.fn}(id) FROM {self.table} WHERE id = 1"
        self.plain = f"SELECT id, v FROM {self.table} WHERE id = 1"
        self.holder = psycopg.connect(PG_DSN, autocommit=True)
        self.holder.execute(f"SELECT pg_advisory_lock({GATE_KEY})")

    def waiting(self) -> bool:
        """Whether a reader is stopped at the gate (its backend waits for the advisory lock)."""
        row = self.holder.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
            (GATE_KEY,)).fetchone()
        return bool(row and row[0])

    def wait_for_reader(self) -> None:
        deadline = time.monotonic() + 30  # only a hang crosses this
        while not self.waiting():
            assert time.monotonic() < deadline, "the reader never reached the gate"
            time.sleep(0.01)

    def shut(self) -> None:
        self.holder.execute(f"SELECT pg_advisory_lock({GATE_KEY})")

    def open(self) -> None:
        self.holder.execute(f"SELECT pg_advisory_unlock({GATE_KEY})")

    def value(self) -> int:
        row = self.holder.execute(f"SELECT v FROM {self.table} WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.holder.close()
        self.pg.admin(f"DROP FUNCTION IF EXISTS {self.fn}(int)")


@pytest.fixture
def gate(pg: Database) -> Iterator[Gate]:
    g = Gate(pg)
    yield g
    g.close()


def read(conn: Any, sql: str) -> tuple[list[tuple[Any, ...]], str]:
    cur = conn.cursor()
    cur.execute(sql)
    return [tuple(r) for r in cur.fetchall()], str(cur.cache_status)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def held_read(gate: Gate, conn: Any, during: Callable[[], None]) -> tuple[list[tuple[Any, ...]], str]:
    """``conn`` reads through the gate; ``during()`` runs while it is stopped there."""
    thread, out = in_thread(lambda: read(conn, gate.gated))
    gate.wait_for_reader()
    try:
        during()
    finally:
        gate.open()
    thread.join(30)
    assert out and not isinstance(out[0], BaseException), out
    result: tuple[list[tuple[Any, ...]], str] = out[0]
    return result


def redis_cache(url: str) -> querycache.QueryCache:
    cache = querycache.QueryCache.from_dict({"l2": {"backend": "redis", "url": url, "timeout_ms": 2000,
                                                    "namespace": "il" + uuid.uuid4().hex[:8]}})
    _leased(cache.backend)
    return cache


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], querycache.QueryCache]]:
    """Caches on one store: the process's memory store, or a Redis of the test's own."""
    server = None
    if request.param == "redis":
        server = own_redis_server(tmp_path)
        server.start()
    made: list[querycache.QueryCache] = []

    def make() -> querycache.QueryCache:
        made.append(querycache.QueryCache() if server is None else redis_cache(server.url))
        return made[-1]

    yield make
    for cache in made:
        cache.close()
    if server is not None:
        server.stop()


def test_fill_vs_commit(gate: Gate, pg: Database, store: Callable[[], querycache.QueryCache]) -> None:
    """A commit returns while a reader that started before it is still running: the reader's old
    rows are its own answer, but must never be filled for the readers after the commit."""
    cache = store()
    reader, writer, later = (cache.wrap(pg.connect()) for _ in range(3))
    rows, status = held_read(gate, reader, lambda: writer.cursor().execute(
        f"UPDATE {gate.table} SET v = 11 WHERE id = 1"))
    assert (rows, status) == ([(1, 10, 1)], "miss")  # its snapshot was taken before the commit
    assert read(later, gate.gated)[0] == [(1, 11, 1)]  # not the old rows
    assert read(reader, gate.gated)[0] == [(1, 11, 1)]  # nor from the reader's own L1
    assert cache.stats().to_dict()["not_filled"].get("stale_stamp", 0) >= 1


def test_fill_vs_invalidation_and_flush(gate: Gate, pg: Database,
                                        store: Callable[[], querycache.QueryCache]) -> None:
    """``invalidate_tables`` while a read is in flight: the read's fill is refused (the write it
    stands for may have been made outside, e.g. by a migration script). A flush in flight only
    drops what is stored; the fill after it is correct and may stay."""
    cache = store()
    reader, external = cache.wrap(pg.connect()), pg.connect()

    def external_write_then_invalidate() -> None:
        external.cursor().execute(f"UPDATE {gate.table} SET v = 12 WHERE id = 1")  # not through the cache
        cache.invalidate_tables(gate.table)

    assert held_read(gate, reader, external_write_then_invalidate)[0] == [(1, 10, 1)]
    assert read(reader, gate.gated) == ([(1, 12, 1)], "miss")  # the gate is open now
    assert read(reader, gate.gated) == ([(1, 12, 1)], "hit:L1")
    cache.flush()
    gate.shut()
    assert held_read(gate, cache.wrap(pg.connect()), lambda: cache.flush()) == ([(1, 12, 1)], "miss")
    assert read(cache.wrap(pg.connect()), gate.gated)[0] == [(1, 12, 1)]


def _commit_in_other_process(url: str, table: str, value: int, done: Any) -> None:
    import psycopg

    cache = redis_cache(url)
    conn = cache.wrap(psycopg.connect(PG_DSN))
    conn.cursor().execute(f"UPDATE {table} SET v = %s WHERE id = 1", (value,))
    conn.commit()
    done.set()  # after commit() returned
    conn.close()
    cache.close()


def _other_process(url: str, table: str, value: int) -> None:
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    proc = ctx.Process(target=_commit_in_other_process, args=(url, table, value, done))
    proc.start()
    assert done.wait(60), "the other process did not commit"
    proc.join(30)
    assert proc.exitcode == 0


def test_fill_vs_commit_in_another_process(gate: Gate, pg: Database, own_redis: RedisServer) -> None:
    cache = redis_cache(own_redis.url)
    try:
        reader, later = cache.wrap(pg.connect()), cache.wrap(pg.connect())
        rows, _ = held_read(gate, reader, lambda: _other_process(own_redis.url, gate.table, 13))
        assert rows == [(1, 10, 1)]
        assert read(later, gate.gated)[0] == [(1, 13, 1)]
        assert read(reader, gate.gated)[0] == [(1, 13, 1)]
    finally:
        cache.close()


def test_l1_vs_a_commit_in_another_process(gate: Gate, pg: Database, own_redis: RedisServer) -> None:
    """This process answers from L1; another process commits; the first read after its commit()
    returned must see it (the commit waited for this process's acknowledgement)."""
    gate.open()  # no gate needed
    cache = redis_cache(own_redis.url)
    try:
        conn = cache.wrap(pg.connect())
        read(conn, gate.plain)
        assert read(conn, gate.plain) == ([(1, 10)], "hit:L1")
        _other_process(own_redis.url, gate.table, 14)
        assert read(conn, gate.plain)[0] == [(1, 14)]
    finally:
        cache.close()


def test_subscriber_connection_killed_while_another_process_commits(gate: Gate, pg: Database,
                                                                   own_redis: RedisServer) -> None:
    """The subscriber's connection is killed (CLIENT KILL TYPE pubsub) and another process commits
    before it is back: the commit waits out this process's lease, and this process, whose
    subscriber missed the bump, must not answer from L1 afterwards with the old row."""
    import redis

    gate.open()
    cache = redis_cache(own_redis.url)
    try:
        conn = cache.wrap(pg.connect())
        read(conn, gate.plain)
        assert read(conn, gate.plain) == ([(1, 10)], "hit:L1")
        redis.Redis(port=own_redis.port).execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        _other_process(own_redis.url, gate.table, 15)
        assert read(conn, gate.plain)[0] == [(1, 15)]
        _leased(cache.backend)  # the subscriber came back and holds a lease again
        read(conn, gate.plain)
        assert read(conn, gate.plain) == ([(1, 15)], "hit:L1")
    finally:
        cache.close()


def test_coalescing_leader_vs_writer(gate: Gate, pg: Database, store: Callable[[], querycache.QueryCache]) -> None:
    """A leader is stopped in its query; a writer commits; a caller that arrives after the commit
    returned must not be handed the leader's (older) rows; one that arrived before it may be."""
    cache = store()
    leader, early, late, writer = (cache.wrap(pg.connect()) for _ in range(4))
    for conn in (leader, early, late):
        read(conn, f"SELECT count(*) FROM {gate.table}")  # warm: scope and catalog loaded
    threads: list[tuple[threading.Thread, list[Any]]] = []

    def during() -> None:
        threads.append(in_thread(lambda: read(early, gate.gated)))
        time.sleep(0.3)  # the early caller is waiting on the leader's flight (or runs: either is correct)
        writer.cursor().execute(f"UPDATE {gate.table} SET v = 16 WHERE id = 1")
        threads.append(in_thread(lambda: read(late, gate.gated)))
        time.sleep(0.3)

    rows, _ = held_read(gate, leader, during)
    assert rows == [(1, 10, 1)]
    for thread, _ in threads:
        thread.join(30)
    (early_rows, _), (late_rows, late_status) = (out[0] for _, out in threads)
    assert early_rows in ([(1, 10, 1)], [(1, 16, 1)])
    assert late_rows == [(1, 16, 1)], late_status
    assert read(cache.wrap(pg.connect()), gate.gated)[0] == [(1, 16, 1)]
