"""L1: a per-connection LRU bounded by entries AND bytes, checked against the version mirror."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Mapping

from querycache.codec import Result

if TYPE_CHECKING:
    from querycache.backends.base import Backend
    from querycache.serving import CursorState
    from querycache.session import Session
    from querycache.stats import Fingerprint, Histogram
    from querycache.transaction import TransactionTracker

L1Key = tuple[Hashable, ...]
"""(scope id, tenant, cursor shape token, SQL text, parameter key): see ``CachedCursor.execute``."""


@dataclass(slots=True)
class L1Entry:
    result: Result
    version_keys: tuple[str, ...]
    stamp: int
    epoch: str
    expires_at: float
    size: int
    fp: Fingerprint | None = None  # the statement's stats row, counted on each hit (None: stats off)


class L1Cache:
    """An LRU whose ``maxsize`` counts bytes (each entry's ``size``), with a second bound on entries.

    A hit is ``OrderedDict.get`` and ``move_to_end``, both in C (``CachedCursor.execute`` calls
    ``data.get`` itself); an entry larger than the whole tier is not cached rather than flushing
    everything. Evictions (not replacements, not removals) call ``on_evict``."""

    __slots__ = ("_on_evict", "currsize", "data", "max_entries", "maxsize")

    def __init__(self, max_entries: int, max_bytes: int, on_evict: Callable[[], None] | None = None) -> None:
        self.data: OrderedDict[L1Key, L1Entry] = OrderedDict()
        self.maxsize = max_bytes
        self.max_entries = max_entries
        self.currsize = 0
        self._on_evict = on_evict

    def get(self, key: L1Key, default: L1Entry | None = None) -> L1Entry | None:
        entry = self.data.get(key)
        if entry is None:
            return default
        try:
            self.data.move_to_end(key)
        except KeyError:  # removed by another thread since the get
            pass
        return entry

    def __getitem__(self, key: L1Key) -> L1Entry:
        entry = self.get(key)
        if entry is None:
            raise KeyError(key)
        return entry

    def __setitem__(self, key: L1Key, value: L1Entry) -> None:
        if value.size > self.maxsize:
            return  # larger than the whole tier: not cached rather than flushing everything
        self.pop(key, None)
        data = self.data
        while data and (self.currsize + value.size > self.maxsize or len(data) >= self.max_entries):
            self.popitem()
        data[key] = value
        self.currsize += value.size

    def __delitem__(self, key: L1Key) -> None:
        entry = self.data.pop(key)
        self.currsize -= entry.size

    def pop(self, key: L1Key, default: L1Entry | None = None) -> L1Entry | None:
        entry = self.data.pop(key, None)
        if entry is None:
            return default
        self.currsize -= entry.size
        return entry

    def popitem(self) -> tuple[L1Key, L1Entry]:
        """Evict the least recently used entry."""
        key, entry = self.data.popitem(last=False)
        self.currsize -= entry.size
        if self._on_evict is not None:
            self._on_evict()
        return key, entry

    def clear(self) -> None:
        self.data.clear()
        self.currsize = 0

    def keys(self) -> list[L1Key]:
        return list(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[L1Key]:
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


class HitPath:
    """What ``CachedCursor.execute``'s L1 hit reads that cannot change while the cursor lives,
    taken once when the cursor is made: bound methods of the L1, the driver's probes, the
    counters. What can change between hits (the scope id, the tenant, the transaction state,
    the epoch, the mirror's versions) is read on each hit."""

    __slots__ = ("backend", "get", "hits", "in_transaction", "latency", "raw_conn", "raw_cursor", "returns",
                 "session", "shape", "st", "tenant", "ticks", "touch", "tx", "versions")

    def __init__(self, session: Session, raw_cursor: object, st: CursorState) -> None:
        l1 = session.l1
        assert l1 is not None
        context = session.context
        adapter = session.adapter
        stats = context.stats
        self.session = session
        self.st = st  # the cursor's state (its attributes are slow to read: see CachedCursor.execute)
        self.raw_cursor: Any = raw_cursor
        self.get: Callable[[L1Key], L1Entry | None] = l1.data.get
        self.touch: Callable[[L1Key], None] = l1.data.move_to_end
        self.raw_conn: Any = session.raw
        self.in_transaction: Callable[[Any], bool] = adapter.transaction_probe(session.raw)
        self.shape: Callable[[Any], Hashable] = adapter.shape_probe(raw_cursor)
        self.tx: TransactionTracker = session.tx
        self.tenant: Callable[[], Hashable] = context.tenant.get
        self.backend: Backend = context.backend
        self.versions: Mapping[str, int] = context.mirror_versions
        self.ticks = stats.l1_ticks
        self.hits = stats.hits["l1"]
        self.latency: Histogram = stats.latency["l1"]
        self.returns: str = adapter.execute_returns
