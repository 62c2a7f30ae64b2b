"""The state of a maintained answer: its groups' aggregates, and the rows derived from them.

Per group (its key: the GROUP BY values) the state keeps, for each aggregate, its value, the
count of its non-NULL inputs and (a PostgreSQL SUM) the multiset of their scales (None
otherwise), plus the group's ``COUNT(*)``; per scalar subquery its value, count and scales. A
write's delta is ``after - before`` of the same columns over the rows it touched; a group whose
``COUNT(*)`` falls to 0 is gone, a SUM whose count falls to 0 is NULL, and a PostgreSQL SUM takes
the largest scale of its multiset (``_rescaled``). The rows the application reads are derived
from the state: projected, ordered and sliced here (docs/maintenance.md, "Deriving the rows").

Everything this module cannot do exactly raises ``Unmaintainable`` (floats, numerics of
varying scale without their multiset of scales, text ordered by a collation, ...): the entry is
then invalidated as it always was.
"""

from __future__ import annotations

import datetime as dt
import decimal
import heapq
import itertools
import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import msgpack

from querycache.codec import CorruptEntry, Result, decode, encode
from querycache.invalidation.rows import Source, resolve
from querycache.maintain.shape import SCALE_DIGITS, SCALES, Shape

# 2: three columns per aggregate (value, count, scales). 3: the same, stored beside its digest ('h',
# what writers compare and key their decoded copies by): a release that wrote format 2 did not keep
# that digest, so it must not maintain a state of 3, nor this one a state of 2 (either is invalidated).
_STATE_FORMAT = 3
_CHECKED_ROWS = 64  # rows of a fill whose derivation is compared with the database's own columns
_EXACT = decimal.Context(prec=400, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])
_SCALE_BASE = 10 ** SCALE_DIGITS
_DIGIT_SUM = decimal.Decimal(_SCALE_BASE - 1)
_ONE = decimal.Decimal(1)  # T mod (B - 1) is the sum of T's base-B digits
_WIDE = decimal.Context(prec=2 * SCALE_DIGITS * SCALES, traps=[decimal.Inexact, decimal.InvalidOperation,
                                                              decimal.Overflow])  # for the multisets of scales
_ORDERABLE = (int, decimal.Decimal, dt.date, dt.datetime, dt.time, dt.timedelta, bool)


class Unmaintainable(Exception):
    """This entry cannot be maintained exactly; ``reason`` is counted in stats."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class State:
    """``groups``: key -> [value, count, scales] per slot, then COUNT(*); ``scalars``: [value,
    count, scales] per scalar part; ``totals``: per output column of kind "total", the type the
    database gave it ("int" or "decimal")."""

    groups: dict[tuple[object, ...], list[object]]
    scalars: list[list[object]]
    totals: dict[int, str]

    def encode(self) -> bytes:
        """Columnar: integers as they are, decimals as their exact text, anything else through the
        codec (a state of 10,000 groups encodes in a few ms; the codec's per-value tags took 35)."""
        header = (len(self.scalars), *(v for triple in self.scalars for v in triple),
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
                texts = [None if v is None else str(v) for v in column]
                if _integral(texts):
                    # Integers of exponent 0 (the multisets of scales: mostly zeros) with their
                    # trailing zeros as an exponent, given back their exponent 0 when decoded.
                    tags.append("z")
                    columns.append([_shortened(t) for t in texts])
                else:
                    tags.append("d")
                    columns.append(texts)
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
            scalars = [list(header[1 + 3 * k:4 + 3 * k]) for k in range(n)]
            rest = header[1 + 3 * n:]
            totals = {int(rest[i]): str(rest[i + 1]) for i in range(0, len(rest), 2)}
            cols: list[Sequence[object]] = []
            for tag, column in zip(tags, columns, strict=True):
                if tag == "i":
                    cols.append(column)
                elif tag == "d":
                    cols.append([None if v is None else decimal.Decimal(v) for v in column])
                elif tag == "z":
                    cols.append([None if v is None else decimal.Decimal(v).quantize(_ONE, context=_WIDE)
                                 for v in column])
                else:
                    cols.append(decode(column).rows[0])
            rows = list(zip(*cols, strict=True)) if cols else [() for _ in range(count)]
            keys = shape.keys
            groups = {tuple(r[:keys]): list(r[keys:]) for r in rows}
        except (CorruptEntry, IndexError, TypeError, ValueError, decimal.DecimalException,
                msgpack.UnpackException) as exc:
            raise Unmaintainable("corrupt_state") from exc
        return State(groups, scalars, totals)


_INTEGER_TEXT = frozenset("-0123456789")


def _integral(texts: list[str | None]) -> bool:
    """Whether these decimals' texts are all integers of exponent 0 that ``_WIDE`` holds exactly:
    ``str`` writes any other decimal with a point, an exponent or a name (NaN, Infinity)."""
    present = [t for t in texts if t is not None]
    return (not present or set("".join(present)) <= _INTEGER_TEXT) and max(map(len, present), default=0) <= _WIDE.prec


def _shortened(text: str | None) -> str | None:
    """An integer's text with its trailing zeros as an exponent (``3E38``): what ``Decimal`` reads
    back as the same value."""
    if text is None or not text.endswith("00"):
        return text
    digits = text.rstrip("0")
    return text if digits in ("", "-") else f"{digits}E{len(text) - len(digits)}"


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
    # Columns whose decimals may vary in scale: a scaled slot's value (its scale is the largest of
    # its multiset, checked below) and the multisets themselves.
    varying = {keys + 3 * j + d for j, slot in enumerate(shape.slots) if slot.scaled for d in (0, 2)}
    for index, values in enumerate(zip(*hidden, strict=True)):
        kinds = set(map(type, values)) - {type(None)}
        if index < keys:
            if kinds & {float, str, bytes, bytearray, memoryview}:
                # Equal under the database's collation may be unequal here (and the reverse).
                raise Unmaintainable("float" if float in kinds else "text_key")
        elif not kinds <= {int, decimal.Decimal}:
            raise Unmaintainable("float" if float in kinds else "type")
        elif decimal.Decimal in kinds and index not in varying and len({v.as_tuple().exponent for v in values
                                                                      if isinstance(v, decimal.Decimal)}) > 1:
            # A numeric without a fixed scale: after a delete the database's scale is not known here.
            raise Unmaintainable("numeric_scale")
    groups = {tuple(h[:keys]): list(h[keys:keys + 3 * n_slots + 1]) for h in hidden}
    if len(groups) != len(rows):
        raise Unmaintainable("duplicate_group")  # groups the database tells apart and Python does not
    scaled = [j for j, slot in enumerate(shape.slots) if slot.scaled]
    if scaled:
        # The first groups (as check_fill): the server's rule holds. Exactness does not rest on
        # this check: every write checks the multiset of each group it changes (_rescaled).
        for group in itertools.islice(groups.values(), _CHECKED_ROWS):
            for j in scaled:
                _check_scale(group[3 * j:3 * j + 3])
    scalars: list[list[object]] = []
    totals: dict[int, str] = {}
    if rows:
        first = hidden[0]
        base = keys + 3 * n_slots + 1
        scalars = [list(first[base + 3 * k:base + 3 * k + 3]) for k in range(len(shape.scalars))]
        for k, slot in enumerate(shape.scalars):
            if slot.scaled:
                _check_scale(scalars[k])
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


def _combine(old: object, after: object, before: object, scaled: bool = False,
             context: decimal.Context = _EXACT) -> int | decimal.Decimal | None:
    """``old + after - before`` exactly (None: no contribution). ``scaled``: the scale of the
    result is set afterwards from the multiset of scales (``_rescaled``); otherwise decimals of
    several scales are refused."""
    if old is None and after is None and before is None:
        return None
    values = old_n, after_n, before_n = _number(old), _number(after), _number(before)
    decimals = [v for v in values if isinstance(v, decimal.Decimal)]
    if decimals and any(not v.is_finite() for v in decimals):
        raise Unmaintainable("numeric_scale")  # NaN and infinities do not add and subtract back
    if decimals and not scaled and len({v.as_tuple().exponent for v in decimals}) > 1:
        raise Unmaintainable("numeric_scale")  # the database's scale of the result is not known here
    if decimals:
        zero = decimal.Decimal(0).scaleb(decimals[0].as_tuple().exponent)  # type: ignore[arg-type]
        total = context.add(context.add(old_n if old_n is not None else zero, after_n if after_n is not None else zero),
                            context.minus(before_n) if before_n is not None else zero)
        return total
    return (old_n or 0) + (after_n or 0) - (before_n or 0)


def _top_scale(scales: object, count: object) -> int | None:
    """The largest scale of a multiset of scales (``shape.scales_of``: ``T``, whose base-B digits,
    B = 10**19, are the number of inputs of each scale); None for an empty one.

    The digits must add up to ``count`` (the inputs' count), or an input was not counted (NaN,
    infinity, a scale of ``SCALES`` or more) and the scale of the sum is not known. Since
    B = 1 (mod B - 1), ``T mod (B - 1)`` is the sum of the digits, and that sum is below B - 1
    (a COUNT is a bigint): it is ``count`` exactly when every input was counted. Each digit is
    then below B, so the largest scale is the position of ``T``'s leading base-B digit."""
    if scales is None or (isinstance(scales, int) and not isinstance(scales, bool)):
        total = decimal.Decimal(scales or 0)
    elif isinstance(scales, decimal.Decimal) and scales.is_finite():
        total = scales
    else:
        raise Unmaintainable("numeric_scale")
    if not isinstance(count, int) or not 0 <= count < _SCALE_BASE - 1:
        raise Unmaintainable("numeric_scale")
    if total < 0 or total != total.to_integral_value() or _WIDE.remainder(total, _DIGIT_SUM) != count:
        raise Unmaintainable("numeric_scale")
    if count == 0:
        return None
    top = total.adjusted() // SCALE_DIGITS
    if top >= SCALES:
        raise Unmaintainable("numeric_scale")
    return top


def _rescaled(value: int | decimal.Decimal | None, count: object, scales: object) -> int | decimal.Decimal | None:
    """A PostgreSQL SUM's value at the scale the server gives it: the largest scale of its inputs
    (``shape.scales_of``; docs/maintenance.md, "A write"). The value is exact; only its exponent
    is set."""
    top = _top_scale(scales, count)
    if not isinstance(value, decimal.Decimal):
        return value  # NULL, or an integer (the SUM of smallint or integer is a bigint)
    if top is None:
        raise Unmaintainable("numeric_scale")  # a value without inputs
    if value.is_finite() and value.as_tuple().exponent == -top:
        return value
    try:
        return value.quantize(decimal.Decimal(1).scaleb(-top), context=_EXACT)
    except decimal.DecimalException as exc:
        raise Unmaintainable("numeric_scale") from exc  # it has digits beyond that scale


def _check_scale(values: Sequence[object]) -> None:
    """A scaled aggregate read by the state query ([value, count, scales]) must already have the
    scale its multiset gives (the server's rule, checked on every group it fills)."""
    value, count, scales = values
    if _rescaled(_number(value), count, scales) is not value:
        raise Unmaintainable("numeric_scale")


def apply_groups(state: State, shape: Shape, before: Iterable[Sequence[object]],
                 after: Iterable[Sequence[object]]) -> None:
    """Add ``after - before`` (rows of the grouped part's delta query) to ``state``."""
    keys = shape.keys
    width = 3 * len(shape.slots) + 1
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
        new: list[int | decimal.Decimal | None] = []
        for index, (o, a, b) in enumerate(zip(old, now, was, strict=True)):
            slot_of = shape.slots[index // 3] if index < width - 1 else None  # None: COUNT(*)
            scaled = slot_of is not None and slot_of.scaled and index % 3 == 0  # its scale is set below
            scales = slot_of is not None and index % 3 == 2  # a multiset of scales: wide integers
            new.append(_combine(o, a, b, scaled, _WIDE if scales else _EXACT))
        for j, slot in enumerate(shape.slots):
            count = new[3 * j + 1] or 0
            if count < 0:
                raise Unmaintainable("negative_count")
            if slot.func == "sum" and count == 0:
                new[3 * j] = None
            elif slot.func == "count":
                new[3 * j] = new[3 * j] or 0
            if slot.scaled:
                new[3 * j] = _rescaled(new[3 * j], count, new[3 * j + 2])
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
    """Add ``after - before`` (one row each: value, count, scales) to scalar part ``k``."""
    old = state.scalars[k]
    slot = shape.scalars[k]
    value = _combine(old[0], after[0] if after else None, before[0] if before else None, slot.scaled)
    count = _combine(old[1], after[1] if after else None, before[1] if before else None) or 0
    scales = _combine(old[2], after[2] if after else None, before[2] if before else None, context=_WIDE)
    if count < 0:
        raise Unmaintainable("negative_count")
    if slot.func == "sum" and count == 0:
        value = None
    elif slot.func == "count":
        value = count
    if slot.scaled:
        value = _rescaled(value, count, scales)
    state.scalars[k] = [value, count, scales]


def merged(shape: Shape, part: int, rows: Iterable[Sequence[object]]) -> list[tuple[object, ...]]:
    """Delta rows of ``part`` from several restrictions added up per group (one row per group,
    as ``apply_groups`` and ``apply_scalar`` take them), exactly."""
    keys = shape.keys if part < 0 else 0
    slots = shape.slots if part < 0 else (shape.scalars[part],)
    out: dict[tuple[object, ...], list[object]] = {}
    for row in rows:
        key = tuple(row[:keys])
        found = out.get(key)
        if found is None:
            out[key] = list(row[keys:])
            continue
        for index, value in enumerate(row[keys:]):
            slot = slots[index // 3] if index < 3 * len(slots) else None  # None: COUNT(*)
            scaled = slot is not None and slot.scaled and index % 3 == 0
            wide = slot is not None and index % 3 == 2  # a multiset of scales
            found[index] = _combine(found[index], value, None, scaled, _WIDE if wide else _EXACT)
    return [(*key, *values) for key, values in out.items()]


def derive(state: State, shape: Shape, params: object) -> list[tuple[object, ...]]:
    """The rows the statement returns for ``state``: projected, ordered, offset and limited."""
    return order(project(state, shape), shape, params)


def project(state: State, shape: Shape) -> list[tuple[object, ...]]:
    """The statement's columns of every group, in the state's order."""
    keys = shape.keys
    width = 3 * len(shape.slots) + 1
    consts: list[object] = []
    indices: list[int] = []
    for column, output in enumerate(shape.outputs):
        if output.kind == "key":
            indices.append(output.index)
        elif output.kind == "slot":
            indices.append(keys + 3 * output.index)
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
    found: list[Any] = [v[3 * slot] for v in state.groups.values() if v[3 * slot] is not None]
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


class StateCache:
    """Decoded states of the entries this process maintained last, by entry key and the digest
    of the state as stored: a writer whose baseline has that digest takes the state from here
    instead of fetching and decoding it (docs/maintenance.md, "What it costs"). A state is taken
    out while a writer applies its deltas (two writers never share one) and put back only once
    phase 2 stored it; equal digests mean equal stored bytes, so the copy is the stored state."""

    def __init__(self, max_groups: int) -> None:
        self.max_groups = max_groups
        self._lock = threading.Lock()
        self._states: OrderedDict[str, tuple[str, bytes, State]] = OrderedDict()
        self._groups = 0

    def take(self, key: str, digest: str) -> tuple[bytes, State] | None:
        """The entry's value and state if the copy here is of ``digest`` (removed either way)."""
        with self._lock:
            found = self._states.pop(key, None)
            if found is None:
                return None
            self._groups -= len(found[2].groups)
        return (found[1], found[2]) if found[0] == digest else None

    def put(self, key: str, digest: str, value: bytes, state: State) -> None:
        size = len(state.groups)
        if not self.max_groups or size > self.max_groups:
            return
        with self._lock:
            old = self._states.pop(key, None)
            if old is not None:
                self._groups -= len(old[2].groups)
            self._states[key] = (digest, value, state)
            self._groups += size
            while self._groups > self.max_groups:
                _, (_, _, evicted) = self._states.popitem(last=False)
                self._groups -= len(evicted.groups)
