"""Bad input (issue 9, part 4): fuzzed SQL through the analyzer and the hint scanner, a corpus of
malformed SQL and injection strings run end to end through wrapped sqlite3 and PostgreSQL
connections, and garbage under every Redis key the cache wrote.

Properties, for any text:
- the analyzer raises nothing (``HintError`` only with ``hints.strict``);
- what it cannot classify is a non-cacheable write to everything, never a cacheable read;
- a ``/* cache ... */`` inside a string literal, quoted identifier or dollar quote is data;
- the analysis is deterministic (two analyzers, or the memo, agree).

``QUERYCACHE_FUZZ_EXAMPLES`` (default 150) sets the examples per property.
"""

from __future__ import annotations

import os
import random
import sqlite3
import string
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import querycache
from querycache.analysis import Analysis, Analyzer, StatementKind
from querycache.errors import HintError
from querycache.hints import ACCEPTED_OPTIONS, scan
from querycache.testing.redis_server import RedisServer
from tests.conftest import PG_DSN, require

EXAMPLES = int(os.environ.get("QUERYCACHE_FUZZ_EXAMPLES", "150"))
# The default run (CI) draws the same inputs every time, so that a red run is the code's doing and
# can be replayed; setting QUERYCACHE_FUZZ_EXAMPLES draws new ones on every run.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize="QUERYCACHE_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DIALECTS = [("postgres", "format"), ("postgres", "pyformat"), ("sqlite", "qmark"), ("mysql", "format"),
            ("mysql", "pyformat")]
dialects = st.sampled_from(DIALECTS)
CORPUS = Path(__file__).parent / "corpus" / "bad_input.txt"
TRIED: dict[str, int] = {}
"""Inputs tried per property (printed at the end of a ``-s`` run)."""


def _tried(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


# -- what every analysis must satisfy ------------------------------------------------------------------

def analyze(sql: str, dialect: str, paramstyle: str) -> Analysis:
    """Two fresh analyzers and the memo must agree: the analysis is a function of the text."""
    first = Analyzer(dialect, paramstyle)
    analysis = first(sql)
    assert Analyzer(dialect, paramstyle)(sql) == analysis
    assert first(sql) is analysis
    check_conservative(analysis)
    return analysis


def check_conservative(a: Analysis) -> None:
    if a.cacheable:
        assert a.kind is StatementKind.READ and a.reason is None
        assert not a.tables_written and not a.writes_everything
    if a.kind is StatementKind.UNKNOWN:
        assert a.writes_everything and not a.cacheable
    if a.kind in (StatementKind.WRITE, StatementKind.DDL, StatementKind.CALL):
        assert not a.cacheable
        assert a.tables_written or a.writes_everything or a.creates_temp, a
    assert isinstance(a.fingerprint, str) and a.fingerprint
    a.to_dict()  # what `explain --json` prints must always be buildable


# Words that may begin a text the analyzer caches; any other first word must not be a cacheable read.
# sqlglot also reads FROM-first queries (``FROM t``); no supported database runs them, so they only fail.
READ_WORDS = {"SELECT", "WITH", "VALUES", "TABLE", "(", "FROM"}


# -- arbitrary text ----------------------------------------------------------------------------------

SQLISH = st.sampled_from([
    "SELECT", "FROM", "WHERE", "INSERT", "INTO", "UPDATE", "DELETE", "SET", "VALUES", "WITH", "AS", "(", ")",
    ",", ";", "'", '"', "`", "$$", "$q$", "/*", "*/", "--", "#", "\n", " ", "%s", "%(x)s", "?", ":x", "$1",
    "/* cache ttl=5 */", "/* cache skip */", "-- cache ttl=7\n", "t", "orders", "1", "'a''b'", "E'\\''",
    "\x00", "é", "名前", "\u202e", "\ufeff", "FOR UPDATE", "UNION", "BEGIN", "COMMIT", "CREATE", "DROP",
    "TABLE", "now()", "[", "]", "\\", "@x", "/*!", "/*+", "*",
])


@FUZZ
@given(sql=st.text(max_size=300), dialect=dialects)
def test_arbitrary_text_never_raises_and_is_conservative(sql: str, dialect: tuple[str, str]) -> None:
    _tried("arbitrary text")
    analyze(sql, *dialect)


@FUZZ
@given(parts=st.lists(SQLISH | st.text(max_size=8), max_size=40), dialect=dialects)
def test_sql_token_soup_never_raises_and_is_conservative(parts: list[str], dialect: tuple[str, str]) -> None:
    _tried("token soup")
    sql = " ".join(parts)
    a = analyze(sql, *dialect)
    if a.cacheable:
        assert scan(sql, *dialect).first_word in READ_WORDS, sql


@FUZZ
@given(word=st.sampled_from(["INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE",
                             "GRANT", "CALL", "DO", "COPY", "SELEC", "LOCK", "REPLACE", "UPSERT", "VACUUM",
                             "EXEC", "FOO", "\ufeffSELECT", "\uff33\uff25\uff2c\uff25\uff23\uff34"]),
       rest=st.lists(SQLISH | st.text(max_size=8), max_size=30), dialect=dialects)
def test_text_not_starting_like_a_read_is_never_a_cacheable_read(word: str, rest: list[str],
                                                                 dialect: tuple[str, str]) -> None:
    _tried("non-read first word")
    sql = word + " " + " ".join(rest)
    a = analyze(sql, *dialect)
    assert not a.cacheable, (sql, a)


@FUZZ
@given(sql=st.text(max_size=200), dialect=dialects)
def test_strict_hints_raise_only_hint_error(sql: str, dialect: tuple[str, str]) -> None:
    _tried("strict hints")
    text = "/* cache " + sql.replace("*/", "") + " */ SELECT 1"
    try:
        a = Analyzer(*dialect, strict_hints=True)(text)
    except HintError as exc:
        assert "accepted options" in str(exc)
        assert all(option in str(exc) for option in ACCEPTED_OPTIONS)
    else:
        assert not a.hints.warnings


# -- grammar-generated statements --------------------------------------------------------------------

def _ident(draw: Any) -> str:
    return draw(st.sampled_from(["t", "orders", "items", "Line_Items", "t2"]))


@st.composite
def separator(draw: Any, dialect: str, hints: list[str]) -> str:
    """Whitespace, a comment (of the dialect's forms, nested on PostgreSQL) or a real hint comment."""
    body = draw(st.text(alphabet=st.characters(blacklist_characters="*/\n\r#-"), max_size=12))
    choice = draw(st.integers(0, 7))
    if choice == 0:
        return draw(st.sampled_from([" ", "\n", "\t", "  \r\n "]))
    if choice == 1:
        return f" /* {body} */ "
    if choice == 2:
        return f" -- {body}\n"
    if choice == 3 and dialect == "postgres":
        return f" /* {body} /* {body} */ {body} */ "
    if choice == 3 and dialect == "mysql":
        return f" # {body}\n"
    if choice == 4:
        ttl = draw(st.integers(0, 10**6))
        hints.append(f"ttl={ttl}")
        return f" /* cache ttl={ttl} */ "
    if choice == 5:
        hints.append("skip")
        return " -- cache skip\n"
    return " "


@st.composite
def string_literal(draw: Any, dialect: str) -> str:
    """A string literal whose content holds hint-looking text, quotes, NULs and unicode."""
    content = draw(st.lists(st.sampled_from([
        "/* cache ttl=1 */", "/* cache skip */", "-- cache nocache", "*/", "/*", "--", "'", "\\", "\x00",
        "é", "💥", " ", "$$", "$x$", "\n", "#", '"', "`",
    ]) | st.text(alphabet=string.ascii_letters, max_size=4), max_size=8))
    text = "".join(content)
    form = draw(st.integers(0, 3))
    if dialect == "postgres" and form == 1:
        tag = draw(st.sampled_from(["", "x", "tag_1"]))
        quote = f"${tag}$"
        return quote + text.replace(quote, "") + quote
    if dialect == "postgres" and form == 2:
        return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if dialect == "mysql":
        quote = "'" if form != 1 else '"'
        return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
    if form == 3:  # a quoted identifier holding the same text
        return '"' + text.replace('"', '""').replace("\x00", "") + '"'
    return "'" + text.replace("'", "''") + "'"


@st.composite
def statement(draw: Any) -> tuple[str, str, str, str, list[str], str]:
    """(sql, dialect, paramstyle, kind, real hints, table): a statement with literals and comments."""
    dialect, paramstyle = draw(dialects)
    hints: list[str] = []
    table = _ident(draw)
    lit = string_literal(dialect)
    kind = draw(st.sampled_from(["read", "insert", "update", "delete", "ddl"]))
    if kind == "read":
        tokens = ["SELECT", draw(lit), ",", "a", "FROM", table, "WHERE", "b", "=", draw(lit)]
        if draw(st.booleans()):
            tokens += ["ORDER BY", "a", "LIMIT", str(draw(st.integers(0, 100)))]
    elif kind == "insert":
        tokens = ["INSERT", "INTO", table, "(", "a", ")", "VALUES", "(", draw(lit), ")"]
    elif kind == "update":
        tokens = ["UPDATE", table, "SET", "a", "=", draw(lit), "WHERE", "b", "=", draw(lit)]
    elif kind == "delete":
        tokens = ["DELETE", "FROM", table, "WHERE", "a", "=", draw(lit)]
    else:
        tokens = ["CREATE", "TABLE", table, "(", "a", "TEXT", "DEFAULT", draw(lit), ")"]
    sql = draw(separator(dialect, hints)).lstrip()
    for token in tokens:
        sql += token + draw(separator(dialect, hints))
    return sql, dialect, paramstyle, kind, hints, table


@FUZZ
@given(generated=statement())
def test_generated_statements_are_classified_and_only_real_hints_count(generated: Any) -> None:
    sql, dialect, paramstyle, kind, hints, table = generated
    _tried("grammar statements")
    a = analyze(sql, dialect, paramstyle)
    ttls = [int(h.split("=")[1]) for h in hints if h.startswith("ttl=")]
    # Hints from comments only: literals full of "/* cache ttl=1 */" and "skip" never count.
    assert a.hints.ttl == (ttls[-1] if ttls else None), sql
    assert a.hints.skip == ("skip" in hints), sql
    assert not a.hints.warnings, sql
    if kind == "read":
        assert a.kind is StatementKind.READ, sql
        assert table.lower() in a.tables_read, sql
        assert a.cacheable == ("skip" not in hints), sql
    else:
        assert not a.cacheable, sql
        if kind != "ddl":
            assert a.kind is StatementKind.WRITE, sql
            assert table.lower() in a.tables_written, sql


@FUZZ
@given(generated=statement())
def test_comments_and_hints_do_not_change_the_analysis(generated: Any) -> None:
    """The same statement with its hint comments blanked: same kind, tables, key text. (Separators never
    split a multi-word keyword: sqlglot does not parse ``ORDER /* c */ BY``, which PostgreSQL accepts;
    the analyzer then treats the read as an unknown write, conservative.)"""
    sql, dialect, paramstyle, _kind, _hints, _table = generated
    _tried("comment invariance")
    a = analyze(sql, dialect, paramstyle)
    plain = scan(sql, dialect, paramstyle).parse_text  # hint comments already blanked
    b = analyze(plain, dialect, paramstyle)
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, even in a comment: no driver can send the text, so it must not be answered
        # from an entry of its comment-free twin either (the driver's UnicodeEncodeError is the answer).
        assert not a.cacheable and not b.cacheable, sql
        return
    assert (a.kind, a.tables_read, a.tables_written, a.writes_everything) == (
        b.kind, b.tables_read, b.tables_written, b.writes_everything), sql
    assert a.normalized == b.normalized and a.fingerprint == b.fingerprint, sql


@FUZZ
@given(literal_text=st.text(max_size=60).map(lambda s: s.replace("\x00", "")),
       dialect=st.sampled_from(["postgres", "sqlite", "mysql"]))
def test_hint_inside_any_string_literal_is_data(literal_text: str, dialect: str) -> None:
    _tried("hint in literal")
    escaped = literal_text.replace("'", "''")
    if dialect == "mysql":
        escaped = escaped.replace("\\", "\\\\")
    sql = f"SELECT '/* cache ttl=9 skip */{escaped}-- cache skip' FROM t"
    paramstyle = "qmark" if dialect == "sqlite" else "format"
    a = analyze(sql, dialect, paramstyle)
    assert a.hints.ttl is None and not a.hints.skip and a.cacheable, sql


def test_dollar_quotes_nested_and_unterminated() -> None:
    cases = {
        "SELECT $a$ $b$ /* cache skip */ $b$ $a$ FROM t": True,
        "SELECT $a$ /* cache skip */ $b$ FROM t": False,  # unterminated: not a read anyone can cache
        "SELECT $$ /* cache ttl=1 */ $$ FROM t /* cache ttl=3 */": True,
    }
    for sql, cacheable in cases.items():
        a = analyze(sql, "postgres", "format")
        assert not a.hints.skip and a.hints.ttl in (None, 3), sql
        assert a.cacheable is cacheable, sql


@pytest.mark.parametrize("sql", ["SELECT \ud800 FROM t", "SELECT 1 FROM \udcff", "\udcffSELECT 1"])
def test_lone_surrogates_are_classified_not_raised(sql: str) -> None:
    a = Analyzer("postgres", "format")(sql)
    assert not a.cacheable


@FUZZ
@given(sql=st.text(alphabet=st.characters(blacklist_categories=()), max_size=50))
def test_lone_surrogates_inside_literals_and_comments(sql: str) -> None:
    """Surrogates where the lexer sees data (a literal or a comment) do not reach any encoder."""
    _tried("surrogates in literals")
    body = sql.replace("'", "").replace("*/", "")
    for text in (f"SELECT '{body}' FROM t", f"SELECT 1 /* {body} */ FROM t"):
        analyze(text, "postgres", "format")


MB = 1 << 20


@pytest.mark.parametrize("name, sql", [
    ("literal", "SELECT '" + "a" * MB + "' FROM t"),
    ("comment", "SELECT 1 /*" + "x" * MB + "*/ FROM t"),
    ("hint comment", "/* cache " + "ttl=1 " * (MB // 6) + "*/ SELECT 1 FROM t"),
    ("line comment", "SELECT 1 FROM t --" + "y" * MB),
    ("identifier", 'SELECT * FROM "' + "b" * MB + '"'),
    ("latin-1 bytes", bytes(range(256)).decode("latin-1") * (MB // 256)),
    ("parentheses", "(" * MB),
    ("semicolons", ";" * MB),
    ("words", "SELECT " + "a " * (MB // 2)),
    ("NULs", "SELECT 1\x00" * (MB // 9)),
    ("unterminated literal", "SELECT '" + "z" * MB),
    ("unterminated comment", "SELECT 1 /*" + "w" * MB),
])
def test_one_megabyte_texts(name: str, sql: str) -> None:
    _tried("1 MB texts")
    a = analyze(sql, "postgres", "format")
    if name in ("latin-1 bytes", "parentheses", "words", "NULs", "unterminated literal"):
        assert not a.cacheable


def test_warnings_of_a_long_bad_hint_stay_linear() -> None:
    sql = "/* cache " + "x " * 2000 + "*/ SELECT 1"
    a = Analyzer("postgres", "format")(sql)
    assert sum(len(w) for w in a.hints.warnings) < 50 * len(sql)


# -- the corpus, end to end ---------------------------------------------------------------------------

def corpus(dialect: str) -> list[str]:
    """``tests/corpus/bad_input.txt``: one statement a line; ``pg:`` / ``sqlite:`` limit a line to one
    database, ``esc:`` decodes backslash escapes; ``@T@`` is the test table; ``#`` starts a comment."""
    found = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        for prefix, only in (("pg:", "postgres"), ("sqlite:", "sqlite")):
            if line.startswith(prefix):
                if dialect != only:
                    line = ""
                line = line[len(prefix):]
        if line.startswith("esc:"):
            line = line[4:].encode("ascii").decode("unicode_escape")
        if line:
            found.append(line)
    found += [
        "SELECT * FROM @T@ WHERE name = '" + "x" * MB + "'",
        "SELECT * FROM @T@ /*" + "c" * MB + "*/",
        "SELECT * FROM @T@ WHERE name = '\ud800'",
        "SELECT \udcff FROM @T@",
        "SELECT * FROM @T@ WHERE name = 'a\x00b'",
        "SELECT * FROM @T@\x00; DROP TABLE @T@",
    ]
    return found


SEED = [(1, "alpha", 10), (2, "beta", 20), (3, "O'Brien", 30), (4, "名前", 40), (5, "/* cache ttl=5 */", 50)]


def _outcome(conn: Any, sql: str) -> tuple[str, Any]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall() if cur.description is not None else None
    except Exception as exc:  # noqa: BLE001 - the exception class is what is compared
        return "error", type(exc)
    return "rows", rows


def _run_corpus(statements: list[str], raw: Any, wrapped: Any, cache: querycache.QueryCache,
                reset: Callable[[Any, bool], None], dump: Callable[[], tuple[Any, Any]], table: str) -> int:
    tried = 0
    previous = ""
    baseline = None
    for template in statements:
        sql = template.replace("@T@", table)
        if baseline is None or dump() != baseline:  # the previous statement changed something
            try:
                reset(raw, False)
                reset(wrapped, True)
            except Exception as exc:
                raise AssertionError(f"could not reset after {previous[:200]!r}") from exc
            baseline = dump()
        previous = sql
        for attempt in range(2):  # the second run of a read may be answered by a tier
            fills_before = _fills(cache)
            expected = _outcome(raw, sql)
            got = _outcome(wrapped, sql)
            if expected[0] == "error":
                assert got == expected, (sql[:200], attempt, got, expected)
                assert _fills(cache) == fills_before, ("a failed statement filled a tier", sql[:200])
            else:
                assert got[0] == "rows", (sql[:200], attempt, got, expected)
                assert sorted(map(repr, got[1] or [])) == sorted(map(repr, expected[1] or [])), sql[:200]
            raw_rows, wrapped_rows = dump()
            assert raw_rows == wrapped_rows, ("the databases diverged", sql[:200])
            tried += 1
    TRIED["corpus statements run"] = TRIED.get("corpus statements run", 0) + tried
    return tried


def _fills(cache: querycache.QueryCache) -> tuple[Any, ...]:
    stats = cache.stats().to_dict()
    return tuple(sorted(stats["fills"].items())), cache.stats().entries["l2"]


def test_corpus_end_to_end_sqlite(tmp_path: Path) -> None:
    cache = querycache.QueryCache()
    raw = sqlite3.connect(str(tmp_path / "raw.db"), isolation_level=None)
    wrapped = cache.wrap(sqlite3.connect(str(tmp_path / "wrapped.db"), isolation_level=None))
    table = "items"

    def reset(conn: Any, _wrapped: bool) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", SEED)

    def dump() -> tuple[Any, Any]:
        out = []
        for path in ("raw.db", "wrapped.db"):
            check = sqlite3.connect(str(tmp_path / path))
            out.append(check.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
                       + [tuple(r) for t in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                          for r in check.execute(f'SELECT * FROM "{t[0]}"').fetchall()])
            check.close()
        return out[0], out[1]

    try:
        assert _run_corpus(corpus("sqlite"), raw, wrapped, cache, reset, dump, table) > 150
    finally:
        wrapped.close()
        raw.close()
        cache.close()


def test_corpus_end_to_end_postgres() -> None:
    import psycopg

    try:
        admin = psycopg.connect(PG_DSN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require("PostgreSQL", exc)
    suffix = uuid.uuid4().hex[:8]
    schemas = (f"qcfuzz_raw_{suffix}", f"qcfuzz_wrapped_{suffix}")
    table = "items"
    for schema in schemas:
        admin.execute(f"CREATE SCHEMA {schema}")
    cache = querycache.QueryCache()
    raw = psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schemas[0]}")
    wrapped = cache.wrap(psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schemas[1]}"))

    def reset(conn: Any, is_wrapped: bool) -> None:
        schema = schemas[1] if is_wrapped else schemas[0]
        cur = conn.cursor()
        cur.execute(f"SET search_path TO {schema}")
        cur.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
        cur.execute(f"CREATE TABLE {schema}.{table} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
        cur.executemany(f"INSERT INTO {schema}.{table} VALUES (%s, %s, %s)", SEED)

    def dump() -> tuple[Any, Any]:
        out = []
        for schema in schemas:
            rows = admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                                 "ORDER BY 1", [schema]).fetchall()
            for (name,) in rows:
                rows = rows + admin.execute(f'SELECT * FROM {schema}."{name}" ORDER BY 1').fetchall()
            out.append(rows)
        return out[0], out[1]

    try:
        assert _run_corpus(corpus("postgres"), raw, wrapped, cache, reset, dump, table) > 150
    finally:
        wrapped.close()
        raw.close()
        cache.close()
        for schema in schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


# -- garbage under our Redis keys ------------------------------------------------------------------------

def _corrupt(client: Any, key: bytes, mode: str, rng: random.Random) -> None:
    junk = rng.randbytes(rng.randint(0, 64))
    kind = client.type(key)
    if mode == "entry-fields" and kind == b"hash":
        # Keep the shape, break the content: the lookup then hands the codec garbage.
        for field in client.hkeys(key):
            client.hset(key, field, rng.randbytes(rng.randint(0, 64)) if field != b"e" else client.hget(key, b"e"))
        return
    client.delete(key)
    if mode == "bytes":
        client.set(key, junk)
    elif mode == "wrong-type":
        choice = rng.choice(["list", "set", "zset", "hash", "string"])
        if choice == "list" or (choice == "string" and kind == b"string"):
            client.rpush(key, junk or b"x", b"1")
        elif choice == "set":
            client.sadd(key, junk or b"x")
        elif choice == "zset":
            client.zadd(key, {junk or b"x": 1.0})
        elif choice == "hash":
            client.hset(key, mapping={b"seq": junk or b"x", b"epoch": junk, b"v": junk, b"e": junk})
        else:
            client.set(key, junk)
    elif mode == "entry-fields":
        client.set(key, junk)


@pytest.mark.parametrize("mode", ["bytes", "wrong-type", "entry-fields"])
@pytest.mark.parametrize("hmac_secret", [None, "s3cret"])
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_garbage_under_every_redis_key(own_redis: RedisServer, tmp_path: Path, mode: str,
                                       hmac_secret: str | None, database: str) -> None:
    import redis

    cache = querycache.QueryCache.from_dict({
        "l2": {"backend": "redis", "url": own_redis.url, "namespace": f"fz{uuid.uuid4().hex[:6]}",
               "timeout_ms": 2000, "hmac_secret": hmac_secret}})
    raw, wrapped, table, cleanup = _connections(database, cache, tmp_path)
    ph = "?" if database == "sqlite" else "%s"
    reads = [(f"SELECT * FROM {table} ORDER BY id", None), (f"SELECT name FROM {table} WHERE id = {ph}", (2,)),
             (f"/* cache ttl=30 */ SELECT count(*) FROM {table}", None),
             (f"SELECT qty FROM {table} WHERE name = {ph}", ("beta",))]
    client = redis.Redis.from_url(own_redis.url)
    rng = random.Random(f"{mode}{hmac_secret}{database}")
    try:
        for sql, params in reads * 2:
            _same(raw, wrapped, sql, params)
        _write(wrapped, f"UPDATE {table} SET qty = qty + 1 WHERE id = 2")
        for sql, params in reads:
            _same(raw, wrapped, sql, params)
        cache.publish_stats()
        keys = list(client.scan_iter(count=1000))
        assert len(keys) >= 8, keys  # clock, versions, entries, holders, acks, stats...
        kinds = {client.type(k) for k in keys}
        assert {b"string", b"hash"} <= kinds
        for key in keys:
            _corrupt(client, key, mode, rng)
        cache.flush("l1")
        before = cache.stats().to_dict()
        statuses = []
        for sql, params in reads * 3:
            statuses.append(_same(raw, wrapped, sql, params))
        assert all(s in ("miss", "bypass:store_unavailable") or s.startswith("hit") for s in statuses), statuses
        after = cache.stats().to_dict()
        assert after["misses"] + after["fail_open"] > before["misses"] + before["fail_open"]
        # A later write through the wrapper, then reads: fresh (the store may or may not be usable).
        _write(wrapped, f"UPDATE {table} SET name = 'changed' WHERE id = 2")
        for sql, params in [*reads, (f"SELECT name FROM {table} WHERE id = {ph}", (2,))]:
            _same(raw, wrapped, sql, params)
        assert _same(raw, wrapped, f"SELECT name FROM {table} WHERE id = {ph}", (2,)) is not None
        TRIED["redis keys corrupted"] = TRIED.get("redis keys corrupted", 0) + len(keys)
    finally:
        cleanup()
        cache.close()


def _connections(database: str, cache: querycache.QueryCache, tmp_path: Path) -> tuple[Any, Any, str, Any]:
    table = f"qcfz_{uuid.uuid4().hex[:8]}"
    if database == "sqlite":
        path = str(tmp_path / "g.db")
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
        raw.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", SEED)
        wrapped = cache.wrap(sqlite3.connect(path, isolation_level=None))

        def cleanup() -> None:
            wrapped.close()
            raw.close()
        return raw, wrapped, table, cleanup
    import psycopg

    try:
        raw = psycopg.connect(PG_DSN, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the service is absent
        require("PostgreSQL", exc)
    raw.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
    raw.cursor().executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", SEED)
    wrapped = cache.wrap(psycopg.connect(PG_DSN, autocommit=True))

    def cleanup_pg() -> None:
        wrapped.close()
        raw.execute(f"DROP TABLE IF EXISTS {table}")
        raw.close()
    return raw, wrapped, table, cleanup_pg


def _same(raw: Any, wrapped: Any, sql: str, params: Any) -> str:
    """Run on both; rows must be equal and the wrapper must raise nothing. Returns the status."""
    expected = raw.execute(sql, params).fetchall() if params else raw.execute(sql).fetchall()
    cur = wrapped.cursor()
    cur.execute(sql, params) if params else cur.execute(sql)
    got = cur.fetchall()
    assert [tuple(r) for r in got] == [tuple(r) for r in expected], (sql, got, expected, cur.cache_status)
    status: str = cur.cache_status
    return status


def _write(wrapped: Any, sql: str) -> None:
    wrapped.cursor().execute(sql)


def test_report_inputs_tried() -> None:
    """Not a check: prints how many inputs each property saw in this session (run with ``-s``)."""
    for name, count in sorted(TRIED.items()):
        print(f"fuzz: {name}: {count}")


@pytest.mark.parametrize("text", ["SELECT a FROM t ; ;", "SELECT a FROM t;;"])
def test_sqlite_rejected_empty_statement_is_not_served_from_l2(tmp_path: Path, text: str) -> None:
    path = str(tmp_path / "e.db")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE t (a)")
    raw.execute("INSERT INTO t VALUES (1)")
    cache = querycache.QueryCache()
    wrapped = cache.wrap(sqlite3.connect(path, isolation_level=None))
    try:
        wrapped.cursor().execute("SELECT a FROM t").fetchall()
        with pytest.raises(sqlite3.ProgrammingError):
            raw.execute(text)
        with pytest.raises(sqlite3.ProgrammingError):
            wrapped.cursor().execute(text)
    finally:
        wrapped.close()
        raw.close()
        cache.close()
