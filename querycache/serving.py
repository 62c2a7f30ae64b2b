"""ServingCursor: what a cursor hands out, the driver's live rows or a cached result.

The state and primitives the read and write paths share: set the status, serve a result,
run a statement on the database with the transaction stamp taken before it, and what
``execute`` returns. The PEP 249 surface over them is ``querycache.cursor.CachedCursor``.
"""

from __future__ import annotations

import copy
import time
from itertools import chain
from typing import TYPE_CHECKING, Any, Sequence

from querycache.analysis import Analysis
from querycache.codec import Result
from querycache.stats import Fingerprint
from querycache.status import BypassReason

if TYPE_CHECKING:
    from querycache.connection import CachedConnection
    from querycache.semantic.canonical import Output
    from querycache.session import Session

_set = object.__setattr__  # internal state of the wrappers, without their pass-through __setattr__
_MUTABLE = frozenset({list, dict, bytearray, set})
NO_RESULT = Result(None, [], -1)


class CursorState:
    """What a cursor hands out now: the driver's live rows or a served result, and the last
    statement's status. One small object of the cursor's own, so that a hit sets it with plain
    attribute stores (the cursor's ``__setattr__`` forwards every other name to the driver's)."""

    __slots__ = ("container", "fp", "live", "options", "pos", "result", "returned", "rows", "served", "status")

    def __init__(self, container: type = list) -> None:
        self.container = container  # how the driver hands back several rows (DriverAdapter.rows_container)
        self.status: str | None = None
        self.rows: list[Any] = []
        self.pos = 0
        self.live = True  # rows come from the driver's cursor (after any buffered prefix)
        self.served = False  # the rows are a served result's, all of them
        self.result: Result = NO_RESULT  # the served result (description, rowcount, lastrowid)
        self.options: dict[str, object] = {}  # execute()'s keyword options, sent on as they came
        self.returned: object = None  # what the driver's execute returned
        self.fp: Fingerprint | None = None  # the statement's stats record, while it runs


class ServingCursor:
    """The cursor's own state; every other attribute set on a cursor goes to the driver's."""

    _own = frozenset({"_conn", "_session", "_raw", "_st", "_hot", "__weakref__"})
    _raw: Any  # the driver's cursor
    _conn: CachedConnection
    _session: Session
    _st: CursorState

    def __init__(self, conn: CachedConnection, session: Session, raw: Any) -> None:
        _set(self, "_raw", raw)
        _set(self, "_conn", conn)
        _set(self, "_session", session)
        _set(self, "_st", CursorState(session.adapter.rows_container))

    def __setattr__(self, name: str, value: object) -> None:
        if name in ServingCursor._own:
            _set(self, name, value)
        else:
            setattr(self._raw, name, value)

    def _start_bypass(self, reason: BypassReason, analysis: Analysis | None = None) -> None:
        """The statement runs on the database, uncached: set the status and count why."""
        status = f"bypass:{reason.value}"
        self._begin_live(status)
        self._session.context.stats.bypasses.incr(reason.value)
        self._record(analysis, status)

    def _record(self, analysis: Analysis | None, status: str) -> None:
        """Count the call in its fingerprint's row (unless stats are off); keep the row at hand."""
        context = self._session.context
        fp = None
        if analysis is not None and context.stats_enabled:
            fp = context.stats.record_fingerprint(analysis.fingerprint, analysis.normalized, status)
        self._st.fp = fp

    def _begin_live(self, status: str) -> None:
        st = self._st
        st.status = status
        st.live = True
        st.served = False
        st.rows = []
        st.pos = 0

    def _serve(self, result: Result, status: str) -> None:
        st = self._st
        st.status = status
        st.rows = private_copy(result.rows) if result.mutable_cells else result.rows
        st.pos = 0
        st.live = False
        st.served = True
        st.result = result

    def _send(self, sql: str, params: object) -> object:
        """Send the statement to the driver as the application gave it (its execute options too)."""
        options = self._st.options
        if options:
            self._st.returned = self._raw.execute(sql, params, **options)
        else:
            self._st.returned = self._raw.execute(sql) if params is None else self._raw.execute(sql, params)
        return self._st.returned

    def _execute_tracked(self, sql: str, params: object) -> object:
        """Run the statement on the database, with a transaction stamp taken before it when it may
        start a snapshot, and the driver's transaction state read after it."""
        session = self._session
        adapter, raw_conn = session.adapter, session.raw
        was_in_tx = adapter.in_transaction(raw_conn)
        candidate = session.stamp_candidate() if was_in_tx or not adapter.autocommit(raw_conn) else None
        try:
            self._send(sql, params)
        except BaseException:
            # The transaction may be aborted (PostgreSQL) or rolled back (a MySQL deadlock):
            # the answers its writes maintained so far are invalidated at its end instead.
            session.tx.rolled_back_to_savepoint("statement_failed")
            raise
        finally:
            adapter.after_statement(raw_conn)
            session.adopt_stamp(candidate, was_in_tx)
            session.tx.ran = True
        return self._st.returned

    def _result(self) -> object:
        """What ``execute`` returns: the driver's own answer, with its cursor replaced by this one."""
        if self._st.served:
            style = self._session.adapter.execute_returns
            return self if style == "cursor" else self._st.result.rowcount if style == "rowcount" else None
        returned = self._st.returned
        return self if returned is self._raw else returned

    def _bypass(self, analysis: Analysis, sql: str, params: object, reason: BypassReason) -> object:
        session = self._session
        self._start_bypass(reason, analysis)
        in_tx = session.adapter.in_transaction(session.raw)
        started = time.perf_counter()
        try:
            self._execute_tracked(sql, params)
        finally:
            elapsed = time.perf_counter() - started
            session.context.stats.latency["bypass"].observe(elapsed)
            if self._st.fp is not None:
                self._st.fp.ran(elapsed)
            session.reconcile(in_tx, ended_by_commit=True)
        return self._result()


def has_mutable_parts(rows: list[Any]) -> bool:
    """Whether a caller could change a cached result by mutating the rows it was handed."""
    row_type = type(rows[0])
    if issubclass(row_type, tuple) or (row_type.__name__ == "Row" and row_type.__module__ == "sqlite3"):
        return not _MUTABLE.isdisjoint(map(type, chain.from_iterable(rows)))
    return True


def private_copy(rows: list[Any]) -> list[Any]:
    """A deep copy; memoryview cells (psycopg2's bytea) are copied by value, deepcopy cannot."""
    memo: dict[int, object] = {}
    for row in rows:
        for value in (row.values() if isinstance(row, dict) else row):
            if type(value) is memoryview:
                memo[id(value)] = memoryview(value.tobytes())
    return copy.deepcopy(rows, memo)


def estimate_size(rows: list[Any]) -> int:
    size = 64
    for row in rows:
        size += 56
        for value in (row.values() if isinstance(row, dict) else row):
            size += len(value) + 40 if type(value) in (str, bytes) else 24
    return size


def permuted(result: Result, columns: tuple[int, ...]) -> Result | None:
    """``result`` with its columns in the order ``columns`` gives (rows of plain tuples only)."""
    if result.description is None or any(type(row) is not tuple for row in result.rows):
        return None
    description = tuple(result.description[j] for j in columns)
    rows = [tuple(row[j] for j in columns) for row in result.rows]
    return Result(description, rows, result.rowcount, result.lastrowid, result.mutable_cells)


def names_match(description: Sequence[Any] | None, outputs: tuple[Output, ...]) -> bool:
    """A last check of an L3 answer: each output column whose name the statement fixes has it."""
    if any(output.name == "*" for output in outputs):
        return description is not None  # a * expands to columns the statement does not name
    if description is None or len(description) != len(outputs):
        return not outputs and description is None
    for column, output in zip(description, outputs, strict=True):
        if output.name is not None and output.name != "*" and str(column[0]).lower() != output.name.lower():
            return False
    return True
