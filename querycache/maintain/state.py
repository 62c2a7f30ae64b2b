"""The state of a maintained answer: its groups' aggregates, and the rows derived from them.

Per group (its key: the GROUP BY values) the state keeps, for each aggregate, its value and
the count of its non-NULL inputs, plus the group's ``COUNT(*)``; per scalar subquery its value
and count. A write's delta is ``after - before`` of the same columns over the rows it touched;
a group whose ``COUNT(*)`` falls to 0 is gone, a SUM whose count falls to 0 is NULL. The rows
the application reads are derived from the state: projected, ordered and sliced here
(docs/maintenance.md, "Deriving the rows").

Everything this module cannot do exactly raises ``Unmaintainable`` (floats, mixed numeric
scales, text ordered by a collation, ...): the entry is then invalidated as it always was.
"""

from __future__ import annotations

import datetime as dt
import decimal
import heapq
import operator
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import msgpack

from querycache.codec import CorruptEntry, Result, decode, encode
from querycache.invalidation.rows import Source, resolve
from querycache.maintain.shape import Shape

_STATE_FORMAT = 1
_CHECKED_ROWS = 64  # rows of a fill whose derivation is compared with the database's own columns
_EXACT = decimal.Context(prec=400, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])
_ORDERABLE = (int, decimal.Decimal, dt.date, dt.datetime, dt.time, dt.timedelta, bool)


class Unmaintainable(Exception):
    """This entry cannot be maintained exactly; ``reason`` is counted in stats."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class State:
    """``groups``: key -> [value, count] per slot, then COUNT(*); ``scalars``: [value, count] per
    scalar part; ``totals``: per output column of kind "total", the type the database gave it
    ("int" or "decimal")."""

    groups: dict[tuple[object, ...], list[object]]
    scalars: list[list[object]]
    totals: dict[int, str]

    def encode(self) -> bytes:
        """Columnar: integers as they are, decimals as their exact text, anything else through the
        codec (a state of 10,000 groups encodes in a few ms; the codec's per-value tags took 35)."""
        header = (len(self.scalars), *(v for pair in self.scalars for v in pair),
                  *(x for item in sorted(self.totals.items()) for x in item))
        rows = [(*key, *values) for key, values in self.groups.items()]
        tags: list[str] = []
        columns: list[object] = []
        for column in zip(*rows, strict=True):
            kinds = set(map(type, column)) - {type(None)}
            if kinds <= {int}:
                tags.append("i")
                columns.append(list(column))
            elif kinds == {decimal.Decimal}:
                tags.append("d")
                columns.append([None if v is None else str(v) for v in column])
            else:
                tags.append("c")
                columns.append(encode(Result(None, [tuple(column)], 0)))
        packed: bytes = msgpack.packb([_STATE_FORMAT, encode(Result(None, [header], 0)), len(rows), tags, columns],
                                      use_bin_type=True)
        return packed

    @staticmethod
    def decode(data: bytes, shape: Shape) -> State:
        try:
            version, header_bytes, count, tags, columns = msgpack.unpackb(data, raw=False)
            if version != _STATE_FORMAT:
                raise Unmaintainable("corrupt_state")
            header = decode(header_bytes).rows[0]
            n = header[0]
            scalars = [[header[1 + 2 * k], header[2 + 2 * k]] for k in range(n)]
            rest = header[1 + 2 * n:]
            totals = {int(rest[i]): str(rest[i + 1]) for i in range(0, len(rest), 2)}
            cols: list[Sequence[object]] = []
            for tag, column in zip(tags, columns, strict=True):
                if tag == "i":
                    cols.append(column)
                elif tag == "d":
                    cols.append([None if v is None else decimal.Decimal(v) for v in column])
                else:
                    cols.append(decode(column).rows[0])
            rows = list(zip(*cols, strict=True)) if cols else [() for _ in range(count)]
            keys = shape.keys
            groups = {tuple(r[:keys]): list(r[keys:]) for r in rows}
        except (CorruptEntry, IndexError, TypeError, ValueError, msgpack.UnpackException) as exc:
            raise Unmaintainable("corrupt_state") from exc
        return State(groups, scalars, totals)


def _type_tag(value: object) -> str:
    if isinstance(value, bool):
        raise Unmaintainable("type")
    if isinstance(value, int):
        return "int"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    raise Unmaintainable("type")


def from_state_rows(shape: Shape, rows: Sequence[Sequence[object]]) -> State:
    """The state read by the state query (its rows: the statement's columns, then the hidden ones)."""
    width, keys, n_slots = shape.width, shape.keys, len(shape.slots)
    hidden = [r[width:] for r in rows]
    for index, values in enumerate(zip(*hidden, strict=True)):
        kinds = set(map(type, values)) - {type(None)}
        if index < keys:
            if kinds & {float, str, bytes, bytearray, memoryview}:
                # Equal under the database's collation may be unequal here (and the reverse).
                raise Unmaintainable("float" if float in kinds else "text_key")
        elif not kinds <= {int, decimal.Decimal}:
            raise Unmaintainable("float" if float in kinds else "type")
        elif decimal.Decimal in kinds and len({v.as_tuple().exponent for v in values
                                              if isinstance(v, decimal.Decimal)}) > 1:
            # A numeric without a fixed scale: after a delete the database's scale is not known here.
            raise Unmaintainable("numeric_scale")
    groups = {tuple(h[:keys]): list(h[keys:keys + 2 * n_slots + 1]) for h in hidden}
    if len(groups) != len(rows):
        raise Unmaintainable("duplicate_group")  # groups the database tells apart and Python does not
    scalars: list[list[object]] = []
    totals: dict[int, str] = {}
    if rows:
        first = hidden[0]
        base = keys + 2 * n_slots + 1
        scalars = [[first[base + 2 * k], first[base + 2 * k + 1]] for k in range(len(shape.scalars))]
        for column, output in enumerate(shape.outputs):
            if output.kind == "total":
                value = rows[0][column]
                if value is None:
                    raise Unmaintainable("null_total")  # its type is unknown
                totals[column] = _type_tag(value)
    elif shape.scalars or any(o.kind == "total" for o in shape.outputs):
        raise Unmaintainable("empty")  # the scalar parts' values were not seen
    return State(groups, scalars, totals)


def _check_key(value: object) -> None:
    if isinstance(value, float):
        raise Unmaintainable("float")
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        # Equal under the database's collation may be unequal here (and the reverse).
        raise Unmaintainable("text_key")


def _number(value: object) -> int | decimal.Decimal | None:
    """``value`` if it is NULL, an integer or a decimal (never a bool)."""
    if value is None or (isinstance(value, (int, decimal.Decimal)) and not isinstance(value, bool)):
        return value
    raise Unmaintainable("float" if isinstance(value, float) else "type")


def _combine(old: object, after: object, before: object) -> int | decimal.Decimal | None:
    """``old + after - before`` exactly (None: no contribution)."""
    if old is None and after is None and before is None:
        return None
    values = old_n, after_n, before_n = _number(old), _number(after), _number(before)
    decimals = [v for v in values if isinstance(v, decimal.Decimal)]
    if decimals and len({v.as_tuple().exponent for v in decimals}) > 1:
        raise Unmaintainable("numeric_scale")  # the database's scale of the result is not known here
    if decimals:
        zero = decimal.Decimal(0).scaleb(decimals[0].as_tuple().exponent)  # type: ignore[arg-type]
        total = _EXACT.add(_EXACT.add(old_n if old_n is not None else zero, after_n if after_n is not None else zero),
                           _EXACT.minus(before_n) if before_n is not None else zero)
        return total
    return (old_n or 0) + (after_n or 0) - (before_n or 0)


def apply_groups(state: State, shape: Shape, before: Iterable[Sequence[object]],
                 after: Iterable[Sequence[object]]) -> None:
    """Add ``after - before`` (rows of the grouped part's delta query) to ``state``."""
    keys = shape.keys
    width = 2 * len(shape.slots) + 1
    deltas: dict[tuple[object, ...], list[list[object]]] = {}
    for sign, rows in ((1, after), (0, before)):
        for row in rows:
            key = tuple(row[:keys])
            for value in key:
                _check_key(value)
            pair = deltas.setdefault(key, [[None] * width, [None] * width])
            pair[sign] = list(row[keys:keys + width])
    for key, (was, now) in deltas.items():
        old = state.groups.get(key)
        if old is None:
            if not shape.grouped:
                raise Unmaintainable("corrupt_state")
            old = [None] * width
        new: list[int | decimal.Decimal | None] = [_combine(o, a, b) for o, a, b in zip(old, now, was, strict=True)]
        for j, slot in enumerate(shape.slots):
            count = new[2 * j + 1] or 0
            if count < 0:
                raise Unmaintainable("negative_count")
            if slot.func == "sum" and count == 0:
                new[2 * j] = None
            elif slot.func == "count":
                new[2 * j] = new[2 * j] or 0
        groups = new[-1] or 0
        if groups < 0:
            raise Unmaintainable("negative_count")
        new[-1] = groups
        if groups == 0 and shape.grouped:
            state.groups.pop(key, None)
        else:
            state.groups[key] = list(new)


def apply_scalar(state: State, shape: Shape, k: int, before: Sequence[object] | None,
                 after: Sequence[object] | None) -> None:
    """Add ``after - before`` (one row each: value, count) to scalar part ``k``."""
    old = state.scalars[k]
    value = _combine(old[0], after[0] if after else None, before[0] if before else None)
    count = _combine(old[1], after[1] if after else None, before[1] if before else None) or 0
    if count < 0:
        raise Unmaintainable("negative_count")
    if shape.scalars[k].func == "sum" and count == 0:
        value = None
    elif shape.scalars[k].func == "count":
        value = count
    state.scalars[k] = [value, count]


def derive(state: State, shape: Shape, params: object) -> list[tuple[object, ...]]:
    """The rows the statement returns for ``state``: projected, ordered, offset and limited."""
    return order(project(state, shape), shape, params)


def project(state: State, shape: Shape) -> list[tuple[object, ...]]:
    """The statement's columns of every group, in the state's order."""
    keys = shape.keys
    width = 2 * len(shape.slots) + 1
    consts: list[object] = []
    indices: list[int] = []
    for column, output in enumerate(shape.outputs):
        if output.kind == "key":
            indices.append(output.index)
        elif output.kind == "slot":
            indices.append(keys + 2 * output.index)
        else:
            indices.append(keys + width + len(consts))
            consts.append(_total(state, output.index, state.totals.get(column)) if output.kind == "total"
                          else state.scalars[output.index][0])
    tail = tuple(consts)
    if len(indices) == 1:
        only = indices[0]
        return [((*key, *values, *tail)[only],) for key, values in state.groups.items()]
    pick = operator.itemgetter(*indices)
    return [pick((*key, *values, *tail)) for key, values in state.groups.items()]


def _total(state: State, slot: int, tag: str | None) -> object:
    """SUM(<slot>) OVER (): the slot summed over every group, in the type the database gave it."""
    # Not narrowed here: a value of another type fails as it always did (a corrupt state).
    found: list[Any] = [v[2 * slot] for v in state.groups.values() if v[2 * slot] is not None]
    total: Any = None
    for value in found:
        total = value if total is None else _EXACT.add(total, value) if isinstance(value, decimal.Decimal) \
            or isinstance(total, decimal.Decimal) else total + value
    if total is not None and tag == "decimal":
        return decimal.Decimal(total)
    if total is not None and not isinstance(total, int):
        raise Unmaintainable("type")
    return total


def order(rows: list[tuple[object, ...]], shape: Shape, params: object) -> list[tuple[object, ...]]:
    """``rows`` in the statement's ORDER BY, then its OFFSET and LIMIT."""
    offset = _count(shape.offset, params) or 0
    limit = _count(shape.limit, params)
    fast = _top(rows, shape, offset, limit)
    if fast is not None:
        return fast
    for key in reversed(shape.order):
        c = key.column
        nulls = [r for r in rows if r[c] is None]
        present = [r for r in rows if r[c] is not None]
        for r in present:
            if not isinstance(r[c], _ORDERABLE):
                raise Unmaintainable("text_order" if isinstance(r[c], str) else "order_type")
        try:
            present.sort(key=operator.itemgetter(c), reverse=key.desc)
        except TypeError as exc:
            raise Unmaintainable("order_type") from exc
        rows = nulls + present if key.nulls_first else present + nulls
    if offset or limit is not None:
        rows = rows[offset:] if limit is None else rows[offset:offset + limit]
    return rows


def _top(rows: list[tuple[Any, ...]], shape: Shape, offset: int, limit: int | None) -> list[tuple[object, ...]] | None:
    """The ordered window in one pass (``heapq.nsmallest`` is ``sorted(...)[:n]``, stable) when
    every sort value is a number, none NULL (descending: negated, exactly); None otherwise."""
    if limit is None or not shape.order:
        return None
    columns = [o.column for o in shape.order]
    for c in columns:
        if not set(map(type, (r[c] for r in rows))) <= {int, decimal.Decimal}:
            return None
    signs = [-1 if o.desc else 1 for o in shape.order]
    if len(columns) == 1:
        (c1,), (s1,) = columns, signs
        best = heapq.nsmallest(offset + limit, rows, key=lambda r: r[c1] * s1)
    elif len(columns) == 2:
        (c1, c2), (s1, s2) = columns, signs
        best = heapq.nsmallest(offset + limit, rows, key=lambda r: (r[c1] * s1, r[c2] * s2))
    else:
        pairs = list(zip(columns, signs, strict=True))
        best = heapq.nsmallest(offset + limit, rows, key=lambda r: tuple(r[c] * s for c, s in pairs))
    return best[offset:]


def _count(source: Source | None, params: object) -> int | None:
    if source is None:
        return None
    try:
        value = resolve(source, params)
    except (LookupError, TypeError) as exc:
        raise Unmaintainable("limit") from exc
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unmaintainable("limit")
    return value


def check_fill(state: State, shape: Shape, rows: Sequence[Sequence[object]],
               projected: list[tuple[object, ...]] | None = None) -> None:
    """The state's projection must give back the database's own columns (checked on the first
    rows and the count: the rest come from the same hidden columns the same way)."""
    derived = (projected if projected is not None else project(state, shape))[:_CHECKED_ROWS]
    if len(state.groups) != len(rows) or any(repr(d) != repr(tuple(r[:shape.width]))
                                             for d, r in zip(derived, rows, strict=False)):
        raise Unmaintainable("fill_mismatch")
