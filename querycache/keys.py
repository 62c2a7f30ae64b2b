"""Cache keys: typed parameters for L1, fixed-length hashes for the shared store (docs/isolation.md)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from typing import Any, Hashable

# Types whose equality is exact identity of meaning: (value, type) pairs key them safely.
_SIMPLE = frozenset({int, str, bool, type(None), bytes})
_NO_PARAMS: type = type(None)  # the parameter key of a statement sent without parameters
_EXACT = frozenset({int, str, bool, type(None), bytes, float, decimal.Decimal, dt.date, dt.datetime, dt.time,
                    dt.timedelta, uuid.UUID, memoryview, bytearray})


class UnsupportedParam(TypeError):
    """A parameter whose value the cache cannot key exactly; the statement is not cached."""


def _canonical(value: Any) -> Hashable:
    kind = type(value)
    if kind in _SIMPLE:
        return (kind.__name__, value)  # inside containers too: [1] and [True] differ
    if kind is float:
        return ("float", repr(value))  # 0.0 and -0.0 differ; equal floats share a repr
    if kind is decimal.Decimal:
        return ("decimal", str(value))  # Decimal('1.0') and Decimal('1.00') differ as text
    if kind in (dt.datetime, dt.time):
        return (kind.__name__, value.isoformat(), repr(value.tzinfo))
    if kind is dt.date:
        return ("date", value.toordinal())
    if kind is dt.timedelta:
        return ("timedelta", value.days, value.seconds, value.microseconds)
    if kind is uuid.UUID:
        return ("uuid", value.bytes)
    if kind in (memoryview, bytearray):
        return (kind.__name__, bytes(value))
    if kind in (list, tuple):
        return (kind.__name__, tuple(_canonical(v) for v in value))
    if kind is dict:
        return ("dict", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    raise UnsupportedParam(f"parameters of type {kind.__module__}.{kind.__qualname__} are not cached")


def l1_params(params: Any) -> Hashable:
    """A hashable key for ``params`` in which ``1``, ``1.0``, ``True`` and ``'1'`` all differ."""
    if params is None:
        return _NO_PARAMS
    kind = type(params)
    if kind is tuple or kind is list:
        types = tuple(map(type, params))
        if _SIMPLE.issuperset(types):
            return (params if kind is tuple else tuple(params), types)
        return tuple(_canonical(v) for v in params)
    if kind is dict:
        return ("named", tuple(sorted((k, type(v), _canonical(v)) for k, v in params.items())))
    raise UnsupportedParam(f"a parameter container of type {kind.__qualname__} is not cached")


def _typed_repr(params: Any) -> str:
    if params is None:
        return "none"
    if type(params) is dict:
        return repr(sorted((k, type(v).__name__, _canonical(v)) for k, v in params.items()))
    return repr([(type(v).__name__, _canonical(v)) for v in params])


def l2_key(namespace: str, scope_key: str, tenant: Hashable, shape: str, normalized: str, params: Any,
           dependencies: tuple[str, ...] = ()) -> str:
    """Fixed-length key: no SQL text or parameter value reaches the store's key space.

    The dependencies are part of the key, so an entry is always checked against the version
    keys it was filled under (a catalog change gives the statement new keys, hence a new entry).
    """
    digest = hashlib.blake2b(digest_size=20)
    for part in (scope_key, repr(tenant), shape, normalized, _typed_repr(params), "\x1e".join(dependencies)):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return f"{namespace}:e:{tenant_tag(tenant)}:{digest.hexdigest()}"


def tenant_tag(tenant: Hashable) -> str:
    """The tenant's segment of an entry key (12 hex digits), so one tenant's entries can be dropped."""
    if tenant is None:
        return "0" * 12
    return hashlib.blake2b(repr(tenant).encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
