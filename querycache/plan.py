"""The plan of a cacheable read: its version keys resolved against the catalog, or why it is
not cached. Planned once per text and catalog version; row-level pins are resolved per
execution, since their bucket keys depend on the parameters (docs/freshness.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from querycache.analysis import ALL_TABLES, CATALOG_CHANGES, CLOCK_ARITHMETIC, CLOCK_FUNCTIONS, Analysis
from querycache.drivers.base import Catalog
from querycache.invalidation.keys import any_rows_key, group_key
from querycache.keys import l2_key
from querycache.status import BypassReason

if TYPE_CHECKING:
    from querycache.invalidation.rows import Source
    from querycache.l1 import L1Key
    from querycache.session import Session

_MAX_PLANS = 4096


class ReadPlan:
    """A cacheable read resolved against the catalog: its version keys, or why it is not cached."""

    __slots__ = ("bypass", "calls_user_function", "max_stale_s", "pinned", "row_pins", "scope_key", "swr_s",
                 "ttl_s", "version_keys")

    def __init__(self, version_keys: tuple[str, ...], bypass: BypassReason | None, ttl_s: float,
                 calls_user_function: bool = False, swr_s: float = 0.0,
                 row_pins: dict[str, dict[str, tuple[Source, ...]]] | None = None,
                 pinned: tuple[tuple[str, str], ...] = (), scope_key: str = "", max_stale_s: float = 0.0) -> None:
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
        # Bounded staleness: how long after a write its answer may still be served (0: strict).
        self.max_stale_s = max_stale_s
        # It calls a user function that may write or change the session: run it as a call.
        self.calls_user_function = calls_user_function


def plan_read(session: Session, analysis: Analysis) -> ReadPlan:
    """The read's plan in this connection (memoized per text until the catalog changes)."""
    plan = session.plans.get(analysis.sql)
    catalog, version = session.catalog()
    if plan is not None and version == session.catalog_version:
        return plan
    if version != session.catalog_version:
        session.plans.clear()
        session.catalog_version = version
        if catalog.row_security:
            # Every read of this connection's L1 is scoped by what any policy reads.
            session.track_row_security(catalog.row_security_settings)
    context = session.context
    bypass: BypassReason | None = None
    if not catalog.complete:
        bypass = BypassReason.UNKNOWN
    elif analysis.tables_read - catalog.relations - set(analysis.hints.tables):
        # Perhaps created since the catalog was read (by another client): read it again, at
        # most once a second, and cache nothing that is still unknown.
        if context.reload_stale_catalog(session.database_id):
            return plan_read(session, analysis)
        bypass = BypassReason.UNKNOWN_RELATION
    elif (analysis.functions - CLOCK_FUNCTIONS - CLOCK_ARITHMETIC if analysis.hints.volatile == "time"
          else analysis.functions) & catalog.volatile_functions:
        bypass = BypassReason.VOLATILE
    elif catalog.deterministic_functions is not None and analysis.dialect == "sqlite" and (
        analysis.user_functions - catalog.deterministic_functions
    ):
        bypass = BypassReason.VOLATILE
    tables = catalog.expand_reads(analysis.tables_read)
    scope_key, secured_bypass = session.row_security_scope(catalog, tables, analysis)
    bypass = bypass or secured_bypass
    key = session.version_key
    keys = [key(ALL_TABLES), key(CATALOG_CHANGES)]
    keys += sorted(key(t) for t in tables)
    keys += sorted(group_key(context.namespace, g) for g in analysis.hints.groups)
    row_pins: dict[str, dict[str, tuple[Source, ...]]] = {}
    if session.row_level and bypass is None:
        row_pins = _read_pins(session, analysis, tables, catalog)
    # Tables not pinned depend on their "any" bucket, which every row-level write to them bumps:
    # also with row-level invalidation off here, since another process (or cache) sharing the
    # store may have it on and bump only "any" and buckets, never the table's own key.
    keys += sorted(any_rows_key(key(t)) for t in tables if t not in row_pins)
    calls = bool(analysis.functions & catalog.user_volatile_functions)
    ttl_s = context.ttl_for(analysis, tables)
    plan = ReadPlan(tuple(keys), BypassReason.VOLATILE if calls else bypass, ttl_s, calls,
                    context.swr_for(analysis, tables, ttl_s), row_pins or None, scope_key=scope_key,
                    max_stale_s=context.max_stale_for(analysis, tables, ttl_s))
    if len(session.plans) > _MAX_PLANS:
        session.plans.clear()
    if bypass is not BypassReason.UNKNOWN_RELATION:  # those are looked up again next time
        session.plans[analysis.sql] = plan
    return plan


def _read_pins(session: Session, analysis: Analysis, tables: set[str], catalog: Catalog
               ) -> dict[str, dict[str, tuple[Source, ...]]]:
    """The read's pinned tables: only real tables it names itself (a view's columns say
    nothing about its base tables' rows)."""
    from querycache.invalidation.rows import read_pins

    pins = read_pins(analysis.sql, session.analyzer.dialect, session.analyzer.paramstyle)
    if pins is None:
        return {}
    return {t: columns for t, columns in pins.tables.items()
            if columns and t in tables and catalog.expand_reads({t}) == {t}}


def _table_buckets(session: Session, table_key: str, columns: dict[str, tuple[Source, ...]], params: Any,
                   pinned: list[tuple[str, str]]) -> list[str] | None:
    """The bucket keys of one pinned table for these parameters, registering each pinned column
    (appended to ``pinned``); None when a value has no bucket or a registration failed."""
    from querycache.invalidation.rows import bucket_keys, resolve

    context = session.context
    registry = context.row_level
    registered = context.row_dependencies
    buckets: list[str] = []
    for column, sources in columns.items():
        for source in sources:
            try:
                found = bucket_keys(table_key, column, resolve(source, params), session.analyzer.dialect, True)
            except (KeyError, IndexError, TypeError):
                found = None
            if found is None:
                return None
            buckets += found
        if (table_key, column) not in registered:
            try:
                assert registry is not None  # row-level plans exist only with a registry
                epoch = registry.register_dependency(table_key, column)
            except Exception:  # noqa: BLE001 - fail open: unregistered, the table is read as "any"
                context.store_failed()
                return None
            registered[(table_key, column)] = epoch
        pinned.append((table_key, column))
    return buckets


def pinned_plan(session: Session, plan: ReadPlan, params: Any) -> ReadPlan:
    """``plan`` with the bucket keys of this execution's values (a value that has no bucket
    makes its table depend on "any"); registers each pinned column before the lookup takes
    its stamp, so that a writer computing a footprint from then on bumps its buckets."""
    assert plan.row_pins is not None
    keys = list(plan.version_keys)
    pinned: list[tuple[str, str]] = []
    stats = session.context.stats.row_level
    for table, columns in plan.row_pins.items():
        table_key = session.version_key(table)
        buckets = _table_buckets(session, table_key, columns, params, pinned)
        if buckets is None:
            keys.append(any_rows_key(table_key))
            stats.incr("reads:any")
        else:
            keys += sorted(set(buckets))
            stats.incr("reads:pinned")
    return ReadPlan(tuple(keys), plan.bypass, plan.ttl_s, plan.calls_user_function, plan.swr_s,
                    pinned=tuple(pinned), scope_key=plan.scope_key, max_stale_s=plan.max_stale_s)


def registered_in(session: Session, plan: ReadPlan, epoch: str) -> bool:
    """Whether every column ``plan`` pins was registered in the store's incarnation ``epoch``.
    A registration made before a restart or FLUSHALL is gone with it: writers would bump only
    "any", so the answer must not be filled; the registration is forgotten and made again."""
    registered = session.context.row_dependencies
    stale = [pin for pin in plan.pinned if registered.get(pin) != epoch]
    for pin in stale:
        registered.pop(pin, None)
    return not stale


def moved_past(versions: Mapping[str, int], version_keys: Sequence[str], stamp: int) -> bool:
    """Whether this process knows a version of ``version_keys`` above ``stamp`` (or none at all)."""
    for k in version_keys:
        version = versions.get(k)
        if version is None or version > stamp:
            return True
    return False


# -- the keys of a read's shared entries ---------------------------------------------------------
def store_key(session: Session, raw_cursor: Any, analysis: Analysis, params: Any, plan: ReadPlan) -> str:
    """The statement's L2 key in this connection's scope and the current tenant."""
    context = session.context
    text = analysis.sql if analysis.names_from_text else analysis.normalized
    return l2_key(context.namespace, plan.scope_key, context.tenant.get(), session.adapter.cursor_shape(raw_cursor),
                  text, params, plan.version_keys)


_STORE_KEYS_KEPT = 4096


def memo_store_key(session: Session, raw_cursor: Any, analysis: Analysis, params: Any, plan: ReadPlan,
                   l1_key: L1Key) -> str:
    """``store_key``, remembered per connection: every part of it is a function of the L1 key (the
    SQL text, hence its analysis; the parameters' typed key; the shape token, hence the cursor's
    shape; the tenant, here with its type, whose repr the key hashes) and of the plan's scope and
    version keys, which are part of the memo's key."""
    memo = session.store_keys
    memo_key = (l1_key, type(l1_key[1]), plan.scope_key, plan.version_keys)
    key = memo.get(memo_key)
    if key is None:
        key = store_key(session, raw_cursor, analysis, params, plan)
        if len(memo) >= _STORE_KEYS_KEPT:
            memo.clear()
        memo[memo_key] = key
    return key


def l3_scope(session: Session, plan: ReadPlan, shape: str) -> str:
    """L3's scope: one FAISS index per (namespace, the read's scope, tenant, row shape)."""
    context = session.context
    return "\x1f".join((context.namespace, plan.scope_key, repr(context.tenant.get()), shape))
