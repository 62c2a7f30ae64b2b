"""Request coalescing inside one process: one leader per L2 key, the other threads wait for it.

The leader runs the normal miss path (and, with a shared store, first takes the key's lease
there, so that one process in all runs the query). What it hands over is an L1-shaped entry:
the result, the stamp it was read at, the version keys and the L1 token of the leader's lookup.
A follower takes it only if it passes the same check as an L1 hit at that moment (same token,
no mirror version above the stamp, and the transaction's stamp where one applies), so a
follower that arrived after a commit returned never gets rows read before it.
"""

from __future__ import annotations

import threading
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from querycache.l1 import L1Entry


class Outcome(Enum):
    SHARED = "shared"
    """The leader's entry is in ``Flight.entry``: check it, then serve it."""
    FAILED = "failed"
    """The leader raised: its error is its own; the followers elect a new leader."""
    UNSHARED = "unshared"
    """The leader ran but has nothing to share (not cacheable, too large, pending write...):
    every follower runs the query itself."""


class Flight:
    """One leader's run for one key. Its event is made when a follower joins: a flight nobody
    waits for (most L2 hits, most misses) costs no ``threading.Event``."""

    __slots__ = ("_done", "entry", "finished", "followers", "outcome")

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.entry: L1Entry | None = None  # set when SHARED
        self.followers = 0
        self.finished = False
        self._done: threading.Event | None = None

    def wait(self, timeout_s: float) -> Outcome | None:
        """The outcome, or None when ``timeout_s`` passed first (followers only: ``join`` made the event)."""
        done = self._done
        assert done is not None
        return self.outcome if done.wait(timeout_s) else None


class SingleFlight:
    """The flights of one ``QueryCache``, by L2 key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}

    def join(self, key: str) -> tuple[Flight, bool]:
        """The key's flight and whether the caller leads it (it must then ``finish`` it)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.followers += 1
                if flight._done is None:
                    flight._done = threading.Event()
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def finish(self, key: str, flight: Flight, outcome: Outcome, entry: L1Entry | None = None) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.entry = entry
            flight.outcome = outcome
            flight.finished = True
            done = flight._done  # every follower joined before this, under the lock
        if done is not None:
            done.set()

    def __len__(self) -> int:
        return len(self._flights)
