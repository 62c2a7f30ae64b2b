"""TransactionTracker: what the wrapper knows about a connection's open transaction.

Every change of that knowledge goes through one of its methods (``begin``, ``began_unseen``,
``adopt_stamp``, ``wrote``, ``end``...), so that the rules of docs/freshness.md,
"Transactions" live in one place. It never publishes: the session decides when a write
becomes visible and asks the publisher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

from querycache.analysis import ALL_TABLES
from querycache.invalidation.keys import table_of

if TYPE_CHECKING:
    from querycache.maintain.writes import Maintained

# Isolation levels whose first read pins a snapshot: reads inside may hit only entries older
# than the transaction's stamp.
RR_LEVELS = ("repeatable read", "serializable-snapshot", "unknown")


class TransactionTracker:
    """The open transaction of one connection: open, seen starting, stamped, dirty, written."""

    __slots__ = ("changed", "dirty", "isolation", "leases", "maintained", "maintaining", "next_isolation", "open",
                 "ran", "recording", "release_lease", "row_checks", "stamp", "tracked", "written")

    def __init__(self) -> None:
        # SET TRANSACTION outside a transaction: the level of the next one.
        self.next_isolation: str | None = None
        self.open = False
        # False: it began out of the wrapper's sight (no stamp it can trust): no hits, no fills.
        self.tracked = True
        self.stamp: int | None = None
        self.dirty = False
        self.written: set[str] = set()
        self.isolation: str | None = None
        # Row-level writes: (table key, dependency version seen); checked again at phase 2.
        self.row_checks: list[tuple[str, int]] = []
        # Maintained answers (docs/maintenance.md): the entries this transaction's writes update,
        # by entry key; ``maintaining``: those the statement now running updates itself.
        self.maintained: dict[str, Maintained] = {}
        self.maintaining: frozenset[str] = frozenset()
        # Per table written, the rows changed ({relation: primary keys}) or None when unknown: what
        # phase 2 logs for fills running meanwhile (docs/maintenance.md, "Fills under writes");
        # ``recording``: the table whose rows the statement now running records itself.
        self.changed: dict[str, dict[str, set[object]] | None] = {}
        self.recording: str | None = None
        # A statement ran on the database inside the transaction: its snapshot may exist by now.
        self.ran = False
        # Maintainer leases held until the transaction ends (table key -> token), and how to give
        # one back (set by the session).
        self.leases: dict[str, str] = {}
        self.release_lease: Callable[[str, str], None] | None = None

    def end(self) -> None:
        """The transaction ended (or never was): forget it."""
        self.open = False
        self.tracked = True
        self.stamp = None
        self.dirty = False
        self.written = set()
        self.isolation = None
        self.row_checks = []
        self.maintained = {}
        self.maintaining = frozenset()
        self.changed = {}
        self.recording = None
        self.ran = False
        self.give_back_leases()

    def give_back_leases(self) -> None:
        if self.leases and self.release_lease is not None:
            for table_key, token in self.leases.items():
                try:
                    self.release_lease(table_key, token)
                except Exception:  # noqa: BLE001 - it expires anyway
                    pass
        self.leases = {}

    def begin(self, stamp: int | None, isolation: str | None = None) -> None:
        """A transaction began in the wrapper's sight, with ``stamp`` taken before its snapshot."""
        self.end()
        self.open = True
        self.stamp = stamp
        self.isolation = isolation

    def begin_at_next_isolation(self, stamp: int | None, isolation: str | None = None) -> None:
        """``begin``, at ``isolation`` or else the level a SET TRANSACTION chose for it."""
        self.begin(stamp, isolation or self.next_isolation)
        self.next_isolation = None

    def began_unseen(self) -> None:
        """A transaction is open that the wrapper did not see start: no hits, no fills in it."""
        self.open = True
        self.tracked = False

    def adopt_stamp(self, candidate: int | None) -> None:
        """A statement that may have started the snapshot ran with ``candidate`` taken before it."""
        if self.stamp is None and self.tracked:
            self.stamp = candidate

    def pin_snapshot(self, stamp: int) -> None:
        """The transaction's first read ran on the database at ``stamp``: its snapshot's stamp."""
        self.stamp = stamp

    def set_isolation(self, level: str, inside: bool) -> None:
        """SET TRANSACTION: this transaction's level inside one, the next one's outside."""
        if inside:
            self.isolation = level
        else:
            self.next_isolation = level

    def wrote(self, keys: Iterable[str]) -> None:
        """A statement that may write ``keys`` ran inside the transaction: every later read in it
        bypasses (``tx_dirty``), and ``keys`` are published when it ends."""
        self.open = True
        self.dirty = True
        self.written |= set(keys)
        self.wrote_past_maintenance(keys)

    def rolled_back_to_savepoint(self, reason: str = "savepoint_rollback") -> None:
        """Part of the transaction was (or may have been) undone: the maintained states hold deltas
        that may never happen; they are invalidated at its end instead."""
        for entry in self.maintained.values():
            entry.fail(reason)

    def record_rows(self, table: str, relation: str, keys: Iterable[object] | None) -> None:
        """A maintained write changed the rows of ``relation`` (of ``table``) with these primary
        keys (None: unknown)."""
        found = self.changed.setdefault(table, {})
        if found is None or keys is None:
            self.changed[table] = None
        else:
            found.setdefault(relation, set()).update(keys)

    def wrote_past_maintenance(self, keys: Iterable[str]) -> None:
        """A write of ``keys`` that does not update the maintained entries it touches: those are
        invalidated at commit instead (their state would miss this write); the rows it changed
        are unknown, unless the statement records them itself."""
        touched = {table_of(k) for k in keys}
        for table in touched - {self.recording}:
            self.changed[table] = None
        if self.maintained:
            for key, entry in self.maintained.items():
                if key not in self.maintaining and (ALL_TABLES in touched or not touched.isdisjoint(entry.tables)):
                    entry.fail("unmaintained_write")

    def wrote_rows(self, keys: Iterable[str], check: tuple[str, int] | None = None) -> None:
        """A row-level write inside the open transaction touched ``keys`` (its buckets); ``check``:
        the table whose pinned columns must not have changed by phase 2. Nothing when none is open."""
        if not self.open:
            return
        self.written |= set(keys)
        self.wrote_past_maintenance(keys)
        if check is not None:
            self.row_checks.append(check)
