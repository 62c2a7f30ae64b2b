"""CachedConnection and CachedCursor: the PEP 249 surface, with the cache behind ``execute``.

A wrapped connection behaves like the one it wraps: it reports the wrapped class
through ``__class__``, passes unknown attributes through, and a cached answer has
the same rows, types, ``description`` and ``rowcount`` as a live one.

Transaction state is read from the driver after every call, never inferred from
method names (DESIGN §2). Writes are tracked per transaction and published in two
phases around the moment they become visible.
"""

from __future__ import annotations

import copy
import time
import uuid
import weakref
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from querycache.analysis import (
    ALL_TABLES,
    CATALOG_CHANGES,
    CLOCK_ARITHMETIC,
    CLOCK_FUNCTIONS,
    Analysis,
    StatementKind,
    TxAction,
)
from querycache.backends.base import MISS, Lookup
from querycache.coalesce import Flight, Outcome
from querycache.codec import CorruptEntry, Result, Unencodable, decode, encode
from querycache.drivers.base import Catalog, DriverAdapter, ServerState
from querycache.errors import BackendUnavailable
from querycache.keys import UnsupportedParam, l1_params, l2_key
from querycache.l1 import L1Cache, L1Entry
from querycache.stats import Fingerprint
from querycache.status import COALESCED, HIT_L1, HIT_L2, HIT_L3, BypassReason, NotFilledReason
from querycache.status import MISS as STATUS_MISS

if TYPE_CHECKING:
    from querycache.cache import QueryCache
    from querycache.rows import Source
    from querycache.semantic.canonical import Canonical, Output
    from querycache.semantic.tier import SemanticTier

_set = object.__setattr__  # internal state of the wrappers, without their pass-through __setattr__
_RR_LEVELS = ("repeatable read", "serializable-snapshot", "unknown")
_MUTABLE = frozenset({list, dict, bytearray, set})
_NO_RESULT = Result(None, [], -1)
# psycopg execute() options that change how, not what, a result is fetched.
_RESULT_NEUTRAL_OPTIONS = frozenset({"prepare", "binary"})


class _Transaction:
    """What the wrapper knows about the open transaction of one connection."""

    __slots__ = ("dirty", "isolation", "open", "row_checks", "stamp", "tracked", "written")

    def __init__(self) -> None:
        self.open = False
        self.tracked = True
        self.stamp: int | None = None
        self.dirty = False
        self.written: set[str] = set()
        self.isolation: str | None = None
        # Row-level writes: (table key, dependency version seen); checked again at phase 2.
        self.row_checks: list[tuple[str, int]] = []

    def reset(self) -> None:
        self.open = False
        self.tracked = True
        self.stamp = None
        self.dirty = False
        self.written = set()
        self.isolation = None
        self.row_checks = []


class _ReadPlan:
    """A cacheable read resolved against the catalog: its version keys, or why it is not cached."""

    __slots__ = ("bypass", "calls_user_function", "pinned", "row_pins", "scope_key", "swr_s", "ttl_s",
                 "version_keys")

    def __init__(self, version_keys: tuple[str, ...], bypass: BypassReason | None, ttl_s: float,
                 calls_user_function: bool = False, swr_s: float = 0.0,
                 row_pins: dict[str, dict[str, tuple[Source, ...]]] | None = None,
                 pinned: tuple[tuple[str, str], ...] = (), scope_key: str = "") -> None:
        self.version_keys = version_keys
        # The scope of its shared entries: the connection's, plus what row-level security reads
        # when it reads a table with policies (docs/isolation.md).
        self.scope_key = scope_key
        # Row-level: the tables pinned to column values; their bucket keys depend on the parameters.
        self.row_pins = row_pins
        # Row-level, one execution's plan: the (table key, column) registrations its buckets rely on.
        self.pinned = pinned
        self.bypass = bypass
        self.ttl_s = ttl_s
        self.swr_s = swr_s
        # It calls a user function that may write or change the session: run it as a call.
        self.calls_user_function = calls_user_function


class _NoSuchMethod(AttributeError, TypeError):
    """The driver has no such method. An AttributeError for ``hasattr`` and attribute access; a
    TypeError too, which is what ``with`` raises for an object that is no context manager."""


class _DriverMethod:
    """A method of the wrapper that exists only where the wrapped driver object has one of that name:
    ``hasattr`` (dbapi20, SQLAlchemy, an application's feature probes) must see the driver's own
    surface, and calling what the driver lacks must fail as it would on the driver."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self._method = method
        self._name = method.__name__
        self.__doc__ = method.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self._method
        raw = instance._raw
        if not hasattr(raw, self._name):
            if self._name in ("__enter__", "__exit__"):
                raise _NoSuchMethod(f"{type(raw).__name__!r} object does not support the context manager protocol")
            raise _NoSuchMethod(f"{type(raw).__name__!r} object has no attribute {self._name!r}")
        return self._method.__get__(instance, owner)


class CachedConnection:
    """A PEP 249 connection whose reads are answered from the cache when provably fresh."""

    _own = frozenset(
        {"_raw", "_cache", "_adapter", "_analyzer", "_l1", "_tx", "_state", "_scope_id", "_scope_key",
         "_database_id", "_version_prefix", "_private", "_plans", "_catalog_version", "_closed",
         "_scope_stale_at_tx_end", "_fixed_database_id", "_cursors", "_reads_open_tx", "_next_isolation", "_row_level",
         "_row_security_settings", "_row_security_scope_key", "__weakref__"}
    )

    def __init__(self, cache: QueryCache, raw: Any, adapter: DriverAdapter, database_id: str | None) -> None:
        object.__setattr__(self, "_raw", raw)
        self._cache = cache
        self._adapter = adapter
        self._analyzer = cache._analyzer_for(adapter.dialect, adapter.paramstyle)
        config = cache.config
        self._l1: L1Cache | None = (
            L1Cache(config.l1.max_entries, config.l1.max_bytes, lambda: cache._stats.evictions.incr("l1"))
            if config.l1.enabled else None
        )
        self._tx = _Transaction()
        self._private = False
        self._plans: dict[str, _ReadPlan] = {}
        self._catalog_version = -1
        self._closed = False
        self._scope_stale_at_tx_end = False
        self._fixed_database_id = database_id
        self._cursors: weakref.WeakSet[CachedCursor] = weakref.WeakSet()
        self._state = ServerState("", (), "unknown", False)
        self._scope_id = 0
        self._scope_key = ""
        # Settings row-level security policies read (None: none known): read with the scope, part of
        # the L1 scope and of the shared scope of reads of tables with policies.
        self._row_security_settings: tuple[str, ...] | None = None
        self._row_security_scope_key = ""
        self._database_id = ""
        self._version_prefix = ""
        was_in_tx = adapter.in_transaction(raw)
        self._reads_open_tx = adapter.reads_open_transaction(raw)
        self._next_isolation: str | None = None
        self._row_level = (config.invalidation.row_level and adapter.dialect in ("postgres", "mysql", "mariadb")
                           and hasattr(cache.backend, "register_dependency"))
        self._refresh_scope()
        if was_in_tx:
            # Wrapped while a transaction was open: we did not see it start, so no hits, no fills.
            self._tx.open = True
            self._tx.tracked = False

    # -- identity and pass-through -------------------------------------------------------
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._raw, name)
        if name == "query" and self._adapter.family == "mysql" and callable(value):
            return _sql_method(self, value)
        if name == "begin" and self._adapter.family == "mysql" and callable(value):
            return _begin_method(self, value)
        if name in _STATE_CHANGING_METHODS and callable(value):
            return _after_call(self, value, name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CachedConnection._own:
            object.__setattr__(self, name, value)
            return
        in_tx = self._adapter.in_transaction(self._raw)
        setattr(self._raw, name, value)
        self._reconcile(in_tx, ended_by_commit=True)
        if name in ("isolation_level", "autocommit", "read_only", "deferrable"):
            self._plans.clear()
        self._reads_open_tx = self._adapter.reads_open_transaction(self._raw)

    def __repr__(self) -> str:
        return f"<querycache.CachedConnection wrapping {self._raw!r}>"

    @property
    def wrapped(self) -> Any:
        """The driver connection this wraps."""
        return self._raw

    @property
    def cache(self) -> QueryCache:
        return self._cache

    @property
    def database_id(self) -> str:
        return self._database_id

    @property
    def version_namespace(self) -> str:
        """What this connection's table versions are keyed by (see ServerState.version_namespace)."""
        return self._version_prefix[:-1]

    # -- PEP 249 ------------------------------------------------------------------------
    def cursor(self, *args: Any, **kwargs: Any) -> CachedCursor:
        cur = CachedCursor(self, self._raw.cursor(*args, **kwargs))
        self._cursors.add(cur)
        return cur

    def commit(self) -> None:
        self._end_transaction(self._raw.commit, committing=True)

    def rollback(self) -> None:
        self._end_transaction(self._raw.rollback, committing=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            in_tx = self._adapter.in_transaction(self._raw) if not self._raw_closed() else False
            try:
                self._raw.close()
            finally:
                if in_tx and self._tx.written:
                    # Closing with an open transaction rolls it back; MySQL keeps non-transactional writes.
                    if self._adapter.bump_on_rollback:
                        self._publish(self._tx.written)
                self._tx.reset()
                if self._l1 is not None:
                    self._l1.clear()
                self._cache._forget(self)

    def _raw_closed(self) -> bool:
        closed = getattr(self._raw, "closed", False)
        return bool(closed) if not callable(closed) else False

    @_DriverMethod
    def execute(self, sql: Any, params: Any = None, *args: Any, **kwargs: Any) -> CachedCursor:
        """sqlite3 / psycopg ``Connection.execute``: a new cursor, executed through the cache."""
        cur = self.cursor()
        cur.execute(sql, params, *args, **kwargs) if params is not None or args or kwargs else cur.execute(sql)
        return cur

    @_DriverMethod
    def executemany(self, sql: Any, seq_of_params: Any, *args: Any, **kwargs: Any) -> CachedCursor:
        cur = self.cursor()
        cur.executemany(sql, seq_of_params, *args, **kwargs)
        return cur

    @_DriverMethod
    def executescript(self, script: str) -> CachedCursor:
        """sqlite3: commits first, then runs several statements: a write to every table."""
        keys = {self._key(ALL_TABLES)} | self._tx.written
        try:
            self._publish_around(keys, lambda: self._raw.executescript(script))
        finally:
            self._tx_ended()
            self._catalog_changed()
        cur = CachedCursor(self, self._raw.cursor())
        cur._status = f"bypass:{BypassReason.MULTI_STATEMENT.value}"
        self._cache._stats.bypasses.incr(BypassReason.MULTI_STATEMENT.value)
        return cur

    @_DriverMethod
    def blobopen(self, table: str, column: str, row: int, /, *, readonly: bool = False, name: str = "main") -> Any:
        """sqlite3 incremental blob I/O: every write is tracked like an UPDATE of ``table``."""
        blob = self._raw.blobopen(table, column, row, readonly=readonly, name=name)
        if readonly:
            return blob
        return _BlobWriter(self, blob, self._write_keys(self._analyzer(f'UPDATE "{table}" SET x = 1')))

    @_DriverMethod
    def deserialize(self, data: Any, /, *, name: str = "main") -> None:
        """sqlite3: replaces the whole database: a write to every table."""
        self._publish_around({self._key(ALL_TABLES)}, lambda: self._raw.deserialize(data, name=name))
        self._catalog_changed()

    @_DriverMethod
    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        """psycopg ``Connection.transaction()``: its exit commits (or releases a savepoint)."""
        return _TransactionBlock(self, self._raw.transaction(*args, **kwargs))

    def __enter__(self) -> CachedConnection:
        self._raw.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        # sqlite3 and psycopg commit on a clean exit and roll back otherwise; PyMySQL closes.
        return self._end_transaction(lambda: self._raw.__exit__(exc_type, exc, tb), committing=exc_type is None)

    # -- scope and catalog --------------------------------------------------------------
    def _refresh_scope(self) -> None:
        settings = self._cache.config.scope.settings
        secured = self._row_security_settings
        state = self._internal(lambda: self._adapter.server_state(self._raw, settings, secured))
        database_id = self._fixed_database_id or state.database_id
        self._state = state
        self._database_id = database_id
        self._version_prefix = (self._fixed_database_id or state.version_namespace or database_id) + "\x1f"
        scope: tuple[Any, ...] = (database_id, state.scope, self._private and id(self))
        self._scope_id, self._scope_key = self._cache._intern_scope(scope)
        if secured is not None:
            # L1 is this connection's own: one scope id, the row-level one, serves every read.
            self._scope_id, self._row_security_scope_key = self._cache._intern_scope(
                (*scope, state.row_security_scope))
        self._plans.clear()

    def _track_row_security(self, settings: Iterable[str]) -> bool:
        """Read ``settings`` with the scope from now on (one query when one is new). False when the
        scope could not be read again: reads that depend on them are then not cached."""
        known = self._row_security_settings
        if known is not None and set(settings) <= set(known):
            return True
        self._row_security_settings = tuple(sorted({*settings, *(known or ())}))
        try:
            self._refresh_scope()
        except Exception:  # noqa: BLE001 - fail open: the read runs uncached, with its own outcome
            self._row_security_settings = known
            return False
        return True

    def _row_security_scope(self, catalog: Catalog, tables: set[str], analysis: Analysis
                            ) -> tuple[str, BypassReason | None]:
        """The shared scope of a read of ``tables`` and why it is not cached, if it is not: a table
        whose policies the analyzer cannot see into needs its settings declared (docs/isolation.md)."""
        secured = catalog.row_security_of(tables)
        hinted = analysis.hints.settings
        if not secured and not hinted:
            return self._scope_key, None
        declared = {t.lower(): names for t, names in self._cache.config.scope.policy_settings.items()}
        needed = set(hinted)
        for found in secured:
            if found.opaque and found.table not in declared and not hinted:
                return self._scope_key, BypassReason.RLS_OPAQUE
            needed |= found.settings | {s.lower() for s in declared.get(found.table, ())}
        if not self._track_row_security(needed):
            return self._scope_key, BypassReason.UNKNOWN
        return self._row_security_scope_key, None

    def _catalog(self) -> tuple[Catalog, int]:
        return self._cache._catalog_for(self)

    def _internal(self, action: Callable[[], Any]) -> Any:
        """Run the wrapper's own queries: inside a transaction they may start its snapshot."""
        was_in_tx = self._adapter.in_transaction(self._raw)
        candidate = self._stamp_candidate() if was_in_tx else None
        try:
            return action()
        finally:
            self._adopt_stamp(candidate, was_in_tx)

    def _stamp_candidate(self, level: str | None = None) -> int | None:
        """A stamp taken before a statement that may start a transaction's snapshot.

        A transaction's stamp must not be later than its snapshot: taking it before any statement
        that could start the snapshot (an earlier stamp only makes fewer entries usable) keeps
        REPEATABLE READ hits inside what the transaction can see.
        """
        if self._tx.stamp is not None:
            return None
        if (level or self._isolation()) not in _RR_LEVELS:
            return None  # READ COMMITTED: every statement reads at its own stamp; no round trip
        try:
            return self._cache.backend.current_stamp()[1]
        except BackendUnavailable:
            return None

    def _adopt_stamp(self, candidate: int | None, was_in_tx: bool) -> None:
        if not self._adapter.in_transaction(self._raw):
            return
        tx = self._tx
        if candidate is None:
            # READ COMMITTED takes no transaction stamp: a statement that began the transaction (a
            # bypassed read, a write) began it in the wrapper's sight all the same. Without a stamp,
            # REPEATABLE READ stays untracked (no hits, no fills).
            if not was_in_tx and not tx.open and self._isolation() not in _RR_LEVELS:
                tx.reset()
                tx.open = True
            return
        if not was_in_tx and not tx.open:
            tx.reset()  # the statement began the transaction: the wrapper saw it start
            tx.open = True
        if tx.stamp is None and tx.tracked:
            tx.stamp = candidate

    def _open_tx_for_hit(self) -> None:
        """A hit for a read that would have begun a transaction (non-autocommit, READ COMMITTED)
        begins it, so the connection's transaction state is what the uncached read leaves."""
        candidate = self._stamp_candidate()
        self._adapter.open_transaction(self._raw)
        self._adapter.after_statement(self._raw)
        tx = self._tx
        tx.reset()
        tx.open = True
        tx.stamp = candidate
        tx.isolation = self._next_isolation
        self._next_isolation = None

    def _tx_ended(self) -> None:
        """Every end of a transaction comes here: forget it, and re-read a scope SET inside it changed."""
        self._tx.reset()
        if self._scope_stale_at_tx_end:
            self._scope_stale_at_tx_end = False
            self._refresh_scope()

    def _catalog_changed(self) -> None:
        self._cache._invalidate_catalog(self._database_id)
        self._cache._generated_columns.clear()
        self._plans.clear()

    def _key(self, table: str) -> str:
        return self._version_prefix + table

    def _isolation(self) -> str:
        return (self._tx.isolation or self._next_isolation or self._adapter.driver_isolation(self._raw)
                or self._state.isolation)

    def _store_key(self, raw_cursor: Any, analysis: Analysis, params: Any, plan: _ReadPlan) -> str:
        """The statement's L2 key in this connection's scope and the current tenant."""
        cache = self._cache
        text = analysis.sql if analysis.names_from_text else analysis.normalized
        return l2_key(cache.namespace, plan.scope_key, cache._tenant.get(), self._adapter.cursor_shape(raw_cursor),
                      text, params, plan.version_keys)

    def row_security_report(self) -> list[dict[str, Any]]:
        """The tables with row-level security this connection's database has, what their policies
        read, and whether their reads are cached (``querycache doctor --dsn``)."""
        catalog, _ = self._catalog()
        declared = {t.lower(): names for t, names in self._cache.config.scope.policy_settings.items()}
        report = []
        for table, found in sorted(catalog.row_security.items()):
            cached = not found.opaque or table in declared
            settings = sorted(found.settings | {s.lower() for s in declared.get(table, ())})
            report.append({"table": table, "policies": list(found.policies), "settings": settings,
                           "identity": sorted(found.identity | {"current_user"}), "forced": found.forced,
                           "opaque": found.opaque, "declared": table in declared, "cached": cached,
                           "reads_tables": sorted(found.reads_tables)})
        return report

    def explain(self, sql: str, params: Any = None) -> dict[str, Any]:
        """How this connection would answer ``sql`` right now, without running it: the analysis,
        the dependencies (catalog included), the keys, and the tier (``l1``, ``l2``, or ``database``
        with the reason). The store lookup creates missing table versions, nothing else."""
        analysis = self._analyzer(sql)
        out = analysis.to_dict()
        out["tier"] = "database"
        if analysis.reason is not None:
            out["why"] = f"bypass:{analysis.reason.value}"
            return out
        if analysis.kind is not StatementKind.READ or analysis.changes_scope:
            out["why"] = "bypass:write" if analysis.is_write else "bypass:session"
            return out
        plan = self._plan(analysis)
        catalog, _ = self._catalog()
        secured = catalog.row_security_of(catalog.expand_reads(analysis.tables_read))
        if secured:
            out["row_security"] = {r.table: r.describe() for r in secured}
        if plan.row_pins is not None:
            plan = self._pinned_plan(plan, params)
        out["version_keys"] = list(plan.version_keys)
        out["ttl_s"] = plan.ttl_s
        out["swr_s"] = plan.swr_s
        if plan.bypass is not None or plan.calls_user_function:
            out["why"] = f"bypass:{(plan.bypass or BypassReason.VOLATILE).value}"
            return out
        cache = self._cache
        raw_cursor = self._raw.cursor()
        try:
            store_key = self._store_key(raw_cursor, analysis, params, plan)
            token = self._adapter.shape_token(raw_cursor)
            shape = self._adapter.cursor_shape(raw_cursor)
        finally:
            raw_cursor.close()
        out["keys"] = {"l2": store_key, "scope": plan.scope_key}
        if self._l1 is not None:
            try:
                entry = self._l1.get((self._scope_id, cache._tenant.get(), token, sql, l1_params(params)))
            except UnsupportedParam:
                entry = None
            if entry is not None and self._l1_fresh(entry, self._adapter.in_transaction(self._raw)):
                out["tier"] = "l1"
                return out
        try:
            lookup = cache.backend.lookup(store_key, plan.version_keys, peek=True)
        except BackendUnavailable as exc:
            out["why"] = f"bypass:store_unavailable ({exc})"
            return out
        if lookup.value is not MISS:
            out["tier"] = "l2"
            return out
        out["why"] = "pending write" if lookup.pending else "miss: not cached (or no longer fresh)"
        l3 = cache.l3
        if l3 is not None and not lookup.pending and (analysis.hints.semantic or cache.config.l3.all_reads):
            semantic = self._explain_l3(l3, analysis, sql, params, plan, shape)
            out["l3"] = semantic
            if semantic.get("match"):
                out["tier"] = "l3"
                out.pop("why")
        return out

    def _l3_scope(self, plan: _ReadPlan, shape: str) -> str:
        """L3's scope: one FAISS index per (namespace, the read's scope, tenant, row shape)."""
        cache = self._cache
        return "\x1f".join((cache.namespace, plan.scope_key, repr(cache._tenant.get()), shape))

    def _explain_l3(self, l3: SemanticTier, analysis: Analysis, sql: str, params: Any, plan: _ReadPlan,
                    shape: str) -> dict[str, Any]:
        """The nearest L3 entries of the statement's guard bucket and whether one would answer."""
        from querycache.semantic.canonical import Ineligible, canonicalize

        try:
            canonical = canonicalize(sql, self._analyzer.dialect, self._analyzer.paramstyle, params)
        except Ineligible as exc:
            return {"eligible": False, "reason": exc.reason}
        cache = self._cache
        scope = self._l3_scope(plan, shape)
        threshold = analysis.hints.semantic_threshold or cache.config.l3.threshold
        candidates = l3.candidates(scope, plan.version_keys, canonical)
        match = None
        for candidate in candidates:
            if candidate["same_form"] and candidate["similarity"] >= threshold:
                try:
                    found = cache.backend.lookup(candidate["l2_key"], plan.version_keys, peek=True)
                except BackendUnavailable:
                    break
                candidate["fresh"] = found.value is not MISS
                if candidate["fresh"]:
                    match = candidate
                    break
        return {"eligible": True, "threshold": threshold, "candidates": candidates, "match": match}

    def _l1_fresh(self, entry: L1Entry, in_tx: bool) -> bool:
        """Whether an L1-shaped entry (an L1 entry, or a coalescing leader's hand-over) may answer now."""
        backend = self._cache.backend
        if entry.epoch != backend.l1_epoch or entry.expires_at <= time.monotonic():
            return False
        limit = entry.stamp
        if in_tx:
            isolation = self._isolation()
            if isolation == "serializable":
                return False
            if isolation in _RR_LEVELS:
                tx_stamp = self._tx.stamp
                if tx_stamp is None:
                    return False  # the first read of a REPEATABLE READ transaction pins its snapshot
                limit = min(limit, tx_stamp)
        elif self._reads_open_tx and self._isolation() != "read committed":
            return False  # this read would open a transaction whose snapshot it must pin
        versions = self._cache.mirror_versions
        for k in entry.version_keys:
            version = versions.get(k)
            if version is None or version > limit:
                return False
        return True

    # -- transaction bookkeeping --------------------------------------------------------
    def _publish(self, keys: set[str]) -> None:
        token = uuid.uuid4().hex
        ordered = sorted(keys)
        self._cache._begin_write(ordered, token)
        self._cache._end_write(ordered, token)
        self._count_invalidations(keys)
        self._cache._after_publish()

    def _publish_around(self, keys: set[str], action: Callable[[], Any],
                        row_checks: list[tuple[str, int]] | None = None) -> Any:
        """Phase 1 before ``action`` makes writes visible, phase 2 after, whatever its outcome.
        ``keys`` may grow during ``action`` (a row-level write found it touched other rows);
        phase 2 bumps what it holds then, plus every table whose dependency columns changed since
        its footprint was computed (``row_checks``)."""
        if not keys:
            return action()
        token = uuid.uuid4().hex
        self._cache._begin_write(sorted(keys), token)
        try:
            return action()
        finally:
            if row_checks:
                keys |= self._changed_dependencies(row_checks)
            self._cache._end_write(sorted(keys), token)
            self._count_invalidations(keys)
            self._cache._after_publish()

    def _changed_dependencies(self, row_checks: list[tuple[str, int]]) -> set[str]:
        """Tables a reader started to pin by a new column since a write computed its footprint:
        the write bumps the whole table (see MemoryBackend.register_dependency)."""
        backend: Any = self._cache.backend
        changed = set()
        for key, seen in row_checks:
            try:
                if backend.dependencies(key)[1] == seen:
                    continue
            except Exception:  # noqa: BLE001 - unknown: the whole table
                self._cache._store_failed()
            changed.add(key)
        if changed:
            self._cache._stats.row_level.incr("escalated:dependency_changed")
        return changed

    def _count_invalidations(self, keys: set[str]) -> None:
        counter = self._cache._stats.invalidations
        for table in {key.rsplit("\x1f", 1)[-1].split(_BUCKET, 1)[0] for key in keys}:
            counter.incr(table)  # once per table a write touched, whatever buckets it bumped

    def _end_transaction(self, raw_action: Callable[[], Any], committing: bool) -> Any:
        def action() -> Any:
            try:
                return raw_action()
            finally:
                self._adapter.after_transaction_end(self._raw)

        written = self._tx.written
        try:
            if written and (committing or self._adapter.bump_on_rollback):
                return self._publish_around(set(written), action, self._tx.row_checks)
            try:
                return action()
            except BaseException:
                # A rollback the driver did not confirm may have been a commit (connection lost).
                if written:
                    self._publish(set(written))
                raise
        finally:
            self._tx_ended()

    def _reconcile(self, was_in_tx: bool, ended_by_commit: bool) -> None:
        """After a call the wrapper did not drive: did a transaction end (or begin) under it?"""
        in_tx = self._adapter.in_transaction(self._raw)
        if was_in_tx and not in_tx:
            if self._tx.written and (ended_by_commit or self._adapter.bump_on_rollback):
                keys = set(self._tx.written)
                if self._tx.row_checks:
                    keys |= self._changed_dependencies(self._tx.row_checks)
                self._publish(keys)
            self._tx_ended()
        elif in_tx and not was_in_tx and not self._tx.open:
            self._tx.open = True
            self._tx.tracked = False

    # -- the read plan ------------------------------------------------------------------
    def _plan(self, analysis: Analysis) -> _ReadPlan:
        plan = self._plans.get(analysis.sql)
        catalog, version = self._catalog()
        if plan is not None and version == self._catalog_version:
            return plan
        if version != self._catalog_version:
            self._plans.clear()
            self._catalog_version = version
            if catalog.row_security:
                # Every read of this connection's L1 is scoped by what any policy reads.
                self._track_row_security(catalog.row_security_settings)
        bypass: BypassReason | None = None
        if not catalog.complete:
            bypass = BypassReason.UNKNOWN
        elif analysis.tables_read - catalog.relations - set(analysis.hints.tables):
            # Perhaps created since the catalog was read (by another client): read it again, at
            # most once a second, and cache nothing that is still unknown.
            if self._cache._reload_stale_catalog(self._database_id):
                return self._plan(analysis)
            bypass = BypassReason.UNKNOWN_RELATION
        elif (analysis.functions - CLOCK_FUNCTIONS - CLOCK_ARITHMETIC if analysis.hints.volatile == "time"
              else analysis.functions) & catalog.volatile_functions:
            bypass = BypassReason.VOLATILE
        elif catalog.deterministic_functions is not None and analysis.dialect == "sqlite" and (
            analysis.user_functions - catalog.deterministic_functions
        ):
            bypass = BypassReason.VOLATILE
        tables = catalog.expand_reads(analysis.tables_read)
        scope_key, secured_bypass = self._row_security_scope(catalog, tables, analysis)
        bypass = bypass or secured_bypass
        keys = [self._key(ALL_TABLES), self._key(_CATALOG_KEY)]
        keys += sorted(self._key(t) for t in tables)
        keys += sorted(self._cache._group_key(g) for g in analysis.hints.groups)
        row_pins: dict[str, dict[str, tuple[Source, ...]]] = {}
        if self._row_level and bypass is None:
            row_pins = self._read_pins(analysis, tables, catalog)
        # Tables not pinned depend on their "any" bucket, which every row-level write to them bumps:
        # also with row-level invalidation off here, since another process (or cache) sharing the
        # store may have it on and bump only "any" and buckets, never the table's own key.
        keys += sorted(self._key(t) + _BUCKET + "*" for t in tables if t not in row_pins)
        calls = bool(analysis.functions & catalog.user_volatile_functions)
        ttl_s = self._cache._ttl_for(analysis, tables)
        plan = _ReadPlan(tuple(keys), BypassReason.VOLATILE if calls else bypass, ttl_s, calls,
                         self._cache._swr_for(analysis, tables, ttl_s), row_pins or None, scope_key=scope_key)
        if len(self._plans) > 4096:
            self._plans.clear()
        if bypass is not BypassReason.UNKNOWN_RELATION:  # those are looked up again next time
            self._plans[analysis.sql] = plan
        return plan

    # -- row-level invalidation (issue 10) -------------------------------------------------
    def _read_pins(self, analysis: Analysis, tables: set[str], catalog: Catalog
                   ) -> dict[str, dict[str, tuple[Source, ...]]]:
        """The read's pinned tables: only real tables it names itself (a view's columns say
        nothing about its base tables' rows)."""
        from querycache.rows import read_pins

        pins = read_pins(analysis.sql, self._analyzer.dialect, self._analyzer.paramstyle)
        if pins is None:
            return {}
        return {t: columns for t, columns in pins.tables.items()
                if columns and t in tables and catalog.expand_reads({t}) == {t}}

    def _pinned_plan(self, plan: _ReadPlan, params: Any) -> _ReadPlan:
        """``plan`` with the bucket keys of this execution's values (a value that has no bucket
        makes its table depend on "any"); registers each pinned column before the lookup takes
        its stamp, so that a writer computing a footprint from then on bumps its buckets."""
        from querycache.rows import bucket_values, resolve

        assert plan.row_pins is not None
        backend: Any = self._cache.backend
        registered = self._cache._row_dependencies
        keys = list(plan.version_keys)
        pinned: list[tuple[str, str]] = []
        stats = self._cache._stats.row_level
        for table, columns in plan.row_pins.items():
            table_key = self._key(table)
            buckets: list[str] | None = []
            for column, sources in columns.items():
                for source in sources:
                    try:
                        found = bucket_values(resolve(source, params), self._analyzer.dialect, True)
                    except (KeyError, IndexError, TypeError):
                        found = None
                    if found is None or buckets is None:
                        buckets = None
                        break
                    buckets += [f"{table_key}{_BUCKET}{column}={bucket}" for bucket in found]
                if buckets is None:
                    break
                if (table_key, column) not in registered:
                    try:
                        epoch = backend.register_dependency(table_key, column)
                    except Exception:  # noqa: BLE001 - fail open: unregistered, the table is read as "any"
                        self._cache._store_failed()
                        buckets = None
                        break
                    registered[(table_key, column)] = epoch
                pinned.append((table_key, column))
            if buckets is None:
                keys.append(table_key + _BUCKET + "*")
                stats.incr("reads:any")
            else:
                keys += sorted(set(buckets))
                stats.incr("reads:pinned")
        return _ReadPlan(tuple(keys), plan.bypass, plan.ttl_s, plan.calls_user_function, plan.swr_s,
                         pinned=tuple(pinned), scope_key=plan.scope_key)

    def _registered_in(self, plan: _ReadPlan, epoch: str) -> bool:
        """Whether every column ``plan`` pins was registered in the store's incarnation ``epoch``.
        A registration made before a restart or FLUSHALL is gone with it: writers would bump only
        "any", so the answer must not be filled; the registration is forgotten and made again."""
        registered = self._cache._row_dependencies
        stale = [pin for pin in plan.pinned if registered.get(pin) != epoch]
        for pin in stale:
            registered.pop(pin, None)
        return not stale

    def _generated_columns(self, table: str) -> frozenset[str]:
        """Columns of ``table`` the database computes (GENERATED ... STORED / VIRTUAL), read once per
        database and table; on failure every column counts as one (the write stays at table level)."""
        cache = self._cache
        key = (self._database_id, table)
        found = cache._generated_columns.get(key)
        if found is not None:
            return found
        if self._adapter.dialect == "postgres":
            sql = ("SELECT column_name FROM information_schema.columns "
                   "WHERE table_name = %s AND is_generated = 'ALWAYS'")
            params: tuple[Any, ...] = (table,)
        else:
            sql = ("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                   "AND table_name = %s AND (extra LIKE %s OR generation_expression <> '')")
            params = (table, "%GENERATED%")
        adapter, raw = self._adapter, self._raw
        try:
            if adapter.in_transaction(raw):
                # Inside the application's transaction: a savepoint, so that a failure cannot abort it.
                cursor = raw.cursor()
                try:
                    rows = _under_savepoint(cursor, "querycache_catalog", lambda: _fetch(cursor, sql, params))
                finally:
                    cursor.close()
            else:  # a transaction this opens (non-autocommit drivers) is rolled back: state unchanged
                rows = adapter.internal_query(raw, sql, params)
            found = frozenset(str(row[0]).lower() for row in rows)
        except Exception:  # noqa: BLE001 - unknown: "*", no column may be trusted
            return frozenset({"*"})
        cache._generated_columns[key] = found
        return found

    def _write_keys(self, analysis: Analysis) -> set[str]:
        catalog, _ = self._catalog()
        tables, everything = catalog.expand_writes(
            analysis.tables_written, self._cache.config.invalidation.dependencies
        )
        changes_catalog = analysis.kind in (StatementKind.DDL, StatementKind.UNKNOWN)
        if everything or analysis.writes_everything or (not catalog.complete and not tables):
            keys = {self._key(ALL_TABLES)}
        else:
            keys = {self._key(t) for t in tables}
        if changes_catalog:
            # Other processes read their catalog again when they see this key rise (a new policy,
            # view or trigger must not wait for their restart).
            keys.add(self._key(_CATALOG_KEY))
        return keys


_CATALOG_KEY = CATALOG_CHANGES
_BUCKET = "\x1d"  # table key + _BUCKET + "*" (any row) or "column=bucket"
_STATE_CHANGING_METHODS = frozenset(
    {"autocommit", "select_db", "set_session", "set_isolation_level", "reset", "ping",
     "set_client_encoding", "tpc_begin", "tpc_commit", "tpc_rollback", "tpc_prepare", "change_user",
     "set_character_set"}
)


def _after_call(conn: CachedConnection, method: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        was_in_tx = conn._adapter.in_transaction(conn._raw)
        try:
            return method(*args, **kwargs)
        finally:
            conn._reconcile(was_in_tx, ended_by_commit=name not in ("tpc_rollback", "reset"))
            conn._reads_open_tx = conn._adapter.reads_open_transaction(conn._raw)
            if name in ("select_db", "set_session", "reset", "change_user", "ping"):
                conn._refresh_scope()
            if name == "autocommit":
                conn._adapter.note_autocommit(conn._raw, None)
                conn._reads_open_tx = conn._adapter.reads_open_transaction(conn._raw)
    return call


def _sql_method(conn: CachedConnection, method: Callable[..., Any]) -> Callable[..., Any]:
    """PyMySQL ``Connection.query(sql)``: SQL sent past any cursor, tracked like ``execute``."""
    def call(sql: Any, *args: Any, **kwargs: Any) -> Any:
        def action() -> Any:
            try:
                return method(sql, *args, **kwargs)
            finally:
                conn._adapter.after_statement(conn._raw)

        if isinstance(sql, str) and conn._analyzer(sql).kind is StatementKind.TRANSACTION:
            return conn._end_transaction(action, committing=True)
        keys = _statement_write_keys(conn, sql)
        return _run_write(conn, keys, action, False) if keys else action()
    return call


def _begin_method(conn: CachedConnection, method: Callable[..., Any]) -> Callable[..., Any]:
    """PyMySQL ``begin()``: inside a transaction the server commits it first (an implicit commit)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        candidate = conn._cache.backend.current_stamp()[1]
        if conn._adapter.in_transaction(conn._raw):
            result = conn._end_transaction(lambda: method(*args, **kwargs), committing=True)
        else:
            result = method(*args, **kwargs)
        conn._tx.reset()
        conn._tx.open = True
        conn._tx.tracked = True
        conn._tx.stamp = candidate
        conn._adapter.after_statement(conn._raw)
        return result
    return call


class _BlobWriter:
    """A sqlite3 Blob whose writes publish their table like a write statement."""

    def __init__(self, conn: CachedConnection, blob: Any, keys: set[str]) -> None:
        self._conn = conn
        self._blob = blob
        self._keys = keys

    def write(self, data: Any) -> None:
        _run_write(self._conn, self._keys, lambda: self._blob.write(data), False)

    def __setitem__(self, index: Any, value: Any) -> None:
        _run_write(self._conn, self._keys, lambda: self._blob.__setitem__(index, value), False)

    def __getitem__(self, index: Any) -> Any:
        return self._blob[index]

    def __len__(self) -> int:
        return len(self._blob)

    def __enter__(self) -> _BlobWriter:
        self._blob.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._blob.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blob, name)


class _TransactionBlock:
    """psycopg's ``with conn.transaction():``, with the two-phase publish around its commit."""

    def __init__(self, conn: CachedConnection, block: Any) -> None:
        self._conn = conn
        self._block = block
        self._outer = False

    def __enter__(self) -> Any:
        conn = self._conn
        self._outer = not conn._adapter.in_transaction(conn._raw)
        candidate = conn._stamp_candidate() if self._outer else None
        result = self._block.__enter__()
        if self._outer:
            conn._tx.reset()
            conn._tx.open = True
            conn._tx.stamp = candidate
        return result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        conn = self._conn
        if not self._outer:
            return self._block.__exit__(exc_type, exc, tb)
        written = set(conn._tx.written)
        try:
            if exc_type is None and written:
                return conn._publish_around(written, lambda: self._block.__exit__(exc_type, exc, tb))
            return self._block.__exit__(exc_type, exc, tb)
        finally:
            conn._tx_ended()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._block, name)


class CachedCursor:
    """A PEP 249 cursor; ``cache_status`` tells where the last result came from."""

    _own = frozenset({"_conn", "_raw", "_status", "_rows", "_pos", "_live", "_result_served", "_served",
                      "_returned", "_options", "_fp", "__weakref__"})

    def __init__(self, conn: CachedConnection, raw: Any) -> None:
        object.__setattr__(self, "_raw", raw)
        self._conn = conn
        self._status: str | None = None
        self._rows: list[Any] = []
        self._pos = 0
        self._live = True
        self._served = False
        self._result_served: Result = _NO_RESULT
        self._options: dict[str, Any] = {}
        self._returned: Any = None
        self._fp: Fingerprint | None = None  # the statement's stats record, while it runs

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CachedCursor._own:
            object.__setattr__(self, name, value)
        else:
            setattr(self._raw, name, value)

    def __repr__(self) -> str:
        return f"<querycache.CachedCursor status={self._status!r} wrapping {self._raw!r}>"

    @property
    def wrapped(self) -> Any:
        return self._raw

    @property
    def cache_status(self) -> str | None:
        """``None`` before the first execute; then ``hit:L1``, ``miss``, ``bypass:<reason>``..."""
        return self._status

    @property
    def connection(self) -> CachedConnection:
        return self._conn

    # -- results ------------------------------------------------------------------------
    @property
    def description(self) -> Any:
        if not self._served:
            return self._raw.description
        description = self._result_served.description
        return list(description) if type(description) is list else description

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount) if not self._served else self._result_served.rowcount

    @property
    def lastrowid(self) -> Any:
        return self._raw.lastrowid if not self._served else self._result_served.lastrowid

    @property
    def arraysize(self) -> int:
        return int(self._raw.arraysize)

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._raw.arraysize = value

    def fetchone(self) -> Any:
        if self._live:
            return self._raw.fetchone()
        rows, pos = self._rows, self._pos
        if pos < len(rows):
            _set(self, "_pos", pos + 1)
            return rows[pos]
        if self._served:
            return None
        self._live = True  # a buffered prefix is exhausted: the rest comes from the database
        return self._raw.fetchone()

    def fetchmany(self, size: int | None = None) -> Any:
        if size is None:
            size = self.arraysize
        if self._live:
            return self._raw.fetchmany(size)
        rows, pos = self._rows, self._pos
        out = rows[pos:pos + size]
        _set(self, "_pos", pos + len(out))
        if len(out) < size and not self._served:
            self._live = True
            out += list(self._raw.fetchmany(size - len(out)))
        return out if self._conn._adapter.rows_container is list else self._conn._adapter.rows_container(out)

    def fetchall(self) -> Any:
        if self._live:
            return self._raw.fetchall()
        rows, pos = self._rows, self._pos
        out = rows[pos:] if pos else rows[:]
        _set(self, "_pos", len(rows))
        if not self._served:
            self._live = True
            out += list(self._raw.fetchall())
        return out if self._conn._adapter.rows_container is list else self._conn._adapter.rows_container(out)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    @_DriverMethod
    def __enter__(self) -> CachedCursor:
        return self

    @_DriverMethod
    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._rows = []
        self._raw.close()

    def setinputsizes(self, sizes: Any) -> None:
        method = getattr(self._raw, "setinputsizes", None)
        if method is not None:
            method(sizes)

    @_DriverMethod
    def setoutputsize(self, size: Any, column: Any = None) -> None:
        method = self._raw.setoutputsize
        method(size) if column is None else method(size, column)

    @_DriverMethod
    def nextset(self) -> Any:
        if self._served:
            return None
        return self._raw.nextset()

    @_DriverMethod
    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Any:
        """Never cached: a procedure may write anything."""
        conn = self._conn
        self._start_bypass(BypassReason.CALLPROC)
        return _run_write(conn, {conn._key(ALL_TABLES)}, lambda: self._raw.callproc(procname, parameters), False)

    # -- serving ------------------------------------------------------------------------
    def _start_bypass(self, reason: BypassReason, analysis: Analysis | None = None) -> None:
        """The statement runs on the database, uncached: set the status and count why."""
        status = f"bypass:{reason.value}"
        self._begin_live(status)
        stats = self._conn._cache._stats
        stats.bypasses.incr(reason.value)
        self._record(analysis, status)

    def _record(self, analysis: Analysis | None, status: str) -> None:
        """Count the call in its fingerprint's row (unless stats are off); keep the row at hand."""
        cache = self._conn._cache
        fp = None
        if analysis is not None and cache.stats_enabled:
            fp = cache._stats.record_fingerprint(analysis.fingerprint, analysis.normalized, status)
        _set(self, "_fp", fp)

    def _begin_live(self, status: str) -> None:
        _set(self, "_status", status)
        _set(self, "_live", True)
        _set(self, "_served", False)
        _set(self, "_rows", [])
        _set(self, "_pos", 0)

    def _serve(self, result: Result, status: str) -> None:
        _set(self, "_status", status)
        _set(self, "_rows", _private_copy(result.rows) if result.mutable_cells else result.rows)
        _set(self, "_pos", 0)
        _set(self, "_live", False)
        _set(self, "_served", True)
        _set(self, "_result_served", result)

    # -- execute ------------------------------------------------------------------------
    def execute(self, sql: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        if args or type(sql) is not str or (kwargs and not _RESULT_NEUTRAL_OPTIONS.issuperset(kwargs)):
            return self._execute_uncached(sql, params, args, kwargs, BypassReason.UNKNOWN)
        _set(self, "_options", kwargs)
        adapter = conn._adapter
        raw_conn = conn._raw
        in_tx = adapter.in_transaction(raw_conn)
        tx = conn._tx
        l1 = conn._l1
        # L1 fast path: no parsing, no I/O. Entries exist only for cacheable reads of this scope.
        if l1 is not None and (tx.open and tx.tracked and not tx.dirty if in_tx else not tx.open) and not conn._private:
            # The L1-hit latency histogram samples 1 call in 64: two clock reads on every hit would
            # cost more than the rest of the stats.
            sampled = not next(conn._cache._stats.l1_ticks) & 63
            started = time.perf_counter() if sampled else 0.0
            try:
                pkey = l1_params(params)
            except UnsupportedParam:
                pkey = None
            if pkey is not None:
                key = (conn._scope_id, conn._cache._tenant.get(), adapter.shape_token(self._raw), sql, pkey)
                entry = l1.get(key)
                if entry is not None and conn._l1_fresh(entry, in_tx):
                    if not in_tx and conn._reads_open_tx:
                        conn._open_tx_for_hit()
                    self._serve(entry.result, HIT_L1)
                    stats = conn._cache._stats
                    next(stats.hits["l1"])
                    fp = entry.fp
                    if fp is not None:  # None when stats are off
                        next(fp.hits)
                        if sampled:
                            stats.latency["l1"].observe(time.perf_counter() - started)
                    return self._result()
        return self._execute_slow(sql, params, in_tx)

    def _execute_uncached(self, sql: Any, params: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                          reason: BypassReason) -> Any:
        """Statements the wrapper cannot analyze (non-text SQL objects...): a write to everything."""
        conn = self._conn
        self._start_bypass(reason)
        call_args = (sql,) if params is None and not args and not kwargs else (sql, params, *args)
        self._returned = _run_write(
            conn, {conn._key(ALL_TABLES)}, lambda: self._raw.execute(*call_args, **kwargs), False
        )
        return self._result()

    def _execute_slow(self, sql: str, params: Any, in_tx: bool) -> Any:
        conn = self._conn
        cache = conn._cache
        stats = cache._stats
        analysis = conn._analyzer(sql)
        if analysis.hints.warnings:
            for _ in analysis.hints.warnings:
                next(stats.hint_warnings)
        tx = conn._tx
        if in_tx and not tx.open:
            tx.open, tx.tracked = True, False  # began outside the wrapper's sight
        elif not in_tx and tx.open:
            conn._reconcile(True, ended_by_commit=True)  # ended outside the wrapper's sight
        if analysis.kind is StatementKind.READ:
            return self._read(analysis, sql, params, in_tx)
        if analysis.kind is StatementKind.TRANSACTION:
            return self._transaction_statement(analysis, sql, params, in_tx)
        if analysis.kind in (StatementKind.SESSION, StatementKind.OTHER) and not analysis.is_write:
            return self._session_statement(analysis, sql, params, in_tx)
        return self._write(analysis, sql, params, in_tx)

    def _raw_execute(self, sql: str, params: Any) -> Any:
        conn = self._conn
        was_in_tx = conn._adapter.in_transaction(conn._raw)
        candidate = conn._stamp_candidate() if was_in_tx or not conn._adapter.autocommit(conn._raw) else None
        try:
            options = self._options
            if options:
                self._returned = self._raw.execute(sql, params, **options)
            else:
                self._returned = self._raw.execute(sql) if params is None else self._raw.execute(sql, params)
        finally:
            conn._adapter.after_statement(conn._raw)
            conn._adopt_stamp(candidate, was_in_tx)
        return self._returned

    def _result(self) -> Any:
        """What ``execute`` returns: the driver's own answer, with its cursor replaced by this one."""
        if self._served:
            style = self._conn._adapter.execute_returns
            return self if style == "cursor" else self._result_served.rowcount if style == "rowcount" else None
        returned = self._returned
        return self if returned is self._raw else returned

    def _bypass(self, analysis: Analysis, sql: str, params: Any, reason: BypassReason) -> Any:
        conn = self._conn
        stats = conn._cache._stats
        self._start_bypass(reason, analysis)
        in_tx = conn._adapter.in_transaction(conn._raw)
        started = time.perf_counter()
        try:
            self._raw_execute(sql, params)
        finally:
            elapsed = time.perf_counter() - started
            stats.latency["bypass"].observe(elapsed)
            if self._fp is not None:
                self._fp.ran(elapsed)
            conn._reconcile(in_tx, ended_by_commit=True)
        return self._result()

    def _read(self, analysis: Analysis, sql: str, params: Any, in_tx: bool) -> Any:
        conn = self._conn
        cache = conn._cache
        tx = conn._tx
        if analysis.changes_scope:
            self._bypass(analysis, sql, params, BypassReason.SESSION)
            if conn._adapter.in_transaction(conn._raw):
                # set_config(..., true) ends with the transaction; any setting made in one is
                # undone by its rollback.
                conn._scope_stale_at_tx_end = True
            conn._refresh_scope()
            return self._result()
        reason = analysis.reason
        if reason is None and not conn._adapter.supported:
            reason = BypassReason.UNKNOWN
        if reason is None and (not cache.enabled or (conn._l1 is None and not cache.l2_enabled)):
            reason = BypassReason.DISABLED
        if reason is None and conn._state.replica:
            reason = BypassReason.REPLICA
        if reason is None and conn._private:
            reason = BypassReason.TEMP_TABLE
        if reason is None and getattr(self._raw, "name", None):
            reason = BypassReason.SERVER_CURSOR  # its rows live on the server, fetched as it scrolls
        if reason is None and in_tx:
            if not tx.tracked:
                reason = BypassReason.TX_UNTRACKED
            elif tx.dirty:
                reason = BypassReason.TX_DIRTY
        isolation = conn._isolation()
        opens_tx = not in_tx and conn._adapter.reads_open_transaction(conn._raw)
        if reason is None and isolation == "serializable" and (in_tx or opens_tx):
            reason = BypassReason.TX_ISOLATION
        plan = None
        if reason is None or reason is BypassReason.VOLATILE:
            plan = conn._plan(analysis)
            if plan.calls_user_function:
                return self._call_statement(analysis, sql, params)
            reason = reason or plan.bypass
        if reason is not None or plan is None:
            return self._bypass(analysis, sql, params, reason or BypassReason.UNKNOWN)
        try:
            pkey = l1_params(params)
        except UnsupportedParam:
            return self._bypass(analysis, sql, params, BypassReason.UNKNOWN)
        if plan.row_pins is not None:
            plan = conn._pinned_plan(plan, params)
        # The first read of a REPEATABLE READ transaction runs on the database: it pins the snapshot.
        pin = ((in_tx and tx.stamp is None) or opens_tx) and isolation in _RR_LEVELS
        tx_stamp = tx.stamp if in_tx and isolation in _RR_LEVELS else None
        shape = conn._adapter.shape_token(self._raw)
        l1_key = (conn._scope_id, cache._tenant.get(), shape, sql, pkey)
        use_l2 = cache.l2_enabled and analysis.hints.tier != "l1"
        use_l1 = conn._l1 is not None and analysis.hints.tier != "l2"
        store_key = conn._store_key(self._raw, analysis, params, plan) if use_l2 else None
        coalesce = cache.config.coalesce
        flight: Flight | None = None
        # One bound for the whole call: waiting as a follower, re-elected, then for another process.
        deadline = time.monotonic() + coalesce.max_wait_ms / 1000
        if coalesce.enabled and store_key is not None and not pin and plan.ttl_s > 0:
            served, flight = self._follow(store_key, in_tx, analysis, deadline)
            if served:
                return self._result()
        if flight is None:
            return self._lookup_and_run(analysis, sql, params, in_tx, plan, pin, tx_stamp, opens_tx, l1_key,
                                        use_l1, store_key, None, deadline)
        # This thread leads the key's flight: whatever happens, the followers must hear of it.
        assert store_key is not None
        try:
            result = self._lookup_and_run(analysis, sql, params, in_tx, plan, pin, tx_stamp, opens_tx, l1_key,
                                          use_l1, store_key, flight, deadline)
        except BaseException:
            if not flight.done.is_set():
                cache._flights.finish(store_key, flight, Outcome.FAILED)
            self._release_lease(store_key, "error")
            raise
        finally:
            if flight.followers:
                cache._stats.coalesce.incr("leaders")  # a leader that others waited for
        if not flight.done.is_set():
            cache._flights.finish(store_key, flight, Outcome.UNSHARED)  # its lease: given back by then
        return result

    def _follow(self, key: str, in_tx: bool, analysis: Analysis, deadline: float) -> tuple[bool, Flight | None]:
        """Join the key's flight: lead it (the flight is returned), or wait for its leader and serve
        what it hands over if that passes the hit check now (True). (False, None): run it yourself."""
        conn = self._conn
        cache = conn._cache
        stats = cache._stats
        while True:
            flight, leading = cache._flights.join(key)
            if leading:
                return False, flight
            outcome = flight.wait(max(0.0, deadline - time.monotonic()))
            if outcome is Outcome.SHARED:
                if conn._l1_fresh(flight.entry, in_tx):
                    if not in_tx and conn._reads_open_tx:
                        conn._open_tx_for_hit()
                    self._serve(flight.entry.result, COALESCED)
                    next(stats.coalesced)
                    self._record(analysis, COALESCED)
                    return True, None
                stats.coalesce.incr("handover_refused")  # a write since the leader's stamp: run again
                return False, None
            if outcome is Outcome.FAILED and time.monotonic() < deadline:
                stats.coalesce.incr("reelections")
                continue  # its error was its own: one of the followers leads now
            if outcome is None:
                stats.coalesce.incr("timeouts")
            return False, None

    def _release_lease(self, key: str, reason: str) -> None:
        try:
            self._conn._cache.backend.release_lease(key, reason)
        except Exception:  # noqa: BLE001 - fail open: the lease expires on its own
            self._conn._cache._store_failed()

    def _wait_for_other_process(self, store_key: str, plan: _ReadPlan, tx_stamp: int | None, lookup: Lookup,
                                deadline: float) -> tuple[Lookup, str]:
        """Another process holds the key's lease: wait for its fill (woken by the store, or polling),
        looking again each time, until a fresh entry, the lease, or ``coalesce.max_wait_ms``."""
        cache = self._conn._cache
        backend = cache.backend
        lease_ms = cache.config.coalesce.lease_ms
        poll = 0.02
        l1_token = backend.l1_epoch
        while lookup.value is MISS and not lookup.leader and not lookup.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                cache._stats.coalesce.incr("timeouts")
                break
            reason = backend.wait_fill(store_key, min(poll, remaining))
            poll = min(poll * 2, 0.25)
            l1_token = backend.l1_epoch
            try:
                lookup = backend.lookup(store_key, plan.version_keys, tx_stamp, lease_ms)
            except BackendUnavailable:
                # One slow reply while another process leads: keep waiting (until max_wait_ms)
                # rather than run the query beside it.
                cache._stats.coalesce.incr("wait_lookup_failures")
                continue
            if reason == "unshared" and lookup.value is MISS:
                break  # its result could not be stored: run it here, do not queue behind another
        return lookup, l1_token

    def _lookup_and_run(self, analysis: Analysis, sql: str, params: Any, in_tx: bool, plan: _ReadPlan, pin: bool,
                        tx_stamp: int | None, opens_tx: bool, l1_key: Any, use_l1: bool, store_key: str | None,
                        flight: Flight | None, deadline: float) -> Any:
        conn = self._conn
        cache = conn._cache
        tx = conn._tx
        started = time.perf_counter()
        l1_token = cache.backend.l1_epoch  # before the lookup: see Backend.l1_epoch
        lease_ms = cache.config.coalesce.lease_ms if flight is not None else 0
        status = HIT_L2
        try:
            lookup = cache.backend.lookup(None if pin else store_key, plan.version_keys, tx_stamp, lease_ms)
            if flight is not None and lookup.value is MISS and not lookup.leader and not lookup.pending:
                assert store_key is not None
                cache._stats.coalesce.incr("cross_process_waits")
                lookup, l1_token = self._wait_for_other_process(store_key, plan, tx_stamp, lookup, deadline)
                status = COALESCED
        except Exception:  # noqa: BLE001 - fail open: the store must never fail a query
            cache._store_failed()
            result = self._bypass(analysis, sql, params, BypassReason.STORE_UNAVAILABLE)
            if flight is not None and store_key is not None:
                self._release_lease(store_key, "unshared")  # the lookup may have taken it before failing
            return result
        stats = cache._stats
        leased = flight is not None
        if lookup.value is not MISS and not pin:
            try:
                result = decode(lookup.value)  # type: ignore[arg-type]
            except CorruptEntry:
                result = None
                stats.not_filled.incr("corrupt_entry")
            if result is not None and flight is not None and store_key is not None:
                # Still fresh by the clock (also when past its TTL inside a stale-while-revalidate
                # window): the followers get it.
                cache._flights.finish(store_key, flight, Outcome.SHARED, L1Entry(
                    result, plan.version_keys, lookup.entry_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
                flight = None
            if result is not None and lookup.refresh == 1:
                stats.coalesce.incr("swr_refreshes")  # past its TTL: this caller refreshes it
                leased = True
            elif result is not None:
                if opens_tx:
                    conn._open_tx_for_hit()
                self._serve(result, status)
                self._record(analysis, status)
                if status == COALESCED:
                    next(stats.coalesced)
                else:
                    next(stats.hits["l2"])
                stats.latency["l2"].observe(time.perf_counter() - started)
                if lookup.refresh:
                    stats.coalesce.incr("swr_served")  # another caller refreshes it
                elif use_l1:
                    self._fill_l1(l1_key, result, plan, lookup.entry_stamp or lookup.stamp, l1_token,
                                  len(lookup.value))  # type: ignore[arg-type]
                return self._result()
        l3 = cache.l3
        semantic = None
        if (l3 is not None and store_key is not None and not pin and plan.ttl_s > 0 and not lookup.pending
                and (analysis.hints.semantic or cache.config.l3.all_reads)):
            semantic = self._l3_prepare(l3, sql, params, plan)
            if semantic is not None and lookup.value is MISS and self._serve_l3(
                    l3, semantic, analysis, plan, tx_stamp, opens_tx, l1_key if use_l1 else None, store_key,
                    lookup, l1_token, flight, started):
                return self._result()
        stamp = lookup.stamp
        # Miss: run on the database, deliver, then fill.
        self._begin_live(STATUS_MISS)
        next(stats.misses)
        self._record(analysis, STATUS_MISS)
        was_in_tx = in_tx
        executed = time.perf_counter()
        try:
            self._raw_execute(sql, params)
        except BaseException:
            if leased and store_key is not None and flight is None:
                self._release_lease(store_key, "error")  # a refresh that failed (a leader's: in _read)
            raise
        finally:
            now = time.perf_counter()
            stats.latency["miss"].observe(now - started)
            if self._fp is not None:
                self._fp.ran(now - executed)  # the database's share only
            now_in_tx = conn._adapter.in_transaction(conn._raw)
            if not was_in_tx and now_in_tx:
                tx.reset()
                tx.open = True
                tx.tracked = True
                tx.stamp = stamp
                tx.isolation = conn._next_isolation
                conn._next_isolation = None
            elif was_in_tx and not now_in_tx:
                conn._reconcile(True, ended_by_commit=True)
            elif was_in_tx and pin:
                tx.stamp = stamp
        fill_stamp = stamp if tx_stamp is None else min(stamp, tx_stamp)
        if pin and was_in_tx:
            fill_stamp = stamp
        fill_l1, fill_l2 = l1_key if use_l1 else None, store_key
        if plan.pinned and not conn._registered_in(plan, lookup.epoch):
            stats.not_filled.incr(NotFilledReason.DEPENDENCY_EPOCH.value)
            fill_l1 = fill_l2 = None
        try:
            shared, filled = self._capture_and_fill(analysis, plan, fill_l1, fill_l2,
                                                    fill_stamp, lookup.epoch, lookup.pending, l1_token)
        except BaseException:
            if leased and store_key is not None and flight is None:
                self._release_lease(store_key, "error")
            raise
        if flight is not None and store_key is not None and shared is not None:
            cache._flights.finish(store_key, flight, Outcome.SHARED, L1Entry(
                shared, plan.version_keys, fill_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
        if leased and not filled and store_key is not None:
            self._release_lease(store_key, "filled" if shared is not None else "unshared")
        if semantic is not None and filled and shared is not None and store_key is not None:
            l3.add(semantic[1], plan.version_keys, semantic[0], analysis.normalized, store_key)  # type: ignore[union-attr]
        return self._result()

    # -- L3 -----------------------------------------------------------------------------
    def _l3_prepare(self, l3: SemanticTier, sql: str, params: Any, plan: _ReadPlan
                    ) -> tuple[Canonical, str] | None:
        """The statement's canonical form and its L3 scope (connection scope, tenant, row shape)."""
        conn = self._conn
        try:
            pkey = l1_params(params)
        except UnsupportedParam:
            return None
        analyzer = conn._analyzer
        canonical = l3.prepare(sql, analyzer.dialect, analyzer.paramstyle, params, pkey)
        if canonical is None:
            return None
        return canonical, conn._l3_scope(plan, conn._adapter.cursor_shape(self._raw))

    def _serve_l3(self, l3: SemanticTier, semantic: tuple[Canonical, str], analysis: Analysis, plan: _ReadPlan,
                  tx_stamp: int | None, opens_tx: bool, l1_key: Any, store_key: str, lookup: Lookup,
                  l1_token: str, flight: Flight | None, started: float) -> bool:
        """Serve an equivalent earlier statement's entry, read through L2 with the freshness rule
        (so never a row L2 would not serve); True when served."""
        conn = self._conn
        cache = conn._cache
        stats = cache._stats
        canonical, scope = semantic
        threshold = analysis.hints.semantic_threshold or cache.config.l3.threshold
        proposal = l3.lookup(scope, plan.version_keys, canonical, threshold)
        if proposal is None:
            return False
        entry = proposal.entry
        try:
            found = cache.backend.lookup(entry.store_key, plan.version_keys, tx_stamp, 0)
        except Exception:  # noqa: BLE001 - fail open: the query runs on the database
            cache._store_failed()
            return False
        if found.value is MISS:
            l3.forget(entry, "pending" if found.pending else "not_fresh")
            return False
        try:
            result = decode(found.value)  # type: ignore[arg-type]
        except CorruptEntry:
            l3.forget(entry, "corrupt")
            return False
        if not proposal.identity:
            permuted = _permuted(result, proposal.columns)
            if permuted is None:
                stats.semantic.incr("rejected:row_type")
                return False
            result = permuted
        if not _names_match(result.description, canonical.outputs):
            stats.semantic.incr("rejected:names")
            return False
        if opens_tx:
            conn._open_tx_for_hit()
        self._serve(result, HIT_L3)
        self._record(analysis, HIT_L3)
        next(stats.hits["l3"])
        stats.latency["l3"].observe(time.perf_counter() - started)
        entry_stamp = found.entry_stamp or found.stamp
        if l1_key is not None:
            self._fill_l1(l1_key, result, plan, entry_stamp, l1_token, len(found.value))  # type: ignore[arg-type]
        # This text's own L2 entry: the next identical statement is an L2 hit in every process,
        # and the fill gives back a coalescing lease this call may hold.
        filled = False
        try:
            value = found.value if proposal.identity else encode(result)
            filled = cache.backend.fill(store_key, value, plan.version_keys, entry_stamp, lookup.epoch,  # type: ignore[arg-type]
                                        plan.ttl_s, plan.swr_s)
            filled = True
        except Unencodable:
            pass
        except Exception:  # noqa: BLE001 - fail open
            cache._store_failed()
        if flight is not None:
            cache._flights.finish(store_key, flight, Outcome.SHARED, L1Entry(
                result, plan.version_keys, entry_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
            if not filled:
                self._release_lease(store_key, "unshared")
        return True

    def _capture_and_fill(self, analysis: Analysis, plan: _ReadPlan, l1_key: Any, store_key: str | None,
                          stamp: int, epoch: str, pending: bool, l1_token: str) -> tuple[Result | None, bool]:
        """Fetch the rows (bounded), fill L2 and L1. Returns the result when it may be handed to
        coalesced followers (complete, no pending write, not refused by the store as stale), and
        whether the store's fill ran (it gives back the coalescing lease)."""
        filled = False
        conn = self._conn
        cache = conn._cache
        stats = cache._stats
        raw = self._raw
        if pending:
            stats.not_filled.incr(NotFilledReason.PENDING_WRITE.value)
            return None, filled
        if (l1_key is None and store_key is None) or plan.ttl_s <= 0:
            return None, filled  # nothing will be stored: leave the rows to stream from the driver
        description = raw.description
        if description is None:
            stats.not_filled.incr(NotFilledReason.NO_RESULT_SET.value)
            return None, filled
        limit = cache.config.max_result_rows
        rows = list(raw.fetchmany(limit + 1)) if limit < 1 << 30 else list(raw.fetchall())
        self._rows = rows
        self._pos = 0
        self._live = False
        if len(rows) > limit:
            stats.not_filled.incr(NotFilledReason.TOO_MANY_ROWS.value)
            return None, filled  # the buffered prefix is served, the tail streams from the database
        rowcount = raw.rowcount
        lastrowid = getattr(raw, "lastrowid", None)
        self._result_served = Result(description, rows, rowcount, lastrowid)
        self._served = True
        mutable = bool(rows) and _has_mutable_parts(rows)
        result = Result(description, rows, rowcount, lastrowid, mutable)
        if mutable:
            # The caller may mutate what it was handed; keep a private copy.
            try:
                result = Result(description, _private_copy(rows), rowcount, lastrowid, True)
            except Exception:  # noqa: BLE001 - rows that cannot be copied cannot be cached safely
                stats.not_filled.incr(NotFilledReason.UNENCODABLE.value)
                return None, filled
        size = 0
        shareable = True
        encoded: bytes | None = None
        if store_key is not None:
            try:
                encoded = encode(result)
            except Unencodable:
                stats.not_filled.incr(NotFilledReason.UNENCODABLE.value)
            if encoded is not None and len(encoded) > cache.config.max_result_bytes:
                stats.not_filled.incr(NotFilledReason.TOO_MANY_BYTES.value)
                return None, filled
            if encoded is not None:
                size = len(encoded)
                filled = True
                try:
                    if cache.backend.fill(store_key, encoded, plan.version_keys, stamp, epoch, plan.ttl_s, plan.swr_s):
                        next(stats.fills["l2"])
                    else:
                        stats.not_filled.incr(NotFilledReason.STALE_STAMP.value)
                        shareable = False
                except Exception:  # noqa: BLE001 - fail open
                    cache._store_failed()
        if l1_key is not None:
            if not size:
                size = _estimate_size(rows)
                if size > cache.config.max_result_bytes:
                    stats.not_filled.incr(NotFilledReason.TOO_MANY_BYTES.value)
                    return None, filled
            self._fill_l1(l1_key, result, plan, stamp, l1_token, size)
        return (result if shareable else None), filled

    def _fill_l1(self, key: Any, result: Result, plan: _ReadPlan, stamp: int, epoch: str, size: int) -> None:
        conn = self._conn
        l1 = conn._l1
        if l1 is None or plan.ttl_s <= 0 or epoch != conn._cache.backend.l1_epoch:
            return  # no lease, or the mirror was resynced since the lookup
        versions = conn._cache.mirror_versions
        for k in plan.version_keys:
            version = versions.get(k)
            if version is None or version > stamp:
                return  # a write landed since the stamp: this result may already be old
        l1[key] = L1Entry(result, plan.version_keys, stamp, epoch, time.monotonic() + plan.ttl_s, size + 200,
                          self._fp)
        next(conn._cache._stats.fills["l1"])

    def _call_statement(self, analysis: Analysis, sql: str, params: Any) -> Any:
        """A read that calls a user function which may write (or set_config): a write to everything."""
        conn = self._conn
        self._start_bypass(BypassReason.VOLATILE, analysis)
        _run_write(conn, {conn._key(ALL_TABLES)}, lambda: self._raw_execute(sql, params), False)
        if conn._adapter.in_transaction(conn._raw):
            conn._scope_stale_at_tx_end = True
        conn._refresh_scope()
        return self._result()

    def _transaction_statement(self, analysis: Analysis, sql: str, params: Any, in_tx: bool) -> Any:
        conn = self._conn
        tx = conn._tx
        action = analysis.tx_action
        self._start_bypass(BypassReason.SESSION)
        candidate = conn._stamp_candidate(analysis.isolation) if action is TxAction.BEGIN else None
        if action is TxAction.BEGIN and in_tx and analysis.implicit_commit:
            candidate = conn._cache.backend.current_stamp()[1]
        if action is TxAction.COMMIT or (action is TxAction.BEGIN and analysis.implicit_commit and in_tx):
            conn._end_transaction(lambda: self._raw_execute(sql, params), committing=True)
        elif action is TxAction.ROLLBACK:
            conn._end_transaction(lambda: self._raw_execute(sql, params), committing=False)
        else:
            self._raw_execute(sql, params)
        if action is TxAction.BEGIN and in_tx and not analysis.implicit_commit:
            pass  # PostgreSQL: BEGIN inside a transaction is a warning; the transaction (and what it wrote) goes on
        elif action is TxAction.BEGIN:
            tx.reset()
            tx.open = True
            tx.tracked = True
            tx.stamp = candidate  # taken before BEGIN: WITH CONSISTENT SNAPSHOT starts it there
            tx.isolation = analysis.isolation or conn._next_isolation
            conn._next_isolation = None
        return self._result()

    def _session_statement(self, analysis: Analysis, sql: str, params: Any, in_tx: bool) -> Any:
        conn = self._conn
        if analysis.implicit_commit and in_tx:
            # MySQL: LOCK TABLES, SET autocommit=1... commit the open transaction first.
            self._start_bypass(analysis.reason or BypassReason.SESSION)
            conn._end_transaction(lambda: self._raw_execute(sql, params), committing=True)
        else:
            self._bypass(analysis, sql, params, analysis.reason or BypassReason.SESSION)
        if analysis.sets_autocommit is not None:
            conn._adapter.note_autocommit(conn._raw, analysis.sets_autocommit)
            conn._reads_open_tx = conn._adapter.reads_open_transaction(conn._raw)
        upper = analysis.sql.upper()
        if analysis.isolation is not None and "TRANSACTION" in upper and not (
            "SESSION" in upper or "GLOBAL" in upper or "CHARACTERISTICS" in upper
        ):
            # SET TRANSACTION: this transaction's level inside one, the next one's outside.
            if conn._adapter.in_transaction(conn._raw) and conn._tx.open:
                conn._tx.isolation = analysis.isolation
            else:
                conn._next_isolation = analysis.isolation
        if analysis.changes_scope:
            if conn._adapter.in_transaction(conn._raw):
                conn._scope_stale_at_tx_end = True  # SET LOCAL ends with the transaction
            conn._refresh_scope()
        return self._result()

    def _write(self, analysis: Analysis, sql: str, params: Any, in_tx: bool) -> Any:
        conn = self._conn
        self._start_bypass(analysis.reason or BypassReason.WRITE, analysis)
        keys = conn._write_keys(analysis)
        if analysis.creates_temp and not conn._private:
            conn._private = True  # reads may now see this connection's own temp table
            conn._refresh_scope()
        if analysis.implicit_commit and in_tx:
            keys |= conn._tx.written
        action: Callable[[], Any] = lambda: self._raw_execute(sql, params)  # noqa: E731
        if conn._row_level and analysis.kind is StatementKind.WRITE and not analysis.implicit_commit:
            action = self._row_level_write(analysis, sql, params, keys, in_tx) or action
        _run_write(conn, keys, action, analysis.implicit_commit, analysis.kind is StatementKind.WRITE)
        if analysis.kind in (StatementKind.DDL, StatementKind.UNKNOWN, StatementKind.CALL):
            conn._catalog_changed()
        return self._result()

    def _row_level_write(self, analysis: Analysis, sql: str, params: Any, keys: set[str], in_tx: bool
                         ) -> Callable[[], Any] | None:
        """For a write whose rows can be pinned down: replace the table's key in ``keys`` by its
        "any" bucket and return the action that runs the write and adds the buckets of the rows
        it touched, old and new values (see querycache/rows.py). None: table level, as before.

        An UPDATE/DELETE needs the old values of the columns readers pin: read with the write's
        own WHERE, FOR UPDATE, in one transaction with the write (this wrapper opens and commits
        it on an autocommit connection; inside the application's transaction it runs under a
        savepoint). Its row count must equal the write's, else the whole table is bumped."""
        from querycache.rows import MAX_VALUES_PER_TABLE, bucket_values, resolve, write_plan

        conn = self._conn
        stats = conn._cache._stats.row_level
        plan = write_plan(sql, conn._analyzer.dialect, conn._analyzer.paramstyle)
        if plan is None:
            stats.incr("writes:table:statement")
            return None
        table_key = conn._key(plan.table)
        if keys != {table_key}:
            stats.incr("writes:table:dependents")  # views, triggers, cascades: table level
            return None
        if params is not None and not isinstance(params, (list, tuple)):
            stats.incr("writes:table:params")
            return None
        backend: Any = conn._cache.backend
        try:
            columns, seen = backend.dependencies(table_key)
        except Exception:  # noqa: BLE001 - fail open: the whole table
            conn._cache._store_failed()
            stats.incr("writes:table:store")
            return None
        ordered = sorted(columns)
        new_values: list[Any] = []
        try:
            if plan.kind == "insert":
                for column in ordered:
                    if column not in plan.insert_columns:
                        raise LookupError("a pinned column takes its default")
                    index = plan.insert_columns.index(column)
                    for row in plan.insert_rows:
                        source = row[index]
                        if source is None:
                            raise LookupError("an expression inserted into a pinned column")
                        new_values.append((column, resolve(source, params)))
            elif plan.kind == "update":
                for column in ordered:
                    if column in plan.assigned:
                        source = plan.assigned[column]
                        if source is None:
                            raise LookupError("a pinned column set to an expression")
                        new_values.append((column, resolve(source, params)))
        except (LookupError, IndexError, TypeError):
            stats.incr("writes:table:values")
            return None
        pre_read = plan.kind != "insert" and bool(ordered)
        raw = conn._raw
        adapter = conn._adapter
        if pre_read:
            if plan.where_sql is None:
                stats.incr("writes:table:no_where")
                return None
            if adapter.dialect != "postgres" and conn._isolation() not in ("repeatable read", "serializable"):
                stats.incr("writes:table:isolation")  # no gap locks: a phantom could slip in
                return None
            generated = conn._generated_columns(plan.table) if plan.kind == "update" else frozenset()
            if "*" in generated or set(ordered) & generated:
                stats.incr("writes:table:generated_column")  # its new value is computed by the database
                return None
        # Autocommit: the wrapper opens a transaction for the pre-read and the write. Inside the
        # application's transaction (or one the driver opens), the pre-read runs under a savepoint,
        # so that its failure cannot abort that transaction.
        own_transaction = pre_read and not in_tx and adapter.autocommit(raw)
        any_key = table_key + _BUCKET + "*"
        keys.discard(table_key)
        keys.add(any_key)

        def buckets(pairs: list[tuple[str, Any]]) -> set[str] | None:
            out: set[str] = set()
            for column, value in pairs:
                found = bucket_values(value, adapter.dialect, False)
                if found is None:
                    return None
                out.update(f"{table_key}{_BUCKET}{column}={bucket}" for bucket in found)
            return out

        def escalate(reason: str) -> None:
            keys.add(table_key)
            stats.incr(f"escalated:{reason}")
            if conn._tx.open:
                conn._tx.written.add(table_key)

        def action() -> Any:
            footprint = buckets(new_values)
            cursor = raw.cursor() if pre_read else None
            old_rows: list[Any] = []
            try:
                if cursor is not None:
                    select = f"SELECT {', '.join(ordered)} FROM {plan.target_sql} WHERE {plan.where_sql} FOR UPDATE"
                    bound = {f"qcp{i}": v for i, v in enumerate(params or ())}
                    try:
                        if own_transaction:
                            cursor.execute("BEGIN")
                            try:
                                old_rows = _fetch(cursor, select, bound)
                            except Exception:
                                _quietly(cursor, "ROLLBACK")
                                raise
                        else:
                            old_rows = _under_savepoint(cursor, "querycache_row_level",
                                                        lambda: _fetch(cursor, select, bound))
                    except Exception:  # noqa: BLE001 - the footprint is unknown: the whole table
                        cursor.close()
                        cursor = None
                        footprint = None
                if cursor is not None and own_transaction:  # invisible to the wrapper's bookkeeping
                    options = self._options
                    self._returned = (self._raw.execute(sql, params, **options) if options else
                                      self._raw.execute(sql) if params is None else self._raw.execute(sql, params))
                    result = self._returned
                else:
                    result = self._raw_execute(sql, params)
                if cursor is not None and self._raw.rowcount != len(old_rows):
                    footprint = None  # another row than those read (or none of them): table level
                if cursor is not None and own_transaction:
                    cursor.execute("COMMIT")
            except BaseException:
                if cursor is not None and own_transaction:
                    _quietly(cursor, "ROLLBACK")  # the write's own error is the one to raise
                raise
            finally:
                if cursor is not None:
                    cursor.close()
            if footprint is not None:
                old = buckets([(c, row[i]) for row in old_rows for i, c in enumerate(ordered)])
                footprint = None if old is None else footprint | old
            if footprint is None or len(footprint) > 4 * MAX_VALUES_PER_TABLE:
                escalate("footprint")
            else:
                keys.update(footprint)
                stats.incr("writes:rows")
                if conn._tx.open:
                    conn._tx.written |= footprint
                    conn._tx.row_checks.append((table_key, seen))
            if not conn._tx.open and conn._changed_dependencies([(table_key, seen)]):
                escalate("dependency_changed")  # committed: checked here, before phase 2
            return result

        return action

    def executemany(self, sql: Any, seq_of_params: Any, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        if type(sql) is not str or args or kwargs:
            keys = {conn._key(ALL_TABLES)}
            self._start_bypass(BypassReason.UNKNOWN)
        else:
            analysis = conn._analyzer(sql)
            reason = analysis.reason if analysis.kind is not StatementKind.READ else BypassReason.WRITE
            self._start_bypass(reason or BypassReason.WRITE)
            # A read run many times has no single result to cache; it still ran on the database.
            keys = conn._write_keys(analysis) if analysis.kind is not StatementKind.READ else set()
        def action() -> Any:
            try:
                return self._raw.executemany(sql, seq_of_params, *args, **kwargs)
            finally:
                conn._adapter.after_statement(conn._raw)

        self._returned = _run_write(conn, keys, action, False)
        return self._result()

    @_DriverMethod
    def stream(self, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """psycopg ``Cursor.stream``: never cached; a write is tracked like ``execute``."""
        conn = self._conn
        keys = _statement_write_keys(conn, query, reads_are_writes=False)
        if not keys:
            yield from self._raw.stream(query, params, *args, **kwargs)
            return
        rows = _run_write(conn, keys, lambda: list(self._raw.stream(query, params, *args, **kwargs)), False)
        yield from rows

    # -- psycopg / psycopg2 extras that write ------------------------------------------------
    @_DriverMethod
    def copy(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """psycopg ``Cursor.copy``: COPY FROM writes its table; tracked like any write."""
        conn = self._conn
        keys = _statement_write_keys(conn, statement)
        return _CopyBlock(conn, keys, self._raw.copy(statement, *args, **kwargs))

    @_DriverMethod
    def copy_expert(self, sql: Any, file: Any, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        keys = _statement_write_keys(conn, sql)
        return _run_write(conn, keys, lambda: self._raw.copy_expert(sql, file, *args, **kwargs), False)

    @_DriverMethod
    def copy_from(self, file: Any, table: str, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        keys = conn._write_keys(conn._analyzer(f"DELETE FROM {table}"))
        return _run_write(conn, keys, lambda: self._raw.copy_from(file, table, *args, **kwargs), False)


def _statement_write_keys(conn: CachedConnection, statement: Any, reads_are_writes: bool = True) -> set[str]:
    """What a statement sent past ``execute`` may write (everything, when it cannot be read)."""
    if isinstance(statement, str):
        analysis = conn._analyzer(statement)
        if analysis.kind in (StatementKind.OTHER, StatementKind.READ) and not analysis.is_write:
            if analysis.kind is StatementKind.READ and not reads_are_writes:
                catalog, _ = conn._catalog()
                if analysis.functions & catalog.user_volatile_functions or not catalog.complete:
                    return {conn._key(ALL_TABLES)}
            return set()  # COPY ... TO, or a read
        if analysis.kind in (StatementKind.SESSION, StatementKind.TRANSACTION):
            return {conn._key(ALL_TABLES)}
        return conn._write_keys(analysis)
    return {conn._key(ALL_TABLES)}


def _run_write(conn: CachedConnection, keys: set[str], action: Callable[[], Any], implicit_commit: bool,
               is_dml: bool = True) -> Any:
    """Run a statement that may write ``keys``: published at commit inside a transaction, around
    the statement when it autocommits."""
    adapter = conn._adapter
    raw = conn._raw
    tx = conn._tx
    in_tx = adapter.in_transaction(raw)
    if not implicit_commit and (in_tx or adapter.write_opens_transaction(raw, is_dml)):
        if not in_tx:
            tx.reset()
            tx.open = True
        tx.dirty = True
        tx.written |= keys
        try:
            return action()
        finally:
            if not adapter.in_transaction(raw):
                # It autocommitted after all (or ended the transaction): publish now.
                conn._reconcile(True, ended_by_commit=True)
    try:
        # ``keys`` itself, not a copy: a row-level write adds the buckets it touched while it runs.
        return conn._publish_around(keys | tx.written if implicit_commit else keys, action)
    finally:
        if implicit_commit:
            adapter.after_transaction_end(raw)
            conn._tx_ended()
        else:
            tx.reset()
        if adapter.in_transaction(raw):
            tx.open = True
            tx.dirty = True
            tx.written |= keys


class _CopyBlock:
    def __init__(self, conn: CachedConnection, keys: set[str], block: Any) -> None:
        self._conn = conn
        self._keys = keys
        self._block = block
        self._token = uuid.uuid4().hex
        self._autocommit = False

    def __enter__(self) -> Any:
        conn = self._conn
        self._autocommit = not conn._adapter.in_transaction(conn._raw)
        if self._keys and self._autocommit:
            conn._cache._begin_write(sorted(self._keys), self._token)
        return self._block.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        conn = self._conn
        try:
            return self._block.__exit__(*exc)
        finally:
            if self._keys:
                if self._autocommit:
                    conn._cache._end_write(sorted(self._keys), self._token)
                    conn._count_invalidations(self._keys)
                    conn._cache._after_publish()
                if conn._adapter.in_transaction(conn._raw):
                    conn._tx.open = True
                    conn._tx.dirty = True
                    conn._tx.written |= self._keys


def _has_mutable_parts(rows: list[Any]) -> bool:
    """Whether a caller could change a cached result by mutating the rows it was handed."""
    row_type = type(rows[0])
    if issubclass(row_type, tuple) or (row_type.__name__ == "Row" and row_type.__module__ == "sqlite3"):
        return not _MUTABLE.isdisjoint(map(type, chain.from_iterable(rows)))
    return True


def _private_copy(rows: list[Any]) -> list[Any]:
    """A deep copy; memoryview cells (psycopg2's bytea) are copied by value, deepcopy cannot."""
    memo: dict[int, Any] = {}
    for row in rows:
        for value in (row.values() if isinstance(row, dict) else row):
            if type(value) is memoryview:
                memo[id(value)] = memoryview(value.tobytes())
    return copy.deepcopy(rows, memo)


def _estimate_size(rows: list[Any]) -> int:
    size = 64
    for row in rows:
        size += 56
        for value in (row.values() if isinstance(row, dict) else row):
            size += len(value) + 40 if type(value) in (str, bytes) else 24
    return size


def _fetch(cursor: Any, sql: str, params: Any) -> list[Any]:
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def _quietly(cursor: Any, statement: str) -> bool:
    """Run ``statement``; False if it failed (e.g. the transaction was already aborted)."""
    try:
        cursor.execute(statement)
    except Exception:  # noqa: BLE001 - the caller's own error is the one to raise
        return False
    return True


def _under_savepoint(cursor: Any, name: str, run: Callable[[], list[Any]]) -> list[Any]:
    """``run()`` inside the application's transaction, under a savepoint: if it fails, the
    transaction is returned to where it was (on PostgreSQL an error would otherwise abort it)."""
    cursor.execute(f"SAVEPOINT {name}")
    try:
        rows = run()
    except Exception:
        if _quietly(cursor, f"ROLLBACK TO SAVEPOINT {name}"):
            _quietly(cursor, f"RELEASE SAVEPOINT {name}")
        raise
    cursor.execute(f"RELEASE SAVEPOINT {name}")
    return rows


def _permuted(result: Result, columns: tuple[int, ...]) -> Result | None:
    """``result`` with its columns in the order ``columns`` gives (rows of plain tuples only)."""
    if result.description is None or any(type(row) is not tuple for row in result.rows):
        return None
    description = tuple(result.description[j] for j in columns)
    rows = [tuple(row[j] for j in columns) for row in result.rows]
    return Result(description, rows, result.rowcount, result.lastrowid, result.mutable_cells)


def _names_match(description: Sequence[Any] | None, outputs: tuple[Output, ...]) -> bool:
    """A last check of an L3 answer: each output column whose name the statement fixes has it."""
    if any(output.name == "*" for output in outputs):
        return description is not None  # a * expands to columns the statement does not name
    if description is None or len(description) != len(outputs):
        return not outputs and description is None
    for column, output in zip(description, outputs, strict=True):
        if output.name is not None and output.name != "*" and str(column[0]).lower() != output.name.lower():
            return False
    return True
