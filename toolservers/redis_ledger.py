"""The result ledger in Redis: the memory ledger's bounds, shared by every replica.

An agent whose MCP results were served by one gateway process sends them to the
model through whichever process its next request reaches; with `mcp.ledger.store:
redis://...` every process records into, and looks up in, the same ledger, so a
genuine result is recognised wherever it is shown (toolservers/ledger.py explains
the ledger; this is its store).

A record is one Lua script (`RECORD`), so the bounds (per key, per tenant, in all)
hold exactly under concurrent records from many replicas, and choose what goes
exactly as `MemoryLedger` does (tests/test_toolservers_ledger.py replays the same
operations on both). A lookup is one script too (`RECOGNISE`). Every call is one
round trip, bounded by `store_timeout_ms`.

Key layout (`P` the prefix, `K` a key id, `T` a tenant id):

- `P own` hash K -> T, `P kb` hash K -> bytes, `P tb` hash T -> bytes: the accounting.
- `P seen` sorted set K -> the time of its last record (ms, Redis's clock): the
  keys counted against `max_keys`, and a key not recorded for `ttl_s` holds only
  expired results, so each record first forgets up to `PURGE_BATCH` of those.
- `P t:T` sorted set K -> a tick of `P tick` (a counter: records are totally ordered
  across replicas, unlike clocks): the tenant's least recently served key first.
- `P f:K` hash fingerprint (32 bytes) -> the newest entry holding it; `P e:K` hash
  entry number -> `<expiry ms>:<fingerprints>`; `P m:K` hash `h` (the oldest entry's
  number) and `n` (the next one's): a key's entries are numbered in order and only
  ever dropped oldest first.

Every key gets the TTL plus `GRACE_MS` at each record that writes it, so a ledger
nobody records into empties itself. Scripts name their keys in ARGV: one Redis (a
primary), not Redis Cluster; with `maxmemory-policy noeviction` (another policy
could evict part of the accounting), as for the response store (docs/mcp.md).

**When Redis does not answer**: a record is given up (counted in `unrecorded` and
`failures`; the result is still served, with its receipts), a lookup raises
`LedgerUnavailable` (the tool-result stage answers per `on_store_failure`). The
first failure and the recovery are logged once each (common/redis_client.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

from common.redis_client import LUA_NOW_MS, Reachability, RedisDown, connect
from common.secrets import mask_url
from toolservers.config import LedgerSettings
from toolservers.fingerprints import DIGEST_BYTES, ENTRY_OVERHEAD
from toolservers.ledger import LedgerUnavailable

log = logging.getLogger("seawall.mcp")

#: Every key this ledger writes starts with this.
PREFIX = "seawall:ledger:"
#: How long the bookkeeping outlives the last record (ms).
GRACE_MS = 60_000
#: Keys holding only expired results that one record forgets at most (bounds one
#: script's time after an idle period; the rest go with the next records).
PURGE_BATCH = 100

PRELUDE = (
    LUA_NOW_MS
    + r"""
local P = ARGV[1]
local function fkey(k) return P .. 'f:' .. k end
local function ekey(k) return P .. 'e:' .. k end
-- An entry's expiry (ms) and its fingerprints.
local function entry(v)
  local at = string.find(v, ':', 1, true)
  return tonumber(string.sub(v, 1, at - 1)), string.sub(v, at + 1)
end
"""
)

#: ARGV: P, key, tenant, ttl ms, grace ms, max entries per key, max bytes per key,
#: max keys, max keys per tenant, max bytes per tenant, purge batch, entry overhead,
#: digest bytes, then the fingerprints. Returns {recorded (1 or 0), evicted}.
RECORD = (
    PRELUDE
    + r"""
local K, T = ARGV[2], ARGV[3]
local ttl, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_entries, max_key_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_keys, max_tenant_keys = tonumber(ARGV[8]), tonumber(ARGV[9])
local max_tenant_bytes, purge = tonumber(ARGV[10]), tonumber(ARGV[11])
local overhead, digest = tonumber(ARGV[12]), tonumber(ARGV[13])
local OWN, KB, TB, SEEN, TICK = P .. 'own', P .. 'kb', P .. 'tb', P .. 'seen', P .. 'tick'
local function tkey(t) return P .. 't:' .. t end
local function mkey(k) return P .. 'm:' .. k end
local evicted = 0

local function add(hash, field, delta)
  if redis.call('HINCRBY', hash, field, delta) <= 0 then redis.call('HDEL', hash, field) end
end

local function forget(k)
  local t = redis.call('HGET', OWN, k)
  if t then
    add(TB, t, 0 - tonumber(redis.call('HGET', KB, k) or '0'))
    redis.call('ZREM', tkey(t), k)
  end
  redis.call('HDEL', OWN, k)
  redis.call('HDEL', KB, k)
  redis.call('ZREM', SEEN, k)
  redis.call('DEL', fkey(k), ekey(k), mkey(k))
end

local function drop_oldest(k)
  local M = mkey(k)
  local h = tonumber(redis.call('HGET', M, 'h') or '0')
  local n = tonumber(redis.call('HGET', M, 'n') or '0')
  local v = redis.call('HGET', ekey(k), h)
  if not v then forget(k) return end
  redis.call('HDEL', ekey(k), h)
  local _, prints = entry(v)
  local count = #prints / digest
  for i = 0, count - 1 do
    local d = string.sub(prints, i * digest + 1, (i + 1) * digest)
    if tonumber(redis.call('HGET', fkey(k), d)) == h then redis.call('HDEL', fkey(k), d) end
  end
  local size = overhead + digest * count
  add(KB, k, 0 - size)
  add(TB, redis.call('HGET', OWN, k), 0 - size)
  if h + 1 >= n then forget(k) else redis.call('HSET', M, 'h', h + 1) end
end

-- The key's oldest entries go while it is over a bound or they have expired.
local function trim(k)
  local M = mkey(k)
  while redis.call('EXISTS', M) == 1 do
    local h, n = tonumber(redis.call('HGET', M, 'h')), tonumber(redis.call('HGET', M, 'n'))
    local over = n - h > max_entries or tonumber(redis.call('HGET', KB, k) or '0') > max_key_bytes
    if not over then
      local v = redis.call('HGET', ekey(k), h)
      if v and entry(v) > now then return end
    end
    drop_oldest(k)
    if over then evicted = evicted + 1 end
  end
end

for _, gone in ipairs(redis.call('ZRANGEBYSCORE', SEEN, '-inf', now - ttl, 'LIMIT', 0, purge)) do
  forget(gone)
end

local t = redis.call('HGET', OWN, K)
if not t then
  -- A new key makes room within its own tenant only.
  local mine = redis.call('ZCARD', tkey(T))
  local full = redis.call('ZCARD', SEEN) >= max_keys
  if mine > 0 and (full or mine >= max_tenant_keys) then
    forget(redis.call('ZRANGE', tkey(T), 0, 0)[1])
    evicted = evicted + 1
  elseif full then
    return {0, evicted}
  end
  redis.call('HSET', OWN, K, T)
  redis.call('HSET', mkey(K), 'h', 0, 'n', 0)
  t = T
end

local TZ, M = tkey(t), mkey(K)
redis.call('ZADD', TZ, redis.call('INCR', TICK), K)
redis.call('ZADD', SEEN, now, K)
local number = redis.call('HINCRBY', M, 'n', 1) - 1
local prints = {}
for i = 14, #ARGV do
  prints[#prints + 1] = ARGV[i]
  redis.call('HSET', fkey(K), ARGV[i], number)
end
redis.call('HSET', ekey(K), number, (now + ttl) .. ':' .. table.concat(prints))
local size = overhead + digest * #prints
redis.call('HINCRBY', KB, K, size)
redis.call('HINCRBY', TB, t, size)
trim(K)
-- Over the tenant's bytes: its least recently served keys' oldest results go.
while tonumber(redis.call('HGET', TB, t) or '0') > max_tenant_bytes do
  local victim = redis.call('ZRANGE', TZ, 0, 0)[1]
  if not victim then break end
  drop_oldest(victim)
  evicted = evicted + 1
end

local life = ttl + grace
for _, key in ipairs({OWN, KB, TB, SEEN, TICK, TZ, fkey(K), ekey(K), M}) do
  redis.call('PEXPIRE', key, life)
end
return {1, evicted}
"""
)

#: ARGV: P, key, then the fingerprints. Returns 1 when one is an unexpired entry's.
RECOGNISE = (
    PRELUDE
    + r"""
local F, E = fkey(ARGV[2]), ekey(ARGV[2])
for i = 3, #ARGV do
  local number = redis.call('HGET', F, ARGV[i])
  if number then
    local v = redis.call('HGET', E, number)
    if v and entry(v) > now then return 1 end
  end
end
return 0
"""
)


class RedisLedger:
    """`LedgerStore` in one Redis shared by every worker and replica."""

    def __init__(self, settings: LedgerSettings, *, prefix: str = PREFIX) -> None:
        self.settings = settings
        self.prefix = prefix
        url = str(settings.store)
        timeout_s = settings.store_timeout_ms / 1000
        self._client = connect(url, timeout_s)
        self._record: AsyncScript = self._client.register_script(RECORD)
        self._recognise: AsyncScript = self._client.register_script(RECOGNISE)
        self.reach = Reachability(
            log,
            "MCP result ledger",
            mask_url(url),
            "results are not recorded and tool messages without receipts answer "
            "per mcp.ledger.on_store_failure",
            timeout_s,
        )
        self.evicted = 0
        self.unrecorded = 0

    @property
    def failures(self) -> int:
        return self.reach.failures

    async def _script(self, script: AsyncScript, *args: Any) -> Any:
        return await self.reach.call(script(args=[self.prefix, *args]))

    async def record(self, key_id: str, tenant: str, prints: Sequence[bytes]) -> None:
        settings = self.settings
        if not settings.enabled or not prints:
            return
        try:
            recorded, evicted = await self._script(
                self._record,
                key_id,
                tenant,
                int(settings.ttl_s * 1000),
                GRACE_MS,
                settings.max_entries_per_key,
                settings.max_bytes_per_key,
                settings.max_keys,
                settings.max_keys_per_tenant,
                settings.max_bytes_per_tenant,
                PURGE_BATCH,
                ENTRY_OVERHEAD,
                DIGEST_BYTES,
                *prints,
            )
        except RedisDown:
            self.unrecorded += 1
            return
        self.evicted += int(evicted)
        if not recorded:
            self.unrecorded += 1

    async def recognises(self, key_id: str, prints: Sequence[bytes]) -> bool:
        if not prints:
            return False
        try:
            return bool(await self._script(self._recognise, key_id, *prints))
        except RedisDown as down:
            raise LedgerUnavailable(down.reason) from None

    async def aclose(self) -> None:
        await self._client.aclose()
