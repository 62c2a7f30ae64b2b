"""Model-based test of the freshness promise (hypothesis stateful) on real PostgreSQL.

Several wrapped connections of one process (autocommit psycopg, psycopg at READ COMMITTED and at
REPEATABLE READ without autocommit, psycopg2's default), and with the Redis store a second
process, issue random reads, writes (updates moving rows between groups, deletes, upserts,
inserts that may violate the primary key, multi-row updates, ``executemany``), commits and
rollbacks (driver calls and SQL text), hints, flushes and explicit invalidations.

The model is the database itself: the steps run one at a time, so right after each cached read
the same statement is run uncached on the same raw connection (the same transaction, the same
snapshot under REPEATABLE READ, nothing committed in between). A linearizable database allows
exactly that answer, and every cached answer must equal it. The transaction state a cached read
leaves must be the one an uncached read leaves. Database errors (a primary-key violation, a lock
timeout, a serialization failure) must be the driver's own and are followed by a rollback.

Maintained answers (docs/maintenance.md): the reads of ``MAINTAINABLE`` (joins, grouped and global
aggregates with NULL group keys and NULL summands, ORDER BY ... LIMIT lists, a filtering CTE, a
scalar subquery, a total over the groups) name their tables with their schema, as do the writes of
``QUALIFIED``; with maintenance enabled a write updates their cached answers, and each one is
checked like any other answer. The run must have maintained some (``maintained`` in the stats), or
it proved nothing. The mutation checks at the end run the model with one side of the delta dropped
and require it to find a wrong answer.

Runs ``QUERYCACHE_MODEL_EXAMPLES`` examples (default 40) of ``QUERYCACHE_MODEL_STEPS`` steps
(default 50) per configuration: memory or Redis store, table- or row-level invalidation, and two
with maintenance enabled (memory and table level, Redis and row level; five eighths of the examples).
``QUERYCACHE_MODEL_SHRINK=1`` shrinks a failure to a minimal sequence of steps. Without
``QUERYCACHE_MODEL_EXAMPLES`` the examples are the same on every run (derandomized).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from collections import Counter
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import querycache
from querycache.maintain import writes
from tests.backends.test_redis import REDIS_URL, _leased, _redis_up
from tests.conftest import PG_DSN, Database, make_database

EXAMPLES = int(os.environ.get("QUERYCACHE_MODEL_EXAMPLES", "40"))
STEPS = int(os.environ.get("QUERYCACHE_MODEL_STEPS", "50"))
# Shrinking a failure replays it hundreds of times against the database (minutes): on request only.
PHASES = list(Phase) if os.environ.get("QUERYCACHE_MODEL_SHRINK") else [Phase.explicit, Phase.reuse, Phase.generate]
# A step never waits on a lock another connection of this same thread holds: it fails instead.
OPTIONS = "-c lock_timeout=50"
# Nor on a table's maintainer lease (docs/maintenance.md, "A write": waited for at most 1 s): a lease
# held by another connection of this thread is never given back during the wait, which can only end
# in the fallback it would end in after 1 s (only the time differs).
LEASE_WAIT_S = 0.02

# (sql with {t} and {u}, the kinds of its parameters)
READS: list[tuple[str, tuple[str, ...]]] = [
    ("SELECT id, grp, val FROM {t} WHERE id = %s", ("id",)),
    ("SELECT grp, sum(val), count(*) FROM {t} WHERE grp = %s GROUP BY grp", ("grp",)),
    ("SELECT count(*), sum(val) FROM {t} WHERE grp IN (%s, %s)", ("grp", "grp")),
    ("SELECT id, val FROM {t} WHERE val > %s ORDER BY id", ("val",)),
    ("SELECT a.id, b.id, b.qty FROM {t} a JOIN {u} b ON b.t_id = a.id WHERE a.grp = %s ORDER BY 1, 2", ("grp",)),
    ("SELECT id FROM {t} WHERE grp IS NULL ORDER BY id", ()),
    ("SELECT id, val FROM {t} WHERE val IS NOT NULL AND grp IS NOT NULL ORDER BY id", ()),
    ("SELECT sum(qty), count(*) FROM {u} WHERE t_id = %s", ("id",)),
    ("/* cache ttl=60 */ SELECT count(*), sum(qty) FROM {u}", ()),
    ("SELECT id, grp FROM {t} WHERE id = %s AND grp = %s", ("id", "grp")),
    ("/* cache tier=l1 */ SELECT val FROM {t} WHERE id = %s", ("id",)),
    ("SELECT id, grp, val FROM {t} WHERE grp = 1 ORDER BY id", ()),
    ("SELECT a.grp, count(b.id) FROM {t} a LEFT JOIN {u} b ON b.t_id = a.id AND b.qty > 2 "
     "GROUP BY a.grp ORDER BY 1", ()),
    ("/* cache tables={u} */ SELECT max(val) FROM {t} WHERE id IN (%s, %s, %s)", ("id", "id", "id")),
    ("/* cache skip */ SELECT count(*) FROM {t}", ()),
    ("SELECT b.t_id, sum(b.qty) FROM {u} b WHERE b.t_id IN (SELECT id FROM {t} WHERE grp = %s) "
     "GROUP BY b.t_id ORDER BY 1", ("grp",)),
]
# Maintainable reads (querycache/maintain/shape.py): tables named with their schema ({pt}, {pu}).
# ORDER BY keys are unique (a group key last), so that the database's order is the only one.
MAINTAINABLE: list[tuple[str, tuple[str, ...]]] = [
    ("SELECT a.grp, count(*), sum(b.qty), count(b.qty) FROM {pt} a JOIN {pu} b ON b.t_id = a.id "
     "GROUP BY a.grp ORDER BY 1", ()),
    ("SELECT grp, count(*), sum(val), count(val) FROM {pt} GROUP BY grp", ()),
    ("SELECT count(*), sum(val), count(val) FROM {pt} WHERE grp = %s", ("grp",)),
    ("SELECT b.t_id, sum(b.qty) AS s, count(*) AS n FROM {pu} b GROUP BY b.t_id ORDER BY s DESC, b.t_id LIMIT %s",
     ("limit",)),
    ("SELECT a.grp, count(*) AS n FROM {pt} a, {pu} b WHERE b.t_id = a.id AND b.qty > %s "
     "GROUP BY a.grp ORDER BY n, a.grp DESC LIMIT 2 OFFSET 1", ("val",)),
    ("WITH big AS (SELECT id, grp FROM {pt} WHERE val > %s) SELECT big.grp, count(*), sum(b.qty) "
     "FROM big JOIN {pu} b ON b.t_id = big.id GROUP BY big.grp", ("val",)),
    ("SELECT grp, count(*) AS n, (SELECT sum(b.qty) FROM {pu} b) AS total FROM {pt} GROUP BY grp", ()),
    ("SELECT grp, sum(val) AS s, SUM(SUM(val)) OVER () AS tot FROM {pt} GROUP BY grp", ()),
    ("SELECT count(*), sum(b.qty) FROM {pt} a JOIN {pu} b ON b.t_id = a.id WHERE a.grp = %s", ("grp",)),
    ("SELECT b.qty, count(*), sum(b.t_id) FROM {pu} b GROUP BY b.qty ORDER BY 1 DESC", ()),
    ("SELECT a.grp, count(*) AS n, sum(a.val) FROM {pt} a JOIN {pu} b ON b.t_id = a.id "
     "WHERE b.qty IS NOT NULL AND a.val IS NOT NULL GROUP BY a.grp", ()),
]
READS += MAINTAINABLE
WRITES: list[tuple[str, tuple[str, ...]]] = [
    ("UPDATE {t} SET val = val + %s WHERE id = %s", ("val", "id")),
    ("UPDATE {t} SET grp = %s WHERE id = %s", ("grp", "id")),
    ("UPDATE {t} SET grp = NULL WHERE id = %s", ("id",)),
    ("DELETE FROM {t} WHERE id = %s", ("id",)),
    ("INSERT INTO {t} (id, grp, val) VALUES (%s, %s, %s) "
     "ON CONFLICT (id) DO UPDATE SET grp = excluded.grp, val = excluded.val", ("id", "grp", "val")),
    ("INSERT INTO {t} (id, grp, val) VALUES (%s, %s, %s)", ("id", "grp", "val")),  # may violate the key
    ("INSERT INTO {u} (id, t_id, qty) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING", ("uid", "id", "val")),
    ("UPDATE {u} SET t_id = %s WHERE id = %s", ("id", "uid")),
    ("UPDATE {t} SET val = 0 WHERE grp = %s", ("grp",)),
    ("DELETE FROM {u} WHERE t_id = %s", ("id",)),
    ("UPDATE {u} SET qty = qty + 1 WHERE t_id IN (%s, %s)", ("id", "id")),
]
# Writes that maintenance may apply to (a schema-qualified single-table INSERT/UPDATE/DELETE);
# NULLs into group keys and summands, rows moving between groups, groups emptied and refilled.
QUALIFIED: list[tuple[str, tuple[str, ...]]] = [
    ("UPDATE {pt} SET val = val + %s WHERE id = %s", ("val", "id")),
    ("UPDATE {pt} SET grp = %s WHERE id = %s", ("grp", "id")),
    ("UPDATE {pt} SET grp = NULL WHERE id = %s", ("id",)),
    ("UPDATE {pt} SET val = NULL WHERE id = %s", ("id",)),
    ("DELETE FROM {pt} WHERE id = %s", ("id",)),
    ("INSERT INTO {pt} (id, grp, val) VALUES (%s, %s, %s)", ("id", "grp", "val")),  # may violate the key
    ("INSERT INTO {pu} (id, t_id, qty) VALUES (%s, %s, %s)", ("uid", "id", "val")),  # may violate the key
    ("UPDATE {pu} SET t_id = %s WHERE id = %s", ("id", "uid")),
    ("UPDATE {pu} SET qty = NULL WHERE id = %s", ("uid",)),
    ("UPDATE {pt} SET val = 0 WHERE grp = %s", ("grp",)),
    ("DELETE FROM {pu} WHERE t_id = %s", ("id",)),
    ("UPDATE {pu} SET qty = qty + 1 WHERE t_id IN (%s, %s)", ("id", "id")),
]
WRITES += QUALIFIED
MANY = "UPDATE {t} SET val = %s WHERE id = %s"
PARAMS = {"id": st.integers(1, 8), "grp": st.integers(0, 2), "val": st.integers(0, 9), "uid": st.integers(1, 20),
          "limit": st.integers(0, 4)}
LOCAL = ("auto", "rc", "rr", "pg2")  # the wrapped connections of this process
NON_AUTOCOMMIT = ("rc", "rr", "pg2")


def _tx_status(raw: Any) -> str:
    """'idle', 'intrans' or 'inerror', from the driver."""
    if hasattr(raw, "info"):  # psycopg 3
        return {0: "idle", 2: "intrans", 3: "inerror"}.get(int(raw.info.transaction_status), "other")
    return {0: "idle", 2: "intrans", 3: "inerror"}.get(raw.get_transaction_status(), "other")


def _read_begins(raw: Any, autocommit: bool) -> bool:
    """Whether the uncached driver would begin a transaction before a read, by its own state:
    psycopg2 keeps believing in a transaction that a COMMIT sent as text ended (and then sends
    no BEGIN), psycopg 3 asks the server."""
    if autocommit:
        return False
    import psycopg2.extensions

    if not isinstance(raw, psycopg2.extensions.connection):
        return _tx_status(raw) == "idle"

    return bool(raw.status == psycopg2.extensions.STATUS_READY)


def _comparable(rows: list[Any], sql: str) -> list[tuple[Any, ...]]:
    out = [tuple(r) for r in rows]
    return out if "ORDER BY" in sql else sorted(out, key=repr)


def checked_read(conn: Any, sql: str, params: tuple[Any, ...], autocommit: bool) -> tuple[str, str | None]:
    """Run ``sql`` through the cache, then uncached on the same raw connection; a mismatch is
    returned as a message (None: they agree, and the transaction state is what it should be)."""
    raw = conn.wrapped
    before = _tx_status(raw)
    expected_state = "intrans" if before == "intrans" or _read_begins(raw, autocommit) else "idle"
    cur = conn.cursor()
    cur.execute(sql, params)
    got = _comparable(cur.fetchall(), sql)
    names = [d[0] for d in cur.description]
    status = str(cur.cache_status)
    after = _tx_status(raw)
    if after != expected_state:
        return status, f"{sql} {params}: transaction {before} -> {after}, uncached leaves {expected_state}"
    check = raw.cursor()
    check.execute(sql, params)
    want = _comparable(check.fetchall(), sql)
    want_names = [d[0] for d in check.description]
    check.close()
    # By text: a value equal in Python but not in its type or representation (1 and 1.0, 1.5
    # and 1.50) is another answer.
    if str(got) != str(want) or names != want_names:
        return status, f"{sql} {params} ({status}): cached {names} {got} != database {want_names} {want}"
    return status, None


def _config(store: str, row_level: bool, namespace: str, maintain: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {"invalidation": {"row_level": row_level, "maintain": {"enabled": maintain}}}
    if store == "redis":
        config["l2"] = {"backend": "redis", "url": REDIS_URL, "namespace": namespace, "timeout_ms": 2000}
    return config


def remote(pipe: Any, config: dict[str, Any]) -> None:
    """The second process: a wrapped autocommit connection of its own cache (same Redis)."""
    import psycopg

    writes._LEASE_WAIT_S = LEASE_WAIT_S
    cache = querycache.QueryCache.from_dict(config)
    _leased(cache.backend)
    conn = cache.wrap(psycopg.connect(PG_DSN, autocommit=True, options=OPTIONS))
    pipe.send("ready")
    while True:
        command, sql, params = pipe.recv()
        if command == "stop":
            break
        try:
            if command == "read":
                pipe.send(checked_read(conn, sql, params, True))
            else:
                cur = conn.cursor()
                try:
                    cur.execute(sql, params)
                    pipe.send(("ok", None))
                except psycopg.Error as exc:
                    pipe.send((type(exc).__name__, None))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()
    cache.close()


class Remote:
    def __init__(self, config: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=remote, args=(child, config), daemon=True)
        self.proc.start()
        assert self.pipe.poll(60), "the second process did not start"
        assert self.pipe.recv() == "ready"

    def call(self, command: str, sql: str, params: tuple[Any, ...]) -> tuple[str, str | None]:
        self.pipe.send((command, sql, params))
        assert self.pipe.poll(60), "the second process did not answer"
        answer: tuple[str, str | None] = self.pipe.recv()
        return answer

    def close(self) -> None:
        self.pipe.send(("stop", "", ()))
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


CONFIGS = {"memory-table": ("memory", False, False), "memory-rows": ("memory", True, False),
           "redis-table": ("redis", False, False), "redis-rows": ("redis", True, False),
           "memory-table-maintain": ("memory", False, True), "redis-rows-maintain": ("redis", True, True)}


def _setup(store: str, row_level: bool, maintain: bool,
           tmp_path: Any) -> Iterator[tuple[querycache.QueryCache, Remote | None, Database]]:
    db = make_database("postgres", tmp_path)  # skips (locally) or fails (CI) without PostgreSQL
    if store == "redis":
        _redis_up(REDIS_URL)
    config = _config(store, row_level, "model" + uuid.uuid4().hex[:8], maintain)
    cache = querycache.QueryCache.from_dict(config)
    if store == "redis":
        _leased(cache.backend)
    second = Remote(config) if store == "redis" else None
    waited, writes._LEASE_WAIT_S = writes._LEASE_WAIT_S, LEASE_WAIT_S
    try:
        yield cache, second, db
    finally:
        writes._LEASE_WAIT_S = waited
        if second is not None:
            second.close()
        cache.close()
        db.cleanup()


@pytest.fixture(params=list(CONFIGS.values()), ids=list(CONFIGS))
def setup(request: pytest.FixtureRequest,
          tmp_path: Any) -> Iterator[tuple[querycache.QueryCache, Remote | None, Database]]:
    store, row_level, maintain = request.param
    yield from _setup(store, row_level, maintain, tmp_path)


def test_every_cached_answer_is_the_databases(setup: tuple[querycache.QueryCache, Remote | None, Database]) -> None:
    cache, second, db = setup
    # A maintenance configuration's steps cost about 1.7 times the others' (state queries, delta
    # queries): fewer examples keep the suite well under twice its time without them.
    examples = max(1, EXAMPLES * 5 // 8) if cache.config.invalidation.maintain.enabled else EXAMPLES
    statuses, errors = run_model(cache, second, db, examples, STEPS)
    hits = sum(n for status, n in statuses.items() if "hit:" in status or "coalesced" in status)
    stats = cache.stats().to_dict()
    print(f"\nmodel: {examples} examples x {STEPS} steps; statuses {dict(statuses)}; database errors {dict(errors)}; "
          f"row level {stats['row_level']}; maintain {stats['maintain']}")
    assert hits > 0, statuses  # a run that never hit proves nothing
    if cache.config.invalidation.row_level:
        assert stats["row_level"].get("writes:rows", 0) > 0  # the finer path ran
    if cache.config.invalidation.maintain.enabled:
        # Writes updated cached answers (and each was then read and checked), or nothing was proven.
        assert stats["maintain"].get("maintained", 0) > 0, stats["maintain"]


def run_model(cache: querycache.QueryCache, second: Remote | None, db: Database, examples: int,
              steps: int) -> tuple[Counter[str], Counter[str]]:
    """The state machine run ``examples`` x ``steps`` times; an AssertionError on a wrong answer.
    Returns the statuses of the reads and the database errors met."""
    import psycopg
    import psycopg2

    maintain = cache.config.invalidation.maintain.enabled
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    db_errors = (psycopg.Error, psycopg2.Error)
    tables = (db.t("t"), db.t("u"))
    db.tables += list(tables)
    db.admin(f"CREATE TABLE {tables[0]} (id INTEGER PRIMARY KEY, grp INTEGER, val INTEGER)",
             f"CREATE TABLE {tables[1]} (id INTEGER PRIMARY KEY, t_id INTEGER, qty INTEGER)")

    class Model(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.t, self.u = tables
            # A fresh start through a wrapped connection, so that the cache sees it as a write.
            reset = cache.wrap(psycopg.connect(PG_DSN, autocommit=True, options=OPTIONS))
            for statement in (f"DELETE FROM {self.t}", f"DELETE FROM {self.u}",
                              f"INSERT INTO {self.t} SELECT g, g % 4, g FROM generate_series(1, 7) g",
                              f"INSERT INTO {self.u} SELECT g, 1 + g % 8, g % 5 FROM generate_series(1, 16) g"):
                reset.cursor().execute(statement)
            reset.close()
            rr = psycopg.connect(PG_DSN, options=OPTIONS)
            rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            pg2 = psycopg2.connect(PG_DSN, options=OPTIONS)
            self.conns = {
                "auto": cache.wrap(psycopg.connect(PG_DSN, autocommit=True, options=OPTIONS)),
                "rc": cache.wrap(psycopg.connect(PG_DSN, options=OPTIONS)),
                "rr": cache.wrap(rr),
                "pg2": cache.wrap(pg2),
            }
            self.explicit = False  # the autocommit connection is inside a BEGIN sent as text
            self.hot: list[tuple[str, tuple[Any, ...]]] = []
            self.log: list[str] = []  # what ran, for the failure message

        def sql(self, template: str) -> str:
            return template.format(t=self.t, u=self.u, pt=f"public.{self.t}", pu=f"public.{self.u}")

        def fail(self, message: str) -> None:
            raise AssertionError(message + "\nsteps of this run:\n" + "\n".join(self.log))

        def note(self, line: str) -> None:
            self.log.append(line.replace(self.t, "t").replace(self.u, "u"))

        def recover(self, name: str, exc: BaseException) -> None:
            """After a database error: the driver's own, then a rollback as the application would."""
            errors[type(exc).__name__] += 1
            conn = self.conns[name]
            if name == "auto":
                if self.explicit or _tx_status(conn.wrapped) != "idle":
                    conn.cursor().execute("ROLLBACK")
                self.explicit = False
            else:
                conn.rollback()

        @initialize(data=st.data())
        def choose_workload(self, data: st.DataObject) -> None:
            """The example's hot statements: most reads repeat one of them, so that the cache holds
            answers for the writes to make stale."""
            for _ in range(data.draw(st.integers(2, 5), label="hot statements")):
                self.hot.append(self.draw_read(data))
            if maintain:
                # With maintenance enabled, maintainable reads for the writes to update.
                for _ in range(data.draw(st.integers(1, 3), label="maintainable statements")):
                    template, kinds = data.draw(st.sampled_from(MAINTAINABLE), label="maintainable")
                    self.hot.append((self.sql(template), tuple(data.draw(PARAMS[k]) for k in kinds)))

        def draw_read(self, data: st.DataObject) -> tuple[str, tuple[Any, ...]]:
            template, kinds = READS[data.draw(st.integers(0, len(READS) - 1), label="read")]
            return self.sql(template), tuple(data.draw(PARAMS[k]) for k in kinds)

        def observe(self, data: st.DataObject) -> None:
            """A hot statement (now and then another one) read on one to three connections in
            turn, each answer checked: what follows every other step."""
            index = data.draw(st.integers(0, len(self.hot)), label="hot statement")
            sql, params = self.hot[index] if index < len(self.hot) else self.draw_read(data)
            for name in data.draw(st.lists(st.sampled_from(LOCAL), min_size=1, max_size=3), label="readers"):
                status, problem = checked_read(self.conns[name], sql, params, name == "auto")
                statuses[f"{name} {status}"] += 1
                self.note(f"  {name}: {sql} {params} -> {status}")
                if problem:
                    self.fail(f"{name}: {problem}")

        def attempt(self, name: str, what: str, run: Any) -> None:
            outcome = "ok"
            try:
                run(self.conns[name].cursor())
            except db_errors as exc:
                outcome = type(exc).__name__
                self.recover(name, exc)
            self.note(f"{name}: {what} -> {outcome}")

        def maybe_end(self, name: str, data: st.DataObject) -> None:
            if name in NON_AUTOCOMMIT:
                self.end_transaction(name, data.draw(st.sampled_from([None, "commit", "rollback", "COMMIT"]),
                                                     label="then"))

        def end_transaction(self, name: str, how: str | None) -> None:
            """commit() / rollback(), or the same sent as SQL text."""
            if how is None:
                return
            conn = self.conns[name]
            try:
                if how.islower():
                    getattr(conn, how)()
                else:
                    conn.cursor().execute(how)
            except db_errors as exc:
                self.recover(name, exc)
            self.note(f"{name}: {how}")

        @rule(data=st.data())
        def read(self, data: st.DataObject) -> None:
            self.observe(data)

        @rule(name=st.sampled_from(LOCAL), which=st.integers(0, len(WRITES) - 1), data=st.data())
        def write(self, name: str, which: int, data: st.DataObject) -> None:
            template, kinds = WRITES[which]
            params = tuple(data.draw(PARAMS[k]) for k in kinds)
            self.attempt(name, f"{template} {params}", lambda cur: cur.execute(self.sql(template), params))
            self.maybe_end(name, data)
            self.observe(data)

        @precondition(lambda self: maintain)
        @rule(name=st.sampled_from(LOCAL), which=st.integers(0, len(QUALIFIED) - 1), data=st.data())
        def maintained_write(self, name: str, which: int, data: st.DataObject) -> None:
            """A maintainable hot statement read (and checked) on the autocommit connection, which
            fills it with its state outside any transaction, then a write maintenance may apply to:
            without this most writes would find the answers they could update already dropped by
            the writes before them."""
            maintainable = [(sql, params) for sql, params in self.hot if "public." in sql]
            sql, params = data.draw(st.sampled_from(maintainable), label="maintained statement")
            status, problem = checked_read(self.conns["auto"], sql, params, True)
            statuses[f"auto {status}"] += 1
            self.note(f"  auto: {sql} {params} -> {status}")
            if problem:
                self.fail(f"auto: {problem}")
            template, kinds = QUALIFIED[which]
            write_params = tuple(data.draw(PARAMS[k]) for k in kinds)
            self.attempt(name, f"{template} {write_params}", lambda cur: cur.execute(self.sql(template), write_params))
            self.maybe_end(name, data)
            self.observe(data)

        @rule(name=st.sampled_from(LOCAL), data=st.data())
        def write_many(self, name: str, data: st.DataObject) -> None:
            rows = data.draw(st.lists(st.tuples(PARAMS["val"], PARAMS["id"]), min_size=1, max_size=3))
            self.attempt(name, f"executemany {MANY} {rows}", lambda cur: cur.executemany(self.sql(MANY), rows))
            self.maybe_end(name, data)
            self.observe(data)

        @rule(name=st.sampled_from(NON_AUTOCOMMIT), how=st.sampled_from(["commit", "rollback", "COMMIT", "ROLLBACK"]),
              data=st.data())
        def end(self, name: str, how: str, data: st.DataObject) -> None:
            self.end_transaction(name, how)
            self.observe(data)

        @rule(statement=st.sampled_from(["BEGIN", "COMMIT", "ROLLBACK"]), data=st.data())
        def begin_or_end_as_text(self, statement: str, data: st.DataObject) -> None:
            """BEGIN, COMMIT or ROLLBACK as SQL text on the autocommit connection (out of place, each
            is a warning on PostgreSQL). What is drawn never depends on the database's answers
            (a lock timeout is timing): hypothesis must be able to replay a run."""
            self.explicit = statement == "BEGIN"
            self.attempt("auto", statement, lambda cur: cur.execute(statement))
            self.observe(data)

        @rule(tier=st.sampled_from(["l1", "l2", None]), data=st.data())
        def flush(self, tier: str | None, data: st.DataObject) -> None:
            cache.flush(tier=tier)
            self.note(f"flush {tier}")
            self.observe(data)

        @rule(table=st.sampled_from(["t", "u"]), data=st.data())
        def invalidate(self, table: str, data: st.DataObject) -> None:
            cache.invalidate_tables(getattr(self, table))
            self.note(f"invalidate {table}")
            self.observe(data)

        @precondition(lambda self: second is not None)
        @rule(data=st.data())
        def remote_read(self, data: st.DataObject) -> None:
            assert second is not None
            index = data.draw(st.integers(0, len(self.hot)), label="hot statement")
            sql, params = self.hot[index] if index < len(self.hot) else self.draw_read(data)
            status, problem = second.call("read", sql, params)
            statuses["remote " + status] += 1
            self.note(f"  second process: {sql} {params} -> {status}")
            if problem:
                self.fail(f"second process: {problem}")

        @precondition(lambda self: second is not None)
        @rule(which=st.integers(0, len(WRITES) - 1), data=st.data())
        def remote_write(self, which: int, data: st.DataObject) -> None:
            assert second is not None
            template, kinds = WRITES[which]
            params = tuple(data.draw(PARAMS[k]) for k in kinds)
            outcome, problem = second.call("write", self.sql(template), params)
            self.note(f"second process: {template} {params} -> {outcome}")
            if problem:
                self.fail(f"second process: {problem}")
            if outcome != "ok":
                errors[outcome] += 1
            self.observe(data)

        @invariant()
        def no_failed_transaction_is_left(self) -> None:
            statuses["(steps)"] += 1
            for name, conn in self.conns.items():
                assert _tx_status(conn.wrapped) != "inerror", name

        def teardown(self) -> None:
            session = self.conns["auto"]._session
            for conn in self.conns.values():
                try:
                    conn.rollback()
                finally:
                    conn.close()
            store = session.context.maintain
            if store is not None:
                # Every transaction ended: no table's maintainer lease is left held (a leaked one
                # would turn every maintainable write of the table into a fallback for 10 s).
                for table in (self.t, self.u):
                    key = session.version_key(table)
                    assert store.lease_maintainer(key, "probe", 1), f"maintainer lease of {table} held"
                    store.release_maintainer(key, "probe")

    run_state_machine_as_test(Model, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None, phases=PHASES,
        # The default run (CI) draws the same steps every time; QUERYCACHE_MODEL_EXAMPLES draws new ones.
        derandomize="QUERYCACHE_MODEL_EXAMPLES" not in os.environ,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    return statuses, errors


MUTATION_EXAMPLES = 20


def _mismatch_in(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it groups) is the model's report of a wrong answer."""
    if isinstance(exc, AssertionError) and "!= database" in str(exc):
        return True
    return any(_mismatch_in(e) for e in getattr(exc, "exceptions", ()))


@pytest.mark.parametrize("dropped", ["before", "after"])
def test_the_model_finds_a_maintenance_without_one_delta_side(dropped: str, tmp_path: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation check of the issue: with the rows a write's delta queries read before it (or
    after it) ignored, the model above must find a maintained answer that is not the database's."""
    real = writes.StatementMaintenance._apply

    def mutated(self: writes.StatementMaintenance, befores: Any, afters: Any) -> None:
        if dropped == "before" and befores is not None:
            befores = {}
        if dropped == "after" and afters is not None:
            afters = {part: [] for part in afters}
        real(self, befores, afters)

    monkeypatch.setattr(writes.StatementMaintenance, "_apply", mutated)
    made = _setup("memory", False, True, tmp_path)
    cache, second, db = next(made)
    try:
        # The wrong answer, or hypothesis's report that its replay of the failing example did not
        # fail again (the cache's state carries over between examples: it may not), holding it.
        with pytest.raises((AssertionError, FlakyFailure)) as found:
            run_model(cache, second, db, MUTATION_EXAMPLES, STEPS)
        assert _mismatch_in(found.value), found.value
        assert cache.stats().to_dict()["maintain"].get("maintained", 0) > 0
    finally:
        made.close()
