"""The read path, top to bottom: why a read is not cached, L1, coalescing, L2, L3, run, fill.

``CachedCursor.execute`` answers L1 hits inline (no call it can avoid); everything else
about a read is here. ``bypass_reason`` is asked by both ``execute`` and ``explain``, so
that ``explain`` cannot report a tier ``execute`` would not use (docs/architecture.md,
"Data flow of one execute").
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Any, Mapping

from querycache.analysis import ALL_TABLES, Analysis
from querycache.backends.base import MISS, REFRESHES_TAKEN, Lookup
from querycache.coalesce import Flight, Outcome
from querycache.codec import CorruptEntry, Result, Unencodable, decode, encode
from querycache.errors import BackendUnavailable
from querycache.keys import UnsupportedParam, l1_params
from querycache.l1 import L1Entry, L1Key
from querycache.maintain.reads import register_maintained, run_state_query
from querycache.plan import (
    ReadPlan,
    l3_scope,
    memo_store_key,
    moved_past,
    pinned_plan,
    plan_read,
    registered_in,
    store_key,
)
from querycache.refresh import own_params
from querycache.serving import ServingCursor, estimate_size, has_mutable_parts, names_match, permuted, private_copy
from querycache.status import COALESCED, HIT_L2, HIT_L3, BypassReason, NotFilledReason
from querycache.status import MISS as STATUS_MISS
from querycache.transaction import RR_LEVELS

if TYPE_CHECKING:
    from querycache.connection import CachedConnection
    from querycache.semantic.canonical import Canonical
    from querycache.semantic.tier import SemanticTier
    from querycache.session import Session


def l1_fresh(session: Session, entry: L1Entry, in_tx: bool) -> bool:
    """Whether an L1-shaped entry (an L1 entry, or a coalescing leader's hand-over) may answer now."""
    context = session.context
    if entry.epoch != context.backend.l1_epoch or entry.expires_at <= time.monotonic():
        return False
    limit = entry.stamp
    if in_tx:
        isolation = session.isolation()
        if isolation == "serializable":
            return False
        if isolation in RR_LEVELS:
            tx_stamp = session.tx.stamp
            if tx_stamp is None:
                return False  # the first read of a REPEATABLE READ transaction pins its snapshot
            limit = min(limit, tx_stamp)
    elif session.reads_open_tx and session.isolation() != "read committed":
        return False  # this read would open a transaction whose snapshot it must pin
    return mirror_fresh(context.mirror_versions, entry.version_keys, limit)


def mirror_fresh(versions: Mapping[str, int], version_keys: tuple[str, ...], limit: int) -> bool:
    """Whether no version of ``version_keys`` moved past ``limit`` in the process's mirror (one the
    mirror does not know may have: not fresh). ``CachedCursor.execute`` has its own copy inline."""
    for k in version_keys:
        version = versions.get(k)
        if version is None or version > limit:
            return False
    return True


def bypass_reason(session: Session, analysis: Analysis, raw_cursor: Any, params: Any, in_tx: bool
                  ) -> tuple[BypassReason | None, ReadPlan | None]:
    """Why this read would not be answered from the cache now (None: it would be), and its plan
    when one was made. A plan that ``calls_user_function`` is run as a call, not a read."""
    if analysis.changes_scope:
        return BypassReason.SESSION, None
    context = session.context
    tx = session.tx
    reason = analysis.reason
    if reason is None and not session.adapter.supported:
        reason = BypassReason.UNKNOWN
    if reason is None and (not context.enabled or (session.l1 is None and not context.l2_enabled)):
        reason = BypassReason.DISABLED
    if reason is None and session.state.replica:
        reason = BypassReason.REPLICA
    if reason is None and session.temp_scoped:
        reason = BypassReason.TEMP_TABLE
    if reason is None and getattr(raw_cursor, "name", None):
        reason = BypassReason.SERVER_CURSOR  # its rows live on the server, fetched as it scrolls
    if reason is None and in_tx:
        if not tx.tracked:
            reason = BypassReason.TX_UNTRACKED
        elif tx.dirty:
            reason = BypassReason.TX_DIRTY
    isolation = session.isolation()
    opens_tx = not in_tx and session.adapter.reads_open_transaction(session.raw)
    if reason is None and isolation == "serializable" and (in_tx or opens_tx):
        reason = BypassReason.TX_ISOLATION
    plan = None
    if reason is None or reason is BypassReason.VOLATILE:
        plan = plan_read(session, analysis)
        if plan.calls_user_function:
            return BypassReason.VOLATILE, plan
        reason = reason or plan.bypass
    if reason is None:
        try:
            l1_params(params)
        except UnsupportedParam:
            reason = BypassReason.UNKNOWN
    return reason, plan


class _Read:
    """One execution of a cacheable read: what every step from the lookup to the fill needs."""

    __slots__ = ("analysis", "deadline", "in_tx", "l1_key", "opens_tx", "params", "pin", "plan", "refresh",
                 "sql", "store_key", "tx_stamp", "use_l1")

    def __init__(self, analysis: Analysis, sql: str, params: Any, in_tx: bool, plan: ReadPlan, l1_key: L1Key) -> None:
        self.analysis = analysis
        self.sql = sql
        self.params = params
        self.in_tx = in_tx
        self.plan = plan
        self.pin = False  # the first read of a REPEATABLE READ transaction: runs on the database
        self.tx_stamp: int | None = None
        self.opens_tx = False
        self.l1_key = l1_key
        self.use_l1 = False
        self.store_key: str | None = None
        self.deadline = 0.0
        self.refresh = False  # a background refresh: run and fill, serve nobody (docs/freshness.md)


class ReadPath(ServingCursor):
    """The cursor's read path below the L1 fast path of ``execute``."""

    def _read(self, analysis: Analysis, sql: str, params: Any, in_tx: bool) -> object:
        session = self._session
        context = session.context
        tx = session.tx
        isolation = session.isolation()
        opens_tx = not in_tx and session.adapter.reads_open_transaction(session.raw)
        reason, plan = bypass_reason(session, analysis, self._raw, params, in_tx)
        if analysis.changes_scope:
            self._bypass(analysis, sql, params, BypassReason.SESSION)
            # set_config(..., true) ends with the transaction; any setting made in one is undone by
            # its rollback: the scope is read again at its end too.
            session.scope_changed()
            return self._result()
        if plan is not None and plan.calls_user_function:
            return self._call_statement(analysis, sql, params)
        if reason is not None or plan is None:
            return self._bypass(analysis, sql, params, reason or BypassReason.UNKNOWN)
        pkey = l1_params(params)
        if plan.row_pins is not None:
            plan = pinned_plan(session, plan, params)
        l1_key = (session.scope_id, context.tenant.get(), session.adapter.shape_token(self._raw), sql, pkey)
        read = _Read(analysis, sql, params, in_tx, plan, l1_key)
        read.opens_tx = opens_tx
        # The first read of a REPEATABLE READ transaction runs on the database: it pins the snapshot.
        read.pin = ((in_tx and tx.stamp is None) or read.opens_tx) and isolation in RR_LEVELS
        read.tx_stamp = tx.stamp if in_tx and isolation in RR_LEVELS else None
        read.use_l1 = session.l1 is not None and analysis.hints.tier != "l2"
        if context.l2_enabled and analysis.hints.tier != "l1":
            read.store_key = memo_store_key(session, self._raw, analysis, params, plan, l1_key)
        coalesce = context.config.coalesce
        flight: Flight | None = None
        # One bound for the whole call: waiting as a follower, re-elected, then for another process.
        read.deadline = time.monotonic() + coalesce.max_wait_ms / 1000
        key = read.store_key
        if coalesce.enabled and key is not None and not read.pin and plan.ttl_s > 0:
            served, flight = self._follow(key, in_tx, analysis, read.deadline)
            if served:
                return self._result()
        if flight is None:
            return self._lookup_and_run(read, None)
        # This thread leads the key's flight: whatever happens, the followers must hear of it.
        assert key is not None
        try:
            result = self._lookup_and_run(read, flight)
        except BaseException:
            if not flight.finished:
                context.flights.finish(key, flight, Outcome.FAILED)
            self._release_lease(key, "error")
            raise
        finally:
            if flight.followers:
                context.stats.coalesce.incr("leaders")  # a leader that others waited for
        if not flight.finished:
            context.flights.finish(key, flight, Outcome.UNSHARED)  # its lease: given back by then
        return result

    def _refresh_entry(self, sql: str, params: Any, key: str) -> str:
        """A background refresh, on a connection of the refresh pool's own: when this connection
        would read ``sql`` under ``key`` (same scope and tenant), run it on the database and fill
        (the fill gives back the lease the reader took). Returns "filled", or why not. The
        connection is left outside any transaction, and this path's driver cursor closed."""
        try:
            return self._refresh_here(sql, params, key)
        finally:
            self._raw.close()
            if self._session.adapter.in_transaction(self._session.raw):
                self._conn.rollback()

    def _refresh_here(self, sql: str, params: Any, key: str) -> str:
        session = self._session
        context = session.context
        stats = context.stats
        analysis = session.analyzer(sql)
        in_tx = session.adapter.in_transaction(session.raw)
        reason, plan = bypass_reason(session, analysis, self._raw, params, in_tx)
        why = None
        if in_tx:
            why = "in_transaction"
        elif analysis.changes_scope or plan is None or plan.calls_user_function or reason is not None:
            why = f"bypass:{(reason or BypassReason.UNKNOWN).value}"
        else:
            if plan.row_pins is not None:
                plan = pinned_plan(session, plan, params)
            if store_key(session, self._raw, analysis, params, plan) != key:
                why = "other_scope"  # this connection's session differs from the reader's
        if why is not None or plan is None:
            stats.staleness.incr(f"refresh_skipped:{why}")
            self._release_lease(key, "unshared")
            return why or "skipped"
        read = _Read(analysis, sql, params, False, plan, (session.scope_id, context.tenant.get(), "", sql, ()))
        read.pin = read.refresh = True
        read.store_key = key
        self._lookup_and_run(read, None)
        return "filled" if self._st.served else "not_filled"

    def _refresh_elsewhere(self, read: _Read, kind: str) -> bool:
        """Hand the refresh this caller took to the background pool (True: the caller serves the
        entry now), when this connection was wrapped with ``refresh_connect``. A refresh the full
        queue sheds gives its lease back: the entry is served as it is (True too)."""
        session = self._session
        refresher = session.refresher()
        if refresher is None or session.adapter.cursor_shape(self._raw) != session.plain_cursor_shape():
            return False  # the pool's cursors are the driver's plain ones: this reader recomputes it
        key = read.store_key
        assert key is not None
        stats = session.context.stats
        sql, params = read.sql, own_params(read.params)
        tenant = session.context.tenant.get()

        def refresh(conn: CachedConnection, own: Session) -> None:
            token = own.context.tenant.set(tenant)  # the reader's tenant: part of the key
            try:
                ReadPath(conn, own, own.raw.cursor())._refresh_entry(sql, params, key)
            finally:
                own.context.tenant.reset(token)

        def failed() -> None:
            # The refresh could not run (no connection, or it failed before its fill): its lease
            # goes back, so that the next reader takes the refresh instead of waiting for it.
            self._release_lease(key, "error")

        if refresher.submit(key, refresh, failed):
            stats.staleness.incr(f"refreshes:{kind}:background")
        else:
            stats.staleness.incr("shed")
            self._release_lease(key, "unshared")
        return True

    def _follow(self, key: str, in_tx: bool, analysis: Analysis, deadline: float) -> tuple[bool, Flight | None]:
        """Join the key's flight: lead it (the flight is returned), or wait for its leader and serve
        what it hands over if that passes the hit check now (True). (False, None): run it yourself."""
        session = self._session
        context = session.context
        stats = context.stats
        while True:
            flight, leading = context.flights.join(key)
            if leading:
                return False, flight
            outcome = flight.wait(max(0.0, deadline - time.monotonic()))
            if outcome is Outcome.SHARED:
                entry = flight.entry  # always set with SHARED
                if entry is not None and l1_fresh(session, entry, in_tx):
                    if not in_tx and session.reads_open_tx:
                        session.open_tx_for_hit()
                    self._serve(entry.result, COALESCED)
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
        context = self._session.context
        try:
            context.backend.release_lease(key, reason)
        except Exception:  # noqa: BLE001 - fail open: the lease expires on its own
            context.store_failed()

    def _wait_for_other_process(self, read: _Read, lookup: Lookup) -> tuple[Lookup, str]:
        """Another process holds the key's lease: wait for its fill (woken by the store, or polling),
        looking again each time, until a fresh entry, the lease, or ``coalesce.max_wait_ms``."""
        context = self._session.context
        backend = context.backend
        lease_ms = context.config.coalesce.lease_ms
        key = read.store_key
        assert key is not None
        poll = 0.02
        l1_token = backend.l1_epoch
        while lookup.value is MISS and not lookup.leader and not lookup.pending:
            remaining = read.deadline - time.monotonic()
            if remaining <= 0:
                context.stats.coalesce.incr("timeouts")
                break
            reason = backend.wait_fill(key, min(poll, remaining))
            poll = min(poll * 2, 0.25)
            l1_token = backend.l1_epoch
            try:
                lookup = backend.lookup(key, read.plan.version_keys, read.tx_stamp, lease_ms)
            except BackendUnavailable:
                # One slow reply while another process leads: keep waiting (until max_wait_ms)
                # rather than run the query beside it.
                context.stats.coalesce.incr("wait_lookup_failures")
                continue
            if reason == "unshared" and lookup.value is MISS:
                break  # its result could not be stored: run it here, do not queue behind another
        return lookup, l1_token

    def _lookup_and_run(self, read: _Read, flight: Flight | None) -> object:
        """L2 (one round trip: entry, versions, marks, stamp), then L3, else run it and fill."""
        session = self._session
        context = session.context
        analysis, plan, key = read.analysis, read.plan, read.store_key
        started = time.perf_counter()
        l1_token = context.backend.l1_epoch  # before the lookup: see Backend.l1_epoch
        lease_ms = context.config.coalesce.lease_ms if flight is not None else 0
        status = HIT_L2
        max_stale_ms, early = 0, 0.0
        if not read.pin:
            if read.tx_stamp is None:
                max_stale_ms = int(plan.max_stale_s * 1000)
            beta = context.config.refresh.early_beta
            if beta > 0 and not read.in_tx:  # inside a transaction the caller could only refresh in it
                early = beta * -math.log(1.0 - random.random())  # XFetch: how early this caller recomputes
        try:
            lookup = context.backend.lookup(None if read.pin else key, plan.version_keys, read.tx_stamp, lease_ms,
                                            max_stale_ms=max_stale_ms, early=early)
            if flight is not None and lookup.value is MISS and not lookup.leader and not lookup.pending:
                context.stats.coalesce.incr("cross_process_waits")
                lookup, l1_token = self._wait_for_other_process(read, lookup)
                status = COALESCED
        except Exception:  # noqa: BLE001 - fail open: the store must never fail a query
            context.store_failed()
            result = self._bypass(analysis, read.sql, read.params, BypassReason.STORE_UNAVAILABLE)
            if (flight is not None or read.refresh) and key is not None:
                self._release_lease(key, "unshared")  # the lookup may have taken it before failing
            return result
        stats = context.stats
        leased = flight is not None or read.refresh
        if isinstance(lookup.value, bytes) and not read.pin:
            try:
                result = decode(lookup.value)
            except CorruptEntry:
                result = None
                stats.not_filled.incr("corrupt_entry")
            stale = lookup.stale_ms >= 0
            if result is not None and flight is not None and key is not None and not stale:
                # Still fresh by the clock (also when past its TTL inside a stale-while-revalidate
                # window, or picked for refresh-ahead): the followers get it.
                context.flights.finish(key, flight, Outcome.SHARED, L1Entry(
                    result, plan.version_keys, lookup.entry_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
                flight = None
            took = result is not None and lookup.refresh in REFRESHES_TAKEN and not self._refresh_elsewhere(
                read, REFRESHES_TAKEN[lookup.refresh])
            if took:
                # No background refresh for this connection: this caller recomputes it.
                stats.staleness.incr(f"refreshes:{REFRESHES_TAKEN[lookup.refresh]}:foreground")
                if lookup.refresh == 1:
                    stats.coalesce.incr("swr_refreshes")  # past its TTL: this caller refreshes it
                leased = True
            elif result is not None:
                if read.opens_tx:
                    session.open_tx_for_hit()
                self._serve(result, status)
                self._record(analysis, status)
                if status == COALESCED:
                    next(stats.coalesced)
                else:
                    next(stats.hits["l2"])
                stats.latency["l2"].observe(time.perf_counter() - started)
                if stale:
                    stats.staleness.incr("served_stale")
                    stats.stale_age.observe(lookup.stale_ms / 1000)
                elif lookup.refresh in (1, 2):
                    stats.coalesce.incr("swr_served")  # another caller refreshes it
                if read.use_l1 and not stale and lookup.refresh not in (1, 2):
                    self._fill_l1(read.l1_key, result, plan, lookup.entry_stamp or lookup.stamp, l1_token,
                                  len(lookup.value), self._l1_lifetime(plan, lookup.ttl_left_ms, lookup.cost_ms))
                return self._result()
        l3 = context.l3
        semantic = None
        if (l3 is not None and key is not None and not read.pin and plan.ttl_s > 0 and not lookup.pending
                and (analysis.hints.semantic or context.config.l3.all_reads)):
            semantic = self._l3_prepare(l3, read.sql, read.params, plan)
            if semantic is not None and lookup.value is MISS and self._serve_l3(
                    l3, semantic, read, lookup, l1_token, flight, started):
                return self._result()
        stamp = lookup.stamp
        # Miss: run on the database, deliver, then fill.
        self._begin_live(STATUS_MISS)
        if not read.refresh:
            next(stats.misses)
            self._record(analysis, STATUS_MISS)
        executed = time.perf_counter()
        maintained: tuple[Result, bytes] | None = None
        try:
            if context.maintain is not None and key is not None and not read.in_tx and not lookup.pending:
                found = run_state_query(session, self._execute_tracked, self._raw, read.sql, read.params,
                                        plan.version_keys)
                if found is not None:
                    maintained = found[:2]
                    stamp = stamp if found[2] is None else found[2]  # caught up with writes since
            if maintained is None:
                self._execute_tracked(read.sql, read.params)
        except BaseException:
            if leased and key is not None and flight is None:
                self._release_lease(key, "error")  # a refresh that failed (a leader's: in _read)
            raise
        finally:
            now = time.perf_counter()
            cost_ms = (now - executed) * 1000
            stats.latency["miss"].observe(now - started)
            if self._st.fp is not None:
                self._st.fp.ran(now - executed)  # the database's share only
            self._after_miss(read, stamp)
        fill_stamp = stamp if read.tx_stamp is None else min(stamp, read.tx_stamp)
        if read.pin and read.in_tx:
            fill_stamp = stamp
        # A bounded answer read while a write was under way may lack it: stored stamped below that
        # write's bump, stale at once, served within its bound (docs/freshness.md); no L1 copy
        # (L1 copies are strict) and nothing for coalesced followers.
        under_write = (lookup.pending and plan.max_stale_s > 0 and read.tx_stamp is None
                       and lookup.pending_floor > 0)
        if under_write:
            fill_stamp = min(fill_stamp, lookup.pending_floor - 1)
        fill_l1, fill_l2 = read.l1_key if read.use_l1 and not under_write else None, key
        if plan.pinned and not registered_in(session, plan, lookup.epoch):
            stats.not_filled.incr(NotFilledReason.DEPENDENCY_EPOCH.value)
            fill_l1 = fill_l2 = None
        try:
            shared, filled = self._buffer_and_fill(analysis, plan, fill_l1, fill_l2, fill_stamp, lookup.epoch,
                                                   lookup.pending and not under_write, l1_token, maintained,
                                                   cost_ms)
            if under_write:
                shared = None
            if maintained is not None and filled and shared is not None and fill_l2 is not None:
                register_maintained(session, read.sql, read.params, plan.version_keys, fill_l2, plan.scope_key)
        except BaseException:
            if leased and key is not None and flight is None:
                self._release_lease(key, "error")
            raise
        if flight is not None and key is not None and shared is not None:
            context.flights.finish(key, flight, Outcome.SHARED, L1Entry(
                shared, plan.version_keys, fill_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
        if leased and not filled and key is not None:
            self._release_lease(key, "filled" if shared is not None else "unshared")
        if l3 is not None and semantic is not None and filled and shared is not None and key is not None:
            l3.add(semantic[1], plan.version_keys, semantic[0], analysis.normalized, key)
        return self._result()

    def _after_miss(self, read: _Read, stamp: int) -> None:
        """The read ran on the database: the transaction it began (at ``stamp``), or ended, or pinned."""
        session = self._session
        now_in_tx = session.adapter.in_transaction(session.raw)
        if not read.in_tx and now_in_tx:
            session.tx.begin_at_next_isolation(stamp)
        elif read.in_tx and not now_in_tx:
            session.reconcile(True, ended_by_commit=True)
        elif read.in_tx and read.pin:
            session.tx.pin_snapshot(stamp)

    # -- L3 -----------------------------------------------------------------------------
    def _l3_prepare(self, l3: SemanticTier, sql: str, params: Any, plan: ReadPlan
                    ) -> tuple[Canonical, str] | None:
        """The statement's canonical form and its L3 scope (connection scope, tenant, row shape)."""
        session = self._session
        try:
            pkey = l1_params(params)
        except UnsupportedParam:
            return None
        analyzer = session.analyzer
        canonical = l3.prepare(sql, analyzer.dialect, analyzer.paramstyle, params, pkey)
        if canonical is None:
            return None
        return canonical, l3_scope(session, plan, session.adapter.cursor_shape(self._raw))

    def _serve_l3(self, l3: SemanticTier, semantic: tuple[Canonical, str], read: _Read, lookup: Lookup,
                  l1_token: str, flight: Flight | None, started: float) -> bool:
        """Serve an equivalent earlier statement's entry, read through L2 with the freshness rule
        (so never a row L2 would not serve); True when served."""
        session = self._session
        context = session.context
        stats = context.stats
        analysis, plan = read.analysis, read.plan
        key = read.store_key
        assert key is not None
        canonical, scope = semantic
        threshold = analysis.hints.semantic_threshold or context.config.l3.threshold
        proposal = l3.lookup(scope, plan.version_keys, canonical, threshold)
        if proposal is None:
            return False
        entry = proposal.entry
        # Claims nothing (peek): a refresh of the proposer's entry is its own readers' to take.
        # A bounded read may take it within its bound, as from L2 (docs/freshness.md).
        bound_ms = int(plan.max_stale_s * 1000) if read.tx_stamp is None else 0
        try:
            found = context.backend.lookup(entry.store_key, plan.version_keys, read.tx_stamp, 0, peek=True,
                                           max_stale_ms=bound_ms)
        except Exception:  # noqa: BLE001 - fail open: the query runs on the database
            context.store_failed()
            return False
        if not isinstance(found.value, bytes):
            l3.forget(entry, "pending" if found.pending else "not_fresh")
            return False
        stale = found.stale_ms >= 0
        try:
            result = decode(found.value)
        except CorruptEntry:
            l3.forget(entry, "corrupt")
            return False
        if not proposal.identity:
            reordered = permuted(result, proposal.columns)
            if reordered is None:
                stats.semantic.incr("rejected:row_type")
                return False
            result = reordered
        if not names_match(result.description, canonical.outputs):
            stats.semantic.incr("rejected:names")
            return False
        if read.opens_tx:
            session.open_tx_for_hit()
        self._serve(result, HIT_L3)
        self._record(analysis, HIT_L3)
        next(stats.hits["l3"])
        stats.latency["l3"].observe(time.perf_counter() - started)
        if stale:
            stats.staleness.incr("served_stale")
            stats.stale_age.observe(found.stale_ms / 1000)
        entry_stamp = found.entry_stamp or found.stamp
        if read.use_l1 and not stale:
            self._fill_l1(read.l1_key, result, plan, entry_stamp, l1_token, len(found.value),
                          self._l1_lifetime(plan, found.ttl_left_ms, found.cost_ms))
        # This text's own L2 entry: the next identical statement is an L2 hit in every process,
        # and the fill gives back a coalescing lease this call may hold.
        filled = False
        try:
            value = found.value if proposal.identity else encode(result)
            filled = context.backend.fill(key, value, plan.version_keys, entry_stamp, lookup.epoch,
                                          plan.ttl_s, plan.swr_s, bounded=stale)
            filled = True
        except Unencodable:
            pass
        except Exception:  # noqa: BLE001 - fail open
            context.store_failed()
        if flight is not None:
            if not stale:  # a bounded answer is nothing strict followers may take
                context.flights.finish(key, flight, Outcome.SHARED, L1Entry(
                    result, plan.version_keys, entry_stamp, l1_token, time.monotonic() + plan.ttl_s, 0))
            if not filled:
                self._release_lease(key, "unshared")
        return True

    # -- fill ---------------------------------------------------------------------------
    def _buffer_and_fill(self, analysis: Analysis, plan: ReadPlan, l1_key: L1Key | None, key: str | None,
                         stamp: int, epoch: str, pending: bool, l1_token: str,
                         maintained: tuple[Result, bytes] | None = None, cost_ms: float = 0.0
                         ) -> tuple[Result | None, bool]:
        """Fetch the rows into the cursor (bounded), fill L2 and L1. Returns the result when it may
        be handed to coalesced followers (complete, no pending write, not refused by the store as
        stale), and whether the store's fill ran (it gives back the coalescing lease).
        ``maintained``: the rows derived from a state query, and the state stored with them."""
        filled = False
        context = self._session.context
        stats = context.stats
        raw = self._raw
        if maintained is not None:
            derived = maintained[0]
            description, rows = derived.description, derived.rows
            self._st.rows, self._st.pos, self._st.live = rows, 0, False
            self._st.result = derived
            self._st.served = True
        if pending:
            stats.not_filled.incr(NotFilledReason.PENDING_WRITE.value)
            return None, filled
        if (l1_key is None and key is None) or plan.ttl_s <= 0:
            return None, filled  # nothing will be stored: leave the rows to stream from the driver
        limit = context.config.max_result_rows
        state = None
        if maintained is None:
            description = raw.description
            if description is None:
                stats.not_filled.incr(NotFilledReason.NO_RESULT_SET.value)
                return None, filled
            rows = list(raw.fetchmany(limit + 1)) if limit < 1 << 30 else list(raw.fetchall())
            self._st.rows = rows
            self._st.pos = 0
            self._st.live = False
        if len(rows) > limit:
            stats.not_filled.incr(NotFilledReason.TOO_MANY_ROWS.value)
            return None, filled  # the buffered prefix is served, the tail streams from the database
        rowcount = raw.rowcount if maintained is None else maintained[0].rowcount
        lastrowid = getattr(raw, "lastrowid", None) if maintained is None else None
        self._st.result = Result(description, rows, rowcount, lastrowid)
        self._st.served = True
        mutable = bool(rows) and has_mutable_parts(rows)
        result = Result(description, rows, rowcount, lastrowid, mutable)
        if mutable:
            # The caller may mutate what it was handed; keep a private copy.
            try:
                result = Result(description, private_copy(rows), rowcount, lastrowid, True)
            except Exception:  # noqa: BLE001 - rows that cannot be copied cannot be cached safely
                stats.not_filled.incr(NotFilledReason.UNENCODABLE.value)
                return None, filled
        size = 0
        shareable = True
        encoded: bytes | None = None
        if key is not None:
            try:
                encoded = encode(result)
            except Unencodable:
                stats.not_filled.incr(NotFilledReason.UNENCODABLE.value)
            if encoded is not None and len(encoded) > context.config.max_result_bytes:
                stats.not_filled.incr(NotFilledReason.TOO_MANY_BYTES.value)
                return None, filled
            if encoded is not None:
                size = len(encoded)
                filled = True
                if maintained is not None:
                    state = maintained[1]
                try:
                    if context.backend.fill(key, encoded, plan.version_keys, stamp, epoch, plan.ttl_s, plan.swr_s,
                                            state, plan.max_stale_s > 0, cost_ms):
                        next(stats.fills["l2"])
                        if plan.max_stale_s > 0 and moved_past(context.mirror_versions, plan.version_keys, stamp):
                            shareable = False  # stored as a bounded answer: not one strict followers may take
                    else:
                        stats.not_filled.incr(NotFilledReason.STALE_STAMP.value)
                        shareable = False
                except Exception:  # noqa: BLE001 - fail open
                    context.store_failed()
        if l1_key is not None:
            if not size:
                size = estimate_size(rows)
                if size > context.config.max_result_bytes:
                    stats.not_filled.incr(NotFilledReason.TOO_MANY_BYTES.value)
                    return None, filled
            self._fill_l1(l1_key, result, plan, stamp, l1_token, size, self._l1_lifetime(plan, -1, cost_ms))
        return (result if shareable else None), filled

    def _l1_lifetime(self, plan: ReadPlan, ttl_left_ms: int, cost_ms: float) -> float:
        """How long an L1 copy may answer: the read's TTL, no longer than the L2 entry's own, and with
        refresh-ahead on, ending early enough for reads to reach L2 while its refresh may still be
        picked (3 x cost x beta before the TTL: a draw reaches that far 5 % of the time)."""
        lifetime = plan.ttl_s if ttl_left_ms < 0 else min(plan.ttl_s, ttl_left_ms / 1000)
        beta = self._session.context.config.refresh.early_beta
        if beta > 0 and cost_ms > 0:
            lifetime -= 3 * beta * cost_ms / 1000
        return lifetime

    def _fill_l1(self, key: L1Key, result: Result, plan: ReadPlan, stamp: int, epoch: str, size: int,
                 lifetime: float) -> None:
        session = self._session
        context = session.context
        l1 = session.l1
        if l1 is None or lifetime <= 0 or epoch != context.backend.l1_epoch:
            return  # no lease, or the mirror was resynced since the lookup
        if moved_past(context.mirror_versions, plan.version_keys, stamp):
            return  # a write landed since the stamp: this result may already be old
        l1[key] = L1Entry(result, plan.version_keys, stamp, epoch, time.monotonic() + lifetime, size + 200,
                          self._st.fp)
        next(context.stats.fills["l1"])

    def _call_statement(self, analysis: Analysis, sql: str, params: Any) -> object:
        """A read that calls a user function which may write (or set_config): a write to everything."""
        session = self._session
        self._start_bypass(BypassReason.VOLATILE, analysis)
        session.run_write({session.version_key(ALL_TABLES)}, lambda: self._execute_tracked(sql, params), False)
        session.scope_changed()
        return self._result()
