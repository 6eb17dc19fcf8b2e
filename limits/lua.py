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

- count (requests), window (tokens) and lease (concurrency): sorted set `K:z` of
  slot milliseconds (score and member); hash `K:h` with each slot's sum (field
  `<ms>`), for a window each slot's unsettled estimates (`r<ms>`), and the bucket's
  totals: `_t` (counted), `_r` (of which unsettled), `_f` (the first slot, `NEVER`
  when empty: nothing leaves before it does, so a look is one HMGET until then) and
  `_e` (when the TTLs were last set). A requests or tokens slot is the millisecond
  of its admissions, and leaves the window `span` later; a lease slot is the
  millisecond its leases expire, and leaves then. A requests slot
  that a void empties is removed; a lease slot that releases empty stays until its
  expiry passes (the retry hint and the admin view skip it).
- period (spend): hash `K:<period id>` with `_t` and `_r`.
- reservation: string `<first claim's key>:r:<rid>` = `<ms>:<tokens>:<cost>:<lease
  expiry>`, its admission's millisecond, its estimates and when its leases expire
  (0 without leases), from admission until it is settled or voided. A settlement
  finds there which slots and which period to correct and by how much; a renewal
  which lease slots to move; an admission retried after a lost connection finds it
  there and is not counted twice; a settlement applied twice finds it gone.

Every key has a TTL: a window's or a lease bucket's its span plus the grace
(refreshed once per half grace, and by every renewal), a period its end plus the grace, a
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

-- Drops the slots that left a bucket (`s` its state): aged out of a window, or
-- expired leases.
local function purge(s)
  local edge = now - s.age
  local old = call('ZRANGEBYSCORE', s.z, '-inf', edge)
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
  call('ZREMRANGEBYSCORE', s.z, '-inf', edge)
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
  if kind == 'period' then
    local v = call('HMGET', bucket, '_t', '_r')
    s.used, s.reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    s.reset = ends - now
    return s
  end
  -- A slot leaves `age` after its millisecond: what it admitted ages out of the
  -- window; a lease slot is its expiry. This call's admissions go to slot `slot`.
  s.h, s.z, s.age, s.slot = bucket .. ':h', bucket .. ':z', span, now
  if kind == 'lease' then s.age, s.slot = 0, now + span end
  -- The totals, and what this call's slot holds already (a call earlier in the same
  -- millisecond): the write is then one HSET of absolute values.
  local v = call('HMGET', s.h, '_t', '_r', '_f', '_e', int(s.slot), 'r' .. int(s.slot))
  s.used, s.reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  s.first, s.expires = tonumber(v[3]) or NEVER, tonumber(v[4]) or 0
  s.in_slot, s.in_slot_reserved = tonumber(v[5]), tonumber(v[6]) or 0
  if s.first <= now - s.age then purge(s) end
  if kind == 'lease' then s.reserved = s.used end
  s.reset = (s.first < NEVER) and (s.first + s.age - now) or 0
  return s
end

-- Writes what a call changed in a bucket: this millisecond's slot, the totals, the TTLs.
local function flush(s)
  local kind = s.kind
  if kind ~= 'period' then
    local h = s.h
    local slot = int(s.slot)
    if s.n > 0 then
      if not s.in_slot then call('ZADD', s.z, s.slot, slot) end
      -- An empty bucket's slot set was deleted with its last slot: this made it anew.
      if s.first == NEVER then s.first, s.expires = s.slot, 0 end
    elseif not s.dirty then
      return
    end
    local refresh = s.n > 0 and now - s.expires >= GRACE / 2
    if refresh then s.expires = now end
    local fields = {'_t', int(s.used), '_r', int(s.reserved), '_f', int(s.first),
      '_e', int(s.expires)}
    if s.n > 0 then
      fields[9], fields[10] = slot, int((s.in_slot or 0) + s.added)
      if kind == 'window' then
        fields[11], fields[12] = 'r' .. slot, int(s.in_slot_reserved + s.added)
      end
    end
    call('HSET', h, unpack(fields))
    if refresh then  -- after the writes: a key made by them has a TTL too
      call('PEXPIRE', s.z, s.span + GRACE)
      call('PEXPIRE', h, s.span + GRACE)
    end
  elseif s.n > 0 then
    call('HSET', s.bucket, '_t', int(s.used), '_r', int(s.reserved))
    call('PEXPIREAT', s.bucket, s.ends + GRACE)
  end
end

-- A reservation's record: {admitted at, tokens, cost, lease expiry}, or nothing.
local function record_of(value)
  if not value then return nil end
  local a, t, k, e = string.match(value, '^(%d+):(%d+):(%d+):(%d+)$')
  return {tonumber(a), tonumber(t), tonumber(k), tonumber(e)}
end

-- Adds `delta` to slot `at` of a requests or lease bucket. A requests slot left
-- empty (a void) is removed, and true returned; a lease slot left empty stays until
-- its expiry passes (a release is then one call per bucket; `first_held` skips it).
local function move(h, z, at, delta, keep)
  local slot = int(at)
  local left = call('HINCRBY', h, slot, int(delta))
  if left == delta and delta > 0 then call('ZADD', z, at, slot) end
  if left > 0 or keep then return false end
  call('HDEL', h, slot)
  call('ZREM', z, slot)
  return true
end

-- A bucket's slots from the first, 64 at a time: the ms of the first slot whose sum
-- `stop` accepts (it is handed each sum in turn), or nil.
local function scan(s, stop)
  local i = 0
  while true do
    local slots = call('ZRANGE', s.z, i, i + 63)
    if #slots == 0 then return nil end
    local values = call('HMGET', s.h, unpack(slots))
    for k = 1, #slots do
      if stop(tonumber(values[k]) or 0) then return tonumber(slots[k]) end
    end
    i = i + 64
  end
end

-- The first lease slot that holds a lease (released ones leave empty slots until
-- they expire): ms until it expires, or 0 when none does.
local function first_held(s)
  local at = scan(s, function(sum) return sum > 0 end)
  return at and at - now or 0
end

-- After slots were removed: the bucket's first slot again.
local function refirst(h, z)
  local first = call('ZRANGE', z, 0, 0)
  call('HSET', h, '_f', first[1] or int(NEVER))
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
    return math.max(1, math.min(LEASE_RETRY, first_held(s))), 0
  elseif kind == 'period' then
    return math.max(1, s.ends - now), (amount > limit) and 1 or 0
  end
  if amount > limit then return span, 1 end
  -- The oldest slots first, until enough has aged out; what this call admitted
  -- is in the slot of `now`, not written yet: it frees room last, in `span`.
  local over = s.used + amount - limit
  local at = scan(s, function(sum)
    over = over - sum
    return over <= 0
  end)
  if not at then return span, 0 end
  return math.max(1, at + span - now), 0
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
local expiries = {}  -- plan -> its leases' expiry (0 without)
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
    life, expiries[claims] = 0, 0
    for j, c in ipairs(claims) do
      local span = c[5]
      if c[2] == 'period' then span = placed[c][2] - now end
      if c[2] == 'lease' then expiries[claims] = now + span end
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
  elseif not call('SET', record, format('%d:%d:%d:%d', now, tokens, cost, expiries[claims]),
                  'PX', life, 'NX') then
    results[i] = {1, used, resets, periods}  -- admitted before: a retried call
  else
    for j, c in ipairs(claims) do
      local s, amount = states[j], amounts[j]
      if s.kind ~= 'count' then s.reserved = s.reserved + amount end
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
-- reservation's record says when it was admitted, what it reserved and when its
-- leases expire; it is deleted here, so twice is once, and a reservation settled
-- already, voided, or never admitted changes nothing.
--
-- A slot that left its bucket is left alone (the next look drops it with what it
-- held). Corrections to one bucket are summed, and written once per call.
local payload = cjson.decode(ARGV[1])
local plans = payload[1]
local deltas = {}  -- key -> {kind, total, reserved, slots = {ms -> {sum, reserved}}, ends}

local function correct(key, kind, at, total, reserved, ends)
  local d = deltas[key]
  if not d then
    d = {kind = kind, total = 0, reserved = 0, slots = {}, ends = ends}
    deltas[key] = d
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
  local r = record_of(call('GETDEL', claims[1][1] .. ':r:' .. rid))
  if r then
    local at, void = r[1], tokens < 0
    for _, c in ipairs(claims) do
      local key, kind, span = c[1], c[2], c[3]
      if kind == 'lease' then
        if r[4] > now then correct(key, kind, r[4], -1, -1) end
      elseif kind == 'period' then
        local id, ends = period(c[4], at)
        if now < ends + GRACE then
          local spent = void and 0 or cost
          correct(key .. ':' .. id, kind, nil, spent - r[3], 0 - r[3], ends)
        end
      elseif at > now - span then
        if kind == 'window' then
          local counted = void and 0 or tokens
          correct(key, kind, at, counted - r[2], 0 - r[2])
        elseif void then
          correct(key, kind, at, -1, 0)
        end
      end
    end
  end
end

for key, d in pairs(deltas) do
  local kind, h, z = d.kind, key, nil
  if kind ~= 'period' then h, z = key .. ':h', key .. ':z' end
  if kind == 'window' then
    -- One read and one write: the totals and every slot corrected (each still in
    -- the window, so in the hash).
    local fields, adds = {'_t', '_r'}, {d.total, d.reserved}
    for at, slot in pairs(d.slots) do
      fields[#fields + 1], adds[#adds + 1] = int(at), slot[1]
      fields[#fields + 1], adds[#adds + 1] = 'r' .. int(at), slot[2]
    end
    local values, pairs_ = call('HMGET', h, unpack(fields)), {}
    for i = 1, #fields do
      pairs_[2 * i - 1], pairs_[2 * i] = fields[i], int((tonumber(values[i]) or 0) + adds[i])
    end
    call('HSET', h, unpack(pairs_))
  else
    local removed = false
    for at, slot in pairs(d.slots) do
      if move(h, z, at, slot[1], kind == 'lease') then removed = true end
    end
    call('HINCRBY', h, '_t', int(d.total))
    -- A lease bucket's `_r` is its `_t` (a look sets it): not written here.
    if kind == 'period' and d.reserved ~= 0 then call('HINCRBY', h, '_r', int(d.reserved)) end
    if removed then refirst(h, z) end
    if d.ends then call('PEXPIREAT', h, d.ends + GRACE) end
  end
end
return now
"""
)

RENEW = (
    PRELUDE
    + r"""
-- {rid, the plan's first claim key, its lease claims' keys, lease span} each:
-- extend a held reservation's leases (move them to the slot of their new expiry);
-- 0 for one no longer held (expired, settled, or never admitted).
local held, buckets = {}, {}  -- key -> {span, slots = {ms -> delta}}
for i, lease in ipairs(cjson.decode(ARGV[1])) do
  local rid, keys, span = lease[1], lease[3], lease[4]
  local record = lease[2] .. ':r:' .. rid
  local r = record_of(call('GET', record))
  if r and r[4] > now then
    local renewed = now + span
    for _, key in ipairs(keys) do
      local b = buckets[key]
      if not b then
        b = {span = span, slots = {}}
        buckets[key] = b
      end
      b.slots[r[4]] = (b.slots[r[4]] or 0) - 1
      b.slots[renewed] = (b.slots[renewed] or 0) + 1
    end
    call('SET', record, format('%d:%d:%d:%d', r[1], r[2], r[3], renewed), 'KEEPTTL')
    if call('PTTL', record) < span + GRACE then call('PEXPIRE', record, span + GRACE) end
    held[i] = 1
  else
    held[i] = 0
  end
end
for key, b in pairs(buckets) do
  local h, z = key .. ':h', key .. ':z'
  for at, delta in pairs(b.slots) do
    if delta ~= 0 then move(h, z, at, delta, true) end
  end
  call('HSET', h, '_e', int(now))
  call('PEXPIRE', h, b.span + GRACE)
  call('PEXPIRE', z, b.span + GRACE)
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
  if s.kind == 'lease' then s.reset = first_held(s) end
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
