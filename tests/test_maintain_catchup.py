"""Fills under writes (docs/maintenance.md, "Fills under writes"): a maintained read's fill that
writes land during is caught up with the rows they changed, on real PostgreSQL and MariaDB, with
the memory store and Redis.

The writes are made to land at chosen points of the fill (while its state query's snapshot is
open, between reading the log and pinning a new snapshot) by running them from a wrapper around the
store's own ``catchup`` and the snapshot's ``pin``: the fill then proceeds as it would had another
connection committed there. Every answer, the one the filling read gets and the cached one read
after, is compared with the database's own; two mutation checks show the comparison catches a
catch-up that is wrong (the rows two relations share counted twice; a write between the log and
the pin taken as if it were not there).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import pytest

import querycache
from querycache.maintain import catchup, writes
from tests.conftest import Database, maintain_stats, maintaining_cache, make_database

REDIS_URL = os.environ.get("QUERYCACHE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["postgres", "mysql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    database = make_database(request.param, tmp_path)
    yield database
    database.cleanup()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[querycache.QueryCache]:
    qc = maintaining_cache(request.param, "catch")
    yield qc
    qc.close()


class Shop:
    """Two tables, a grouped join over both, and connections: a reader and a writer through the
    cache, and one straight to the database for the truth."""

    def __init__(self, db: Database, cache: querycache.QueryCache) -> None:
        schema = "public" if db.name == "postgres" else "test"
        key = ("id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY" if db.name == "postgres"
               else "id int AUTO_INCREMENT PRIMARY KEY")
        self.t, self.u = f"{schema}.{db.t('t')}", f"{schema}.{db.t('u')}"
        db.tables += [self.u, self.t]
        db.admin(f"CREATE TABLE {self.t} ({key}, g int NOT NULL)",
                 f"CREATE TABLE {self.u} ({key}, t_id int NOT NULL, q int)",
                 f"INSERT INTO {self.t} (g) VALUES " + ", ".join(f"({i % 4})" for i in range(12)),
                 f"INSERT INTO {self.u} (t_id, q) VALUES " + ", ".join(f"({1 + i % 12}, {i})" for i in range(30)))
        self.sql = (f"SELECT t.g AS g, sum(u.q) AS s, count(*) AS n FROM {self.t} t JOIN {self.u} u "
                    f"ON u.t_id = t.id GROUP BY t.g ORDER BY t.g")
        self.cache = cache
        self.reader = cache.wrap(db.connect())
        self.writer = cache.wrap(db.connect())
        self.direct = db.connect()

    def read(self) -> tuple[str, str]:
        cur = self.reader.cursor()
        cur.execute(self.sql)
        return str([tuple(r) for r in cur.fetchall()]), str(cur.cache_status)

    def truth(self) -> str:
        cur = self.direct.cursor()
        cur.execute(self.sql)
        return str([tuple(r) for r in cur.fetchall()])

    def write(self, *statements: str) -> None:
        """One transaction through the cache (autocommit for a single statement)."""
        cur = self.writer.cursor()
        if len(statements) == 1:
            cur.execute(statements[0])
            return
        self.writer.autocommit = False
        for statement in statements:
            cur.execute(statement)
        self.writer.commit()
        self.writer.autocommit = True

    def stats(self) -> dict[str, int]:
        return maintain_stats(self.cache)

    def close(self) -> None:
        for conn in (self.reader, self.writer, self.direct):
            conn.close()


@pytest.fixture
def shop(db: Database, cache: querycache.QueryCache) -> Iterator[Shop]:
    made = Shop(db, cache)
    yield made
    made.close()


def _at_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, n: int, action: Callable[[], None]) -> None:
    """Run ``action`` just before the ``n``-th call of ``owner.name`` (an instance's method, or a class's)."""
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            action()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def _warm(shop: Shop) -> None:
    """A first fill, so that writers maintain the table (and know their keys) from now on."""
    assert shop.read() == (shop.truth(), "miss")
    shop.write(f"UPDATE {shop.u} SET q = q + 100 WHERE id = 1")  # makes the entry's answer move
    rows, _ = shop.read()
    assert rows == shop.truth()


def _refill(shop: Shop) -> None:
    """Make the next read a miss that fills again (a write the cache does not maintain)."""
    shop.cache.invalidate_tables(shop.u.split(".")[1])


def test_a_write_during_the_state_query_is_caught_up(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(shop)
    _refill(shop)
    store = shop.cache.backend
    # The write commits after the state query's snapshot, before the fill reads the log.
    _at_call(monkeypatch, store, "catchup", 1, lambda: shop.write(f"UPDATE {shop.u} SET q = q + 7 WHERE id = 5"))
    rows, status = shop.read()
    assert status == "miss"
    assert rows == shop.truth()  # the answer after the write: the filling read gets it too
    assert shop.stats().get("caught_up", 0) == 1, shop.stats()
    assert shop.read() == (shop.truth(), "hit:L1")


def test_two_relations_in_one_transaction_are_caught_up_once(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(shop)
    _refill(shop)
    store = shop.cache.backend
    # A new row of u joined to a row of t that moves to another group: the join row is in both
    # relations' changes and must be counted once.
    _at_call(monkeypatch, store, "catchup", 1, lambda: shop.write(
        f"INSERT INTO {shop.u} (t_id, q) VALUES (3, 1000)", f"UPDATE {shop.t} SET g = 9 WHERE id = 3"))
    rows, status = shop.read()
    assert (rows, status) == (shop.truth(), "miss"), shop.stats()
    assert shop.stats().get("caught_up", 0) == 1, shop.stats()
    assert shop.read() == (shop.truth(), "hit:L1")


def test_a_write_of_unknown_rows_stops_the_catch_up(shop: Shop, db: Database, cache: querycache.QueryCache,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(shop)
    _refill(shop)
    # Another cache over the same store that does not maintain answers: its writers log no rows.
    config: dict[str, Any] = {"invalidation": {"maintain": {"enabled": False}}}
    if cache.backend.name == "redis":
        config["l2"] = {"backend": "redis", "url": REDIS_URL, "namespace": cache.config.l2.namespace}
    other = querycache.QueryCache.from_dict(config)
    plain = other.wrap(db.connect())
    try:
        before = shop.truth()
        _at_call(monkeypatch, cache.backend, "catchup", 1,
                 lambda: plain.cursor().execute(f"UPDATE {shop.u} SET q = q + 1 WHERE id = 6"))
        rows, status = shop.read()
        assert rows == before  # its snapshot's: the write landed while it ran, and was not caught up
        assert shop.stats().get("catchup:unknown", 0) == 1, shop.stats()
        assert shop.stats().get("caught_up", 0) == 0, shop.stats()
        rows, status = shop.read()
        assert (rows, status) == (shop.truth(), "miss")  # the fill was refused: stamped before the write
    finally:
        plain.close()
        other.close()


def test_a_write_between_the_log_and_the_pin_is_never_taken_in(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(shop)
    _refill(shop)
    store = shop.cache.backend
    _at_call(monkeypatch, store, "catchup", 1, lambda: shop.write(f"UPDATE {shop.u} SET q = q + 7 WHERE id = 5"))
    # The round's new snapshot is pinned after another write, of other rows, landed.
    _at_call(monkeypatch, catchup.Snapshot, "pin", 2,
             lambda: shop.write(f"UPDATE {shop.u} SET q = q + 50 WHERE id = 9"))
    rows, _ = shop.read()
    assert rows == shop.truth() or shop.stats().get("catchup:raced", 0) == 1
    assert shop.stats().get("catchup:raced", 0) == 1, shop.stats()
    rows, status = shop.read()
    assert rows == shop.truth(), (status, shop.stats())


# -- the comparisons catch a wrong catch-up --------------------------------------------------------
@pytest.mark.parametrize("db", ["postgres"], indirect=True)
@pytest.mark.parametrize("cache", ["memory"], indirect=True)
def test_mutation_the_shared_rows_counted_twice_is_caught(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    original = catchup.CatchUp._contributions

    def without_shared(self: catchup.CatchUp, keys: dict[str, list[object]]) -> Any:
        return {part: (added, []) for part, (added, _) in original(self, keys).items()}

    monkeypatch.setattr(catchup.CatchUp, "_contributions", without_shared)
    _warm(shop)
    _refill(shop)
    _at_call(monkeypatch, shop.cache.backend, "catchup", 1, lambda: shop.write(
        f"INSERT INTO {shop.u} (t_id, q) VALUES (3, 1000)", f"UPDATE {shop.t} SET g = 9 WHERE id = 3"))
    rows, _ = shop.read()
    assert shop.stats().get("caught_up", 0) == 1, shop.stats()
    assert rows != shop.truth()


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
@pytest.mark.parametrize("cache", ["memory"], indirect=True)
def test_mutation_a_round_without_its_check_is_caught(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    original = catchup.CatchUp._written
    calls = [0]

    def unchecked(self: catchup.CatchUp, since: int) -> Any:
        calls[0] += 1
        found = original(self, since)
        return (found[0], {}) if calls[0] == 2 and found is not None else found  # the round's check

    monkeypatch.setattr(catchup.CatchUp, "_written", unchecked)
    _warm(shop)
    _refill(shop)
    _at_call(monkeypatch, shop.cache.backend, "catchup", 1,
             lambda: shop.write(f"UPDATE {shop.u} SET q = q + 7 WHERE id = 5"))
    _at_call(monkeypatch, catchup.Snapshot, "pin", 2,
             lambda: shop.write(f"UPDATE {shop.u} SET q = q + 50 WHERE id = 9"))
    shop.read()
    rows, status = shop.read()
    assert status.startswith("hit"), (status, shop.stats())
    assert rows != shop.truth()


# -- one delta query for many entries (docs/maintenance.md, "What it costs") ---------------------
@pytest.mark.parametrize("kind", [int, str])
def test_entries_of_one_text_are_maintained_by_one_batch(shop: Shop, db: Database, kind: type) -> None:
    _batch_scenario(shop, db, kind, expect_right=True)


@pytest.mark.parametrize("db", ["postgres"], indirect=True)
@pytest.mark.parametrize("cache", ["memory"], indirect=True)
def test_mutation_a_batch_that_mixes_up_its_entries_is_caught(shop: Shop, db: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    original = writes._batched

    def rotated(sql: str, entries: list[int], kinds: tuple[str, ...], dialect: str) -> str:
        return original(sql, entries[1:] + entries[:1], kinds, dialect)

    monkeypatch.setattr(writes, "_batched", rotated)
    _batch_scenario(shop, db, int, expect_right=False)


def _batch_scenario(shop: Shop, db: Database, kind: type, expect_right: bool) -> None:
    """Several entries of one parameterized text (another parameter each) maintained by one
    batched delta query per image: a LATERAL join over a VALUES list of their parameters on
    PostgreSQL for typed parameters, a UNION ALL otherwise; each entry must get its own rows."""
    cast = "CAST(%s AS SIGNED)" if db.name == "mysql" else "CAST(%s AS int)"
    param = cast if kind is str else "%s"
    sql = (f"SELECT t.g AS g, sum(u.q) AS s, count(*) AS n FROM {shop.t} t JOIN {shop.u} u ON u.t_id = t.id "
           f"WHERE t.g >= {param} GROUP BY t.g ORDER BY t.g")

    def read(conn: Any, bound: int) -> tuple[str, str]:
        cur = conn.cursor()
        cur.execute(sql, (kind(bound),))
        return str([tuple(r) for r in cur.fetchall()]), str(getattr(cur, "cache_status", "db"))

    bounds = [0, 1, 2, 3]
    for b in bounds:
        assert read(shop.reader, b)[0] == read(shop.direct, b)[0]
    wrong = 0
    for statement in (f"UPDATE {shop.u} SET q = q + 5 WHERE t_id IN (1, 2, 3, 4)",
                      f"INSERT INTO {shop.u} (t_id, q) VALUES (2, 40)",
                      f"DELETE FROM {shop.u} WHERE id IN (7, 8)"):
        shop.write(statement)
        for b in bounds:
            rows, status = read(shop.reader, b)
            wrong += rows != read(shop.direct, b)[0]
            if expect_right:
                assert (rows, status) == (read(shop.direct, b)[0], "hit:L2"), (b, statement, shop.stats())
    if expect_right:
        assert shop.stats().get("maintained", 0) >= 3 * len(bounds), shop.stats()
    else:
        assert wrong > 0, shop.stats()


@pytest.mark.parametrize("cache", ["redis"], indirect=True)
def test_a_bump_the_log_missed_stops_the_catch_up(shop: Shop, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that bumps without logging (a process of a release before fills were caught up):
    its rows are not in the log, but its bump moved the version past the log's last write, which
    the store checks; without that check this fill was stored without the write, and served."""
    import redis

    from querycache.backends.redis.backend import _hashed
    from querycache.backends.redis.scripts import CLOCK
    from querycache.invalidation.keys import table_of

    _warm(shop)
    _refill(shop)
    client = redis.Redis.from_url(REDIS_URL)
    table = shop.u.split(".")[1]
    keys = [k for k in shop.reader.explain(shop.sql)["version_keys"] if table_of(k) == table]

    def old_release_write() -> None:
        shop.direct.cursor().execute(f"UPDATE {shop.u} SET q = q + 3 WHERE id = 11")
        if getattr(shop.direct, "autocommit", True) is not True:
            shop.direct.commit()
        seq = max(int(client.hget(CLOCK, "seq") or 0) + 1, time.time_ns() // 1000)
        client.hset(CLOCK, "seq", seq)
        for key in keys:
            client.set(_hashed("qc:v:", key), seq)

    _at_call(monkeypatch, shop.cache.backend, "catchup", 1, old_release_write)
    shop.read()
    assert shop.stats().get("catchup:unlogged", 0) == 1, shop.stats()
    # What the store holds, read by another process's cache (this emulated bump announced nothing
    # to this process's L1, as a real writer would have).
    other = querycache.QueryCache.from_dict({"invalidation": {"maintain": {"enabled": True}}, "l2": {
        "backend": "redis", "url": REDIS_URL, "namespace": shop.cache.config.l2.namespace}})
    try:
        cur = other.wrap(db.connect()).cursor()
        cur.execute(shop.sql)
        assert (str([tuple(r) for r in cur.fetchall()]), cur.cache_status) == (shop.truth(), "miss")
    finally:
        other.close()
