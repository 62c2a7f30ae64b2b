"""Row-level writes: the buckets a write touches, old values read before it and new values after.

For a write whose rows can be pinned down (see ``rows.write_plan``), the table's own version
key is replaced by its "any" bucket plus the buckets of the rows it touched; anything this
module cannot be sure of falls back to the whole table ("escalated"), counted in stats.

An UPDATE/DELETE needs the old values of the columns readers pin: read with the write's own
WHERE, FOR UPDATE, in one transaction with the write (opened and committed here on an
autocommit connection; inside the application's transaction it runs under a savepoint). Its
row count must equal the write's, else the whole table is bumped (docs/freshness.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from querycache.drivers.base import DBAPICursor, Params
from querycache.invalidation.keys import any_rows_key
from querycache.invalidation.rows import MAX_VALUES_PER_TABLE, WritePlan, bucket_keys, resolve, write_plan

if TYPE_CHECKING:
    from querycache.session import Session

_PRE_READ_SAVEPOINT = "querycache_row_level"
_CATALOG_SAVEPOINT = "querycache_catalog"


@dataclass(eq=False)
class RowLevelWrite:
    """One row-level write: ``keys`` is what its publication bumps, completed by ``run``."""

    session: Session
    plan: WritePlan
    table_key: str
    sql: str
    params: Sequence[object] | None
    columns: list[str]  # the pinned columns of the table, sorted
    seen: int  # the version of the table's pinned columns when they were read
    new_values: list[tuple[str, object]]
    pre_read: bool
    own_transaction: bool
    # Published around ``run``: the "any" bucket now, the touched buckets once it ran.
    keys: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = {any_rows_key(self.table_key)}

    def run(self, send: Callable[[str, object], object], execute: Callable[[str, object], object],
            raw_cursor: DBAPICursor) -> object:
        """Run the write on ``raw_cursor`` (``send``: straight to the driver, inside this module's
        own transaction; ``execute``: with the wrapper's bookkeeping) and add the buckets it
        touched to ``keys``."""
        footprint = self._buckets(self.new_values)
        cursor = self.session.raw.cursor() if self.pre_read else None
        old_rows: list[Sequence[object]] = []
        try:
            if cursor is not None:
                found = self._read_old_rows(cursor)
                if found is None:  # the footprint is unknown: the whole table
                    cursor.close()
                    cursor = None
                    footprint = None
                else:
                    old_rows = found
            own = cursor is not None and self.own_transaction
            # In its own transaction, the write is invisible to the wrapper's bookkeeping.
            result = (send if own else execute)(self.sql, self.params)
            if cursor is not None and raw_cursor.rowcount != len(old_rows):
                footprint = None  # another row than those read (or none of them): table level
            if cursor is not None and own:
                cursor.execute("COMMIT")
        except BaseException:
            if cursor is not None and self.own_transaction:
                quietly(cursor, "ROLLBACK")  # the write's own error is the one to raise
            raise
        finally:
            if cursor is not None:
                cursor.close()
        self._record(self._with_old_rows(footprint, old_rows))
        return result

    def _read_old_rows(self, cursor: DBAPICursor) -> list[Sequence[object]] | None:
        """The pinned columns of the rows the write will touch, locked; None when that failed."""
        plan = self.plan
        select = f"SELECT {', '.join(self.columns)} FROM {plan.target_sql} WHERE {plan.where_sql} FOR UPDATE"
        bound = {f"qcp{i}": v for i, v in enumerate(self.params or ())}
        try:
            if not self.own_transaction:
                return under_savepoint(cursor, _PRE_READ_SAVEPOINT, select, bound)
            cursor.execute("BEGIN")
            try:
                return fetch(cursor, select, bound)
            except Exception:
                quietly(cursor, "ROLLBACK")
                raise
        except Exception:  # noqa: BLE001 - unknown footprint, decided by the caller
            return None

    def _with_old_rows(self, footprint: set[str] | None, old_rows: list[Sequence[object]]) -> set[str] | None:
        if footprint is None:
            return None
        old = self._buckets([(c, row[i]) for row in old_rows for i, c in enumerate(self.columns)])
        return None if old is None else footprint | old

    def _record(self, footprint: set[str] | None) -> None:
        """Publish ``footprint`` (or the whole table), also at commit when a transaction is open."""
        tx = self.session.tx
        stats = self.session.context.stats.row_level
        if footprint is None or len(footprint) > 4 * MAX_VALUES_PER_TABLE:
            self._escalate("footprint")
        else:
            self.keys.update(footprint)
            stats.incr("writes:rows")
            tx.wrote_rows(footprint, (self.table_key, self.seen))
        if not tx.open and self.session.publisher.changed_dependencies([(self.table_key, self.seen)]):
            self._escalate("dependency_changed")  # committed: checked here, before phase 2

    def _escalate(self, reason: str) -> None:
        self.keys.add(self.table_key)
        self.session.context.stats.row_level.incr(f"escalated:{reason}")
        self.session.tx.wrote_rows({self.table_key})

    def _buckets(self, pairs: Iterable[tuple[str, object]]) -> set[str] | None:
        out: set[str] = set()
        for column, value in pairs:
            found = bucket_keys(self.table_key, column, value, self.session.adapter.dialect, False)
            if found is None:
                return None
            out.update(found)
        return out


def row_level_write(session: Session, sql: str, params: object, keys: set[str], in_tx: bool) -> RowLevelWrite | None:
    """The row-level form of a write whose table level footprint is ``keys``; None: table level."""
    stats = session.context.stats.row_level
    analyzer = session.analyzer
    plan = write_plan(sql, analyzer.dialect, analyzer.paramstyle)
    if plan is None:
        stats.incr("writes:table:statement")
        return None
    table_key = session.version_key(plan.table)
    if keys != {table_key}:
        stats.incr("writes:table:dependents")  # views, triggers, cascades: table level
        return None
    if params is not None and not isinstance(params, (list, tuple)):
        stats.incr("writes:table:params")
        return None
    registry = session.context.row_level
    try:
        assert registry is not None  # row-level writes exist only with a registry
        columns, seen = registry.dependencies(table_key)
    except Exception:  # noqa: BLE001 - fail open: the whole table
        session.context.store_failed()
        stats.incr("writes:table:store")
        return None
    ordered = sorted(columns)
    try:
        new_values = _new_values(plan, ordered, params)
    except (LookupError, IndexError, TypeError):
        stats.incr("writes:table:values")
        return None
    pre_read = plan.kind != "insert" and bool(ordered)
    if pre_read:
        refused = _pre_read_refused(session, plan, ordered)
        if refused is not None:
            stats.incr(f"writes:table:{refused}")
            return None
    # Autocommit: the wrapper opens a transaction for the pre-read and the write. Inside the
    # application's transaction (or one the driver opens), the pre-read runs under a savepoint,
    # so that its failure cannot abort that transaction.
    own_transaction = pre_read and not in_tx and session.adapter.autocommit(session.raw)
    return RowLevelWrite(session, plan, table_key, sql, params, ordered, seen, new_values, pre_read, own_transaction)


def _new_values(plan: WritePlan, columns: list[str], params: object) -> list[tuple[str, object]]:
    """The values a write gives the pinned ``columns`` (LookupError: one it cannot know here)."""
    new_values: list[tuple[str, object]] = []
    if plan.kind == "insert":
        for column in columns:
            if column not in plan.insert_columns:
                raise LookupError("a pinned column takes its default")
            index = plan.insert_columns.index(column)
            for row in plan.insert_rows:
                source = row[index]
                if source is None:
                    raise LookupError("an expression inserted into a pinned column")
                new_values.append((column, resolve(source, params)))
    elif plan.kind == "update":
        for column in columns:
            if column in plan.assigned:
                source = plan.assigned[column]
                if source is None:
                    raise LookupError("a pinned column set to an expression")
                new_values.append((column, resolve(source, params)))
    return new_values


def _pre_read_refused(session: Session, plan: WritePlan, columns: list[str]) -> str | None:
    """Why the old values cannot be read safely before this write (None: they can)."""
    if plan.where_sql is None:
        return "no_where"
    if session.adapter.dialect != "postgres" and session.isolation() not in ("repeatable read", "serializable"):
        return "isolation"  # no gap locks: a phantom could slip in
    generated = generated_columns(session, plan.table) if plan.kind == "update" else frozenset()
    if "*" in generated or set(columns) & generated:
        return "generated_column"  # its new value is computed by the database
    return None


def generated_columns(session: Session, table: str) -> frozenset[str]:
    """Columns of ``table`` the database computes (GENERATED ... STORED / VIRTUAL), read once per
    database and table; on failure every column counts as one (the write stays at table level)."""
    known = session.context.generated_columns
    key = (session.database_id, table)
    found = known.get(key)
    if found is not None:
        return found
    if session.adapter.dialect == "postgres":
        sql = ("SELECT column_name FROM information_schema.columns "
               "WHERE table_name = %s AND is_generated = 'ALWAYS'")
        params: tuple[str, ...] = (table,)
    else:
        sql = ("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
               "AND table_name = %s AND (extra LIKE %s OR generation_expression <> '')")
        params = (table, "%GENERATED%")
    try:
        found = frozenset(str(row[0]).lower() for row in catalog_query(session, sql, params))
    except Exception:  # noqa: BLE001 - unknown: "*", no column may be trusted
        return frozenset({"*"})
    known[key] = found
    return found


def catalog_query(session: Session, sql: str, params: Sequence[object]) -> list[Sequence[object]]:
    """The rows of a catalog query the wrapper sends for itself, the connection's state unchanged:
    inside the application's transaction under a savepoint (a failure cannot abort it), outside
    it through ``internal_query`` (a transaction it opens is rolled back)."""
    adapter, raw = session.adapter, session.raw
    if adapter.in_transaction(raw):
        cursor = raw.cursor()
        try:
            return under_savepoint(cursor, _CATALOG_SAVEPOINT, sql, params)
        finally:
            cursor.close()
    return list(adapter.internal_query(raw, sql, params))


def fetch(cursor: DBAPICursor, sql: str, params: Params) -> list[Sequence[object]]:
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def quietly(cursor: DBAPICursor, statement: str) -> bool:
    """Run ``statement``; False if it failed (e.g. the transaction was already aborted)."""
    try:
        cursor.execute(statement)
    except Exception:  # noqa: BLE001 - the caller's own error is the one to raise
        return False
    return True


def under_savepoint(cursor: DBAPICursor, name: str, sql: str, params: Params) -> list[Sequence[object]]:
    """The rows of ``sql`` read inside the application's transaction, under a savepoint: if it
    fails, the transaction is returned to where it was (on PostgreSQL an error would otherwise
    abort it)."""
    cursor.execute(f"SAVEPOINT {name}")
    try:
        rows = fetch(cursor, sql, params)
    except Exception:
        if quietly(cursor, f"ROLLBACK TO SAVEPOINT {name}"):
            quietly(cursor, f"RELEASE SAVEPOINT {name}")
        raise
    cursor.execute(f"RELEASE SAVEPOINT {name}")
    return rows
