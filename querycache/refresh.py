"""Background refreshes: a bounded queue served by a few threads, each with connections of its own.

A read that is answered from an entry that must be recomputed (a bounded-staleness answer served
after a write, an entry picked for refresh-ahead, or one past its TTL inside its stale-while-
revalidate window) holds the key's refresh lease. When its connection was wrapped with
``refresh_connect``, the recomputation is handed to this pool and the caller is answered at once;
otherwise the caller recomputes it itself (docs/freshness.md, "Refreshes").

The queue is bounded (``refresh.queue``): a refresh that does not fit is shed, counted, and its
lease given back; the entry is then served as it is until another reader takes the refresh.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from querycache.connection import CachedConnection
    from querycache.session import Session
    from querycache.stats import Counters

log = logging.getLogger("querycache")

Job = Callable[[], None]
Opened = tuple["CachedConnection", "Session"]


def own_params(params: Any) -> Any:
    """``params`` as they are now: a refresh runs later, and the caller may reuse its list."""
    if isinstance(params, list):
        return list(params)
    if isinstance(params, dict):
        return dict(params)
    return params


class RefreshPool:
    """``workers`` daemon threads taking refreshes from a queue of at most ``size``; one per key."""

    def __init__(self, workers: int, size: int, counters: Counters) -> None:
        self._workers = workers
        self._queue: queue.Queue[tuple[str, Job] | None] = queue.Queue(maxsize=max(size, 1))
        self._size = size
        self._counters = counters
        self._lock = threading.Lock()
        self._keys: set[str] = set()  # queued or running
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, key: str, job: Job) -> bool:
        """Queue ``job`` (the refresh of ``key``); False when it was shed: the queue is full, the
        key is already being refreshed here, or the pool is closed."""
        with self._lock:
            if self._closed or key in self._keys or self._size == 0:
                return False
            try:
                self._queue.put_nowait((key, job))
            except queue.Full:
                return False
            self._keys.add(key)
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._run, name=f"querycache-refresh-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, job = item
            try:
                job()
            except Exception:  # a refresh's failure is its own: counted, logged at debug level
                self._counters.incr("refresh_errors")
                log.debug("querycache: a background refresh failed", exc_info=True)
            finally:
                with self._lock:
                    self._keys.discard(key)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking refreshes; let the workers finish the queued ones (up to ``timeout_s``)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout_s)


class _Connections(threading.local):
    """Each worker thread's own wrapped connection, per wrapped connection that refreshes."""

    opened: Opened | None = None


class Refresher:
    """The background refreshes of one wrapped connection: run by the pool on connections opened
    with its ``refresh_connect`` (one per worker thread, reused, dropped after an error)."""

    def __init__(self, pool: RefreshPool, open_connection: Callable[[], Opened]) -> None:
        self._pool = pool
        self._open = open_connection
        self._local = _Connections()

    def submit(self, key: str, run: Callable[[CachedConnection, Session], None], failed: Callable[[], None]) -> bool:
        """Queue ``run(connection, its session)`` for ``key``; ``failed()`` runs if it raised (or no
        connection could be opened). False: shed."""
        return self._pool.submit(key, lambda: self._in_worker(run, failed))

    def _in_worker(self, run: Callable[[CachedConnection, Session], None], failed: Callable[[], None]) -> None:
        opened = self._local.opened
        try:
            if opened is None:
                opened = self._local.opened = self._open()
            run(*opened)
        except BaseException:
            self._local.opened = None
            failed()
            if opened is not None:
                try:
                    opened[0].close()
                except Exception:  # noqa: BLE001 - it failed already; a new one is opened next time
                    pass
            raise
