"""The Lua scripts of the Redis store and the clock's key names: one script per operation, so
that every operation is one round trip (docs/freshness.md, "The clock").

Clock keys (``qc:clock``, ``qc:v:*``, ``qc:p:*``, the bump channel, lease holders) are shared by
every namespace: two caches over one database must invalidate each other.
"""

from __future__ import annotations

from querycache.backends.base import CATCHUP_LOG
from querycache.hints import MAX_STALE_CAP_S

CLOCK = "qc:clock"
CHANNEL = "qc:bumps"
"""Prefix of the bump channel; the database number follows: Redis channels are server-wide, and
the clocks of two logical databases must not hear each other's bumps."""
HOLDERS = "qc:holders"
FILLS = "qc:fills"
"""Prefix of the channel (database number follows) on which a lease holder's fill or release
wakes the processes waiting for the same key."""
_NO_LEASE = "\x00no-lease"
HISTORY_GROUPS = 512
"""Groups of bumps kept per version key for bounded-staleness reads (up to twice as many before a trim)."""
HISTORY_GROUP_MS = 100
"""Bumps of one version within this long of a group's first one join that group (ticks up to the group's
last, the time of its first): an age read from a group is at most this much too high, never too low."""
HISTORY_S = MAX_STALE_CAP_S
"""How long a version's bump history outlives its last bump; ``max_stale`` is capped by it."""

_HISTORY_DECL = "local HISTORY, HISTORY_MS, GROUP_MS = {}, {}, {}"


def with_history(body: str, groups: int, group_ms: int) -> str:
    """``body`` with another bump-history size (tests: trimming without minutes of bumps)."""
    return body.replace(_HISTORY_DECL.format(HISTORY_GROUPS, HISTORY_S * 1000, HISTORY_GROUP_MS),
                        _HISTORY_DECL.format(groups, HISTORY_S * 1000, group_ms))


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
# refresh of an entry past its TTL (stale-while-revalidate), the bounded-staleness limit in ms
# ('0': strict), the refresh-ahead factor (beta * -ln(U), '0': off).
# Reply's refresh: 1 this caller refreshes (past its TTL), 2 another one does, 3 this caller
# refreshes ahead of the TTL, 4 this caller refreshes an answer served within its staleness bound.
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
local pending_floor = 0  -- the lowest version among the dependencies with a pending mark
if n > 0 and redis.call('EXISTS', unpack(pkeys)) > 0 then
  for i = 1, n do
    if pending_on(pkeys[i]) then
      pending = 1
      local v = tonumber(versions[i])
      if pending_floor == 0 or v < pending_floor then pending_floor = v end
    end
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
local stale_ms = -1
local e_x, e_d = false, false
if ARGV[3] == '1' and not created then
  local e = redis.call('HMGET', KEYS[2], 'e', 's', 'v', 'x', 'd')
  e_x, e_d = e[4], e[5]
  if e[1] == epoch and e[3] then
    local limit = tonumber(e[2])
    if ARGV[4] ~= '' then limit = math.min(limit, tonumber(ARGV[4])) end
    local fresh = pending == 0
    for i = 1, n do
      if not fresh then break end
      if tonumber(versions[i]) > limit then fresh = false end
    end
    if fresh then
      value = e[3]
      entry_stamp = e[2]
      if e[4] then
        now()
        if now_ms >= tonumber(e[4]) then
          -- Stale-while-revalidate: past its TTL (still fresh by the clock), one caller refreshes.
          refresh = (ARGV[8] == '1' and take_lease()) and 1 or 2
        elseif ARGV[10] ~= '0' and e[5] and now_ms + tonumber(e[5]) * tonumber(ARGV[10]) >= tonumber(e[4]) then
          -- Refresh-ahead (probabilistic early expiration): one caller recomputes it before its TTL.
          refresh = (ARGV[8] == '1' and take_lease()) and 3 or 0
        end
      end
    elseif ARGV[9] ~= '0' and ARGV[4] == '' then
      -- Bounded staleness: served while the first bump after its stamp is younger than the bound.
      local first = nil
      for i = 1, n do
        if tonumber(versions[i]) > limit then
          local h = redis.call('ZRANGEBYSCORE', 'qc:h:' .. string.sub(KEYS[2 + i], 6), '(' .. e[2], '+inf',
                               'LIMIT', 0, 1)
          if not h[1] or h[1] == 'f' then first = false break end
          local t = tonumber(string.match(h[1], ':(%d+)$'))
          if first == nil or t < first then first = t end
        end
      end
      if first then
        now()
        local bound = tonumber(ARGV[9])
        if now_ms - first < bound then
          value = e[3]
          entry_stamp = e[2]
          stale_ms = now_ms - first
          -- One caller refreshes it, once it is half its bound old (earlier for a query that
          -- costs more than a quarter of the bound): a hot entry is not recomputed back to back.
          local due = math.max(0, math.min(bound / 2, bound - 2 * tonumber(e[5] or '0')))
          refresh = (stale_ms >= due and ARGV[8] == '1' and take_lease()) and 4 or 2
        end
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
local ttl_left, cost = -1, 0
if value and e_x then
  now()
  ttl_left = tonumber(e_x) - now_ms
  cost = tonumber(e_d or '0')
end
return {value, string.format('%d', seq), epoch, pending, versions, leader, entry_stamp, refresh, stale_ms, ttl_left,
        cost, string.format('%d', pending_floor)}
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
# lease token ('' if none), fills channel, stale-while-revalidate window ms (0: none), a maintained
# answer's state ('' if none), '1' for a bounded-staleness answer, the query's cost in ms.
_FILL = _PRELUDE + _RELEASE_FN + """
local function store()
  if epoch ~= ARGV[5] then return 0 end
  local stamp = tonumber(ARGV[4])
  local bounded = ARGV[11] == '1'
  for i = 1, n do
    local v = redis.call('GET', KEYS[2 + i])
    -- A bounded-staleness answer is stored even when a write landed since its stamp: the
    -- history tells its readers how long ago (docs/freshness.md, "Bounded staleness").
    if not v or (tonumber(v) > stamp and not bounded) then return 0 end
    if pending_on(KEYS[2 + n + i]) then
      if not bounded then return 0 end
      -- A write is under way: the answer may lack it. Stamped below that version's last bump, it is
      -- stale at once, its age counted from that bump (before this fill, before the write returns).
      stamp = math.min(stamp, tonumber(v) - 1)
    end
  end
  if bounded then
    local held = redis.call('HGET', KEYS[2], 's')
    if held and tonumber(held) > stamp then return 0 end  -- never replace a newer answer
  end
  redis.call('DEL', KEYS[2])
  -- The TTL ends at 'x'; with a stale-while-revalidate window the entry lives that much longer.
  -- 'd': what the query cost (ms), for refresh-ahead.
  now()
  redis.call('HSET', KEYS[2], 'e', epoch, 's', string.format('%d', stamp), 'v', ARGV[3],
             'x', now_ms + tonumber(ARGV[6]), 'd', ARGV[12])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]) + tonumber(ARGV[9]))
  -- 'm': a maintained answer's state, 'h' its SHA-1 (what writers compare, computed once here).
  if ARGV[10] and ARGV[10] ~= '' then redis.call('HSET', KEYS[2], 'm', ARGV[10], 'h', redis.sha1hex(ARGV[10])) end
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
_PHASES_FN = """
""" + _HISTORY_DECL.format(HISTORY_GROUPS, HISTORY_S * 1000, HISTORY_GROUP_MS) + """
-- A bump sets the version, and is also kept in the version's history (``qc:h:<hash>``): tick -> the store's time,
-- so that a bounded-staleness read can tell how long ago its entry was first invalidated
-- (docs/freshness.md, "Bounded staleness"). Bumps come in groups: a member '<first tick>:<time of
-- the first bump>' scored by the group's last tick; a bump within GROUP_MS of its group's first joins
-- it. The first group whose last tick is above a stamp holds the first bump after it, at or after
-- the group's time. At most HISTORY groups are kept; the trimmed ones leave the 'f' member at the
-- newest trimmed tick: a stamp below it cannot be answered (refused).
local function bump(vk, sv)
  local hk = 'qc:h:' .. string.sub(vk, 6)
  local last = redis.call('ZRANGE', hk, -1, -1)[1]
  if not last then
    -- No history (never kept, expired or evicted) for a version that existed: the bumps up to the
    -- version it replaces are unknown, so stamps below it are refused.
    local before = redis.call('GET', vk)
    if before then redis.call('ZADD', hk, before, 'f') end
  end
  redis.call('SET', vk, sv)
  local since = last and last ~= 'f' and tonumber(string.match(last, ':(%d+)$'))
  if since and now_ms - since < GROUP_MS then
    redis.call('ZADD', hk, sv, last)  -- the group now ends at this tick
  else
    redis.call('ZADD', hk, sv, sv .. ':' .. now_ms)
  end
  redis.call('PEXPIRE', hk, HISTORY_MS)
  local size = redis.call('ZCARD', hk)
  if size > 2 * HISTORY then
    local cut = redis.call('ZRANGE', hk, size - HISTORY - 1, size - HISTORY - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', hk, 0, size - HISTORY - 1)
    redis.call('ZADD', hk, cut[2], 'f')
  end
end
-- Phase 1: tick, every version (KEYS 2..1+n) to the tick, this writer's pending mark, announced.
local function phase1(token, ttl, names, channel)
  local sv = string.format('%d', tick())
  for i = 1, n do
    bump(KEYS[1 + i], sv)
    redis.call('ZADD', KEYS[1 + n + i], now_ms + ttl, token)
    redis.call('PEXPIRE', KEYS[1 + n + i], ttl * 2)
  end
  announce(channel, sv, names)
  return sv
end
-- Phase 2: tick, every version to the tick, this writer's mark removed. Where a fill asked for it
-- (qc:cl:<hash>, open_catchup), the rows this write changed are logged at the tick: logged[i], the
-- encoded rows of version i, or '?' when unknown (docs/maintenance.md, "Fills under writes").
local logged, CATCHUP_LOG = {}, """ + str(CATCHUP_LOG) + """
local function phase2(token)
  local sv = string.format('%d', tick())
  for i = 1, n do
    bump(KEYS[1 + i], sv)
    redis.call('ZREM', KEYS[1 + n + i], token)
    local lk = 'qc:cl:' .. string.sub(KEYS[1 + i], 6)
    if redis.call('EXISTS', lk) == 1 then
      local rows = logged[i]
      redis.call('ZADD', lk, sv, sv .. ':' .. ((rows and rows ~= '') and ('=' .. rows) or '?'))
      if redis.call('ZCARD', lk) > CATCHUP_LOG then redis.call('DEL', lk) end  -- its fills give up
    end
  end
  return sv
end
-- Phase 2 announced: the reply's {tick, message number, epoch, incarnation's birth, now} (ms).
local function announced(sv, names, channel)
  local msg = announce(channel, sv, names)
  local born = tonumber(redis.call('HGET', KEYS[1], 'born') or '0')
  return {sv, msg, epoch, string.format('%d', born), string.format('%d', now_ms)}
end
"""

_BEGIN = _PRELUDE + _PHASES_FN + """
return phase1(ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6])
"""

# KEYS: clock, n version keys, n pending keys. ARGV: new epoch, n, token, logical names joined by \\30.
_END = _PRELUDE + _PHASES_FN + """
return announced(phase2(ARGV[3]), ARGV[4], ARGV[5])
"""

# -- maintained answers (docs/maintenance.md) ---------------------------------------------------
# Whether no other writer touched a dependency since a baseline: no live pending mark but this
# writer's (``token``), and the version at the baseline's (at ``tick1`` where this writer marked it).
_UNCHANGED_FN = """
local function live_marks(pk)
  now()
  redis.call('ZREMRANGEBYSCORE', pk, '-inf', now_ms)
  return redis.call('ZRANGE', pk, 0, -1)
end
local function unchanged(vk, pk, seen, token, tick1)
  local ours = false
  for _, t in ipairs(live_marks(pk)) do
    if t ~= token then return false end
    ours = true
  end
  local v = redis.call('GET', vk)
  if not v then return false end
  if ours then return tonumber(v) == tonumber(tick1) end
  return tonumber(v) == tonumber(seen)
end
"""

# KEYS: clock, m entry keys, then per entry its c version keys and c pending keys. ARGV: new epoch,
# 0, m, the m counts c. Per entry: {stamp, sha1 of its stored state, versions} when it is fresh now
# and has a state; 0 when it is only stale or pending; 1 when it is gone.
_MAINTAINED_BASELINES = _PRELUDE + """
local m = tonumber(ARGV[3])
local out = {}
local j = 1 + m
for u = 1, m do
  local c = tonumber(ARGV[3 + u])
  local e = redis.call('HMGET', KEYS[1 + u], 'e', 's', 'h')
  local fresh = e[1] == epoch and e[3] and true or false
  local versions = {}
  for i = 1, c do
    local v = redis.call('GET', KEYS[j + i])
    versions[i] = v or '0'
    if not v then fresh = false end
    if fresh and tonumber(v) > tonumber(e[2]) then fresh = false end
    if fresh and pending_on(KEYS[j + c + i]) then fresh = false end
  end
  j = j + 2 * c
  if fresh then out[u] = {e[2], e[3], versions}
  elseif e[1] == epoch and e[3] then out[u] = 0
  else out[u] = 1 end
end
return out
"""

# KEYS: clock, n version keys, n pending keys, then t version keys and t pending keys of the checks.
# ARGV: new epoch, n, token, mark ttl ms, logical names, channel, m (checks), m counts (their keys,
# in order, among the t), t versions. Phase 1 and whether each check held just before it.
_BEGIN_CHECKED = _PRELUDE + _PHASES_FN + _UNCHANGED_FN + """
local m = tonumber(ARGV[7])
local t = #KEYS - 1 - 2 * n
t = t / 2
local ok = {}
local j = 0
for c = 1, m do
  local held = 1
  for _ = 1, tonumber(ARGV[7 + c]) do
    j = j + 1
    if not unchanged(KEYS[1 + 2 * n + j], KEYS[1 + 2 * n + t + j], ARGV[7 + m + j], ARGV[3], -1) then held = 0 end
  end
  ok[c] = held
end
return {phase1(ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]), ok}
"""

# KEYS: clock, n version keys, n pending keys, m entry keys, then t version keys and t pending keys
# of the updates' baselines. ARGV: new epoch, n, token, logical names, channel, tick1, m, m counts,
# then per update: sha1 of the stored state it read, new value and new state ('' and '': the stamp
# only); then t baseline versions; then per version key the rows the write changed ('': unknown).
# Phase 2, and each update stored at its tick when the entry still holds that state and no other
# writer touched a dependency since the baseline; per update the sha1 of the state now held ('h'),
# or 0 when not stored.
_END_MAINTAINED = _PRELUDE + _PHASES_FN + _UNCHANGED_FN + """
local m = tonumber(ARGV[7])
local t = (#KEYS - 1 - 2 * n - m) / 2
local base = 1 + 2 * n + m
for i = 1, n do logged[i] = ARGV[7 + 4 * m + t + i] end
local ok = {}
local j = 0
for u = 1, m do
  local ek = KEYS[1 + 2 * n + u]
  local e = redis.call('HMGET', ek, 'e', 'h')
  local held = (e[1] == epoch and e[2] and e[2] == ARGV[7 + m + 3 * u - 2]) and 1 or 0
  for _ = 1, tonumber(ARGV[7 + u]) do
    j = j + 1
    if not unchanged(KEYS[base + j], KEYS[base + t + j], ARGV[7 + 4 * m + j], ARGV[3], ARGV[6]) then held = 0 end
  end
  ok[u] = held
end
local sv = phase2(ARGV[3])
for u = 1, m do
  if ok[u] == 1 and ARGV[7 + m + 3 * u - 1] == '' then
    redis.call('HSET', KEYS[1 + 2 * n + u], 's', sv)  -- the answer did not change: a new stamp only
    ok[u] = ARGV[7 + m + 3 * u - 2]
  elseif ok[u] == 1 then
    local h = redis.sha1hex(ARGV[7 + m + 3 * u])
    redis.call('HSET', KEYS[1 + 2 * n + u], 's', sv, 'v', ARGV[7 + m + 3 * u - 1], 'm', ARGV[7 + m + 3 * u], 'h', h)
    ok[u] = h
  end
end
local reply = announced(sv, ARGV[4], ARGV[5])
reply[6] = ok
return reply
"""

# KEYS: a table's maintainer lease. ARGV: token. Compare-and-delete.
_RELEASE_MAINTAINER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: the registries of the entry's tables. ARGV: entry key, spec, the bound per table.
_REGISTER_MAINTAINED = """
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 or redis.call('HLEN', KEYS[i]) < tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[i], ARGV[1], ARGV[2])
  end
end
return 1
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


# KEYS: clock. ARGV: new epoch, 0, column, the table's field. The columns readers pin live in the
# clock's own hash, so that no eviction can forget them without starting a new incarnation (which
# readers detect: see querycache.plan.registered_in). The version comes from the clock's
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

# -- fills under writes (docs/maintenance.md) -------------------------------------------------
# KEYS: clock, n version keys. ARGV: new epoch, n, ttl ms. From now on (for ttl ms, renewed by each
# call) every phase 2 of these keys logs the rows it changed; the reply is the counter now, the
# stamp from which the logs are complete ('s': the tick the log started at).
_OPEN_CATCHUP = _PRELUDE + """
for i = 1, n do
  local lk = 'qc:cl:' .. string.sub(KEYS[1 + i], 6)
  if redis.call('EXISTS', lk) == 0 then redis.call('ZADD', lk, seq, 's') end
  redis.call('PEXPIRE', lk, tonumber(ARGV[3]))
end
return string.format('%d', seq)
"""

# KEYS: clock, n version keys, n pending keys. ARGV: new epoch, n, stamp. The counter now and, per
# key, the log members of the writes since the stamp; instead, why not: 'pending' (a write is under
# way), 'unlogged' (a key is gone, or was not logged since the stamp).
_CATCHUP = _PRELUDE + """
local stamp = tonumber(ARGV[3])
local out = {}
for i = 1, n do
  local v = redis.call('GET', KEYS[1 + i])
  if not v then return {string.format('%d', seq), 'unlogged'} end
  if pending_on(KEYS[1 + n + i]) then return {string.format('%d', seq), 'pending'} end
  out[i] = {}
  if tonumber(v) > stamp then
    local lk = 'qc:cl:' .. string.sub(KEYS[1 + i], 6)
    local since = redis.call('ZSCORE', lk, 's')
    if not since or tonumber(since) > stamp then return {string.format('%d', seq), 'unlogged'} end
    -- The last bump set the version: a log that does not end at it missed a write (one by a
    -- release that logs nothing, or by any path that does not).
    local last = redis.call('ZRANGE', lk, -1, -1, 'WITHSCORES')
    if not last[2] or tonumber(last[2]) ~= tonumber(v) then return {string.format('%d', seq), 'unlogged'} end
    out[i] = redis.call('ZRANGEBYSCORE', lk, '(' .. ARGV[3], '+inf')
  end
end
return {string.format('%d', seq), out}
"""


SCRIPTS = {"lookup": _LOOKUP, "fill": _FILL, "begin": _BEGIN, "end": _END, "stamp": _STAMP, "renew": _RENEW,
           "acked": _ACKED, "release": _RELEASE, "extend": _EXTEND, "register": _REGISTER,
           "begin_checked": _BEGIN_CHECKED, "end_maintained": _END_MAINTAINED, "mbaselines": _MAINTAINED_BASELINES,
           "mregister": _REGISTER_MAINTAINED, "release_maintainer": _RELEASE_MAINTAINER,
           "open_catchup": _OPEN_CATCHUP, "catchup": _CATCHUP}
"""The store's scripts by the name it runs them under."""


def scripts_for(server_major: int, history: tuple[int, int] | None) -> dict[str, str]:
    """The scripts for a server of this major version (7 and later: the lookup is refused, not
    run, when the server is out of memory), with another bump-history size when given."""
    found = dict(SCRIPTS, lookup=_oom_denied(_LOOKUP) if server_major >= 7 else _LOOKUP)
    if history is not None:
        found = {name: with_history(body, *history) for name, body in found.items()}
    return found
