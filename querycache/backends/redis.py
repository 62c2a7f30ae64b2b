"""The shared L2 store on Redis: entries, the logical clock, and cross-process L1 coherence.

Every operation is one Lua script, so one round trip: ``lookup`` creates missing
versions, reads the entry, the versions and the pending marks and returns the stamp;
``fill`` stores only when no dependency moved past the stamp; ``begin_write`` /
``end_write`` are the two phases of DESIGN §2, the second publishing the bump.

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
from typing import Any, Iterable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from querycache.backends.base import MISS, Lookup, _Miss
from querycache.config import redact_url
from querycache.errors import BackendUnavailable

_hiredis_pack: Any
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is optional; redis-py packs then
    _hiredis_pack = None

log = logging.getLogger("querycache")

CLOCK = "qc:clock"
CHANNEL = "qc:bumps"
"""Prefix of the bump channel; the database number follows: Redis channels are server-wide, and
the clocks of two logical databases must not hear each other's bumps."""
HOLDERS = "qc:holders"
FILLS = "qc:fills"
"""Prefix of the channel (database number follows) on which a lease holder's fill or release
wakes the processes waiting for the same key."""
_NO_LEASE = "\x00no-lease"

_PRELUDE = """
-- The store's time is read only when needed (a new incarnation, a tick, a pending mark):
-- the hit path does without it.
local now_us, now_ms
local function now()
  if not now_us then
    local t = redis.call('TIME')
    now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    now_ms = math.floor(now_us / 1000)
  end
  return now_us
end
local clock = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local seq = tonumber(clock[1])
local epoch = clock[2]
if not epoch then
  -- A new incarnation (first use, FLUSHALL, restart without persistence, eviction): its
  -- counter starts at the store's time, above every stamp the old one handed out.
  epoch = ARGV[1]
  seq = now()
  redis.call('HSET', KEYS[1], 'seq', string.format('%d', seq), 'epoch', epoch, 'msg', 0, 'born', now_ms)
end
local n = tonumber(ARGV[2])
local function pending_on(pk)
  if redis.call('EXISTS', pk) == 1 then
    now()
    redis.call('ZREMRANGEBYSCORE', pk, '-inf', now_ms)
    return redis.call('ZCARD', pk) > 0
  end
  return false
end
local function tick()
  seq = math.max(seq + 1, now())
  redis.call('HSET', KEYS[1], 'seq', string.format('%d', seq))
  return seq
end
-- Publish a bump (both phases): numbered, so that subscribers can see a gap.
local function announce(channel, sv, names)
  local msg = redis.call('HINCRBY', KEYS[1], 'msg', 1)
  redis.call('PUBLISH', channel, epoch .. '\\31' .. msg .. '\\31' .. sv .. '\\31' .. names)
  return msg
end
"""

# KEYS: clock, entry, n version keys, n pending keys. ARGV: new epoch, n, has entry, tx stamp or '',
# lease token (this call's), lease ms, '1' to take the coalescing lease on a miss, '1' to claim the
# refresh of an entry past its TTL (stale-while-revalidate).
# The hot path: one MGET for the versions and one EXISTS for all pending marks; the marks are
# only read one by one (to drop expired tokens) when one exists.
_LOOKUP = _PRELUDE + """
local vkeys, pkeys = {}, {}
for i = 1, n do
  vkeys[i] = KEYS[2 + i]
  pkeys[i] = KEYS[2 + n + i]
end
local versions = n > 0 and redis.call('MGET', unpack(vkeys)) or {}
local created = false
for i = 1, n do
  if not versions[i] then
    versions[i] = string.format('%d', seq)
    redis.call('SET', vkeys[i], versions[i])
    created = true
  end
end
local pending = 0
if n > 0 and redis.call('EXISTS', unpack(pkeys)) > 0 then
  for i = 1, n do
    if pending_on(pkeys[i]) then pending = 1 end
  end
end
local value = false
local entry_stamp = '0'
local refresh = 0
local lk = KEYS[2] .. ':l'
local function take_lease()
  -- The token is this call's own: a second caller of the same process does not get it either.
  return redis.call('SET', lk, ARGV[5], 'NX', 'PX', ARGV[6])
end
if ARGV[3] == '1' and not created and pending == 0 then
  local e = redis.call('HMGET', KEYS[2], 'e', 's', 'v', 'x')
  if e[1] == epoch and e[3] then
    local limit = tonumber(e[2])
    if ARGV[4] ~= '' then limit = math.min(limit, tonumber(ARGV[4])) end
    local fresh = true
    for i = 1, n do
      if tonumber(versions[i]) > limit then fresh = false break end
    end
    if fresh then
      value = e[3]
      entry_stamp = e[2]
      -- Stale-while-revalidate: past its TTL (still fresh by the clock), one caller refreshes.
      if e[4] then
        now()
        if now_ms >= tonumber(e[4]) then refresh = (ARGV[8] == '1' and take_lease()) and 1 or 2 end
      end
    end
  end
end
-- Coalescing: on a miss, this process takes the key's lease unless another one holds it (then
-- it leaves a flag so that the holder's fill or release wakes the waiters).
local leader = 1
if not value and pending == 0 and ARGV[7] == '1' then
  if not take_lease() then
    leader = 0
    redis.call('SET', KEYS[2] .. ':w', '1', 'PX', ARGV[6])
  end
end
return {value, string.format('%d', seq), epoch, pending, versions, leader, entry_stamp, refresh}
"""

# Give back this process's coalescing lease on an entry key and wake its waiters (fills channel).
_RELEASE_FN = """
local function release(entry, holder, channel, reason)
  local lk = entry .. ':l'
  if redis.call('GET', lk) == holder then redis.call('DEL', lk) end
  if redis.call('DEL', entry .. ':w') == 1 then
    redis.call('PUBLISH', channel, entry .. '\\31' .. reason)
  end
end
"""

# KEYS: clock, entry, n version keys, n pending keys. ARGV: new epoch, n, value, stamp, epoch, ttl ms,
# lease token ('' if none), fills channel, stale-while-revalidate window ms (0: none).
_FILL = _PRELUDE + _RELEASE_FN + """
local function store()
  if epoch ~= ARGV[5] then return 0 end
  local stamp = tonumber(ARGV[4])
  for i = 1, n do
    local v = redis.call('GET', KEYS[2 + i])
    if not v or tonumber(v) > stamp then return 0 end
    if pending_on(KEYS[2 + n + i]) then return 0 end
  end
  redis.call('DEL', KEYS[2])
  if ARGV[9] ~= '0' then
    -- With a stale-while-revalidate window: the TTL ends at 'x', the entry lives the window longer.
    now()
    redis.call('HSET', KEYS[2], 'e', epoch, 's', ARGV[4], 'v', ARGV[3], 'x', now_ms + tonumber(ARGV[6]))
    redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]) + tonumber(ARGV[9]))
  else
    redis.call('HSET', KEYS[2], 'e', epoch, 's', ARGV[4], 'v', ARGV[3])
    redis.call('PEXPIRE', KEYS[2], ARGV[6])
  end
  return 1
end
local stored = store()
release(KEYS[2], ARGV[7], ARGV[8], 'filled')
return stored
"""

# KEYS: entry. ARGV: lease token ('' if none), fills channel, reason.
_RELEASE = _RELEASE_FN + """
release(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"""

# KEYS: entry keys. ARGV: lease ms, then one token per key. Extends this process's leases (its
# leaders still run).
_EXTEND = """
for i = 1, #KEYS do
  local lk = KEYS[i] .. ':l'
  if redis.call('GET', lk) == ARGV[1 + i] then redis.call('PEXPIRE', lk, ARGV[1]) end
end
return 1
"""

# KEYS: clock, n version keys, n pending keys. ARGV: new epoch, n, token, mark ttl ms,
# logical names joined by \30, channel.
# Phase 1 publishes too: a writer killed between its commit and phase 2 must still make other
# processes' L1 copies stale (the pending mark only stops L2 hits and fills).
_BEGIN = _PRELUDE + """
local s = tick()
local sv = string.format('%d', s)
local ttl = tonumber(ARGV[4])
for i = 1, n do
  redis.call('SET', KEYS[1 + i], sv)
  redis.call('ZADD', KEYS[1 + n + i], now_ms + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[1 + n + i], ttl * 2)
end
announce(ARGV[6], sv, ARGV[5])
return sv
"""

# KEYS: clock, n version keys, n pending keys. ARGV: new epoch, n, token, logical names joined by \\30.
_END = _PRELUDE + """
local s = tick()
local sv = string.format('%d', s)
for i = 1, n do
  redis.call('SET', KEYS[1 + i], sv)
  redis.call('ZREM', KEYS[1 + n + i], ARGV[3])
end
local msg = announce(ARGV[5], sv, ARGV[4])
local born = tonumber(redis.call('HGET', KEYS[1], 'born') or '0')
return {sv, msg, epoch, string.format('%d', born), string.format('%d', now_ms)}
"""

# KEYS: clock. ARGV: new epoch, 0.
_STAMP = _PRELUDE + """
return {string.format('%d', seq), epoch, redis.call('HGET', KEYS[1], 'msg') or '0'}
"""

# KEYS: clock, holders. ARGV: new epoch, 0, holder, lease ms.
_RENEW = _PRELUDE + """
now()
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[4]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - 60000)
return now_ms
"""

# KEYS: clock, holders. ARGV: new epoch, 0, msg, self holder, ack key prefix.
_ACKED = _PRELUDE + """
if epoch ~= ARGV[6] then
  -- The incarnation that published the bump is gone (FLUSHALL, restart) and with it the lease
  -- registry: who still holds a lease is unknown.
  return {'\0epoch'}
end
now()
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now_ms, '+inf')
local waiting = {}
for _, h in ipairs(live) do
  if h ~= ARGV[4] then
    local a = tonumber(redis.call('GET', ARGV[5] .. epoch .. ':' .. h) or '0')
    if a < tonumber(ARGV[3]) then table.insert(waiting, h) end
  end
end
return waiting
"""


_live: weakref.WeakSet[RedisBackend] = weakref.WeakSet()


def _mark_forked() -> None:
    for backend in list(_live):
        backend._forked = True
        backend._lease_until = 0.0
        backend._conns = threading.local()  # the parent's sockets are not this process's
        backend.holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # nor its lease-holder id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


class _FillWaiter:
    __slots__ = ("event", "reason")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None


# KEYS: clock. ARGV: new epoch, 0, column, the table's field. The columns readers pin live in the
# clock's own hash, so that no eviction can forget them without starting a new incarnation (which
# readers detect: see CachedConnection._registered_in). The version comes from the clock's
# counter, which never goes back, not from a count that would start again (a writer comparing
# versions around its write must never see an old value come back).
_REGISTER = _PRELUDE + """
local field = 'd' .. ARGV[4]
local columns = redis.call('HGET', KEYS[1], field)
local known = false
if columns then
  for name in string.gmatch(columns, '[^\\30]+') do
    if name == ARGV[3] then known = true end
  end
end
if not known then
  redis.call('HSET', KEYS[1], field, columns and (columns .. '\\30' .. ARGV[3]) or ARGV[3])
end
redis.call('HSET', KEYS[1], 'v' .. ARGV[4], string.format('%d', tick()))
return epoch
"""


def _oom_denied(script: str) -> str:
    """Redis 7 refuses a script with a shebang and without ``allow-oom`` while it is out of memory.
    For the lookup that is fail-open: under ``noeviction`` at ``maxmemory`` the bumps of writes are
    refused, so an entry filled before them must not be served (the query goes to the database)."""
    return "#!lua\n" + script


def _hashed(prefix: str, name: str) -> str:
    return prefix + hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class RedisBackend:
    """L2 on Redis (redis-py; hiredis is used when installed), failing open behind a circuit breaker."""

    name = "redis"

    def __init__(self, url: str, namespace: str = "querycache", timeout_ms: int = 50,
                 hmac_secret: str | None = None, mode: str = "strict", lease_ms: int = 500,
                 breaker_failures: int = 3, breaker_cooldown_s: float = 1.0) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout_s = timeout_ms / 1000
        self.mode = mode
        self.lease_ms = lease_ms
        self._secret = hmac_secret.encode() if hmac_secret else None
        self._client = redis.Redis.from_url(url, socket_timeout=self.timeout_s,
                                            socket_connect_timeout=self.timeout_s)
        lookup = _oom_denied(_LOOKUP) if self._server_major() >= 7 else _LOOKUP
        self._scripts = {name: self._client.register_script(body) for name, body in (
            ("lookup", lookup), ("fill", _FILL), ("begin", _BEGIN), ("end", _END), ("stamp", _STAMP),
            ("renew", _RENEW), ("acked", _ACKED), ("release", _RELEASE), ("extend", _EXTEND),
            ("register", _REGISTER))}
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{CHANNEL}:{db}"
        self.fills_channel = f"{FILLS}:{db}"
        self._held: dict[str, tuple[str, int]] = {}  # entry key -> (lease token, lease ms)
        self._lease_counter = itertools.count()
        self._fill_waiters: dict[str, _FillWaiter] = {}
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
        self._on_resync: list[Any] = []
        self._stop = threading.Event()
        self._subscriber: threading.Thread | None = None
        self._pid = os.getpid()
        self._forked = False
        _live.add(self)
        self._start_subscriber()

    @classmethod
    def from_config(cls, config: Any) -> RedisBackend:
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

    def on_resync(self, callback: Any) -> None:
        """``callback()`` runs when the mirror was emptied (gap, reconnect, new epoch)."""
        self._on_resync.append(callback)

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
               lease_ms: int = 0, peek: bool = False) -> Lookup:
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
        value, seq, epoch, pending, versions, leader, entry_stamp, refresh = self._run(
            "lookup", [CLOCK, entry, *vkeys, *pkeys],
            [self._new_epoch(), len(version_keys), "1" if key else "0", "" if tx_stamp is None else tx_stamp,
             token, lease_ms or 30000, "1" if lease else "0", "0" if peek else "1"],
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
            if refresh == 1:
                self._held[entry] = (token, lease_ms or 30000)  # this caller refreshes it
        elif lease and leader and not pending:
            self._held[entry] = (token, lease_ms)  # extended by the subscriber while this leader runs
        return Lookup(result, int(seq), epoch, bool(pending), found, bool(leader), int(entry_stamp),
                      int(refresh) if result is not MISS else 0)

    def fill(self, key: str, value: bytes, version_keys: Sequence[str], stamp: int, epoch: str,
             ttl_s: float, swr_s: float = 0.0) -> bool:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms <= 0:
            self.release_lease(key, "unshared")
            return False
        vkeys, pkeys = self._keys(version_keys)
        token = self._held.pop(key, ("", 0))[0]
        return bool(self._run("fill", [CLOCK, key, *vkeys, *pkeys],
                              [self._new_epoch(), len(version_keys), self._sign(key, value), stamp, epoch, ttl_ms,
                               token, self.fills_channel, int(swr_s * 1000)]))

    def release_lease(self, key: str, reason: str) -> None:
        token = self._held.pop(key, ("", 0))[0]
        self._run("release", [key], [token, self.fills_channel, reason])

    def wait_fill(self, key: str, timeout_s: float) -> str | None:
        with self._lock:
            waiter = self._fill_waiters.get(key)
            if waiter is None:
                waiter = self._fill_waiters[key] = _FillWaiter()
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
        try:
            seq, msg, epoch, born_ms, now_ms = self._run("end", [CLOCK, *vkeys, *pkeys],
                                        [self._new_epoch(), len(version_keys), token,
                                         "\x1e".join(version_keys), self.channel], force=True)
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
        return seq

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
        problems = []
        policy = self._client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        if str(policy).startswith("allkeys-"):
            problems.append(f"maxmemory-policy is {policy}: it may evict clock keys; use volatile-* or noeviction")
        return problems

    def health_report(self) -> list[tuple[str, str, str]]:
        """``doctor``'s Redis checks: (check, ok|warn|fail, detail with the fix)."""
        checks: list[tuple[str, str, str]] = []
        info = self._client.info("server")
        version = str(info.get("redis_version", "?"))
        major = int(version.split(".")[0]) if version[:1].isdigit() else 0
        checks.append(("redis version", "ok" if major >= 6 else "fail",
                       version if major >= 6 else f"{version}: Redis 6 or newer is needed"))
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            self._client.ping()
            samples.append(time.perf_counter() - started)
        median_ms = sorted(samples)[len(samples) // 2] * 1000
        budget_ms = self.timeout_s * 1000
        checks.append(("redis latency", "ok" if median_ms < budget_ms / 2 else "warn",
                       f"PING median {median_ms:.2f} ms (l2.timeout_ms {budget_ms:.0f})"
                       + ("" if median_ms < budget_ms / 2 else ": raise l2.timeout_ms or move Redis closer")))
        problems = self.health_problems()
        policy = self._client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        detail = problems[0] if problems else str(policy)
        checks.append(("redis maxmemory-policy", "fail" if problems else "ok", detail))
        checks.append(self._pubsub_check())
        return checks

    def _pubsub_check(self) -> tuple[str, str, str]:
        channel = f"qc:doctor:{uuid.uuid4().hex}"
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(channel)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "subscribe":
                    break
            self._client.publish(channel, b"ping")
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "message":
                    return ("redis pub/sub", "ok", "a published message arrived")
            return ("redis pub/sub", "fail", "a published message did not arrive within 2 s: coherence leases "
                                             "cannot be granted; check proxies between the app and Redis")
        finally:
            pubsub.close()

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

    def _call(self, action: Any, force: bool = False) -> Any:
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

    # -- the subscriber ---------------------------------------------------------------------------
    def _see_epoch(self, epoch: str, seq: int) -> bool:
        """Follow the store to a new incarnation; False for an answer from an older one.

        Epochs are random ids; their order comes from the clock: a new incarnation's counter
        starts at the store's time, above every stamp of the one before. An observation made
        before a FLUSHALL may arrive after the new epoch was seen, and must not switch back.
        """
        with self._lock:
            if epoch == self._epoch:
                self._epoch_seq = max(self._epoch_seq, seq)
                return True
            if self._epoch and seq <= self._epoch_seq:
                return False
            if self._epoch:
                self._resync()
            self._epoch = epoch
            self._epoch_seq = seq
            self._l1_token = f"{epoch}#{self._generation}"
            return True

    def _resync(self) -> None:
        self._generation += 1
        self._l1_token = f"{self._epoch}#{self._generation}"
        self.versions.clear()
        self._last_msg = -1
        for callback in list(self._on_resync):
            try:
                callback()
            except Exception:
                log.exception("querycache: resync callback failed")

    def _start_subscriber(self) -> None:
        self._subscriber = threading.Thread(target=self._subscribe_loop, name="querycache-redis-subscriber",
                                            daemon=True)
        self._subscriber.start()

    def _subscribe_loop(self) -> None:
        renew_every = self.lease_ms / 3000
        margin = min(0.1, self.lease_ms / 5000)
        while not self._stop.is_set():
            pubsub = None
            try:
                # No transparent retries: a reconnect must be visible here, since messages
                # published while disconnected are lost and the mirror must be rebuilt.
                client = redis.Redis.from_url(self.url, socket_timeout=max(1.0, self.lease_ms / 1000),
                                              socket_connect_timeout=self.timeout_s,
                                              retry=Retry(NoBackoff(), 0), retry_on_error=[])
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.channel, self.fills_channel)
                self._resync()  # messages may have been missed before this subscription
                if self._undelivered:
                    self._deliver_pending()  # the store is back: announce the outage's writes now
                seq_text, epoch, msg_text = self._scripts["stamp"](keys=[CLOCK], args=[self._new_epoch(), 0],
                                                                   client=client)
                self._see_epoch(epoch.decode() if isinstance(epoch, bytes) else epoch, int(seq_text))
                self._last_msg = int(msg_text)
                ping_sent = 0.0
                awaiting_pong = False
                published_before_ping = -1
                published_epoch = self._epoch
                published_seq = 0
                while not self._stop.is_set():
                    now = time.monotonic()
                    if not awaiting_pong and now - ping_sent >= renew_every:
                        ping_sent = now
                        if self._undelivered:
                            self._deliver_pending()
                        # What had been published before the PING: the PONG proves it all arrived.
                        seq_text, epoch, msg_text = self._scripts["stamp"](
                            keys=[CLOCK], args=[self._new_epoch(), 0], client=client)
                        published_epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
                        published_seq = int(seq_text)
                        published_before_ping = int(msg_text)
                        pubsub.ping()
                        awaiting_pong = True
                    message = pubsub.get_message(timeout=renew_every)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        if message["channel"] in (self.fills_channel, self.fills_channel.encode()):
                            self._woken(message["data"])
                        else:
                            self._apply(message["data"], client)
                    elif kind == "pong" and awaiting_pong:
                        awaiting_pong = False
                        switched = published_epoch != self._epoch
                        if switched and not self._see_epoch(published_epoch, published_seq):
                            continue  # an older incarnation's answer: no lease this round
                        if switched or self._last_msg < published_before_ping:
                            # A new incarnation, or bumps that never arrived: rebuild, no lease yet.
                            self._resync()
                            self._last_msg = published_before_ping
                            self._lease_until = 0.0
                            continue
                        if self._held:
                            # This process's coalescing leaders still run: keep their leases.
                            held = dict(self._held)
                            self._scripts["extend"](keys=list(held),
                                                    args=[max(ms for _, ms in held.values()),
                                                          *(token for token, _ in held.values())],
                                                    client=client)
                        # Every bump published before the PING has been applied: renew the lease.
                        self._scripts["renew"](keys=[CLOCK, HOLDERS],
                                               args=[self._new_epoch(), 0, self.holder, self.lease_ms],
                                               client=client)
                        self._lease_until = ping_sent + self.lease_ms / 1000 - margin
            except (RedisError, OSError, ValueError) as exc:
                self._lease_until = 0.0
                log.debug("querycache: redis subscriber reconnecting after %s", exc)
                self._stop.wait(0.05)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
        self._lease_until = 0.0

    def _woken(self, data: bytes) -> None:
        key, _, reason = data.decode("utf-8", "surrogatepass").partition("\x1f")
        with self._lock:
            waiter = self._fill_waiters.get(key)
        if waiter is not None:
            waiter.reason = reason
            waiter.event.set()

    def _apply(self, data: bytes, client: Any) -> None:
        epoch, msg_text, seq_text, names = data.decode("utf-8", "surrogatepass").split("\x1f", 3)
        msg, seq = int(msg_text), int(seq_text)
        if epoch != self._epoch:
            # Trust the store, not the message: only the clock it holds now may switch this
            # process to another incarnation (a stray message cannot pin it to a foreign epoch).
            seq_text, store_epoch, _ = self._scripts["stamp"](keys=[CLOCK], args=[self._new_epoch(), 0],
                                                              client=client)
            store_epoch = store_epoch.decode() if isinstance(store_epoch, bytes) else store_epoch
            switched = store_epoch != self._epoch and self._see_epoch(store_epoch, int(seq_text))
            if switched:
                self._lease_until = 0.0
            if epoch != store_epoch:
                return  # an older incarnation's (or a foreign) message: the resync covered it
        elif self._last_msg >= 0 and msg > self._last_msg + 1:
            self._resync()  # a gap: something was missed; forget everything
            self._lease_until = 0.0
        # Applying a bump twice is harmless (versions only grow), so earlier numbers are applied too.
        self._advance((k, seq) for k in names.split("\x1e") if names)
        self._last_msg = max(self._last_msg, msg)
        # Acknowledgements are per incarnation: message numbers restart with a new epoch.
        client.set(f"{self._ack_prefix}{self._epoch}:{self.holder}", msg, px=max(60000, self.lease_ms * 10))
