"""FAISS indexes over L2 entries, one per scope (tenants never share one), bounded with LRU.

Vectors are unit length, so inner product is cosine. A scope starts as an exact
``IndexIDMap2(IndexFlatIP)``; above ``hnsw_above`` entries it is rebuilt as HNSW, which cannot
remove vectors: removals there are tombstones (never returned), and the scope is rebuilt from
its live vectors when tombstones pass a quarter of it. A search only considers the entries of
the statement's guard bucket (same scope, tables, literal and parameter values, shape): guards
apply before similarity counts.
"""

from __future__ import annotations

import importlib
import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from querycache.semantic.canonical import Canonical
from querycache.stats import Counters

if TYPE_CHECKING:
    from numpy.typing import NDArray

# Untyped on purpose: faiss-cpu's bundled stubs lack SearchParametersHNSW and the selector arguments.
faiss: Any = importlib.import_module("faiss")
_REBUILD_TOMBSTONES = 0.25
_EXACT_BUCKET = 512


class IndexDescription(TypedDict):
    """``SemanticIndex.describe()``: what the index holds now."""

    entries: int
    scopes: int
    hnsw_scopes: int
    buckets: int
    bytes: int
    rebuilds: int


@dataclass(slots=True)
class IndexEntry:
    id: int
    scope: str
    bucket: str
    canonical: Canonical
    store_key: str
    text: str


class _ScopeIndex:
    def __init__(self, dim: int, hnsw_above: int, hnsw_m: int, ef_search: int) -> None:
        self.dim = dim
        self.hnsw_above = hnsw_above
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.hnsw = False
        self.live: set[int] = set()
        self.tombstones: set[int] = set()
        self.index = self._new(False)
        self.rebuilds = 0

    def _new(self, hnsw: bool) -> Any:
        inner: Any
        if hnsw:
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 64
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    def add(self, entry_id: int, vector: NDArray[np.float32]) -> None:
        self.index.add_with_ids(vector.reshape(1, -1), np.array([entry_id], dtype=np.int64))
        self.live.add(entry_id)
        if not self.hnsw and len(self.live) > self.hnsw_above:
            self._rebuild(hnsw=True)

    def remove(self, entry_id: int) -> None:
        self.live.discard(entry_id)
        if self.hnsw:
            self.tombstones.add(entry_id)
            if len(self.tombstones) > _REBUILD_TOMBSTONES * max(1, self.index.ntotal):
                self._rebuild(hnsw=len(self.live) > self.hnsw_above // 2)
        else:
            self.index.remove_ids(np.array([entry_id], dtype=np.int64))

    def _rebuild(self, hnsw: bool) -> None:
        ids = np.fromiter(self.live, dtype=np.int64, count=len(self.live))
        vectors = np.vstack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else None
        index = self._new(hnsw)
        if vectors is not None:
            index.add_with_ids(vectors, ids)
        self.index, self.hnsw = index, hnsw
        self.tombstones.clear()
        self.rebuilds += 1

    def search(self, vector: NDArray[np.float32], allowed: set[int] | None, k: int) -> list[tuple[float, int]]:
        query = vector.reshape(1, -1)
        if allowed is None:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)) if self.hnsw else None
            scores, ids = self.index.search(query, k + len(self.tombstones) if self.hnsw else k, params=params)
        elif len(allowed) <= _EXACT_BUCKET:
            # A guard bucket is usually a handful of entries: score them exactly. (A filtered HNSW
            # walk finds nothing when the filter keeps a few nodes of a large graph: measured,
            # 4 allowed of 10k returned no result.)
            ids = list(allowed)
            vectors = np.vstack([self.index.reconstruct(i) for i in ids])
            scores_1d = vectors @ vector.reshape(-1)
            order = np.argsort(-scores_1d)[:k]
            return [(float(scores_1d[j]), ids[j]) for j in order if ids[j] in self.live]
        else:
            selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            if self.hnsw:
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search * 4, k))
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, ids = self.index.search(query, k, params=params)
        found = []
        for score, entry_id in zip(scores[0].tolist(), ids[0].tolist(), strict=True):
            if entry_id >= 0 and entry_id in self.live:
                found.append((float(score), int(entry_id)))
        return found[:k]

    def memory_bytes(self) -> int:
        """Vectors, plus HNSW's neighbour lists and the id maps (an estimate from their sizes)."""
        total = int(self.index.ntotal)
        size = total * self.dim * 4 + total * 16
        if self.hnsw:
            size += int(total * self.hnsw_m * 2 * 4 * 1.1)
        return size


class SemanticIndex:
    """Every scope's index, the guard buckets, and the LRU order over all entries."""

    def __init__(self, max_entries: int, hnsw_above: int, counters: Counters, *, hnsw_m: int = 32,
                 ef_search: int = 64) -> None:
        self.max_entries = max_entries
        self.hnsw_above = hnsw_above
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._counters = counters
        self._entries: OrderedDict[int, IndexEntry] = OrderedDict()
        self._buckets: dict[str, set[int]] = {}
        self._forms: dict[tuple[str, str], set[int]] = {}  # (bucket, form digest) -> entries
        self._by_store_key: dict[str, int] = {}
        self._scopes: dict[str, _ScopeIndex] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, scope: str, bucket: str, canonical: Canonical, store_key: str, text: str,
            vector: NDArray[np.float32]) -> IndexEntry:
        with self._lock:
            old = self._by_store_key.get(store_key)
            if old is not None:
                self._remove(old)
            entry = IndexEntry(next(self._ids), scope, bucket, canonical, store_key, text)
            index = self._scopes.get(scope)
            if index is None:
                index = self._scopes[scope] = _ScopeIndex(len(vector), self.hnsw_above, self.hnsw_m, self.ef_search)
            index.add(entry.id, vector)
            self._entries[entry.id] = entry
            self._buckets.setdefault(bucket, set()).add(entry.id)
            self._forms.setdefault((bucket, canonical.digest), set()).add(entry.id)
            self._by_store_key[store_key] = entry.id
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries))
                self._remove(oldest)
                self._counters.incr("evictions")
            return entry

    def has_bucket(self, bucket: str) -> bool:
        return bool(self._buckets.get(bucket))

    def has_form(self, bucket: str, digest: str) -> bool:
        return bool(self._forms.get((bucket, digest)))

    def search(self, scope: str, bucket: str | None, vector: NDArray[np.float32], k: int
               ) -> list[tuple[float, IndexEntry]]:
        """The ``k`` nearest entries of ``scope`` (only those of ``bucket`` unless it is None)."""
        with self._lock:
            index = self._scopes.get(scope)
            if index is None:
                return []
            allowed = None
            if bucket is not None:
                allowed = self._buckets.get(bucket)
                if not allowed:
                    return []
                k = min(k, len(allowed))
            found = index.search(vector, allowed, k)
            return [(score, self._entries[i]) for score, i in found if i in self._entries]

    def touch(self, entry: IndexEntry) -> None:
        with self._lock:
            if entry.id in self._entries:
                self._entries.move_to_end(entry.id)

    def remove(self, entry: IndexEntry) -> None:
        with self._lock:
            if self._entries.get(entry.id) is entry:
                self._remove(entry.id)

    def clear(self, store_key_prefix: str | None = None) -> int:
        """Drop every entry (or those whose L2 key starts with the prefix); returns how many."""
        with self._lock:
            if store_key_prefix is None:
                count = len(self._entries)
                self._entries.clear()
                self._buckets.clear()
                self._forms.clear()
                self._by_store_key.clear()
                self._scopes.clear()
                return count
            doomed = [i for i, e in self._entries.items() if e.store_key.startswith(store_key_prefix)]
            for entry_id in doomed:
                self._remove(entry_id)
            return len(doomed)

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        bucket = self._buckets.get(entry.bucket)
        if bucket is not None:
            bucket.discard(entry_id)
            if not bucket:
                del self._buckets[entry.bucket]
        form = self._forms.get((entry.bucket, entry.canonical.digest))
        if form is not None:
            form.discard(entry_id)
            if not form:
                del self._forms[(entry.bucket, entry.canonical.digest)]
        if self._by_store_key.get(entry.store_key) == entry_id:
            del self._by_store_key[entry.store_key]
        index = self._scopes.get(entry.scope)
        if index is not None:
            index.remove(entry_id)
            if not index.live:
                del self._scopes[entry.scope]

    def serialized_size(self, scope: str) -> int:
        """The bytes of ``scope``'s FAISS index as ``faiss.serialize_index`` writes it (0 without one)."""
        with self._lock:
            index = self._scopes.get(scope)
            return 0 if index is None else len(faiss.serialize_index(index.index))

    def describe(self) -> IndexDescription:
        with self._lock:
            return {
                "entries": len(self._entries),
                "scopes": len(self._scopes),
                "hnsw_scopes": sum(1 for s in self._scopes.values() if s.hnsw),
                "buckets": len(self._buckets),
                "bytes": sum(s.memory_bytes() for s in self._scopes.values()),
                "rebuilds": sum(s.rebuilds for s in self._scopes.values()),
            }
