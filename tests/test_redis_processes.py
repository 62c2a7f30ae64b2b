"""Several processes, one Redis: no read that starts after a commit returned sees older data.

Each test runs real processes (spawned, not forked) against real PostgreSQL / MariaDB and a
real Redis. A writer process commits increments of a counter row and, only after ``commit()``
returned, publishes the committed value in shared memory. Reader processes note that value
BEFORE each read starts and count a stale read whenever the cache answers with less.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from typing import Any

import pytest

from tests.backends.test_redis import REDIS_URL, _redis_up
from tests.conftest import MYSQL, PG_DSN, Database, own_redis_server

DURATION_S = 2.5


def _connect(kind: str) -> Any:
    if kind == "postgres":
        import psycopg

        return psycopg.connect(PG_DSN, autocommit=True)
    import pymysql

    return pymysql.connect(**MYSQL, autocommit=True)


def _cache(url: str, namespace: str) -> Any:
    import querycache

    return querycache.QueryCache.from_dict(
        {"l2": {"backend": "redis", "url": url, "namespace": namespace, "timeout_ms": 200},
         "invalidation": {"lease_ms": 500, "row_level": bool(os.environ.get("QC_TEST_ROW_LEVEL"))}})


def writer(kind: str, url: str, namespace: str, table: str, committed: Any, stop: Any, errors: Any,
           ready: Any) -> None:
    try:
        cache = _cache(url, namespace)
        conn = cache.wrap(_connect(kind))
        cur = conn.cursor()
        with ready.get_lock():
            ready.value += 1
        autocommit = bool(os.environ.get("QC_TEST_ROW_LEVEL"))  # row-level writes: autocommit ones
        value = 0
        while autocommit and not stop.is_set():
            cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
            value += 1
            committed.value = value  # execute() returned: committed
            time.sleep(0.01)
        while not stop.is_set():
            cur.execute("BEGIN" if kind == "postgres" else "START TRANSACTION")
            cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
            cur.execute(f"SELECT v FROM {table} WHERE id = 1")
            value = cur.fetchall()[0][0]
            cur.execute("COMMIT")
            committed.value = value  # only now: commit() has returned
            time.sleep(0.01)
        cache.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"writer: {type(exc).__name__}: {exc}")


def reader(kind: str, url: str, namespace: str, table: str, committed: Any, stop: Any, results: Any,
           errors: Any, ready: Any) -> None:
    try:
        cache = _cache(url, namespace)
        conn = cache.wrap(_connect(kind))
        cur = conn.cursor()
        with ready.get_lock():
            ready.value += 1
        reads = stale = 0
        statuses: dict[str, int] = {}
        while not stop.is_set():
            floor = committed.value  # read BEFORE the query starts
            cur.execute(f"SELECT v FROM {table} WHERE id = 1")
            value = cur.fetchall()[0][0]
            statuses[cur.cache_status] = statuses.get(cur.cache_status, 0) + 1
            reads += 1
            if value < floor:
                stale += 1
                if stale <= 3 and os.environ.get("QC_DEBUG_STALE"):
                    b = cache.backend
                    key = next(iter(conn._l1.keys())) if conn._l1 else None
                    entry = conn._l1.get(key) if key is not None else None
                    vk = entry.version_keys if entry else ()
                    lease_left = b._lease_until - time.monotonic()
                    errors.put(f"DEBUG stale value={value} floor={floor} status={cur.cache_status} "
                               f"epoch={b._epoch[:6]} token={b._l1_token[:12]} lease_left={lease_left:.3f} "
                               f"entry_epoch={entry.epoch[:12] if entry else None} "
                               f"entry_stamp={entry.stamp if entry else None} "
                               f"mirror={[b.versions.get(k) for k in vk]} last_msg={b._last_msg} "
                               f"resyncs={b.resyncs} undelivered={len(b._undelivered)} breaker={b._state}")
                statuses["STALE " + str(cur.cache_status)] = statuses.get("STALE " + str(cur.cache_status), 0) + 1
        results.put((reads, stale, statuses))
        cache.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        errors.put(f"reader: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")


def _run(kind: str, url: str, table: str, readers: int = 3,
         during: Any = None) -> list[tuple[int, int, dict[str, int]]]:
    ctx = mp.get_context("spawn")
    committed = ctx.Value("q", 0)
    ready = ctx.Value("i", 0)
    stop = ctx.Event()
    results: Any = ctx.Queue()
    errors: Any = ctx.Queue()
    namespace = "t" + uuid.uuid4().hex[:8]
    procs = [ctx.Process(target=writer, args=(kind, url, namespace, table, committed, stop, errors, ready))]
    procs += [ctx.Process(target=reader, args=(kind, url, namespace, table, committed, stop, results, errors,
                                               ready)) for _ in range(readers)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while ready.value < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)  # spawn and imports: start the clock once every process is in its loop
    time.sleep(0.5)
    if during is not None:
        during()
    time.sleep(DURATION_S)
    stop.set()
    out = []
    problems = []
    deadline = time.monotonic() + 60
    while len(out) < readers and time.monotonic() < deadline:
        while not errors.empty():
            problems.append(errors.get())
        try:
            out.append(results.get(timeout=0.5))
        except Exception:  # noqa: BLE001 - queue.Empty: keep polling both queues
            if problems:
                break
    for p in procs:
        p.join(timeout=30)
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, problems
    assert len(out) == readers, "a reader neither reported results nor an error"
    assert committed.value > 5, "the writer must have committed during the run"
    return out


def _statuses(out: list[tuple[int, int, dict[str, int]]]) -> dict[str, int]:
    """cache_status counts summed over the readers."""
    total: dict[str, int] = {}
    for _, _, statuses in out:
        for status, n in statuses.items():
            total[status] = total.get(status, 0) + n
    return total


def _table(db: Database) -> str:
    table = db.t("counter")
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
             f"INSERT INTO {table} VALUES (1, 0)")
    return table


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_no_stale_reads_across_processes(kind: str, request: pytest.FixtureRequest) -> None:
    _redis_up(REDIS_URL)
    db: Database = request.getfixturevalue("pg" if kind == "postgres" else "mysql")
    out = _run(kind, REDIS_URL, _table(db))
    reads = sum(r for r, _, _ in out)
    stale = sum(s for _, s, _ in out)
    statuses = _statuses(out)
    assert stale == 0, f"{stale} stale reads of {reads}: {statuses}"
    assert statuses.get("hit:L1", 0) + statuses.get("hit:L2", 0) > 0, statuses


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_no_stale_reads_across_processes_with_row_level_invalidation(kind: str, request: pytest.FixtureRequest,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, with row-level invalidation on (the spawned processes inherit the variable) and
    the writer's UPDATEs pinned to their row (autocommit: the footprint is read FOR UPDATE)."""
    _redis_up(REDIS_URL)
    monkeypatch.setenv("QC_TEST_ROW_LEVEL", "1")
    db: Database = request.getfixturevalue("pg" if kind == "postgres" else "mysql")
    out = _run(kind, REDIS_URL, _table(db))
    stale = sum(s for _, s, _ in out)
    statuses = _statuses(out)
    assert stale == 0, f"{stale} stale reads: {statuses}"
    assert statuses.get("hit:L1", 0) + statuses.get("hit:L2", 0) > 0, statuses


def test_redis_killed_mid_workload(pg: Database, tmp_path: Any) -> None:
    server = own_redis_server(tmp_path)
    server.start()

    def outage() -> None:
        time.sleep(0.5)
        server.stop()
        time.sleep(0.8)
        server.start()

    try:
        out = _run("postgres", server.url, _table(pg), during=outage)
    finally:
        server.stop()
    statuses = _statuses(out)
    assert sum(s for _, s, _ in out) == 0, statuses
    assert statuses.get("bypass:store_unavailable", 0) > 0, statuses


def test_flushall_mid_workload(pg: Database, tmp_path: Any) -> None:
    import redis

    server = own_redis_server(tmp_path)
    server.start()

    def flush() -> None:
        time.sleep(0.7)
        redis.Redis(port=server.port).flushall()

    try:
        out = _run("postgres", server.url, _table(pg), during=flush)
    finally:
        server.stop()
    statuses = _statuses(out)
    assert sum(s for _, s, _ in out) == 0, statuses



# -- a writer killed between commit and bump; a subscriber frozen while another process commits -----


def worker(url: str, namespace: str, table: str, pipe: Any) -> None:
    """Runs commands sent by the test: ("read",) -> (value, status); ("commit", v) -> seconds that
    commit() took; ("commit_and_die", v) -> SIGKILLs itself after COMMIT, before the bump."""
    import signal

    cache = _cache(url, namespace)
    conn = cache.wrap(_connect("postgres"))
    cur = conn.cursor()
    pipe.send("ready")
    while True:
        command = pipe.recv()
        if command[0] == "read":
            cur.execute(f"SELECT v FROM {table} WHERE id = 1")
            pipe.send((cur.fetchall()[0][0], cur.cache_status))
        elif command[0] in ("commit", "commit_and_die"):
            if command[0] == "commit_and_die":
                def die(*_args: Any) -> Any:
                    os.kill(os.getpid(), signal.SIGKILL)

                cache.backend.end_write = die  # the database has committed; phase 2 never runs
            cur.execute("BEGIN")
            cur.execute(f"UPDATE {table} SET v = %s WHERE id = 1", (command[1],))
            started = time.monotonic()
            cur.execute("COMMIT")
            pipe.send(time.monotonic() - started)
        else:
            cache.close()
            pipe.send("closed")
            return


class Worker:
    def __init__(self, url: str, namespace: str, table: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(url, namespace, table, child), daemon=True)
        self.proc.start()
        assert self.pipe.poll(60) and self.pipe.recv() == "ready"

    def ask(self, *command: Any) -> Any:
        self.pipe.send(command)
        assert self.pipe.poll(60), f"worker did not answer {command}"
        return self.pipe.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)


def _value(table: str) -> int:
    with _connect("postgres") as conn:
        row = conn.execute(f"SELECT v FROM {table} WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0])


def _warm_reader(reader: Worker) -> None:
    assert reader.ask("read") == (0, "miss")
    deadline = time.monotonic() + 10
    while reader.ask("read") != (0, "hit:L1"):  # until its subscriber holds a lease
        assert time.monotonic() < deadline, "the reader never got an L1 lease"
        time.sleep(0.05)


def test_writer_killed_between_commit_and_bump(pg: Database) -> None:
    _redis_up(REDIS_URL)
    table = _table(pg)
    namespace = "k" + uuid.uuid4().hex[:8]
    reader, writer_ = Worker(REDIS_URL, namespace, table), Worker(REDIS_URL, namespace, table)
    try:
        _warm_reader(reader)
        writer_.pipe.send(("commit_and_die", 1))
        writer_.proc.join(30)
        assert writer_.proc.exitcode == -9
        assert _value(table) == 1  # the commit landed; its phase-2 bump never ran
        time.sleep(0.6)  # one lease: whatever L1 answered before it learned of phase 1 is over
        # Phase 1 made every copy older than the write stale, and its pending mark keeps the
        # table uncached until the mark expires: every read now goes to the database.
        for _ in range(3):
            value, status = reader.ask("read")
            assert value == 1, status
            assert not status.startswith("hit"), status
    finally:
        reader.stop()
        writer_.stop()


def test_frozen_subscriber_delays_commit_at_most_a_lease(pg: Database) -> None:
    import signal

    _redis_up(REDIS_URL)
    table = _table(pg)
    namespace = "s" + uuid.uuid4().hex[:8]
    reader, writer_ = Worker(REDIS_URL, namespace, table), Worker(REDIS_URL, namespace, table)
    try:
        _warm_reader(reader)
        os.kill(reader.proc.pid, signal.SIGSTOP)
        try:
            waited = writer_.ask("commit", 1)
            # The frozen process never acknowledges; the commit waits for its lease to run out
            # (500 ms), not longer. The bound is loose: this is about "not forever", not speed.
            assert waited < 0.5 + 2.0, waited
            reader.pipe.send(("read",))  # the first thing it does when it wakes up
        finally:
            os.kill(reader.proc.pid, signal.SIGCONT)
        assert reader.pipe.poll(60)
        value, status = reader.pipe.recv()
        assert value == 1, f"a frozen process served {value} from {status} after the commit returned"
        assert reader.ask("read")[0] == 1
    finally:
        reader.stop()
        writer_.stop()
