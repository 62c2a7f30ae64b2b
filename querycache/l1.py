"""L1: a per-connection LRU bounded by entries AND bytes, checked against the version mirror."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Hashable

from cachetools import LRUCache

from querycache.codec import Result

if TYPE_CHECKING:
    from querycache.stats import Fingerprint

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


class L1Cache(LRUCache[L1Key, L1Entry]):
    """``cachetools.LRUCache`` whose ``maxsize`` counts bytes, with a second bound on entries."""

    def __init__(self, max_entries: int, max_bytes: int, on_evict: Callable[[], None] | None = None) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=_entry_size)
        self.max_entries = max_entries
        self._on_evict = on_evict

    def __setitem__(self, key: L1Key, value: L1Entry) -> None:
        if value.size > self.maxsize:
            return  # larger than the whole tier: not cached rather than flushing everything
        super().__setitem__(key, value)
        while len(self) > self.max_entries:
            self.popitem()

    def popitem(self) -> tuple[L1Key, L1Entry]:
        item = super().popitem()
        if self._on_evict is not None:
            self._on_evict()
        return item


def _entry_size(entry: L1Entry) -> int:
    return entry.size
