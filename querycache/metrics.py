"""Prometheus metrics (optional extra ``metrics``: prometheus_client).

``QueryCacheCollector(cache)`` turns ``cache.stats()`` into metric families at scrape time:
nothing is counted twice and nothing runs on the query path. Serve it with
``cache.serve_metrics(port)``, or mount ``make_wsgi_app(cache.metrics_registry())`` /
``make_asgi_app(...)`` from ``prometheus_client`` in an existing application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from querycache.errors import ConfigError
from querycache.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from querycache.cache import QueryCache

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector
except ModuleNotFoundError as exc:  # pragma: no cover - exercised without the extra
    raise ConfigError("Prometheus metrics need prometheus_client: pip install 'querycache[metrics]'") from exc


class QueryCacheCollector(Collector):
    """Every counter of one ``QueryCache`` as Prometheus metric families (``querycache_*``)."""

    def __init__(self, cache: QueryCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Any]:
        snap = self.cache.stats(top=0).to_dict()
        hits = CounterMetricFamily("querycache_hits", "Reads answered from a tier", labels=["tier"])
        for tier, n in snap["hits"].items():
            hits.add_metric([tier], n)
        yield hits
        yield CounterMetricFamily("querycache_misses", "Reads that ran on the database", value=snap["misses"])
        yield CounterMetricFamily("querycache_coalesced", "Reads answered with a coalesced leader's result",
                                  value=snap["coalesced"])
        yield _labelled("querycache_fills", "Entries stored, by tier", "tier", snap["fills"])
        yield _labelled("querycache_bypasses", "Reads and writes that bypassed the cache, by reason", "reason",
                        snap["bypasses"])
        yield _labelled("querycache_not_filled", "Results not stored, by reason", "reason", snap["not_filled"])
        yield _labelled("querycache_invalidations", "Version bumps, by table", "table", snap["invalidations"])
        yield _labelled("querycache_evictions", "Entries evicted, by tier", "tier", snap["evictions"])
        yield _labelled("querycache_coalesce_events", "Single-flight and stale-while-revalidate events", "event",
                        snap["coalesce"])
        yield CounterMetricFamily("querycache_fail_open", "Store failures answered by the database",
                                  value=snap["fail_open"])
        yield CounterMetricFamily("querycache_hint_warnings", "Malformed or unknown hint options",
                                  value=snap["hint_warnings"])
        entries = GaugeMetricFamily("querycache_entries", "Entries held, by tier", labels=["tier"])
        size = GaugeMetricFamily("querycache_bytes", "Bytes held, by tier", labels=["tier"])
        for tier, n in snap["entries"].items():
            if n is not None:
                entries.add_metric([tier], n)
        for tier, n in snap["bytes"].items():
            if n is not None:
                size.add_metric([tier], n)
        yield entries
        yield size
        latency = HistogramMetricFamily("querycache_latency_seconds", "Time per path (l1 hit, l2 hit, "
                                        "miss incl. the database, bypass incl. the database)", labels=["path"])
        for path, hist in snap["latency_seconds"].items():
            buckets = [(bound, hist["buckets"][bound]) for bound in (*map(repr, LATENCY_BUCKETS), "+Inf")]
            latency.add_metric([path], buckets, hist["sum"])
        yield latency


def _labelled(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in sorted(values.items()):
        family.add_metric([key], n)
    return family


def registry_for(cache: QueryCache) -> CollectorRegistry:
    """A registry holding only this cache's collector (mount it, or register the collector yourself)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueryCacheCollector(cache))
    return registry
