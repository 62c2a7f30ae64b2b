"""CachedCursor: the PEP 249 cursor, with the L1 fast path inline in ``execute``.

A cached answer has the same rows, types, ``description`` and ``rowcount`` as a live one;
``cache_status`` says where it came from. Reads below L1 are ``querycache.read``'s, other
statements ``querycache.write``'s.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from querycache.analysis import ALL_TABLES, StatementKind
from querycache.driver_methods import CopyBlock, DriverMethod
from querycache.keys import UnsupportedParam, l1_params
from querycache.read import ReadPath, l1_fresh
from querycache.serving import _set
from querycache.status import HIT_L1, BypassReason
from querycache.write import WritePath

if TYPE_CHECKING:
    from querycache.connection import CachedConnection

# psycopg execute() options that change how, not what, a result is fetched.
_RESULT_NEUTRAL_OPTIONS = frozenset({"prepare", "binary"})


class CachedCursor(ReadPath, WritePath):
    """A PEP 249 cursor; ``cache_status`` tells where the last result came from."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

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
        container = self._session.adapter.rows_container
        return out if container is list else container(out)

    def fetchall(self) -> Any:
        if self._live:
            return self._raw.fetchall()
        rows, pos = self._rows, self._pos
        out = rows[pos:] if pos else rows[:]
        _set(self, "_pos", len(rows))
        if not self._served:
            self._live = True
            out += list(self._raw.fetchall())
        container = self._session.adapter.rows_container
        return out if container is list else container(out)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    @DriverMethod
    def __enter__(self) -> CachedCursor:
        return self

    @DriverMethod
    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._rows = []
        self._raw.close()

    def setinputsizes(self, sizes: object) -> None:
        method = getattr(self._raw, "setinputsizes", None)
        if method is not None:
            method(sizes)

    @DriverMethod
    def setoutputsize(self, size: object, column: object = None) -> None:
        method = self._raw.setoutputsize
        method(size) if column is None else method(size, column)

    @DriverMethod
    def nextset(self) -> Any:
        if self._served:
            return None
        return self._raw.nextset()

    @DriverMethod
    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Any:
        """Never cached: a procedure may write anything."""
        session = self._session
        self._start_bypass(BypassReason.CALLPROC)
        return session.run_write({session.version_key(ALL_TABLES)},
                                 lambda: self._raw.callproc(procname, parameters), False)

    # -- execute ------------------------------------------------------------------------
    def execute(self, sql: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        session = self._session
        if args or type(sql) is not str or (kwargs and not _RESULT_NEUTRAL_OPTIONS.issuperset(kwargs)):
            return self._execute_uncached(sql, params, args, kwargs, BypassReason.UNKNOWN)
        _set(self, "_options", kwargs)
        in_tx = session.adapter.in_transaction(session.raw)
        tx = session.tx
        l1 = session.l1
        # L1 fast path: no parsing, no I/O. Entries exist only for cacheable reads of this scope.
        if l1 is not None and (tx.open and tx.tracked and not tx.dirty if in_tx else not tx.open) and (
                not session.temp_scoped):
            # The L1-hit latency histogram samples 1 call in 64: two clock reads on every hit would
            # cost more than the rest of the stats.
            stats = session.context.stats
            sampled = not next(stats.l1_ticks) & 63
            started = time.perf_counter() if sampled else 0.0
            try:
                pkey = l1_params(params)
            except UnsupportedParam:
                pkey = None
            if pkey is not None:
                key = (session.scope_id, session.context.tenant.get(), session.adapter.shape_token(self._raw), sql,
                       pkey)
                entry = l1.get(key)
                if entry is not None and l1_fresh(session, entry, in_tx):
                    if not in_tx and session.reads_open_tx:
                        session.open_tx_for_hit()
                    self._serve(entry.result, HIT_L1)
                    next(stats.hits["l1"])
                    fp = entry.fp
                    if fp is not None:  # None when stats are off
                        next(fp.hits)
                        if sampled:
                            stats.latency["l1"].observe(time.perf_counter() - started)
                    return self._result()
        return self._execute_slow(sql, params, in_tx)

    def _execute_uncached(self, sql: Any, params: Any, args: tuple[object, ...], kwargs: dict[str, object],
                          reason: BypassReason) -> object:
        """Statements the wrapper cannot analyze (non-text SQL objects...): a write to everything."""
        session = self._session
        self._start_bypass(reason)
        call_args = (sql,) if params is None and not args and not kwargs else (sql, params, *args)
        self._returned = session.run_write(
            {session.version_key(ALL_TABLES)}, lambda: self._raw.execute(*call_args, **kwargs), False
        )
        return self._result()

    def _execute_slow(self, sql: str, params: Any, in_tx: bool) -> object:
        session = self._session
        analysis = session.analyzer(sql)
        if analysis.hints.warnings:
            for _ in analysis.hints.warnings:
                next(session.context.stats.hint_warnings)
        tx = session.tx
        if in_tx and not tx.open:
            tx.began_unseen()  # began outside the wrapper's sight
        elif not in_tx and tx.open:
            session.reconcile(True, ended_by_commit=True)  # ended outside the wrapper's sight
        if analysis.kind is StatementKind.READ:
            return self._read(analysis, sql, params, in_tx)
        if analysis.kind is StatementKind.TRANSACTION:
            return self._transaction_statement(analysis, sql, params, in_tx)
        if analysis.kind in (StatementKind.SESSION, StatementKind.OTHER) and not analysis.is_write:
            return self._session_statement(analysis, sql, params, in_tx)
        return self._write(analysis, sql, params, in_tx)

    def executemany(self, sql: Any, seq_of_params: Any, *args: Any, **kwargs: Any) -> Any:
        session = self._session
        if type(sql) is not str or args or kwargs:
            keys = {session.version_key(ALL_TABLES)}
            self._start_bypass(BypassReason.UNKNOWN)
        else:
            analysis = session.analyzer(sql)
            reason = analysis.reason if analysis.kind is not StatementKind.READ else BypassReason.WRITE
            self._start_bypass(reason or BypassReason.WRITE)
            # A read run many times has no single result to cache; it still ran on the database.
            keys = session.write_keys(analysis) if analysis.kind is not StatementKind.READ else set()

        def action() -> object:
            try:
                return self._raw.executemany(sql, seq_of_params, *args, **kwargs)
            finally:
                session.adapter.after_statement(session.raw)

        self._returned = session.run_write(keys, action, False)
        return self._result()

    @DriverMethod
    def stream(self, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """psycopg ``Cursor.stream``: never cached; a write is tracked like ``execute``."""
        session = self._session
        keys = session.statement_write_keys(query, reads_are_writes=False)
        if not keys:
            yield from self._raw.stream(query, params, *args, **kwargs)
            return
        rows = session.run_write(keys, lambda: list(self._raw.stream(query, params, *args, **kwargs)), False)
        yield from rows

    # -- psycopg / psycopg2 extras that write ------------------------------------------------
    @DriverMethod
    def copy(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        """psycopg ``Cursor.copy``: COPY FROM writes its table; tracked like any write."""
        session = self._session
        keys = session.statement_write_keys(statement)
        return CopyBlock(session, keys, self._raw.copy(statement, *args, **kwargs))

    @DriverMethod
    def copy_expert(self, sql: Any, file: Any, *args: Any, **kwargs: Any) -> Any:
        session = self._session
        keys = session.statement_write_keys(sql)
        return session.run_write(keys, lambda: self._raw.copy_expert(sql, file, *args, **kwargs), False)

    @DriverMethod
    def copy_from(self, file: Any, table: str, *args: Any, **kwargs: Any) -> Any:
        session = self._session
        keys = session.write_keys(session.analyzer(f"DELETE FROM {table}"))
        return session.run_write(keys, lambda: self._raw.copy_from(file, table, *args, **kwargs), False)
