"""The Redis store's scripts: the buckets of limits/claims.py in Lua, on Redis's clock.

Redis runs one script at a time, so everything a script does is atomic. Each script
reads the time once (`TIME`: Redis's clock, never a replica's) and works in whole
milliseconds, exactly as the memory store (limits/memory.py) does. Every script
takes the same arguments: ARGV[1] its JSON payload, ARGV[2] the keys' grace (ms
they outlive their last use, at least half of it: a TTL is refreshed once per half
grace, not on every write), ARGV[3] the retry hint for a full lease bucket.

The layout is the memory store's: a request or token window keeps one **slot per
millisecond** that admitted anything, holding that millisecond's sum, not an entry
per admission. Every admission of one script call has the same `now`, so a call
writes each bucket once, however many admissions it carries: under load (when the
store coalesces admissions into one call, limits/coalesce.py) Redis's work per
request falls with the batch. What must be per request lives in one key per
reservation. Bucket layout (`K` is a claim's key):

- count (requests) and window (tokens): sorted set `K:z` of slot milliseconds
  (score and member); hash `K:h` with each slot's sum (field `<ms>`), for a window
  each slot's unsettled estimates (`r<ms>`), and the bucket's totals: `_t`
  (counted), `_r` (of which unsettled), `_f` (the oldest slot's ms, `NEVER` when
  empty: until `_f + span` nothing ages out, and a look is one HMGET) and `_e` (when
  the TTLs were last set).
- lease (concurrency): sorted set `K`, reservation id -> expiry.
- period (spend): hash `K:<period id>` with `_t` and `_r`.
- reservation: string `<first claim's key>:r:<rid>` = `<ms>:<tokens>:<cost>`, its
  admission's millisecond and estimates, from admission until it is settled or
  voided. A settlement finds there which slot and which period to correct and by how
  much; an admission retried after a lost connection finds it there and is not
  counted twice; a settlement applied twice finds it gone the second time.

Every key has a TTL: a window's its span plus the grace (refreshed once per half
grace), a lease set its lease plus the grace, a period its end plus the grace, a
reservation the longest of its buckets' plus the grace. Nothing is left behind.

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
local floor, DAY, NEVER = math.floor, 86400000, 4503599627370496
local call, format = redis.call, string.format

-- An integer as Redis reads one: never `1e+12`, never `-0`.
local function int(n)
  return format('%d', n)
end

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
    return format('%04d-%02d-%02d', y, m, d), (days + 1) * DAY
  end
  local next_y, next_m = y, m + 1
  if next_m == 13 then next_y, next_m = y + 1, 1 end
  return format('%04d-%02d', y, m), day_number(next_y, next_m, 1) * DAY
end

-- A claim is {key, kind, limit, amount or source, span, per}. Its bucket, and a
-- period's end.
local function place(c, at)
  if c[2] == 'period' then
    local id, ends = period(c[6], at)
    return c[1] .. ':' .. id, ends
  end
  return c[1], 0
end

-- Drops the slots that aged out of a count or tokens window (`s` its state).
local function purge(s)
  local old = call('ZRANGEBYSCORE', s.z, '-inf', now - s.span)
  local total, reserved, window = 0, 0, s.kind == 'window'
  for i = 1, #old, 256 do
    local fields = {}
    for j = i, math.min(i + 255, #old) do
      fields[#fields + 1] = old[j]
      if window then fields[#fields + 1] = 'r' .. old[j] end
    end
    local values = call('HMGET', s.h, unpack(fields))
    local step = window and 2 or 1
    for k = 1, #fields, step do
      total = total + (tonumber(values[k]) or 0)
      if window then reserved = reserved + (tonumber(values[k + 1]) or 0) end
    end
    call('HDEL', s.h, unpack(fields))
  end
  call('ZREMRANGEBYSCORE', s.z, '-inf', now - s.span)
  local first = call('ZRANGE', s.z, 0, 0)
  s.used, s.reserved = s.used - total, s.reserved - reserved
  s.first = tonumber(first[1]) or NEVER
  s.dirty = true
end

-- A bucket as it stands, looked at once per call: {used, reserved, reset, ...}.
-- Admissions of the call add to it (`s.added`, `s.n`), and `flush` writes it.
local function look(c, bucket, ends)
  local kind, span = c[2], c[5]
  local s = {kind = kind, bucket = bucket, span = span, ends = ends, added = 0, n = 0}
  if kind == 'count' or kind == 'window' then
    s.h, s.z = bucket .. ':h', bucket .. ':z'
    local v = call('HMGET', s.h, '_t', '_r', '_f', '_e')
    s.used, s.reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    s.first, s.expires = tonumber(v[3]) or NEVER, tonumber(v[4]) or 0
    if s.first <= now - span then purge(s) end
    s.reset = (s.first < NEVER) and (s.first + span - now) or 0
  elseif kind == 'lease' then
    call('ZREMRANGEBYSCORE', bucket, '-inf', now)
    local held = call('ZCARD', bucket)
    local first = call('ZRANGE', bucket, 0, 0, 'WITHSCORES')
    s.used, s.reserved = held, held
    s.reset = (#first > 0) and (tonumber(first[2]) - now) or 0
  else
    local v = call('HMGET', bucket, '_t', '_r')
    s.used, s.reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    s.reset = ends - now
  end
  return s
end

-- Writes what a call changed in a bucket: this millisecond's slot, the totals, the TTLs.
local function flush(s)
  local kind = s.kind
  if kind == 'count' or kind == 'window' then
    local h = s.h
    if s.n > 0 then
      local slot = int(now)
      call('HINCRBY', h, slot, int(s.added))
      if kind == 'window' then call('HINCRBY', h, 'r' .. slot, int(s.added)) end
      call('ZADD', s.z, now, slot)
      if s.first == NEVER then s.first = now end
    elseif not s.dirty then
      return
    end
    if s.n > 0 and now - s.expires >= GRACE / 2 then
      call('PEXPIRE', s.z, s.span + GRACE)
      call('PEXPIRE', h, s.span + GRACE)
      s.expires = now
    end
    call('HSET', h, '_t', int(s.used), '_r', int(s.reserved), '_f', int(s.first),
      '_e', int(s.expires))
  elseif s.n == 0 then
    return
  elseif kind == 'lease' then
    call('PEXPIRE', s.bucket, s.span + GRACE)
  else
    call('HSET', s.bucket, '_t', int(s.used), '_r', int(s.reserved))
    call('PEXPIREAT', s.bucket, s.ends + GRACE)
  end
end
"""
)

ADMIT = (
    PRELUDE
    + r"""
-- ms until a claim that does not fit would (if nothing is settled meanwhile), and
-- whether it never will (it exceeds the limit on its own).
local function wait(c, amount, s)
  local kind, limit, span = c[2], c[3], c[5]
  if kind == 'lease' then
    return math.max(1, math.min(LEASE_RETRY, s.reset)), 0
  elseif kind == 'period' then
    return math.max(1, s.ends - now), (amount > limit) and 1 or 0
  end
  if amount > limit then return span, 1 end
  -- The oldest slots first, until enough has aged out; what this call admitted
  -- is in the slot of `now`, not written yet: it frees room last, in `span`.
  local over, i = s.used + amount - limit, 0
  while true do
    local slots = call('ZRANGE', s.z, i, i + 63)
    if #slots == 0 then return span, 0 end
    local values = call('HMGET', s.h, unpack(slots))
    for k = 1, #slots do
      over = over - (tonumber(values[k]) or 0)
      if over <= 0 then return math.max(1, tonumber(slots[k]) + span - now), 0 end
    end
    i = i + 64
  end
end

-- ARGV[1] is {plans, requests}: each plan a list of claims {key, kind, limit,
-- source, span, per}, sent once per call however many requests name it; each
-- request {rid, plan index (0-based), tokens, cost}, and a claim's amount is one
-- (source 0), the tokens (1) or the cost (2). Each result: {admitted, used per
-- claim, reset per claim, the period bucket of each spend claim, [refused claim
-- (0-based), retry ms, too large]}.
--
-- Every bucket is looked at once per call and written once per call: `now` does not
-- move within a script, so what a bucket holds after each admission of the call is
-- what it held before plus what the call's admissions before it added, kept in
-- `seen`. A call of one admission decides what it always did; a call of many
-- shares the looks and the writes.
local payload = cjson.decode(ARGV[1])
local plans = payload[1]
local seen, placed, lives = {}, {}, {}  -- bucket -> state; claim -> {bucket, ends}; plan -> ms
local results = {}
for i, request in ipairs(payload[2]) do
  local rid, claims, tokens, cost = request[1], plans[request[2] + 1], request[3], request[4]
  local used, resets, periods, states, amounts = {}, {}, {}, {}, {}
  local refused, retry, large = -1, 0, 0
  local life = lives[claims]
  for j, c in ipairs(claims) do
    local source, amount = c[4], 1
    if source == 1 then amount = tokens elseif source == 2 then amount = cost end
    amounts[j] = amount
    local where = placed[c]
    if not where then
      local bucket, ends = place(c, now)
      where = {bucket, ends}
      placed[c] = where
    end
    local bucket = where[1]
    local s = seen[bucket]
    if not s then
      s = look(c, bucket, where[2])
      seen[bucket] = s
    end
    states[j] = s
    used[j], resets[j] = s.used, s.reset
    if where[2] > 0 then periods[#periods + 1] = bucket end
    if refused < 0 and s.used + amount > c[3] then
      refused = j - 1
      retry, large = wait(c, amount, s)
    end
  end
  if not life then
    -- A reservation's record outlives every bucket it could still correct.
    life = 0
    for j, c in ipairs(claims) do
      local span = c[5]
      if c[2] == 'period' then span = placed[c][2] - now end
      if span > life then life = span end
    end
    life = life + GRACE
    lives[claims] = life
  end
  local record = claims[1][1] .. ':r:' .. rid
  if refused >= 0 then
    if call('EXISTS', record) == 1 then
      results[i] = {1, used, resets, periods}  -- admitted before: a retried call
    else
      results[i] = {0, used, resets, periods, refused, retry, large}
    end
  elseif not call('SET', record, format('%d:%d:%d', now, tokens, cost), 'PX', life, 'NX') then
    results[i] = {1, used, resets, periods}  -- admitted before: a retried call
  else
    for j, c in ipairs(claims) do
      local s, amount = states[j], amounts[j]
      if s.kind == 'lease' then call('ZADD', s.bucket, now + s.span, rid) end
      if s.kind ~= 'count' and s.kind ~= 'lease' then s.reserved = s.reserved + amount end
      s.used, s.added, s.n = s.used + amount, s.added + amount, s.n + 1
      used[j] = s.used
      -- The first entry of an empty bucket resets a span from now; otherwise the
      -- oldest entry still leaves first. A period's end does not move.
      if s.kind ~= 'period' and s.reset == 0 then s.reset = s.span end
      resets[j] = s.reset
    end
    results[i] = {1, used, resets, periods}
  end
end
for _, s in pairs(seen) do flush(s) end
return cjson.encode({now, results})
"""
)

SETTLE = (
    PRELUDE
    + r"""
-- ARGV[1] is {plans, requests}: each plan a list of claims {key, kind, span, per};
-- each request {rid, plan index (0-based), tokens, cost}: settle the reservation to
-- those amounts, or, with tokens < 0, void it (as if never admitted). The
-- reservation's record says when it was admitted and what it reserved; it is
-- deleted here, so twice is once, and a reservation settled already, voided, or
-- never admitted changes nothing but its leases (released either way).
--
-- A slot that aged out of its window is left alone (the next look drops it with
-- what it held). Corrections to one bucket are summed, and written once per call.
local payload = cjson.decode(ARGV[1])
local plans = payload[1]
local deltas = {}  -- hash -> {kind, total, reserved, slots = {ms -> {sum, reserved}}, ends}

local function correct(h, kind, at, total, reserved, ends)
  local d = deltas[h]
  if not d then
    d = {kind = kind, total = 0, reserved = 0, slots = {}, ends = ends}
    deltas[h] = d
  end
  d.total, d.reserved = d.total + total, d.reserved + reserved
  if at then
    local slot = d.slots[at]
    if not slot then
      slot = {0, 0}
      d.slots[at] = slot
    end
    slot[1], slot[2] = slot[1] + total, slot[2] + reserved
  end
end

for _, request in ipairs(payload[2]) do
  local rid, claims, tokens, cost = request[1], plans[request[2] + 1], request[3], request[4]
  local record = call('GETDEL', claims[1][1] .. ':r:' .. rid)
  local void = tokens < 0
  local at, reserved_tokens, reserved_cost
  if record then
    local a, t, k = string.match(record, '^(%d+):(%d+):(%d+)$')
    at, reserved_tokens, reserved_cost = tonumber(a), tonumber(t), tonumber(k)
  end
  for _, c in ipairs(claims) do
    local key, kind, span = c[1], c[2], c[3]
    if kind == 'lease' then
      call('ZREM', key, rid)
    elseif at then
      if kind == 'period' then
        local id, ends = period(c[4], at)
        if now < ends + GRACE then
          local spent = void and 0 or cost
          correct(key .. ':' .. id, kind, nil, spent - reserved_cost, 0 - reserved_cost, ends)
        end
      elseif at > now - span then
        if kind == 'window' then
          local counted = void and 0 or tokens
          correct(key .. ':h', kind, at, counted - reserved_tokens, 0 - reserved_tokens)
        elseif void then
          correct(key .. ':h', kind, at, -1, 0)
        end
      end
    end
  end
end

for h, d in pairs(deltas) do
  for at, slot in pairs(d.slots) do
    call('HINCRBY', h, int(at), int(slot[1]))
    if d.kind == 'window' then call('HINCRBY', h, 'r' .. int(at), int(slot[2])) end
  end
  call('HINCRBY', h, '_t', int(d.total))
  if d.reserved ~= 0 then call('HINCRBY', h, '_r', int(d.reserved)) end
  if d.ends then call('PEXPIREAT', h, d.ends + GRACE) end
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
  local expiry = tonumber(call('ZSCORE', key, rid))
  if expiry and expiry > now then
    call('ZADD', key, 'XX', now + span, rid)
    if call('PTTL', key) < span + GRACE then call('PEXPIRE', key, span + GRACE) end
    held[i] = 1
  else
    if expiry then call('ZREM', key, rid) end
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
  local bucket, ends = place(c, now)
  local s = look(c, bucket, ends)
  flush(s)
  states[j] = {bucket, s.used, s.reserved, s.reset}
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
