"""Two-phase publishing of writes: the only caller of the store's ``begin_write``/``end_write``.

Phase 1 (tick, versions up, pending mark) just before a write becomes visible, phase 2 (tick,
versions up, mark removed, published) after it, whatever its outcome but a rollback the driver
confirms (docs/freshness.md, "Two-phase writes").
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence, TypeVar

from querycache.backends.base import MaintainCheck, strict_acks
from querycache.codec import Result, Unencodable, encode
from querycache.errors import BackendUnavailable
from querycache.invalidation.keys import table_of
from querycache.maintain.state import Unmaintainable

if TYPE_CHECKING:
    from querycache.context import CacheContext
    from querycache.maintain.writes import Maintained

_PENDING_MARK_MS = 30000
T = TypeVar("T")


def logged(changed: Mapping[str, Mapping[str, Iterable[object]] | None] | None) -> dict[str, bytes]:
    """Per table of known rows, what a catch-up log keeps of a write: its (relation, primary key)
    rows, encoded (docs/maintenance.md, "Fills under writes")."""
    return {table: encode(Result(None, [(rel, key) for rel in sorted(found) for key in found[rel]], 0))
            for table, found in (changed or {}).items() if found is not None}


class Publisher:
    """Publishes version bumps for one cache: phase 1, phase 2, and the strict-mode wait."""

    def __init__(self, context: CacheContext) -> None:
        self._context = context
        self._acks = strict_acks(context.backend)

    def begin(self, keys: Iterable[str]) -> str:
        """Phase 1; returns the token phase 2 needs. A store that is down must not stop the write."""
        token = uuid.uuid4().hex
        try:
            self._context.backend.begin_write(sorted(keys), token, _PENDING_MARK_MS)
        except BackendUnavailable:
            self._context.store_failed()
        return token

    def end(self, keys: Iterable[str], token: str) -> None:
        """Phase 2, then (strict invalidation) wait until every other process applied it."""
        try:
            self._context.backend.end_write(sorted(keys), token)
        except BackendUnavailable:
            self._context.store_failed()
        if self._acks is not None:
            self._acks.wait_for_acks()

    def bump(self, keys: Iterable[str]) -> None:
        """Both phases at once: for writes that are already visible (or invalidations by hand)."""
        ordered = sorted(keys)
        self.end(ordered, self.begin(ordered))

    def publish(self, keys: set[str]) -> None:
        """Both phases for a write that has landed; counted per table."""
        self.bump(keys)
        self.count(keys)

    def around(self, keys: set[str], action: Callable[[], T],
               row_checks: list[tuple[str, int]] | None = None,
               maintained: Sequence[Maintained] | None = None,
               changed: Mapping[str, Mapping[str, Iterable[object]] | None] | None = None) -> T:
        """Phase 1 before ``action`` makes writes visible, phase 2 after, whatever its outcome.
        ``keys`` may grow during ``action`` (a row-level write found it touched other rows);
        phase 2 bumps what it holds then, plus every table whose dependency columns changed since
        its footprint was computed (``row_checks``). ``maintained``: entries whose updated answers
        phase 2 stores if ``action`` succeeded and no other write touched them (docs/maintenance.md);
        ``changed``: per table the rows the write changes ({relation: primary keys}, None:
        unknown), logged for fills that run meanwhile (docs/maintenance.md, "Fills under writes")."""
        if not keys:
            return action()
        store = self._context.maintain
        rows = logged(changed)
        entries = [e for e in maintained or () if e.failed is None] if store is not None else []
        if not entries and not (rows and store is not None):
            self._count_fallbacks(maintained)
            token = self.begin(keys)
            try:
                return action()
            finally:
                if row_checks:
                    keys |= self.changed_dependencies(row_checks)
                self.end(keys, token)
                self.count(keys)
        assert store is not None
        if not entries:
            self._count_fallbacks(maintained)
            maintained = []
        token = uuid.uuid4().hex
        tick1 = 0
        try:
            tick1, held = store.begin_write_checked(sorted(keys), token, _PENDING_MARK_MS,
                                                    [MaintainCheck(e.baseline.versions) for e in entries])
            for entry, ok in zip(entries, held, strict=True):
                if not ok:
                    entry.fail("concurrent_write")
        except BackendUnavailable:
            self._context.store_failed()
            for entry in entries:
                entry.fail("store")
        succeeded = False
        try:
            result = action()
            succeeded = True
            return result
        finally:
            if row_checks:
                keys |= self.changed_dependencies(row_checks)
            self._end_maintained(keys, token, tick1, (maintained or []) if succeeded else [], rows)
            self.count(keys)

    def _end_maintained(self, keys: set[str], token: str, tick1: int, maintained: Sequence[Maintained],
                        rows: Mapping[str, bytes] | None) -> None:
        """Phase 2 with the updated entries that are still good to store."""
        store = self._context.maintain
        assert store is not None
        stats = self._context.stats.maintain
        updates, entries = [], []
        for entry in maintained:
            if entry.failed is None:
                try:
                    updates.append(entry.update())
                    entries.append(entry)
                except (Unmaintainable, Unencodable) as exc:
                    entry.fail(getattr(exc, "reason", "unencodable"))
                except Exception:  # noqa: BLE001 - phase 2 must run whatever an answer's derivation does
                    entry.fail("error")
        try:
            by_key = {k: rows[t] for k in keys if (t := table_of(k)) in rows} if rows else None
            _, stored = store.end_write_maintained(sorted(keys), token, tick1, updates, by_key)
        except BackendUnavailable:
            self._context.store_failed()
            stored = [None] * len(updates)
        states = self._context.maintain_states
        for entry, update, digest in zip(entries, updates, stored, strict=True):
            if digest is None:
                entry.fail("concurrent_write")
                continue
            stats.incr("maintained")
            if update.value is not None and entry.state is not None:
                states.put(entry.key, digest, update.value, entry.state)
        self._count_fallbacks(maintained)
        if self._acks is not None:
            self._acks.wait_for_acks()

    def _count_fallbacks(self, maintained: Sequence[Maintained] | None) -> None:
        stats = self._context.stats.maintain
        for entry in maintained or ():
            if entry.failed is not None:
                stats.incr(f"fallback:{entry.failed}")

    def changed_dependencies(self, row_checks: list[tuple[str, int]]) -> set[str]:
        """Tables a reader started to pin by a new column since a write computed its footprint:
        the write bumps the whole table (see MemoryBackend.register_dependency)."""
        context = self._context
        registry = context.row_level
        changed = set()
        for key, seen in row_checks:
            try:
                if registry is not None and registry.dependencies(key)[1] == seen:
                    continue
            except Exception:  # noqa: BLE001 - unknown: the whole table
                context.store_failed()
            changed.add(key)
        if changed:
            context.stats.row_level.incr("escalated:dependency_changed")
        return changed

    def count(self, keys: Iterable[str]) -> None:
        counter = self._context.stats.invalidations
        for table in {table_of(key) for key in keys}:
            counter.incr(table)  # once per table a write touched, whatever buckets it bumped
