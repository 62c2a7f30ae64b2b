"""CacheContext: what a wrapped connection needs from its cache, as public methods.

``QueryCache`` is the facade users see; the context is the part connections, cursors and
change capture work with: the store, the stats, the analyzers, the interned scopes, the
catalogs, the coalescing flights, the publisher. Nothing here reaches into a connection.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Hashable, Mapping

from querycache.analysis import CATALOG_CHANGES, Analysis, Analyzer
from querycache.backends.base import (
    Backend,
    MaintainedAnswers,
    RowLevelRegistry,
    maintained_answers,
    row_level_registry,
)
from querycache.coalesce import SingleFlight
from querycache.config import Config
from querycache.drivers.base import Catalog
from querycache.invalidation.publisher import Publisher
from querycache.maintain.state import StateCache
from querycache.refresh import RefreshPool
from querycache.stats import Stats

if TYPE_CHECKING:
    from querycache.semantic.tier import SemanticTier
    from querycache.session import Session

log = logging.getLogger("querycache")

_CATALOG_RELOAD_S = 1.0


def _smallest(default: float, per_table: Mapping[str, int], tables: set[str], hint: int | None) -> float:
    """The hint, else the smallest of the tables' own values (the default for a table without)."""
    if hint is not None:
        return float(hint)
    return float(min((per_table.get(table, default) for table in tables), default=default))


class CacheContext:
    """The shared state of one ``QueryCache`` that its connections read and update."""

    def __init__(self, config: Config, backend: Backend, stats: Stats) -> None:
        self.config = config
        self.backend = backend
        self.stats = stats
        self.enabled = True
        self.l2_enabled = config.l2.enabled
        self.namespace = config.l2.namespace
        self.stats_enabled = config.stats.enabled
        # Process-wide table versions that L1 hits are checked against (docs/freshness.md).
        self.mirror_versions: Mapping[str, int] = backend.mirror_versions
        self.tenant: contextvars.ContextVar[Hashable] = contextvars.ContextVar(
            f"querycache_tenant_{id(self)}", default=None
        )
        self.l3: SemanticTier | None = None
        self.flights = SingleFlight()
        # The store's row-level registry, if it has one (decided once: no probe per query).
        self.row_level: RowLevelRegistry | None = row_level_registry(backend)
        # Maintained answers (docs/maintenance.md): on when configured and the store can keep them.
        self.maintain: MaintainedAnswers | None = (
            maintained_answers(backend) if config.invalidation.maintain.enabled else None)
        self.primary_keys: dict[tuple[str, str], tuple[str, bool] | None] = {}
        self.maintain_refused: dict[str, str] = {}  # read texts found not maintainable, and why
        self.maintain_states = StateCache(config.invalidation.maintain.state_cache_groups)
        self.publisher = Publisher(self)
        # Row-level invalidation: (table key, column) pairs this process registered as pinned, with
        # the store's epoch read just before the registration (a restart forgets registrations).
        self.row_dependencies: dict[tuple[str, str], str] = {}
        self.generated_columns: dict[tuple[str, str], frozenset[str]] = {}
        self.sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._refresh_pool: RefreshPool | None = None
        self.databases: set[str] = set()
        self.lock = threading.RLock()
        self._analyzers: dict[tuple[str, str], Analyzer] = {}
        self._scopes: dict[tuple[Any, ...], tuple[int, str]] = {}
        self._catalogs: dict[str, tuple[Catalog, int]] = {}
        self._catalog_loaded_at: dict[str, float] = {}
        # The catalog key's version each catalog was read at (see catalog_for).
        self._catalog_announced: dict[str, int] = {}
        self._catalog_versions: dict[str, int] = {}
        self._catalog_failing: set[str] = set()
        self._store_down_logged = False

    # -- analysis and scopes --------------------------------------------------------------
    @property
    def parses(self) -> int:
        return sum(a.parses for a in self._analyzers.values())

    def analyzer_for(self, dialect: str, paramstyle: str) -> Analyzer:
        key = (dialect, paramstyle)
        analyzer = self._analyzers.get(key)
        if analyzer is None:
            with self.lock:
                analyzer = self._analyzers.setdefault(
                    key, Analyzer(dialect, paramstyle, strict_hints=self.config.hints.strict)
                )
        return analyzer

    def intern_scope(self, scope: tuple[Any, ...]) -> tuple[int, str]:
        """A small id (L1 keys) and a stable text (shared keys) for a scope tuple."""
        with self.lock:
            found = self._scopes.get(scope)
            if found is None:
                found = (len(self._scopes) + 1, repr(scope))
                self._scopes[scope] = found
            return found

    # -- catalogs -----------------------------------------------------------------------
    def catalog_for(self, session: Session) -> tuple[Catalog, int]:
        database = session.database_id
        # DDL anywhere (another process, change capture) raises the catalog key in this process's
        # mirror before its commit returns: read the catalog again (docs/isolation.md).
        announced = self.mirror_versions.get(session.version_key(CATALOG_CHANGES), -1)
        version = self._catalog_versions.get(database, 0)
        cached = self._catalogs.get(database)
        if cached is not None and cached[1] == version:
            if announced <= self._catalog_announced.get(database, -1):
                return cached
            self.invalidate_catalog(database)
            version = self._catalog_versions[database]
        adapter = session.adapter
        raw = session.raw
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
        with self.lock:
            self._catalogs[database] = (catalog, version)
            self._catalog_loaded_at[database] = time.monotonic()
            self._catalog_announced[database] = announced
        return catalog, version

    def reload_stale_catalog(self, database: str) -> bool:
        """Mark the catalog of ``database`` for reloading if it is over a second old."""
        loaded_at = self._catalog_loaded_at.get(database)
        if loaded_at is None or time.monotonic() - loaded_at < _CATALOG_RELOAD_S:
            return False
        self.invalidate_catalog(database)
        return True

    def invalidate_catalog(self, database: str) -> None:
        with self.lock:
            self._catalog_versions[database] = self._catalog_versions.get(database, 0) + 1

    # -- lifetimes ------------------------------------------------------------------------
    def ttl_for(self, analysis: Analysis, tables: set[str]) -> float:
        """The hint's TTL, else the smallest of the tables' (a table without its own: the default);
        capped by ``ttl.max_s``."""
        ttl_config = self.config.ttl
        ttl = _smallest(ttl_config.default_s, ttl_config.tables, tables, analysis.hints.ttl)
        return min(ttl, float(ttl_config.max_s))

    def swr_for(self, analysis: Analysis, tables: set[str], ttl_s: float) -> float:
        """The stale-while-revalidate window, chosen like the TTL; TTL plus window stays within
        ``ttl.max_s``."""
        ttl_config = self.config.ttl
        swr = _smallest(ttl_config.swr_s, ttl_config.swr_tables, tables, analysis.hints.swr)
        if ttl_s <= 0:
            return 0.0
        return max(0.0, min(swr, float(ttl_config.max_s) - ttl_s))

    def max_stale_for(self, analysis: Analysis, tables: set[str], ttl_s: float) -> float:
        """Bounded staleness (docs/freshness.md): the hint's, else the smallest of the tables' own
        ``ttl.max_stale_s`` (a table without one: 0, strict); 0 for what is not cached."""
        if ttl_s <= 0:
            return 0.0
        return _smallest(0, self.config.ttl.max_stale_s, tables, analysis.hints.max_stale)

    def refresh_pool(self) -> RefreshPool:
        """The background refresh threads of this cache (started on first use)."""
        with self.lock:
            if self._refresh_pool is None:
                refresh = self.config.refresh
                self._refresh_pool = RefreshPool(refresh.workers, refresh.queue, self.stats.staleness)
            return self._refresh_pool

    def forget_refreshes(self) -> None:
        """After fork(): the pool's threads are the parent's; the next refresh starts a new pool."""
        with self.lock:
            self._refresh_pool = None

    def close_refreshes(self) -> None:
        """Stop the refresh pool, letting it finish what it was given."""
        with self.lock:
            pool, self._refresh_pool = self._refresh_pool, None
        if pool is not None:
            pool.close()

    # -- failures and connections ---------------------------------------------------------------
    def store_failed(self) -> None:
        """Count a store failure (fail open) and log the first one."""
        next(self.stats.fail_open)
        if not self._store_down_logged:
            self._store_down_logged = True
            log.warning("querycache: the shared store failed; queries go to the database")

    def opened(self, session: Session) -> None:
        with self.lock:
            self.sessions.add(session)
            self.databases.add(session.version_namespace)

    def closed(self, session: Session) -> None:
        self.sessions.discard(session)
