"""Transactions and session scope: what a cached read may show inside each isolation level."""

from __future__ import annotations

from typing import Any

import pytest

import querycache
from tests.conftest import Database, make_items, run


def raw_rows(conn: Any, sql: str) -> list[Any]:
    cur = conn.cursor()
    cur.execute(sql)
    return list(cur.fetchall())


def _begin(db: Database, conn: Any, level: str) -> None:
    if db.name == "mysql":
        conn.cursor().execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        conn.cursor().execute("START TRANSACTION")
    else:
        conn.cursor().execute(f"BEGIN ISOLATION LEVEL {level}")


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_repeatable_read_sees_its_snapshot(kind: str, request: pytest.FixtureRequest,
                                           cache: querycache.QueryCache) -> None:
    db: Database = request.getfixturevalue("pg" if kind == "postgres" else "mysql")
    table = make_items(db)
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    other_sql = f"SELECT name FROM {table} WHERE id = 2"
    writer = cache.wrap(db.connect())
    tx_conn = cache.wrap(db.connect())
    raw_tx = db.connect()
    run(writer, other_sql)  # an entry filled before the transactions start

    _begin(db, tx_conn, "REPEATABLE READ")
    _begin(db, raw_tx, "REPEATABLE READ")
    assert run(tx_conn, sql) == ([(10,)], "miss"), "the first read of an RR transaction pins the snapshot"
    assert raw_rows(raw_tx, sql) == [(10,)]
    # A read of an entry older than the snapshot, whose table did not change, may hit.
    assert run(tx_conn, other_sql) == ([("item2",)], "hit:L2")

    run(writer, f"UPDATE {table} SET qty = 77 WHERE id = 1")
    assert run(writer, sql)[0] == [(77,)]
    assert run(writer, sql) == ([(77,)], "hit:L1")  # the new value is cached now

    # The transaction must keep seeing what the uncached database shows it: its snapshot.
    expected = raw_rows(raw_tx, sql)
    assert expected == [(10,)]
    rows, status = run(tx_conn, sql)
    assert rows == expected
    assert status == "miss"
    tx_conn.commit()
    raw_tx.commit()
    assert run(tx_conn, sql)[0] == [(77,)]


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_serializable_bypasses_every_tier(kind: str, request: pytest.FixtureRequest,
                                          cache: querycache.QueryCache) -> None:
    db: Database = request.getfixturevalue("pg" if kind == "postgres" else "mysql")
    table = make_items(db)
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    conn = cache.wrap(db.connect())
    run(conn, sql)
    assert run(conn, sql)[1] == "hit:L1"
    _begin(db, conn, "SERIALIZABLE")
    assert run(conn, sql) == ([(10,)], "bypass:tx_isolation")
    assert run(conn, sql) == ([(10,)], "bypass:tx_isolation")
    conn.commit()
    assert run(conn, sql)[1] == "hit:L1"


def test_psycopg_isolation_level_attribute(pg: Database, cache: querycache.QueryCache) -> None:
    import psycopg

    table = make_items(pg)
    conn = cache.wrap(pg.connect(autocommit=False))
    conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    assert run(conn, sql)[1] == "bypass:tx_isolation"
    conn.commit()


def test_read_committed_transactions_keep_hits(pg2: Database, cache: querycache.QueryCache) -> None:
    """psycopg2's default: every statement in a transaction, READ COMMITTED."""
    table = make_items(pg2)
    conn = cache.wrap(pg2.connect(autocommit=False))
    sql = f"SELECT qty FROM {table} WHERE id = 3"
    assert run(conn, sql)[1] == "miss"
    assert run(conn, sql) == ([(30,)], "hit:L1")
    writer = cache.wrap(pg2.connect())
    run(writer, f"UPDATE {table} SET qty = 31 WHERE id = 3")
    # READ COMMITTED: a new statement sees the committed write; so must the cache.
    assert run(conn, sql) == ([(31,)], "miss")
    conn.commit()


def test_transaction_opened_before_wrap_gets_no_hits(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    sql = f"SELECT qty FROM {table} WHERE id = 2"
    run(cache.wrap(db.connect()), sql)
    raw = db.connect()
    raw.cursor().execute("START TRANSACTION" if db.name == "mysql" else "BEGIN")
    raw.cursor().execute(f"UPDATE {table} SET qty = 5 WHERE id = 2")
    conn = cache.wrap(raw)
    assert run(conn, sql) == ([(5,)], "bypass:tx_untracked")
    conn.rollback()
    assert run(conn, sql)[0] == [(20,)]


def test_psycopg_transaction_block_publishes_on_commit(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    conn = cache.wrap(pg.connect())
    reader = cache.wrap(pg.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(reader, sql)
    with conn.transaction():
        conn.execute(f"UPDATE {table} SET qty = 12 WHERE id = 1")
        assert run(conn, sql) == ([(12,)], "bypass:tx_dirty")
        assert run(reader, sql)[0] == [(10,)]
    assert run(reader, sql) == ([(12,)], "miss")


def test_psycopg_copy_invalidates(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    conn = cache.wrap(pg.connect())
    sql = f"SELECT count(*) FROM {table}"
    run(conn, sql)
    cur = conn.cursor()
    with cur.copy(f"COPY {table} (id, name, qty) FROM STDIN") as copy:
        copy.write_row((100, "copied", 1))
    assert run(conn, sql) == ([(6,)], "miss")


def test_search_path_is_part_of_the_scope(pg: Database, cache: querycache.QueryCache) -> None:
    schema_a, schema_b = pg.t("sa"), pg.t("sb")
    pg.admin(f"CREATE SCHEMA {schema_a}", f"CREATE SCHEMA {schema_b}",
             f"CREATE TABLE {schema_a}.things (v TEXT)", f"CREATE TABLE {schema_b}.things (v TEXT)",
             f"INSERT INTO {schema_a}.things VALUES ('a')", f"INSERT INTO {schema_b}.things VALUES ('b')")
    try:
        conn = cache.wrap(pg.connect())
        run(conn, f"SET search_path TO {schema_a}")
        assert run(conn, "SELECT v FROM things") == ([("a",)], "miss")
        assert run(conn, "SELECT v FROM things") == ([("a",)], "hit:L1")
        run(conn, f"SET search_path TO {schema_b}")
        assert run(conn, "SELECT v FROM things") == ([("b",)], "miss")
        conn.cursor().execute("SELECT set_config('search_path', %s, false)", (schema_a,))
        assert run(conn, "SELECT v FROM things")[0] == [("a",)]
    finally:
        pg.admin(f"DROP SCHEMA {schema_a} CASCADE", f"DROP SCHEMA {schema_b} CASCADE")


def test_use_database_is_part_of_the_scope(mysql: Database, cache: querycache.QueryCache) -> None:
    other = mysql.t("db")
    mysql.admin(f"CREATE DATABASE {other}", f"CREATE TABLE {other}.things (v TEXT)",
                f"INSERT INTO {other}.things VALUES ('other')", f"CREATE TABLE {mysql.t('things')} (v TEXT)")
    mysql.tables.append(mysql.t("things"))
    try:
        conn = cache.wrap(mysql.connect())
        run(conn, f"CREATE TABLE IF NOT EXISTS things_{other} (v TEXT)")
        mysql.tables.append(f"things_{other}")
        run(conn, f"USE {other}")
        assert run(conn, "SELECT v FROM things")[0] == [("other",)]
        conn.select_db("test")
        rows, _status = run(conn, f"SELECT v FROM {mysql.t('things')}")
        assert rows == []
    finally:
        mysql.admin(f"DROP DATABASE {other}")


def test_mysql_implicit_commit_publishes(mysql: Database, cache: querycache.QueryCache) -> None:
    table = make_items(mysql)
    conn = cache.wrap(mysql.connect(autocommit=False))
    reader = cache.wrap(mysql.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(reader, sql)
    run(conn, f"UPDATE {table} SET qty = 3 WHERE id = 1")
    other = mysql.t("other")
    mysql.tables.append(other)
    run(conn, f"CREATE TABLE {other} (a INTEGER)")  # commits the UPDATE implicitly
    assert run(reader, sql) == ([(3,)], "miss")


def test_pymysql_default_transactions_pin_their_snapshot(mysql: Database, cache: querycache.QueryCache) -> None:
    """PyMySQL's default is autocommit off: every read is in a REPEATABLE READ transaction."""
    table = make_items(mysql)
    conn = cache.wrap(mysql.connect(autocommit=False))
    sql = f"SELECT qty FROM {table} WHERE id = 4"
    assert run(conn, sql)[1] == "miss"  # opens the transaction: pins the snapshot
    assert run(conn, sql) == ([(40,)], "hit:L1")
    conn.commit()
    assert run(conn, sql)[1] == "miss"  # a new transaction pins again
    assert run(conn, sql)[1] == "hit:L1"
    conn.commit()


@pytest.mark.parametrize("level", ["READ COMMITTED", "REPEATABLE READ"])
def test_stamp_round_trips_only_where_a_snapshot_needs_one(level: str, pg2: Database,
                                                           cache: querycache.QueryCache) -> None:
    """psycopg2's default opens a transaction on every statement: at READ COMMITTED no transaction
    stamp is needed, so neither hits nor commits may pay a store round trip for one."""
    table = make_items(pg2)
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    calls = []
    original = cache.backend.current_stamp

    def counted() -> tuple[str, int]:
        calls.append(1)
        return original()

    cache.backend.current_stamp = counted  # type: ignore[method-assign]
    raw = pg2.connect(autocommit=False)
    raw.set_session(isolation_level=level)
    conn = cache.wrap(raw)
    run(conn, sql)
    conn.commit()
    for _ in range(3):
        _rows, status = run(conn, sql)
        conn.commit()
        assert status == ("hit:L1" if level == "READ COMMITTED" else "miss")
    cur = conn.cursor()
    cur.execute(f"UPDATE {table} SET qty = qty + 1 WHERE id = 1")
    conn.commit()
    assert (len(calls) == 0) == (level == "READ COMMITTED"), len(calls)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_begin_inside_a_transaction_keeps_what_it_wrote(kind: str, request: pytest.FixtureRequest,
                                                        cache: querycache.QueryCache) -> None:
    """PostgreSQL: a second BEGIN is a warning and the transaction goes on (its uncommitted write must
    neither be cached nor forgotten at COMMIT); MySQL: it commits the first one. Found by
    tests/test_model.py: the second BEGIN had reset the wrapper's bookkeeping, so the next read
    filled the shared tiers with the uncommitted row and the COMMIT bumped nothing."""
    db: Database = request.getfixturevalue("pg" if kind == "postgres" else "mysql")
    table = make_items(db)
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    writer = cache.wrap(db.connect())
    reader = cache.wrap(db.connect())
    assert run(reader, sql) == ([(10,)], "miss")
    cur = writer.cursor()
    cur.execute("BEGIN")
    cur.execute(f"UPDATE {table} SET qty = 11 WHERE id = 1")
    cur.execute("BEGIN")  # PostgreSQL: WARNING there is already a transaction in progress
    rows, status = run(writer, sql)
    assert rows == [(11,)]
    if kind == "postgres":
        assert status == "bypass:tx_dirty"
        assert [tuple(r) for r in run(reader, sql)[0]] == [(10,)]  # not the uncommitted row
        cur.execute("COMMIT")
    else:
        cur.execute("COMMIT")  # the second BEGIN already committed; this ends the one it began
    assert [tuple(r) for r in run(reader, sql)[0]] == [(11,)]


def test_a_bypassed_read_that_begins_a_read_committed_transaction_keeps_it_tracked(
        pg: Database, cache: querycache.QueryCache) -> None:
    """A read the cache does not answer (here a skip hint) begins the transaction of a non-autocommit
    connection; at READ COMMITTED the reads after it may still hit (they were all tx_untracked)."""
    table = make_items(pg)
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(cache.wrap(pg.connect()), sql)  # filled
    conn = cache.wrap(pg.connect(autocommit=False))
    assert run(conn, f"/* cache skip */ SELECT qty FROM {table} WHERE id = 2")[1] == "bypass:hint_skip"
    assert conn.wrapped.info.transaction_status == 2  # INTRANS: the read began it
    assert run(conn, sql) == ([(10,)], "hit:L2")
    conn.rollback()
