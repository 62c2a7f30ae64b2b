"""A bounded micro-batching embedding worker with a per-lookup latency budget (docs/architecture.md).

Callers hand in texts; one thread embeds them in batches of up to ``batch_max``, waiting at most
``batch_wait_s`` for a batch to fill. A lookup waits at most its budget: when the queue is full,
the model is still loading, or the budget runs out, the lookup is shed (L3 is skipped, the query
runs as a miss) and counted; the vector, once computed, is remembered for the next time.
The model loads in the worker thread, never on a query's path, unless ``load_now()`` loads it in
the caller's (``l3.warmup: block``: in ``QueryCache()``, before the first query).

An embedder with ``inline = True`` (the n-gram one: no model, about 0.07 ms a canonical form) embeds on
the caller's thread instead: no queue, no hand-over, nothing to shed, and an entry is in the index
when ``add`` returns, so the very next statement can be answered from it. A thread would not make
it cheaper (the GIL) and would make the first rewrite's answer depend on scheduling.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

from cachetools import LRUCache

from querycache.stats import Counters

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from querycache.semantic.embedders import Embedder

_log = logging.getLogger(__name__)


class _Job:
    __slots__ = ("callbacks", "done", "text", "vector")

    def __init__(self, text: str) -> None:
        self.text = text
        self.done = threading.Event()
        self.vector: NDArray[np.float32] | None = None
        self.callbacks: list[Callable[[NDArray[np.float32]], None]] = []


class EmbeddingWorker:
    def __init__(self, load: Callable[[], Embedder], *, batch_max: int, batch_wait_s: float, queue_max: int,
                 counters: Counters, memo_size: int = 10000) -> None:
        self._load = load
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.queue_max = queue_max
        self._counters = counters
        self._memo: LRUCache[str, NDArray[np.float32]] = LRUCache(maxsize=memo_size)
        self._memo_lock = threading.Lock()
        self._pending: dict[str, _Job] = {}
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self._pid = os.getpid()
        self.embedder: Embedder | None = None
        self.load_error: BaseException | None = None
        self.load_seconds: float | None = None
        """How long loading the embedder took (None until it is loaded or failed)."""
        self.batches = 0
        self.embedded = 0

    # -- callers ------------------------------------------------------------------------
    def load_now(self) -> bool:
        """Load the embedder in the calling thread (before any query); False if loading failed
        (counted as shed afterwards, reported by ``doctor``)."""
        if self.embedder is None and self.load_error is None:
            self._load_embedder()
        return self.embedder is not None

    @property
    def inline(self) -> bool:
        return self.embedder is not None and self.embedder.inline

    def start(self) -> None:
        """Start the thread (and the model load) if it is not running (again, in a forked child:
        the parent's thread does not exist there). An inline embedder needs no thread."""
        if self.inline:
            return
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._cond = threading.Condition()
            self._queue.clear()
            self._pending.clear()
            self._busy = False
            self._thread = None
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="querycache-l3-embed", daemon=True)
                self._thread.start()

    @property
    def ready(self) -> bool:
        return self.embedder is not None

    def wait_ready(self, timeout: float) -> bool:
        """Block until the model is loaded (tests, benchmarks, ``explain``)."""
        self.start()
        deadline = time.monotonic() + timeout
        while self.embedder is None and self.load_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.embedder is not None

    def embed(self, text: str, budget_s: float) -> NDArray[np.float32] | None:
        """The vector of ``text`` within ``budget_s``, or None (shed, counted)."""
        vector = self.remembered(text)
        if vector is not None:
            return vector
        if self.inline:
            return self._embed_inline(text)
        if self.embedder is None:
            self.start()
            self._counters.incr("shed:model_loading" if self.load_error is None else "shed:model_failed")
            return None
        job = self._enqueue(text, None)
        if job is None:
            self._counters.incr("shed:queue_full")
            return None
        if not job.done.wait(budget_s) or job.vector is None:
            self._counters.incr("shed:budget")
            return None
        return job.vector

    def submit(self, text: str, callback: Callable[[NDArray[np.float32]], None]) -> bool:
        """Embed ``text`` in the background (an inline embedder: now) and call ``callback`` with its
        vector (index adds)."""
        vector = self.remembered(text)
        if vector is None and self.inline:
            vector = self._embed_inline(text)
        if vector is not None:
            callback(vector)
            return True
        self.start()
        if self._enqueue(text, callback) is None:
            self._counters.incr("shed:add_queue_full")
            return False
        return True

    def drain(self, timeout: float) -> bool:
        """Block until every queued text is embedded and its callbacks ran (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._busy:
                    return True
            time.sleep(0.002)
        return False

    def _embed_inline(self, text: str) -> NDArray[np.float32] | None:
        assert self.embedder is not None
        try:
            vector: NDArray[np.float32] = self.embedder.encode([text])[0]
        except Exception as exc:  # noqa: BLE001 - an embedding failure sheds this lookup only
            _log.warning("querycache: L3 embedding failed: %s", exc)
            self._counters.incr("shed:embed_failed")
            return None
        self.batches += 1
        self.embedded += 1
        with self._memo_lock:
            self._memo[text] = vector
        return vector

    def remembered(self, text: str) -> NDArray[np.float32] | None:
        with self._memo_lock:
            return self._memo.get(text)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _enqueue(self, text: str, callback: Callable[[NDArray[np.float32]], None] | None) -> _Job | None:
        self.start()
        with self._cond:
            job = self._pending.get(text)
            if job is None:
                if len(self._queue) >= self.queue_max or self._closed:
                    return None
                job = _Job(text)
                self._pending[text] = job
                self._queue.append(job)
                self._cond.notify()
            if callback is not None:
                job.callbacks.append(callback)
            return job

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        if self.embedder is not None:
            self._loop()  # restarted in a forked child: the model came with the process
            return
        if self._load_embedder():
            self._loop()

    def _load_embedder(self) -> bool:
        started = time.monotonic()
        try:
            embedder = self._load()
        except BaseException as exc:  # noqa: BLE001 - reported by doctor and counted as shed
            self.load_error = exc
            _log.warning("querycache: the L3 embedder could not be loaded: %s", exc)
            return False
        finally:
            self.load_seconds = time.monotonic() - started
        self.embedder = embedder
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                first = time.monotonic()
                while len(self._queue) < self.batch_max and not self._closed:
                    remaining = first + self.batch_wait_s - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
                self._busy = True
            try:
                self._embed(batch)
            finally:
                with self._cond:
                    self._busy = False

    def _embed(self, batch: list[_Job]) -> None:
        assert self.embedder is not None
        try:
            vectors = self.embedder.encode([job.text for job in batch])
        except Exception as exc:  # noqa: BLE001 - an embedding failure sheds these lookups only
            _log.warning("querycache: L3 embedding failed: %s", exc)
            vectors = None
        self.batches += 1
        self.embedded += len(batch)
        for i, job in enumerate(batch):
            with self._cond:
                self._pending.pop(job.text, None)
            if vectors is not None:
                job.vector = vectors[i]
                with self._memo_lock:
                    self._memo[job.text] = vectors[i]
            job.done.set()
            if job.vector is not None:
                for callback in job.callbacks:
                    try:
                        callback(job.vector)
                    except Exception as exc:  # noqa: BLE001 - a failed index add loses that entry only
                        _log.warning("querycache: L3 index add failed: %s", exc)
