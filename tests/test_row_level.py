"""Row-level invalidation (issue 10) on real PostgreSQL and MariaDB: every answer is compared with
the same statement run uncached, and hits are asserted where a write could not have changed the
answer. Executions are not trusted to the cache's counters: statuses and values are checked."""

from __future__ import annotations

import random
import uuid
from typing import Any, Iterator

import pytest

import querycache
from querycache.config import Config
from tests.conftest import Database, make_database


@pytest.fixture(params=["postgres", "mysql"])
def shop(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    db = make_database(request.param, tmp_path)
    products, orders = db.t("products"), db.t("orders")
    db.tables += [orders, products]
    db.admin(f"CREATE TABLE {products} (id INTEGER PRIMARY KEY, category INTEGER, name VARCHAR(20), "
             f"price INTEGER, flag VARCHAR(5))",
             f"CREATE TABLE {orders} (id INTEGER PRIMARY KEY, product_id INTEGER, qty INTEGER)")
    db.admin(f"INSERT INTO {products} VALUES " + ", ".join(
        f"({i}, {i % 5}, 'item{i}', {i * 10}, {'NULL' if i % 3 else repr('x')})" for i in range(1, 31)))
    db.admin(f"INSERT INTO {orders} VALUES " + ", ".join(f"({i}, {i % 30 + 1}, {i % 4 + 1})" for i in range(1, 61)))
    yield db
    db.cleanup()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[querycache.QueryCache]:
    if request.param == "memory":
        qc = querycache.QueryCache(Config.from_dict({"invalidation": {"row_level": True}}))
    else:
        from tests.backends.test_redis import REDIS_URL, _leased, _redis_up

        _redis_up(REDIS_URL)
        qc = querycache.QueryCache(Config.from_dict({
            "invalidation": {"row_level": True},
            "l2": {"backend": "redis", "url": REDIS_URL, "timeout_ms": 2000,
                   "namespace": "rl" + uuid.uuid4().hex[:8]}}))
        _leased(qc.backend)  # L1 answers only under a coherence lease
    yield qc
    qc.close()


class Checked:
    """A wrapped connection whose every read is compared with the database's own answer."""

    def __init__(self, db: Database, cache: querycache.QueryCache, autocommit: bool = True) -> None:
        self.db = db
        self.conn = cache.wrap(db.connect(autocommit=autocommit))
        self.raw = db.connect()

    def read(self, sql: str, params: Any = None) -> str:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        got = sorted(tuple(r) for r in cur.fetchall())
        status = str(cur.cache_status)
        check = self.raw.cursor()
        check.execute(sql, params)
        assert got == sorted(tuple(r) for r in check.fetchall()), (sql, params, status)
        return status

    def write(self, sql: str, params: Any = None) -> None:
        self.conn.cursor().execute(sql, params)


def categories(c: Checked, products: str) -> list[str]:
    return [c.read(f"SELECT category, SUM(price), COUNT(*) FROM {products} WHERE category = %s GROUP BY category",
                   (cat,)) for cat in range(5)]


def test_a_write_keeps_every_answer_it_cannot_have_changed(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    c.read(f"SELECT name FROM {products} WHERE id = %s", (8,))
    c.write(f"UPDATE {products} SET price = price + 1 WHERE id = %s", (7,))  # category 2
    assert categories(c, products) == ["hit:L1", "hit:L1", "miss", "hit:L1", "hit:L1"]
    assert c.read(f"SELECT name FROM {products} WHERE id = %s", (8,)) == "hit:L1"
    stats = cache.stats().to_dict()["row_level"]
    assert stats["writes:rows"] == 1 and stats["reads:pinned"] >= 6


def test_an_update_moving_a_row_bumps_its_old_and_new_bucket(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    c.write(f"UPDATE {products} SET category = 4 WHERE id = 7")  # 2 -> 4
    assert categories(c, products) == ["hit:L1", "hit:L1", "miss", "hit:L1", "miss"]


def test_delete_insert_and_multi_row_update(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    c.write(f"DELETE FROM {products} WHERE price > %s", (285,))  # ids 29 (4), 30 (0)
    assert categories(c, products) == ["miss", "hit:L1", "hit:L1", "hit:L1", "miss"]
    c.write(f"INSERT INTO {products} (id, category, name, price, flag) VALUES (%s, %s, %s, %s, NULL)",
            (100, 1, "new", 5))
    assert categories(c, products) == ["hit:L1", "miss", "hit:L1", "hit:L1", "hit:L1"]
    c.write(f"UPDATE {products} SET price = 0 WHERE category = 3")  # several rows, one bucket
    assert categories(c, products) == ["hit:L1", "hit:L1", "hit:L1", "miss", "hit:L1"]


def test_reads_without_a_pin_see_every_write(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    total = f"SELECT SUM(price) FROM {products}"
    either = f"SELECT COUNT(*) FROM {products} WHERE category = 1 OR price > 100"
    c.read(total), c.read(either)
    c.write(f"UPDATE {products} SET price = price + 1 WHERE id = 3")
    assert c.read(total) == "miss" and c.read(either) == "miss"


def test_upserts_and_executemany_are_table_level_and_right(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    if shop.name == "postgres":
        c.write(f"INSERT INTO {products} (id, category, name, price) VALUES (7, 3, 'up', 1) "
                "ON CONFLICT (id) DO UPDATE SET category = EXCLUDED.category, price = EXCLUDED.price")
    else:
        c.write(f"INSERT INTO {products} (id, category, name, price) VALUES (7, 3, 'up', 1) "
                "ON DUPLICATE KEY UPDATE category = VALUES(category), price = VALUES(price)")
    assert set(categories(c, products)) == {"miss"}
    c.conn.cursor().executemany(f"UPDATE {products} SET price = %s WHERE id = %s", [(1, 1), (2, 2)])
    assert set(categories(c, products)) == {"miss"}
    assert cache.stats().to_dict()["row_level"]["writes:table:statement"] >= 1


def test_a_changed_join_key(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products, orders = shop.t("products"), shop.t("orders")
    per_product = (f"SELECT p.name, SUM(o.qty) FROM {orders} o JOIN {products} p ON o.product_id = p.id "
                   "WHERE p.id = %s GROUP BY p.name")
    for pid in (3, 4, 5):
        c.read(per_product, (pid,))
    c.write(f"UPDATE {orders} SET product_id = 4 WHERE id = 2")  # from product 3 to 4
    assert [c.read(per_product, (pid,)) for pid in (3, 4, 5)] == ["miss", "miss", "hit:L1"]


def test_nulls_and_coerced_literals(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    nulls = f"SELECT COUNT(*) FROM {products} WHERE flag IS NULL"
    as_text = f"SELECT COUNT(*) FROM {products} WHERE category = '2'"
    c.read(nulls), c.read(as_text)
    c.write(f"UPDATE {products} SET flag = 'y' WHERE id = 1")  # NULL -> 'y'
    assert c.read(nulls) == "miss"
    c.write(f"UPDATE {products} SET price = 1 WHERE id = 7")  # category 2, compared as '2' above
    assert c.read(as_text) == "miss"
    c.write(f"UPDATE {products} SET flag = NULL WHERE id = 3")  # 'x' -> NULL
    assert c.read(nulls) == "miss"


def test_is_not_null_is_not_pinned_as_is_null(shop: Database, cache: querycache.QueryCache) -> None:
    """sqlglot parses PostgreSQL's ``x IS NOT NULL`` as ``Is(x, NULL, negate=True)`` (MySQL's as
    ``Not(Is(x, NULL))``): it pins no bucket. Pinned as ``x IS NULL`` (a bug, found with the
    maintained answers' tests), a write of a row with a value left the answer stale, in L2 and L1."""
    c = Checked(shop, cache)
    products = shop.t("products")
    not_null = f"SELECT COUNT(*) FROM {products} WHERE flag IS NOT NULL"
    listed = f"SELECT id FROM {products} WHERE category = 1 AND flag IS NOT NULL"
    c.read(not_null), c.read(listed)
    assert c.read(not_null).startswith("hit")
    c.write(f"INSERT INTO {products} (id, category, name, price, flag) VALUES (100, 1, 'new', 5, 'z')")
    assert c.read(not_null) == "miss"
    assert c.read(listed) == "miss"
    c.write(f"UPDATE {products} SET flag = 'w' WHERE id = 100")  # 'z' -> 'w': both not NULL
    assert c.read(not_null) == "miss"


def test_a_generated_column_keeps_its_update_at_table_level(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    table = shop.t("banded")
    shop.tables.insert(0, table)
    expression = "GENERATED ALWAYS AS (price / 100) STORED" if shop.name == "postgres" else "AS (price DIV 100) STORED"
    shop.admin(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, price INTEGER, band INTEGER {expression})",
               f"INSERT INTO {table} (id, price) VALUES (1, 150), (2, 250)")
    by_band = f"SELECT COUNT(*) FROM {table} WHERE band = %s"
    c.read(by_band, (1,))
    c.write(f"UPDATE {table} SET price = 250 WHERE id = %s", (1,))  # band 1 -> 2, computed by the database
    assert c.read(by_band, (1,)) == "miss"
    assert cache.stats().to_dict()["row_level"].get("writes:table:generated_column") == 1


def test_mysql_collation_case(shop: Database, cache: querycache.QueryCache) -> None:
    if shop.name != "mysql":
        pytest.skip("MySQL/MariaDB collations compare 'ITEM7' and 'item7' as equal")
    c = Checked(shop, cache)
    products = shop.t("products")
    by_name = f"SELECT price FROM {products} WHERE name = 'ITEM7'"
    assert c.read(by_name) == "miss"
    c.write(f"UPDATE {products} SET price = 1 WHERE name = 'item7'")
    assert c.read(by_name) == "miss"


def test_rolled_back_writes_leave_answers_right(shop: Database, cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    writer = cache.wrap(shop.connect(autocommit=False))
    cur = writer.cursor()
    cur.execute(f"INSERT INTO {products} (id, category, name, price, flag) VALUES (200, 2, 'z', 1, NULL)")
    writer.rollback()
    categories(c, products)


def test_a_column_pinned_while_a_write_is_in_flight_bumps_the_table(shop: Database,
                                                                     cache: querycache.QueryCache) -> None:
    """The writer computes its footprint from the pinned columns it sees (category); a reader
    then pins a new column (name) and caches the old answer before the commit: at its phase 2
    the writer finds the table's dependency version moved and bumps the whole table."""
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    writer = cache.wrap(shop.connect(autocommit=False))
    writer.cursor().execute(f"INSERT INTO {products} (id, category, name, price, flag) "
                            "VALUES (300, 1, 'late', 1, NULL)")
    by_name = f"SELECT COUNT(*) FROM {products} WHERE name = %s"
    assert c.read(by_name, ("late",)) == "miss"  # 0 rows: the insert is not committed yet
    assert c.read(by_name, ("late",)) == "hit:L1"
    writer.commit()
    assert c.read(by_name, ("late",)) == "miss"  # 1 row, checked against the database
    assert cache.stats().to_dict()["row_level"].get("escalated:dependency_changed", 0) >= 1


def test_a_column_pinned_during_a_psycopg_transaction_block_bumps_the_table(shop: Database,
                                                                           cache: querycache.QueryCache) -> None:
    """The same through psycopg's ``with conn.transaction():``, whose exit publishes the commit
    itself: its phase 2 must check the dependency version too (it did not: the late reader's
    answer was served stale after the block committed)."""
    if shop.name != "postgres":
        pytest.skip("psycopg's transaction() block")
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    writer = cache.wrap(shop.connect(autocommit=True))
    by_name = f"SELECT COUNT(*) FROM {products} WHERE name = %s"
    with writer.transaction():
        writer.cursor().execute(f"INSERT INTO {products} (id, category, name, price, flag) "
                                "VALUES (300, 1, 'late', 1, NULL)")
        assert c.read(by_name, ("late",)) == "miss"  # 0 rows: the insert is not committed yet
        assert c.read(by_name, ("late",)) == "hit:L1"
    assert c.read(by_name, ("late",)) == "miss"  # 1 row, checked against the database
    assert cache.stats().to_dict()["row_level"].get("escalated:dependency_changed", 0) >= 1


def test_random_reads_and_writes_agree_with_the_database(shop: Database, cache: querycache.QueryCache) -> None:
    rng = random.Random(10)
    c = Checked(shop, cache)
    products, orders = shop.t("products"), shop.t("orders")
    reads = [
        (f"SELECT category, SUM(price) FROM {products} WHERE category = %s GROUP BY category",
         lambda: (rng.randrange(5),)),
        (f"SELECT name, price FROM {products} WHERE id = %s", lambda: (rng.randrange(1, 40),)),
        (f"SELECT id FROM {products} WHERE id IN (%s, %s)", lambda: (rng.randrange(1, 40), rng.randrange(1, 40))),
        (f"SELECT COUNT(*) FROM {orders} o JOIN {products} p ON o.product_id = p.id WHERE p.category = %s",
         lambda: (rng.randrange(5),)),
        (f"SELECT SUM(qty) FROM {orders} WHERE product_id = %s", lambda: (rng.randrange(1, 31),)),
        (f"SELECT COUNT(*) FROM {products} WHERE flag IS NULL", lambda: None),
    ]
    writes = [
        (f"UPDATE {products} SET price = price + 1 WHERE id = %s", lambda: (rng.randrange(1, 40),)),
        (f"UPDATE {products} SET category = %s WHERE id = %s", lambda: (rng.randrange(5), rng.randrange(1, 40))),
        (f"UPDATE {orders} SET product_id = %s WHERE id = %s", lambda: (rng.randrange(1, 31), rng.randrange(1, 61))),
        (f"DELETE FROM {products} WHERE id = %s", lambda: (rng.randrange(1, 40),)),
        (f"UPDATE {products} SET flag = NULL WHERE id = %s", lambda: (rng.randrange(1, 40),)),
    ]
    next_id = [1000]

    def insert() -> None:
        next_id[0] += 1
        c.write(f"INSERT INTO {products} (id, category, name, price, flag) VALUES (%s, %s, %s, %s, NULL)",
                (next_id[0], rng.randrange(5), f"n{next_id[0]}", rng.randrange(100)))

    hits = 0
    for _ in range(400):
        roll = rng.random()
        if roll < 0.75:
            sql, make = rng.choice(reads)
            hits += c.read(sql, make()).startswith("hit")
        elif roll < 0.95:
            sql, make = rng.choice(writes)
            c.write(sql, make())
        else:
            insert()
    assert hits > 50  # the cache answered; every answer was checked above


def test_bucket_versions_are_bounded_and_forgetting_them_is_safe(shop: Database,
                                                                 cache: querycache.QueryCache) -> None:
    from querycache.backends import memory

    if cache.backend.name != "memory":
        pytest.skip("the memory store's bound")
    c = Checked(shop, cache)
    products = shop.t("products")
    assert c.read(f"SELECT price FROM {products} WHERE id = %s", (4,)) == "miss"
    assert c.read(f"SELECT price FROM {products} WHERE id = %s", (4,)) == "hit:L1"
    cache.backend._forget_bucket_versions()  # type: ignore[attr-defined]
    assert not [k for k in cache.backend.mirror_versions if memory.__name__ and "\x1d" in k]
    assert c.read(f"SELECT price FROM {products} WHERE id = %s", (4,)) == "miss"  # not fresh: refilled
    c.write(f"UPDATE {products} SET price = 1 WHERE id = 4")
    assert c.read(f"SELECT price FROM {products} WHERE id = %s", (4,)) == "miss"


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_table_level_reader_sees_a_row_level_writer(shop: Database, store: str) -> None:
    """Two caches over one database (two services, or a rolling deploy): the reader without
    row-level invalidation must still see the writer's row-level bumps, which never touch the
    table's own key."""
    def make(row_level: bool) -> querycache.QueryCache:
        settings: dict[str, Any] = {"invalidation": {"row_level": row_level}}
        if store == "redis":
            from tests.backends.test_redis import REDIS_URL, _leased, _redis_up

            _redis_up(REDIS_URL)
            settings["l2"] = {"backend": "redis", "url": REDIS_URL, "timeout_ms": 2000,
                              "namespace": "mx" + uuid.uuid4().hex[:8]}
            qc = querycache.QueryCache(Config.from_dict(settings))
            _leased(qc.backend)
            return qc
        return querycache.QueryCache(Config.from_dict(settings))

    table_level, row_level = make(False), make(True)
    try:
        products = shop.t("products")
        reader = Checked(shop, table_level)
        writer = Checked(shop, row_level)
        point = f"SELECT price FROM {products} WHERE id = %s"
        writer.read(point, (4,))  # the row-level side pins id: its write will bump buckets only
        assert reader.read(point, (4,)) == "miss" and reader.read(point, (4,)) == "hit:L1"
        writer.write(f"UPDATE {products} SET price = 7 WHERE id = 4")
        assert row_level.stats().to_dict()["row_level"]["writes:rows"] == 1
        assert reader.read(point, (4,)) == "miss"  # checked against the database inside read()
    finally:
        table_level.close()
        row_level.close()


def test_writes_inside_a_transaction_are_pinned_under_a_savepoint(shop: Database,
                                                                   cache: querycache.QueryCache) -> None:
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    writer = cache.wrap(shop.connect(autocommit=False))
    cur = writer.cursor()
    cur.execute(f"UPDATE {products} SET price = price + 1 WHERE id = %s", (7,))  # category 2
    cur.execute(f"DELETE FROM {products} WHERE id = %s", (8,))  # category 3
    writer.commit()
    assert categories(c, products) == ["hit:L1", "hit:L1", "miss", "miss", "hit:L1"]
    assert cache.stats().to_dict()["row_level"]["writes:rows"] == 2


def test_a_failing_pre_read_leaves_the_transaction_alive(shop: Database, cache: querycache.QueryCache) -> None:
    """A reader pinned a column that does not exist (its query failed, the column stays
    registered): the writers' pre-read fails; the write still runs, inside the application's
    transaction, and bumps the whole table."""
    c = Checked(shop, cache)
    products = shop.t("products")
    categories(c, products)
    bad = cache.wrap(shop.connect()).cursor()
    with pytest.raises(Exception):  # noqa: B017 - the driver's own "no such column" error
        bad.execute(f"SELECT id FROM {products} WHERE nosuchcolumn = 1")
    writer = cache.wrap(shop.connect(autocommit=False))
    cur = writer.cursor()
    cur.execute(f"UPDATE {products} SET price = price + 1 WHERE id = %s", (7,))
    cur.execute(f"SELECT price FROM {products} WHERE id = %s", (7,))  # the transaction is alive
    assert cur.fetchall()[0][0] == 71
    writer.commit()
    assert set(categories(c, products)) == {"miss"}  # table level: every category
    assert cache.stats().to_dict()["row_level"]["escalated:footprint"] >= 1
    autocommit_writer = cache.wrap(shop.connect())
    autocommit_writer.cursor().execute(f"UPDATE {products} SET price = 1 WHERE id = %s", (9,))
    assert set(categories(c, products)) == {"miss"}


def test_registrations_lost_with_a_redis_restart_are_made_again(tmp_path: Any) -> None:
    """A Redis restart (no persistence) or FLUSHALL forgets which columns readers pin. A process that
    registered a column before must not fill an answer pinned to it in the new incarnation until it
    has registered it there again: writers there would bump only "any" (found by bench/soak.py:
    thousands of stale reads after each restart)."""
    import psycopg

    from tests.conftest import PG_DSN, own_redis_server

    db = make_database("postgres", tmp_path)
    table = db.t("counters")
    db.tables.append(table)
    db.admin(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v INTEGER)", f"INSERT INTO {table} VALUES (1, 0)")
    server = own_redis_server(tmp_path)
    server.start()
    config = {"l2": {"backend": "redis", "url": server.url, "timeout_ms": 2000}}
    reader_cache = querycache.QueryCache.from_dict(config)
    writer_cache = querycache.QueryCache.from_dict(config)
    try:
        reader = reader_cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
        writer = writer_cache.wrap(psycopg.connect(PG_DSN, autocommit=True))
        sql = f"SELECT v FROM {table} WHERE id = %s"

        def read() -> tuple[Any, str]:
            cur = reader.cursor()
            cur.execute(sql, (1,))
            return cur.fetchall()[0][0], str(cur.cache_status)

        assert read() == (0, "miss")  # registers column id
        server.stop()
        server.start()  # empty: a new incarnation, no registrations
        assert read() == (0, "miss")  # not filled: its registration is from the old incarnation
        assert reader_cache.stats().to_dict()["not_filled"].get("dependency_epoch") == 1
        assert read() == (0, "miss")  # registered again, filled
        writer.cursor().execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (1,))
        assert read() == (1, "miss")  # the writer knew the column: the entry was invalidated
        assert read()[0] == 1
    finally:
        reader_cache.close()
        writer_cache.close()
        server.stop()
        db.cleanup()
