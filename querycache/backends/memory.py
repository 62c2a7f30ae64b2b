"""The embedded L2 store: in-process, bounded in bytes, the default when no Redis is configured.

It shares entries between every connection of one ``QueryCache`` in one process.
It is per process: after ``fork()`` parent and child each hold a private copy
and no longer see each other's writes, so it warns once when used after a fork.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
import uuid
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from querycache.backends.base import (
    CATCHUP_LOG,
    MISS,
    Baseline,
    Lookup,
    MaintainCheck,
    MaintainUpdate,
    _Miss,
    state_digest,
)
from querycache.invalidation.keys import is_bucket

if TYPE_CHECKING:
    from querycache.config import Config

log = logging.getLogger("querycache")

_live: weakref.WeakSet[MemoryBackend] = weakref.WeakSet()


def _mark_forked() -> None:
    for backend in list(_live):
        backend._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


@dataclass(slots=True)
class _Entry:
    value: bytes
    version_keys: tuple[str, ...]
    stamp: int
    expires_at: float
    soft_expires_at: float = 0.0  # stale-while-revalidate: past it, one caller refreshes
    state: bytes | None = None  # a maintained answer's state (docs/maintenance.md)
    cost_s: float = 0.0  # what the query cost: refresh-ahead recomputes it that much early, or more
    digest: str = ""  # state_digest(state), computed once when the state is stored

_MAX_VERSIONS = 1_000_000  # table keys are few; row-level bucket keys are one per value read
_MAX_MAINTAINED = 1000  # registered maintained entries per table: past it, new ones are not maintained
_HISTORY = 512  # groups of bumps kept per version key for bounded-staleness reads (up to twice as many)
_GROUP_S = 0.1  # bumps within this long of their group's first join it (as the Redis store's)


@dataclass(slots=True)
class _Log:
    """A version key's catch-up log (docs/maintenance.md, "Fills under writes"): the tick it started
    at, until when it is kept (monotonic), and per write since its tick and the rows it changed
    (None: unknown)."""

    since: int
    until: float
    writes: list[tuple[int, bytes | None]]


class ProcessClock:
    """Table versions, pending marks and the counter, shared by every memory store of a process:
    two caches over one database must invalidate each other (API.md); entries stay per store."""

    def __init__(self, history: tuple[int, float] = (_HISTORY, _GROUP_S)) -> None:
        """``history``: (groups, group seconds) of the bump history kept per version key."""
        self.history_groups, self.history_group_s = history
        self.lock = threading.Lock()
        self.epoch = uuid.uuid4().hex
        self.seq = 0
        self.versions: dict[str, int] = {}
        self.pending: dict[str, dict[str, float]] = {}
        # Row-level invalidation: the columns readers pin, per table key, and a version per table.
        self.dependencies: dict[str, set[str]] = {}
        self.dependency_versions: dict[str, int] = {}
        # Maintained answers: the maintainer lease of each table (token, until), per process.
        self.maintainers: dict[str, tuple[str, float]] = {}
        # Bounded staleness: per version key, its recent bumps in groups (each group's last tick, and
        # when its first bump was: monotonic), and the newest tick trimmed from them (a stamp below it
        # cannot be answered).
        self.history: dict[str, tuple[list[int], list[float]]] = {}
        self.history_floor: dict[str, int] = {}
        self.forgotten_below = 0  # histories were dropped (bucket versions forgotten) up to this counter
        # Fills under writes: per version key a fill asked to log, what its writes changed.
        self.catchup: dict[str, _Log] = {}

    def remember(self, key: str, tick: int, now: float) -> None:
        """Record a bump of ``key`` (docs/freshness.md, "Bounded staleness")."""
        found = self.history.get(key)
        if found is None:
            found = self.history[key] = ([], [])
        ticks, times = found
        if times and now - times[-1] < self.history_group_s:
            ticks[-1] = tick  # the group now ends at this tick
        else:
            ticks.append(tick)
            times.append(now)
        keep = self.history_groups
        if len(ticks) > 2 * keep:
            self.history_floor[key] = ticks[-keep - 1]
            del ticks[:-keep]
            del times[:-keep]

    def first_bump_after(self, version_keys: Sequence[str], stamp: int) -> float | None:
        """When the first bump of any of ``version_keys`` after ``stamp`` happened (monotonic; at most
        ``_GROUP_S`` early, never late), or None when that cannot be told (no such bump, a version or
        its history forgotten)."""
        first: float | None = None
        for k in version_keys:
            version = self.versions.get(k)
            if version is None:
                return None
            if version <= stamp:
                continue
            found = self.history.get(k)
            if found is None or max(self.history_floor.get(k, -1), self.forgotten_below) > stamp:
                return None
            ticks, times = found
            i = bisect.bisect_right(ticks, stamp)
            if i == len(ticks):
                return None
            if first is None or times[i] < first:
                first = times[i]
        return first


_PROCESS_CLOCK = ProcessClock()


class MemoryBackend:
    """Entries, table versions and pending marks in process memory, behind one lock."""

    name = "memory"

    def __init__(self, max_bytes: int = 268435456, namespace: str = "querycache",
                 clock: ProcessClock | None = None) -> None:
        self.max_bytes = max_bytes
        self.namespace = namespace
        self._clock = clock or _PROCESS_CLOCK
        self._epoch = self._clock.epoch
        # What L1 entries are checked against (Backend.l1_epoch): this process's clock never
        # changes incarnation, so a plain attribute (an L1 hit reads it on every call).
        self.l1_epoch: str = self._epoch
        # The version dict doubles as the process mirror that L1 hits are checked against.
        self.versions = self._clock.versions
        self._pending = self._clock.pending
        self._dependencies = self._clock.dependencies
        self._dependency_versions = self._clock.dependency_versions
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._refreshing: dict[str, float] = {}
        self._maintained: dict[str, dict[str, bytes]] = {}
        self._bytes = 0
        self._lock = self._clock.lock
        self._forked = False
        self._fork_warned = False
        self.evictions = 0
        _live.add(self)

    @classmethod
    def from_config(cls, config: Config) -> MemoryBackend:
        return cls(max_bytes=config.l2.max_bytes, namespace=config.l2.namespace)

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def mirror_versions(self) -> dict[str, int]:
        return self.versions

    def _tick(self) -> int:
        self._clock.seq = max(self._clock.seq + 1, time.time_ns() // 1000)
        return self._clock.seq

    def _check_fork(self) -> None:
        if self._forked and not self._fork_warned:
            self._fork_warned = True
            warnings.warn(
                "querycache: the memory L2 store is per process and is being used after fork(); "
                "writes in one process do not invalidate the other's entries. Configure "
                "l2.backend: redis to share a cache between processes.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _has_pending(self, keys: Sequence[str], now: float) -> bool:
        for key in keys:
            marks = self._pending.get(key)
            if marks:
                for token, expiry in list(marks.items()):
                    if expiry <= now:
                        del marks[token]
                if marks:
                    return True
        return False

    def lookup(self, key: str | None, version_keys: Sequence[str], tx_stamp: int | None = None,
               lease_ms: int = 0, peek: bool = False, max_stale_ms: int = 0, early: float = 0.0) -> Lookup:
        # One process: the in-process single flight is the whole of coalescing, the lease is ours.
        if self._forked:
            self._check_fork()
        now = time.monotonic()
        with self._lock:
            versions = self.versions
            created = False
            for k in version_keys:
                if k not in versions:
                    if len(versions) >= _MAX_VERSIONS:
                        self._forget_bucket_versions()
                    versions[k] = self._clock.seq
                    created = True
            pending = self._has_pending(version_keys, now)
            pending_floor = 0
            if pending:
                pending_floor = min(versions[k] for k in version_keys if self._has_pending((k,), now))
            value: bytes | _Miss = MISS
            entry_stamp = refresh = cost_ms = 0
            stale_ms = ttl_left_ms = -1
            entry = self._entries.get(key) if key is not None else None
            if entry is not None:
                if entry.expires_at <= now:
                    self._drop(key)  # type: ignore[arg-type]
                elif not created and not pending and self._fresh(entry, tx_stamp):
                    value = entry.value
                    entry_stamp = entry.stamp
                    self._entries.move_to_end(key)  # type: ignore[arg-type]
                    if entry.soft_expires_at and entry.soft_expires_at <= now:
                        refresh = 1 if self._claim_refresh(key, now, lease_ms, peek) else 2  # type: ignore[arg-type]
                    elif early > 0 and entry.cost_s and now + entry.cost_s * early >= (
                            entry.soft_expires_at or entry.expires_at):
                        refresh = 3 if self._claim_refresh(key, now, lease_ms, peek) else 0  # type: ignore[arg-type]
                elif max_stale_ms > 0 and not created and tx_stamp is None:
                    first = self._clock.first_bump_after(entry.version_keys, entry.stamp)
                    if first is not None and (now - first) * 1000 < max_stale_ms:
                        value = entry.value
                        entry_stamp = entry.stamp
                        stale_ms = int((now - first) * 1000)
                        # Refreshed once half its bound old (earlier when the query costs more than
                        # a quarter of it), as the Redis store's: not back to back.
                        due = max(0.0, min(max_stale_ms / 2, max_stale_ms - 2000 * entry.cost_s))
                        claimed = stale_ms >= due and self._claim_refresh(key, now, lease_ms, peek)  # type: ignore[arg-type]
                        refresh = 4 if claimed else 2
            if value is not MISS and entry is not None:
                ttl_left_ms = int(((entry.soft_expires_at or entry.expires_at) - now) * 1000)
                cost_ms = int(entry.cost_s * 1000)
            return Lookup(value, self._clock.seq, self._epoch, pending, {k: versions[k] for k in version_keys},
                          True, entry_stamp, refresh, stale_ms, ttl_left_ms, cost_ms, pending_floor)

    def _claim_refresh(self, key: str, now: float, lease_ms: int, peek: bool) -> bool:
        """Whether this caller recomputes ``key`` (no other one does): its refresh lease."""
        refreshing = self._refreshing.get(key)
        if peek or (refreshing is not None and refreshing > now):
            return False
        self._refreshing[key] = now + (lease_ms or 30000) / 1000
        return True

    def _forget_bucket_versions(self) -> None:
        """Bound the version map (row-level buckets are one key per value read): drop the bucket
        versions. Safe: an entry whose version is missing is not fresh, and a version is created
        again at the current counter, never lower than a bump it replaces."""
        versions = self.versions
        history = self._clock.history
        for k in [k for k in versions if is_bucket(k)]:
            del versions[k]
            history.pop(k, None)
        # A bucket bumped again starts a new history: stamps from before are refused.
        self._clock.forgotten_below = self._clock.seq

    def release_lease(self, key: str, reason: str) -> None:
        with self._lock:
            self._refreshing.pop(key, None)

    def wait_fill(self, key: str, timeout_s: float) -> str | None:
        return None

    def _fresh(self, entry: _Entry, tx_stamp: int | None) -> bool:
        versions = self.versions
        limit = entry.stamp if tx_stamp is None else min(entry.stamp, tx_stamp)
        for k in entry.version_keys:
            version = versions.get(k)
            if version is None or version > limit:
                return False
        return not self._has_pending(entry.version_keys, time.monotonic())

    def fill(self, key: str, value: bytes, version_keys: Sequence[str], stamp: int, epoch: str,
             ttl_s: float, swr_s: float = 0.0, state: bytes | None = None, bounded: bool = False,
             cost_ms: float = 0.0) -> bool:
        size = len(value) + len(key) + 64 * (len(version_keys) + 1) + len(state or b"")
        now = time.monotonic()
        with self._lock:
            self._refreshing.pop(key, None)
        if size > self.max_bytes or epoch != self._epoch or ttl_s <= 0:
            return False
        with self._lock:
            for k in version_keys:
                version = self.versions.get(k)
                # A bounded-staleness answer is stored even when a write landed since its stamp: the
                # bump history tells its readers how long ago (docs/freshness.md, "Bounded staleness").
                if version is None or (version > stamp and not bounded):
                    return False
                if self._has_pending((k,), now):
                    if not bounded:
                        return False
                    # A write is under way: the answer may lack it. Stamped below that version's last
                    # bump, it is stale at once, its age counted from that bump.
                    stamp = min(stamp, version - 1)
            held = self._entries.get(key)
            if held is not None:
                if bounded and held.stamp > stamp:
                    return False  # never replace a newer answer
                self._drop(key)
            self._store(key, _Entry(value, tuple(version_keys), stamp, now + ttl_s + swr_s,
                                    now + ttl_s if swr_s > 0 else 0.0, state, cost_ms / 1000,
                                    state_digest(state) if state is not None else ""))
            return True

    def _store(self, key: str, entry: _Entry) -> None:
        """Add ``entry`` (it fits: checked by the caller) and evict the oldest ones to make room; the
        byte count never shows more than the bound, even to a reader without the lock."""
        size = self._size(key, entry)
        self._entries[key] = entry
        while self._bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        self._bytes += size

    @staticmethod
    def _size(key: str, entry: _Entry) -> int:
        return len(entry.value) + len(key) + 64 * (len(entry.version_keys) + 1) + len(entry.state or b"")

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= self._size(key, entry)

    def begin_write(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int) -> int:
        with self._lock:
            return self._begin(version_keys, token, mark_ttl_ms)

    def _begin(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int) -> int:
        now = time.monotonic()
        expiry = now + mark_ttl_ms / 1000
        tick = self._tick()
        for k in version_keys:
            self.versions[k] = tick
            self._clock.remember(k, tick, now)
            self._pending.setdefault(k, {})[token] = expiry
        return tick

    def end_write(self, version_keys: Sequence[str], token: str) -> int:
        with self._lock:
            return self._end(version_keys, token)

    def _end(self, version_keys: Sequence[str], token: str, rows: Mapping[str, bytes] | None = None) -> int:
        tick = self._tick()
        now = time.monotonic()
        logs = self._clock.catchup
        for k in version_keys:
            self.versions[k] = tick
            self._clock.remember(k, tick, now)
            marks = self._pending.get(k)
            if marks is not None:
                marks.pop(token, None)
                if not marks:
                    del self._pending[k]
            log = logs.get(k)
            if log is not None:
                if log.until <= now or len(log.writes) >= CATCHUP_LOG:
                    del logs[k]  # run out, or too long: its fills give up
                else:
                    log.writes.append((tick, (rows or {}).get(k) or None))
        return tick

    def open_catchup(self, version_keys: Sequence[str], ttl_ms: int) -> int:
        now = time.monotonic()
        with self._lock:
            for k in version_keys:
                log = self._clock.catchup.get(k)
                if log is None or log.until <= now:
                    log = self._clock.catchup[k] = _Log(self._clock.seq, 0.0, [])
                log.until = now + ttl_ms / 1000
            return self._clock.seq

    def catchup(self, version_keys: Sequence[str], stamp: int) -> tuple[int, dict[str, list[bytes]] | str]:
        now = time.monotonic()
        with self._lock:
            seq = self._clock.seq
            out: dict[str, list[bytes]] = {}
            for k in version_keys:
                version = self.versions.get(k)
                if version is None:
                    return seq, "unlogged"
                if self._has_pending((k,), now):
                    return seq, "pending"
                if version <= stamp:
                    continue
                log = self._clock.catchup.get(k)
                if log is None or log.since > stamp or log.until <= now:
                    return seq, "unlogged"
                if not log.writes or log.writes[-1][0] != version:
                    return seq, "unlogged"  # the last bump set the version: the log missed a write
                found = [r for t, r in log.writes if t > stamp]
                known = [r for r in found if r is not None]
                if len(known) < len(found):
                    return seq, "unknown"
                out[k] = known
            return seq, out

    # -- maintained answers (docs/maintenance.md) ------------------------------------------------
    def register_maintained(self, table_keys: Sequence[str], key: str, spec: bytes) -> None:
        with self._lock:
            for table_key in table_keys:
                found = self._maintained.setdefault(table_key, {})
                if key in found or len(found) < _MAX_MAINTAINED:
                    found[key] = spec

    def maintained(self, table_key: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self._maintained.get(table_key, ()))

    def forget_maintained(self, table_key: str, key: str) -> None:
        with self._lock:
            self._maintained.get(table_key, {}).pop(key, None)

    def maintained_baselines(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Baseline | bool]:
        now = time.monotonic()
        out: list[Baseline | bool] = []
        with self._lock:
            for key, version_keys in entries:
                entry = self._entries.get(key)
                if entry is None or entry.state is None or entry.expires_at <= now:
                    out.append(True)
                elif tuple(version_keys) != entry.version_keys or not self._fresh(entry, None):
                    out.append(False)
                else:
                    out.append(Baseline({k: self.versions[k] for k in version_keys}, entry.digest))
        return out

    def lease_maintainer(self, table_key: str, token: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        with self._lock:
            held = self._clock.maintainers.get(table_key)
            if held is not None and held[0] != token and held[1] > now:
                return False
            self._clock.maintainers[table_key] = (token, now + ttl_ms / 1000)
            return True

    def release_maintainer(self, table_key: str, token: str) -> None:
        with self._lock:
            held = self._clock.maintainers.get(table_key)
            if held is not None and held[0] == token:
                del self._clock.maintainers[table_key]

    def maintained_content(self, key: str) -> tuple[bytes, bytes, str] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.state is None:
                return None
            return entry.value, entry.state, entry.digest

    def _unchanged(self, versions: Mapping[str, int], token: str, tick1: int, now: float) -> bool:
        """No other writer touched these dependencies since the baseline ``versions``."""
        for k, seen in versions.items():
            marks = self._pending.get(k) or {}
            live = [t for t, expiry in marks.items() if expiry > now]
            if any(t != token for t in live):
                return False
            if self.versions.get(k) != (tick1 if token in live else seen):
                return False
        return True

    def begin_write_checked(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int,
                            checks: Sequence[MaintainCheck]) -> tuple[int, list[bool]]:
        now = time.monotonic()
        with self._lock:
            ok = [self._unchanged(c.versions, token, -1, now) for c in checks]
            return self._begin(version_keys, token, mark_ttl_ms), ok

    def end_write_maintained(self, version_keys: Sequence[str], token: str, tick1: int,
                             updates: Sequence[MaintainUpdate], rows: Mapping[str, bytes] | None = None
                             ) -> tuple[int, list[str | None]]:
        now = time.monotonic()
        with self._lock:
            held = []
            for update in updates:
                entry = self._entries.get(update.key)
                held.append(entry is not None and entry.state is not None and entry.expires_at > now
                            and entry.digest == update.digest
                            and self._unchanged(update.baseline, token, tick1, now))
            tick = self._end(version_keys, token, rows)
            out: list[str | None] = []
            for update, stored in zip(updates, held, strict=True):
                entry = self._entries.get(update.key) if stored else None
                if entry is None:
                    out.append(None)  # not held, or evicted by an earlier update of this write
                    continue
                entry.stamp = tick
                if update.value is not None and update.state is not None:
                    self._drop(update.key)
                    entry.value, entry.state, entry.digest = update.value, update.state, state_digest(update.state)
                    if self._size(update.key, entry) > self.max_bytes:
                        out.append(None)  # too large now: gone, invalidated as any other
                        continue
                    self._store(update.key, entry)
                out.append(entry.digest)
            return tick, out

    # -- row-level invalidation: which columns readers are pinned by, per table ----------------
    def register_dependency(self, table_key: str, column: str) -> str:
        """A reader is about to depend on ``column``'s buckets: writers must bump them from now on.
        Called before the reader's stamp; a new column moves the table's dependency version, which
        a writer compares at its phase 2 (a change there makes it bump the whole table)."""
        with self._lock:
            columns = self._dependencies.setdefault(table_key, set())
            if column not in columns:
                columns.add(column)
                self._dependency_versions[table_key] = self._dependency_versions.get(table_key, 0) + 1
            return self._epoch

    def dependencies(self, table_key: str) -> tuple[frozenset[str], int]:
        with self._lock:
            return frozenset(self._dependencies.get(table_key, ())), self._dependency_versions.get(table_key, 0)

    def current_stamp(self) -> tuple[str, int]:
        return self._epoch, self._clock.seq

    def delete(self, key: str) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)

    def flush(self, prefix: str = "") -> None:
        with self._lock:
            if prefix:
                start = f"{self.namespace}:e:{prefix}"
                for key in [k for k in self._entries if k.startswith(start)]:
                    self._drop(key)
                return
            self._entries.clear()
            self._refreshing.clear()
            self._bytes = 0

    def close(self) -> None:
        self.flush()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
