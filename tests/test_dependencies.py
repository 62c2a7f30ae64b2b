"""Dependencies the SQL text does not show: views, partitions, triggers, FK cascades, functions."""

from __future__ import annotations

import time

import querycache
from tests.conftest import Database, make_items, run


def _cached_then_fresh(db: Database, reader_conn: object, read_sql: str, write: str, writer_conn: object,
                       expect_before: list[object], expect_after: list[object]) -> None:
    assert run(reader_conn, read_sql)[0] == expect_before
    assert run(reader_conn, read_sql) == (expect_before, "hit:L1")
    executed = db.executions(read_sql)
    run(writer_conn, write)
    rows, status = run(reader_conn, read_sql)
    assert rows == expect_after
    assert status == "miss"
    assert db.executions(read_sql) == executed + 1


def test_write_to_view_base_table_invalidates_view_read(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    view = db.t("big_items")
    db.views.append(view)
    db.admin(f"CREATE VIEW {view} AS SELECT id, name FROM {table} WHERE qty >= 30")
    reader = cache.wrap(db.connect())
    writer = cache.wrap(db.connect())
    _cached_then_fresh(db, reader, f"SELECT count(*) FROM {view}", f"UPDATE {table} SET qty = 0 WHERE id = 5",
                       writer, [(3,)], [(2,)])


def test_view_over_view(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    inner, outer = db.t("v_inner"), db.t("v_outer")
    db.views += [inner, outer]
    db.admin(f"CREATE VIEW {inner} AS SELECT id, qty FROM {table}",
             f"CREATE VIEW {outer} AS SELECT sum(qty) AS total FROM {inner}")
    reader = cache.wrap(db.connect())
    _cached_then_fresh(db, reader, f"SELECT total FROM {outer}", f"DELETE FROM {table} WHERE id = 1",
                       cache.wrap(db.connect()), [(150,)], [(140,)])


def test_trigger_writes_invalidate_their_targets(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    audit = db.t("audit")
    db.tables.append(audit)
    db.admin(f"CREATE TABLE {audit} (n INTEGER)")
    trigger = db.t("trg")
    if db.name == "sqlite":
        db.admin(f"CREATE TRIGGER {trigger} AFTER UPDATE ON {table} BEGIN INSERT INTO {audit} VALUES (1); END")
    elif db.name == "mysql":
        db.admin(f"CREATE TRIGGER {trigger} AFTER UPDATE ON {table} FOR EACH ROW INSERT INTO {audit} VALUES (1)")
    else:
        fn = db.t("trg_fn")
        db.admin(f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS "
                 f"$$ BEGIN INSERT INTO {audit} VALUES (1); RETURN NEW; END $$",
                 f"CREATE TRIGGER {trigger} AFTER UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {fn}()")
    reader = cache.wrap(db.connect())
    _cached_then_fresh(db, reader, f"SELECT count(*) FROM {audit}", f"UPDATE {table} SET qty = 1 WHERE id = 1",
                       cache.wrap(db.connect()), [(0,)], [(1,)])
    if db.name == "postgres":
        db.admin(f"DROP TABLE {table} CASCADE", f"DROP FUNCTION {db.t('trg_fn')}()")


def test_fk_cascade_invalidates_children(db: Database, cache: querycache.QueryCache) -> None:
    parent, child = db.t("parent"), db.t("child")
    db.tables += [parent, child]
    db.admin(f"CREATE TABLE {parent} (id INTEGER PRIMARY KEY)",
             f"CREATE TABLE {child} (id INTEGER PRIMARY KEY, parent_id INTEGER, "
             f"FOREIGN KEY (parent_id) REFERENCES {parent}(id) ON DELETE CASCADE)",
             f"INSERT INTO {parent} VALUES (1), (2)",
             f"INSERT INTO {child} VALUES (10, 1), (11, 1), (12, 2)")
    reader = cache.wrap(db.connect())
    _cached_then_fresh(db, reader, f"SELECT count(*) FROM {child}", f"DELETE FROM {parent} WHERE id = 1",
                       cache.wrap(db.connect()), [(3,)], [(1,)])


def test_partition_write_invalidates_parent_and_siblings(pg: Database, cache: querycache.QueryCache) -> None:
    parent = pg.t("events")
    pg.tables.append(parent)
    pg.admin(f"CREATE TABLE {parent} (id INTEGER, kind TEXT) PARTITION BY LIST (kind)",
             f"CREATE TABLE {parent}_a PARTITION OF {parent} FOR VALUES IN ('a')",
             f"CREATE TABLE {parent}_b PARTITION OF {parent} FOR VALUES IN ('b')",
             f"INSERT INTO {parent} VALUES (1, 'a'), (2, 'b')")
    reader = cache.wrap(pg.connect())
    writer = cache.wrap(pg.connect())
    # A write to one partition changes a read of the parent...
    _cached_then_fresh(pg, reader, f"SELECT count(*) FROM {parent}", f"INSERT INTO {parent}_a VALUES (3, 'a')",
                       writer, [(2,)], [(3,)])
    # ...and a write through the parent changes a read of the partition.
    _cached_then_fresh(pg, reader, f"SELECT count(*) FROM {parent}_b", f"INSERT INTO {parent} VALUES (4, 'b')",
                       writer, [(1,)], [(2,)])


def test_inheritance_child_write_invalidates_parent(pg: Database, cache: querycache.QueryCache) -> None:
    parent, child = pg.t("base"), pg.t("derived")
    pg.tables += [parent, child]
    pg.admin(f"CREATE TABLE {parent} (id INTEGER)", f"CREATE TABLE {child} () INHERITS ({parent})",
             f"INSERT INTO {parent} VALUES (1)")
    reader = cache.wrap(pg.connect())
    _cached_then_fresh(pg, reader, f"SELECT count(*) FROM {parent}", f"INSERT INTO {child} VALUES (2)",
                       cache.wrap(pg.connect()), [(1,)], [(2,)])


def test_schema_qualified_and_quoted_spellings_share_versions(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    reader = cache.wrap(pg.connect())
    writer = cache.wrap(pg.connect())
    _cached_then_fresh(pg, reader, f'SELECT count(*) FROM public."{table}"',
                       f"DELETE FROM {table.upper()} WHERE id = 1", writer, [(5,)], [(4,)])


def test_volatile_user_function_is_not_cached(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    volatile, immutable = pg.t("vol"), pg.t("imm")
    pg.admin(f"CREATE FUNCTION {volatile}(x integer) RETURNS integer LANGUAGE sql VOLATILE AS 'SELECT x + 1'",
             f"CREATE FUNCTION {immutable}(x integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT x + 1'")
    try:
        conn = cache.wrap(pg.connect())
        sql = f"SELECT {volatile}(qty) FROM {table} WHERE id = 1"
        assert {run(conn, sql)[1] for _ in range(2)} == {"bypass:volatile"}
        sql = f"SELECT {immutable}(qty) FROM {table} WHERE id = 1"
        assert [run(conn, sql)[1] for _ in range(2)] == ["miss", "hit:L1"]
    finally:
        pg.admin(f"DROP FUNCTION {volatile}(integer)", f"DROP FUNCTION {immutable}(integer)")


def test_view_created_after_wrap_is_resolved(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    run(conn, f"SELECT count(*) FROM {table}")  # loads the catalog
    view = db.t("late_view")
    db.views.append(view)
    db.admin(f"CREATE VIEW {view} AS SELECT id FROM {table}")  # by another client: the catalog is old
    first = run(conn, f"SELECT count(*) FROM {view}")
    assert first[0] == [(5,)]
    assert first[1] in ("bypass:unknown_relation", "miss")
    time.sleep(1.1)  # the catalog is re-read for unknown names at most once a second
    assert run(conn, f"SELECT count(*) FROM {view}") == ([(5,)], "miss")
    assert run(conn, f"SELECT count(*) FROM {view}") == ([(5,)], "hit:L1")
    run(cache.wrap(db.connect()), f"DELETE FROM {table} WHERE id = 1")
    assert run(conn, f"SELECT count(*) FROM {view}") == ([(4,)], "miss")


def test_ddl_through_wrapper_reloads_catalog(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    view = db.t("ddl_view")
    db.views.append(view)
    run(conn, f"CREATE VIEW {view} AS SELECT id FROM {table} WHERE id > 2")
    sql = f"SELECT count(*) FROM {view}"
    assert [run(conn, sql)[1] for _ in range(2)] == ["miss", "hit:L1"]
    run(conn, f"DELETE FROM {table} WHERE id = 5")
    assert run(conn, sql) == ([(2,)], "miss")
