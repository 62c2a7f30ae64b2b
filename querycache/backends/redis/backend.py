"""The shared L2 store on Redis: entries, the logical clock, and cross-process L1 coherence.

Every operation is one Lua script, so one round trip: ``lookup`` creates missing
versions, reads the entry, the versions and the pending marks and returns the stamp;
``fill`` stores only when no dependency moved past the stamp; ``begin_write`` /
``end_write`` are the two phases of docs/freshness.md, "Two-phase writes", the second
publishing the bump. The scripts are in ``scripts.py``, the subscriber in ``subscriber.py``.

Clock keys (``qc:clock``, ``qc:v:*``, ``qc:p:*``, the bump channel, lease holders)
are shared by every namespace: two caches over one database must invalidate each
other. Entry keys carry the namespace. Every key is a fixed-length hash.

Cross-process L1 (coherence leases, Gray & Cheriton 1989): a subscriber thread per
backend applies bumps to this process's version mirror in message order (a gap, a
reconnect or a new epoch empties the mirror, which makes every L1 entry stale) and
acknowledges them. It renews this process's lease only after a PING on the
subscription came back, i.e. after every earlier bump was applied. L1 answers only
under an unexpired lease. In ``strict`` mode a writer's ``commit()`` returns once
every live lease holder acknowledged its bump, or that holder's lease ran out.
"""


from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import redis
from querycache.backends.base import (
    MISS,
    REFRESHES_TAKEN,
    Baseline,
    Lookup,
    MaintainCheck,
    MaintainUpdate,
    _Miss,
    logged_rows,
)
from querycache.backends.redis import health
from querycache.backends.redis.scripts import _NO_LEASE, CHANNEL, CLOCK, FILLS, HOLDERS, scripts_for
from querycache.backends.redis.subscriber import FillWaiter, Subscription
from querycache.config import Config, redact_url
from querycache.errors import BackendUnavailable, ConfigError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

_hiredis_pack: Any
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is optional; redis-py packs then
    _hiredis_pack = None

log = logging.getLogger("querycache")

_live: weakref.WeakSet[RedisBackend] = weakref.WeakSet()
T = TypeVar("T")


_STATE = "\x00m"  # what a maintained answer's state is signed under, after the entry key
_MAX_MAINTAINED = 1000  # registered maintained entries per table


def _mark_forked() -> None:
    for backend in list(_live):
        backend._forked = True
        backend._lease_until = 0.0
        backend._conns = threading.local()  # the parent's sockets are not this process's
        backend.holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # nor its lease-holder id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


def _hashed(prefix: str, name: str) -> str:
    return prefix + hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class RedisBackend(Subscription):
    """L2 on Redis (redis-py; hiredis is used when installed), failing open behind a circuit breaker."""

    name = "redis"

    def __init__(self, url: str, namespace: str = "querycache", timeout_ms: int = 50,
                 hmac_secret: str | None = None, mode: str = "strict", lease_ms: int = 500,
                 breaker_failures: int = 3, breaker_cooldown_s: float = 1.0,
                 history: tuple[int, int] | None = None) -> None:
        """``history``: (groups, group ms) of the bump history its writes keep, when not the default
        (``scripts.HISTORY_GROUPS``, ``HISTORY_GROUP_MS``); every writer of a version must agree."""
        self.url = url
        self.namespace = namespace
        self.timeout_s = timeout_ms / 1000
        self.mode = mode
        self.lease_ms = lease_ms
        self._secret = hmac_secret.encode() if hmac_secret else None
        self._client = redis.Redis.from_url(url, socket_timeout=self.timeout_s,
                                            socket_connect_timeout=self.timeout_s)
        self._scripts = {name: self._client.register_script(body)
                         for name, body in scripts_for(self._server_major(), history).items()}
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{CHANNEL}:{db}"
        self.fills_channel = f"{FILLS}:{db}"
        self._held: dict[str, tuple[str, int]] = {}  # entry key -> (lease token, lease ms)
        self._lease_counter = itertools.count()
        self._fill_waiters: dict[str, FillWaiter] = {}
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._epoch_counter = itertools.count()
        self._no_lease = itertools.count()
        self._key_memo: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
        self._ack_prefix = "qc:ack:"
        # The mirror: table versions as this process knows them; L1 hits compare against it.
        self.versions: dict[str, int] = {}
        self._epoch = ""
        self._epoch_seq = 0
        self._generation = 0
        self._l1_token = ""
        self._lease_until = 0.0
        self._last_msg = -1
        self._local = threading.local()
        self._conns = threading.local()
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.RLock()
        # Circuit breaker.
        self._failures = 0
        self._open_until = 0.0
        self._state = "closed"
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self._undelivered: set[str] = set()
        self._outage_since = 0.0
        self._on_resync: list[Callable[[], object]] = []
        self._script_observer: Callable[[str], object] | None = None
        self._stop = threading.Event()
        self._subscriber: threading.Thread | None = None
        self._pid = os.getpid()
        self._forked = False
        _live.add(self)
        self._start_subscriber()

    @classmethod
    def from_config(cls, config: Config) -> RedisBackend:
        if config.l2.url is None:  # validated at load; a Config built by hand may lack it
            raise ConfigError("l2.url: required when l2.backend is 'redis'")
        return cls(config.l2.url, namespace=config.l2.namespace, timeout_ms=config.l2.timeout_ms,
                   hmac_secret=config.l2.hmac_secret, mode=config.invalidation.mode,
                   lease_ms=config.invalidation.lease_ms)

    # -- the protocol ------------------------------------------------------------------------
    def _after_fork(self) -> None:
        # The subscriber thread did not survive fork(): no lease until a new one runs.
        self._lease_until = 0.0
        self._stop = threading.Event()
        self._pid = os.getpid()
        # A lease holder of its own: the parent's acknowledgements are not this process's.
        self.holder = f"{self._pid}-{uuid.uuid4().hex[:12]}"
        self._epoch_counter = itertools.count()
        self.versions.clear()
        self._start_subscriber()

    @property
    def epoch(self) -> str:
        if not self._epoch:
            self.current_stamp()
        return self._epoch

    @property
    def l1_epoch(self) -> str:
        """What L1 entries are checked against: the epoch and the mirror's generation (a resync
        starts a new one, so nothing filled before it counts), or nothing without a fresh lease."""
        if time.monotonic() < self._lease_until and not self._undelivered:
            return self._l1_token
        # Without a lease, a token equal to nothing else: an entry filled now never matches later,
        # and no entry matches now (a constant would let entries filled without a lease hit).
        return f"{_NO_LEASE}{next(self._no_lease)}"

    @property
    def mirror_versions(self) -> dict[str, int]:
        return self.versions

    def _advance(self, versions: Iterable[tuple[str, int]]) -> None:
        """Raise this process's mirror to versions seen in the store; a version never goes back."""
        mirror = self.versions
        for k, v in versions:
            if mirror.get(k, -1) < v:
                mirror[k] = v

    def on_resync(self, callback: Callable[[], object]) -> None:
        """``callback()`` runs when the mirror was emptied (gap, reconnect, new epoch)."""
        self._on_resync.append(callback)

    def observe_scripts(self, callback: Callable[[str], object] | None) -> None:
        """``callback(name)`` runs on the sending thread before each script this store sends
        (``lookup``, ``fill``, ``begin``, ``end``...; not the subscriber thread's lease renewals);
        ``None`` removes it. For instrumentation: bench/redis_clock.py counts round trips with it."""
        self._script_observer = callback

    def _keys(self, version_keys: Sequence[str]) -> tuple[list[str], list[str]]:
        memo_key = tuple(version_keys)
        found = self._key_memo.get(memo_key)
        if found is None:
            if len(self._key_memo) > 4096:
                self._key_memo.clear()
            found = ([_hashed("qc:v:", k) for k in version_keys], [_hashed("qc:p:", k) for k in version_keys])
            self._key_memo[memo_key] = found
        return found

    def _new_epoch(self) -> str:
        """The epoch a script creates if the clock is gone: unique per call, no syscall."""
        return f"{self.holder}.{next(self._epoch_counter)}"

    def entry_key(self, key: str) -> str:
        return key if key.startswith(self.namespace + ":") else f"{self.namespace}:{key}"

    def lookup(self, key: str | None, version_keys: Sequence[str], tx_stamp: int | None = None,
               lease_ms: int = 0, peek: bool = False, max_stale_ms: int = 0, early: float = 0.0) -> Lookup:
        if self._forked:
            self._forked = False
            self._after_fork()
        if self._undelivered:
            # Writes this process could not announce (an outage): announce them first, and
            # answer nothing from the store until they are.
            self._deliver_pending()
            if self._undelivered:
                raise BackendUnavailable("redis: write announcements not yet delivered")
        vkeys, pkeys = self._keys(version_keys)
        entry = key or "qc:none"
        generation = self._generation
        lease = bool(lease_ms and key) and not peek
        token = f"{self.holder}:{next(self._lease_counter)}"
        (value, seq, epoch, pending, versions, leader, entry_stamp, refresh, stale_ms, ttl_left, cost,
         pending_floor) = self._run(
            "lookup", [CLOCK, entry, *vkeys, *pkeys],
            [self._new_epoch(), len(version_keys), "1" if key else "0", "" if tx_stamp is None else tx_stamp,
             token, lease_ms or 30000, "1" if lease else "0", "0" if peek else "1", max_stale_ms,
             repr(early) if early > 0 else "0"],
        )
        epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
        if not self._see_epoch(epoch, int(seq)):
            # An answer from an incarnation older than one already seen (it ran before a
            # FLUSHALL or restart this process has learned about): use nothing of it.
            return Lookup(MISS, int(seq), epoch, True, {})
        found = {k: int(v) for k, v in zip(version_keys, versions, strict=True)}
        if generation == self._generation:
            # Not after a resync that began while this lookup ran: its values may predate a bump
            # the resync erased from the mirror.
            self._advance(found.items())
        result: bytes | _Miss = MISS
        if value:
            result = self._verify(entry, value)
            if refresh in REFRESHES_TAKEN:
                self._held[entry] = (token, lease_ms or 30000)  # this caller refreshes it
                if result is MISS:
                    self.release_lease(entry, "error")  # an entry that fails its check: nobody refreshes it
        elif lease and leader and not pending:
            self._held[entry] = (token, lease_ms)  # extended by the subscriber while this leader runs
        return Lookup(result, int(seq), epoch, bool(pending), found, bool(leader), int(entry_stamp),
                      int(refresh) if result is not MISS else 0, int(stale_ms) if result is not MISS else -1,
                      int(ttl_left) if result is not MISS else -1, int(cost) if result is not MISS else 0,
                      int(pending_floor))

    def fill(self, key: str, value: bytes, version_keys: Sequence[str], stamp: int, epoch: str,
             ttl_s: float, swr_s: float = 0.0, state: bytes | None = None, bounded: bool = False,
             cost_ms: float = 0.0) -> bool:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:
            self.release_lease(key, "unshared")
            return False
        vkeys, pkeys = self._keys(version_keys)
        token = self._held.pop(key, ("", 0))[0]
        return bool(self._run("fill", [CLOCK, key, *vkeys, *pkeys],
                              [self._new_epoch(), len(version_keys), self._sign(key, value), stamp, epoch, ttl_ms,
                               token, self.fills_channel, int(swr_s * 1000),
                               self._sign(key + _STATE, state) if state is not None else "",
                               "1" if bounded else "0", int(cost_ms)]))

    def release_lease(self, key: str, reason: str) -> None:
        token = self._held.pop(key, ("", 0))[0]
        self._run("release", [key], [token, self.fills_channel, reason])

    def wait_fill(self, key: str, timeout_s: float) -> str | None:
        with self._lock:
            waiter = self._fill_waiters.get(key)
            if waiter is None:
                waiter = self._fill_waiters[key] = FillWaiter()
        try:
            if waiter.event.wait(timeout_s):
                return waiter.reason
            return None
        finally:
            with self._lock:
                if self._fill_waiters.get(key) is waiter:
                    del self._fill_waiters[key]

    def begin_write(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int) -> int:
        vkeys, pkeys = self._keys(version_keys)
        seq = int(self._run("begin", [CLOCK, *vkeys, *pkeys],
                            [self._new_epoch(), len(version_keys), token, mark_ttl_ms,
                             "\x1e".join(version_keys), self.channel], force=True))
        self._advance((k, seq) for k in version_keys)
        return seq

    def end_write(self, version_keys: Sequence[str], token: str) -> int:
        vkeys, pkeys = self._keys(version_keys)
        seq, _ = self._phase2("end", [CLOCK, *vkeys, *pkeys],
                              [self._new_epoch(), len(version_keys), token, "\x1e".join(version_keys), self.channel],
                              version_keys)
        return seq

    def _phase2(self, script: str, keys: list[str], args: list[Any], version_keys: Sequence[str]
                ) -> tuple[int, list[Any]]:
        """Run a phase-2 script (its reply: tick, message number, epoch, birth, now, then the
        script's own values, returned) and learn from it what every phase 2 teaches."""
        try:
            seq, msg, epoch, born_ms, now_ms, *rest = self._run(script, keys, args, force=True)
        except BackendUnavailable:
            # The write is in the database but not announced: keep it, retry, and stop serving
            # this process's L1 until it is delivered (other processes are bounded by TTL).
            with self._lock:
                self._undelivered.update(version_keys)
            raise
        seq = int(seq)
        epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
        # An incarnation younger than a lease (FLUSHALL, restart) has an empty lease registry,
        # yet leases granted under the old one may still run: wait until they have run out.
        self._local.young_wait_s = max(0, int(born_ms) + self.lease_ms - int(now_ms)) / 1000
        self._see_epoch(epoch, seq)
        self._advance((k, seq) for k in version_keys)
        self._local.msg = int(msg)
        self._local.msg_epoch = epoch
        return seq, rest

    # -- maintained answers (docs/maintenance.md) ------------------------------------------------
    def _registry(self, table_key: str) -> str:
        return _hashed(f"{self.namespace}:mr:", table_key)

    def register_maintained(self, table_keys: Sequence[str], key: str, spec: bytes) -> None:
        self._run("mregister", [self._registry(k) for k in table_keys], [key, spec, _MAX_MAINTAINED])

    def maintained(self, table_key: str) -> dict[str, bytes]:
        found = self._call(lambda: self._client.hgetall(self._registry(table_key))) or {}
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in found.items() if isinstance(v, bytes)}

    def forget_maintained(self, table_key: str, key: str) -> None:
        self._call(lambda: self._client.hdel(self._registry(table_key), key))

    def maintained_baselines(self, entries: Sequence[tuple[str, Sequence[str]]]) -> list[Baseline | bool]:
        keys: list[str] = []
        for _, version_keys in entries:
            vkeys, pkeys = self._keys(version_keys)
            keys += [*vkeys, *pkeys]
        found = self._run("mbaselines", [CLOCK, *(k for k, _ in entries), *keys],
                          [self._new_epoch(), 0, len(entries), *(len(v) for _, v in entries)])
        out: list[Baseline | bool] = []
        for (_, version_keys), item in zip(entries, found, strict=True):
            if not isinstance(item, list):
                out.append(bool(item))  # 1: gone, 0: stale or pending
                continue
            digest = item[1].decode() if isinstance(item[1], bytes) else str(item[1])
            out.append(Baseline({k: int(v) for k, v in zip(version_keys, item[2], strict=True)}, digest))
        return out

    def lease_maintainer(self, table_key: str, token: str, ttl_ms: int) -> bool:
        lease = _hashed(f"{self.namespace}:ml:", table_key)
        return bool(self._call(lambda: self._client.set(lease, token, nx=True, px=ttl_ms)))

    def release_maintainer(self, table_key: str, token: str) -> None:
        self._run("release_maintainer", [_hashed(f"{self.namespace}:ml:", table_key)], [token])

    def maintained_content(self, key: str) -> tuple[bytes, bytes, str] | None:
        found = self._call(lambda: self._client.hmget(key, "v", "m", "h")) or (None, None, None)
        value, state, digest = found
        if not (isinstance(value, bytes) and isinstance(state, bytes) and isinstance(digest, bytes)
                and value and state and digest):
            return None  # gone, or stored without its digest (by an earlier release): not maintained
        plain, plain_state = self._verify(key, value), self._verify(key + _STATE, state)
        if not isinstance(plain, bytes) or not isinstance(plain_state, bytes):
            return None
        return plain, plain_state, digest.decode()

    def _check_keys(self, baselines: Sequence[Mapping[str, int]]) -> tuple[list[str], list[int], list[int]]:
        """The keys and arguments of the checks' dependencies: counts, keys, versions."""
        names = [k for b in baselines for k in b]
        vkeys, pkeys = self._keys(names)
        return [*vkeys, *pkeys], [len(b) for b in baselines], [b[k] for b in baselines for k in b]

    def begin_write_checked(self, version_keys: Sequence[str], token: str, mark_ttl_ms: int,
                            checks: Sequence[MaintainCheck]) -> tuple[int, list[bool]]:
        vkeys, pkeys = self._keys(version_keys)
        extra, counts, seen = self._check_keys([c.versions for c in checks])
        seq, ok = self._run("begin_checked", [CLOCK, *vkeys, *pkeys, *extra],
                            [self._new_epoch(), len(version_keys), token, mark_ttl_ms, "\x1e".join(version_keys),
                             self.channel, len(checks), *counts, *seen], force=True)
        seq = int(seq)
        self._advance((k, seq) for k in version_keys)
        return seq, [bool(int(x)) for x in ok]

    def end_write_maintained(self, version_keys: Sequence[str], token: str, tick1: int,
                             updates: Sequence[MaintainUpdate], rows: Mapping[str, bytes] | None = None
                             ) -> tuple[int, list[str | None]]:
        vkeys, pkeys = self._keys(version_keys)
        extra, counts, seen = self._check_keys([u.baseline for u in updates])
        payload: list[Any] = []
        for u in updates:
            payload += [u.digest, self._sign(u.key, u.value) if u.value is not None else "",
                        self._sign(u.key + _STATE, u.state) if u.state is not None else ""]
        seq, (ok,) = self._phase2(
            "end_maintained", [CLOCK, *vkeys, *pkeys, *(u.key for u in updates), *extra],
            [self._new_epoch(), len(version_keys), token, "\x1e".join(version_keys), self.channel, tick1,
             len(updates), *counts, *payload, *seen, *((rows or {}).get(k, b"") for k in version_keys)],
            version_keys)
        return seq, [x.decode() if isinstance(x, bytes) else None for x in ok]

    def open_catchup(self, version_keys: Sequence[str], ttl_ms: int) -> int:
        vkeys, _ = self._keys(version_keys)
        return int(self._run("open_catchup", [CLOCK, *vkeys], [self._new_epoch(), len(version_keys), ttl_ms]))

    def catchup(self, version_keys: Sequence[str], stamp: int) -> tuple[int, dict[str, list[bytes]] | str]:
        vkeys, pkeys = self._keys(version_keys)
        seq, found = self._run("catchup", [CLOCK, *vkeys, *pkeys], [self._new_epoch(), len(version_keys), stamp])
        if isinstance(found, list):
            return int(seq), logged_rows(version_keys, found)
        return int(seq), found.decode() if isinstance(found, bytes) else str(found)

    def wait_for_acks(self) -> None:
        """Strict mode: block until every live lease holder applied this thread's last bump.

        When the bump could not be published at all, wait until every lease that could have
        been granted before the store became unreachable has run out (once per outage).
        """
        msg = getattr(self._local, "msg", None)
        self._local.msg = None
        young_wait_s = getattr(self._local, "young_wait_s", 0.0)
        self._local.young_wait_s = 0.0
        if self.mode != "strict":
            return
        if young_wait_s > 0:
            time.sleep(young_wait_s)
        if msg is None and self._undelivered:
            self._deliver_pending()  # one more try: the store may be back
            msg = getattr(self._local, "msg", None)
            self._local.msg = None
        if msg is None:
            if self._undelivered and self._outage_since:
                remaining = self._outage_since + self.lease_ms / 1000 - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
            return
        deadline = time.monotonic() + self.lease_ms / 1000 + 0.2
        delay = 0.0005
        while True:
            try:
                waiting = self._run("acked", [CLOCK, HOLDERS], [self._new_epoch(), 0, msg, self.holder,
                                                                self._ack_prefix, self._local.msg_epoch])
            except BackendUnavailable:
                # The bump was published but who applied it is unknown now: every lease that
                # could have been granted before it runs out by the deadline.
                time.sleep(max(0.0, deadline - time.monotonic()))
                return
            if waiting and waiting[0] in (b"\0epoch", "\0epoch"):
                # Every lease granted under the lost registry runs out within one lease.
                time.sleep(max(0.0, deadline - time.monotonic()))
                return
            if not waiting or time.monotonic() > deadline:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    # -- row-level invalidation: which columns readers pin, per table (see MemoryBackend) ------
    def _server_major(self) -> int:
        """The server's major version; 7 when it cannot be read now (the store may be down)."""
        try:
            version = str(self._client.info("server").get("redis_version", "7"))
            return int(version.split(".")[0])
        except (RedisError, OSError, ValueError):
            return 7

    def register_dependency(self, table_key: str, column: str) -> str:
        """Register ``column`` (one script: the column and a new version together); returns the
        incarnation it was registered in."""
        epoch = self._run("register", [CLOCK], [self._new_epoch(), 0, column, _hashed(":", table_key)])
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    def dependencies(self, table_key: str) -> tuple[frozenset[str], int]:
        field = _hashed(":", table_key)
        columns, version = self._call(lambda: self._client.hmget(CLOCK, "d" + field, "v" + field)) or (None, None)
        names = columns.decode() if isinstance(columns, bytes) else (columns or "")
        return frozenset(name for name in names.split("\x1e") if name), int(version or 0)

    def current_stamp(self) -> tuple[str, int]:
        seq, epoch, _ = self._run("stamp", [CLOCK], [self._new_epoch(), 0])
        epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
        self._see_epoch(epoch, int(seq))
        return epoch, int(seq)

    def delete(self, key: str) -> None:
        self._call(lambda: self._client.delete(key))

    def flush(self, prefix: str = "") -> None:
        def scan_delete() -> None:
            batch = []
            for key in self._client.scan_iter(match=f"{self.namespace}:e:{prefix}*", count=1000):
                if key.endswith((b":l", b":w")):
                    continue  # a running leader's lease and its waiters' flag: not entries
                batch.append(key)
                if len(batch) >= 500:
                    self._client.delete(*batch)
                    batch = []
            if batch:
                self._client.delete(*batch)
        self._call(scan_delete)

    def close(self) -> None:
        self._stop.set()
        # The subscriber first: a renewal it has in flight must not re-register this holder after
        # it was removed (writers would wait a lease for a process that is gone).
        if self._subscriber is not None and self._subscriber.is_alive():
            self._subscriber.join(timeout=2)
        try:
            self._client.zrem(HOLDERS, self.holder)
        except (RedisError, OSError):
            pass
        for conn in list(self._opened):
            conn.disconnect()
        self._client.close()

    # -- fleet statistics -------------------------------------------------------------------------
    def publish_stats(self, payload: bytes, ttl_ms: int) -> None:
        """This process's stats snapshot, under its holder id, expiring unless published again."""
        self._call(lambda: self._client.set(f"{self.namespace}:stats:{self.holder}", payload, px=ttl_ms))

    def read_stats(self) -> list[bytes]:
        """Every live process's latest snapshot in this namespace."""
        def read() -> list[bytes]:
            keys = list(self._client.scan_iter(match=f"{self.namespace}:stats:*", count=1000))
            values = self._client.mget(keys) if keys else []
            return [v.encode() if isinstance(v, str) else v for v in values if v is not None]
        result: list[bytes] = self._call(read)
        return result

    def health_problems(self) -> list[str]:
        return health.problems(self._client)

    def health_report(self) -> list[tuple[str, str, str]]:
        """``doctor``'s Redis checks: (check, ok|warn|fail, detail with the fix)."""
        return health.report(self._client, self.timeout_s)

    # -- integrity ------------------------------------------------------------------------------
    def _sign(self, key: str, value: bytes) -> bytes:
        if self._secret is None:
            return value
        return hmac.new(self._secret, key.encode() + b"\x00" + value, hashlib.sha256).digest() + value

    def _verify(self, key: str, value: bytes) -> bytes | _Miss:
        if self._secret is None:
            return value
        mac, payload = value[:32], value[32:]
        expected = hmac.new(self._secret, key.encode() + b"\x00" + payload, hashlib.sha256).digest()
        return payload if hmac.compare_digest(mac, expected) else MISS

    # -- failing open ---------------------------------------------------------------------------
    def _run(self, script: str, keys: list[str], args: list[Any], force: bool = False) -> Any:
        return self._call(lambda: self._evalsha(script, keys, args), force)

    def _evalsha(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA on this thread's own connection: the same bytes on the wire as redis-py's
        ``Script``, without its per-command layers and pool checkout (they cost about as much as
        the round trip itself)."""
        conn: Any = getattr(self._conns, "conn", None)
        if conn is None:
            pool = self._client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            self._conns.conn = conn
            self._opened.add(conn)
        command = ("EVALSHA", self._scripts[script].sha, len(keys), *keys, *args)
        reused = conn._sock is not None
        try:
            return self._send(conn, command, script)
        except RedisConnectionError:
            conn.disconnect()
            if not reused:
                raise
            # The server closed a connection this thread had kept (a restart, a timeout on its
            # side): one more try on a new one, as redis-py's pool would. Every script may run
            # twice safely: versions only grow, marks and fills are idempotent.
            try:
                return self._send(conn, command, script)
            except BaseException:
                conn.disconnect()
                raise
        except ResponseError:
            raise  # the reply was read whole: the connection is fine
        except BaseException:
            conn.disconnect()  # a timeout or an interrupted read: reconnect on the next call
            raise

    def _send(self, conn: Any, command: tuple[Any, ...], script: str) -> Any:
        observer = self._script_observer
        if observer is not None:
            observer(script)
        try:
            if _hiredis_pack is not None:
                conn.send_packed_command([_hiredis_pack(command)], check_health=False)
            else:
                conn.send_command(*command)
            return conn.read_response()
        except NoScriptError:
            # Redis restarted or SCRIPT FLUSH: load it again, then run it.
            conn.send_command("SCRIPT", "LOAD", self._scripts[script].script)
            conn.read_response()
            conn.send_command(*command)
            return conn.read_response()

    def _call(self, action: Callable[[], T], force: bool = False) -> T:
        # Reads stay behind the breaker; write announcements (force) always try, within the
        # timeout: another process may reach the store while this one's breaker is open.
        now = time.monotonic()
        if not force and self._state == "open" and now < self._open_until:
            raise BackendUnavailable("redis circuit breaker is open")
        try:
            result = action()
        except (RedisError, OSError) as exc:
            self._failure(exc)
            raise BackendUnavailable(f"redis: {exc}") from exc
        if self._state != "closed":
            log.warning("querycache: redis at %s is reachable again; caching resumes", redact_url(self.url))
            self._state = "closed"
        self._failures = 0
        self._outage_since = 0.0
        if self._undelivered:
            self._deliver_pending()
        return result

    def _failure(self, exc: BaseException) -> None:
        if not self._outage_since:
            self._outage_since = time.monotonic()
        self._failures += 1
        if self._failures >= self.breaker_failures or self._state == "half-open":
            if self._state != "open":
                log.warning("querycache: redis at %s failed (%s); queries go to the database",
                            redact_url(self.url), exc)
            self._state = "open"
            self._open_until = time.monotonic() + self.breaker_cooldown_s
        self._lease_until = 0.0

    @property
    def breaker_state(self) -> str:
        if self._state == "open" and time.monotonic() >= self._open_until:
            self._state = "half-open"
        return self._state

    def _deliver_pending(self) -> None:
        with self._lock:
            keys = sorted(self._undelivered)
            self._undelivered.clear()
        if not keys:
            return
        token = uuid.uuid4().hex
        try:
            self.begin_write(keys, token, 30000)
            self.end_write(keys, token)
        except BackendUnavailable:
            with self._lock:
                self._undelivered.update(keys)
