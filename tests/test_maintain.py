"""Maintained answers (docs/maintenance.md) under interleavings.

On PostgreSQL and MariaDB, each with the memory store and Redis: a write's delta racing a fill
(the fill's state query running while a write commits, before and after the query took its
snapshot), two writers' deltas on one entry (two connections, overlapping transactions, on one
table and on the two tables of a join), a writer rolling back after its pre-read (and a write
failing after it), a savepoint rolled back, a delta query that fails (a lock timeout: the entries
fall back to invalidation, and the write's result, its exception and the transaction state are
what they are without the cache). Their arithmetic (duplicate rows, groups appearing and
disappearing, NULLs, decimals) is in ``tests/test_maintain_values.py``.

Every answer read through the cache is compared, by ``str()`` of its rows, with the same
statement run on a connection the cache does not wrap; every test also asserts on the
``maintain`` stats that the answers were maintained (or fell back, for the reason expected).
The steps run one at a time in one thread: "racing" is a hook in the driver's cursor that runs
the other connection's statements at the moment in question.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any, Callable, Iterator

import pytest

import querycache
from tests.conftest import MYSQL, PG_DSN, Database, make_database, shared_redis_up

REDIS_URL = os.environ.get("QUERYCACHE_TEST_REDIS", "redis://127.0.0.1:6379/0")

Hook = Callable[[str, str], None]
"""Called with the statement's text and "before" or "after" (it was sent and its rows fetched)."""


def hooked_connect(db: Database, hook: list[Hook], autocommit: bool = True) -> Any:
    """A raw connection of ``db`` whose cursors call ``hook[0]`` (when set) around each statement."""
    def around(cursor_class: type) -> type:
        class Hooked(cursor_class):  # type: ignore[misc, valid-type]
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                if hook:
                    hook[0](str(query), "before")
                out = super().execute(query, *args, **kwargs)
                if hook:
                    hook[0](str(query), "after")
                return out
        return Hooked

    if db.name == "postgres":
        import psycopg

        return psycopg.connect(PG_DSN, autocommit=autocommit, cursor_factory=around(psycopg.Cursor))
    import pymysql
    import pymysql.cursors

    return pymysql.connect(**MYSQL, autocommit=autocommit, cursorclass=around(pymysql.cursors.Cursor))


class World:
    """Tables ``t(id, g, x, d)`` and ``u(id, t_id, qty)`` named with their schema, a wrapped reader,
    two wrapped writers and a connection the cache does not wrap (the truth)."""

    def __init__(self, db: Database, cache: querycache.QueryCache) -> None:
        self.db = db
        self.cache = cache
        self.postgres = db.name == "postgres"
        schema = "public" if self.postgres else "test"
        self.t = f"{schema}.{db.t('t')}"
        self.u = f"{schema}.{db.t('u')}"
        db.tables += [self.t, self.u]
        db.admin(f"CREATE TABLE {self.t} (id int PRIMARY KEY, g int, x int, d decimal(12,2), "
                 "CHECK (x IS NULL OR x < 1000))",
                 f"CREATE TABLE {self.u} (id int PRIMARY KEY, t_id int, qty int)")
        self.closing: list[Any] = []
        self.reader = self.wrap(db.connect())
        self.writer = self.wrap(db.connect())
        self.writer2 = self.wrap(db.connect())
        self.direct = self.keep(db.connect())
        self.since: Counter[str] = Counter(self.maintain())

    def keep(self, conn: Any) -> Any:
        self.closing.append(conn)
        return conn

    def wrap(self, raw: Any) -> Any:
        return self.keep(self.cache.wrap(raw))

    def admin(self, *statements: str) -> None:
        self.db.admin(*(s.format(t=self.t, u=self.u) for s in statements))

    def sql(self, text: str) -> str:
        return text.format(t=self.t, u=self.u)

    def truth(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cur = self.direct.cursor()
        cur.execute(self.sql(sql), params)
        rows = list(cur.fetchall())
        cur.close()
        return rows

    def read(self, sql: str, params: tuple[Any, ...] = (), conn: Any = None) -> tuple[list[Any], str]:
        cur = (conn or self.reader).cursor()
        cur.execute(self.sql(sql), params)
        rows = list(cur.fetchall())
        return rows, str(cur.cache_status)

    def check(self, sql: str, params: tuple[Any, ...] = (), hit: bool | None = None, conn: Any = None) -> list[Any]:
        """The cached answer is the database's, by text (``hit``: and it was, or was not, a hit)."""
        rows, status = self.read(sql, params, conn)
        truth = self.truth(sql, params)
        assert str(rows) == str(truth), (self.sql(sql), status, rows, truth, self.maintain())
        if hit is not None:
            assert status.startswith("hit") == hit, (self.sql(sql), status, self.maintain())
        return rows

    def write(self, sql: str, params: tuple[Any, ...] = (), conn: Any = None) -> Any:
        cur = (conn or self.writer).cursor()
        cur.execute(self.sql(sql), params)
        return cur

    def maintain(self) -> dict[str, int]:
        found: dict[str, int] = self.cache.stats().to_dict()["maintain"]
        return found

    def delta(self) -> Counter[str]:
        """The maintain counters since the last call."""
        now = Counter(self.maintain())
        out = now - self.since
        self.since = now
        return out

    def close(self) -> None:
        for conn in reversed(self.closing):
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - closed or broken: closing is all that is left
                pass
            conn.close()


WORLDS = [("postgres", "memory"), ("postgres", "redis"), ("mysql", "memory"), ("mysql", "redis")]
WORLD_IDS = ["pg-memory", "pg-redis", "mariadb-memory", "mariadb-redis"]


def world_of(kind: str, store: str, tmp_path: Any) -> Iterator[World]:
    """A World on ``kind`` with maintenance enabled and the memory store or Redis (a fixture's body)."""
    db = make_database(kind, tmp_path)  # skips (locally) or fails (CI) without the database
    config: dict[str, Any] = {"invalidation": {"maintain": {"enabled": True}}}
    if store == "redis":
        shared_redis_up(REDIS_URL)
        config["l2"] = {"backend": "redis", "url": REDIS_URL, "namespace": "mtn" + uuid.uuid4().hex[:8],
                        "timeout_ms": 2000}
    cache = querycache.QueryCache.from_dict(config)
    w = World(db, cache)
    try:
        yield w
    finally:
        w.close()
        cache.close()
        db.cleanup()


@pytest.fixture(params=WORLDS, ids=WORLD_IDS)
def world(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[World]:
    kind, store = request.param
    yield from world_of(kind, store, tmp_path)


def fallbacks(delta: Counter[str]) -> dict[str, int]:
    return {k: n for k, n in delta.items() if k.startswith(("fallback", "refused"))}


# The reads: aliased (MySQL/MariaDB name an unaliased column by its text), ordered by a unique key.
GROUPED = "SELECT g AS g, count(*) AS n, sum(x) AS s, count(x) AS c FROM {t} GROUP BY g ORDER BY g"
JOINED = ("SELECT a.g AS g, count(*) AS n, sum(b.qty) AS q FROM {t} a JOIN {u} b ON b.t_id = a.id "
          "GROUP BY a.g ORDER BY g")
GLOBAL = "SELECT count(*) AS n, sum(x) AS s, sum(d) AS sd FROM {t} WHERE g = %s"


def seed(w: World) -> None:
    w.admin("INSERT INTO {t} (id, g, x, d) VALUES (1, 1, 10, 1.50), (2, 1, 20, 2.25), (3, 2, 30, NULL), "
            "(4, NULL, 40, 0.10), (5, 2, NULL, 3.00)",
            "INSERT INTO {u} (id, t_id, qty) VALUES (1, 1, 1), (2, 1, 2), (3, 2, 3), (4, 3, 4), (5, 4, 5)")


# -- interleavings -----------------------------------------------------------------------------
@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_write_committing_during_a_fill_state_query(world: World, moment: str) -> None:
    """A write commits while a fill's state query runs: just before it is sent (the query sees the
    write) or just after its rows arrived (its snapshot is older than the write). Either way the
    fill must not be served as fresh if it lacks the write, and later writes are maintained."""
    w = world
    seed(w)
    hook: list[Hook] = []
    reader = w.wrap(hooked_connect(w.db, hook))
    fired: list[str] = []

    def commit_a_write(query: str, when: str) -> None:
        if when == moment and "qc_h" in query and not fired:
            fired.append(query)
            w.write("UPDATE {t} SET x = x + 1 WHERE id = %s", (1,))  # autocommit: committed here
            w.write("UPDATE {u} SET qty = qty + 5 WHERE id = %s", (3,), conn=w.writer2)

    hook.append(commit_a_write)
    # The read the write races may answer as of before the write or after it (it began before the
    # commit and ended after it); every read after it must answer as of after.
    before = w.truth(JOINED)
    racing, _ = w.read(JOINED, conn=reader)
    assert str(racing) in (str(before), str(w.truth(JOINED))), (racing, before, w.truth(JOINED))
    for _ in range(2):
        w.check(JOINED, conn=reader)
        w.check(GROUPED, conn=reader)
    assert len(fired) == 1, fired  # the state query ran once, during the first fill
    hook.clear()
    assert w.delta()["fills"] >= 1
    # The entries are maintained from here on (once filled again where the race made them stale).
    w.check(JOINED, conn=reader)
    w.check(GROUPED, conn=reader)
    w.delta()
    w.write("UPDATE {t} SET g = %s WHERE id = %s", (2, 2))
    w.write("DELETE FROM {u} WHERE id = %s", (5,))
    w.check(JOINED, hit=True, conn=reader)
    w.check(GROUPED, hit=True, conn=reader)
    delta = w.delta()
    assert delta["maintained"] >= 3, delta
    assert not fallbacks(delta), delta


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_refill_racing_a_maintained_write(world: World, moment: str) -> None:
    """A registered entry, invalidated, is filled again while a maintainable write commits during
    the refill's state query: the writer must not update the stale entry, nor the fill hide it."""
    w = world
    seed(w)
    hook: list[Hook] = []
    reader = w.wrap(hooked_connect(w.db, hook))
    w.check(GROUPED, conn=reader)
    w.check(GROUPED, hit=True, conn=reader)
    w.cache.invalidate_tables(w.t.split(".")[1])  # version keys are named by the bare table name
    fired: list[str] = []

    def commit_a_write(query: str, when: str) -> None:
        if when == moment and "qc_h" in query and not fired:
            fired.append(query)
            w.write("UPDATE {t} SET x = x + 100 WHERE id = %s", (3,))

    hook.append(commit_a_write)
    before = w.truth(GROUPED)
    racing, _ = w.read(GROUPED, conn=reader)
    assert str(racing) in (str(before), str(w.truth(GROUPED))), (racing, before, w.truth(GROUPED))
    hook.clear()
    assert fired
    for _ in range(3):
        w.check(GROUPED, conn=reader)
        w.check(GROUPED)
    w.delta()
    w.write("INSERT INTO {t} (id, g, x) VALUES (%s, %s, %s)", (9, 7, 1))
    w.check(GROUPED, hit=True, conn=reader)
    w.check(GROUPED, hit=True)
    delta = w.delta()
    # One entry per reader here: the hooked connection's cursors are another class (another key).
    assert delta["maintained"] >= 1 and not fallbacks(delta), delta


def test_a_read_during_a_writers_delta_work(world: World) -> None:
    """Between the writer's delta queries (before its write) and its commit, another connection
    reads the entry: the answer it is served is the one before the write; after the commit,
    the maintained one."""
    w = world
    seed(w)
    hook: list[Hook] = []
    writer = w.wrap(hooked_connect(w.db, hook))
    w.check(JOINED)
    seen: list[list[Any]] = []

    def read_meanwhile(query: str, when: str) -> None:
        if when == "before" and query.startswith("UPDATE") and not seen:
            seen.append(w.check(JOINED, hit=True))

    hook.append(read_meanwhile)
    w.delta()
    w.write("UPDATE {u} SET t_id = %s WHERE id = %s", (3, 1), conn=writer)
    hook.clear()
    assert seen
    after = w.check(JOINED, hit=True)
    assert str(after) != str(seen[0])
    delta = w.delta()
    assert delta["maintained"] == 1 and not fallbacks(delta), delta


def test_two_writers_overlapping_on_the_tables_of_one_join(world: World) -> None:
    """Writer A updates t in an open transaction: its delta is computed, and it holds the maintainer
    leases of every table its entries read (t and u, the join's). Writer B updates u: it waits for
    u's lease boundedly and falls back (lease_wait), its commit invalidating the join's answer;
    then A commits from a baseline B has moved, and falls back too (concurrent_write). Then B's
    transaction overlaps A's without committing first: A maintains, B's commit invalidates. The
    answers are the database's throughout."""
    w = world
    seed(w)
    a = w.wrap(w.db.connect(autocommit=False))
    w.check(JOINED)
    w.delta()
    w.write("UPDATE {t} SET g = %s WHERE id = %s", (5, 1), conn=a)
    w.write("UPDATE {u} SET qty = qty + 10 WHERE id = %s", (4,), conn=w.writer2)
    delta = w.delta()
    assert delta["fallback:lease_wait"] == 1 and delta["maintained"] == 0, delta
    w.check(JOINED, hit=False)  # B's commit invalidated it (A's write is not committed)
    a.commit()
    delta = w.delta()
    assert delta["fallback:concurrent_write"] == 1 and delta["maintained"] == 0, delta
    w.check(JOINED, hit=False)  # invalidated by A
    w.check(JOINED, hit=True)
    w.delta()
    w.write("UPDATE {t} SET g = %s WHERE id = %s", (1, 1), conn=a)
    b = w.wrap(w.db.connect(autocommit=False))
    w.write("UPDATE {u} SET qty = qty - 10 WHERE id = %s", (4,), conn=b)
    a.commit()
    w.check(JOINED, hit=True)  # A's maintained answer (B's write is not committed)
    b.commit()
    w.check(JOINED, hit=False)
    delta = w.delta()
    assert delta["maintained"] == 1 and delta["fallback:lease_wait"] == 1, delta
    w.check(JOINED, hit=True)


def test_two_writers_overlapping_on_one_table(world: World) -> None:
    """A holds t's maintainer lease (an open transaction that wrote t); B's write of another row of
    t waits for it boundedly and falls back (lease_wait); B commits, then A: A's baseline moved
    (B's bump), so A falls back too. The answer is the database's throughout."""
    w = world
    seed(w)
    a = w.wrap(w.db.connect(autocommit=False))
    w.check(GROUPED)
    w.check(GLOBAL, (1,))
    w.delta()
    w.write("UPDATE {t} SET x = x + 1 WHERE id = %s", (1,), conn=a)
    w.write("UPDATE {t} SET x = x + 1 WHERE id = %s", (2,), conn=w.writer2)
    delta = w.delta()
    assert delta["fallback:lease_wait"] == 2, delta
    w.check(GROUPED, hit=False)
    w.check(GLOBAL, (1,), hit=False)
    a.commit()
    delta = w.delta()
    assert delta["maintained"] == 0 and delta["fallback:concurrent_write"] == 2, delta
    w.check(GROUPED, hit=False)
    w.check(GLOBAL, (1,), hit=False)
    w.write("DELETE FROM {t} WHERE id = %s", (2,), conn=a)  # A's lease was given back at its commit
    a.commit()
    w.check(GROUPED, hit=True)
    w.check(GLOBAL, (1,), hit=True)
    delta = w.delta()
    assert delta["maintained"] == 2 and not fallbacks(delta), delta


@pytest.mark.parametrize("how", ["rollback()", "ROLLBACK"])
def test_a_writer_rolling_back_after_its_pre_read(world: World, how: str) -> None:
    """A transaction's maintained write (pre-read, deltas, write) rolled back: nothing is stored,
    the old answer is still the one served (and still the database's), its lease is given back."""
    w = world
    seed(w)
    a = w.wrap(w.db.connect(autocommit=False))
    w.check(JOINED)
    w.check(GROUPED)
    w.delta()
    w.write("UPDATE {t} SET g = NULL WHERE id = %s", (1,), conn=a)
    w.write("DELETE FROM {u} WHERE t_id = %s", (2,), conn=a)
    if how == "ROLLBACK":
        a.cursor().execute("ROLLBACK")
    else:
        a.rollback()
    # PostgreSQL: a rollback writes nothing, the answers stay. MySQL/MariaDB: a rollback bumps what
    # the transaction wrote (a non-transactional table keeps its writes: the adapter's
    # bump_on_rollback), so they are read again.
    w.check(JOINED, hit=True if w.postgres else None)
    w.check(GROUPED, hit=True if w.postgres else None)
    w.check(JOINED, hit=True)
    delta = w.delta()
    assert delta["maintained"] == 0 and not fallbacks(delta), delta
    w.write("UPDATE {t} SET g = NULL WHERE id = %s", (1,))  # t's lease is free again
    w.check(JOINED, hit=True)
    w.check(GROUPED, hit=True)
    delta = w.delta()
    assert delta["maintained"] == 2 and not fallbacks(delta), delta


def _driver_error(w: World) -> type[BaseException]:
    if w.postgres:
        import psycopg

        return psycopg.Error
    import pymysql

    # Not ``pymysql.err.MySQLError``: once Django's MySQL backend was imported over PyMySQL installed
    # as MySQLdb (tests/test_django.py), ``import MySQLdb.converters`` loaded a second copy of
    # pymysql's submodules under that name and set the ``pymysql.err`` attribute to it; the driver
    # still raises the first copy's classes, which the package's own names are.
    return pymysql.MySQLError


def _in_transaction(conn: Any) -> bool:
    raw = conn.wrapped
    if hasattr(raw, "info"):
        return int(raw.info.transaction_status) != 0
    return bool(raw.server_status & 1)  # SERVER_STATUS_IN_TRANS


def test_a_write_failing_after_its_pre_read(world: World) -> None:
    """The pre-read and the delta queries ran, then the write fails (a CHECK constraint): its own
    error is raised, the transaction state is the uncached one, nothing is maintained, the answer
    stands; an INSERT violating the key likewise."""
    w = world
    seed(w)
    error = _driver_error(w)
    w.check(GROUPED)
    w.delta()
    raw = w.db.connect()
    expected: list[str] = []
    for sql, params in (("UPDATE {t} SET x = 5000 WHERE id = %s", (1,)),
                        ("INSERT INTO {t} (id, g, x) VALUES (%s, %s, %s)", (1, 1, 1))):
        with pytest.raises(error) as uncached:
            raw.cursor().execute(w.sql(sql), params)
        expected.append(f"{type(uncached.value).__name__} {uncached.value.args[:1]}")
        with pytest.raises(error) as cached:
            w.write(sql, params)
        assert f"{type(cached.value).__name__} {cached.value.args[:1]}" == expected[-1]
        assert not _in_transaction(w.writer)
        w.check(GROUPED)
    raw.close()
    # Inside a transaction: the same error, and the transaction in the state the driver leaves.
    a = w.wrap(w.db.connect(autocommit=False))
    b = w.keep(w.db.connect(autocommit=False))
    for conn, rows in ((a, (3, 1)), (b, (5, 2))):  # other rows each: one thread, no lock waits
        conn.cursor().execute(w.sql("UPDATE {t} SET x = x + 1 WHERE id = %s"), rows[:1])
        with pytest.raises(error):
            conn.cursor().execute(w.sql("UPDATE {t} SET x = 5000 WHERE id = %s"), rows[1:])
    if w.postgres:
        assert a.wrapped.info.transaction_status == b.info.transaction_status  # INERROR both
        a.rollback()
        b.rollback()
    else:
        a.commit()  # MariaDB undid the failed statement only: the first update commits
        b.rollback()
    w.check(GROUPED)
    w.check(GROUPED, hit=True)
    delta = w.delta()
    # MariaDB undid the failed statement alone, but a failed statement is not maintained: the
    # committed first update invalidates (docs/maintenance.md, "A write").
    assert delta["maintained"] == 0, delta
    if not w.postgres:
        assert sum(fallbacks(delta).values()) >= 1, delta


@pytest.mark.parametrize("end", ["rollback_to", "release"])
def test_a_savepoint_rolled_back_or_released(world: World, end: str) -> None:
    """BEGIN; write; SAVEPOINT; write; ROLLBACK TO (or RELEASE) the savepoint; COMMIT. Rolled back,
    the states (holding the undone write's delta) are dropped and the entries invalidated
    (savepoint_rollback); released, both writes are maintained."""
    w = world
    seed(w)
    a = w.wrap(w.db.connect(autocommit=False))
    w.check(GROUPED)
    w.check(JOINED)
    w.delta()
    cur = a.cursor()
    cur.execute(w.sql("UPDATE {t} SET x = x + 1 WHERE id = %s"), (1,))
    cur.execute("SAVEPOINT s1")
    cur.execute(w.sql("UPDATE {t} SET g = %s WHERE id = %s"), (9, 2))
    cur.execute("ROLLBACK TO SAVEPOINT s1" if end == "rollback_to" else "RELEASE SAVEPOINT s1")
    a.commit()
    if end == "rollback_to":
        delta = w.delta()
        assert delta["fallback:savepoint_rollback"] == 2 and delta["maintained"] == 0, delta
        w.check(GROUPED, hit=False)
        w.check(JOINED, hit=False)
    else:
        w.check(GROUPED, hit=True)
        w.check(JOINED, hit=True)
        delta = w.delta()
        assert delta["maintained"] == 2 and not fallbacks(delta), delta


def test_a_failed_delta_query_falls_back_and_changes_nothing_else(world: World) -> None:
    """A delta query that fails for real: another session holds an exclusive lock on u, which the
    join's delta queries read, and the writer's lock wait is short. The write of t goes on: its
    result (row count, RETURNING rows) and the transaction state are the uncached ones, the
    entries fall back to invalidation (delta_error), and the answers are the database's."""
    w = world
    seed(w)
    writer = w.wrap(w.db.connect())
    tx_writer = w.wrap(w.db.connect(autocommit=False))
    for conn in (writer, tx_writer):
        cur = conn.wrapped.cursor()
        cur.execute("SET lock_timeout = '100ms'" if w.postgres else "SET SESSION lock_wait_timeout = 1")
        if not w.postgres or conn is tx_writer:
            conn.wrapped.commit()
    w.check(JOINED)
    w.check(GROUPED)
    w.delta()
    locker = w.keep(w.db.connect(autocommit=False))
    lock = (w.sql("LOCK TABLE {u} IN ACCESS EXCLUSIVE MODE") if w.postgres else w.sql("LOCK TABLES {u} WRITE"))
    returning = " RETURNING id, x" if w.postgres else ""

    def locked(run: Callable[[], None]) -> None:
        locker.cursor().execute(lock)
        try:
            run()
        finally:
            if w.postgres:
                locker.rollback()
            else:
                locker.cursor().execute("UNLOCK TABLES")
                locker.rollback()

    results: list[Any] = []

    def autocommit_write() -> None:
        cur = writer.cursor()
        cur.execute(w.sql("UPDATE {t} SET x = x + 1 WHERE id = %s") + returning, (1,))
        results.append((cur.rowcount, cur.fetchall() if w.postgres else None, _in_transaction(writer)))

    locked(autocommit_write)
    assert results == [(1, [(1, 11)] if w.postgres else None, False)], results
    delta = w.delta()
    assert delta["fallback:delta_error"] == 2 and delta["maintained"] == 0, delta
    w.check(JOINED, hit=False)
    w.check(GROUPED, hit=False)
    # In the application's transaction: it goes on as if the cache were not there.
    w.check(JOINED)
    w.check(GROUPED)
    w.delta()

    def in_transaction() -> None:
        cur = tx_writer.cursor()
        cur.execute(w.sql("UPDATE {t} SET g = %s WHERE id = %s") + returning, (3, 2))
        results.append((cur.rowcount, cur.fetchall() if w.postgres else None, _in_transaction(tx_writer)))
        cur.execute(w.sql("SELECT g FROM {t} WHERE id = %s"), (2,))
        results.append([tuple(r) for r in cur.fetchall()])

    locked(in_transaction)
    assert results[1:] == [(1, [(2, 20)] if w.postgres else None, True), [(3,)]], results
    tx_writer.commit()
    delta = w.delta()
    assert delta["fallback:delta_error"] == 2 and delta["maintained"] == 0, delta
    w.check(JOINED, hit=False)
    w.check(GROUPED, hit=False)
    w.write("UPDATE {t} SET g = %s WHERE id = %s", (1, 2))  # no lock: maintained again
    w.check(JOINED, hit=True)
    w.check(GROUPED, hit=True)
    assert w.delta()["maintained"] == 2
