"""Counters and latency histograms, cheap enough for the L1 hit path.

Counters are ``itertools.count`` objects: ``next()`` on one is a single C call,
atomic under the GIL, so concurrent threads never lose an increment and no lock
is taken on the hot path.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
STALE_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
"""How old bounded-staleness answers were (seconds since the first write after their stamp)."""
_TOP_FINGERPRINTS = 20
_MAX_FINGERPRINTS = 2000


def _value(counter: itertools.count[int]) -> int:
    # repr(count(5)) == "count(5)": the next value, i.e. the number of next() calls made.
    return int(repr(counter)[6:-1])


class Counters:
    """A family of named counters (``hits["l1"]``...), created on first use."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def counter(self, name: str) -> itertools.count[int]:
        try:
            return self._counters[name]
        except KeyError:
            with self._lock:
                return self._counters.setdefault(name, itertools.count())

    def incr(self, name: str, n: int = 1) -> None:
        counter = self.counter(name)
        for _ in range(n):
            next(counter)

    def snapshot(self) -> dict[str, int]:
        return {name: _value(c) for name, c in list(self._counters.items()) if _value(c)}

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()


class Histogram:
    """Cumulative latency buckets (seconds), Prometheus style, without a lock: each bucket is an
    ``itertools.count`` (exact under threads); the sum is a plain float add, which a thread switch
    in the middle may rarely lose (the sum is then a hair low; counts stay exact)."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self._buckets = [itertools.count() for _ in range(len(bounds) + 1)]
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        next(self._buckets[bisect.bisect_left(self.bounds, seconds)])
        self.total += seconds

    def to_dict(self) -> dict[str, Any]:
        counts = [_value(b) for b in self._buckets]
        cumulative, running = {}, 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            cumulative["+Inf" if bound == float("inf") else repr(bound)] = running
        return {"count": running, "sum": self.total, "buckets": cumulative}


class Fingerprint:
    """Per statement shape: hits, misses, bypasses and the time the database spent on it.

    The L1 hit path reaches its record through the L1 entry and counts with one ``next()``;
    calls are the sum."""

    __slots__ = ("backend_ns", "bypasses", "executions", "hits", "last_status", "misses", "normalized")

    def __init__(self, normalized: str) -> None:
        self.normalized = normalized
        self.hits = itertools.count()
        self.misses = itertools.count()
        self.bypasses = itertools.count()
        self.executions = itertools.count()
        self.backend_ns = 0
        self.last_status = ""

    @property
    def calls(self) -> int:
        return _value(self.hits) + _value(self.misses) + _value(self.bypasses)

    def ran(self, seconds: float) -> None:
        """The database ran it (a miss or a bypass) for ``seconds``."""
        next(self.executions)
        self.backend_ns += int(seconds * 1e9)

    def to_dict(self, fingerprint: str) -> dict[str, Any]:
        hits, executions = _value(self.hits), _value(self.executions)
        calls = self.calls
        backend = self.backend_ns / 1e9
        mean = backend / executions if executions else 0.0
        return {"fingerprint": fingerprint, "normalized": self.normalized, "calls": calls, "hits": hits,
                "misses": _value(self.misses), "bypasses": _value(self.bypasses),
                "hit_ratio": round(hits / calls, 4) if calls else 0.0, "executions": executions,
                "backend_seconds_total": backend, "backend_seconds_mean": mean,
                "time_saved_seconds": hits * mean, "last_status": self.last_status}


@dataclass
class StatsSnapshot:
    """A point-in-time copy of every counter; ``to_dict()`` gives the API.md shape."""

    hits: dict[str, int]
    misses: int
    coalesced: int
    fills: dict[str, int]
    bypasses: dict[str, int]
    not_filled: dict[str, int]
    invalidations: dict[str, int]
    fail_open: int
    latency_seconds: dict[str, Any]
    fingerprints: list[dict[str, Any]]
    hint_warnings: int = 0
    evictions: dict[str, int] = field(default_factory=dict)
    analysis: dict[str, int] = field(default_factory=dict)
    coalesce: dict[str, int] = field(default_factory=dict)
    semantic: dict[str, Any] = field(default_factory=dict)
    row_level: dict[str, int] = field(default_factory=dict)
    """Row-level invalidation: reads ``pinned`` / ``any``, writes by footprint (``rows``,
    ``table:<why>``), ``escalated:<why>`` (a row-level write that bumped its table after all)."""
    maintain: dict[str, int] = field(default_factory=dict)
    """Maintained answers (docs/maintenance.md): ``maintained`` (entries a commit stored updated),
    ``fills`` (state fills), ``fallback:<reason>`` (entries invalidated instead, and reads not
    maintainable when first filled)."""
    staleness: dict[str, Any] = field(default_factory=dict)
    """Bounded staleness and refreshes (docs/freshness.md): ``served_stale`` (answers served after
    a write, within their ``max_stale``), ``age_seconds`` (a histogram of how long after the first
    write since their stamp those were), ``refreshes`` per why (``stale``, ``ahead``, ``swr``) and
    how (``background``, ``foreground``), ``shed`` (a full refresh queue), ``refresh_errors``,
    ``refresh_skipped:<why>`` (a background refresh that found it was not needed or not possible)."""
    entries: dict[str, int | None] = field(default_factory=dict)
    bytes: dict[str, int | None] = field(default_factory=dict)
    """Single flight: ``leaders`` (elected), ``reelections`` (after a leader's error),
    ``timeouts`` (a follower gave up waiting), ``handover_refused`` (a write since the leader's
    stamp), ``cross_process_waits``; and stale-while-revalidate: ``swr_served``, ``swr_refreshes``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": dict(self.hits),
            "misses": self.misses,
            "coalesced": self.coalesced,
            "fills": dict(self.fills),
            "bypasses": dict(self.bypasses),
            "not_filled": dict(self.not_filled),
            "invalidations": dict(self.invalidations),
            "fail_open": self.fail_open,
            "latency_seconds": self.latency_seconds,
            "fingerprints": list(self.fingerprints),
            "hint_warnings": self.hint_warnings,
            "evictions": dict(self.evictions),
            "analysis": dict(self.analysis),
            "coalesce": dict(self.coalesce),
            "semantic": dict(self.semantic),
            "row_level": dict(self.row_level),
            "maintain": dict(self.maintain),
            "staleness": dict(self.staleness),
            "entries": dict(self.entries),
            "bytes": dict(self.bytes),
        }

    @property
    def hit_ratio(self) -> float:
        hits = sum(self.hits.values()) + self.coalesced
        total = hits + self.misses + sum(self.bypasses.values())
        return hits / total if total else 0.0


class Stats:
    """All counters of one ``QueryCache``."""

    def __init__(self) -> None:
        self.hits = {"l1": itertools.count(), "l2": itertools.count(), "l3": itertools.count()}
        self.fills = {"l1": itertools.count(), "l2": itertools.count(), "l3": itertools.count()}
        self.misses = itertools.count()
        self.coalesced = itertools.count()
        self.fail_open = itertools.count()
        self.hint_warnings = itertools.count()
        self.bypasses = Counters()
        self.not_filled = Counters()
        self.invalidations = Counters()
        self.evictions = Counters()
        self.coalesce = Counters()
        self.semantic = Counters()
        self.row_level = Counters()
        self.maintain = Counters()
        self.staleness = Counters()
        self.stale_age = Histogram(STALE_AGE_BUCKETS)
        self.latency = {"l1": Histogram(), "l2": Histogram(), "l3": Histogram(), "miss": Histogram(),
                        "bypass": Histogram()}
        self.l1_ticks = itertools.count()  # L1-hit latency is sampled: 1 hit in 64 is timed
        self._fingerprints: dict[str, Fingerprint] = {}
        self._lock = threading.Lock()

    def record_fingerprint(self, fingerprint: str, normalized: str, status: str) -> Fingerprint | None:
        """Count one call of the statement shape; returns its record (None beyond the bound)."""
        entry = self._fingerprints.get(fingerprint)
        if entry is None:
            with self._lock:
                if len(self._fingerprints) >= _MAX_FINGERPRINTS:
                    return None
                entry = self._fingerprints.setdefault(fingerprint, Fingerprint(normalized[:500]))
        entry.last_status = status
        if status == "miss":
            next(entry.misses)
        elif status.startswith("bypass"):
            next(entry.bypasses)
        else:
            next(entry.hits)
        return entry

    def snapshot(self, analysis: dict[str, int] | None = None, top_n: int = _TOP_FINGERPRINTS) -> StatsSnapshot:
        with self._lock:
            top = sorted(self._fingerprints.items(), key=lambda kv: -kv[1].calls)[:top_n]
        return StatsSnapshot(
            hits={k: _value(v) for k, v in self.hits.items()},
            misses=_value(self.misses),
            coalesced=_value(self.coalesced),
            fills={k: _value(v) for k, v in self.fills.items()},
            bypasses=self.bypasses.snapshot(),
            not_filled=self.not_filled.snapshot(),
            invalidations=self.invalidations.snapshot(),
            fail_open=_value(self.fail_open),
            latency_seconds={k: h.to_dict() for k, h in self.latency.items()},
            fingerprints=[e.to_dict(fp) for fp, e in top],
            hint_warnings=_value(self.hint_warnings),
            evictions=self.evictions.snapshot(),
            analysis=dict(analysis or {}),
            coalesce=self.coalesce.snapshot(),
            semantic=self.semantic.snapshot(),
            row_level=self.row_level.snapshot(),
            maintain=self.maintain.snapshot(),
            staleness={"served_stale": 0, **self.staleness.snapshot(), "age_seconds": self.stale_age.to_dict()},
        )


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum ``to_dict()`` snapshots of several processes into one of the same shape (plus
    ``processes``); fingerprint rows add up by fingerprint."""
    out: dict[str, Any] = {"processes": len(snapshots)}
    for snap in snapshots:
        for key, value in snap.items():
            if key == "fingerprints":
                continue
            out[key] = _add(out.get(key), value)
    rows: dict[str, dict[str, Any]] = {}
    for snap in snapshots:
        for row in snap.get("fingerprints", []):
            mine = rows.setdefault(row["fingerprint"], {"fingerprint": row["fingerprint"],
                                                        "normalized": row["normalized"]})
            for field_name in ("calls", "hits", "misses", "bypasses", "executions", "backend_seconds_total"):
                mine[field_name] = mine.get(field_name, 0) + row.get(field_name, 0)
            mine["last_status"] = row.get("last_status", "")
    for row in rows.values():
        mean = row["backend_seconds_total"] / row["executions"] if row["executions"] else 0.0
        row["backend_seconds_mean"] = mean
        row["time_saved_seconds"] = row["hits"] * mean
        row["hit_ratio"] = round(row["hits"] / row["calls"], 4) if row["calls"] else 0.0
    out["fingerprints"] = sorted(rows.values(), key=lambda r: -r["calls"])
    return out


def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _add(a.get(k), b.get(k)) for k in {**a, **b}}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a + b
    return b
