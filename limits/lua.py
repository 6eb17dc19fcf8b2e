"""The Redis store's scripts: the buckets of limits/claims.py in Lua, on Redis's clock.

Redis runs one script at a time, so everything a script does is atomic. Each script
reads the time once (`TIME`: Redis's clock, never a replica's) and works in whole
milliseconds, exactly as the memory store (limits/memory.py) does. Every script
takes the same arguments: ARGV[1] its JSON payload, ARGV[2] the keys' grace (ms
they outlive their last use), ARGV[3] the retry hint for a full lease bucket.

Bucket layout (`K` is a claim's key):

- count (requests): sorted set `K`, reservation id -> admission time.
- window (tokens): sorted set `K:z`, id -> admission time; hash `K:h` with the
  totals `_t` (counted) and `_r` (of which unsettled) and id -> charge. A charge
  not yet settled is stored as `-(estimate + 1)` (so one field says both what it
  counts and that it is an estimate); a settled one as the actual amount (>= 0).
- lease (concurrency): sorted set `K`, id -> expiry.
- period (spend): hash `K:<period id>` with `_t`, `_r` and id -> `-(estimate + 1)`
  for the unsettled only (a settled one only lives on in `_t`, so the hash stays
  as small as the reservations in flight).

Every key gets a TTL each time it is written: a window's its span plus the grace,
a lease set its lease plus the grace, a period's its end plus the grace. Nothing is
ever left behind.

A script takes its keys from its payload rather than KEYS: one admission touches
every level's buckets, and a batch of admissions many levels', so this store needs
one Redis (a primary, with replicas or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

from common.redis_client import LUA_NOW_MS

PRELUDE = (
    LUA_NOW_MS
    + r"""
local GRACE = tonumber(ARGV[2])
local LEASE_RETRY = tonumber(ARGV[3])
local floor, DAY = math.floor, 86400000

-- (year, month, day) of a day number (days since 1970-01-01), and back: Howard
-- Hinnant's civil calendar algorithms (proleptic Gregorian, UTC).
local function civil(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function day_number(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end

-- The UTC day or month holding `at`: its id and its end (ms, exclusive).
local function period(per, at)
  local days = floor(at / DAY)
  local y, m, d = civil(days)
  if per == 'day' then
    return string.format('%04d-%02d-%02d', y, m, d), (days + 1) * DAY
  end
  local next_y, next_m = y, m + 1
  if next_m == 13 then next_y, next_m = y + 1, 1 end
  return string.format('%04d-%02d', y, m), day_number(next_y, next_m, 1) * DAY
end

-- A claim is {key, kind, limit, amount, span, per}. Its bucket, and a period's end.
local function place(c)
  if c[2] == 'period' then
    local id, ends = period(c[6], now)
    return c[1] .. ':' .. id, ends
  end
  return c[1], 0
end

local function charge(v)
  if v < 0 then return -v - 1 end
  return v
end

local function oldest_age(z, span)
  local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  return tonumber(first[2]) + span - now
end

-- Drops what has aged out of a token window, with its charges and totals.
local function purge_window(key, span)
  local z, h = key .. ':z', key .. ':h'
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - span)
  if #old == 0 then return end
  local total, reserved = 0, 0
  for i = 1, #old, 512 do
    local chunk = {}
    for j = i, math.min(i + 511, #old) do chunk[#chunk + 1] = old[j] end
    local values = redis.call('HMGET', h, unpack(chunk))
    for j = 1, #chunk do
      local v = tonumber(values[j])
      if v then
        total = total + charge(v)
        if v < 0 then reserved = reserved + charge(v) end
      end
    end
    redis.call('HDEL', h, unpack(chunk))
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - span)
  redis.call('HINCRBY', h, '_t', 0 - total)
  redis.call('HINCRBY', h, '_r', 0 - reserved)
end

-- A bucket as it stands: used, reserved, ms until it next frees room.
local function look(kind, bucket, span, ends)
  if kind == 'count' then
    redis.call('ZREMRANGEBYSCORE', bucket, '-inf', now - span)
    return redis.call('ZCARD', bucket), 0, oldest_age(bucket, span)
  elseif kind == 'window' then
    purge_window(bucket, span)
    local totals = redis.call('HMGET', bucket .. ':h', '_t', '_r')
    return tonumber(totals[1]) or 0, tonumber(totals[2]) or 0, oldest_age(bucket .. ':z', span)
  elseif kind == 'lease' then
    redis.call('ZREMRANGEBYSCORE', bucket, '-inf', now)
    local held = redis.call('ZCARD', bucket)
    local first = redis.call('ZRANGE', bucket, 0, 0, 'WITHSCORES')
    return held, held, (#first > 0) and (tonumber(first[2]) - now) or 0
  end
  local totals = redis.call('HMGET', bucket, '_t', '_r')
  return tonumber(totals[1]) or 0, tonumber(totals[2]) or 0, ends - now
end
"""
)

ADMIT = (
    PRELUDE
    + r"""
-- ms until a claim that does not fit would (if nothing is settled meanwhile), and
-- whether it never will (it exceeds the limit on its own).
local function wait(c, amount, bucket, used, reset, ends)
  local kind, limit, span = c[2], c[3], c[5]
  if kind == 'count' then
    local e = redis.call('ZRANGE', bucket, used - limit, used - limit, 'WITHSCORES')
    return math.max(1, tonumber(e[2]) + span - now), 0
  elseif kind == 'lease' then
    return math.max(1, math.min(LEASE_RETRY, reset)), 0
  elseif kind == 'period' then
    return math.max(1, ends - now), (amount > limit) and 1 or 0
  end
  if amount > limit then return span, 1 end
  local over, z, h, i = used + amount - limit, bucket .. ':z', bucket .. ':h', 0
  while true do
    local entries = redis.call('ZRANGE', z, i, i + 63, 'WITHSCORES')
    if #entries == 0 then return span, 0 end
    local ids = {}
    for k = 1, #entries, 2 do ids[#ids + 1] = entries[k] end
    local values = redis.call('HMGET', h, unpack(ids))
    for k = 1, #ids do
      over = over - charge(tonumber(values[k]) or 0)
      if over <= 0 then return math.max(1, tonumber(entries[2 * k]) + span - now), 0 end
    end
    i = i + 64
  end
end

local function add(c, amount, bucket, rid, ends)
  local kind, span = c[2], c[5]
  if kind == 'count' then
    redis.call('ZADD', bucket, now, rid)
    redis.call('PEXPIRE', bucket, span + GRACE)
  elseif kind == 'window' then
    local z, h = bucket .. ':z', bucket .. ':h'
    redis.call('ZADD', z, now, rid)
    redis.call('HSET', h, rid, -(amount + 1))
    redis.call('HINCRBY', h, '_t', amount)
    redis.call('HINCRBY', h, '_r', amount)
    redis.call('PEXPIRE', z, span + GRACE)
    redis.call('PEXPIRE', h, span + GRACE)
  elseif kind == 'lease' then
    redis.call('ZADD', bucket, now + span, rid)
    if redis.call('PTTL', bucket) < span + GRACE then
      redis.call('PEXPIRE', bucket, span + GRACE)
    end
  else
    redis.call('HSET', bucket, rid, -(amount + 1))
    redis.call('HINCRBY', bucket, '_t', amount)
    redis.call('HINCRBY', bucket, '_r', amount)
    redis.call('PEXPIREAT', bucket, ends + GRACE)
  end
end

-- Was this reservation admitted already (a call retried after a lost connection)?
local function admitted_before(c, bucket, rid)
  local kind = c[2]
  if kind == 'period' then return redis.call('HEXISTS', bucket, rid) == 1 end
  if kind == 'window' then bucket = bucket .. ':z' end
  return redis.call('ZSCORE', bucket, rid) ~= false
end

-- ARGV[1] is {plans, requests}: each plan a list of claims {key, kind, limit,
-- source, span, per}, sent once per call however many requests name it; each
-- request {rid, plan index (0-based), tokens, cost}, and a claim's amount is one
-- (source 0), the tokens (1) or the cost (2). Each result: {admitted, used per
-- claim, reset per claim, the period bucket of each spend claim, [refused claim
-- (0-based), retry ms, too large]}.
--
-- Every bucket is looked at once per call (pruned, its totals read): `now` does not
-- move within a script, so what a bucket holds after each admission of the call is
-- what it held before plus what that admission added, kept in `seen`. A call of
-- one admission does what it always did; a call of many shares the looks.
local payload = cjson.decode(ARGV[1])
local plans = payload[1]
local seen, placed = {}, {}  -- bucket -> {used, reset}; claim -> {bucket, ends}
local results = {}
for i, request in ipairs(payload[2]) do
  local rid, claims, tokens, cost = request[1], plans[request[2] + 1], request[3], request[4]
  local used, resets, periods, places, amounts = {}, {}, {}, {}, {}
  local refused, retry, large = -1, 0, 0
  for j, c in ipairs(claims) do
    local source, amount = c[4], 1
    if source == 1 then amount = tokens elseif source == 2 then amount = cost end
    amounts[j] = amount
    local where = placed[c]
    if not where then
      local bucket, ends = place(c)
      where = {bucket, ends}
      placed[c] = where
    end
    local bucket, ends = where[1], where[2]
    local state = seen[bucket]
    if not state then
      local u, _, reset = look(c[2], bucket, c[5], ends)
      state = {u, reset}
      seen[bucket] = state
    end
    local u, reset = state[1], state[2]
    places[j] = where
    used[j], resets[j] = u, reset
    if ends > 0 then periods[#periods + 1] = bucket end
    if refused < 0 and u + amount > c[3] then
      refused = j - 1
      retry, large = wait(c, amount, bucket, u, reset, ends)
    end
  end
  if admitted_before(claims[1], places[1][1], rid) then
    results[i] = {1, used, resets, periods}
  elseif refused >= 0 then
    results[i] = {0, used, resets, periods, refused, retry, large}
  else
    for j, c in ipairs(claims) do
      local kind, amount, span = c[2], amounts[j], c[5]
      local bucket = places[j][1]
      add(c, amount, bucket, rid, places[j][2])
      used[j] = used[j] + amount
      -- The first entry of an empty bucket resets a span from now; otherwise the
      -- oldest entry still leaves first. A period's end does not move.
      if kind ~= 'period' and resets[j] == 0 then resets[j] = span end
      local state = seen[bucket]
      state[1], state[2] = used[j], resets[j]
    end
    results[i] = {1, used, resets, periods}
  end
end
return cjson.encode({now, results})
"""
)

SETTLE = (
    PRELUDE
    + r"""
-- Settles (amount >= 0) or voids (amount < 0: as if never admitted) one claim of a
-- reservation. Twice is once: a settled charge, or a reservation gone, is left alone.
local function settle(kind, bucket, rid, amount)
  if kind == 'lease' or kind == 'count' then
    if kind == 'lease' or amount < 0 then redis.call('ZREM', bucket, rid) end
    return
  end
  local h = bucket
  if kind == 'window' then h = bucket .. ':h' end
  local v = tonumber(redis.call('HGET', h, rid))
  if not v then return end
  if amount < 0 then
    if kind == 'window' then redis.call('ZREM', bucket .. ':z', rid) end
    redis.call('HDEL', h, rid)
    redis.call('HINCRBY', h, '_t', 0 - charge(v))
    if v < 0 then redis.call('HINCRBY', h, '_r', 0 - charge(v)) end
    return
  end
  if v >= 0 then return end
  local estimate = charge(v)
  if kind == 'window' then redis.call('HSET', h, rid, amount) else redis.call('HDEL', h, rid) end
  redis.call('HINCRBY', h, '_t', amount - estimate)
  redis.call('HINCRBY', h, '_r', 0 - estimate)
end

-- A claim here is {key, kind, amount, per}: a period's key is its bucket, or, when
-- `per` is set (a void of an admission whose answer was lost), the current period.
for _, request in ipairs(cjson.decode(ARGV[1])) do
  local rid = request[1]
  for _, c in ipairs(request[2]) do
    local bucket = c[1]
    if c[2] == 'period' and c[4] ~= '' then bucket = c[1] .. ':' .. period(c[4], now) end
    settle(c[2], bucket, rid, c[3])
  end
end
return now
"""
)

RENEW = (
    PRELUDE
    + r"""
-- {rid, key, span} each: extend a held lease; 0 for one no longer held.
local held = {}
for i, lease in ipairs(cjson.decode(ARGV[1])) do
  local rid, key, span = lease[1], lease[2], lease[3]
  local expiry = tonumber(redis.call('ZSCORE', key, rid))
  if expiry and expiry > now then
    redis.call('ZADD', key, 'XX', now + span, rid)
    if redis.call('PTTL', key) < span + GRACE then redis.call('PEXPIRE', key, span + GRACE) end
    held[i] = 1
  else
    if expiry then redis.call('ZREM', key, rid) end
    held[i] = 0
  end
end
return cjson.encode(held)
"""
)

USAGE = (
    PRELUDE
    + r"""
local states = {}
for j, c in ipairs(cjson.decode(ARGV[1])) do
  local bucket, ends = place(c)
  local used, reserved, reset = look(c[2], bucket, c[5], ends)
  states[j] = {bucket, used, reserved, reset}
end
return cjson.encode({now, states})
"""
)

#: For tests: the period (id, end) of each of ARGV[1]'s {per, at_ms}.
PERIODS = (
    PRELUDE
    + r"""
local out = {}
for i, q in ipairs(cjson.decode(ARGV[1])) do
  local id, ends = period(q[1], q[2])
  out[i] = {id, ends}
end
return cjson.encode(out)
"""
)
