"""The contract every L2 store implements (memory now, Redis next), and the registry.

A store keeps the logical clock (docs/freshness.md, "The clock") next to the entries, so that one
call (``lookup``) returns the entry together with the versions and pending marks
that decide whether it is still fresh, and the reader's stamp.

Version keys name what an entry depends on: ``<database id>\\x1f<table>`` (the
table ``*`` standing for the whole database) and ``group\\x1f<name>`` for
application invalidation groups. Writers bump them; ``lookup`` and ``fill``
compare them to stamps.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from querycache.config import Config


class _Miss:
    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS = _Miss()
"""Sentinel: no fresh entry under the key."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one lookup round trip learned.

    ``value`` is the entry's bytes only when it is fresh: same epoch, no pending
    mark on any dependency, every version <= the entry's stamp (and <= the
    transaction stamp when one was given), and not expired.
    """

    value: bytes | _Miss
    stamp: int
    epoch: str
    pending: bool
    versions: Mapping[str, int]
    leader: bool = True
    """With ``lease_ms``: whether this process holds the key's coalescing lease (may run the
    query and fill); False while another process does."""
    entry_stamp: int = 0
    """The served entry's own stamp (when ``value`` is an entry)."""
    refresh: int = 0
    """Whether a served entry is being recomputed: 1 = past its TTL inside its stale-while-
    revalidate window (still fresh by the clock), this caller took the refresh (run the query,
    fill); 2 = another caller refreshes it, or none may now (serve the entry); 3 = refresh-ahead:
    before its TTL, this caller was picked to recompute it; 4 = a bounded-staleness answer (see
    ``stale_ms``) whose refresh this caller took."""
    stale_ms: int = -1
    """A bounded-staleness answer (``lookup(max_stale_ms=...)``): how long ago (ms, by the store's
    clock) the first write after the entry's stamp began; -1: the entry is fresh."""
    ttl_left_ms: int = -1
    """A served entry's time to its TTL (ms; -1: not known); an L1 copy must not outlive it."""
    cost_ms: int = 0
    """What the served entry's query cost when it was filled (ms; 0: not known)."""
    pending_floor: int = 0
    """With ``pending``: the lowest version among the dependencies with a pending mark. A bounded
    fill of what this reader then runs is stamped below it (``fill(bounded=True)``)."""


REFRESHES_TAKEN = {1: "swr", 3: "ahead", 4: "stale"}
"""``Lookup.refresh`` values by which the lookup gave this caller the key's lease to recompute it,
and what the stats call each."""


class Backend(Protocol):
    """An L2 store plus the logical clock (docs/freshness.md, docs/architecture.md).

    What only some stores can do is an optional capability of its own below
    (``RowLevelRegistry``, ``StrictAcks``, ``SharedStats``, ``HealthReport``): ask for it with
    the matching function (``row_level_registry(backend)``...), which returns the store typed as
    that capability or None (``SizeReport``: ``size_report(backend)``)."""

    name: str

    @property
    def epoch(self) -> str: ...

    @property
    def l1_epoch(self) -> str:
        """The token L1 entries carry and hits must match: taken before the lookup that fills them;
        the store's epoch, or, while this process may be behind, a value equal to no other."""

    @property
    def mirror_versions(self) -> Mapping[str, int]:
        """This process's copy of table versions, read by L1 hits without I/O."""

    def lookup(self, key: str | None, version_keys: Sequence[str], tx_stamp: int | None = None,
               lease_ms: int = 0, peek: bool = False, max_stale_ms: int = 0, early: float = 0.0) -> Lookup:
        """Create missing versions at the current seq, then read entry, versions, marks and stamp.

        ``lease_ms`` > 0 on a miss without pending marks: take the key's coalescing lease for this
        call (``SET NX PX``) unless another caller holds it (``Lookup.leader``). ``peek``: claim
        nothing (no lease, no refresh), as ``explain`` does.

        ``max_stale_ms`` > 0 (never with ``tx_stamp``): an entry that writes made stale is still
        returned while the first bump of a dependency after its stamp is younger than that, by the
        store's clock (``Lookup.stale_ms``); it is recorded by every phase 1 and 2. ``early`` > 0:
        refresh-ahead, the entry is given to this caller to recompute (``refresh`` 3) when now plus
        its recorded cost times ``early`` reaches its TTL (XFetch: ``early`` = beta * -ln(U))."""

    def release_lease(self, key: str, reason: str) -> None:
        """Give the lease back (compare-and-delete) and wake the processes waiting for the key:
        ``reason`` is ``"error"`` (elect a new leader) or ``"unshared"`` (run it yourselves)."""

    def wait_fill(self, key: str, timeout_s: float) -> str | None:
        """Block until the key's lease holder filled (``"filled"``) or released it, or the timeout
        (``None``); the caller looks again in every case."""

    def fill(self, key: str, value: bytes, version_keys: Sequence[str], stamp: int, epoch: str,
             ttl_s: float, swr_s: float = 0.0, state: bytes | None = None, bounded: bool = False,
             cost_ms: float = 0.0) -> bool:
        """Store ``value`` unless a dependency changed after ``stamp`` or has a pending mark; give
        back this process's lease on the key, if any, and wake its waiters. With ``swr_s``, the
        entry outlives ``ttl_s`` by that window, served while one caller refreshes it. ``state``:
        a maintained answer's state, kept with the entry (``MaintainedAnswers``). ``bounded``: a
        bounded-staleness answer, stored even if a dependency changed after ``stamp`` (its readers
        judge its age by the bump history) but never over an entry of a later stamp; under a pending
        mark it is stored stamped below that dependency's version (stale at once, its age counted
        from that version's bump). ``cost_ms``: what the query cost, kept for refresh-ahead."""

    def begin_write(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int) -> int:
        """Phase 1: tick, set every version to the tick, add a pending mark; returns the tick."""

    def end_write(self, version_keys: Sequence[str], token: str) -> int:
        """Phase 2: tick, set every version to the tick, remove the mark, publish; returns the tick."""

    def current_stamp(self) -> tuple[str, int]:
        """(epoch, seq) without side effects."""

    def delete(self, key: str) -> None: ...

    def flush(self, prefix: str = "") -> None:
        """Drop every entry of this namespace (versions stay: they only ever grow); with ``prefix``,
        only entry keys ``<namespace>:e:<prefix>...`` (one tenant's: ``keys.tenant_tag``)."""

    def close(self) -> None: ...


@runtime_checkable
class RowLevelRegistry(Protocol):
    """Row-level invalidation: which columns readers pin per table (docs/freshness.md)."""

    def register_dependency(self, table_key: str, column: str) -> str:
        """Record that reads pin ``table_key`` by ``column``; returns the store's epoch."""

    def dependencies(self, table_key: str) -> tuple[frozenset[str], int]:
        """The pinned columns of ``table_key`` and their registry's version."""


@dataclass(frozen=True, slots=True)
class Baseline:
    """A maintained entry as a writer first saw it, fresh: the versions of its dependencies and
    the digest of its stored state (the content is read only when a write changes it)."""

    versions: Mapping[str, int]
    digest: str


@dataclass(frozen=True, slots=True)
class MaintainCheck:
    """Phase 1 of a write that maintains an entry: its dependencies must still be at ``versions``
    (no other write since the writer's baseline) and carry no pending mark."""

    versions: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MaintainUpdate:
    """Phase 2: store ``value`` and ``state`` under ``key`` at the phase's tick (both None: only
    the tick, the answer being unchanged), if the stored state's digest is still ``digest`` and no
    other write touched a dependency since ``baseline`` (a dependency this write marked in phase
    1 must be at ``tick1``)."""

    key: str
    digest: str
    value: bytes | None
    state: bytes | None
    baseline: Mapping[str, int]


def state_digest(stored: bytes) -> str:
    """The digest phase 2 compares: SHA-1 of the state's bytes as stored (Redis ``sha1hex``)."""
    import hashlib

    return hashlib.sha1(stored).hexdigest()  # identity, not security: the bytes are signed apart


@runtime_checkable
class MaintainedAnswers(Protocol):
    """A store that keeps maintained answers (docs/maintenance.md): a registry per table of the
    entries a write may maintain, the entries' states, and checked two-phase writes."""

    def register_maintained(self, table_keys: Sequence[str], key: str, spec: bytes) -> None: ...

    def maintained(self, table_key: str) -> dict[str, bytes]:
        """The entries registered under ``table_key``: entry key -> spec."""

    def forget_maintained(self, table_key: str, key: str) -> None: ...

    def maintained_baselines(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Baseline | bool]:
        """For each (entry key, its version keys): its baseline when it is fresh now, else False
        when it is only stale or pending (it may be fresh again) and True when it is gone; all in
        one call."""

    def lease_maintainer(self, table_key: str, token: str, ttl_ms: int) -> bool:
        """Take the table's maintainer lease (one writer at a time maintains a table's entries:
        two at once would each see the other's bump and fall back); False: another holds it."""

    def release_maintainer(self, table_key: str, token: str) -> None: ...

    def maintained_content(self, key: str) -> tuple[bytes, bytes, str] | None:
        """The entry's value, its state and the state's digest (None: gone)."""

    def begin_write_checked(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int,
                            checks: Sequence[MaintainCheck]) -> tuple[int, list[bool]]:
        """``begin_write``, and whether each check held just before it (atomically)."""

    def end_write_maintained(self, version_keys: Sequence[str], token: str, tick1: int,
                             updates: Sequence[MaintainUpdate], rows: Mapping[str, bytes] | None = None
                             ) -> tuple[int, list[str | None]]:
        """``end_write``, and each update stored or not, atomically with it: per update the digest
        of the state the entry now holds (``state_digest`` of it as stored), None when not stored.
        ``rows``: per version key, the rows the write changed (encoded by the caller; absent:
        unknown), logged where a fill asked for it (``open_catchup``)."""

    def open_catchup(self, version_keys: Sequence[str], ttl_ms: int) -> int:
        """From now on, for ``ttl_ms`` (renewed by each call), log the rows every write of these
        keys changes (docs/maintenance.md, "Fills under writes"); the stamp from which the logs
        are complete."""

    def catchup(self, version_keys: Sequence[str], stamp: int) -> tuple[int, dict[str, list[bytes]] | str]:
        """The stamp now and, per key a write bumped since ``stamp``, the rows each such write
        changed (as given to ``end_write_maintained``); instead, when one is not known, why:
        ``pending`` (a write is under way), ``unlogged`` (not logged since ``stamp``), ``unknown``
        (a write of unknown rows)."""


@runtime_checkable
class StrictAcks(Protocol):
    """Strict invalidation: a write waits until every process holding an L1 lease applied it."""

    def wait_for_acks(self) -> None: ...


@runtime_checkable
class SharedStats(Protocol):
    """A store where every process publishes its stats snapshot (``querycache stats``)."""

    def publish_stats(self, payload: bytes, ttl_ms: int) -> None: ...

    def read_stats(self) -> list[bytes]: ...


@runtime_checkable
class HealthReport(Protocol):
    """A store that can say what is wrong with its server (``querycache doctor``)."""

    def health_problems(self) -> list[str]: ...

    def health_report(self) -> list[tuple[str, str, str]]: ...


@runtime_checkable
class SizeReport(Protocol):
    """A store in this process's memory, which can say what it holds (``cache.stats()``)."""

    evictions: int
    """Entries dropped to stay within the size bound, since the store was created."""

    def __len__(self) -> int:
        """How many entries it holds."""

    @property
    def size_bytes(self) -> int:
        """The bytes of the entries it holds."""


def row_level_registry(backend: Backend) -> RowLevelRegistry | None:
    return backend if isinstance(backend, RowLevelRegistry) else None


def maintained_answers(backend: Backend) -> MaintainedAnswers | None:
    return backend if isinstance(backend, MaintainedAnswers) else None


def strict_acks(backend: Backend) -> StrictAcks | None:
    return backend if isinstance(backend, StrictAcks) else None


def shared_stats(backend: Backend) -> SharedStats | None:
    return backend if isinstance(backend, SharedStats) else None


def health_report(backend: Backend) -> HealthReport | None:
    return backend if isinstance(backend, HealthReport) else None


def size_report(backend: Backend) -> SizeReport | None:
    return backend if isinstance(backend, SizeReport) else None


_REGISTRY = {
    "memory": "querycache.backends.memory:MemoryBackend",
    "redis": "querycache.backends.redis.backend:RedisBackend",
}


class BackendFactory(Protocol):
    """What a registered store class offers: a store configured from the whole config."""

    def from_config(self, config: Config) -> Backend: ...


def open_backend(name: str, config: Config) -> Backend:
    """A new store of the kind registered under ``name``, configured from ``config``."""
    factory: BackendFactory = _registered(name)
    return factory.from_config(config)


def backend_class(name: str) -> type:
    """The class registered under ``name``, imported only now (a missing driver costs nothing before)."""
    cls: type = _registered(name)
    return cls


def _registered(name: str) -> Any:
    try:
        module_name, _, attr = _REGISTRY[name].partition(":")
    except KeyError:
        from querycache.errors import ConfigError

        raise ConfigError(f"l2.backend: {name!r} is not accepted; accepted: {', '.join(_REGISTRY)}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        from querycache.errors import ConfigError

        if exc.name == module_name:
            raise ConfigError(f"l2.backend: {name!r} is not part of this version; accepted: memory") from exc
        raise ConfigError(f"l2.backend: {name!r} needs {exc.name!r}: pip install 'querycache[{name}]'") from exc
    return getattr(module, attr)


CATCHUP_LOG = 4096
"""Writes a fill's catch-up log keeps per version key; past it the log is dropped and its fills give up."""


def logged_rows(version_keys: Sequence[str], found: Sequence[object]) -> dict[str, list[bytes]] | str:
    """A catch-up log's members (``b"<tick>:=<rows>"``, or ``b"<tick>:?"`` for a write whose rows are
    unknown) per version key: the rows, or ``unknown`` when some write's are unknown."""
    out: dict[str, list[bytes]] = {}
    for key, members in zip(version_keys, found, strict=True):
        if not isinstance(members, list):
            return "unknown"
        rows = []
        for member in members:
            _, _, logged = member.partition(b":") if isinstance(member, bytes) else (b"", b"", b"?")
            if not logged.startswith(b"="):
                return "unknown"
            rows.append(logged[1:])
        if rows:
            out[key] = rows
    return out
