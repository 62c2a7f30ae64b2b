"""Maintained answers, the write side: a write statement's delta queries (docs/maintenance.md).

For a single-table INSERT/UPDATE/DELETE through the wrapper, every registered maintainable entry
that reads the table (up to ``max_entries_per_write``) is read fresh from the store with the
versions it was fresh at (its baseline), before anything else. Then, in the writer's transaction
(one the wrapper opens around an autocommit write): the primary keys of the rows the write will
touch (locked), each entry's delta queries restricted to them, the write, the keys it created,
the delta queries again. ``after - before`` is added to the entry's state. At commit the
publisher stores the updated entries atomically with the write's phase 2, if no other write
touched their dependencies since the baseline; anything else falls back to invalidation.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from querycache.analysis import ALL_TABLES, CATALOG_CHANGES, Analysis, StatementKind
from querycache.backends.base import Baseline, MaintainCheck, MaintainedAnswers, MaintainUpdate
from querycache.codec import CorruptEntry, Result, decode, encode
from querycache.drivers.base import DBAPICursor
from querycache.invalidation.keys import table_of
from querycache.invalidation.row_writes import catalog_query, fetch, quietly
from querycache.invalidation.rows import WritePlan, resolve, write_plan
from querycache.maintain.shape import Refused, Shape, bind, qualified, shape_of
from querycache.maintain.state import State, StateCache, Unmaintainable, apply_groups, apply_scalar, derive

if TYPE_CHECKING:
    from querycache.context import CacheContext
    from querycache.session import Session

T = TypeVar("T")

_SAVEPOINT = "querycache_maintain"
_MAX_KEYS = 1000  # rows one write may touch and still be maintained
_RR_LEVELS = ("repeatable read", "serializable", "serializable-snapshot", "unknown")


@dataclass(eq=False)
class Maintained:
    """One entry a transaction's writes update: the baseline it started from, and (once a write
    changed it) its content and state so far."""

    key: str
    shape: Shape
    params: tuple[object, ...]
    version_keys: tuple[str, ...]
    baseline: Baseline
    tables: frozenset[str] = field(init=False)
    failed: str | None = None
    value: bytes | None = None
    state: State | None = None

    def __post_init__(self) -> None:
        self.tables = frozenset(table_of(k) for k in self.version_keys)

    def fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason

    def load(self, store: MaintainedAnswers, states: StateCache) -> State:
        """The entry's state, read once (the digest must still be the baseline's): this process's
        decoded copy when it has the baseline's, else fetched from the store."""
        if self.state is None:
            cached = states.take(self.key, self.baseline.digest)
            if cached is not None:
                self.value, self.state = cached
                return self.state
            found = store.maintained_content(self.key)
            if found is None or found[2] != self.baseline.digest:
                raise Unmaintainable("concurrent_write")
            self.value = found[0]
            self.state = State.decode(found[1], self.shape)
        return self.state

    def update(self) -> MaintainUpdate:
        """What phase 2 stores: the rows derived from the state and the state; only a new stamp
        when no write of the transaction changed the answer."""
        if self.state is None or self.value is None:
            return MaintainUpdate(self.key, self.baseline.digest, None, None, self.baseline.versions)
        try:
            old = decode(self.value)
        except CorruptEntry as exc:
            raise Unmaintainable("corrupt_entry") from exc
        rows = derive(self.state, self.shape, self.params)
        rowcount = len(rows) if old.rowcount == len(old.rows) else old.rowcount
        value = encode(Result(old.description, rows, rowcount, old.lastrowid))
        return MaintainUpdate(self.key, self.baseline.digest, value, self.state.encode(), self.baseline.versions)


def spec_of(sql: str, params: Sequence[object] | None, version_keys: tuple[str, ...], scope: str) -> bytes:
    """What a writer in any process needs to maintain an entry: its statement, parameters, keys,
    and the scope it was read in (a writer in another scope must not maintain it: its delta
    queries would see other rows or other values)."""
    return encode(Result(None, [(sql, scope), tuple(version_keys), tuple(params or ())], 0))


def _from_spec(spec: bytes) -> tuple[str, str, tuple[str, ...], tuple[object, ...]]:
    rows = decode(spec).rows
    return str(rows[0][0]), str(rows[0][1]), tuple(rows[1]), tuple(rows[2])


def scope_of(session: Session, scope_key: str) -> str:
    """A read's scope as the registry records it: its scope key and the tenant."""
    return f"{scope_key}\x1e{session.context.tenant.get()!r}"


def relation_of(plan: WritePlan, dialect: str) -> str | None:
    """The write's target as ``schema.table`` (folded); None when it names no schema."""
    try:
        tree = sqlglot.parse_one(plan.target_sql, read=dialect, into=exp.Table)
        return qualified(tree) if isinstance(tree, exp.Table) else None
    except (SqlglotError, Refused, ValueError, TypeError, KeyError, AttributeError):
        return None


def primary_key(session: Session, relation: str) -> tuple[str, bool] | None:
    """The single-column primary key of ``relation`` (``schema.table``) and whether the database
    generates it (an identity or a default of its own sequence; MySQL: AUTO_INCREMENT); None:
    no primary key, several columns, or unknown. Read once per database and relation."""
    known = session.context.primary_keys
    key = (session.database_id, relation)
    if key in known:
        return known[key]
    schema, _, table = relation.rpartition(".")
    if session.adapter.dialect == "postgres":
        sql = ("SELECT a.attname, a.attidentity <> '' OR (pg_get_serial_sequence(quote_ident(n.nspname) || '.' "
               "|| quote_ident(c.relname), a.attname) IS NOT NULL AND coalesce(pg_get_expr(d.adbin, d.adrelid), '') "
               "LIKE 'nextval(%%') FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
               "JOIN pg_namespace n ON n.oid = c.relnamespace "
               "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
               "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
               "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s")
    else:
        sql = ("SELECT k.column_name, c.extra LIKE '%%auto_increment%%' FROM information_schema.key_column_usage k "
               "JOIN information_schema.columns c ON c.table_schema = k.table_schema "
               "AND c.table_name = k.table_name AND c.column_name = k.column_name "
               "WHERE k.constraint_name = 'PRIMARY' AND k.table_schema = %s AND k.table_name = %s")
    found: tuple[str, bool] | None = None
    try:
        rows = catalog_query(session, sql, (schema, table))
        if len(rows) == 1:
            found = (str(rows[0][0]).lower(), bool(rows[0][1]))
    except Exception:  # noqa: BLE001 - unknown: not maintained
        return None
    known[key] = found
    return found


class StatementMaintenance:
    """The delta work of one write statement on the entries it maintains."""

    def __init__(self, session: Session, plan: WritePlan, relation: str, pk: tuple[str, bool],
                 entries: list[Maintained], sql: str, params: Sequence[object] | None, own_transaction: bool,
                 leases: list[tuple[str, str]]) -> None:
        self.session = session
        self.plan = plan
        self.relation = relation
        self.pk, self.generated = pk
        self.entries = entries
        self.sql = sql
        self.params = params
        self.own_transaction = own_transaction
        self.leases = leases  # maintainer leases this statement took: (table key, token)
        self.stats = session.context.stats.maintain
        assert session.context.maintain is not None
        self.store: MaintainedAnswers = session.context.maintain
        self.deadline = 0.0
        self.table = table_of(session.version_key(plan.table))
        self.changed: list[object] | None = None  # the primary keys of the rows the write changed

    def run(self, write: Callable[[], T], raw_cursor: DBAPICursor,
            publish: Callable[..., object] | None = None) -> T:
        """Run ``write`` with the delta queries around it, in one transaction. ``publish``: in the
        transaction the wrapper opened, how its COMMIT is published (both phases around the COMMIT
        alone: until then nothing of the write is visible, and the pending window stays short)."""
        session = self.session
        config = session.context.config.invalidation.maintain
        self.deadline = time.perf_counter() + config.max_delta_ms / 1000
        cursor = session.raw.cursor()
        own = self.own_transaction
        session.tx.ran = True  # the delta queries below start the transaction's snapshot
        try:
            if own:
                cursor.execute("BEGIN")
            try:
                old_keys = self._keys_before(cursor)
                befores = self._deltas(cursor, old_keys) if old_keys else {}
            except Exception:  # noqa: BLE001 - the maintenance's own failure never fails the write
                self._fail_all("error")
                old_keys, befores = None, None
            result = write()
            try:
                new_keys = self._keys_after(cursor, raw_cursor, old_keys)
                if new_keys is not None:
                    self.changed = sorted(set(old_keys or []) | set(new_keys), key=repr)
                    afters = self._deltas(cursor, self.changed)
                    self._apply(befores, afters)
                else:
                    self._fail_all("keys")
            except Exception:  # noqa: BLE001 - as above: the write stands, its entries are invalidated
                self._fail_all("error")
            changed = {self.table: {self.relation: self.changed} if self.changed is not None else None}
            if own and publish is not None:
                publish(lambda: cursor.execute("COMMIT"), changed=changed)
            elif own:
                cursor.execute("COMMIT")
            else:
                session.tx.record_rows(self.table, self.relation, self.changed)
        except BaseException:
            self._fail_all("write_failed")
            session.tx.record_rows(self.table, self.relation, None)
            if own:
                quietly(cursor, "ROLLBACK")  # the write's own error is the one to raise
            raise
        finally:
            cursor.close()
        return result

    def _fail_all(self, reason: str) -> None:
        for entry in self.entries:
            entry.fail(reason)

    def _under_savepoint(self, cursor: DBAPICursor, work: Callable[[], T]) -> T | None:
        """``work`` under a savepoint: a failure leaves the transaction as it was (None returned)."""
        cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            out = work()
        except Exception:
            if not quietly(cursor, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"):
                # The server ended the transaction itself (a MySQL deadlock rolls it all back):
                # its error is the application's to see, not this module's to hide.
                raise
            quietly(cursor, f"RELEASE SAVEPOINT {_SAVEPOINT}")
            return None
        cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        return out

    def _keys_before(self, cursor: DBAPICursor) -> list[object] | None:
        """The primary keys of the rows an UPDATE/DELETE will touch, locked; [] for an INSERT."""
        plan = self.plan
        if plan.kind == "insert":
            return []
        if plan.where_sql is None:
            self._fail_all("no_where")
            return None
        select = f"SELECT {self.pk} FROM {plan.target_sql} WHERE {plan.where_sql} FOR UPDATE"
        rows = self._under_savepoint(cursor, lambda: fetch(cursor, select, bind(self.params)))
        if rows is None or len(rows) > _MAX_KEYS:
            self._fail_all("keys" if rows is None else "too_many_rows")
            return None
        return [r[0] for r in rows]

    def _keys_after(self, cursor: DBAPICursor, raw_cursor: DBAPICursor, old_keys: list[object] | None
                    ) -> list[object] | None:
        """The keys the write created (an INSERT's), checked against its row count."""
        plan = self.plan
        if old_keys is None:
            return None
        rowcount = raw_cursor.rowcount
        if plan.kind != "insert":
            return old_keys if rowcount == len(old_keys) else None
        mysql = self.session.adapter.dialect != "postgres"
        if self.pk in plan.insert_columns:
            index = plan.insert_columns.index(self.pk)
            keys: list[object] = []
            for row in plan.insert_rows:
                source = row[index]
                if source is None:
                    return None
                key = resolve(source, self.params)
                if key is None or (mysql and key in (0, "0")):
                    return None  # NULL (or MySQL's 0) asks for a generated key: not this value
                keys.append(key)
            return keys if rowcount == len(keys) else None
        if rowcount != 1 or len(plan.insert_rows) != 1 or not self.generated:
            return None
        if not mysql:
            sql = "SELECT currval(pg_get_serial_sequence(%(t)s, %(c)s))"
            rows = self._under_savepoint(cursor, lambda: fetch(cursor, sql, {"t": plan.target_sql, "c": self.pk}))
            return [rows[0][0]] if rows and rows[0][0] is not None else None
        last = getattr(raw_cursor, "lastrowid", None)
        return [last] if isinstance(last, int) and last > 0 else None

    def _deltas(self, cursor: DBAPICursor, keys: list[object]) -> dict[tuple[int, int], list[Sequence[object]]] | None:
        """Each live entry's delta query results for ``keys`` in the current image: (entry, part)
        -> rows. Parts whose filter no touched row passes are empty without a query; the others
        run as one UNION ALL per delta query text (docs/maintenance.md, "What it costs")."""
        def work() -> dict[tuple[int, int], list[Sequence[object]]]:
            relevant = self._relevant(cursor, keys)
            out: dict[tuple[int, int], list[Sequence[object]]] = {}
            groups: dict[tuple[str, tuple[str, ...]], list[tuple[int, int]]] = {}
            for i, entry in enumerate(self.entries):
                if entry.failed is not None:
                    continue
                if time.perf_counter() > self.deadline:
                    entry.fail("budget")
                    continue
                for part in range(-1, len(entry.shape.scalars)):
                    sql = entry.shape.delta_sql(part, self.relation, self.pk, len(keys), dialect)
                    if sql is None:
                        continue
                    if relevant.get((i, part)) is False:
                        out[(i, part)] = []  # no touched row passes the part's own filter
                    else:
                        # One batch per text and parameter types: a UNION ALL unifies its arms'
                        # column types (an int and a numeric parameter would make every arm numeric).
                        kinds = tuple(type(p).__name__ for p in entry.params)
                        groups.setdefault((sql, kinds), []).append((i, part))
            for (sql, kinds), members in groups.items():
                bound = bind((), keys)
                for i, _ in members:
                    bound.update(_renamed_params(self.entries[i].params, i))
                for i, part in members:
                    out[(i, part)] = []
                batch = _batched(sql, [i for i, _ in members], kinds, dialect)
                for row in fetch(cursor, batch, bound):
                    arm = row[0]
                    if not isinstance(arm, int):
                        raise TypeError(f"qc_e is {type(arm).__name__}, not an arm's number")
                    out[members[arm]].append(row[1:])
            return out

        dialect = self.session.adapter.dialect
        found = self._under_savepoint(cursor, work)
        if found is None:
            self._fail_all("delta_error")
        return found

    def _relevant(self, cursor: DBAPICursor, keys: list[object]) -> dict[tuple[int, int], bool]:
        """Whether any touched row passes each part's filter (Shape.filters), in one query."""
        filters = [(i, part, f) for i, entry in enumerate(self.entries) if entry.failed is None
                   for part in range(-1, len(entry.shape.scalars))
                   if (f := entry.shape.filters.get((part, self.relation))) is not None]
        if not filters or not keys:
            return {}
        dialect = self.session.adapter.dialect
        schema, _, name = self.relation.rpartition(".")
        table = exp.Table(this=exp.to_identifier(name), db=exp.to_identifier(schema) if schema else None)
        columns = ", ".join(f"({_renamed(f, i)}) AS qc_f{j}" for j, (i, _, f) in enumerate(filters))
        sql = (f"SELECT {columns} FROM {table.sql(dialect=dialect)} AS qc_t "
               f"WHERE qc_t.{exp.to_identifier(self.pk).sql(dialect=dialect)} IN "
               f"({', '.join(f'%(qcm{k})s' for k in range(len(keys)))})")
        bound = bind((), keys)
        for i in {i for i, _, _ in filters}:
            bound.update(_renamed_params(self.entries[i].params, i))
        rows = fetch(cursor, sql, bound)
        return {(i, part): any(row[j] not in (None, False, 0) for row in rows)
                for j, (i, part, _) in enumerate(filters)}

    def _apply(self, befores: dict[tuple[int, int], list[Sequence[object]]] | None,
               afters: dict[tuple[int, int], list[Sequence[object]]] | None) -> None:
        if befores is None or afters is None:
            self._fail_all("delta_error")
            return
        for i, entry in enumerate(self.entries):
            if entry.failed is not None:
                continue
            try:
                for part in range(-1, len(entry.shape.scalars)):
                    if (i, part) not in afters:
                        continue  # the part does not read the table
                    before, after = befores.get((i, part), []), afters[(i, part)]
                    if not before and not after:
                        continue  # the write did not touch what the part reads
                    state = entry.load(self.store, self.session.context.maintain_states)
                    if part < 0:
                        apply_groups(state, entry.shape, before, after)
                    else:
                        apply_scalar(state, entry.shape, part, before[0] if before else None,
                                     after[0] if after else None)
            except Unmaintainable as exc:
                entry.fail(exc.reason)
            except Exception:  # noqa: BLE001 - an answer this cannot compute is invalidated instead
                entry.fail("error")


_STATEMENT_PARAM = re.compile(r"%\(qcp(\d+)\)s")


def _renamed(sql: str, entry: int) -> str:
    """``sql`` with the statement's parameters renamed for entry ``entry`` of a batch."""
    return _STATEMENT_PARAM.sub(lambda m: f"%(qce{entry}_{m.group(1)})s", sql)


_TYPED = frozenset({"int", "Decimal", "date", "datetime"})  # parameters both drivers send with their type


def _batched(sql: str, entries: list[int], kinds: tuple[str, ...], dialect: str) -> str:
    """One query for the delta query ``sql`` of several entries (their parameters renamed by
    ``_renamed_params``; ``kinds``: their types), its first column the member's number: on
    PostgreSQL one plan for all, the parameters in a VALUES list joined laterally; otherwise a
    UNION ALL of one arm per entry (MariaDB has no LATERAL; a text or NULL parameter would make a
    VALUES column text, where the statement compared an untyped literal). docs/maintenance.md,
    "What it costs"."""
    width = len(kinds)
    if dialect != "postgres" or not _TYPED.issuperset(kinds):
        return " UNION ALL ".join(f"SELECT {n} AS qc_e, qc_x{n}.* FROM ({_renamed(sql, i)}) qc_x{n}"
                                  for n, i in enumerate(entries))
    rows = ", ".join(f"({n}{''.join(f', %(qce{i}_{k})s' for k in range(width))})" for n, i in enumerate(entries))
    columns = ", ".join(["qc_e", *(f"qc_p{k}" for k in range(width))])
    inner = _STATEMENT_PARAM.sub(lambda m: f"qc_v.qc_p{m.group(1)}", sql)
    return f"SELECT qc_v.qc_e, qc_d.* FROM (VALUES {rows}) AS qc_v({columns}) CROSS JOIN LATERAL ({inner}) AS qc_d"


def _renamed_params(params: tuple[object, ...], entry: int) -> dict[str, object]:
    return {f"qce{entry}_{n}": v for n, v in enumerate(params)}


def prepare(session: Session, analysis: Analysis, sql: str, params: object, keys: set[str],
            in_tx: bool) -> StatementMaintenance | None:
    """The maintenance of a write statement, its entries' baselines read; None: nothing to
    maintain (its entries are invalidated as always)."""
    context = session.context
    store = context.maintain
    if store is None or analysis.kind is not StatementKind.WRITE or analysis.implicit_commit:
        return None
    analyzer = session.analyzer
    plan = write_plan(sql, analyzer.dialect, analyzer.paramstyle)
    if plan is None or (params is not None and not isinstance(params, (list, tuple))):
        return None
    table_key = session.version_key(plan.table)
    if keys != {table_key}:
        return None  # views, triggers, cascades: other tables change too
    stats = context.stats.maintain
    try:
        registered = store.maintained(table_key)
    except Exception:  # noqa: BLE001 - fail open: invalidation as always
        context.store_failed()
        return None
    tx = session.tx
    # A fill under way asked writers of the table to log the rows they change (docs/maintenance.md,
    # "Fills under writes"): with no entry to maintain, the statement then only reads its keys.
    logging = _logging_until(registered.pop(CATCHUP_FIELD, None)) > time.time()
    if not registered and not logging:
        return None
    relation = relation_of(plan, analyzer.dialect)
    pk = primary_key(session, relation) if relation is not None else None
    if relation is None or pk is None or (plan.kind == "update" and pk[0] in plan.assigned):
        stats.incr("fallback:primary_key", len(registered))
        return None
    level = session.isolation()
    if level not in ("read committed", *_RR_LEVELS) or level in ("serializable", "unknown"):
        # READ UNCOMMITTED would put other transactions' rows into the answer; SERIALIZABLE reads
        # would widen what the transaction read (and its serialization failures).
        stats.incr("fallback:isolation", len(registered))
        return None
    # A REPEATABLE READ transaction that already ran a statement may hold a snapshot older than a
    # baseline taken now: a delta would miss a commit. Entries baselined before it are fine.
    late = in_tx and tx.ran and session.isolation() in _RR_LEVELS
    limit = context.config.invalidation.maintain.max_entries_per_write
    written = {table_of(k) for k in tx.written}
    entries: list[Maintained] = []
    fresh: list[tuple[str, Shape, tuple[object, ...], tuple[str, ...]]] = []
    for key, spec in registered.items():
        entry = tx.maintained.get(key)
        if entry is not None:
            if entry.failed is None:
                entries.append(entry)
            continue
        if late:
            stats.incr("fallback:snapshot")
            continue
        if len(fresh) >= limit:
            stats.incr("fallback:max_entries")
            continue
        found = _candidate(session, table_key, key, spec, written)
        if found is not None:
            fresh.append((key, *found))
    # One maintaining writer at a time per table its entries read (two would each see the other's
    # bump and fall back, invalidating the entries they share): the leases, taken in name order
    # and boundedly waited for, before the baselines.
    wanted = {table_key}.union(*(_table_keys(session, version_keys) for *_, version_keys in fresh)) if fresh else ()
    leases: list[tuple[str, str]] = []
    for held_key in sorted(wanted):
        if held_key in tx.leases:
            continue
        token = _lease(store, held_key)
        if token is None:
            for held in leases:
                _quietly(context, partial(store.release_maintainer, *held))
            stats.incr("fallback:lease_wait", len(registered))
            return None
        leases.append((held_key, token))
    if fresh:
        try:
            baselines = store.maintained_baselines([(key, version_keys) for key, _, _, version_keys in fresh])
        except Exception:  # noqa: BLE001 - fail open: invalidation as always
            context.store_failed()
            baselines = [False] * len(fresh)
        for (key, shape, entry_params, version_keys), baseline in zip(fresh, baselines, strict=True):
            if isinstance(baseline, Baseline):
                entries.append(Maintained(key, shape, entry_params, version_keys, baseline))
            elif baseline:
                _quietly(context, partial(store.forget_maintained, table_key, key))  # gone
    if not entries and not logging:
        for held in leases:
            _quietly(context, partial(store.release_maintainer, *held))
        return None
    own = not in_tx and session.adapter.autocommit(session.raw)
    return StatementMaintenance(session, plan, relation, pk, entries, sql, params, own, leases)


def _quietly(context: CacheContext, call: Callable[[], object]) -> None:
    """A store call whose failure must not fail the write (counted as a store failure)."""
    try:
        call()
    except Exception:  # noqa: BLE001 - fail open
        context.store_failed()


_LEASE_MS = 10_000  # a maintainer lease outlives any write it covers; a killed writer frees it then
_LEASE_WAIT_S = 1.0


def _table_keys(session: Session, version_keys: Sequence[str]) -> set[str]:
    """The table keys (what maintainer leases are named after) of an entry's base tables."""
    return {session.version_key(t) for t in {table_of(k) for k in version_keys} - {ALL_TABLES, CATALOG_CHANGES}}


def _lease(store: MaintainedAnswers, table_key: str) -> str | None:
    """Take the table's maintainer lease, waiting at most ``_LEASE_WAIT_S``; its token or None."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + _LEASE_WAIT_S
    pause = 0.0005
    while True:
        try:
            if store.lease_maintainer(table_key, token, _LEASE_MS):
                return token
        except Exception:  # noqa: BLE001 - fail open: no maintenance
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


_SPECS: dict[bytes, tuple[str, str, tuple[str, ...], tuple[object, ...]]] = {}

CATCHUP_FIELD = "#catchup"
"""The registry field by which a fill asks a table's writers to log the rows they change: until
when (ms since the epoch, the filler's clock), written as a registered entry's spec would be."""


def _logging_until(found: bytes | None) -> float:
    try:
        return int(found) / 1000 if found else 0.0
    except ValueError:
        return 0.0


def _candidate(session: Session, table_key: str, key: str, spec: bytes, written: set[str]
               ) -> tuple[Shape, tuple[object, ...], tuple[str, ...]] | None:
    """A registered entry's shape, parameters and version keys (None: not maintainable here)."""
    context = session.context
    store = context.maintain
    assert store is not None
    try:
        found = _SPECS.get(spec)
        if found is None:
            found = _from_spec(spec)
            if len(_SPECS) > 4096:
                _SPECS.clear()
            _SPECS[spec] = found
        sql, scope, version_keys, params = found
        if scope != scope_of(session, session.scope_key):
            context.stats.maintain.incr("fallback:scope")  # read in another scope than this writer's
            return None
        catalog, _ = session.catalog()
        shape = shape_of(sql, session.analyzer.dialect, session.analyzer.paramstyle, frozenset(catalog.read_deps))
    except (CorruptEntry, Refused, IndexError, TypeError):
        _quietly(context, lambda: store.forget_maintained(table_key, key))
        return None
    if not written.isdisjoint(table_of(k) for k in version_keys):
        context.stats.maintain.incr("fallback:earlier_write")  # this transaction already changed what it reads
        return None
    return shape, params, version_keys


def checks_of(entries: list[Maintained]) -> list[MaintainCheck]:
    return [MaintainCheck(e.baseline.versions) for e in entries]
