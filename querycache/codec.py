"""Safe result encoding for shared tiers: msgpack with extension types, never pickle.

A value of a type the codec does not know raises ``Unencodable``; the caller then
does not cache the result (and counts why) instead of failing the query.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
import zoneinfo
from dataclasses import dataclass
from itertools import chain, starmap
from typing import Any, Iterable, NamedTuple, Sequence

import msgpack

FORMAT_VERSION = 2

_DECIMAL = 1
_DATETIME = 2
_DATE = 3
_TIME = 4
_TIMEDELTA = 5
_UUID = 6
_TUPLE = 7
_BIGINT = 8
_MEMORYVIEW = 9
_BYTEARRAY = 10

ROWS_TUPLE = 0
ROWS_LIST = 1
ROWS_DICT = 2


class Unencodable(TypeError):
    """A result holds a value the codec cannot represent exactly."""


class CorruptEntry(ValueError):
    """Stored bytes that do not decode to a result; treated as a miss."""


class Column(NamedTuple):
    """A PEP 249 description entry, indexable and with attribute names."""

    name: str
    type_code: Any
    display_size: int | None
    internal_size: int | None
    precision: int | None
    scale: int | None
    null_ok: bool | None


@dataclass(frozen=True, slots=True)
class Result:
    """One query result as the cache stores it."""

    description: Sequence[Any] | None
    rows: list[Any]
    rowcount: int
    lastrowid: Any = None
    mutable_cells: bool = False


def _tz_pack(tz: dt.tzinfo | None) -> list[Any]:
    if tz is None:
        return [0]
    if isinstance(tz, zoneinfo.ZoneInfo):
        return [1, tz.key]
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)  # fixed: the same for every datetime
        return [2, offset.days * 86400 + offset.seconds, offset.microseconds, tz.tzname(None)]
    raise Unencodable(f"tzinfo of type {type(tz).__name__} is not encodable")


def _tz_unpack(data: list[Any]) -> dt.tzinfo | None:
    if data[0] == 0:
        return None
    if data[0] == 1:
        return zoneinfo.ZoneInfo(data[1])
    offset = dt.timedelta(seconds=data[1], microseconds=data[2])
    name = data[3]
    default_name = dt.timezone(offset).tzname(None)
    return dt.timezone(offset) if name == default_name else dt.timezone(offset, name)


# Datetimes and dates are the most common typed cells: a fixed struct, and the time zone's bytes
# (and, decoding, its object) cached per zone, instead of a nested msgpack document per cell.
_DT_STRUCT = struct.Struct(">HBBBBBIB")
_DATE_STRUCT = struct.Struct(">I")
_TZ_BYTES: dict[Any, bytes] = {}
_TZ_OBJECTS: dict[bytes, dt.tzinfo | None] = {}
_NO_TZ = b""


def _tz_bytes(tz: dt.tzinfo) -> bytes:
    # Fixed-offset zones and ZoneInfo keys describe themselves without a sample datetime. The cache
    # key is the description, not the zone: timezone(+2h, "CEST") == timezone(+2h) compares equal.
    cache_key = (tz.key,) if isinstance(tz, zoneinfo.ZoneInfo) else (tz.utcoffset(None), tz.tzname(None))
    found = _TZ_BYTES.get(cache_key)
    if found is None:
        found = _pack(_tz_pack(tz))
        if len(_TZ_BYTES) < 4096:
            _TZ_BYTES[cache_key] = found
    return found


def _tz_object(data: bytes) -> dt.tzinfo | None:
    try:
        return _TZ_OBJECTS[data]
    except KeyError:
        tz = _tz_unpack(_unpack(data))
        if len(_TZ_OBJECTS) < 4096:
            _TZ_OBJECTS[data] = tz
        return tz


def _default(value: Any) -> msgpack.ExtType:
    kind = type(value)
    if kind is decimal.Decimal:
        return msgpack.ExtType(_DECIMAL, str(value).encode())
    if kind is dt.datetime:
        tz = value.tzinfo
        if tz is not None and not isinstance(tz, (dt.timezone, zoneinfo.ZoneInfo)):
            raise Unencodable(f"tzinfo of type {type(tz).__name__} is not encodable")
        head = _DT_STRUCT.pack(value.year, value.month, value.day, value.hour, value.minute, value.second,
                               value.microsecond, value.fold)
        return msgpack.ExtType(_DATETIME, head + (_NO_TZ if tz is None else _tz_bytes(tz)))
    if kind is dt.date:
        return msgpack.ExtType(_DATE, _DATE_STRUCT.pack(value.toordinal()))
    if kind is dt.time:
        fields = [value.hour, value.minute, value.second, value.microsecond, value.fold,
                  _tz_pack(value.tzinfo)]
        return msgpack.ExtType(_TIME, _pack(fields))
    if kind is dt.timedelta:
        return msgpack.ExtType(_TIMEDELTA, _pack([value.days, value.seconds, value.microseconds]))
    if kind is uuid.UUID:
        return msgpack.ExtType(_UUID, value.bytes)
    if kind is tuple:
        return msgpack.ExtType(_TUPLE, _pack(list(value)))
    if kind is int:
        return msgpack.ExtType(_BIGINT, str(value).encode())
    if kind is memoryview:
        return msgpack.ExtType(_MEMORYVIEW, value.tobytes())
    if kind is bytearray:
        return msgpack.ExtType(_BYTEARRAY, bytes(value))
    raise Unencodable(f"values of type {kind.__module__}.{kind.__qualname__} are not encodable")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _DECIMAL:
        return decimal.Decimal(data.decode())
    if code == _DATETIME:
        y, mo, d, h, mi, s, us, fold = _DT_STRUCT.unpack_from(data)
        tz = _tz_object(data[_DT_STRUCT.size:]) if len(data) > _DT_STRUCT.size else None
        return dt.datetime(y, mo, d, h, mi, s, us, tzinfo=tz, fold=fold)
    if code == _DATE:
        return dt.date.fromordinal(_DATE_STRUCT.unpack(data)[0])
    if code == _TIME:
        h, mi, s, us, fold, tz = _unpack(data)
        return dt.time(h, mi, s, us, tzinfo=_tz_unpack(tz), fold=fold)
    if code == _TIMEDELTA:
        days, seconds, micro = _unpack(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if code == _UUID:
        return uuid.UUID(bytes=data)
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _BIGINT:
        return int(data.decode())
    if code == _MEMORYVIEW:
        return memoryview(data)
    if code == _BYTEARRAY:
        return bytearray(data)
    raise CorruptEntry(f"unknown extension type {code}")


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def _binary_as_ext(value: Any) -> Any:
    """msgpack packs bytearray and memoryview as plain bytes even with strict types: tag them."""
    kind = type(value)
    if kind is memoryview:
        return msgpack.ExtType(_MEMORYVIEW, value.tobytes())
    if kind is bytearray:
        return msgpack.ExtType(_BYTEARRAY, bytes(value))
    if kind is list:
        return [_binary_as_ext(v) for v in value]
    if kind is tuple:
        return msgpack.ExtType(_TUPLE, _pack([_binary_as_ext(v) for v in value]))
    if kind is dict:
        return {k: _binary_as_ext(v) for k, v in value.items()}
    return value


_NEEDS_BINARY_TAGS = frozenset({memoryview, bytearray, list, tuple, dict})


def encode(result: Result) -> bytes:
    """Bytes for ``result``; raises ``Unencodable`` for values outside the codec."""
    rows = result.rows
    if not rows or type(rows[0]) is tuple:
        kind, body = ROWS_TUPLE, list(map(list, rows))
    elif type(rows[0]) is list:
        kind, body = ROWS_LIST, rows
    elif type(rows[0]) is dict:
        kind, body = ROWS_DICT, rows
    else:
        raise Unencodable(f"rows of type {type(rows[0]).__qualname__} are not encodable")
    if any(type(r) is not type(rows[0]) for r in rows):
        raise Unencodable("rows of mixed types are not encodable")
    cells: Iterable[Any] = (
        chain.from_iterable(r.values() for r in rows) if kind == ROWS_DICT else chain.from_iterable(body)
    )
    if not _NEEDS_BINARY_TAGS.isdisjoint(map(type, cells)):
        body = [_binary_as_ext(r) for r in body]
    description = None
    if result.description is not None:
        description = [_column_fields(col) for col in result.description]
    lastrowid = result.lastrowid if isinstance(result.lastrowid, int) or result.lastrowid is None else None
    try:
        return _pack([FORMAT_VERSION, kind, description, body, result.rowcount, lastrowid, result.mutable_cells])
    except (TypeError, ValueError, OverflowError) as exc:
        raise Unencodable(str(exc)) from exc


_COLUMN_ATTRS = ("name", "type_code", "display_size", "internal_size", "precision", "scale", "null_ok")


_COLUMN_MEMO: dict[tuple[Any, ...], list[Any]] = {}


def _column_fields(col: Any) -> list[Any]:
    # psycopg 3 computes display_size, precision... through its type registry on every access; they
    # depend only on the name, type oid, modifier and size it keeps, so remember them per those.
    memo_key = None
    fmod = getattr(col, "_fmod", None)
    if fmod is not None and type(col).__module__ == "psycopg":
        memo_key = (col._name, col._ftype, fmod, col._fsize)
        found = _COLUMN_MEMO.get(memo_key)
        if found is not None:
            return found
    # psycopg's Column builds a 7-tuple on every index access: read its attributes instead.
    fields = [getattr(col, a) for a in _COLUMN_ATTRS] if hasattr(col, "type_code") else list(col[:7])
    out = [fields[0], *(_plain(v) for v in fields[1:])]
    if memo_key is not None and len(_COLUMN_MEMO) < 4096:
        _COLUMN_MEMO[memo_key] = out
    return out


def _plain(value: Any) -> Any:
    return value if value is None or type(value) in (int, str, bool, float) else str(value)


def decode(data: bytes) -> Result:
    """The result ``encode`` produced; raises ``CorruptEntry`` for anything else."""
    try:
        version, kind, description, body, rowcount, lastrowid, mutable = _unpack(data)
        if version != FORMAT_VERSION:
            raise CorruptEntry(f"entry format {version}, expected {FORMAT_VERSION}")
        if kind not in _ROW_TYPES or type(body) is not list or type(rowcount) is not int:
            raise CorruptEntry("entry does not have the shape of a result")
        if kind == ROWS_TUPLE:
            rows = list(map(tuple, body))  # a row that is no sequence raises: corrupt
        else:
            rows = body
            if rows and not {_ROW_TYPES[kind]}.issuperset(map(type, rows)):
                raise CorruptEntry("entry rows do not have the recorded type")
        desc = tuple(starmap(Column, description)) if description is not None else None
    except CorruptEntry:
        raise
    except Exception as exc:  # msgpack and the shape checks raise several unrelated types for bad bytes
        raise CorruptEntry(f"undecodable entry: {exc}") from exc
    return Result(description=desc, rows=rows, rowcount=rowcount, lastrowid=lastrowid, mutable_cells=bool(mutable))


_ROW_TYPES: dict[int, type] = {ROWS_TUPLE: tuple, ROWS_LIST: list, ROWS_DICT: dict}
