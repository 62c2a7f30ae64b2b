"""Maintained answers over PostgreSQL numerics whose scale varies (docs/maintenance.md, "A write").

The promise: a maintained answer is what the database returns for the same statement, value and
representation (``str()`` of the rows). PostgreSQL's ``sum()`` over a numeric has the largest scale
of the inputs it currently sums: 1.5 + 1.25 + 0.75 is 3.50, and once the 1.25 and 0.75 rows are
deleted the sum is 1.5, not 1.50. The scale varies with an unconstrained ``numeric`` column, and
also over constrained columns with expressions such as ``CASE ... ELSE 0 END``. Every read here
is compared, after every write, with the database's own answer to the same statement.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Iterator

import pytest

import querycache
from tests.conftest import (
    Database,
    MysqlDatabase,
    PostgresDatabase,
    _probe,
    maintain_stats,
    maintaining_cache,
)

REDIS_URL = os.environ.get("QUERYCACHE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def npg() -> Iterator[PostgresDatabase]:
    database = PostgresDatabase("numfix_" + uuid.uuid4().hex[:8])
    _probe(database, "PostgreSQL")
    yield database
    database.cleanup()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[querycache.QueryCache]:
    qc = maintaining_cache(request.param, "numfix", timeout_ms=500)
    yield qc
    qc.close()


def _table(db: PostgresDatabase, name: str, columns: str, rows: str) -> str:
    table = f"public.{db.t(name)}"
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {columns})",
             f"INSERT INTO {table} ({rows}")
    return table


class Checker:
    """Reads through a wrapped connection, writes through another, and compares each answer with
    the database's own (a connection the cache does not wrap)."""

    def __init__(self, db: Database, cache: querycache.QueryCache, sql: str) -> None:
        self.sql = sql
        self.cache = cache
        self.reader = cache.wrap(db.connect())
        self.writer = cache.wrap(db.connect())
        self.direct = db.connect()

    def truth(self) -> list[Any]:
        cur = self.direct.cursor()
        cur.execute(self.sql)
        return list(cur.fetchall())

    def read(self) -> tuple[list[Any], str]:
        cur = self.reader.cursor()
        cur.execute(self.sql)
        return list(cur.fetchall()), str(cur.cache_status)

    def check(self, expect_hit: bool = True) -> list[Any]:
        rows, status = self.read()
        truth = self.truth()
        assert str(rows) == str(truth), (rows, truth, self.maintain())
        if expect_hit:
            assert status.startswith("hit"), (status, self.maintain())
        return rows

    def write(self, sql: str) -> None:
        self.writer.cursor().execute(sql)

    def maintain(self) -> dict[str, int]:
        return maintain_stats(self.cache)

    def close(self) -> None:
        for conn in (self.reader, self.writer, self.direct):
            conn.close()


@pytest.fixture
def checkers() -> Iterator[list[Checker]]:
    made: list[Checker] = []
    yield made
    for checker in made:
        checker.close()


def test_a_delete_of_the_largest_scale_rows_gives_the_database_scale(
        npg: PostgresDatabase, cache: querycache.QueryCache, checkers: list[Checker]) -> None:
    table = _table(npg, "t", "g int NOT NULL, x numeric",
                   "g, x) VALUES (1, 1.5), (1, 1.25), (1, 0.75), (2, 2.00), (2, 3.10)")
    c = Checker(npg, cache, f"SELECT g, sum(x) AS s, count(*) AS n FROM {table} GROUP BY g ORDER BY g")
    checkers.append(c)
    assert str(c.check(expect_hit=False)) == "[(1, Decimal('3.50'), 3), (2, Decimal('5.10'), 2)]"
    c.write(f"DELETE FROM {table} WHERE x IN (1.25, 0.75)")
    assert str(c.check()) == "[(1, Decimal('1.5'), 1), (2, Decimal('5.10'), 2)]"
    assert c.maintain().get("maintained", 0) >= 1, c.maintain()
    c.write(f"INSERT INTO {table} (g, x) VALUES (1, 0.125)")  # the scale rises...
    assert str(c.check()) == "[(1, Decimal('1.625'), 2), (2, Decimal('5.10'), 2)]"
    c.write(f"UPDATE {table} SET x = 7 WHERE x = 0.125")  # ...and falls with an update
    assert str(c.check()) == "[(1, Decimal('8.5'), 2), (2, Decimal('5.10'), 2)]"
    c.write(f"UPDATE {table} SET x = 4 WHERE g = 1")  # every input of the group at scale 0
    assert str(c.check()) == "[(1, Decimal('8'), 2), (2, Decimal('5.10'), 2)]"
    c.write(f"DELETE FROM {table} WHERE g = 1")
    c.write(f"INSERT INTO {table} (g, x) VALUES (1, 2.000)")
    assert str(c.check()) == "[(1, Decimal('2.000'), 1), (2, Decimal('5.10'), 2)]"
    c.write(f"DELETE FROM {table} WHERE x = 3.10")  # another group: 2.00 alone
    assert str(c.check()) == "[(1, Decimal('2.000'), 1), (2, Decimal('2.00'), 1)]"
    assert not any(k.startswith(("refused", "fallback")) for k in c.maintain()), c.maintain()


def test_a_global_sum_a_total_and_a_scalar_subquery(
        npg: PostgresDatabase, cache: querycache.QueryCache, checkers: list[Checker]) -> None:
    table = _table(npg, "t", "g int NOT NULL, x numeric",
                   "g, x) VALUES (1, 1.5), (1, 1.25), (2, 0.75), (2, 2)")
    glob = Checker(npg, cache, f"SELECT sum(x) AS s, count(x) AS n FROM {table}")
    total = Checker(npg, cache, f"SELECT g, sum(x) AS s, SUM(SUM(x)) OVER () AS t FROM {table} GROUP BY g ORDER BY g")
    scalar = Checker(npg, cache, f"SELECT g, count(*) AS n, (SELECT sum(u.x) FROM {table} u) AS s "
                                 f"FROM {table} GROUP BY g ORDER BY g")
    checkers.extend([glob, total, scalar])
    for c in checkers:
        c.check(expect_hit=False)
    for write in (f"DELETE FROM {table} WHERE x IN (1.25, 0.75)", f"INSERT INTO {table} (g, x) VALUES (2, 0.001)",
                  f"UPDATE {table} SET x = 0.01 WHERE x = 0.001", f"DELETE FROM {table} WHERE x = 0.01",
                  f"DELETE FROM {table} WHERE g = 1", f"INSERT INTO {table} (g, x) VALUES (1, NULL)"):
        checkers[0].write(write)
        for c in checkers:
            c.check()
    assert str(glob.check()) == "[(Decimal('2'), 1)]"
    assert not any(k.startswith(("refused", "fallback")) for k in glob.maintain()), glob.maintain()


def test_fixed_scales_products_and_case_over_a_constrained_column(
        npg: PostgresDatabase, cache: querycache.QueryCache, checkers: list[Checker]) -> None:
    table = _table(npg, "t", "g int NOT NULL, price numeric(10,2) NOT NULL, qty int NOT NULL, w numeric(8,3)",
                   "g, price, qty, w) VALUES (1, 1.50, 2, 0.5), (1, 2.25, 1, 1.125), (2, 3, 4, NULL)")
    fixed = Checker(npg, cache, f"SELECT g, sum(price) AS s FROM {table} GROUP BY g ORDER BY g")
    product = Checker(npg, cache, f"SELECT g, sum(price * qty) AS s, sum(price * w) AS pw FROM {table} "
                                  "GROUP BY g ORDER BY g")
    # A CASE over numeric(10,2) and 0 is a numeric without a fixed scale: 2.25 and 0.
    case = Checker(npg, cache, f"SELECT g, sum(CASE WHEN qty > 1 THEN price ELSE 0 END) AS s FROM {table} "
                               "GROUP BY g ORDER BY g")
    checkers.extend([fixed, product, case])
    for c in checkers:
        c.check(expect_hit=False)
    for write in (f"DELETE FROM {table} WHERE price = 1.50",
                  f"INSERT INTO {table} (g, price, qty, w) VALUES (2, 9.99, 1, 2)",
                  f"UPDATE {table} SET qty = 5 WHERE price = 2.25", f"UPDATE {table} SET qty = 1 WHERE g = 1",
                  f"DELETE FROM {table} WHERE g = 2 AND qty = 4"):
        checkers[0].write(write)
        for c in checkers:
            c.check()
    assert str(case.check()) == "[(1, Decimal('0')), (2, Decimal('0'))]"
    assert not any(k.startswith(("refused", "fallback")) for k in fixed.maintain()), fixed.maintain()


def test_special_values_and_large_scales_are_not_maintained(
        npg: PostgresDatabase, cache: querycache.QueryCache, checkers: list[Checker]) -> None:
    table = _table(npg, "t", "g int NOT NULL, x numeric", "g, x) VALUES (1, 1.5), (2, 'NaN')")
    nan = Checker(npg, cache, f"SELECT g, sum(x) AS s FROM {table} GROUP BY g ORDER BY g")
    checkers.append(nan)
    nan.check(expect_hit=False)  # NaN has no scale: the read is cached as any other
    assert nan.maintain().get("refused:numeric_scale") == 1, nan.maintain()
    large = Checker(npg, cache, f"SELECT sum(x) AS s FROM {table} WHERE g = 1")
    checkers.append(large)
    large.check(expect_hit=False)
    assert nan.maintain().get("fills") == 1, nan.maintain()
    for write in (f"INSERT INTO {table} (g, x) VALUES (1, 1e-40)",  # a scale beyond the tracked ones
                  f"DELETE FROM {table} WHERE x = 1e-40", f"DELETE FROM {table} WHERE g = 2",
                  f"INSERT INTO {table} (g, x) VALUES (2, 'NaN')"):
        large.write(write)
        for c in checkers:
            c.check(expect_hit=False)
            c.check()
    assert nan.maintain().get("fallback:numeric_scale") == 1, nan.maintain()


def test_other_sums_on_postgresql_are_answered_as_the_database_does(
        npg: PostgresDatabase, cache: querycache.QueryCache, checkers: list[Checker]) -> None:
    """Integers (a bigint or a numeric of scale 0), and an interval (no numeric scale: not
    maintained, its state query fails and the statement runs instead)."""
    table = _table(npg, "t", "g int NOT NULL, i int, b bigint, d interval",
                   "g, i, b, d) VALUES (1, 1, 10, '1 day'), (1, 2, 20, '2 hours'), (2, 3, 30, NULL)")
    ints = Checker(npg, cache, f"SELECT g, sum(i) AS i, sum(b) AS b FROM {table} GROUP BY g ORDER BY g")
    interval = Checker(npg, cache, f"SELECT g, sum(d) AS d FROM {table} GROUP BY g ORDER BY g")
    checkers.extend([ints, interval])
    for c in checkers:
        c.check(expect_hit=False)
    for write in (f"DELETE FROM {table} WHERE i = 1", f"INSERT INTO {table} (g, i, b, d) VALUES (2, 4, 40, '1 hour')"):
        ints.write(write)
        ints.check()
        interval.check(expect_hit=False)
    assert str(ints.check()) == "[(1, 2, Decimal('20')), (2, 7, Decimal('70'))]"
    assert ints.maintain().get("refused:state_query") == 1, ints.maintain()


def test_mariadb_decimals_keep_their_declared_scale(tmp_path: Any, cache: querycache.QueryCache) -> None:
    """MySQL/MariaDB give a DECIMAL expression the scale of its type, whatever the values: the
    state has no multiset of scales there, and the answers stay exact."""
    db = MysqlDatabase("numfix_" + uuid.uuid4().hex[:8])
    _probe(db, "MariaDB")
    table = f"test.{db.t('t')}"
    db.tables.append(table)
    made: list[Checker] = []
    try:
        db.admin(f"CREATE TABLE {table} (id int AUTO_INCREMENT PRIMARY KEY, g int NOT NULL, "
                 "price decimal(10,2) NOT NULL, qty int NOT NULL)",
                 f"INSERT INTO {table} (g, price, qty) VALUES (1, 1.50, 2), (1, 2.25, 1), (2, 3, 4)")
        for sql in (f"SELECT g, sum(price) AS s, count(*) AS n FROM {table} GROUP BY g ORDER BY g",
                    f"SELECT g, sum(CASE WHEN qty > 1 THEN price ELSE 0 END) AS s FROM {table} GROUP BY g ORDER BY g"):
            made.append(Checker(db, cache, sql))
        for c in made:
            c.check(expect_hit=False)
        # The UPDATE changes every row it matches (MySQL's row count is of the rows changed).
        for write in (f"DELETE FROM {table} WHERE price = 1.50",
                      f"INSERT INTO {table} (g, price, qty) VALUES (2, 9.99, 1)",
                      f"UPDATE {table} SET qty = 0 WHERE g = 2"):
            made[0].write(write)
            for c in made:
                c.check()
        assert str(made[1].check()) == "[(1, Decimal('0.00')), (2, Decimal('0.00'))]"
        assert not any(k.startswith(("refused", "fallback")) for k in made[0].maintain()), made[0].maintain()
    finally:
        for c in made:
            c.close()
        db.cleanup()
