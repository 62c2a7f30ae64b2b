"""Hint comments and the lexical scan of ``querycache/hints.py`` (docs/configuration.md, "Hints")."""

from __future__ import annotations

import sqlite3

import pytest

import querycache
from querycache.errors import QueryCacheError
from querycache.hints import ACCEPTED_OPTIONS, NO_HINTS, Hints, parse_hints, scan


def hints(sql: str, dialect: str = "postgres", paramstyle: str = "format", strict: bool = False) -> Hints:
    return parse_hints(sql, dialect, paramstyle, strict)


# -- the grammar, one option at a time ---------------------------------------------------------

def test_no_comment_means_no_hints() -> None:
    assert hints("SELECT 1") == NO_HINTS
    assert hints("SELECT 1").to_dict() == Hints().to_dict()


def test_ttl() -> None:
    h = hints("/* cache ttl=60 */ SELECT 1")
    assert h.ttl == 60
    assert h.skip is False
    assert h.warnings == ()


def test_ttl_zero_is_accepted() -> None:
    h = hints("/* cache ttl=0 */ SELECT 1")
    assert h.ttl == 0
    assert h.warnings == ()


@pytest.mark.parametrize("option", ["skip", "nocache", "SKIP", "NoCache"])
def test_skip_and_its_alias(option: str) -> None:
    h = hints(f"/* cache {option} */ SELECT 1")
    assert h.skip is True
    assert h.warnings == ()


def test_tables_add_lower_cased_and_schema_stripped() -> None:
    h = hints("/* cache tables=Orders,public.Items,s1.LINES */ SELECT 1")
    assert h.tables == ("orders", "items", "lines")
    assert h.warnings == ()


def test_tables_from_several_comments_accumulate_without_duplicates() -> None:
    h = hints("/* cache tables=a */ SELECT /* cache tables=b,A */ 1")
    assert h.tables == ("a", "b")


@pytest.mark.parametrize(("value", "tier"), [("l1", "l1"), ("l2", "l2"), ("L2", "l2")])
def test_tier(value: str, tier: str) -> None:
    h = hints(f"/* cache tier={value} */ SELECT 1")
    assert h.tier == tier
    assert h.warnings == ()


def test_semantic_without_threshold() -> None:
    h = hints("/* cache semantic */ SELECT 1")
    assert h.semantic is True
    assert h.semantic_threshold is None
    assert h.warnings == ()


def test_semantic_with_threshold() -> None:
    h = hints("/* cache semantic=0.95 */ SELECT 1")
    assert h.semantic is True
    assert h.semantic_threshold == 0.95
    assert h.warnings == ()


def test_semantic_threshold_of_one_is_accepted() -> None:
    h = hints("/* cache semantic=1 */ SELECT 1")
    assert h.semantic_threshold == 1.0
    assert h.warnings == ()


def test_swr() -> None:
    h = hints("/* cache swr=30 */ SELECT 1")
    assert h.swr == 30
    assert h.ttl is None
    assert h.warnings == ()


@pytest.mark.parametrize("option", ["group", "key"])
def test_group_and_its_alias(option: str) -> None:
    h = hints(f"/* cache {option}=report-7 */ SELECT 1")
    assert h.groups == ("report-7",)
    assert h.warnings == ()


def test_several_groups_in_one_option_and_across_comments() -> None:
    h = hints("/* cache group=a,b */ SELECT /* cache key=c group=a */ 1")
    assert h.groups == ("a", "b", "c")


def test_settings_are_lower_cased_deduplicated_and_validated() -> None:
    h = hints("/* cache settings=App.Tenant,app.role */ SELECT /* cache settings=app.tenant */ 1")
    assert h.settings == ("app.role", "app.tenant")
    bad = hints("/* cache settings=app.ten;ant */ SELECT 1")
    assert bad.settings == () and "settings=" in bad.warnings[0] and "setting names" in bad.warnings[0]


def test_volatile_accepts_time_only() -> None:
    assert hints("/* cache volatile=TIME */ SELECT now()").volatile == "time"
    bad = hints("/* cache volatile=random */ SELECT random()")
    assert bad.volatile is None and "volatile='random' is not one of time" in bad.warnings[0]


def test_several_options_in_one_comment() -> None:
    h = hints("/* cache ttl=60 tables=orders tier=l2 semantic=0.9 swr=5 group=g1 */ SELECT 1")
    assert h.ttl == 60
    assert h.tables == ("orders",)
    assert h.tier == "l2"
    assert h.semantic is True
    assert h.semantic_threshold == 0.9
    assert h.swr == 5
    assert h.groups == ("g1",)
    assert h.skip is False
    assert h.warnings == ()


def test_several_hint_comments_in_one_statement() -> None:
    s = scan("/* cache ttl=10 */ SELECT a /* cache skip */ FROM t -- cache group=g\n", "postgres", "format")
    assert s.hints.ttl == 10
    assert s.hints.skip is True
    assert s.hints.groups == ("g",)
    assert s.hint_comments == ["/* cache ttl=10 */", "/* cache skip */", "-- cache group=g"]


def test_later_ttl_wins() -> None:
    assert hints("/* cache ttl=10 */ SELECT /* cache ttl=20 */ 1").ttl == 20


def test_line_comment_hint() -> None:
    s = scan("SELECT 1 -- cache ttl=5\n", "sqlite", "qmark")
    assert s.hints.ttl == 5
    assert s.hint_comments == ["-- cache ttl=5"]
    assert "cache" not in s.parse_text
    assert s.parse_text.strip() == "SELECT 1"


def test_line_comment_hint_ends_at_the_newline() -> None:
    s = scan("-- cache ttl=5\nSELECT 1", "postgres", "format")
    assert s.hints.ttl == 5
    assert s.first_word == "SELECT"
    assert s.statement_count == 1


def test_mysql_hash_comment_hint() -> None:
    s = scan("SELECT 1 # cache ttl=7\n", "mysql", "format")
    assert s.hints.ttl == 7
    assert s.hint_comments == ["# cache ttl=7"]


def test_hash_is_not_a_comment_on_postgres() -> None:
    # '#' is an operator (bitwise xor) in PostgreSQL, never a comment.
    assert hints("SELECT 1 # 2 -- x\n", "postgres") == NO_HINTS
    assert scan("SELECT 1 # cache ttl=7\n", "postgres", "format").hints.ttl is None


def test_hint_comment_is_stripped_from_parse_text() -> None:
    s = scan("/* cache ttl=60 */ SELECT 1", "postgres", "format")
    assert "cache" not in s.parse_text
    assert "ttl" not in s.parse_text
    assert s.parse_text.strip() == "SELECT 1"


def test_hint_without_spaces_inside_the_comment() -> None:
    assert hints("/*cache ttl=9*/ SELECT 1").ttl == 9


def test_hint_keyword_is_case_insensitive() -> None:
    assert hints("/* CACHE TTL=9 */ SELECT 1").ttl == 9


# -- what is NOT a hint ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["cached ttl=5", "nocache", "cache:ttl=5", "hello cache ttl=5", "", "  "])
def test_comments_not_starting_with_cache_are_ignored(body: str) -> None:
    s = scan(f"/*{body}*/ SELECT 1", "postgres", "format")
    assert s.hints == NO_HINTS
    assert s.hint_comments == []
    assert f"/*{body}*/" in s.parse_text  # an ordinary comment is left in place


def test_line_comment_not_starting_with_cache_is_ignored() -> None:
    assert hints("SELECT 1 -- the cache ttl=5 is elsewhere\n") == NO_HINTS


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_hint_inside_single_quoted_string_is_data(dialect: str) -> None:
    s = scan("SELECT '/* cache skip */' AS x", dialect, "format")
    assert s.hints == NO_HINTS
    assert s.hint_comments == []
    assert "'/* cache skip */'" in s.parse_text


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_hint_inside_string_with_doubled_quote_is_data(dialect: str) -> None:
    assert hints("SELECT 'it''s /* cache skip */ here' AS x", dialect) == NO_HINTS


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_hint_inside_double_quoted_identifier_is_data(dialect: str) -> None:
    s = scan('SELECT 1 AS "/* cache skip */"', dialect, "format")
    assert s.hints == NO_HINTS
    assert '"/* cache skip */"' in s.parse_text


def test_hint_inside_double_quoted_identifier_with_doubled_quote_is_data() -> None:
    assert hints('SELECT 1 AS "a""/* cache skip */"') == NO_HINTS


def test_hint_inside_mysql_double_quoted_string_is_data() -> None:
    assert hints('SELECT "/* cache skip */" AS x', "mysql") == NO_HINTS
    # the backslash-escaped quote does not end the string
    assert hints('SELECT "a\\" /* cache skip */ b" AS x', "mysql") == NO_HINTS


def test_hint_inside_backtick_identifier_is_data() -> None:
    assert hints("SELECT 1 AS `/* cache skip */`", "mysql") == NO_HINTS


def test_hint_inside_sqlite_bracket_identifier_is_data() -> None:
    assert hints("SELECT 1 AS [/* cache skip */]", "sqlite") == NO_HINTS


def test_hint_inside_postgres_dollar_quoted_body_is_data() -> None:
    s = scan("SELECT $$ /* cache skip */ $$ AS x", "postgres", "format")
    assert s.hints == NO_HINTS
    assert "$$ /* cache skip */ $$" in s.parse_text


def test_hint_inside_tagged_dollar_quoted_body_is_data() -> None:
    # a bare $$ inside $fn$ ... $fn$ does not end the body
    sql = "SELECT $fn$ it's $$ /* cache skip */ $$ still body $fn$ AS x /* cache ttl=4 */"
    s = scan(sql, "postgres", "format")
    assert s.hints.skip is False
    assert s.hints.ttl == 4
    assert s.hint_comments == ["/* cache ttl=4 */"]


def test_postgres_positional_parameter_is_not_a_dollar_quote() -> None:
    assert hints("SELECT $1 /* cache ttl=3 */, $2", "postgres").ttl == 3


def test_postgres_nested_comment_is_one_comment() -> None:
    sql = "SELECT 1 /* outer /* inner */ still comment /* cache skip */ */ AS x"
    s = scan(sql, "postgres", "format")
    assert s.hints == NO_HINTS
    assert "/* outer /* inner */ still comment /* cache skip */ */" in s.parse_text


def test_postgres_nested_comment_that_is_a_hint() -> None:
    s = scan("/* cache ttl=8 /* note */ tier=l1 */ SELECT 1", "postgres", "format")
    assert s.hint_comments == ["/* cache ttl=8 /* note */ tier=l1 */"]
    assert s.hints.ttl == 8


def test_comments_do_not_nest_on_mysql() -> None:
    # MySQL ends the comment at the first */: the text after it is SQL, and so a later hint counts.
    s = scan("SELECT 1 /* a /* b */ AS x /* cache ttl=6 */", "mysql", "format")
    assert s.hints.ttl == 6


def test_postgres_escape_string_backslash_quote() -> None:
    s = scan("SELECT E'a\\' /* cache skip */ b' AS x /* cache ttl=3 */", "postgres", "format")
    assert s.hints.skip is False
    assert s.hints.ttl == 3
    assert "E'a\\' /* cache skip */ b'" in s.parse_text


def test_postgres_standard_string_backslash_is_not_an_escape() -> None:
    # standard_conforming_strings: 'C:\' ends at the quote right after the backslash.
    s = scan("SELECT 'C:\\' AS p /* cache ttl=3 */", "postgres", "format")
    assert s.hints.ttl == 3


def test_postgres_word_ending_in_e_before_a_string_is_not_an_escape_string() -> None:
    # PostgreSQL lexes LIKE'C:\' as the keyword LIKE and the standard string 'C:\'
    # (verified on the server: SELECT 'x' LIKE'C:\' AS r, ' /* cache skip */ ' AS s
    # returns the second literal as data). Only a standalone E/e prefix starts an escape string.
    sql = "SELECT * FROM t WHERE name LIKE'C:\\' AND note = ' /* cache skip */ '"
    s = scan(sql, "postgres", "format")
    assert s.hints.skip is False, "a hint inside a string literal must never count"
    assert s.hint_comments == []


def test_mysql_backslash_escape_in_single_quoted_string() -> None:
    s = scan("SELECT 'a\\' /* cache skip */ b' AS x /* cache ttl=2 */", "mysql", "format")
    assert s.hints.skip is False
    assert s.hints.ttl == 2


def test_sqlite_backslash_is_not_an_escape() -> None:
    s = scan("SELECT 'a\\' /* cache skip */ --'\n", "sqlite", "qmark")
    assert s.hints.skip is True


def test_mysql_backslash_in_backtick_identifier_is_not_an_escape() -> None:
    # MySQL: inside `...` only a doubled backtick escapes; `a\` is a valid identifier
    # (verified on the MariaDB server: SELECT 1 AS `a\` names the column a\).
    s = scan("SELECT 1 AS `a\\` FROM t /* cache skip */", "mysql", "format")
    assert s.hints.skip is True


def test_mysql_double_dash_needs_a_space_to_start_a_comment() -> None:
    # MySQL: "--" starts a comment only when followed by whitespace; 5--1 is 5 - (-1)
    # (verified on the MariaDB server: SELECT 5--1 returns 6).
    s = scan("SELECT 5--1 /* cache skip */", "mysql", "format")
    assert s.hints.skip is True
    assert scan("SELECT 5--1; SELECT 2", "mysql", "format").statement_count == 2


def test_mysql_executable_comment_is_sql_not_a_hint() -> None:
    s = scan("SELECT 1 /*! cache skip */", "mysql", "format")
    assert s.hints == NO_HINTS


# -- warnings and strict mode ----------------------------------------------------------------------

def _accepts_listed(message: str) -> bool:
    return all(option in message for option in ACCEPTED_OPTIONS) and "accepted" in message


@pytest.mark.parametrize(
    ("comment", "names"),
    [
        ("/* cache frobnicate */", "frobnicate"),
        ("/* cache colour=red */", "colour"),
        ("/* cache ttl=abc */", "ttl"),
        ("/* cache ttl=-1 */", "ttl"),
        ("/* cache ttl=1.5 */", "ttl"),
        ("/* cache ttl */", "ttl"),
        ("/* cache swr=soon */", "swr"),
        ("/* cache tier=l9 */", "tier"),
        ("/* cache tier=l3 */", "tier"),
        ("/* cache semantic=2 */", "semantic"),
        ("/* cache semantic=0 */", "semantic"),
        ("/* cache semantic=high */", "semantic"),
        ("/* cache tables= */", "tables"),
        ("/* cache tables=a;b */", "tables"),
        ("/* cache group= */", "group"),
        ("/* cache skip=1 */", "skip"),
    ],
)
def test_bad_option_warns_naming_it_and_listing_accepted(comment: str, names: str) -> None:
    h = hints(f"{comment} SELECT 1")
    assert len(h.warnings) == 1
    message = h.warnings[0]
    assert names in message
    assert _accepts_listed(message), message


@pytest.mark.parametrize(
    ("comment", "names"),
    [
        ("/* cache frobnicate */", "frobnicate"),
        ("/* cache ttl=abc */", "ttl"),
        ("/* cache ttl=-1 */", "ttl"),
        ("/* cache tier=l9 */", "tier"),
        ("/* cache semantic=2 */", "semantic"),
    ],
)
def test_bad_option_in_strict_mode_raises_hint_error(comment: str, names: str) -> None:
    with pytest.raises(querycache.HintError) as info:
        hints(f"{comment} SELECT 1", strict=True)
    assert names in str(info.value)
    assert _accepts_listed(str(info.value))


def test_hint_error_is_a_value_error_and_a_querycache_error() -> None:
    assert issubclass(querycache.HintError, ValueError)
    assert issubclass(querycache.HintError, QueryCacheError)


def test_bad_option_does_not_discard_good_options() -> None:
    h = hints("/* cache ttl=30 bogus tier=l9 tables=orders */ SELECT 1")
    assert h.ttl == 30
    assert h.tables == ("orders",)
    assert h.tier is None
    assert len(h.warnings) == 2
    assert "bogus" in h.warnings[0]
    assert "tier" in h.warnings[1]


def test_good_hints_in_strict_mode_do_not_raise() -> None:
    h = hints("/* cache ttl=60 skip tables=a tier=l1 semantic=0.5 swr=1 group=g key=k */ SELECT 1", strict=True)
    assert h.ttl == 60
    assert h.groups == ("g", "k")
    assert h.warnings == ()


def test_non_hint_comment_with_odd_text_never_warns_even_in_strict_mode() -> None:
    assert hints("/* ttl=abc frobnicate */ SELECT 1", strict=True) == NO_HINTS


# -- placeholders ------------------------------------------------------------------------------------

def test_format_placeholder_becomes_qmark_on_mysql() -> None:
    s = scan("SELECT * FROM t WHERE a = %s AND b = %s", "mysql", "format")
    assert s.parse_text == "SELECT * FROM t WHERE a = ? AND b = ?"


def test_format_placeholder_is_kept_on_postgres() -> None:
    s = scan("SELECT * FROM t WHERE a = %s", "postgres", "format")
    assert s.parse_text == "SELECT * FROM t WHERE a = %s"


def test_pyformat_named_placeholder_becomes_colon_name_on_mysql() -> None:
    s = scan("SELECT * FROM t WHERE a = %(user_id)s AND b = %(x)s", "mysql", "pyformat")
    assert s.parse_text == "SELECT * FROM t WHERE a = :user_id AND b = :x"


def test_pyformat_named_placeholder_is_kept_on_postgres() -> None:
    s = scan("SELECT * FROM t WHERE a = %(user_id)s", "postgres", "pyformat")
    assert s.parse_text == "SELECT * FROM t WHERE a = %(user_id)s"


@pytest.mark.parametrize("dialect", ["mysql", "postgres"])
def test_doubled_percent_becomes_one(dialect: str) -> None:
    s = scan("SELECT 10 %% 3, a FROM t WHERE a = %s", dialect, "format")
    assert s.parse_text.startswith("SELECT 10 % 3, a FROM t WHERE a = ")
    assert "%%" not in s.parse_text


def test_percent_is_untouched_for_qmark_paramstyle() -> None:
    s = scan("SELECT 10 %% 3, '%s'", "sqlite", "qmark")
    assert s.parse_text == "SELECT 10 %% 3, '%s'"


def test_placeholder_inside_a_string_is_not_rewritten() -> None:
    s = scan("SELECT '%s' AS a, %s AS b", "mysql", "format")
    assert s.parse_text == "SELECT '%s' AS a, ? AS b"


# -- statement_count and first_word -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("select 1", 1),
        ("select 1;", 1),
        ("select 1;;;", 2),  # empty statements after it: not one statement (sqlite3 refuses it)
        ("select 1; ", 1),
        ("select 1; -- trailing comment\n", 1),
        ("select 1; /* trailing comment */", 1),
        ("select 1; /* cache ttl=5 */", 1),
        ("select 1; select 2", 2),
        ("select 1; select 2;", 2),
        ("select ';'; select 2", 2),
        ("select 'a;b'", 1),
        ('select "a;b" from t', 1),
        ("-- only a comment\n", 0),
        ("", 0),
    ],
)
def test_statement_count(sql: str, count: int) -> None:
    assert scan(sql, "postgres", "format").statement_count == count


def test_statement_count_ignores_semicolons_in_dollar_bodies() -> None:
    assert scan("DO $$ BEGIN PERFORM 1; PERFORM 2; END $$", "postgres", "format").statement_count == 1


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("select 1", "SELECT"),
        ("  Select 1", "SELECT"),
        ("/* cache ttl=5 */ with x as (select 1) select * from x", "WITH"),
        ("-- note\nINSERT INTO t VALUES (1)", "INSERT"),
        ("/* comment */ update t set a = 1", "UPDATE"),
        ("(select 1) union (select 2)", "("),
        ("'literal'", ""),
        ("", ""),
    ],
)
def test_first_word(sql: str, word: str) -> None:
    assert scan(sql, "postgres", "format").first_word == word


# -- end to end through QueryCache --------------------------------------------------------------------

def _sqlite_with_rows() -> sqlite3.Connection:
    raw = sqlite3.connect(":memory:")
    raw.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    raw.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    raw.commit()
    return raw


def test_unknown_option_still_returns_rows_and_counts_a_warning() -> None:
    cache = querycache.QueryCache()
    try:
        conn = cache.wrap(_sqlite_with_rows())
        before = cache.stats().to_dict()["hint_warnings"]
        assert before == 0
        cur = conn.cursor()
        cur.execute("/* cache ttl=60 frobnicate */ SELECT id, name FROM items WHERE id >= ? ORDER BY id", (2,))
        assert cur.fetchall() == [(2, "b"), (3, "c")]
        assert cache.stats().to_dict()["hint_warnings"] == 1
    finally:
        cache.close()


def test_unknown_option_in_strict_mode_raises_naming_it() -> None:
    cache = querycache.QueryCache.from_dict({"hints": {"strict": True}})
    try:
        conn = cache.wrap(_sqlite_with_rows())
        cur = conn.cursor()
        with pytest.raises(querycache.HintError, match="frobnicate"):
            cur.execute("/* cache ttl=60 frobnicate */ SELECT id, name FROM items ORDER BY id")
        # a well-formed hint still works on the same connection
        cur.execute("/* cache ttl=60 */ SELECT id, name FROM items ORDER BY id")
        assert cur.fetchall() == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        cache.close()
