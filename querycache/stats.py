"""Counters and latency histograms, cheap enough for the L1 hit path.

Counters are ``itertools.count`` objects: ``next()`` on one is a single C call,
atomic under the GIL, so concurrent threads never lose an increment and no lock
is taken on the hot path.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
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

    def incr(self, name: str) -> None:
        next(self.counter(name))

    def snapshot(self) -> dict[str, int]:
        return {name: _value(c) for name, c in list(self._counters.items()) if _value(c)}

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()


class Histogram:
    """Cumulative latency buckets (seconds), Prometheus style."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        index = 0
        for index, bound in enumerate(LATENCY_BUCKETS):  # noqa: B007
            if seconds <= bound:
                break
        else:
            index = len(LATENCY_BUCKETS)
        with self._lock:
            self.buckets[index] += 1
            self.count += 1
            self.total += seconds

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            cumulative, running = {}, 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.buckets, strict=False):
                running += n
                cumulative["+Inf" if bound == float("inf") else repr(bound)] = running
            return {"count": self.count, "sum": self.total, "buckets": cumulative}


@dataclass
class _Fingerprint:
    normalized: str
    calls: int = 0
    misses: int = 0
    bypasses: int = 0
    last_status: str = ""


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
        self.latency = {"l2": Histogram(), "miss": Histogram(), "bypass": Histogram()}
        self._fingerprints: dict[str, _Fingerprint] = {}
        self._lock = threading.Lock()

    def record_fingerprint(self, fingerprint: str, normalized: str, status: str) -> None:
        entry = self._fingerprints.get(fingerprint)
        if entry is None:
            with self._lock:
                if len(self._fingerprints) >= _MAX_FINGERPRINTS:
                    return
                entry = self._fingerprints.setdefault(fingerprint, _Fingerprint(normalized[:500]))
        entry.calls += 1
        entry.last_status = status
        if status == "miss":
            entry.misses += 1
        elif status.startswith("bypass"):
            entry.bypasses += 1

    def snapshot(self, analysis: dict[str, int] | None = None) -> StatsSnapshot:
        with self._lock:
            top = sorted(self._fingerprints.items(), key=lambda kv: -kv[1].calls)[:_TOP_FINGERPRINTS]
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
            fingerprints=[
                {"fingerprint": fp, "normalized": e.normalized, "calls": e.calls, "misses": e.misses,
                 "bypasses": e.bypasses, "last_status": e.last_status}
                for fp, e in top
            ],
            hint_warnings=_value(self.hint_warnings),
            evictions=self.evictions.snapshot(),
            analysis=dict(analysis or {}),
            coalesce=self.coalesce.snapshot(),
        )
