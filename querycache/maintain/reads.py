"""Maintained answers, the read side: which reads fill with a state query, and their registry
(docs/maintenance.md, "Filling")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from querycache.codec import Result
from querycache.drivers.base import DBAPICursor
from querycache.maintain.catchup import can_catch_up, caught_up, open_snapshot
from querycache.maintain.shape import Refused, Shape, bind, shape_of
from querycache.maintain.state import State, Unmaintainable, check_fill, from_state_rows, order, project
from querycache.maintain.writes import scope_of, spec_of

if TYPE_CHECKING:
    from querycache.session import Session

_MAX_REFUSED = 4096


def maintainable_shape(session: Session, sql: str, params: object) -> Shape | None:
    """The shape of a read that fills with a state query (None: it fills as any other read)."""
    context = session.context
    refused = context.maintain_refused
    if sql in refused or (params is not None and not isinstance(params, (list, tuple))):
        return None
    analyzer = session.analyzer
    catalog, _ = session.catalog()
    try:
        shape = shape_of(sql, analyzer.dialect, analyzer.paramstyle, frozenset(catalog.read_deps))
        if catalog.row_security_of(set(shape.tables)):
            raise Refused("row_security")  # a writer's delta would see its own rows, not the reader's
        return shape
    except Refused as exc:
        context.stats.maintain.incr(f"refused:{exc.reason}")
        not_maintainable(session, sql, exc.reason)
        return None


def maintainability(session: Session, sql: str, params: object) -> dict[str, object]:
    """For ``explain``: whether writes update this read's cached answer, or why not."""
    found = session.context.maintain_refused.get(sql)
    if found is not None:
        return {"maintainable": False, "reason": found}
    if params is not None and not isinstance(params, (list, tuple)):
        return {"maintainable": False, "reason": "named_parameters"}
    analyzer = session.analyzer
    catalog, _ = session.catalog()
    try:
        shape = shape_of(sql, analyzer.dialect, analyzer.paramstyle, frozenset(catalog.read_deps))
    except Refused as exc:
        return {"maintainable": False, "reason": exc.reason}
    return {"maintainable": True, "relations": sorted(shape.relations)}


def not_maintainable(session: Session, sql: str, reason: str) -> None:
    """Remember that ``sql`` is not maintainable (bounded): its next misses run it as written."""
    refused = session.context.maintain_refused
    if len(refused) >= _MAX_REFUSED:
        refused.clear()
    refused[sql] = reason


def derive_fill(shape: Shape, rows: Sequence[Sequence[object]], params: object, max_groups: int
                ) -> tuple[list[tuple[object, ...]], State] | str:
    """The statement's rows and the state from the state query's rows, or why not."""
    if rows and type(rows[0]) is not tuple:
        return "row_type"
    if len(rows) > max_groups:
        return "state_size"  # a state query has a row per group
    try:
        state = from_state_rows(shape, rows)
        projected = project(state, shape)
        check_fill(state, shape, rows, projected)
        return order(projected, shape, params), state
    except Unmaintainable as exc:
        return exc.reason
    except Exception:  # noqa: BLE001 - unhashable keys, NaN, unencodable values: not maintained
        return "error"


_NUMERIC = 1700  # PostgreSQL's numeric


def _keys_of_varying_scale(session: Session, shape: Shape, raw_cursor: DBAPICursor) -> bool:
    """Whether a group key is a PostgreSQL numeric of no declared scale (an unconstrained column,
    an expression). Its values may differ in scale within one group (1.50 and 1.5 are one group),
    and the database shows the key as one of the group's rows has it: the state cannot tell which
    once rows come and go (docs/maintenance.md, "Which reads are maintained")."""
    if session.adapter.dialect != "postgres":
        return False  # MySQL/MariaDB give a DECIMAL the scale of its type
    description = raw_cursor.description or ()
    for column in description[shape.width:shape.width + shape.keys]:
        scale = column[5] if len(column) > 5 else None
        # psycopg: None without a declared scale; psycopg2: 65535 (typmod -1)
        if column[1] == _NUMERIC and not (isinstance(scale, int) and 0 <= scale <= 1000):
            return True
    return False


def register_maintained(session: Session, sql: str, params: object, version_keys: tuple[str, ...], key: str,
                        scope_key: str) -> None:
    """Tell writers of the read's tables (in any process) that ``key`` holds a maintained answer."""
    if params is not None and not isinstance(params, (list, tuple)):
        return  # named parameters: not maintainable (as maintainable_shape says)
    context = session.context
    store = context.maintain
    shape = maintainable_shape(session, sql, params)
    if store is None or shape is None:
        return
    try:
        store.register_maintained([session.version_key(t) for t in sorted(shape.tables)], key,
                                  spec_of(sql, params, version_keys, scope_of(session, scope_key)))
        context.stats.maintain.incr("fills")
    except Exception:  # noqa: BLE001 - fail open: the entry is invalidated by writes as any other
        context.store_failed()


def run_state_query(session: Session, execute: Callable[[str, dict[str, object]], object], raw_cursor: DBAPICursor,
                    sql: str, params: object, version_keys: Sequence[str]) -> tuple[Result, bytes, int | None] | None:
    """A maintainable read's state query in place of its statement (run by ``execute`` on
    ``raw_cursor``): the rows the statement returns, the state they come from, and the stamp to
    fill at when the fill was caught up with writes that landed meanwhile (docs/maintenance.md,
    "Fills under writes"; None: the read's own); None: run the statement itself. Called outside
    the application's transactions only."""
    if params is not None and not isinstance(params, (list, tuple)):
        return None  # named parameters: not maintainable (as maintainable_shape says)
    shape = maintainable_shape(session, sql, params)
    if shape is None:
        return None
    stats = session.context.stats.maintain
    pks = can_catch_up(session, shape)
    store = session.context.maintain
    snapshot = None
    if pks is not None and store is not None:
        snapshot = open_snapshot(session, store, version_keys, [session.version_key(t) for t in sorted(shape.tables)])
    cursor = raw_cursor if snapshot is None else snapshot.cursor
    try:
        try:
            if snapshot is None:
                execute(shape.state_sql, bind(params))
            else:
                cursor.execute(shape.state_sql, bind(params))
            rows = list(cursor.fetchall())
        except Exception:  # noqa: BLE001 - the statement itself runs instead
            if snapshot is not None:
                snapshot.end()
            elif session.adapter.in_transaction(session.raw):
                session.raw.rollback()  # the transaction the state query opened (never the application's)
            stats.incr("refused:state_query")
            not_maintainable(session, sql, "state_query")
            return None
        description, raw_rowcount = cursor.description, cursor.rowcount
        found = "numeric_key" if _keys_of_varying_scale(session, shape, cursor) else derive_fill(
            shape, rows, params, session.context.config.invalidation.maintain.max_state_groups)
        if isinstance(found, str):
            stats.incr(f"refused:{found}")
            not_maintainable(session, sql, found)
            return None
        derived, state = found
        stamp = None
        if snapshot is not None and pks is not None:
            caught = caught_up(session, shape, params or (), version_keys, pks, snapshot, state)
            if caught is None:
                return None
            derived, stamp = caught
        try:
            encoded = state.encode()
        except Exception as exc:  # noqa: BLE001 - unencodable values: not maintained
            reason = exc.reason if isinstance(exc, Unmaintainable) else "error"
            stats.incr(f"refused:{reason}")
            not_maintainable(session, sql, reason)
            return None
    finally:
        if snapshot is not None:
            snapshot.end()
            snapshot.cursor.close()
    columns = tuple(description[:shape.width]) if description is not None else None
    rowcount = len(derived) if raw_rowcount == len(rows) else raw_rowcount
    return Result(columns, derived, rowcount), encoded, stamp
