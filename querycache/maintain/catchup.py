"""Fills under writes: a maintained read's state query during which writes commit is caught up
with the rows they changed instead of being thrown away (docs/maintenance.md, "Fills under
writes").

A state query over a busy table takes longer than the gap between two writes, so a fill stamped
before it is refused almost always. Instead: the fill asks the store to log, for its version
keys, the primary keys every write changes (``open_catchup``; writers that maintain answers know
them), runs its state query in a REPEATABLE READ snapshot S, and then, in rounds, reads the log:
the rows ``K`` changed since its stamp are recomputed, their contribution in S taken out and
their contribution in a newer snapshot S' put in (the same delta queries writers run). Rows
outside ``K`` are the same in S and S', as no logged write touched them. A round is valid only if
no write of the entry's relations landed between reading the log and pinning S' (checked right
after the pin); anything unknown (a write of unknown rows, one still under way, two relations
changed at once) stops the catch-up and the fill goes on as before, stamped before its query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from querycache.codec import CorruptEntry, decode
from querycache.invalidation.row_writes import fetch, quietly
from querycache.maintain.shape import Shape, bind
from querycache.maintain.state import State, Unmaintainable, apply_groups, apply_scalar, derive, merged
from querycache.maintain.writes import CATCHUP_FIELD, primary_key

if TYPE_CHECKING:
    from querycache.backends.base import MaintainedAnswers
    from querycache.drivers.base import DBAPICursor
    from querycache.session import Session

LOG_TTL_MS = 60_000  # how long writers keep logging for fills after the last one asked
_ROUNDS = 4  # catch-up rounds per fill before it gives up (each one follows a write that landed)
_MAX_KEYS = 1000  # rows one round may recompute
_PENDING_WAIT_S, _PENDING_POLL_S = 0.05, 0.002  # how long a round waits for a write under way to end


@dataclass
class Snapshot:
    """A fill's open REPEATABLE READ snapshot on the reader's connection, and the stamp its state
    is known to be complete at."""

    cursor: DBAPICursor
    stamp: int
    dialect: str
    open: bool = False  # its transaction is begun (``pin``) and not yet ended

    def pin(self, first: str | None = None) -> None:
        """Begin a read-only REPEATABLE READ transaction with its snapshot taken now (or, on
        PostgreSQL, at ``first``, the statement the caller runs next)."""
        if self.dialect == "postgres":
            self.cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if first is None:
                fetch(self.cursor, "SELECT 1", {})
        else:
            self.cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self.cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        self.open = True

    def end(self) -> None:
        if self.open:
            self.open = False
            if not quietly(self.cursor, "COMMIT"):
                quietly(self.cursor, "ROLLBACK")


def can_catch_up(session: Session, shape: Shape) -> dict[str, str] | None:
    """The primary key of each relation the read reads, when its fill can be caught up: an
    autocommit connection outside a transaction (its snapshot is the wrapper's to open), a store
    that logs writes; None otherwise."""
    adapter, raw = session.adapter, session.raw
    store = session.context.maintain
    if store is None or not session.context.config.invalidation.maintain.catch_up:
        return None
    if adapter.dialect not in ("postgres", "mysql") or not adapter.autocommit(raw):
        return None
    if adapter.in_transaction(raw):
        return None
    keys = {}
    for relation in shape.relations:
        found = primary_key(session, relation)
        if found is None:
            return None
        keys[relation] = found[0]
    return keys


def open_snapshot(session: Session, store: MaintainedAnswers, version_keys: Sequence[str],
                  table_keys: Sequence[str]) -> Snapshot | None:
    """Ask the store to log writes of ``version_keys``, then begin the transaction the state query
    runs in (its snapshot is taken by that query). None: the store failed."""
    until = str(int(time.time() * 1000) + LOG_TTL_MS).encode()
    try:
        store.register_maintained(table_keys, CATCHUP_FIELD, until)  # writers read their keys meanwhile
        stamp = store.open_catchup(version_keys, LOG_TTL_MS)
    except Exception:  # noqa: BLE001 - fail open: the fill goes on stamped as before
        session.context.store_failed()
        return None
    snapshot = Snapshot(session.raw.cursor(), stamp, session.adapter.dialect)
    snapshot.pin(first="state query")
    return snapshot


class CatchUp:
    """The rounds of one fill (see the module's docstring)."""

    def __init__(self, session: Session, shape: Shape, params: Sequence[object], version_keys: Sequence[str],
                 pks: dict[str, str], snapshot: Snapshot, state: State) -> None:
        self.session = session
        self.shape = shape
        self.params = params
        self.version_keys = version_keys
        self.pks = pks
        self.snapshot = snapshot
        self.state = state
        self.store = session.context.maintain
        self.stats = session.context.stats.maintain
        self.changed = False  # a round applied deltas: the state is no longer the state query's

    def run(self) -> int | None:
        """Catch the state up; the stamp it is complete at, or None when it could not be told
        (the state then unchanged, or given up: ``changed`` says which)."""
        snapshot = self.snapshot
        try:
            for _ in range(_ROUNDS):
                found = self._written(snapshot.stamp)
                if found is None:
                    return None
                stamp, rows = found
                if not rows:
                    return stamp  # nothing the answer reads changed since the state's stamp
                if not self._round(rows, stamp):
                    return None
            self.stats.incr("catchup:rounds")
            return None
        finally:
            snapshot.end()

    def _written(self, since: int) -> tuple[int, dict[str, set[object]]] | None:
        """The stamp now and the rows of the read's relations written since ``since``; None when
        some write is unknown or under way, or the store failed."""
        assert self.store is not None
        waited = 0.0
        while True:
            try:
                stamp, logs = self.store.catchup(self.version_keys, since)
            except Exception:  # noqa: BLE001 - fail open
                self.session.context.store_failed()
                return None
            if logs != "pending" or waited >= _PENDING_WAIT_S:
                break
            time.sleep(_PENDING_POLL_S)  # a write between its two phases: its rows are logged at the second
            waited += _PENDING_POLL_S
        if isinstance(logs, str):
            self.stats.incr(f"catchup:{logs}")
            return None
        rows: dict[str, set[object]] = {}
        try:
            for payloads in logs.values():
                for payload in payloads:
                    for relation, key in decode(payload).rows:
                        if relation in self.pks:
                            rows.setdefault(str(relation), set()).add(key)
        except (CorruptEntry, ValueError, TypeError):
            self.stats.incr("catchup:corrupt_log")
            return None
        return stamp, rows

    def _round(self, rows: dict[str, set[object]], stamp: int) -> bool:
        """Recompute the rows written since the snapshot's stamp in it and in a new one pinned now."""
        if len(rows) > 2:
            self.stats.incr("catchup:relations")  # three relations at once: not decided here
            return False
        keys = {relation: sorted(found, key=repr) for relation, found in rows.items()}
        if sum(map(len, keys.values())) > _MAX_KEYS:
            self.stats.incr("catchup:too_many_rows")
            return False
        snapshot = self.snapshot
        try:
            before = self._contributions(keys)
            snapshot.end()
            snapshot.pin()
        except Exception:  # noqa: BLE001 - the fill goes on without catching up
            self.stats.incr("catchup:error")
            return False
        # A write that landed between the log's stamp and the pin may be in the new snapshot
        # without being in ``keys``: the round holds only if none did.
        check = self._written(stamp)
        if check is None or check[1]:
            self.stats.incr("catchup:raced")
            return False
        try:
            after = self._contributions(keys)
        except Exception:  # noqa: BLE001 - as above
            self.stats.incr("catchup:error")
            return False
        self.changed = True
        shape = self.shape
        for part, (added, taken) in after.items():
            was, gone = before[part]
            # The rows touching either relation: each one's, less those touching both (counted twice).
            old, new = merged(shape, part, [*was, *taken]), merged(shape, part, [*added, *gone])
            if part < 0:
                apply_groups(self.state, shape, old, new)
            else:
                apply_scalar(self.state, shape, part, old[0] if old else None, new[0] if new else None)
        snapshot.stamp = check[0]
        self.stats.incr("catchup:round")
        return True

    def _contributions(self, keys: dict[str, list[object]]
                       ) -> dict[int, tuple[list[Sequence[object]], list[Sequence[object]]]]:
        """Per part, in the open snapshot: the delta query rows of each relation's keys, and those
        of both relations' keys at once (to be taken away: they are in both)."""
        out: dict[int, tuple[list[Sequence[object]], list[Sequence[object]]]] = {}
        cursor, dialect, shape = self.snapshot.cursor, self.snapshot.dialect, self.shape
        for part in range(-1, len(shape.scalars)):
            added: list[Sequence[object]] = []
            read = []
            for relation, found in sorted(keys.items()):
                sql = shape.delta_sql(part, relation, self.pks[relation], len(found), dialect)
                if sql is not None:
                    added += fetch(cursor, sql, bind(self.params, found))
                    read.append((relation, found))
            both: list[Sequence[object]] = []
            if len(read) == 2:
                (first, one), (second, two) = read
                sql = shape.pair_delta_sql(part, (first, self.pks[first], len(one)),
                                           (second, self.pks[second], len(two)), dialect)
                if sql is None:
                    raise Unmaintainable("relations")
                both = fetch(cursor, sql, bind(self.params, one, two))
            if read:
                out[part] = (added, both)
        return out


def caught_up(session: Session, shape: Shape, params: Sequence[object], version_keys: Sequence[str],
              pks: dict[str, str], snapshot: Snapshot, state: State) -> tuple[list[tuple[object, ...]], int] | None:
    """The fill's rows after catching its state up, and the stamp the state is complete at (the
    state query's own when no round could run); None when a round failed halfway through (the
    state cannot be stored)."""
    catch = CatchUp(session, shape, params, version_keys, pks, snapshot, state)
    try:
        stamp = catch.run()
    except Exception as exc:  # noqa: BLE001 - a catch-up that cannot finish never fails the read
        reason = exc.reason if isinstance(exc, Unmaintainable) else "error"
        session.context.stats.maintain.incr(f"catchup:{reason}")
        return None
    if catch.changed:
        session.context.stats.maintain.incr("caught_up")
    return derive(state, shape, params), snapshot.stamp if stamp is None else stamp
