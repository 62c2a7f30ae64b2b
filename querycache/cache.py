"""QueryCache: the facade users see; it owns the tiers, the store, the stats and the context
(querycache/context.py) its connections work with."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Mapping

from querycache.analysis import Analysis, fold
from querycache.backends.base import Backend, open_backend, shared_stats, size_report
from querycache.config import Config
from querycache.context import CacheContext
from querycache.drivers.registry import detect
from querycache.errors import BackendUnavailable, ConfigError, QueryCacheError
from querycache.invalidation.keys import database_table_key, group_key
from querycache.keys import tenant_tag
from querycache.stats import Stats, StatsSnapshot, merge

if TYPE_CHECKING:
    from querycache.connection import CachedConnection
    from querycache.invalidation.capture import CaptureListener
    from querycache.semantic.tier import SemanticTier
    from querycache.session import Session

log = logging.getLogger("querycache")

_TIERS = ("l1", "l2", "l3")
_ALL = object()
_live_caches: weakref.WeakSet[QueryCache] = weakref.WeakSet()


def _semantic_tier(config: Config, stats: Stats) -> SemanticTier:
    """L3, or a ConfigError naming the extra to install (the core never imports its modules)."""
    import importlib.util

    needed = config.l3.required_modules
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # ValueError: blocked (sys.modules[name] is None)
            return True

    missing = [name for name in needed if absent(name)]
    if missing:
        raise ConfigError(
            f"l3.enabled: the semantic tier needs the 'semantic' extra (missing: {', '.join(missing)}); "
            "install it with: pip install 'querycache[semantic]'"
            + (" (or 'querycache[l3]': the default n-gram embedder alone, no torch)"
               if config.l3.embedder == "ngram" else ""))
    from querycache.semantic.tier import SemanticTier

    tier = SemanticTier(config.l3, stats.semantic)
    tier.start()
    return tier


def _after_fork_in_child() -> None:
    # L1 entries were validated against a mirror this process no longer receives updates for.
    for cache in list(_live_caches):
        cache._drop_process_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class QueryCache:
    """A multi-tier query cache; ``wrap()`` a PEP 249 connection to put it in front of it.

    ``QueryCache()`` uses the embedded defaults: per-connection L1 plus an in-memory
    L2 shared by every connection of this cache in this process.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self._stats = Stats()
        self.namespace = self.config.l2.namespace
        self.backend: Backend = open_backend(self.config.l2.backend if self.config.l2.enabled else "memory",
                                             self.config)
        self._context = context = CacheContext(self.config, self.backend, self._stats)
        # Process-wide table versions that L1 hits are checked against (docs/freshness.md).
        self.mirror_versions = context.mirror_versions
        self._tenant = context.tenant
        self.stats_enabled = context.stats_enabled
        self._registry: Any = None
        self._closed = False
        self._stats_publisher_stop = threading.Event()
        self._start_stats_publisher()
        _live_caches.add(self)
        self.l3: SemanticTier | None = None
        if self.config.l3.enabled:
            self.l3 = context.l3 = _semantic_tier(self.config, self._stats)
        self.capture: CaptureListener | None = None
        if self.config.invalidation.capture.dsn:
            from querycache.invalidation.capture import CaptureListener

            self.capture = CaptureListener(self, self.config.invalidation.capture.dsn,
                                           self.config.invalidation.capture.database_id).start()

    @property
    def enabled(self) -> bool:
        return self._context.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._context.enabled = value
        if not value:
            # L1 hits skip every check but freshness: with no entries, every read bypasses as
            # ``disabled``, as ``explain`` says it does.
            self.flush("l1")

    @property
    def l2_enabled(self) -> bool:
        return self._context.l2_enabled

    @l2_enabled.setter
    def l2_enabled(self, value: bool) -> None:
        self._context.l2_enabled = value

    @property
    def context(self) -> CacheContext:
        """What wrapped connections and change capture work with (internal)."""
        return self._context

    def _start_stats_publisher(self) -> None:
        """With a shared store: publish this process's snapshot every ``stats.publish_interval_s``
        (expiring after three intervals) so that `querycache stats` sees the whole fleet."""
        if shared_stats(self.backend) is None:
            return
        self._stats_publisher_stop = threading.Event()
        stop = self._stats_publisher_stop
        interval = self.config.stats.publish_interval_s

        def publish() -> None:
            while not stop.wait(interval):
                self.publish_stats()

        threading.Thread(target=publish, name="querycache-stats", daemon=True).start()

    def metrics_registry(self) -> Any:
        """A ``prometheus_client.CollectorRegistry`` with this cache's metrics (extra ``metrics``),
        e.g. ``prometheus_client.make_wsgi_app(cache.metrics_registry())`` in an existing app."""
        if self._registry is None:
            from querycache.metrics import registry_for

            self._registry = registry_for(self)
        return self._registry

    def serve_metrics(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` over HTTP on ``port`` from a daemon thread; returns the server."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.metrics_registry())
        return server

    def publish_stats(self) -> bool:
        """Publish this process's snapshot to the shared store now; False without one (or if down)."""
        store = shared_stats(self.backend)
        if store is None:
            return False
        payload = json.dumps(self.stats(top=200).to_dict(), default=str).encode()
        try:
            store.publish_stats(payload, int(self.config.stats.publish_interval_s * 3000))
        except BackendUnavailable:
            return False
        return True

    def fleet_stats(self) -> dict[str, Any]:
        """Every process's latest published snapshot, summed (``processes``: how many); with the
        memory store, this process's own."""
        store = shared_stats(self.backend)
        if store is None:
            return merge([self.stats(top=200).to_dict()])
        return merge([json.loads(raw) for raw in store.read_stats()])

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> QueryCache:
        return cls(Config.from_dict(data))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> QueryCache:
        return cls(Config.from_yaml(path))

    def __enter__(self) -> QueryCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<QueryCache l2={self.config.l2.backend} namespace={self.namespace!r}>"

    # -- the public API ---------------------------------------------------------------------
    def wrap(self, conn: Any, *, database_id: str | None = None,
             refresh_connect: Callable[[], Any] | None = None) -> CachedConnection:
        """A connection that behaves like ``conn``, with this cache in front of its reads.

        ``refresh_connect``: opens a new driver connection to the same database, as the same user.
        With it, answers that must be recomputed (bounded staleness, refresh-ahead, stale-while-
        revalidate) are recomputed in the background on connections it opened (``refresh.workers``
        threads), and the reader is answered at once; without it the reader recomputes them."""
        return self._open(conn, database_id, refresh_connect)[0]

    def _open(self, conn: Any, database_id: str | None, refresh_connect: Callable[[], Any] | None
              ) -> tuple[CachedConnection, Session]:
        from querycache.connection import CachedConnection
        from querycache.session import Session

        if self._closed:
            raise QueryCacheError("this QueryCache is closed; create a new one to wrap connections")
        if isinstance(conn, CachedConnection) or type(conn).__name__ == "CachedConnection":
            raise QueryCacheError("this connection is already wrapped; wrap the driver's connection once")
        if refresh_connect is not None and not callable(refresh_connect):
            raise QueryCacheError(f"refresh_connect must be a callable returning a new driver connection, "
                                  f"got {type(refresh_connect).__name__}")
        session = Session(self._context, conn, detect(conn), database_id)
        if refresh_connect is not None:
            def open_refresh_connection() -> tuple[CachedConnection, Session]:
                # The same database_id as the reader's: the refresh must fill the reader's keys.
                return self._open(refresh_connect(), database_id, None)
            session.refresh_opener = open_refresh_connection
        self._context.opened(session)
        return CachedConnection(self, session), session

    @contextlib.contextmanager
    def scope(self, *, tenant: Hashable) -> Iterator[None]:
        """Entries read inside this block are keyed by ``tenant`` too (in every tier)."""
        token = self._tenant.set(tenant)
        try:
            yield
        finally:
            self._tenant.reset(token)

    def stats(self, top: int = 20) -> StatsSnapshot:
        """Counters of this cache in this process (``top``: how many statement fingerprints, by calls)."""
        snapshot = self._stats.snapshot({"parses": self._context.parses}, top)
        l1s = [session.l1 for session in list(self._context.sessions) if session.l1 is not None]
        snapshot.entries = {"l1": sum(len(l1) for l1 in l1s), "l2": None, "l3": None}
        snapshot.bytes = {"l1": sum(int(l1.currsize) for l1 in l1s), "l2": None, "l3": None}
        l2 = size_report(self.backend)  # a store in this process's memory; Redis counts its own
        if l2 is not None:
            snapshot.entries["l2"] = len(l2)
            snapshot.bytes["l2"] = l2.size_bytes
            if l2.evictions:
                snapshot.evictions["l2"] = l2.evictions
        if self.l3 is not None:
            described = self.l3.describe()
            snapshot.entries["l3"] = described["entries"]
            snapshot.bytes["l3"] = described["bytes"]
            snapshot.semantic["index"] = described
            if snapshot.semantic.get("evictions"):
                snapshot.evictions["l3"] = snapshot.semantic["evictions"]
        return snapshot

    def invalidate_tables(self, *names: str, database_id: str | None = None) -> None:
        """Make every cached read of these tables stale, in every database this cache has seen."""
        if not names:
            raise ValueError("invalidate_tables() needs at least one table name")
        databases = [database_id] if database_id else sorted(self._context.databases)
        keys = [database_table_key(db, fold(name)) for db in databases for name in names]
        self._context.publisher.bump(keys)
        for name in names:
            self._stats.invalidations.incr(fold(name))

    def invalidate_groups(self, *names: str) -> None:
        """Make every entry filled under ``/* cache group=<name> */`` stale."""
        if not names:
            raise ValueError("invalidate_groups() needs at least one group name")
        self._context.publisher.bump([group_key(self.namespace, name) for name in names])
        for name in names:
            self._stats.invalidations.incr(f"group:{name}")

    def flush(self, tier: str | None = None, *, tenant: Hashable = _ALL) -> None:
        """Drop cached entries of one tier (``"l1"``, ``"l2"``, ``"l3"``) or of all (``None``);
        with ``tenant``, only that tenant's (as given to ``scope(tenant=...)``)."""
        if tier is not None and tier not in _TIERS:
            raise ValueError(f"tier {tier!r} is not accepted; accepted: 'l1', 'l2', 'l3' or None")
        if tier in (None, "l1"):
            for session in list(self._context.sessions):
                l1 = session.l1
                if l1 is None:
                    continue
                if tenant is _ALL:
                    l1.clear()
                else:
                    for key in [k for k in list(l1.keys()) if k[1] == tenant]:
                        l1.pop(key, None)
        if tier in (None, "l2"):
            self.backend.flush("" if tenant is _ALL else tenant_tag(tenant) + ":")
        if tier in (None, "l2", "l3") and self.l3 is not None:
            # L3 indexes L2 entries: without them its entries point nowhere.
            self.l3.flush(None if tenant is _ALL else f"{self.namespace}:e:{tenant_tag(tenant)}:")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stats_publisher_stop.set()
        self._context.close_refreshes()
        if self.capture is not None:
            self.capture.stop()
        self.flush("l1")
        if self.l3 is not None:
            self.l3.close()
        self.backend.close()

    # -- kept for callers of the old private names (tests) --------------------------------------
    def _ttl_for(self, analysis: Analysis, tables: set[str]) -> float:
        return self._context.ttl_for(analysis, tables)

    def _swr_for(self, analysis: Analysis, tables: set[str], ttl_s: float) -> float:
        return self._context.swr_for(analysis, tables, ttl_s)

    def _drop_process_state(self) -> None:
        self._context.forget_refreshes()  # its threads did not survive fork(): new ones on first use
        for session in list(self._context.sessions):
            session.forget_refresher()
            if session.l1 is not None:
                session.l1.clear()
        if not self._closed:
            self._start_stats_publisher()  # the publisher thread did not survive fork() either
        if self.capture is not None and not self._closed:
            # The listener thread did not survive fork(): this process listens on its own.
            from querycache.invalidation.capture import CaptureListener

            old = self.capture
            self.capture = CaptureListener(self, old.dsn, old.database_id, old.reconnect_s).start()
