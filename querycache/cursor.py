"""CachedCursor: the PEP 249 cursor, with the L1 fast path inline in ``execute``.

A cached answer has the same rows, types, ``description`` and ``rowcount`` as a live one;
``cache_status`` says where it came from. Reads below L1 are ``querycache.read``'s, other
statements ``querycache.write``'s.
"""

from __future__ import annotations

from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, Hashable, Iterator, Sequence

from querycache.analysis import ALL_TABLES, StatementKind
from querycache.driver_methods import CopyBlock, DriverMethod
from querycache.keys import _SIMPLE, UnsupportedParam, l1_params
from querycache.l1 import HitPath
from querycache.read import ReadPath, l1_fresh
from querycache.serving import _set, private_copy
from querycache.status import HIT_L1, BypassReason
from querycache.write import WritePath

if TYPE_CHECKING:
    from querycache.connection import CachedConnection
    from querycache.session import Session

# psycopg execute() options that change how, not what, a result is fetched.
_RESULT_NEUTRAL_OPTIONS = frozenset({"prepare", "binary"})


def _params_key(params: Any) -> Hashable | None:
    try:
        return l1_params(params)
    except UnsupportedParam:
        return None


class CachedCursor(ReadPath, WritePath):
    """A PEP 249 cursor; ``cache_status`` tells where the last result came from."""

    def __init__(self, conn: CachedConnection, session: Session, raw: Any) -> None:
        super().__init__(conn, session, raw)
        # The L1 hit path, chosen once: what it reads that cannot change while the cursor lives.
        _set(self, "_hot", HitPath(session, raw, self._st) if session.l1 is not None else None)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __repr__(self) -> str:
        return f"<querycache.CachedCursor status={self._st.status!r} wrapping {self._raw!r}>"

    @property
    def wrapped(self) -> Any:
        return self._raw

    @property
    def cache_status(self) -> str | None:
        """``None`` before the first execute; then ``hit:L1``, ``miss``, ``bypass:<reason>``..."""
        return self._st.status

    @property
    def connection(self) -> CachedConnection:
        return self._conn

    # -- results ------------------------------------------------------------------------
    @property
    def description(self) -> Any:
        if not self._st.served:
            return self._raw.description
        description = self._st.result.description
        return list(description) if type(description) is list else description

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount) if not self._st.served else self._st.result.rowcount

    @property
    def lastrowid(self) -> Any:
        return self._raw.lastrowid if not self._st.served else self._st.result.lastrowid

    @property
    def arraysize(self) -> int:
        return int(self._raw.arraysize)

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._raw.arraysize = value

    def fetchone(self) -> Any:
        st = self._st
        if st.live:
            return self._raw.fetchone()
        rows, pos = st.rows, st.pos
        if pos < len(rows):
            st.pos = pos + 1
            return rows[pos]
        if st.served:
            return None
        st.live = True  # a buffered prefix is exhausted: the rest comes from the database
        return self._raw.fetchone()

    def fetchmany(self, size: int | None = None) -> Any:
        if size is None:
            size = self.arraysize
        st = self._st
        if st.live:
            return self._raw.fetchmany(size)
        rows, pos = st.rows, st.pos
        out = rows[pos:pos + size]
        st.pos = pos + len(out)
        if len(out) < size and not st.served:
            st.live = True
            out += list(self._raw.fetchmany(size - len(out)))
        container = st.container
        return out if container is list else container(out)

    def fetchall(self) -> Any:
        st = self._st
        if st.live:
            return self._raw.fetchall()
        rows, pos = st.rows, st.pos
        out = rows[pos:] if pos else rows[:]
        st.pos = len(rows)
        if not st.served:
            st.live = True
            out += list(self._raw.fetchall())
        container = st.container
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
        self._st.rows = []
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
        if self._st.served:
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
        if args or type(sql) is not str or (kwargs and not _RESULT_NEUTRAL_OPTIONS.issuperset(kwargs)):
            return self._execute_uncached(sql, params, args, kwargs, BypassReason.UNKNOWN)
        hot = self._hot  # the one attribute of the cursor read (its class's __getattr__ makes them slow)
        if hot is None:  # no L1 on this connection
            session = self._session
            self._st.options = kwargs
            return self._execute_slow(sql, params, session.adapter.in_transaction(session.raw))
        st = hot.st
        session = hot.session
        in_tx = hot.in_transaction(hot.raw_conn)
        tx = hot.tx
        # L1 fast path: no parsing, no I/O. Entries exist only for cacheable reads of this scope.
        if (tx.open and tx.tracked and not tx.dirty if in_tx else not tx.open) and not session.temp_scoped:
            # The L1-hit latency histogram samples 1 call in 64: two clock reads on every hit would
            # cost more than the rest of the stats.
            sampled = not next(hot.ticks) & 63
            started = perf_counter() if sampled else 0.0
            if type(params) is tuple:  # keys.l1_params, inline for the common case
                types = tuple(map(type, params))
                pkey = (params, types) if _SIMPLE.issuperset(types) else _params_key(params)
            else:
                pkey = _params_key(params)
            if pkey is not None:
                key = (session.scope_id, hot.tenant(), hot.shape(hot.raw_cursor), sql, pkey)
                entry = hot.get(key)
                if entry is not None:
                    if in_tx or session.reads_open_tx:
                        fresh = l1_fresh(session, entry, in_tx)  # the transaction's rules
                    elif entry.epoch != hot.backend.l1_epoch or entry.expires_at <= monotonic():
                        fresh = False
                    else:  # read.mirror_fresh, inline (a read of one table has four version keys:
                        # every table, the catalog, the table, its rows; map/max in C measured slower)
                        fresh = True
                        get, stamp = hot.versions.get, entry.stamp
                        for k in entry.version_keys:
                            version = get(k)
                            if version is None or version > stamp:
                                fresh = False
                                break
                    if fresh:
                        try:
                            hot.touch(key)  # LRU order
                        except KeyError:  # removed by another thread since the get
                            pass
                        if not in_tx and session.reads_open_tx:
                            session.open_tx_for_hit()
                        result = entry.result
                        st.status = HIT_L1
                        st.rows = private_copy(result.rows) if result.mutable_cells else result.rows
                        st.pos = 0
                        st.live = False
                        st.served = True
                        st.result = result
                        next(hot.hits)
                        fp = entry.fp
                        if fp is not None:  # None when stats are off
                            next(fp.hits)
                            if sampled:
                                hot.latency.observe(perf_counter() - started)
                        returns = hot.returns
                        return self if returns == "cursor" else result.rowcount if returns == "rowcount" else None
        st.options = kwargs  # sent on with the statement (a hit sends nothing)
        return self._execute_slow(sql, params, in_tx)

    def _execute_uncached(self, sql: Any, params: Any, args: tuple[object, ...], kwargs: dict[str, object],
                          reason: BypassReason) -> object:
        """Statements the wrapper cannot analyze (non-text SQL objects...): a write to everything."""
        session = self._session
        self._start_bypass(reason)
        call_args = (sql,) if params is None and not args and not kwargs else (sql, params, *args)
        self._st.returned = session.run_write(
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

        self._st.returned = session.run_write(keys, action, False)
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
