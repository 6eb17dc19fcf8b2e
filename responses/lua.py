"""The Redis response store's scripts: quotas and LRU eviction in one atomic step.

Redis runs one script at a time, so a put's planning (which of the owner's own
records must go), its check against the store's total and its writes happen as one
step, exactly as the memory store (responses/memory.py) does them in one call. Every
script takes ARGV[1], the key prefix `P`; the rest is each script's own.

Key layout (`T` a tenant id, `K` a key's owner name, `id` a response id):

- `P r:<id>`: hash, the record: `t` tenant, `k` key, `s` the Response JSON (output
  emptied), `i` the conversation items JSON, `n` input item count, `p` previous
  response id (empty for none), `d` chain depth, `b` chain bytes. Expires with the
  record's TTL (`PEXPIRE`), so Redis drops the data by itself.
- `P idx`: hash, id -> `size<TAB>T<TAB>K` for every record counted: the accounting,
  kept apart from the data so an expired record can still be uncounted.
- `P exp`: sorted set, id -> expiry (ms, Redis's clock): each put first uncounts up
  to `PURGE_BATCH` expired records, oldest first.
- `P t:<T>` and `P k:<T>:<K>`: sorted sets, id -> last use (a tick from `P tick`, a
  counter: uses are totally ordered across replicas, unlike clocks): the tenant's and
  the key's LRU orders.
- `P bytes`: hash, `all`, `t:<T>` and `k:<T>:<K>` -> the bytes counted; entries are
  `HLEN idx` and `ZCARD` of the LRU sets.
- `P x:<T>:<K>`: hash, the key's item index: item id -> `id<TAB>start<TAB>length`,
  the record holding the item and where its JSON is in the record's `i` (0-based
  start). An id in several records points at the last one put.
- `P xs`: hash, id -> the JSON array of the item ids the record put in its key's
  index, so forgetting the record (expired ones too: this outlives `r:<id>`)
  removes the entries that still point at it.

The index entries are counted in the record's size (responses/store.py
`INDEX_ENTRY_BYTES`), so the key's and tenant's quotas bound the index too.

Every key has a TTL: a record's is its own; every other key is given the record TTL
plus `GRACE_MS` at each put that writes it, so it outlives every record it counts,
and a store nobody writes to empties itself. Like limits/lua.py, scripts name their
keys in ARGV, so this needs one Redis (a primary), not Redis Cluster; and a Redis
that evicts keys under memory pressure (`maxmemory-policy` other than `noeviction`)
would break the accounting: docs/responses.md says so.
"""

from __future__ import annotations

from common.redis_client import LUA_NOW_MS

#: How long the bookkeeping keys outlive the last record put (ms).
GRACE_MS = 60_000
#: Expired records a put uncounts at most (bounds one script's time after a long
#: idle period; the rest go with the next puts).
PURGE_BATCH = 1000

PRELUDE = (
    LUA_NOW_MS
    + r"""
local P = ARGV[1]
local IDX, EXP, BYTES, TICK = P .. 'idx', P .. 'exp', P .. 'bytes', P .. 'tick'
local XS = P .. 'xs'

local function rkey(id) return P .. 'r:' .. id end
local function tkey(t) return P .. 't:' .. t end
local function kkey(t, k) return P .. 'k:' .. t .. ':' .. k end
local function xkey(t, k) return P .. 'x:' .. t .. ':' .. k end

-- An idx value: size, tenant, key.
local function split(v)
  local a = string.find(v, '\t', 1, true)
  local b = string.find(v, '\t', a + 1, true)
  return tonumber(string.sub(v, 1, a - 1)), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end

-- Removes a record and uncounts it everywhere; false if it was not counted.
local function forget(id)
  local v = redis.call('HGET', IDX, id)
  redis.call('DEL', rkey(id))
  if not v then return false end
  local size, t, k = split(v)
  redis.call('HDEL', IDX, id)
  local xs = redis.call('HGET', XS, id)
  if xs then
    local X, mine = xkey(t, k), id .. '\t'
    for _, item in ipairs(cjson.decode(xs)) do
      local at = redis.call('HGET', X, item)
      if at and string.sub(at, 1, #mine) == mine then redis.call('HDEL', X, item) end
    end
    redis.call('HDEL', XS, id)
  end
  redis.call('ZREM', EXP, id)
  redis.call('ZREM', tkey(t), id)
  redis.call('ZREM', kkey(t, k), id)
  for _, field in ipairs({'all', 't:' .. t, 'k:' .. t .. ':' .. k}) do
    if redis.call('HINCRBY', BYTES, field, 0 - size) <= 0 then redis.call('HDEL', BYTES, field) end
  end
  return true
end

-- A use: the record moves to the most recent end of its key's and tenant's LRU.
local function touch(id, t, k)
  local tick = redis.call('INCR', TICK)
  redis.call('ZADD', tkey(t), 'XX', tick, id)
  redis.call('ZADD', kkey(t, k), 'XX', tick, id)
end
"""
)

#: ARGV: P, id, tenant, key, response, items, inputs, previous, depth, chain bytes,
#: ttl ms, key max entries, key max bytes, tenant max entries, tenant max bytes,
#: total max entries, total max bytes, grace ms, purge batch, index bytes, the JSON
#: array of the indexed item ids, then (item id, start, length) for each of them.
#: Returns `stored`, `store_full` or `conflict`.
PUT = (
    PRELUDE
    + r"""
local id, t, k = ARGV[2], ARGV[3], ARGV[4]
local ttl, grace = tonumber(ARGV[11]), tonumber(ARGV[18])
local expired = redis.call('ZRANGEBYSCORE', EXP, '-inf', now, 'LIMIT', 0, tonumber(ARGV[19]))
for _, gone in ipairs(expired) do forget(gone) end
local size = string.len(ARGV[5]) + string.len(ARGV[6]) + tonumber(ARGV[20])
local existing = redis.call('HGET', IDX, id)
local gone, gone_size = 0, 0
if existing then
  local s, et, ek = split(existing)
  if et ~= t or ek ~= k then return 'conflict' end
  gone, gone_size = 1, s
end
local TZ, KZ = tkey(t), kkey(t, k)
local TF, KF = 't:' .. t, 'k:' .. t .. ':' .. k
local function counted(field) return tonumber(redis.call('HGET', BYTES, field) or '0') end

-- The owner's own records this put must evict: the key's least recently used until
-- the key's quota has room, then the tenant's until the tenant's has.
local victims, chosen, freed = {}, {}, 0
local function plan(z, field, max_n, max_b)
  local entries = redis.call('ZCARD', z) - gone - #victims
  local used = counted(field) - gone_size - freed
  local i = 0
  while entries + 1 > max_n or used + size > max_b do
    local batch = redis.call('ZRANGE', z, i, i + 63)
    if #batch == 0 then return end
    for _, c in ipairs(batch) do
      if entries + 1 <= max_n and used + size <= max_b then return end
      if c ~= id and not chosen[c] then
        victims[#victims + 1] = c
        chosen[c] = true
        local v = redis.call('HGET', IDX, c)
        local s = v and split(v) or 0
        entries, used, freed = entries - 1, used - s, freed + s
      end
    end
    i = i + 64
  end
end
plan(KZ, KF, tonumber(ARGV[12]), tonumber(ARGV[13]))
plan(TZ, TF, tonumber(ARGV[14]), tonumber(ARGV[15]))
if redis.call('HLEN', IDX) - gone - #victims + 1 > tonumber(ARGV[16])
    or counted('all') - gone_size - freed + size > tonumber(ARGV[17]) then
  return 'store_full'
end
for _, v in ipairs(victims) do forget(v) end
if existing then forget(id) end

local R = rkey(id)
redis.call('HSET', R, 't', t, 'k', k, 's', ARGV[5], 'i', ARGV[6], 'n', ARGV[7], 'p', ARGV[8],
  'd', ARGV[9], 'b', ARGV[10])
redis.call('PEXPIRE', R, ttl)
redis.call('HSET', IDX, id, size .. '\t' .. t .. '\t' .. k)
redis.call('ZADD', EXP, now + ttl, id)
local tick = redis.call('INCR', TICK)
redis.call('ZADD', TZ, tick, id)
redis.call('ZADD', KZ, tick, id)
for _, field in ipairs({'all', TF, KF}) do redis.call('HINCRBY', BYTES, field, size) end
local keys = {IDX, EXP, BYTES, TICK, TZ, KZ}
if #ARGV > 21 then
  local X = xkey(t, k)
  for j = 22, #ARGV, 3 do
    redis.call('HSET', X, ARGV[j], id .. '\t' .. ARGV[j + 1] .. '\t' .. ARGV[j + 2])
  end
  redis.call('HSET', XS, id, ARGV[21])
  keys[#keys + 1] = X
  keys[#keys + 1] = XS
end
for _, key in ipairs(keys) do redis.call('PEXPIRE', key, ttl + grace) end
return 'stored'
"""
)

#: ARGV: P, id, tenant, key. Returns false, or {response, items, inputs, depth, bytes}.
GET = (
    PRELUDE
    + r"""
local id, t, k = ARGV[2], ARGV[3], ARGV[4]
local r = redis.call('HMGET', rkey(id), 't', 'k', 's', 'i', 'n', 'd', 'b')
if not r[1] or r[1] ~= t or r[2] ~= k then return false end
touch(id, t, k)
return {r[3], r[4], r[5], r[6], r[7]}
"""
)

#: ARGV: P, head id, tenant, key, max depth, max bytes. Walks the chain back from the
#: head, touching each record walked. Returns {'ok', items...} (newest first),
#: {'missing', id} or {'over'}.
CHAIN = (
    PRELUDE
    + r"""
local t, k = ARGV[3], ARGV[4]
local max_depth, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local out, id, total = {'ok'}, ARGV[2], 0
while id and id ~= '' do
  local r = redis.call('HMGET', rkey(id), 't', 'k', 'i', 'p')
  if not r[1] or r[1] ~= t or r[2] ~= k then return {'missing', id} end
  total = total + string.len(r[3])
  if #out - 1 >= max_depth or total > max_bytes then return {'over'} end
  out[#out + 1] = r[3]
  touch(id, t, k)
  id = r[4]
end
return out
"""
)

#: ARGV: P, id, tenant, key. Returns 1 if the owner's record was deleted, else 0.
DELETE = (
    PRELUDE
    + r"""
local id, t, k = ARGV[2], ARGV[3], ARGV[4]
local r = redis.call('HMGET', rkey(id), 't', 'k')
if not r[1] or r[1] ~= t or r[2] ~= k then return 0 end
forget(id)
return 1
"""
)

#: The item lookups' common part. ARGV: P, tenant, key, then item ids. `place(item)`
#: is the record id, start and length of the owner's item, or nil; a record is read
#: (its owner checked) once however many of its items are asked for.
ITEMS_PRELUDE = (
    PRELUDE
    + r"""
local t, k = ARGV[2], ARGV[3]
local X = xkey(t, k)
local owned = {}
local function place(item)
  local at = redis.call('HGET', X, item)
  if not at then return nil end
  local a = string.find(at, '\t', 1, true)
  local b = string.find(at, '\t', a + 1, true)
  local rid = string.sub(at, 1, a - 1)
  if owned[rid] == nil then
    local r = redis.call('HMGET', rkey(rid), 't', 'k')
    owned[rid] = (r[1] == t and r[2] == k)
  end
  if not owned[rid] then return nil end
  return rid, tonumber(string.sub(at, a + 1, b - 1)), tonumber(string.sub(at, b + 1))
end
"""
)

#: ARGV: P, tenant, key, item ids. Returns each item's length, -1 for none. Not a use.
ITEM_SIZES = (
    ITEMS_PRELUDE
    + r"""
local out = {}
for j = 4, #ARGV do
  local rid, start, length = place(ARGV[j])
  out[#out + 1] = rid and length or -1
end
return out
"""
)

#: ARGV: P, tenant, key, item ids. Returns each item's JSON, '' for none (no item's
#: JSON is empty); each record read from is touched once.
READ_ITEMS = (
    ITEMS_PRELUDE
    + r"""
local out, blobs = {}, {}
for j = 4, #ARGV do
  local rid, start, length = place(ARGV[j])
  if rid then
    local blob = blobs[rid]
    if not blob then
      blob = redis.call('HGET', rkey(rid), 'i')
      blobs[rid] = blob
      touch(rid, t, k)
    end
    out[#out + 1] = string.sub(blob, start + 1, start + length)
  else
    out[#out + 1] = ''
  end
end
return out
"""
)
