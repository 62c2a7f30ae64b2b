"""querycache/invalidation/rows.py: which reads are pinned to which values, what a write says about its rows,
and buckets that never separate values the database compares as equal."""

from __future__ import annotations

import decimal
import uuid
from typing import Any

import pytest

from querycache.invalidation.rows import bucket_value, read_pins, write_plan


def pins(sql: str, dialect: str = "postgres", paramstyle: str = "format") -> dict[str, Any]:
    found = read_pins(sql, dialect, paramstyle)
    assert found is not None
    return found.tables


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE id = 5", {"t": {"id": (("lit", 5),)}}),
    ("SELECT * FROM t WHERE 5 = id AND x > 3", {"t": {"id": (("lit", 5),)}}),
    ("SELECT * FROM t WHERE id IN (1, 2)", {"t": {"id": (("lit", 1), ("lit", 2))}}),
    ("SELECT * FROM t WHERE x IS NULL", {"t": {"x": (("lit", None),)}}),
    ("SELECT * FROM t WHERE id = %s", {"t": {"id": (("param", 0),)}}),
    ("SELECT * FROM t WHERE a = %s AND id = %s AND b IN (%s, %s)", {"t": {"a": (("param", 0),)}}),
    ("SELECT * FROM t WHERE a = 1 OR b = 2", {"t": None}),
    ("SELECT * FROM t WHERE NOT a = 1", {"t": None}),
    ("SELECT * FROM t", {"t": None}),
    ("SELECT category, COUNT(*) FROM t GROUP BY category HAVING category = 1", {"t": None}),
    # join implications
    ("SELECT p.name FROM p JOIN v ON p.cat = v.cat WHERE p.cat = 5",
     {"p": {"cat": (("lit", 5),)}, "v": {"cat": (("lit", 5),)}}),
    ("SELECT p.name FROM p, v WHERE v.cat = p.cat AND p.cat = 5",
     {"p": {"cat": (("lit", 5),)}, "v": {"cat": (("lit", 5),)}}),
    # a LEFT join's ON pins only its right side; the left keeps all its rows
    ("SELECT * FROM a LEFT JOIN b ON b.k = a.k AND b.c = 5 AND a.x = 3", {"a": None, "b": {"c": (("lit", 5),)}}),
    ("SELECT * FROM a FULL JOIN b ON b.k = a.k AND b.c = 5", {"a": None, "b": None}),
    # subqueries pin their own tables
    ("SELECT COUNT(*) FROM o WHERE o.pid IN (SELECT id FROM p WHERE cat = 3)",
     {"o": None, "p": {"cat": (("lit", 3),)}}),
    # a table read twice: pinned only if every occurrence is
    ("SELECT * FROM t t1 JOIN t t2 ON t1.p = t2.id WHERE t1.id = 4", {"t": None}),
    ("SELECT * FROM t WHERE id = 1 UNION SELECT * FROM t WHERE id = 2", {"t": {"id": (("lit", 1), ("lit", 2))}}),
    # quoted names keep their case: not pinned
    ('SELECT * FROM t WHERE "Cat" = 1', {"t": None}),
    # unqualified columns with two tables: unknown owner, not pinned
    ("SELECT * FROM a, b WHERE k = 1", {"a": None, "b": None}),
])
def test_read_pins(sql: str, expected: dict[str, Any]) -> None:
    assert pins(sql) == expected


def test_too_many_values_fall_back_to_the_table() -> None:
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(str(i) for i in range(40)) + ")"
    assert pins(sql) == {"t": None}


def test_placeholders_are_numbered_in_text_order() -> None:
    assert pins("SELECT * FROM t WHERE id = ? LIMIT ?", "sqlite", "qmark") == {"t": {"id": (("param", 0),)}}
    assert pins("SELECT * FROM t WHERE a > %s AND id = %s", "mysql") == {"t": {"id": (("param", 1),)}}


@pytest.mark.parametrize(("a", "b"), [
    (5, "5"), (5, "05"), (5, 5.0), (5, decimal.Decimal("5.00")), (True, 1), (True, "t"), (False, "off"),
    ("abc", "ABC"), ("abc", "abc  "), ("strasse", "STRASSE"), ("é", "æ"), (None, None),
    (uuid.UUID(int=7), str(uuid.UUID(int=7))),
])
def test_values_the_database_may_compare_equal_share_a_bucket(a: Any, b: Any) -> None:
    assert bucket_value(a) == bucket_value(b) is not None


def test_reads_cover_every_bucket_a_matching_row_may_be_in() -> None:
    from querycache.invalidation.rows import bucket_values

    # MySQL: 'abc' = 0 and '5abc' = 5; a string column's rows are also in their number's bucket.
    assert set(bucket_values("5abc", "mysql", False) or ()) >= {"n:5"}
    assert set(bucket_values("abc", "mysql", False) or ()) >= {"n:0"}
    assert "n:0" in (bucket_values("xyz", "mysql", True) or ())
    # Accent- or case-insensitive collations: a pinned string read also depends on non-ASCII rows;
    # a read comparing with non-ASCII text is not pinned.
    assert "s:non-ascii" in (bucket_values("e", "postgres", True) or ())
    assert bucket_values("é", "postgres", False) == ["s:non-ascii"]
    assert bucket_values("é", "postgres", True) is None
    assert bucket_values(5, "postgres", True) == ["n:5"]


def test_values_without_a_safe_bucket() -> None:
    import datetime as dt

    assert bucket_value(dt.date(2024, 1, 1)) is None
    assert bucket_value(b"x") is None
    assert bucket_value(1.5) == bucket_value(2.5) == "n:fraction"  # collide: only costs invalidations


@pytest.mark.parametrize(("sql", "kind"), [
    ("INSERT INTO t (a, b) VALUES (1, %s), (2, 3)", "insert"),
    ("UPDATE t SET a = 1 WHERE id = %s", "update"),
    ("DELETE FROM t WHERE id IN (%s, 2)", "delete"),
])
def test_write_plans(sql: str, kind: str) -> None:
    plan = write_plan(sql, "postgres", "format")
    assert plan is not None and plan.kind == kind and plan.table == "t"


@pytest.mark.parametrize("sql", [
    "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO NOTHING",
    "INSERT INTO t SELECT * FROM u",
    "INSERT INTO t VALUES (1, 2)",
    "UPDATE t SET a = 1 FROM u WHERE t.k = u.k",
    "UPDATE t SET a = 1 WHERE k IN (SELECT k FROM u)",
    "DELETE FROM t USING u WHERE t.k = u.k",
    "UPDATE t SET a = 1 WHERE name LIKE 'x%'",
    "UPDATE t SET a = 1 WHERE id = %(id)s",
])
def test_writes_not_pinned_down(sql: str) -> None:
    assert write_plan(sql, "postgres", "pyformat" if "%(" in sql else "format") is None


def test_update_plan_keeps_assignments_and_where() -> None:
    plan = write_plan("UPDATE t AS p SET a = 1, b = b + 1 WHERE p.id = %s", "postgres", "format")
    assert plan is not None
    assert plan.assigned == {"a": ("lit", 1), "b": None}
    assert plan.where_sql == "p.id = %(qcp0)s" and plan.target_sql == "t AS p"
    mysql = write_plan("UPDATE t SET a = %s WHERE id = %s", "mysql", "format")
    assert mysql is not None and mysql.where_sql == "id = %(qcp1)s" and mysql.assigned == {"a": ("param", 0)}
    assert write_plan("UPDATE t SET a = 1 WHERE id = ?", "sqlite", "qmark") is None  # sqlite: table level
