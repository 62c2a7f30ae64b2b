"""The safe result codec of ``querycache/codec.py``: exact values AND exact types, never pickle."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import msgpack
import pytest

from querycache.codec import FORMAT_VERSION, Column, CorruptEntry, Result, Unencodable, decode, encode

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def roundtrip_cell(value: Any) -> Any:
    back = decode(encode(Result(description=None, rows=[(value,)], rowcount=1)))
    assert len(back.rows) == 1 and len(back.rows[0]) == 1
    return back.rows[0][0]


def assert_same(value: Any) -> Any:
    back = roundtrip_cell(value)
    assert type(back) is type(value), (value, back)
    assert back == value
    return back


# -- scalars --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value",
    [
        0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1,
        "", "héllo ✓", "\x00",
        b"", b"\x00\xff", True, False,
        Decimal("0"), Decimal("-0"), Decimal("3.14159265358979323846264338327950288"),
        Decimal("1E+30"), Decimal("-Infinity"),
        dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31),
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        dt.time(23, 59, 59, 999999), dt.time(0, 0),
        dt.timedelta(0), dt.timedelta(days=3, seconds=7, microseconds=11),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ],
)
def test_scalar_round_trip_keeps_value_and_type(value: Any) -> None:
    assert_same(value)


@pytest.mark.parametrize("value", [2**64, 2**70 + 1, -(2**64) - 5, 10**40])
def test_big_int(value: int) -> None:
    assert_same(value)


@pytest.mark.parametrize("value", [0.0, 1.5, -2.25, 1e300, 5e-324, 0.1 + 0.2, math.inf, -math.inf])
def test_float(value: float) -> None:
    assert_same(value)


def test_negative_zero_float_keeps_its_sign() -> None:
    back = assert_same(-0.0)
    assert math.copysign(1.0, back) == -1.0


def test_nan_float() -> None:
    back = roundtrip_cell(math.nan)
    assert type(back) is float
    assert math.isnan(back)


def test_none() -> None:
    assert roundtrip_cell(None) is None


def test_bool_stays_bool_not_int() -> None:
    assert roundtrip_cell(True) is True
    assert roundtrip_cell(False) is False


def test_int_one_stays_int_not_bool() -> None:
    back = roundtrip_cell(1)
    assert type(back) is int


def test_bytearray() -> None:
    assert_same(bytearray(b"\x01\x02\x00"))


def test_memoryview() -> None:
    back = roundtrip_cell(memoryview(b"abc\x00"))
    assert type(back) is memoryview
    assert back.tobytes() == b"abc\x00"


def test_bytes_and_str_do_not_swap() -> None:
    assert type(roundtrip_cell(b"x")) is bytes
    assert type(roundtrip_cell("x")) is str


def test_decimal_keeps_its_exponent() -> None:
    back = assert_same(Decimal("1.10"))
    assert str(back) == "1.10"
    assert back.as_tuple() == Decimal("1.10").as_tuple()
    assert str(roundtrip_cell(Decimal("1.0"))) == "1.0"
    assert str(roundtrip_cell(Decimal("-0.000"))) == "-0.000"


def test_decimal_nan() -> None:
    back = roundtrip_cell(Decimal("NaN"))
    assert type(back) is Decimal
    assert back.is_nan() and not back.is_snan()
    assert roundtrip_cell(Decimal("sNaN")).is_snan()


# -- dates and times ---------------------------------------------------------------------------------

def test_naive_datetime_stays_naive() -> None:
    back = assert_same(dt.datetime(2024, 5, 6, 7, 8, 9, 10))
    assert back.tzinfo is None


def test_datetime_utc() -> None:
    value = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    back = assert_same(value)
    assert back.tzinfo is dt.UTC
    assert back.utcoffset() == dt.timedelta(0)


def test_datetime_fixed_offset() -> None:
    value = dt.datetime(2024, 5, 6, 7, 8, 9, 123, tzinfo=IST)
    back = assert_same(value)
    assert back.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back.tzinfo == IST
    assert back.tzname() == value.tzname()
    # same wall clock fields, not just the same instant
    assert (back.hour, back.minute) == (7, 8)


def test_datetime_fixed_offset_with_name_keeps_the_name() -> None:
    tz = dt.timezone(dt.timedelta(hours=-3), "BRT")
    back = assert_same(dt.datetime(2024, 1, 1, tzinfo=tz))
    assert back.tzname() == "BRT"


def test_datetime_zoneinfo_keeps_its_key() -> None:
    value = dt.datetime(2024, 7, 1, 12, 0, tzinfo=PARIS)
    back = assert_same(value)
    assert isinstance(back.tzinfo, zoneinfo.ZoneInfo)
    assert back.tzinfo.key == "Europe/Paris"
    assert back.utcoffset() == dt.timedelta(hours=2)
    assert back.hour == 12


def test_datetime_zoneinfo_keeps_fold() -> None:
    # 2023-10-29 02:30 happens twice in Paris; fold picks the second (UTC+1).
    first = dt.datetime(2023, 10, 29, 2, 30, tzinfo=PARIS, fold=0)
    second = dt.datetime(2023, 10, 29, 2, 30, tzinfo=PARIS, fold=1)
    back0, back1 = roundtrip_cell(first), roundtrip_cell(second)
    assert back0.fold == 0
    assert back1.fold == 1
    assert back0.utcoffset() == dt.timedelta(hours=2)
    assert back1.utcoffset() == dt.timedelta(hours=1)
    assert back1.tzinfo.key == "Europe/Paris"


def test_naive_datetime_keeps_fold() -> None:
    assert roundtrip_cell(dt.datetime(2023, 10, 29, 2, 30, fold=1)).fold == 1


def test_time_naive() -> None:
    back = assert_same(dt.time(12, 34, 56, 789))
    assert back.tzinfo is None


def test_time_with_fixed_offset() -> None:
    value = dt.time(12, 34, 56, tzinfo=IST)
    back = assert_same(value)
    assert back.utcoffset() == dt.timedelta(hours=5, minutes=30)


def test_time_with_utc() -> None:
    back = assert_same(dt.time(1, 2, tzinfo=dt.UTC))
    assert back.tzinfo is dt.UTC


def test_time_with_zoneinfo_keeps_key() -> None:
    back = assert_same(dt.time(1, 2, tzinfo=PARIS))
    assert back.tzinfo.key == "Europe/Paris"


@pytest.mark.parametrize(
    "value",
    [dt.timedelta(days=-1), dt.timedelta(microseconds=-1), dt.timedelta(days=-5, hours=3),
     dt.timedelta(days=999999999), -dt.timedelta(days=999999999)],
)
def test_timedelta_including_negative(value: dt.timedelta) -> None:
    assert_same(value)


def test_date_is_not_returned_as_datetime() -> None:
    assert type(roundtrip_cell(dt.date(2020, 1, 1))) is dt.date


# -- containers ------------------------------------------------------------------------------------

def test_tuple_cell() -> None:
    back = assert_same((1, "a", (2.5, None)))
    assert type(back[2]) is tuple


def test_list_cell_pg_array() -> None:
    back = assert_same([1, 2, 3])
    assert_same([[1, 2], [3, 4]])
    assert_same([Decimal("1.5"), None, dt.date(2020, 1, 1)])
    assert type(back) is list


def test_empty_containers() -> None:
    assert_same([])
    assert_same(())
    assert_same({})


def test_nested_dict_json_cell() -> None:
    value = {"a": 1, "b": [1, 2.5, {"c": None, "d": True}], "e": {"f": "g"}, "h": False}
    back = assert_same(value)
    assert type(back["b"]) is list
    assert type(back["b"][2]["d"]) is bool


def test_tuple_rows_stay_tuples() -> None:
    rows = [(1, "a"), (2, "b")]
    back = decode(encode(Result(description=None, rows=rows, rowcount=2)))
    assert back.rows == rows
    assert all(type(r) is tuple for r in back.rows)


def test_list_rows_stay_lists() -> None:
    rows = [[1, "a"], [2, "b"]]
    back = decode(encode(Result(description=None, rows=rows, rowcount=2)))
    assert back.rows == rows
    assert all(type(r) is list for r in back.rows)


def test_dict_rows_stay_dicts() -> None:
    rows = [{"id": 1, "price": Decimal("9.90")}, {"id": 2, "price": None}]
    back = decode(encode(Result(description=None, rows=rows, rowcount=2)))
    assert back.rows == rows
    assert all(type(r) is dict for r in back.rows)
    assert str(back.rows[0]["price"]) == "9.90"


def test_empty_rows() -> None:
    back = decode(encode(Result(description=None, rows=[], rowcount=0)))
    assert back.rows == []
    assert back.rowcount == 0


def test_result_metadata_round_trips() -> None:
    value = Result(description=None, rows=[(1,)], rowcount=17, lastrowid=42, mutable_cells=True)
    back = decode(encode(value))
    assert back.rowcount == 17
    assert back.lastrowid == 42
    assert back.mutable_cells is True
    assert back.description is None


def test_result_with_rowcount_minus_one() -> None:
    assert decode(encode(Result(description=None, rows=[], rowcount=-1))).rowcount == -1


# -- description ----------------------------------------------------------------------------------

def test_description_comes_back_as_columns() -> None:
    description = (("id", 23, None, 4, None, None, False), ("name", 25, None, -1, None, None, True))
    back = decode(encode(Result(description=description, rows=[(1, "a")], rowcount=1)))
    assert back.description is not None
    assert len(back.description) == 2
    first, second = back.description
    assert isinstance(first, Column)
    assert isinstance(first, tuple)
    assert first.name == "id"
    assert first[0] == "id"
    assert first.type_code == 23 and first[1] == 23
    assert first.internal_size == 4
    assert first.null_ok is False
    assert second.name == "name"
    assert second.null_ok is True
    assert tuple(first) == description[0]


def test_sqlite_style_description() -> None:
    description = (("x", None, None, None, None, None, None),)
    back = decode(encode(Result(description=description, rows=[(1,)], rowcount=-1)))
    assert back.description == (Column("x", None, None, None, None, None, None),)


# -- what the codec refuses ---------------------------------------------------------------------------

class Custom:
    pass


class OddTZ(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "ODD"


@pytest.mark.parametrize(
    "value",
    [
        Custom(),
        {1, 2},
        frozenset({1}),
        dt.datetime(2024, 1, 1, tzinfo=OddTZ()),
        dt.time(1, 2, tzinfo=OddTZ()),
        [Custom()],
        {"nested": {3}},
        complex(1, 2),
    ],
)
def test_unknown_types_raise_unencodable(value: Any) -> None:
    with pytest.raises(Unencodable):
        encode(Result(description=None, rows=[(value,)], rowcount=1))


def test_unencodable_is_a_type_error() -> None:
    assert issubclass(Unencodable, TypeError)


def test_rows_of_unknown_row_type_are_unencodable() -> None:
    with pytest.raises(Unencodable):
        encode(Result(description=None, rows=[{1, 2}], rowcount=1))


def test_rows_of_mixed_types_are_unencodable() -> None:
    with pytest.raises(Unencodable):
        encode(Result(description=None, rows=[(1,), [2]], rowcount=2))


# -- what decode refuses ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x00", b"garbage bytes \xff\xfe", b"\x97\x01", b"\x93\x01\x02\x03", b"\xc7\x05\x63abcde"],
)
def test_garbage_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode(data)


def test_corrupt_entry_is_a_value_error() -> None:
    assert issubclass(CorruptEntry, ValueError)


def test_wrong_format_version_is_corrupt() -> None:
    good = encode(Result(description=None, rows=[(1,)], rowcount=1))
    fields = msgpack.unpackb(good, raw=False)
    assert fields[0] == FORMAT_VERSION
    fields[0] = FORMAT_VERSION + 1
    with pytest.raises(CorruptEntry, match="format"):
        decode(msgpack.packb(fields, use_bin_type=True))


def test_truncated_entry_is_corrupt() -> None:
    good = encode(Result(description=(("a", None, None, None, None, None, None),), rows=[(1, "x" * 50)],
                         rowcount=1))
    with pytest.raises(CorruptEntry):
        decode(good[: len(good) // 2])


@pytest.mark.parametrize(
    "fields",
    [
        [FORMAT_VERSION, 0, None, 5, 0, None, False],  # rows not a list
        [FORMAT_VERSION, 0, [["a", None]], [], 0, None, False],  # description column of 2 fields
        [FORMAT_VERSION, 0, None, [5], 1, None, False],  # a row that is not a sequence
    ],
)
def test_well_formed_msgpack_of_the_wrong_shape_is_corrupt(fields: list[Any]) -> None:
    # decode's contract: "raises CorruptEntry for anything else"; callers treat CorruptEntry as a miss.
    with pytest.raises(CorruptEntry):
        decode(msgpack.packb(fields, use_bin_type=True))


class Boom:
    """Unpickling this would run code; decode must never get there."""

    ran = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (Boom._explode, ())

    @staticmethod
    def _explode() -> None:
        Boom.ran = True


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_payload_is_never_unpickled(protocol: int) -> None:
    Boom.ran = False
    payload = pickle.dumps(Result(description=None, rows=[(Boom(),)], rowcount=1), protocol=protocol)
    with pytest.raises(CorruptEntry):
        decode(payload)
    assert Boom.ran is False


def test_pickle_of_plain_rows_is_corrupt() -> None:
    with pytest.raises(CorruptEntry):
        decode(pickle.dumps([(1, "a")]))


def test_encode_is_deterministic() -> None:
    result = Result(description=(("a", None, None, None, None, None, None),),
                    rows=[(1, Decimal("2.50"), dt.datetime(2024, 1, 1, tzinfo=PARIS))], rowcount=1)
    assert encode(result) == encode(result)
