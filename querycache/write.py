"""The cursor's statements that are not reads: transaction control, session statements, writes.

Each runs on the database (``bypass:<reason>``) and tells the session what it did: a
transaction began or ended, the scope or isolation changed, tables were written (published
in two phases around the moment they become visible; docs/freshness.md, "Two-phase writes").
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from querycache.analysis import Analysis, StatementKind, TxAction
from querycache.invalidation.row_writes import row_level_write
from querycache.maintain.writes import prepare
from querycache.serving import ServingCursor
from querycache.status import BypassReason


class WritePath(ServingCursor):
    """What ``execute`` does with statements that are not cacheable reads."""

    def _transaction_statement(self, analysis: Analysis, sql: str, params: object, in_tx: bool) -> object:
        session = self._session
        action = analysis.tx_action
        self._start_bypass(BypassReason.SESSION)
        candidate = session.stamp_candidate(analysis.isolation) if action is TxAction.BEGIN else None
        if action is TxAction.BEGIN and in_tx and analysis.implicit_commit:
            candidate = session.current_stamp()
        run: Callable[[], object] = lambda: self._execute_tracked(sql, params)  # noqa: E731
        if action is TxAction.SAVEPOINT and analysis.rolls_back_to_savepoint:
            session.tx.rolled_back_to_savepoint()
        if action is TxAction.COMMIT or (action is TxAction.BEGIN and analysis.implicit_commit and in_tx):
            session.end_transaction(run, committing=True)
        elif action is TxAction.ROLLBACK:
            session.end_transaction(run, committing=False)
        else:
            run()
        if action is TxAction.BEGIN and in_tx and not analysis.implicit_commit:
            pass  # PostgreSQL: BEGIN inside a transaction is a warning; the transaction (and what it wrote) goes on
        elif action is TxAction.BEGIN:
            # The stamp was taken before BEGIN: WITH CONSISTENT SNAPSHOT starts it there.
            session.tx.begin_at_next_isolation(candidate, analysis.isolation)
        return self._result()

    def _session_statement(self, analysis: Analysis, sql: str, params: object, in_tx: bool) -> object:
        session = self._session
        if analysis.implicit_commit and in_tx:
            # MySQL: LOCK TABLES, SET autocommit=1... commit the open transaction first.
            self._start_bypass(analysis.reason or BypassReason.SESSION)
            session.end_transaction(lambda: self._execute_tracked(sql, params), committing=True)
        else:
            self._bypass(analysis, sql, params, analysis.reason or BypassReason.SESSION)
        if analysis.sets_autocommit is not None:
            session.adapter.note_autocommit(session.raw, analysis.sets_autocommit)
            session.note_driver_state()
        upper = analysis.sql.upper()
        if analysis.isolation is not None and "TRANSACTION" in upper and not (
            "SESSION" in upper or "GLOBAL" in upper or "CHARACTERISTICS" in upper
        ):
            # SET TRANSACTION: this transaction's level inside one, the next one's outside.
            session.tx.set_isolation(analysis.isolation, session.in_transaction() and session.tx.open)
        if analysis.changes_scope:
            session.scope_changed()
        return self._result()

    def _write(self, analysis: Analysis, sql: str, params: object, in_tx: bool) -> object:
        session = self._session
        self._start_bypass(analysis.reason or BypassReason.WRITE, analysis)
        keys = session.write_keys(analysis)
        if analysis.creates_temp:
            session.became_temp_scoped()  # reads may now see this connection's own temp table
        if analysis.implicit_commit and in_tx:
            keys |= session.tx.written
        # Maintained answers: the delta queries run around the write, in one transaction with it
        # (the wrapper's own around an autocommit write: the write then goes straight to the driver).
        maintenance = prepare(session, analysis, sql, params, keys, in_tx) if session.context.maintain else None
        own = maintenance is not None and maintenance.own_transaction
        execute = self._send if own else self._execute_tracked
        action: Callable[[], object] = partial(execute, sql, params)
        if session.row_level and analysis.kind is StatementKind.WRITE and not analysis.implicit_commit:
            rows = row_level_write(session, sql, params, keys, in_tx or own)
            if rows is not None:
                keys = rows.keys
                action = partial(rows.run, self._send, execute, self._raw)
        if maintenance is not None:
            publish = partial(session.publisher.around, keys, maintained=maintenance.entries) if own else None
            action = partial(maintenance.run, action, self._raw, publish)
        session.run_write(keys, action, analysis.implicit_commit, analysis.kind is StatementKind.WRITE, maintenance)
        if analysis.kind in (StatementKind.DDL, StatementKind.UNKNOWN, StatementKind.CALL):
            session.catalog_changed()
        return self._result()
