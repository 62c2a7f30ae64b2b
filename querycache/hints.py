"""Hint comments (``/* cache ttl=60 */``) and a small lexical scan of the SQL text.

The scan walks the text once, honouring the dialect's quoting rules, so that a
``/* cache ... */`` inside a string literal, a quoted identifier or a PostgreSQL
dollar-quoted body is data, never a hint. The same walk rewrites driver
placeholders (``%s``, ``%(name)s``) into forms sqlglot parses for every dialect,
finds the first keyword and counts top-level statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from querycache.errors import HintError

ACCEPTED_OPTIONS = ("ttl", "skip", "nocache", "tables", "tier", "semantic", "swr", "max_stale", "group", "key",
                    "settings", "volatile")
MAX_STALE_CAP_S = 3600
"""The largest `max_stale` (hint and `ttl.max_stale_s`): the stores keep a version's bump history this long."""
# What ``volatile=`` accepts: the statement clock (now(), CURRENT_DATE...), frozen at fill.
VOLATILE_KINDS = ("time",)
_TIERS = ("l1", "l2")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.$-]*\Z")
# A server setting (PostgreSQL: app.tenant); ``settings=`` hints and scope.policy_settings take these.
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*\Z")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PYFORMAT_NAMED = re.compile(r"%\(([^)]+)\)s")


@dataclass(frozen=True, slots=True)
class Hints:
    """Options collected from every ``cache`` comment of one statement."""

    ttl: int | None = None
    skip: bool = False
    tables: tuple[str, ...] = ()
    tier: str | None = None
    semantic: bool = False
    semantic_threshold: float | None = None
    swr: int | None = None
    # Bounded staleness (docs/freshness.md): seconds an invalidated answer may still be served.
    max_stale: int | None = None
    groups: tuple[str, ...] = ()
    # Settings the answer depends on beyond what the catalog shows (row-level security policies the
    # analyzer cannot see into): part of the read's scope.
    settings: tuple[str, ...] = ()
    # "time": the statement clock may be frozen at fill (docs/freshness.md, "The statement clock").
    volatile: str | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "ttl": self.ttl,
            "skip": self.skip,
            "tables": list(self.tables),
            "tier": self.tier,
            "semantic": self.semantic,
            "semantic_threshold": self.semantic_threshold,
            "swr": self.swr,
            "max_stale": self.max_stale,
            "groups": list(self.groups),
            "settings": list(self.settings),
            "volatile": self.volatile,
            "warnings": list(self.warnings),
        }


NO_HINTS = Hints()


@dataclass(slots=True)
class ScannedText:
    """What one lexical pass learned about a statement."""

    hints: Hints
    parse_text: str
    first_word: str
    statement_count: int
    hint_comments: list[str] = field(default_factory=list)
    # MySQL text the key must not lose: executable comments (/*! */, /*M! */), optimizer
    # hints (/*+ */), user and system variables (@x, @@x).
    session_dependent: bool = False


MAX_WARNINGS = 20  # per statement: a comment of thousands of bad options is one problem, not thousands


@dataclass(slots=True)
class _HintBuilder:
    strict: bool
    ttl: int | None = None
    skip: bool = False
    tables: list[str] = field(default_factory=list)
    tier: str | None = None
    semantic: bool = False
    semantic_threshold: float | None = None
    swr: int | None = None
    max_stale: int | None = None
    groups: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    volatile: str | None = None
    warnings: list[str] = field(default_factory=list)

    def problem(self, comment: str, message: str) -> None:
        # The comment is shortened: a comment of many bad options must not make quadratic warnings.
        shown = comment if len(comment) <= 120 else comment[:117] + "..."
        text = f"{message} in hint {shown!r}; accepted options: {', '.join(ACCEPTED_OPTIONS)}"
        if self.strict:
            raise HintError(text)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append(f"more problems in hint {shown!r} than the {MAX_WARNINGS} listed")

    def add_comment(self, comment: str, body: str) -> None:
        for option in body.split()[1:]:
            name, has_value, value = option.partition("=")
            name = name.lower()
            if name in ("skip", "nocache") and not has_value:
                self.skip = True
            elif name == "semantic":
                self.semantic = True
                if has_value:
                    threshold = _parse_float(value)
                    if threshold is None or not 0.0 < threshold <= 1.0:
                        self.problem(comment, f"semantic={value!r} is not a number in (0, 1]")
                    else:
                        self.semantic_threshold = threshold
            elif name in ("ttl", "swr", "max_stale") and has_value:
                seconds = _parse_int(value)
                if seconds is None or seconds < 0:
                    self.problem(comment, f"{name}={value!r} is not a whole number of seconds >= 0")
                elif name == "ttl":
                    self.ttl = seconds
                elif name == "swr":
                    self.swr = seconds
                elif seconds > MAX_STALE_CAP_S:
                    self.problem(comment, f"max_stale={value!r} exceeds {MAX_STALE_CAP_S} seconds")
                else:
                    self.max_stale = seconds
            elif name == "tables" and has_value:
                names = [n for n in value.split(",") if n]
                bad = [n for n in names if not _NAME.match(n)]
                if bad or not names:
                    self.problem(comment, f"tables={value!r} is not a comma-separated list of table names")
                else:
                    self.tables.extend(n.split(".")[-1].strip('"`').lower() for n in names)
            elif name == "tier" and has_value:
                if value.lower() not in _TIERS:
                    self.problem(comment, f"tier={value!r} is not one of l1, l2")
                else:
                    self.tier = value.lower()
            elif name in ("group", "key") and has_value:
                names = [n for n in value.split(",") if n]
                if not names or any(not _NAME.match(n) for n in names):
                    self.problem(comment, f"{name}={value!r} is not a group name")
                else:
                    self.groups.extend(names)
            elif name == "volatile" and has_value:
                if value.lower() not in VOLATILE_KINDS:
                    self.problem(comment, f"volatile={value!r} is not one of {', '.join(VOLATILE_KINDS)}")
                else:
                    self.volatile = value.lower()
            elif name == "settings" and has_value:
                names = [n for n in value.split(",") if n]
                if not names or any(not SETTING_NAME.match(n) for n in names):
                    self.problem(comment, f"settings={value!r} is not a comma-separated list of setting names")
                else:
                    self.settings.extend(n.lower() for n in names)
            else:
                self.problem(comment, f"unknown or malformed option {option!r}")

    def build(self) -> Hints:
        return Hints(
            ttl=self.ttl,
            skip=self.skip,
            tables=tuple(dict.fromkeys(self.tables)),
            tier=self.tier,
            semantic=self.semantic,
            semantic_threshold=self.semantic_threshold,
            swr=self.swr,
            max_stale=self.max_stale,
            groups=tuple(dict.fromkeys(self.groups)),
            settings=tuple(sorted(set(self.settings))),
            volatile=self.volatile,
            warnings=tuple(self.warnings),
        )


def _parse_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _parse_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _is_hint(body: str) -> bool:
    words = body.split(None, 1)
    return bool(words) and words[0].lower() == "cache"


def scan(sql: str, dialect: str, paramstyle: str, strict: bool = False) -> ScannedText:
    """Walk ``sql`` once; see the module docstring for what is collected.

    ``dialect`` is a sqlglot dialect name (``postgres``, ``mysql``, ``sqlite``...).
    """
    mysql = dialect in ("mysql", "mariadb")
    postgres = dialect == "postgres"
    sqlite = dialect == "sqlite"
    percent_params = paramstyle in ("format", "pyformat")
    builder = _HintBuilder(strict=strict)
    out: list[str] = []
    hint_comments: list[str] = []
    first_word = ""
    session_dependent = False
    statements = 0
    empty_statements = 0
    statement_has_content = False
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        # MySQL needs whitespace after "--" for a comment: 5--1 is five minus minus one.
        if (c == "-" and nxt == "-" and (not mysql or i + 2 >= n or sql[i + 2].isspace())) or (
            mysql and c == "#"
        ):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            comment = sql[i:end]
            body = comment[1:] if c == "#" else comment[2:]
            if _is_hint(body):
                builder.add_comment(comment, body)
                hint_comments.append(comment)
                out.append(" ")
            else:
                out.append(comment)
            i = end
            continue
        if c == "/" and nxt == "*":
            depth = 1
            j = i + 2
            while j < n and depth:
                if postgres and sql.startswith("/*", j):
                    depth += 1
                    j += 2
                elif sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                else:
                    j += 1
            comment = sql[i:j]
            body = comment[2:-2] if comment.endswith("*/") else comment[2:]
            if mysql and (body.startswith(("!", "+")) or body.startswith("M!")):
                # MySQL executable comment or optimizer hint: it is SQL, not a comment.
                out.append(comment)
                statement_has_content = True
                session_dependent = True
            elif _is_hint(body):
                builder.add_comment(comment, body)
                hint_comments.append(comment)
                out.append(" ")
            else:
                out.append(comment)
            i = j
            continue
        if c == "'" or (c == '"' and mysql) or c == "`" or (c == "[" and sqlite):
            close = "]" if c == "[" else c
            backslash = (mysql and c in "'\"") or (
                postgres and c == "'" and i > 0 and sql[i - 1] in "eE"
                and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] in "_$"))
            )
            j = i + 1
            while j < n:
                d = sql[j]
                if backslash and d == "\\":
                    j += 2
                    continue
                if d == close:
                    if j + 1 < n and sql[j + 1] == close and close != "]":
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            out.append(sql[i:j])
            statement_has_content = True
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n:
                if sql[j] == '"':
                    if j + 1 < n and sql[j + 1] == '"':
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            out.append(sql[i:j])
            statement_has_content = True
            i = j
            continue
        if c == "$" and postgres:
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                tag = m.group(0)
                end = sql.find(tag, m.end())
                end = n if end < 0 else end + len(tag)
                out.append(sql[i:end])
                statement_has_content = True
                i = end
                continue
        if c == "%" and percent_params:
            # sqlglot's postgres dialect parses %s and %(name)s itself; others need ? and :name.
            if nxt == "s" and postgres:
                out.append("%s")
                i += 2
                statement_has_content = True
                continue
            if nxt == "s":
                out.append("?")
                i += 2
                statement_has_content = True
                continue
            if nxt == "%":
                out.append("%")
                i += 2
                continue
            m = _PYFORMAT_NAMED.match(sql, i)
            if m and postgres:
                out.append(m.group(0))
                i = m.end()
                statement_has_content = True
                continue
            if m:
                out.append(":" + re.sub(r"\W", "_", m.group(1)))
                i = m.end()
                statement_has_content = True
                continue
        if c == ";":
            if statement_has_content:
                statements += 1
            else:
                empty_statements += 1  # sqlite3 refuses "SELECT 1;;": not one statement
            statement_has_content = False
            out.append(c)
            i += 1
            continue
        if c.isalpha() or c == "_":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            if not first_word:
                first_word = sql[i:j].upper()
            out.append(sql[i:j])
            statement_has_content = True
            i = j
            continue
        if c == "@" and mysql:
            session_dependent = True  # @user_var, @@system_var: session state the key cannot see
        if not c.isspace():
            statement_has_content = True
            if not first_word and c == "(":
                first_word = "("
        out.append(c)
        i += 1
    if statement_has_content:
        statements += 1
    if statements and empty_statements:
        statements += 1  # a statement and an empty one: several, for every purpose here
    return ScannedText(
        hints=builder.build() if hint_comments else NO_HINTS,
        parse_text="".join(out),
        first_word=first_word,
        statement_count=statements,
        hint_comments=hint_comments,
        session_dependent=session_dependent,
    )


def parse_hints(sql: str, dialect: str = "postgres", paramstyle: str = "format", strict: bool = False) -> Hints:
    """The hints of ``sql`` alone (convenience for callers that do not need the scan)."""
    return scan(sql, dialect, paramstyle, strict).hints
