"""The canonical form L3 accepts as proof (querycache/semantic/canonical.py): every rewrite it
equates keeps the result, every near miss stays apart, and what it cannot prove is ineligible.
Pure sqlglot: runs without the ``semantic`` extra. The verified corpora (tests/corpus/semantic)
check the same on PostgreSQL results."""

from __future__ import annotations

from typing import Any

import pytest

from querycache.semantic.canonical import Canonical, Ineligible, canonicalize, permutation


def canon(sql: str, dialect: str = "postgres", paramstyle: str = "format", params: Any = None) -> Canonical:
    return canonicalize(sql, dialect, paramstyle, params)


EQUIVALENT = [
    ("alias", "SELECT o.id FROM orders o WHERE o.status = 'paid'",
     "SELECT ord.id FROM orders AS ord WHERE ord.status = 'paid'"),
    ("alias_vs_none", "SELECT id FROM orders WHERE status = 'paid'",
     "SELECT o.id FROM orders o WHERE o.status = 'paid'"),
    ("table_name_qualifier", "SELECT orders.id FROM orders", "SELECT id FROM orders"),
    ("predicate_order", "SELECT id FROM t WHERE a = 1 AND b = 2 AND c > 3",
     "SELECT id FROM t WHERE c > 3 AND b = 2 AND a = 1"),
    ("or_order", "SELECT id FROM t WHERE a = 1 OR b = 2", "SELECT id FROM t WHERE b = 2 OR a = 1"),
    ("in_list", "SELECT id FROM t WHERE a IN (3, 1, 2)", "SELECT id FROM t WHERE a IN (1, 2, 3)"),
    ("in_strings", "SELECT id FROM t WHERE s IN ('b', 'a')", "SELECT id FROM t WHERE s IN ('a', 'b')"),
    ("join_syntax", "SELECT c.name FROM customers c JOIN orders o ON o.cid = c.id WHERE o.total > 5",
     "SELECT c.name FROM customers c, orders o WHERE c.id = o.cid AND o.total > 5"),
    ("inner_keyword", "SELECT c.name FROM customers c INNER JOIN orders o ON o.cid = c.id",
     "SELECT c.name FROM orders o JOIN customers c ON c.id = o.cid"),
    ("parentheses", "SELECT id FROM t WHERE ((a = 1) AND (b = 2))", "SELECT id FROM t WHERE a = 1 AND b = 2"),
    ("nested_and", "SELECT id FROM t WHERE a = 1 AND (b = 2 AND c = 3)",
     "SELECT id FROM t WHERE (a = 1 AND b = 2) AND c = 3"),
    ("not_equal", "SELECT id FROM t WHERE a <> 1", "SELECT id FROM t WHERE a != 1"),
    ("count_star", "SELECT COUNT(1) AS n FROM t", "SELECT COUNT(*) AS n FROM t"),
    ("count_star_unaliased_pg", "SELECT COUNT(1) FROM t", "SELECT count(*) FROM t"),
    ("orientation", "SELECT id FROM t WHERE 5 < a AND 10 >= b", "SELECT id FROM t WHERE a > 5 AND b <= 10"),
    ("equality_sides", "SELECT id FROM t WHERE 10 = id", "SELECT id FROM t WHERE id = 10"),
    ("column_order", "SELECT id, name FROM t", "SELECT name, id FROM t"),
    ("asc_default", "SELECT id FROM t ORDER BY id LIMIT 3", "SELECT id FROM t ORDER BY id ASC LIMIT 3"),
    ("keyword_case", "select id from t where a = 1 and b = 2", "SELECT id FROM t WHERE b = 2 AND a = 1"),
    ("params_follow_their_columns", ("SELECT id FROM t WHERE a = %s AND b = %s", (1, 2)),
     ("SELECT id FROM t WHERE b = %s AND a = %s", (2, 1))),
    ("self_join", "SELECT x.id FROM t x JOIN t y ON x.p = y.id", "SELECT a.id FROM t a JOIN t b ON a.p = b.id"),
    ("subquery", "SELECT id FROM t WHERE cid IN (SELECT c.id FROM c WHERE c.k = 1 AND c.j = 2)",
     "SELECT id FROM t WHERE cid IN (SELECT c.id FROM c WHERE c.j = 2 AND c.k = 1)"),
]

NEAR_MISS = [
    ("literal", "SELECT id FROM t WHERE a = 1", "SELECT id FROM t WHERE a = 2"),
    ("string_vs_number", "SELECT id FROM t WHERE a = '5'", "SELECT id FROM t WHERE a = 5"),
    ("lt_le", "SELECT id FROM t WHERE a < 5", "SELECT id FROM t WHERE a <= 5"),
    ("gt_ge_oriented", "SELECT id FROM t WHERE 5 < a", "SELECT id FROM t WHERE a >= 5"),
    ("and_or", "SELECT id FROM t WHERE a = 1 AND b = 2", "SELECT id FROM t WHERE a = 1 OR b = 2"),
    ("precedence", "SELECT id FROM t WHERE (a = 1 OR b = 2) AND c = 3",
     "SELECT id FROM t WHERE a = 1 OR (b = 2 AND c = 3)"),
    ("asc_desc", "SELECT id FROM t ORDER BY id ASC LIMIT 3", "SELECT id FROM t ORDER BY id DESC LIMIT 3"),
    ("limit", "SELECT id FROM t ORDER BY id LIMIT 10", "SELECT id FROM t ORDER BY id LIMIT 11"),
    ("offset", "SELECT id FROM t ORDER BY id LIMIT 10 OFFSET 1", "SELECT id FROM t ORDER BY id LIMIT 10"),
    ("not", "SELECT id FROM t WHERE a IN (1, 2)", "SELECT id FROM t WHERE a NOT IN (1, 2)"),
    ("is_null", "SELECT id FROM t WHERE a IS NULL", "SELECT id FROM t WHERE a IS NOT NULL"),
    ("column", "SELECT id FROM t WHERE a = 1", "SELECT id FROM t WHERE b = 1"),
    ("output_column", "SELECT id, a FROM t", "SELECT id, b FROM t"),
    ("table", "SELECT id FROM t WHERE a = 1", "SELECT id FROM u WHERE a = 1"),
    ("schema", "SELECT id FROM s1.t", "SELECT id FROM s2.t"),
    ("join_type", "SELECT a.x FROM a LEFT JOIN b ON a.k = b.k", "SELECT a.x FROM a JOIN b ON a.k = b.k"),
    ("distinct", "SELECT DISTINCT a FROM t", "SELECT a FROM t"),
    ("aggregate", "SELECT SUM(a) AS v FROM t", "SELECT AVG(a) AS v FROM t"),
    ("count_column_vs_star", "SELECT COUNT(a) AS n FROM t", "SELECT COUNT(*) AS n FROM t"),
    ("count_distinct_literal", "SELECT COUNT(DISTINCT 1) AS n FROM t", "SELECT COUNT(*) AS n FROM t"),
    ("count_null", "SELECT COUNT(NULL) AS n FROM t", "SELECT COUNT(*) AS n FROM t"),
    ("group_by", "SELECT a, COUNT(*) AS n FROM t GROUP BY a", "SELECT b AS a, COUNT(*) AS n FROM t GROUP BY b"),
    ("swapped_literals", "SELECT id FROM t WHERE a > 5 AND b < 3", "SELECT id FROM t WHERE a > 3 AND b < 5"),
    ("swapped_literals_oriented", "SELECT id FROM t WHERE a > 5 AND b < 3", "SELECT id FROM t WHERE a < 3 AND b > 5"),
    ("in_list", "SELECT id FROM t WHERE a IN (1, 2, 3)", "SELECT id FROM t WHERE a IN (1, 2, 4)"),
    ("output_alias", "SELECT a AS x FROM t", "SELECT a AS y FROM t"),
    ("alias_case_pg_quoted", 'SELECT a AS "X" FROM t', "SELECT a AS x FROM t"),
    ("param_value", ("SELECT id FROM t WHERE a = %s", (1,)), ("SELECT id FROM t WHERE a = %s", (2,))),
    ("param_type", ("SELECT id FROM t WHERE a = %s", (1,)), ("SELECT id FROM t WHERE a = %s", (1.0,))),
    ("param_bool", ("SELECT id FROM t WHERE a = %s", (1,)), ("SELECT id FROM t WHERE a = %s", (True,))),
    ("params_swapped", ("SELECT id FROM t WHERE a = %s AND b = %s", (1, 2)),
     ("SELECT id FROM t WHERE b = %s AND a = %s", (1, 2))),
    ("param_vs_literal", ("SELECT id FROM t WHERE a = %s", (1,)), "SELECT id FROM t WHERE a = 1"),
    ("order_alias_vs_column", "SELECT b AS a FROM t ORDER BY a", "SELECT b AS a FROM t ORDER BY t.a"),
    ("self_join_roles", "SELECT x.id FROM t x JOIN t y ON x.p = y.id", "SELECT y.id FROM t x JOIN t y ON x.p = y.id"),
    ("star_source_order", "SELECT * FROM a, b", "SELECT * FROM b, a"),
    ("positional_order", "SELECT a, b FROM t ORDER BY 1", "SELECT b, a FROM t ORDER BY 1"),
    ("on_sees_later_table", "SELECT a.x FROM a JOIN b ON c.k = a.k CROSS JOIN c",
     "SELECT a.x FROM a, b, c WHERE c.k = a.k"),
    ("nulls_order", "SELECT id FROM t ORDER BY a NULLS FIRST", "SELECT id FROM t ORDER BY a NULLS LAST"),
]


def _side(side: Any) -> Canonical:
    if isinstance(side, tuple):
        return canon(side[0], params=side[1])
    return canon(side)


@pytest.mark.parametrize(("kind", "a", "b"), EQUIVALENT, ids=[e[0] for e in EQUIVALENT])
def test_rewrites_share_a_canonical_form(kind: str, a: Any, b: Any) -> None:
    ca, cb = _side(a), _side(b)
    assert ca.form == cb.form
    assert ca.guards == cb.guards
    assert permutation(cb, ca) is not None


@pytest.mark.parametrize(("kind", "a", "b"), NEAR_MISS, ids=[e[0] for e in NEAR_MISS])
def test_near_misses_keep_distinct_forms(kind: str, a: Any, b: Any) -> None:
    try:
        ca, cb = _side(a), _side(b)
    except Ineligible:
        return  # not provable is not served either
    assert ca.form != cb.form


def test_column_order_is_served_through_a_permutation() -> None:
    stored = canon("SELECT o.id, o.total, o.status FROM orders o")
    asked = canon("SELECT status, id, total FROM orders")
    assert permutation(asked, stored) == (2, 0, 1)


def test_star_and_positional_order_keep_columns_in_place() -> None:
    assert not canon("SELECT * FROM t").reorderable
    assert not canon("SELECT a, b FROM t ORDER BY 1").reorderable
    assert permutation(canon("SELECT b, a FROM t ORDER BY 1"), canon("SELECT a, b FROM t ORDER BY 1")) is None


def test_mysql_and_sqlite_name_expressions_by_their_text() -> None:
    # MySQL names COUNT(*) "COUNT(*)" and count(1) "count(1)": only aliased expressions qualify.
    for dialect in ("mysql", "sqlite"):
        with pytest.raises(Ineligible, match="unnamed_output"):
            canon("SELECT COUNT(*) FROM t", dialect=dialect, paramstyle="format")
        assert canon("SELECT COUNT(1) AS n FROM t", dialect).form == canon("SELECT COUNT(*) AS n FROM t", dialect).form


def test_mysql_aliases_compare_case_sensitively() -> None:
    a = canon("SELECT o.id FROM t o", "mysql")
    b = canon("SELECT O.id FROM t O", "mysql")
    c = canon("SELECT O.id FROM t o", "mysql")  # an error on MySQL: must not equal a
    assert a.form == b.form
    assert c.form != a.form


@pytest.mark.parametrize(("sql", "params", "reason"), [
    ("SELECT id FROM t WHERE a = %s", None, "params"),
    ("SELECT id FROM t WHERE a = %s", (1, 2), "params"),
    ("SELECT id FROM t WHERE a = %s", (object(),), "params"),
    ("SELECT id FROM t o JOIN u o ON o.k = o.k", None, "alias_reuse"),
    ("SELECT t.id FROM t JOIN t x ON t.k = x.k", None, "alias_reuse"),
    ("SELECT * FROM t AS x(a, b)", None, "table_alias_columns"),
    ("SELECT * FROM", None, "parse"),
    ("UPDATE t SET a = 1", None, "not_a_query"),
    ("SELECT 1; SELECT 2", None, "not_a_query"),
    ("SELECT " + " + ".join(["a"] * 30000) + " FROM t", None, "too_large"),
])
def test_what_cannot_be_proven_is_ineligible(sql: str, params: Any, reason: str) -> None:
    with pytest.raises(Ineligible) as caught:
        canon(sql, params=params)
    assert caught.value.reason == reason


def test_placeholders_inside_strings_and_comments_are_not_parameters() -> None:
    a = canon("SELECT id FROM t WHERE s = '%s' AND a = %s /* %s */", params=(1,))
    b = canon("SELECT id FROM t WHERE a = %s AND s = '%s'", params=(1,))
    assert a.form == b.form
    q = canonicalize("SELECT id FROM t WHERE s = '?' AND a = ?", "sqlite", "qmark", (5,))
    assert "p:" in q.form


def test_named_parameters_bind_by_name() -> None:
    a = canonicalize("SELECT id FROM t WHERE a = %(x)s AND b = %(y)s", "postgres", "pyformat", {"x": 1, "y": 2})
    b = canonicalize("SELECT id FROM t WHERE b = %(y)s AND a = %(x)s", "postgres", "pyformat", {"y": 2, "x": 1})
    c = canonicalize("SELECT id FROM t WHERE b = %(x)s AND a = %(y)s", "postgres", "pyformat", {"y": 2, "x": 1})
    assert a.form == b.form != c.form


def test_guards_carry_literals_and_shape() -> None:
    a = canon("SELECT id FROM t WHERE a = 1 ORDER BY id LIMIT 5")
    assert "limit=LIMIT 5" in a.guards and "'n:1'" in a.guards
    assert canon("SELECT id FROM t WHERE a = 2").guards != canon("SELECT id FROM t WHERE a = 1").guards
