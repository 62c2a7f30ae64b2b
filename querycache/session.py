"""Session: the cache's side of one wrapped connection, shared by the connection and its cursors.

It holds what the wrapper knows about the connection (driver adapter, scope, catalog plans,
L1, the transaction tracker) and does what both PEP 249 surfaces need: re-read the scope,
take transaction stamps, run and publish writes, end transactions. Transaction state is read
from the driver after every call, never inferred from method names (docs/freshness.md,
"Transactions").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from querycache.analysis import ALL_TABLES, CATALOG_CHANGES, Analysis, StatementKind
from querycache.drivers.base import Catalog, DriverAdapter, ServerState
from querycache.errors import BackendUnavailable
from querycache.invalidation import keys as version_keys
from querycache.l1 import L1Cache
from querycache.refresh import Opened, Refresher
from querycache.status import BypassReason
from querycache.transaction import RR_LEVELS, TransactionTracker

if TYPE_CHECKING:
    from querycache.context import CacheContext
    from querycache.maintain.writes import StatementMaintenance
    from querycache.plan import ReadPlan

T = TypeVar("T")


class Session:
    """One wrapped connection's cache state. Its attributes are read by the read and write paths."""

    def __init__(self, context: CacheContext, raw: Any, adapter: DriverAdapter, database_id: str | None) -> None:
        self.context = context
        self.raw = raw
        self.adapter = adapter
        self.analyzer = context.analyzer_for(adapter.dialect, adapter.paramstyle)
        config = context.config
        stats = context.stats
        self.l1: L1Cache | None = (
            L1Cache(config.l1.max_entries, config.l1.max_bytes, lambda: stats.evictions.incr("l1"))
            if config.l1.enabled else None
        )
        self.tx = TransactionTracker()
        # wrap(..., refresh_connect=): opens a connection of the refresh pool's own (docs/freshness.md).
        self.refresh_opener: Callable[[], Opened] | None = None
        self._refresher: Refresher | None = None
        self._plain_shape: str | None = None
        if context.maintain is not None:
            self.tx.release_lease = context.maintain.release_maintainer
        self.publisher = context.publisher
        # A temp table was created: reads may see it, so they get a scope of this connection's own.
        self.temp_scoped = False
        self.plans: dict[str, ReadPlan] = {}
        # L2 keys of reads by their L1 key, scope key and version keys (read.memo_store_key).
        self.store_keys: dict[tuple[object, ...], str] = {}
        self.catalog_version = -1
        self.closed = False
        self.scope_stale_at_tx_end = False
        self.fixed_database_id = database_id
        self.state = ServerState("", (), "unknown", False)
        self.scope_id = 0
        self.scope_key = ""
        # Settings row-level security policies read (None: none known): read with the scope, part of
        # the L1 scope and of the shared scope of reads of tables with policies.
        self.row_security_settings: tuple[str, ...] | None = None
        self.row_security_scope_key = ""
        # scope.policy_settings, folded once: what opaque policies read, by table.
        self.declared_policies = {table.lower(): frozenset(s.lower() for s in names)
                                  for table, names in config.scope.policy_settings.items()}
        self.database_id = ""
        self.version_prefix = ""
        was_in_tx = adapter.in_transaction(raw)
        self.reads_open_tx = adapter.reads_open_transaction(raw)
        self.row_level = (config.invalidation.row_level and adapter.dialect in ("postgres", "mysql", "mariadb")
                          and context.row_level is not None)
        self.refresh_scope()
        if was_in_tx:
            # Wrapped while a transaction was open: we did not see it start, so no hits, no fills.
            self.tx.began_unseen()

    @property
    def version_namespace(self) -> str:
        """What this connection's table versions are keyed by (see ServerState.version_namespace)."""
        return self.version_prefix[:-1]

    def version_key(self, table: str) -> str:
        return version_keys.table_key(self.version_prefix, table)

    def refresher(self) -> Refresher | None:
        """The background refreshes of this connection's reads; None without ``refresh_connect``."""
        if self.refresh_opener is None:
            return None
        if self._refresher is None:
            self._refresher = Refresher(self.context.refresh_pool(), self.refresh_opener)
        return self._refresher

    def plain_cursor_shape(self) -> str:
        """The row shape of ``raw.cursor()`` (what a background refresh reads with)."""
        if self._plain_shape is None:
            cursor = self.raw.cursor()
            try:
                self._plain_shape = self.adapter.cursor_shape(cursor)
            finally:
                cursor.close()
        return self._plain_shape

    def forget_refresher(self) -> None:
        """After fork(): its refresher belongs to the parent's pool."""
        self._refresher = None

    def in_transaction(self) -> bool:
        return self.adapter.in_transaction(self.raw)

    # -- scope and catalog --------------------------------------------------------------
    def refresh_scope(self) -> None:
        """Read the scope from the server again (wrap time, after SET, USE, ...)."""
        context = self.context
        settings = context.config.scope.settings
        secured = self.row_security_settings
        state = self.internal(lambda: self.adapter.server_state(self.raw, settings, secured))
        database_id = self.fixed_database_id or state.database_id
        self.state = state
        self.database_id = database_id
        self.version_prefix = version_keys.version_prefix(
            self.fixed_database_id or state.version_namespace or database_id)
        scope: tuple[Any, ...] = (database_id, state.scope, self.temp_scoped and id(self))
        self.scope_id, self.scope_key = context.intern_scope(scope)
        if secured is not None:
            # L1 is this connection's own: one scope id, the row-level one, serves every read.
            self.scope_id, self.row_security_scope_key = context.intern_scope((*scope, state.row_security_scope))
        self.plans.clear()

    def track_row_security(self, settings: Iterable[str]) -> bool:
        """Read ``settings`` with the scope from now on (one query when one is new). False when the
        scope could not be read again: reads that depend on them are then not cached."""
        known = self.row_security_settings
        if known is not None and set(settings) <= set(known):
            return True
        self.row_security_settings = tuple(sorted({*settings, *(known or ())}))
        try:
            self.refresh_scope()
        except Exception:  # noqa: BLE001 - fail open: the read runs uncached, with its own outcome
            self.row_security_settings = known
            return False
        return True

    def row_security_scope(self, catalog: Catalog, tables: set[str], analysis: Analysis
                           ) -> tuple[str, BypassReason | None]:
        """The shared scope of a read of ``tables`` and why it is not cached, if it is not: a table
        whose policies the analyzer cannot see into needs its settings declared (docs/isolation.md)."""
        secured = catalog.row_security_of(tables)
        hinted = analysis.hints.settings
        if not secured and not hinted:
            return self.scope_key, None
        declared = self.declared_policies
        needed = set(hinted)
        for found in secured:
            if found.opaque and found.table not in declared and not hinted:
                return self.scope_key, BypassReason.RLS_OPAQUE
            needed |= found.settings | declared.get(found.table, frozenset())
        if not self.track_row_security(needed):
            return self.scope_key, BypassReason.UNKNOWN
        return self.row_security_scope_key, None

    def row_security_report(self) -> list[dict[str, Any]]:
        """What ``CachedConnection.row_security_report`` returns: a row per table with row-level security."""
        catalog, _ = self.catalog()
        declared = self.declared_policies
        report = []
        for table, found in sorted(catalog.row_security.items()):
            settings = sorted(found.settings | declared.get(table, frozenset()))
            report.append({"table": table, "policies": list(found.policies), "settings": settings,
                           "identity": sorted(found.identity | {"current_user"}), "forced": found.forced,
                           "opaque": found.opaque, "declared": table in declared,
                           "cached": not found.opaque or table in declared,
                           "reads_tables": sorted(found.reads_tables)})
        return report

    def catalog(self) -> tuple[Catalog, int]:
        return self.context.catalog_for(self)

    def catalog_changed(self) -> None:
        self.context.invalidate_catalog(self.database_id)
        self.context.generated_columns.clear()
        self.plans.clear()

    def became_temp_scoped(self) -> None:
        """The connection created a temp table: from now on its reads share nothing."""
        if not self.temp_scoped:
            self.temp_scoped = True
            self.refresh_scope()

    # -- stamps -------------------------------------------------------------------------
    def isolation(self) -> str:
        tx = self.tx
        return (tx.isolation or tx.next_isolation or self.adapter.driver_isolation(self.raw)
                or self.state.isolation)

    def internal(self, action: Callable[[], T]) -> T:
        """Run the wrapper's own queries: inside a transaction they may start its snapshot."""
        was_in_tx = self.adapter.in_transaction(self.raw)
        candidate = self.stamp_candidate() if was_in_tx else None
        try:
            return action()
        finally:
            self.adopt_stamp(candidate, was_in_tx)

    def stamp_candidate(self, level: str | None = None) -> int | None:
        """A stamp taken before a statement that may start a transaction's snapshot.

        A transaction's stamp must not be later than its snapshot: taking it before any statement
        that could start the snapshot (an earlier stamp only makes fewer entries usable) keeps
        REPEATABLE READ hits inside what the transaction can see.
        """
        if self.tx.stamp is not None:
            return None
        if (level or self.isolation()) not in RR_LEVELS:
            return None  # READ COMMITTED: every statement reads at its own stamp; no round trip
        try:
            return self.context.backend.current_stamp()[1]
        except BackendUnavailable:
            return None

    def current_stamp(self) -> int:
        return self.context.backend.current_stamp()[1]

    def adopt_stamp(self, candidate: int | None, was_in_tx: bool) -> None:
        if not self.adapter.in_transaction(self.raw):
            return
        tx = self.tx
        if candidate is None:
            # READ COMMITTED takes no transaction stamp: a statement that began the transaction (a
            # bypassed read, a write) began it in the wrapper's sight all the same. Without a stamp,
            # REPEATABLE READ stays untracked (no hits, no fills).
            if not was_in_tx and not tx.open and self.isolation() not in RR_LEVELS:
                tx.begin(None)
            return
        if not was_in_tx and not tx.open:
            tx.begin(None)  # the statement began the transaction: the wrapper saw it start
        tx.adopt_stamp(candidate)

    def open_tx_for_hit(self) -> None:
        """A hit for a read that would have begun a transaction (non-autocommit, READ COMMITTED)
        begins it, so the connection's transaction state is what the uncached read leaves."""
        candidate = self.stamp_candidate()
        self.adapter.open_transaction(self.raw)
        self.adapter.after_statement(self.raw)
        self.tx.begin_at_next_isolation(candidate)

    def note_driver_state(self) -> None:
        """After a call that may change whether reads open a transaction (autocommit...)."""
        self.reads_open_tx = self.adapter.reads_open_transaction(self.raw)

    # -- ends of transactions -----------------------------------------------------------------
    def tx_ended(self) -> None:
        """Every end of a transaction comes here: forget it, and re-read a scope SET inside it changed."""
        self.tx.end()
        if self.scope_stale_at_tx_end:
            self.scope_stale_at_tx_end = False
            self.refresh_scope()

    def scope_changed(self) -> None:
        """A statement changed the scope: re-read it now, and again when a transaction it is in ends
        (SET LOCAL ends with the transaction)."""
        if self.adapter.in_transaction(self.raw):
            self.scope_stale_at_tx_end = True
        self.refresh_scope()

    def end_transaction(self, raw_action: Callable[[], T], committing: bool) -> T:
        """Run what ends the transaction (COMMIT, ROLLBACK, a context exit), publishing what it wrote."""
        def action() -> T:
            try:
                return raw_action()
            finally:
                self.adapter.after_transaction_end(self.raw)

        written = self.tx.written
        publisher = self.publisher
        try:
            if written and (committing or self.adapter.bump_on_rollback):
                return self.publish_end(action, committing)
            try:
                return action()
            except BaseException:
                # A rollback the driver did not confirm may have been a commit (connection lost).
                if written:
                    publisher.publish(set(written))
                raise
        finally:
            self.tx_ended()

    def publish_end(self, action: Callable[[], T], committing: bool) -> T:
        """Run ``action``, which ends the transaction, inside both phases for what it wrote: with
        its row-level checks, and on a commit its maintained entries and the rows it changed (an
        aborted PostgreSQL transaction's COMMIT is a ROLLBACK: nothing it maintained happened)."""
        tx = self.tx
        committed = committing and not self.adapter.in_error(self.raw)
        return self.publisher.around(set(tx.written), action, tx.row_checks,
                                     list(tx.maintained.values()) if committed else None,
                                     tx.changed if committed else None)

    def reconcile(self, was_in_tx: bool, ended_by_commit: bool) -> None:
        """After a call the wrapper did not drive: did a transaction end (or begin) under it?"""
        in_tx = self.adapter.in_transaction(self.raw)
        tx = self.tx
        if was_in_tx and not in_tx:
            if tx.written and (ended_by_commit or self.adapter.bump_on_rollback):
                keys = set(tx.written)
                if tx.row_checks:
                    keys |= self.publisher.changed_dependencies(tx.row_checks)
                self.publisher.publish(keys)
            self.tx_ended()
        elif in_tx and not was_in_tx and not tx.open:
            tx.began_unseen()

    def close(self, in_tx: bool) -> None:
        """The connection closed (``in_tx``: with a transaction open, which that rolled back)."""
        if in_tx and self.tx.written and self.adapter.bump_on_rollback:
            # Closing with an open transaction rolls it back; MySQL keeps non-transactional writes.
            self.publisher.publish(self.tx.written)
        self.tx.end()
        if self.l1 is not None:
            self.l1.clear()
        self.context.closed(self)

    # -- writes -------------------------------------------------------------------------------
    def write_keys(self, analysis: Analysis) -> set[str]:
        """The version keys a write statement bumps (table level; docs/freshness.md)."""
        catalog, _ = self.catalog()
        tables, everything = catalog.expand_writes(
            analysis.tables_written, self.context.config.invalidation.dependencies
        )
        changes_catalog = analysis.kind in (StatementKind.DDL, StatementKind.UNKNOWN)
        if everything or analysis.writes_everything or (not catalog.complete and not tables):
            keys = {self.version_key(ALL_TABLES)}
        else:
            keys = {self.version_key(t) for t in tables}
        if changes_catalog:
            # Other processes read their catalog again when they see this key rise (a new policy,
            # view or trigger must not wait for their restart).
            keys.add(self.version_key(CATALOG_CHANGES))
        return keys

    def statement_write_keys(self, statement: Any, reads_are_writes: bool = True) -> set[str]:
        """What a statement sent past ``execute`` may write (everything, when it cannot be read)."""
        everything = {self.version_key(ALL_TABLES)}
        if not isinstance(statement, str):
            return everything
        analysis = self.analyzer(statement)
        if analysis.kind in (StatementKind.OTHER, StatementKind.READ) and not analysis.is_write:
            if analysis.kind is StatementKind.READ and not reads_are_writes:
                catalog, _ = self.catalog()
                if analysis.functions & catalog.user_volatile_functions or not catalog.complete:
                    return everything
            return set()  # COPY ... TO, or a read
        if analysis.kind in (StatementKind.SESSION, StatementKind.TRANSACTION):
            return everything
        return self.write_keys(analysis)

    def run_write(self, keys: set[str], action: Callable[[], T], implicit_commit: bool,
                  is_dml: bool = True, maintenance: StatementMaintenance | None = None) -> T:
        """Run a statement that may write ``keys``: published at commit inside a transaction, around
        the statement when it autocommits; ``maintenance``: the entries it updates instead of
        invalidating them (docs/maintenance.md)."""
        adapter = self.adapter
        raw = self.raw
        tx = self.tx
        in_tx = adapter.in_transaction(raw)
        if not implicit_commit and (in_tx or adapter.write_opens_transaction(raw, is_dml)):
            if not in_tx:
                tx.end()
            if maintenance is not None:
                tx.maintained.update((e.key, e) for e in maintenance.entries)
                tx.maintaining = frozenset(e.key for e in maintenance.entries)
                tx.recording = maintenance.table
                tx.leases.update(maintenance.leases)
            try:
                tx.wrote(keys)
                return action()
            finally:
                tx.maintaining = frozenset()
                tx.recording = None
                if not adapter.in_transaction(raw):
                    # It autocommitted after all (or ended the transaction): publish now.
                    self.reconcile(True, ended_by_commit=True)
        try:
            if maintenance is not None and maintenance.own_transaction:
                return action()  # it publishes its own COMMIT (StatementMaintenance.run)
            # ``keys`` itself, not a copy: a row-level write adds the buckets it touched while it runs.
            return self.publisher.around(keys | tx.written if implicit_commit else keys, action)
        finally:
            if maintenance is not None:
                tx.leases.update(maintenance.leases)  # given back by the end below
            if implicit_commit:
                adapter.after_transaction_end(raw)
                self.tx_ended()
            else:
                tx.end()
            if adapter.in_transaction(raw):
                tx.wrote(keys)
