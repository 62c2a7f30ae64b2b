"""L3 as the connection sees it: prepare a statement, look up an equivalent entry, add one.

A lookup answers only with a *proposal*: an earlier statement of the same scope and guard
bucket, similar enough (cosine >= threshold) and with an equal canonical form. The caller reads
the proposal's entry through L2 with the freshness rule, so L3 never serves a row L2 would not.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from querycache.semantic.canonical import Canonical, Ineligible, canonicalize, permutation
from querycache.semantic.embedders import NGRAM, load_embedder
from querycache.semantic.index import IndexDescription, IndexEntry, SemanticIndex
from querycache.semantic.worker import EmbeddingWorker
from querycache.stats import Counters

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from querycache.config import L3Config


class TierDescription(IndexDescription):
    """``SemanticTier.describe()``: the index, and the embedder with its worker."""

    model: str | None
    model_loaded: bool
    model_error: str | None
    model_load_seconds: float | None
    model_loaded_in: str
    inline: bool
    batches: int
    embedded: int


@dataclass(frozen=True, slots=True)
class Proposal:
    entry: IndexEntry
    similarity: float
    columns: tuple[int, ...]
    """For each output column of the statement, the candidate's column that holds it."""

    @property
    def identity(self) -> bool:
        return self.columns == tuple(range(len(self.columns)))


class SemanticTier:
    def __init__(self, config: L3Config, counters: Counters) -> None:
        self.config = config
        self.counters = counters
        self.index = SemanticIndex(config.max_entries, config.hnsw_above, counters)
        self.worker = EmbeddingWorker(lambda: load_embedder(config.embedder), batch_max=config.batch_max,
                                      batch_wait_s=config.batch_wait_ms / 1000, queue_max=config.queue_max,
                                      counters=counters)
        self._prepared: LRUCache[Any, Canonical | str] = LRUCache(maxsize=4096)
        self._lock = threading.Lock()
        self.loaded_in = "background"
        if config.warmup == "block" or config.embedder == NGRAM:
            # Before the first query: a lookup never finds the model loading (nothing to load for
            # the n-gram embedder; with warmup: block, QueryCache() waits for the model).
            self.worker.load_now()
            self.loaded_in = "QueryCache()"

    def start(self) -> None:
        """Load the model in the background now if it is not loaded (it is never loaded on a
        query's path)."""
        self.worker.start()

    def close(self) -> None:
        self.worker.close()

    # -- statements ---------------------------------------------------------------------
    def prepare(self, sql: str, dialect: str, paramstyle: str, params: Any, params_key: Any) -> Canonical | None:
        """The statement's canonical form, or None when it cannot take part (counted)."""
        key = (dialect, paramstyle, sql, params_key)
        with self._lock:
            found = self._prepared.get(key)
        if found is None:
            try:
                found = canonicalize(sql, dialect, paramstyle, params)
            except Ineligible as exc:
                found = exc.reason
            with self._lock:
                self._prepared[key] = found
        if isinstance(found, str):
            self.counters.incr(f"ineligible:{found}")
            return None
        return found

    @staticmethod
    def bucket(scope: str, version_keys: tuple[str, ...], canonical: Canonical) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for part in (scope, "\x1e".join(version_keys), canonical.guards):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x1f")
        return digest.hexdigest()

    # -- lookup and add -----------------------------------------------------------------
    def lookup(self, scope: str, version_keys: tuple[str, ...], canonical: Canonical, threshold: float,
               budget_s: float | None = None) -> Proposal | None:
        """The best proposal, or None (no candidate in the guard bucket, shed, or none passed).

        What is embedded is the canonical form, not the text as written: measured on the
        corpora, MiniLM puts a rewrite of a statement further from it (e.g. 0.88 for aliases,
        column order and an oriented comparison at once) than a near miss (0.999 for ``<`` vs
        ``<=``), so a threshold on the raw text discards proven equivalents and stops nothing
        the canonical comparison does not stop."""
        self.counters.incr("lookups")
        if not self.worker.ready:
            # Warming up (or the model failed to load): nothing could be embedded, and the index
            # is empty or missing the adds queued meanwhile. Its own reason, so that a cache that
            # answers nothing from L3 during warm-up says why.
            self.counters.incr("shed:model_loading" if self.worker.load_error is None else "shed:model_failed")
            self.worker.start()
            return None
        bucket = self.bucket(scope, version_keys, canonical)
        if not self.index.has_bucket(bucket):
            self.counters.incr("no_candidate")  # nothing passes the guards: no embedding needed
            return None
        if not self.index.has_form(bucket, canonical.digest):
            # No entry of the bucket has this canonical form, so none could be accepted whatever
            # its similarity: skip the embedding (an L3 miss then costs no model call).
            self.counters.incr("no_equal_form")
            return None
        budget = self.config.budget_ms / 1000 if budget_s is None else budget_s
        vector = self.worker.embed(canonical.form, budget)
        if vector is None:
            return None
        for similarity, entry in self.index.search(scope, bucket, vector, self.config.top_k):
            if similarity < threshold - 1e-6:  # float noise: an equal text may score 0.9999999
                self.counters.incr("rejected:similarity")
                break  # in decreasing order: none further can pass
            if entry.canonical.form != canonical.form:
                self.counters.incr("rejected:form")
                continue
            columns = permutation(canonical, entry.canonical)
            if columns is None:
                self.counters.incr("rejected:columns")
                continue
            self.counters.incr("proposals")
            self.index.touch(entry)
            return Proposal(entry, similarity, columns)
        return None

    def candidates(self, scope: str, version_keys: tuple[str, ...], canonical: Canonical, k: int = 5,
                   wait_s: float = 30.0) -> list[dict[str, Any]]:
        """For ``explain``: the nearest entries of the guard bucket, with why each passes or not
        (waits for the model and the embedding instead of shedding)."""
        bucket = self.bucket(scope, version_keys, canonical)
        if not self.index.has_bucket(bucket) or not self.worker.wait_ready(wait_s):
            return []
        vector = self.worker.embed(canonical.form, wait_s)
        if vector is None:
            return []
        out = []
        for similarity, entry in self.index.search(scope, bucket, vector, k):
            columns = permutation(canonical, entry.canonical) if entry.canonical.form == canonical.form else None
            out.append({"normalized": entry.text, "l2_key": entry.store_key, "similarity": round(similarity, 6),
                        "same_form": entry.canonical.form == canonical.form, "columns": list(columns or ())})
        return out

    def add(self, scope: str, version_keys: tuple[str, ...], canonical: Canonical, text: str,
            store_key: str) -> None:
        """Index a filled L2 entry; the embedding runs in the worker, off the query's path."""
        bucket = self.bucket(scope, version_keys, canonical)

        def added(vector: NDArray[np.float32]) -> None:
            self.index.add(scope, bucket, canonical, store_key, text, vector)
            self.counters.incr("adds")

        self.worker.submit(canonical.form, added)

    def forget(self, entry: IndexEntry, reason: str) -> None:
        """The proposal's L2 entry is gone or no longer fresh: drop it from the index."""
        self.index.remove(entry)
        self.counters.incr(f"dropped:{reason}")

    def flush(self, store_key_prefix: str | None = None) -> int:
        return self.index.clear(store_key_prefix)

    def describe(self) -> TierDescription:
        worker = self.worker
        embedder = worker.embedder
        return {
            **self.index.describe(),
            "model": embedder.name if embedder is not None else None,
            "model_loaded": worker.ready,
            "model_error": str(worker.load_error) if worker.load_error else None,
            "model_load_seconds": worker.load_seconds,
            "model_loaded_in": self.loaded_in,
            "inline": worker.inline,
            "batches": worker.batches,
            "embedded": worker.embedded,
        }


def wait_until_indexed(tier: SemanticTier, count: int, timeout: float = 30.0) -> bool:
    """Block until the index holds ``count`` entries (tests and benchmarks: adds are asynchronous)."""
    deadline = time.monotonic() + timeout
    while len(tier.index) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(tier.index) >= count
