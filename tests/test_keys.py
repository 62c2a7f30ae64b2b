"""Cache keys of ``querycache/keys.py`` (docs/architecture.md, "Tiers"): typed L1 params, fixed-length L2 hashes."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest

from querycache.keys import UnsupportedParam, l1_params, l2_key

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def all_distinct(keys: list[Any]) -> bool:
    """Every key differs from every other, by equality (what a dict lookup uses)."""
    return all(a != b for a, b in itertools.combinations(keys, 2))


# -- l1_params --------------------------------------------------------------------------------------

def test_one_in_every_type_differs() -> None:
    values = [1, 1.0, True, "1", Decimal("1"), Decimal("1.0"), b"1"]
    keys = [l1_params((v,)) for v in values]
    assert all_distinct(keys)
    # and they are usable as dict keys without colliding
    assert len({k: None for k in keys}) == len(values)


def test_one_in_every_type_differs_in_named_params() -> None:
    values = [1, 1.0, True, "1", Decimal("1"), Decimal("1.0")]
    assert all_distinct([l1_params({"p": v}) for v in values])


def test_zero_and_false_differ() -> None:
    assert l1_params((0,)) != l1_params((False,))
    assert l1_params({"a": 0}) != l1_params({"a": False})


def test_equal_params_give_equal_hashable_keys() -> None:
    for params in [(1, "a"), (1.5, Decimal("2.0")), {"a": 1, "b": [1, 2]}, [dt.date(2020, 1, 1)], None, ()]:
        a, b = l1_params(params), l1_params(params)
        assert a == b
        assert hash(a) == hash(b)


def test_positive_and_negative_zero_float_differ() -> None:
    assert l1_params((0.0,)) != l1_params((-0.0,))
    assert l1_params({"x": 0.0}) != l1_params({"x": -0.0})


def test_datetimes_equal_as_instants_in_different_zones_differ() -> None:
    in_utc = dt.datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    in_paris = dt.datetime(2024, 6, 1, 12, 0, tzinfo=PARIS)
    in_offset = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert in_utc == in_paris == in_offset  # the same instant for Python ...
    assert all_distinct([l1_params((in_utc,)), l1_params((in_paris,)), l1_params((in_offset,))])  # ... not for keys


def test_naive_and_aware_datetimes_differ() -> None:
    assert l1_params((dt.datetime(2024, 1, 1),)) != l1_params((dt.datetime(2024, 1, 1, tzinfo=UTC),))


def test_date_and_datetime_at_midnight_differ() -> None:
    assert l1_params((dt.date(2024, 1, 1),)) != l1_params((dt.datetime(2024, 1, 1),))


def test_ambiguous_local_times_differ_by_fold() -> None:
    first = dt.datetime(2023, 10, 29, 2, 30, tzinfo=PARIS, fold=0)
    second = dt.datetime(2023, 10, 29, 2, 30, tzinfo=PARIS, fold=1)
    assert l1_params((first,)) != l1_params((second,))


def test_different_values_differ() -> None:
    assert l1_params((1,)) != l1_params((2,))
    assert l1_params(("a",)) != l1_params(("b",))
    assert l1_params((1.5,)) != l1_params((2.5,))
    assert l1_params((uuid.UUID(int=1),)) != l1_params((uuid.UUID(int=2),))
    assert l1_params((dt.timedelta(1),)) != l1_params((dt.timedelta(-1),))


def test_param_order_matters() -> None:
    assert l1_params((1, 2)) != l1_params((2, 1))
    assert l1_params((1.0, 2.0)) != l1_params((2.0, 1.0))


def test_list_params_container() -> None:
    assert l1_params([1, "a"]) == l1_params([1, "a"])
    assert l1_params([1, "a"]) != l1_params([1, "b"])
    assert l1_params([1.0]) != l1_params([1])


def test_list_param_values_pg_arrays() -> None:
    assert l1_params(([1, 2],)) != l1_params(([2, 1],))
    assert l1_params(([1, 2],)) != l1_params(((1, 2),))
    assert l1_params(([1],)) != l1_params(([1.0],))
    assert l1_params(([1],)) != l1_params((["1"],))
    assert l1_params(([],)) != l1_params(((),))


def test_list_param_values_keep_the_type_of_their_elements() -> None:
    # A PG array of integers and one of booleans are different parameters (int[] vs bool[]);
    # 1 == True in Python, so the key must carry the element type as it does at top level.
    assert l1_params(([1],)) != l1_params(([True],))
    assert l1_params(([0, 1],)) != l1_params(([False, True],))
    assert l1_params({"ids": [1]}) != l1_params({"ids": [True]})


def test_dict_params_independent_of_insertion_order() -> None:
    a = l1_params({"x": 1, "y": "two", "z": 3.0})
    b = l1_params({"z": 3.0, "y": "two", "x": 1})
    assert a == b
    assert hash(a) == hash(b)


def test_dict_params_differ_by_name_and_value() -> None:
    assert l1_params({"x": 1, "y": 2}) != l1_params({"x": 2, "y": 1})
    assert l1_params({"x": 1}) != l1_params({"y": 1})
    assert l1_params({"x": 1}) != l1_params({"x": 1, "y": 1})


def test_dict_and_positional_params_differ() -> None:
    assert l1_params({"0": 1}) != l1_params((1,))


def test_nested_dict_param_value_independent_of_order() -> None:
    assert l1_params(({"a": 1, "b": 2},)) == l1_params(({"b": 2, "a": 1},))
    assert l1_params(({"a": 1, "b": 2},)) != l1_params(({"a": 2, "b": 1},))


def test_none_params_and_empty_params() -> None:
    assert l1_params(None) == l1_params(None)
    assert l1_params(None) != l1_params(())
    assert l1_params((None,)) != l1_params(())


def test_bytes_like_params() -> None:
    assert l1_params((b"ab",)) != l1_params(("ab",))
    assert l1_params((bytearray(b"ab"),)) == l1_params((bytearray(b"ab"),))
    assert l1_params((bytearray(b"ab"),)) != l1_params((bytearray(b"ac"),))
    assert l1_params((memoryview(b"ab"),)) != l1_params((memoryview(b"ac"),))


class Opaque:
    pass


@pytest.mark.parametrize(
    "params",
    [(Opaque(),), ({1, 2},), {"a": Opaque()}, ([Opaque()],), (frozenset(),), (complex(1, 1),)],
)
def test_unsupported_param_value_raises(params: Any) -> None:
    with pytest.raises(UnsupportedParam):
        l1_params(params)


@pytest.mark.parametrize("params", ["abc", 5, {1, 2}, Opaque()])
def test_unsupported_param_container_raises(params: Any) -> None:
    with pytest.raises(UnsupportedParam):
        l1_params(params)


def test_unsupported_param_is_a_type_error() -> None:
    assert issubclass(UnsupportedParam, TypeError)


# -- l2_key --------------------------------------------------------------------------------------------

BASE = dict(namespace="qc", scope_key="scope-1", tenant=None, shape="tuple",
            normalized="SELECT name FROM secret_table WHERE id = ?", params=(123456789,))


def key(**changes: Any) -> str:
    args = {**BASE, **changes}
    return l2_key(args["namespace"], args["scope_key"], args["tenant"], args["shape"], args["normalized"],
                  args["params"])


def test_l2_key_is_fixed_length_and_shaped() -> None:
    keys = [
        key(),
        key(normalized="SELECT " + "x, " * 2000 + "y FROM t"),
        key(params=("p" * 10000,)),
        key(params=None),
        key(params={"a": 1}),
        key(tenant="acme"),
    ]
    assert len({len(k) for k in keys}) == 1
    for k in keys:
        assert re.fullmatch(r"qc:e:[0-9a-f]{12}:[0-9a-f]{40}", k), k


def test_l2_key_has_no_sql_text_or_param_values() -> None:
    k = key(params=("hunter2-password", 987654321), tenant="acme-corp")
    for leaked in ("SELECT", "secret_table", "hunter2", "987654321", "acme", "scope-1", "tuple"):
        assert leaked not in k


def test_l2_key_starts_with_the_namespace() -> None:
    assert key(namespace="app7").startswith("app7:")
    assert key(namespace="app7") != key(namespace="app8")


def test_l2_key_is_deterministic() -> None:
    assert key() == key()
    assert key(params={"a": 1, "b": 2}) == key(params={"b": 2, "a": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"scope_key": "scope-2"},
        {"tenant": "acme"},
        {"tenant": 1},
        {"shape": "dict"},
        {"normalized": "SELECT name FROM secret_table WHERE id = ? "},
        {"params": (123456780,)},
        {"params": (123456789.0,)},
        {"params": (Decimal("123456789"),)},
        {"params": ("123456789",)},
        {"params": None},
        {"params": (123456789, None)},
        {"params": {"id": 123456789}},
    ],
)
def test_l2_key_differs_for_each_differing_input(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_l2_key_distinguishes_typed_params() -> None:
    values = [1, 1.0, True, "1", Decimal("1"), Decimal("1.0"), 0.0, -0.0, b"1", [1], [True], (1,)]
    keys = [key(params=(v,)) for v in values]
    assert len(set(keys)) == len(values)


def test_l2_key_distinguishes_tenant_types() -> None:
    assert key(tenant="1") != key(tenant=1)
    assert key(tenant=None) != key(tenant="None")


def test_l2_key_distinguishes_time_zones() -> None:
    in_utc = dt.datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    in_paris = dt.datetime(2024, 6, 1, 12, 0, tzinfo=PARIS)
    assert key(params=(in_utc,)) != key(params=(in_paris,))
