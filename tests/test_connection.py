"""The wrapped connection on real sqlite, PostgreSQL (psycopg 3) and MariaDB (PyMySQL).

Freshness is asserted by counting executions that reached the server, not by the
cache's own counters.
"""

from __future__ import annotations

import pytest

import querycache
from tests.conftest import Database, make_items, run


def test_miss_then_l1_hit_then_fresh_after_write(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"/* cache ttl=60 */ SELECT name FROM {table} WHERE id = {db.ph}"
    before = db.executions(sql)
    assert run(conn, sql, (1,)) == ([("item1",)], "miss")
    assert run(conn, sql, (1,)) == ([("item1",)], "hit:L1")
    assert db.executions(sql) == before + 1
    _rows, status = run(conn, f"UPDATE {table} SET name = 'changed' WHERE id = 1")
    assert status == "bypass:write"
    assert run(conn, sql, (1,)) == ([("changed",)], "miss")
    assert db.executions(sql) == before + 2


def test_write_on_connection_a_makes_b_fresh(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    a = cache.wrap(db.connect())
    b = cache.wrap(db.connect())
    sql = f"SELECT qty FROM {table} WHERE id = {db.ph}"
    assert run(b, sql, (2,))[0] == [(20,)]
    assert run(b, sql, (2,)) == ([(20,)], "hit:L1")
    executed = db.executions(sql)
    run(a, f"UPDATE {table} SET qty = 99 WHERE id = 2")
    rows, _status = run(b, sql, (2,))
    assert rows == [(99,)]
    assert db.executions(sql) == executed + 1, "B must go back to the database after A's write"


def test_second_connection_hits_shared_l2(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    a = cache.wrap(db.connect())
    b = cache.wrap(db.connect())
    sql = f"SELECT name FROM {table} ORDER BY id"
    if db.name == "sqlite":
        pytest.skip("two sqlite connections to one file share a database id; covered below")
    assert run(a, sql)[1] == "miss"
    assert run(b, sql) == ([(f"item{i}",) for i in range(1, 6)], "hit:L2")
    assert run(b, sql)[1] == "hit:L1"


def test_sqlite_file_connections_share_l2(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(sqlite_db)
    a = cache.wrap(sqlite_db.connect())
    b = cache.wrap(sqlite_db.connect())
    sql = f"SELECT name FROM {table} WHERE id = 3"
    assert run(a, sql)[1] == "miss"
    assert run(b, sql) == ([("item3",)], "hit:L2")


def test_read_your_writes_inside_transaction(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect(autocommit=False))
    other = cache.wrap(db.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(other, sql)
    run(other, sql)
    cur = conn.cursor()
    cur.execute(f"UPDATE {table} SET qty = 555 WHERE id = 1")
    rows, status = run(conn, sql)
    assert rows == [(555,)]
    assert status == "bypass:tx_dirty"
    # Uncommitted: the other connection still sees the old value (cached or not).
    assert run(other, sql)[0] == [(10,)]
    conn.commit()
    executed = db.executions(sql)
    assert run(other, sql)[0] == [(555,)]
    assert db.executions(sql) == executed + 1


def test_rollback_keeps_entries_valid_except_mysql(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect(autocommit=False))
    reader = cache.wrap(db.connect())
    sql = f"SELECT name FROM {table} WHERE id = 4"
    run(reader, sql)
    conn.cursor().execute(f"UPDATE {table} SET name = 'nope' WHERE id = 4")
    conn.rollback()
    rows, status = run(reader, sql)
    assert rows == [("item4",)]
    if db.name == "mysql":
        assert status == "miss", "MySQL bumps on rollback: MyISAM writes survive it"
    else:
        assert status == "hit:L1"


def test_sql_text_commit_is_tracked(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    reader = cache.wrap(db.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 3"
    run(reader, sql)
    cur = conn.cursor()
    cur.execute("START TRANSACTION" if db.name == "mysql" else "BEGIN")
    cur.execute(f"UPDATE {table} SET qty = 7 WHERE id = 3")
    cur.execute("COMMIT")
    assert run(reader, sql) == ([(7,)], "miss")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("SELECT name FROM {t} WHERE id = 1 FOR UPDATE", "locking"),
        ("/* cache skip */ SELECT name FROM {t} WHERE id = 1", "hint_skip"),
        ("/* cache nocache */ SELECT name FROM {t} WHERE id = 1", "hint_skip"),
    ],
)
def test_uncacheable_reads_always_run(db: Database, cache: querycache.QueryCache, template: str,
                                      reason: str) -> None:
    table = make_items(db)
    if db.name == "sqlite" and "FOR UPDATE" in template:
        pytest.skip("sqlite has no FOR UPDATE")
    conn = cache.wrap(db.connect())
    sql = template.format(t=table)
    before = db.executions(sql)
    for _ in range(3):
        rows, status = run(conn, sql)
        assert rows == [("item1",)]
        assert status == f"bypass:{reason}"
    assert db.executions(sql) == before + 3


def test_volatile_functions_never_cached(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    volatile = {"sqlite": "random()", "postgres": "random()", "mysql": "RAND()"}[db.name]
    sql = f"SELECT {volatile}, name FROM {table} WHERE id = 1"
    statuses = {run(conn, sql)[1] for _ in range(3)}
    assert statuses == {"bypass:volatile"}
    now = {"sqlite": "datetime('now')", "postgres": "now()", "mysql": "NOW()"}[db.name]
    assert run(conn, f"SELECT {now}")[1] == "bypass:volatile"


def test_multi_statement_not_cached(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(sqlite_db)
    conn = cache.wrap(sqlite_db.connect())
    cur = conn.cursor()
    with pytest.raises(Exception) as live_error:
        sqlite_db.connect().cursor().execute(f"SELECT 1; SELECT * FROM {table}")
    with pytest.raises(type(live_error.value)):
        cur.execute(f"SELECT 1; SELECT * FROM {table}")
    assert cur.cache_status == "bypass:multi_statement"


def test_temp_table_gives_private_scope(db: Database, cache: querycache.QueryCache) -> None:
    conn = cache.wrap(db.connect())
    temp = db.t("tmp")
    create = {"sqlite": f"CREATE TEMP TABLE {temp} (a INTEGER)", "postgres": f"CREATE TEMP TABLE {temp} (a INTEGER)",
              "mysql": f"CREATE TEMPORARY TABLE {temp} (a INTEGER)"}[db.name]
    run(conn, create)
    run(conn, f"INSERT INTO {temp} VALUES (1)")
    for _ in range(2):
        rows, status = run(conn, f"SELECT a FROM {temp}")
        assert rows == [(1,)]
        assert status == "bypass:temp_table"


def test_select_into_not_cached(pg: Database, cache: querycache.QueryCache) -> None:
    table = make_items(pg)
    target = pg.t("copy")
    pg.tables.append(target)
    conn = cache.wrap(pg.connect())
    assert run(conn, f"SELECT * INTO {target} FROM {table}")[1] == "bypass:select_into"


def test_parameter_types_are_distinct_keys(db: Database, cache: querycache.QueryCache) -> None:
    conn = cache.wrap(db.connect())
    sql = f"SELECT {db.ph}"
    if db.name == "postgres":
        sql = "SELECT %s::text"
    seen = {}
    for value in (1, 1.0, "1", True):
        rows, status = run(conn, sql, (value,))
        assert status == "miss", f"{value!r} must not be served the entry of another type"
        seen[repr(value)] = rows
    for value in (1, 1.0, "1", True):
        rows, status = run(conn, sql, (value,))
        assert status == "hit:L1"
        assert rows == seen[repr(value)]
        assert type(rows[0][0]) is type(seen[repr(value)][0][0])


def test_bad_sql_raises_the_drivers_exception(db: Database, cache: querycache.QueryCache) -> None:
    raw = db.connect()
    conn = cache.wrap(db.connect())
    with pytest.raises(Exception) as live:
        raw.cursor().execute("SELEC nothing")
    with pytest.raises(type(live.value)):
        conn.cursor().execute("SELEC nothing")
    with pytest.raises(Exception) as live_missing:
        raw.cursor().execute("SELECT * FROM no_such_table_qc")
    with pytest.raises(type(live_missing.value)):
        conn.cursor().execute("SELECT * FROM no_such_table_qc")


def test_cursor_surface_matches_driver(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    raw = db.connect()
    conn = cache.wrap(db.connect())
    sql = f"SELECT id, name, qty FROM {table} ORDER BY id"
    run(conn, sql)
    cur = conn.cursor()
    cur.execute(sql)
    assert cur.cache_status == "hit:L1"
    live = raw.cursor()
    live.execute(sql)
    assert [tuple(c)[:2] for c in cur.description] == [tuple(c)[:2] for c in live.description]
    assert cur.rowcount == live.rowcount
    assert cur.fetchone() == live.fetchone()
    assert cur.fetchmany(2) == live.fetchmany(2)
    assert list(cur) == list(live)
    assert cur.fetchone() is None
    cur.arraysize = 3
    assert cur.arraysize == 3
    cur.setinputsizes([None])
    # What the driver lacks, the wrapper lacks too (hasattr agrees): PyMySQL has no setoutputsize,
    # sqlite3's cursor is no context manager.
    assert hasattr(cur, "setoutputsize") == hasattr(live, "setoutputsize")
    if hasattr(live, "setoutputsize"):
        cur.setoutputsize(10)
    assert isinstance(conn, type(raw))
    assert isinstance(cur, type(live))
    assert hasattr(cur, "__enter__") == hasattr(live, "__enter__")
    if hasattr(live, "__enter__"):
        with conn.cursor() as ctx:
            ctx.execute(sql)
            assert ctx.cache_status == "hit:L1"
    else:
        with pytest.raises(TypeError):
            with conn.cursor():  # type: ignore[attr-defined]
                pass


def test_executemany_invalidates(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"SELECT count(*) FROM {table}"
    assert run(conn, sql)[0] == [(5,)]
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {table} VALUES ({db.ph}, {db.ph}, {db.ph})", [(10, "a", 1), (11, "b", 2)])
    assert cur.cache_status == "bypass:write"
    assert run(conn, sql) == ([(7,)], "miss")


def test_invalidate_tables_and_groups(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"/* cache group=report-7 */ SELECT sum(qty) FROM {table}"
    run(conn, sql)
    assert run(conn, sql)[1] == "hit:L1"
    cache.invalidate_groups("report-7")
    assert run(conn, sql)[1] == "miss"
    plain = f"SELECT max(qty) FROM {table}"
    run(conn, plain)
    cache.invalidate_tables(table.upper())
    assert run(conn, plain)[1] == "miss"
    assert cache.stats().to_dict()["invalidations"][table] >= 1


def test_flush_tiers(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"SELECT name FROM {table} WHERE id = 2"
    run(conn, sql)
    cache.flush("l1")
    assert run(conn, sql)[1] == "hit:L2"
    cache.flush()
    assert run(conn, sql)[1] == "miss"
    with pytest.raises(ValueError, match="accepted"):
        cache.flush("l4")


def test_tenant_scope_separates_entries(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"SELECT name FROM {table} WHERE id = 1"
    with cache.scope(tenant="acme"):
        assert run(conn, sql)[1] == "miss"
        assert run(conn, sql)[1] == "hit:L1"
    with cache.scope(tenant="globex"):
        assert run(conn, sql)[1] == "miss"
    assert run(conn, sql)[1] == "miss"


def test_hint_ttl_zero_is_not_cached(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"/* cache ttl=0 */ SELECT name FROM {table} WHERE id = 1"
    assert run(conn, sql)[1] == "miss"
    assert run(conn, sql)[1] == "miss"


def test_hint_tier_l2_skips_l1(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    conn = cache.wrap(db.connect())
    sql = f"/* cache tier=l2 */ SELECT name FROM {table} WHERE id = 1"
    assert run(conn, sql)[1] == "miss"
    assert run(conn, sql)[1] == "hit:L2"
    assert run(conn, sql)[1] == "hit:L2"


def test_max_result_rows_streams_and_does_not_fill(db: Database) -> None:
    table = make_items(db, rows=12)
    qc = querycache.QueryCache.from_dict({"max_result_rows": 5})
    conn = qc.wrap(db.connect())
    sql = f"SELECT id FROM {table} ORDER BY id"
    cur = conn.cursor()
    cur.execute(sql)
    assert cur.fetchone() == (1,)
    assert list(cur.fetchmany(6)) == [(i,) for i in range(2, 8)]
    assert list(cur.fetchall()) == [(i,) for i in range(8, 13)]
    assert run(conn, sql)[1] == "miss"
    assert qc.stats().to_dict()["not_filled"]["too_many_rows"] == 2
    qc.close()


def test_connection_execute_and_context_managers(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(sqlite_db)
    with cache.wrap(sqlite_db.connect(autocommit=False)) as conn:
        cur = conn.execute(f"SELECT qty FROM {table} WHERE id = 1")
        assert cur.fetchall() == [(10,)]
        conn.execute(f"UPDATE {table} SET qty = 11 WHERE id = 1")
    reader = cache.wrap(sqlite_db.connect())
    assert run(reader, f"SELECT qty FROM {table} WHERE id = 1") == ([(11,)], "miss")


def test_sqlite_executescript_invalidates_everything(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(sqlite_db)
    conn = cache.wrap(sqlite_db.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 2"
    run(conn, sql)
    conn.executescript(f"UPDATE {table} SET qty = 1 WHERE id = 2; SELECT 1;")
    assert run(conn, sql) == ([(1,)], "miss")


def test_wrapping_twice_is_an_error(sqlite_db: Database, cache: querycache.QueryCache) -> None:
    conn = cache.wrap(sqlite_db.connect())
    with pytest.raises(querycache.QueryCacheError, match="already wrapped"):
        cache.wrap(conn)


def test_callproc_never_cached(mysql: Database, cache: querycache.QueryCache) -> None:
    table = make_items(mysql)
    proc = mysql.t("proc")
    mysql.admin(f"CREATE PROCEDURE {proc}() UPDATE {table} SET qty = qty + 1 WHERE id = 1")
    conn = cache.wrap(mysql.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(conn, sql)
    cur = conn.cursor()
    cur.callproc(proc)
    assert cur.cache_status == "bypass:callproc"
    assert run(conn, sql) == ([(11,)], "miss")
    mysql.admin(f"DROP PROCEDURE {proc}")


def test_two_caches_over_one_database_invalidate_each_other(sqlite_db: Database) -> None:
    table = make_items(sqlite_db)
    first, second = querycache.QueryCache(), querycache.QueryCache()
    reader = first.wrap(sqlite_db.connect())
    writer = second.wrap(sqlite_db.connect())
    sql = f"SELECT qty FROM {table} WHERE id = 1"
    run(reader, sql)
    assert run(reader, sql)[1] == "hit:L1"
    run(writer, f"UPDATE {table} SET qty = 12 WHERE id = 1")
    assert run(reader, sql) == ([(12,)], "miss")
    first.close()
    second.close()


# -- /* cache volatile=time */: the statement clock frozen at fill (issue 19, part) -----------------

CLOCK_READS = {
    "sqlite": "SELECT count(*), datetime('now'), date('now', '-1 day') FROM {t} WHERE qty > 0",
    "postgres": "SELECT count(*), now(), CURRENT_DATE, date_trunc('day', now()), "
                "extract(year FROM localtimestamp) FROM {t} WHERE qty > 0",
    "mysql": "SELECT count(*), NOW(), CURDATE(), UTC_TIMESTAMP() FROM {t} WHERE qty > 0",
}
# Volatile beyond the clock: never cached, whatever the hint says.
OTHER_VOLATILE = {
    "sqlite": ["SELECT random() FROM {t}", "SELECT datetime('now'), randomblob(4) FROM {t}"],
    "postgres": ["SELECT now(), random() FROM {t}", "SELECT clock_timestamp() FROM {t}",
                 "SELECT gen_random_uuid() FROM {t}", "SELECT nextval('{t}_seq') FROM {t}",
                 "SELECT timeofday() FROM {t}"],
    "mysql": ["SELECT NOW(), RAND() FROM {t}", "SELECT SYSDATE() FROM {t}", "SELECT UUID() FROM {t}"],
}


def test_volatile_time_caches_the_clock_frozen_at_fill(db: Database, cache: querycache.QueryCache) -> None:
    import time

    table = make_items(db)
    conn = cache.wrap(db.connect())
    plain = CLOCK_READS[db.name].format(t=table)
    assert run(conn, plain)[1] == "bypass:volatile"
    hinted = "/* cache ttl=60 volatile=time */ " + plain
    first, status = run(conn, hinted)
    assert status == "miss"
    time.sleep(1.1)  # the clock moved on; the cached answer keeps the one of its fill
    again, status = run(conn, hinted)
    assert status == "hit:L1" and again == first
    explained = conn.explain(hinted)
    assert explained["tier"] == "l1" and explained["hints"]["volatile"] == "time"
    # Still invalidated by writes, as any cached read.
    conn.cursor().execute(f"UPDATE {table} SET qty = qty + 1 WHERE id = 1")
    if not getattr(conn, "autocommit", True):
        conn.commit()
    assert run(conn, hinted)[1] == "miss"


def test_volatile_time_never_caches_other_volatility(db: Database, cache: querycache.QueryCache) -> None:
    table = make_items(db)
    dialect = db.name
    if dialect == "postgres":
        db.admin(f"CREATE SEQUENCE {table}_seq")
    conn = cache.wrap(db.connect())
    try:
        for sql in OTHER_VOLATILE[dialect]:
            hinted = "/* cache ttl=60 volatile=time */ " + sql.format(t=table)
            for _ in range(2):
                assert run(conn, hinted)[1] == "bypass:volatile", hinted
            assert conn.explain(hinted)["why"] == "bypass:volatile"
    finally:
        conn.close()
        if dialect == "postgres":
            db.admin(f"DROP SEQUENCE IF EXISTS {table}_seq")


# Session settings that change what a read returns are part of the scope (docs/isolation.md).
RESULT_SETTINGS = {
    "postgres": [("SET transform_null_equals = on", "SELECT id FROM {t} WHERE name = NULL ORDER BY id"),
                 ("SET extra_float_digits = -3", "SELECT qty / 7.0::float8 FROM {t} ORDER BY id")],
    "mysql": [("SET sql_select_limit = 2", "SELECT id FROM {t} ORDER BY id"),
              ("SET SESSION group_concat_max_len = 5", "SELECT group_concat(name ORDER BY id) FROM {t}"),
              ("SET div_precision_increment = 1", "SELECT qty / 7 FROM {t} ORDER BY id")],
}


def test_result_changing_session_settings_are_in_the_scope(db: Database, cache: querycache.QueryCache) -> None:
    dialect = db.name
    if dialect == "sqlite":
        pytest.skip("sqlite has no session settings")
    table = make_items(db)
    db.admin(f"UPDATE {table} SET name = NULL WHERE id = 2")
    for setting, read in RESULT_SETTINGS[dialect]:
        sql = read.format(t=table)
        conn, raw = cache.wrap(db.connect()), db.connect()
        before, _ = run(conn, sql)
        assert run(conn, sql)[1] == "hit:L1"
        for c in (conn, raw):
            c.cursor().execute(setting)
        after, status = run(conn, sql)
        live = raw.cursor()
        live.execute(sql)
        expected = list(live.fetchall())
        assert after == expected, (setting, status)
        assert after != before, f"{setting} does not change the answer: the test proves nothing"
        conn.close()
        raw.close()


def test_mysql_catalog_is_whole_under_sql_select_limit(mysql: Database, cache: querycache.QueryCache) -> None:
    """The wrapper's catalog and scope queries are not truncated by the session's sql_select_limit
    (a truncated catalog would miss tables, views and triggers)."""
    table = make_items(mysql)
    conn = cache.wrap(mysql.connect())
    conn.cursor().execute("SET sql_select_limit = 1")
    extra = mysql.t("extra")
    mysql.tables.append(extra)
    conn.cursor().execute(f"CREATE TABLE {extra} (id INTEGER)")  # DDL: the catalog is read again
    sql = f"SELECT id FROM {table} ORDER BY id"
    assert run(conn, sql) == ([(1,)], "miss")
    assert run(conn, sql) == ([(1,)], "hit:L1")
    assert "why" not in conn.explain(sql), conn.explain(sql)
