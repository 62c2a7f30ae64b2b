"""SQL analysis: what a statement reads and writes, and whether its result may be cached.

sqlglot runs once per distinct (text, dialect, paramstyle): results live in a
bounded LRU. When in doubt the analysis is conservative: a statement it cannot
classify is a write to every table of the database (``writes_everything``), and
a read it is unsure about is not cacheable, with the reason named.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import sqlglot
from cachetools import LRUCache
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from querycache.hints import Hints, ScannedText, scan
from querycache.status import BypassReason


class StatementKind(StrEnum):
    READ = "read"
    WRITE = "write"
    DDL = "ddl"
    TRANSACTION = "transaction"
    SESSION = "session"
    CALL = "call"
    OTHER = "other"
    UNKNOWN = "unknown"


class TxAction(StrEnum):
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"


# Functions whose result is not a function of the database state and the arguments.
VOLATILE_FUNCTIONS = frozenset(
    {
        # PostgreSQL
        "now", "random", "random_normal", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc",
        "uuid_generate_v4", "nextval", "currval", "lastval", "setval", "clock_timestamp",
        "statement_timestamp", "transaction_timestamp", "timeofday", "pg_sleep", "txid_current",
        "pg_current_xact_id", "set_config", "pg_advisory_lock", "pg_try_advisory_lock",
        "pg_advisory_xact_lock", "pg_notify", "inet_client_addr", "pg_backend_pid", "localtime",
        "localtimestamp", "current_setting", "pg_current_wal_lsn", "dblink",
        # SQL standard / sqlglot canonical names
        "current_timestamp", "current_date", "current_time", "current_datetime", "rand", "uuid",
        "current_timestamp_ltz", "systimestamp", "unix_seconds",
        # MySQL / MariaDB
        "sysdate", "curdate", "curtime", "utc_timestamp", "utc_date", "utc_time", "uuid_short",
        "last_insert_id", "found_rows", "row_count", "connection_id", "sleep", "get_lock",
        "release_lock", "is_free_lock", "is_used_lock", "benchmark", "master_pos_wait",
        "release_all_locks", "sys_guid", "unix_timestamp", "random_bytes",
        # SQLite
        "changes", "last_insert_rowid", "total_changes", "randomblob", "load_extension",
        "sqlite_offset",
    }
)
# The statement clock: one value per statement (or transaction), no side effect. A read whose only
# volatility is these is cached under /* cache volatile=time */, its clock frozen at fill.
# clock_timestamp(), SYSDATE() and timeofday() move within a statement: never.
CLOCK_FUNCTIONS = frozenset(
    {"now", "current_timestamp", "current_date", "current_time", "localtime", "localtimestamp",
     "transaction_timestamp", "statement_timestamp", "current_datetime", "curdate", "curtime",
     "utc_timestamp", "utc_date", "utc_time", "unix_timestamp"}
)
# What volatile=time also lets through PostgreSQL's list of functions that are not immutable: date
# arithmetic whose stable variants read only the clock and TimeZone (part of every scope).
CLOCK_ARITHMETIC = frozenset({"extract", "date_part", "date_trunc", "timestamp_trunc", "date_bin", "age", "timezone"})
# SQLite date/time functions are deterministic unless asked about 'now' (or called without arguments).
_SQLITE_TIME_FUNCTIONS = frozenset({"date", "time", "datetime", "julianday", "strftime", "unixepoch", "timediff"})
_SESSION_WORDS = frozenset(
    {"SET", "RESET", "DISCARD", "USE", "SHOW", "LISTEN", "UNLISTEN", "NOTIFY", "PREPARE", "DEALLOCATE",
     "DESCRIBE", "DESC", "PRAGMA", "CHECKPOINT", "HELP"}
)
_SCOPE_WORDS = frozenset({"SET", "RESET", "DISCARD", "USE"})
_CALL_WORDS = frozenset({"CALL", "DO", "EXEC", "EXECUTE"})
_DDL_WORDS = frozenset(
    {"CREATE", "DROP", "ALTER", "RENAME", "TRUNCATE", "COMMENT", "GRANT", "REVOKE", "REINDEX", "CLUSTER",
     "REFRESH", "IMPORT", "SECURITY", "ATTACH", "DETACH", "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL",
     "UNINSTALL", "ANALYZE", "ANALYSE", "VACUUM", "LOAD"}
)
# MySQL statements that commit the open transaction before (and after) they run.
_MYSQL_IMPLICIT_COMMIT_WORDS = frozenset(
    {"CREATE", "DROP", "ALTER", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK", "ANALYZE",
     "OPTIMIZE", "REPAIR", "FLUSH", "INSTALL", "UNINSTALL", "LOAD"}
)
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_SQLITE_UPDATE_OR = re.compile(r"^\s*UPDATE\s+OR\s+(ROLLBACK|ABORT|REPLACE|FAIL|IGNORE)\b", re.IGNORECASE)
_ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")

class _DropFallbackWarnings(logging.Filter):
    """sqlglot warns for every statement it keeps as a Command; we classify those ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "contains unsupported syntax" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_DropFallbackWarnings())

ALL_TABLES = "*"
# The version key DDL bumps besides "*": a process that sees it rise reads its catalog again.
CATALOG_CHANGES = "#catalog"
"""The table name meaning "every table of this database" in versions and write sets."""


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the cache needs to know about one statement text."""

    sql: str
    dialect: str
    kind: StatementKind
    tables_read: frozenset[str]
    tables_written: frozenset[str]
    writes_everything: bool
    cacheable: bool
    reason: BypassReason | None
    hints: Hints
    normalized: str
    fingerprint: str
    literals: tuple[object, ...]
    functions: frozenset[str]
    user_functions: frozenset[str] = frozenset()
    tx_action: TxAction | None = None
    isolation: str | None = None
    changes_scope: bool = False
    implicit_commit: bool = False
    creates_temp: bool = False
    sets_autocommit: bool | None = None
    rolls_back_to_savepoint: bool = False
    """ROLLBACK TO [SAVEPOINT] (tx_action SAVEPOINT): part of the transaction is undone. Known from
    the statement, not its text (a leading comment hides the first word from a text check)."""
    names_from_text: bool = False
    """MySQL and SQLite name an unaliased expression's column by its text as written (``count(*)``
    vs ``COUNT(*)``): such a statement's L2 key must use the text, not the normalized form."""

    @property
    def is_write(self) -> bool:
        return bool(self.tables_written) or self.writes_everything

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "tables_read": sorted(self.tables_read),
            "tables_written": sorted(self.tables_written | ({ALL_TABLES} if self.writes_everything else set())),
            "cacheable": self.cacheable,
            "reason": self.reason.value if self.reason else None,
            "hints": self.hints.to_dict(),
            "fingerprint": self.fingerprint,
            "normalized": self.normalized,
            "literals": [repr(v) for v in self.literals],
            "functions": sorted(self.functions),
            "tx_action": self.tx_action.value if self.tx_action else None,
            "isolation": self.isolation,
            "changes_scope": self.changes_scope,
            "implicit_commit": self.implicit_commit,
            "creates_temp": self.creates_temp,
        }


def fold(name: str) -> str:
    """Table-version key of a table name: unqualified, case-folded (docs/freshness.md)."""
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


def fold_identifier(name: str) -> str:
    """Version key of a parsed (or catalog) identifier: it is already unqualified, only case-folded."""
    return name.lower()


def _table_names(tables: list[exp.Table]) -> set[str]:
    return {fold_identifier(t.name) for t in tables if t.name}


def _alias_map(node: exp.Expression) -> dict[str, str]:
    """Alias (or name) -> table name, for every table the statement mentions."""
    tables = [t for t in node.find_all(exp.Table) if t.name]
    aliases: dict[str, str] = {}
    for t in tables:
        if t.alias:
            aliases.setdefault(t.alias.lower(), fold_identifier(t.name))
    for t in tables:
        aliases.setdefault(fold_identifier(t.name), fold_identifier(t.name))
    return aliases


def _joined_tables(table: exp.Expression) -> list[exp.Table]:
    found = [table] if isinstance(table, exp.Table) else []
    for join in table.args.get("joins") or []:
        if isinstance(join.this, exp.Table):
            found.append(join.this)
    return found


def _target_tables(node: exp.Expression) -> set[str]:
    """Tables a DML node writes: MySQL multi-table DELETE / UPDATE included."""
    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(node, exp.Delete):
        if node.args.get("tables"):  # DELETE a, b FROM t1 a JOIN t2 b ...: names may be aliases
            aliases = _alias_map(node)
            return {aliases.get(t.name.lower(), fold_identifier(t.name)) for t in node.args["tables"] if t.name}
        if node.args.get("using") and isinstance(target, exp.Table):  # DELETE FROM t1, t2 USING ...
            return _table_names(_joined_tables(target))
    if isinstance(node, exp.Update) and isinstance(target, exp.Table) and target.args.get("joins"):
        # UPDATE t1 a JOIN t2 b ... SET b.x = ...: the SET columns say which tables change.
        aliases = _alias_map(node)
        every = _table_names(_joined_tables(target))
        written: set[str] = set()
        for assignment in node.expressions:
            column = assignment.this if isinstance(assignment, exp.EQ) else None
            if not isinstance(column, exp.Column) or not column.table:
                return every
            written.add(aliases.get(column.table.lower(), fold_identifier(column.table)))
        return written or every
    return {fold_identifier(target.name)} if isinstance(target, exp.Table) and target.name else set()


def _read_tables(tree: exp.Expression) -> set[str] | None:
    """Real tables a query reads (CTE names excluded), or None when scoping failed."""
    try:
        names: set[str] = set()
        cte_names = {c.alias.lower() for c in tree.find_all(exp.CTE)}
        # sqlglot builds no scope for a CTE whose body is DML: its name would look like a table.
        dml_ctes = {c.alias.lower() for c in tree.find_all(exp.CTE) if isinstance(c.this, _DML)}
        for scope in traverse_scope(tree):
            for source in scope.sources.values():
                if isinstance(source, exp.Table) and source.name:
                    if source.db or source.name.lower() not in dml_ctes:
                        names.add(fold_identifier(source.name))
        # Tables inside expressions traverse_scope does not enter (e.g. function arguments).
        names |= {fold_identifier(t.name) for t in tree.find_all(exp.Table)
                  if t.name and (t.db or t.name.lower() not in cte_names)}
        return names
    except (SqlglotError, RecursionError, KeyError, AttributeError, TypeError, ValueError):
        return None


def _function_names(tree: exp.Expression) -> set[str]:
    names = set()
    for func in tree.find_all(exp.Func):
        if isinstance(func, exp.Anonymous):
            names.add(str(func.name).lower())
        else:
            names.add(func.sql_name().lower())
    return names


def _anonymous_function_names(tree: exp.Expression) -> set[str]:
    return {str(f.name).lower() for f in tree.find_all(exp.Anonymous)}


def _has_volatile(tree: exp.Expression, functions: set[str], dialect: str, clock_frozen: bool = False) -> bool:
    """Whether the statement calls a volatile function (with ``clock_frozen``: other than the clock)."""
    volatile = functions & VOLATILE_FUNCTIONS
    if clock_frozen:
        return bool(volatile - CLOCK_FUNCTIONS)  # sqlite's 'now' is the clock too
    if volatile:
        return True
    if dialect == "sqlite":
        for func in tree.find_all(exp.Func):
            name = str(func.name).lower() if isinstance(func, exp.Anonymous) else func.sql_name().lower()
            if name in _SQLITE_TIME_FUNCTIONS or type(func).__name__ in (
                "TsOrDsToDate", "StrToTime", "TimeToStr", "Date", "Time", "Datetime", "TimeStrToTime",
            ):
                args = [a for a in func.iter_expressions()]
                if not args or any(isinstance(a, exp.Literal) and str(a.this).lower() == "now" for a in func.walk()):
                    return True
    return False


def _literal_value(lit: exp.Literal) -> object:
    if lit.is_string:
        return str(lit.this)
    text = str(lit.this)
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fingerprint(tree: exp.Expression, dialect: str) -> tuple[str, tuple[object, ...]]:
    """The statement's shape (every literal written as ``?``, or ``'?'`` for a string) and its literal
    values. The literals are blanked in place and restored: ``tree.transform`` copied the tree once
    per replaced node (20,000 literals took 23 s; this is linear)."""
    found = list(tree.find_all(exp.Literal))
    literals = tuple(_literal_value(lit) for lit in found)
    saved = [lit.this for lit in found]
    try:
        for lit in found:
            lit.set("this", "?")
        text = tree.sql(dialect=dialect, comments=False)
    finally:
        for lit, value in zip(found, saved, strict=True):
            lit.set("this", value)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest(), literals


def _isolation_in(text: str) -> str | None:
    upper = " ".join(text.upper().split())
    for level in _ISOLATION_LEVELS:
        if f"ISOLATION LEVEL {level}" in upper:
            return level.lower()
    return None


class Analyzer:
    """Analyzes statements for one (dialect, paramstyle); thread-safe, memoized by raw text."""

    def __init__(self, dialect: str, paramstyle: str, *, strict_hints: bool = False, memo_size: int = 4096):
        self.dialect = dialect
        self.paramstyle = paramstyle
        self.strict_hints = strict_hints
        self._memo: LRUCache[str, Analysis] = LRUCache(maxsize=memo_size)
        self._lock = threading.Lock()
        self.parses = 0

    def __call__(self, sql: str) -> Analysis:
        try:
            return self._memo[sql]
        except KeyError:
            pass
        analysis = self._analyze(sql)
        with self._lock:
            self._memo[sql] = analysis
        return analysis

    def cached(self, sql: str) -> Analysis | None:
        return self._memo.get(sql)

    def _analyze(self, sql: str) -> Analysis:
        scanned = scan(sql, self.dialect, self.paramstyle, self.strict_hints)
        self.parses += 1
        # No statement, or a lone surrogate (no driver can send the text): nothing anyone can cache.
        if scanned.statement_count == 0 or not _encodable(scanned.parse_text):
            return self._result(sql, scanned, StatementKind.OTHER, reason=BypassReason.UNKNOWN)
        word = scanned.first_word
        if scanned.statement_count > 1:
            return self._multi_statement(sql, scanned)
        try:
            trees = [t for t in sqlglot.parse(scanned.parse_text, read=self.dialect) if t is not None]
        except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
            trees = []
        if len(trees) != 1:
            return self._by_first_word(sql, scanned, None)
        tree = cast(exp.Expression, trees[0])
        if isinstance(tree, exp.Command) or word in ("SAVEPOINT", "RELEASE", "DISCARD", "LISTEN", "UNLISTEN"):
            return self._by_first_word(sql, scanned, tree)
        return self._classify(sql, scanned, tree)

    def _result(
        self,
        sql: str,
        scanned: ScannedText,
        kind: StatementKind,
        *,
        reason: BypassReason | None,
        tree: exp.Expression | None = None,
        read: set[str] | None = None,
        written: set[str] | None = None,
        writes_everything: bool = False,
        functions: set[str] | None = None,
        **flags: object,
    ) -> Analysis:
        normalized, fingerprint = sql.strip(), ""
        literals: tuple[object, ...] = ()
        if tree is not None:
            try:
                normalized = tree.sql(dialect=self.dialect, comments=False)
                fingerprint, literals = _fingerprint(tree, self.dialect)
            except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
                reason = reason or BypassReason.UNKNOWN
        if not fingerprint:
            fingerprint = hashlib.blake2b(normalized.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        hints = scanned.hints
        read_set = set(read or ())
        if kind is StatementKind.READ:
            read_set |= set(hints.tables)
        if reason is None and kind is StatementKind.READ and hints.skip:
            reason = BypassReason.HINT_SKIP
        return Analysis(
            sql=sql,
            dialect=self.dialect,
            kind=kind,
            tables_read=frozenset(read_set),
            tables_written=frozenset(written or ()),
            writes_everything=writes_everything,
            cacheable=reason is None and kind is StatementKind.READ,
            reason=reason,
            hints=hints,
            normalized=normalized,
            fingerprint=fingerprint,
            literals=literals,
            functions=frozenset(functions or ()),
            user_functions=frozenset(_anonymous_function_names(tree)) if tree is not None else frozenset(),
            **flags,  # type: ignore[arg-type]
        )

    def _multi_statement(self, sql: str, scanned: ScannedText) -> Analysis:
        try:
            trees = [t for t in sqlglot.parse(scanned.parse_text, read=self.dialect) if t is not None]
        except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
            trees = []
        all_reads = bool(trees) and all(
            isinstance(t, exp.Query) and not any(t.find_all(*_DML)) and not t.args.get("into") for t in trees
        )
        if all_reads:
            return self._result(sql, scanned, StatementKind.READ, reason=BypassReason.MULTI_STATEMENT)
        # Several statements of which one may write, commit or change the session: everything.
        return self._result(
            sql, scanned, StatementKind.UNKNOWN, reason=BypassReason.MULTI_STATEMENT, writes_everything=True,
            implicit_commit=self.dialect in ("mysql", "mariadb"), changes_scope=True,
        )

    def _by_first_word(self, sql: str, scanned: ScannedText, tree: exp.Expression | None) -> Analysis:
        word = scanned.first_word
        text = scanned.parse_text
        mysql = self.dialect in ("mysql", "mariadb")
        if word in ("SAVEPOINT", "RELEASE"):
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.SAVEPOINT)
        if word in ("BEGIN", "START") and (tree is None or isinstance(tree, (exp.Command, exp.Transaction))):
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.BEGIN, isolation=_isolation_in(text), implicit_commit=mysql)
        if word in ("COMMIT", "END"):
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.COMMIT)
        if word in ("ROLLBACK", "ABORT"):
            to_savepoint = " TO " in f" {text.upper()} "
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.SAVEPOINT if to_savepoint else TxAction.ROLLBACK,
                                rolls_back_to_savepoint=to_savepoint)
        rewritten = None
        if word == "REPLACE" and (mysql or self.dialect == "sqlite"):
            rewritten = ("INSERT" if mysql else "INSERT OR REPLACE") + text.lstrip()[len("REPLACE"):]
        elif word == "UPDATE" and self.dialect == "sqlite":
            rewritten = _SQLITE_UPDATE_OR.sub("UPDATE", text, count=1)
        if rewritten is not None and rewritten != text:
            try:
                reparsed = sqlglot.parse_one(rewritten, read=self.dialect)
            except (SqlglotError, RecursionError, ValueError, TypeError):
                reparsed = None
            if isinstance(reparsed, (exp.Insert, exp.Update)):
                return self._classify(sql, scanned, reparsed)
        if word in ("LOCK", "UNLOCK") and mysql:
            return self._result(sql, scanned, StatementKind.SESSION, reason=BypassReason.LOCKING,
                                implicit_commit=True)
        if word == "LOCK":
            return self._result(sql, scanned, StatementKind.SESSION, reason=BypassReason.LOCKING)
        explain_head = text.upper().split("SELECT", 1)[0]
        if word == "EXPLAIN" and "ANALYZE" not in explain_head and "ANALYSE" not in explain_head:
            return self._result(sql, scanned, StatementKind.OTHER, reason=BypassReason.SESSION)
        if word in _CALL_WORDS:
            return self._result(sql, scanned, StatementKind.CALL, reason=BypassReason.CALLPROC,
                                writes_everything=True)
        if word in _SESSION_WORDS:
            return self._result(
                sql, scanned, StatementKind.SESSION, reason=BypassReason.SESSION,
                changes_scope=word in _SCOPE_WORDS or word == "PRAGMA",
                isolation=_isolation_in(text) if word == "SET" else None,
                sets_autocommit=_autocommit_value(text) if word == "SET" else None,
                implicit_commit=mysql and word == "SET" and _autocommit_value(text) is True,
            )
        if word in _DDL_WORDS:
            return self._result(sql, scanned, StatementKind.DDL, reason=BypassReason.DDL, writes_everything=True,
                                implicit_commit=mysql and word in _MYSQL_IMPLICIT_COMMIT_WORDS,
                                creates_temp="TEMP" in text.upper().split("TABLE", 1)[0])
        return self._result(sql, scanned, StatementKind.UNKNOWN, reason=BypassReason.UNKNOWN,
                            writes_everything=True)

    def _classify(self, sql: str, scanned: ScannedText, tree: exp.Expression) -> Analysis:
        mysql = self.dialect in ("mysql", "mariadb")
        functions = _function_names(tree)
        if isinstance(tree, exp.Transaction):
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.BEGIN, isolation=_isolation_in(scanned.parse_text),
                                implicit_commit=mysql)
        if isinstance(tree, exp.Commit):
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=TxAction.COMMIT)
        if isinstance(tree, exp.Rollback):
            to_savepoint = bool(tree.args.get("savepoint"))
            action = TxAction.SAVEPOINT if to_savepoint else TxAction.ROLLBACK
            return self._result(sql, scanned, StatementKind.TRANSACTION, reason=BypassReason.SESSION,
                                tx_action=action, rolls_back_to_savepoint=to_savepoint)
        if isinstance(tree, (exp.Set, exp.Use, exp.Pragma)):
            text = scanned.parse_text
            autocommit = _autocommit_value(text) if isinstance(tree, exp.Set) else None
            return self._result(
                sql, scanned, StatementKind.SESSION, reason=BypassReason.SESSION, tree=tree,
                changes_scope=True, isolation=_isolation_in(text) if isinstance(tree, exp.Set) else None,
                sets_autocommit=autocommit, implicit_commit=mysql and autocommit is True,
            )
        dml = list(tree.find_all(*_DML))
        if isinstance(tree, exp.Copy):
            target = _target_tables(tree)
            if tree.args.get("kind"):  # COPY ... FROM: a write
                return self._result(sql, scanned, StatementKind.WRITE, reason=BypassReason.WRITE, tree=tree,
                                    written=target, writes_everything=not target)
            return self._result(sql, scanned, StatementKind.OTHER, reason=BypassReason.SESSION, tree=tree)
        if isinstance(tree, (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)) or (
            isinstance(tree, exp.Query) and tree.args.get("into")
        ):
            temp = _is_temporary(tree)
            reason = BypassReason.SELECT_INTO if isinstance(tree, exp.Query) else BypassReason.DDL
            written = set()
            if isinstance(tree, exp.TruncateTable):
                written = _table_names(list(tree.expressions))
            return self._result(
                sql, scanned, StatementKind.DDL, reason=reason, tree=tree, written=written,
                # TRUNCATE of named tables is exact; other DDL may change views, triggers or keys.
                writes_everything=not isinstance(tree, exp.TruncateTable) and not temp,
                functions=functions, implicit_commit=mysql and not temp, creates_temp=temp,
            )
        if dml:
            written = set()
            delete_lists: set[str] = set()
            for node in dml:
                written |= _target_tables(node)
                if isinstance(node, exp.Delete):
                    delete_lists |= _table_names(list(node.args.get("tables") or []))
            read = (_read_tables(tree) or set()) - written - delete_lists
            everything = not written or bool(functions & VOLATILE_FUNCTIONS & {"nextval", "setval"})
            return self._result(sql, scanned, StatementKind.WRITE, reason=BypassReason.WRITE, tree=tree,
                                read=read, written=written, writes_everything=everything, functions=functions)
        if isinstance(tree, exp.Query) or isinstance(tree, exp.Values):
            read_tables = _read_tables(tree)
            read_reason: BypassReason | None = None
            if read_tables is None:
                read_reason = BypassReason.UNKNOWN
            elif scanned.session_dependent:
                read_reason = BypassReason.SESSION
            elif any(tree.find_all(exp.Lock)) or tree.args.get("locks"):
                read_reason = BypassReason.LOCKING
            elif any(
                "SQL_CALC_FOUND_ROWS" in str(m).upper()
                for select in tree.find_all(exp.Select)
                for m in select.args.get("operation_modifiers") or []
            ):
                read_reason = BypassReason.SESSION  # sets the session state FOUND_ROWS() reads
            elif _has_volatile(tree, functions, self.dialect, scanned.hints.volatile == "time"):
                read_reason = BypassReason.VOLATILE
            return self._result(
                sql, scanned, StatementKind.READ, reason=read_reason, tree=tree, read=read_tables or set(),
                functions=functions, changes_scope="set_config" in functions,
                names_from_text=self.dialect in ("mysql", "mariadb", "sqlite") and _unnamed_outputs(tree),
            )
        return self._by_first_word(sql, scanned, tree)


def _unnamed_outputs(tree: exp.Expression) -> bool:
    """Whether a select list holds an expression that is neither aliased nor a plain column."""
    for select in tree.find_all(exp.Select):
        for projection in select.expressions:
            if not isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
                return True
    return False


def _is_temporary(tree: exp.Expression) -> bool:
    if isinstance(tree, exp.Create):
        return any(isinstance(p, exp.TemporaryProperty) for p in tree.find_all(exp.TemporaryProperty))
    into = tree.args.get("into")
    return bool(into is not None and into.args.get("temporary"))


def _autocommit_value(text: str) -> bool | None:
    compact = "".join(text.lower().split())
    for on in ("autocommit=1", "autocommit=on", "autocommit=true", "autocommit:=1"):
        if on in compact:
            return True
    for off in ("autocommit=0", "autocommit=off", "autocommit=false", "autocommit:=0"):
        if off in compact:
            return False
    return None
