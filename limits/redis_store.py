"""The Redis store: the same buckets, exact across workers and replicas.

Every admission runs inside one Lua script (atomic: Redis runs one script at a time),
on Redis's own clock (`TIME`, never a replica's), over the same buckets as the memory
store (limits/claims.py): a sliding window is a sorted set of reservations by time, a
hash of their amounts and a running total; leases are a sorted set by expiry; a
period is a hash and a total. Every key carries a TTL, so nothing outlives its use.

A round trip per request would cap a worker at a few thousand admissions a second
(measured here: ~3.4k EVALSHA/s one at a time from Python, 20-30k/s batched). So
admissions are **coalesced**: while one script call is in flight, new admissions
queue, and the next call carries all of them; the script handles them in arrival
order, exactly as one by one (same buckets, same checks, one after another inside
the atomic script), so batching changes throughput and nothing else.

When Redis does not answer within the timeout (down, slow, partitioned), the call
raises `StoreUnavailable`; the limiter then applies each level's `on_store_failure`.
Nothing falls back to counting per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from limits.claims import Claim, ClaimState, StoreAnswer, StoreUnavailable

#: How much longer than its window a bucket's keys live (a late settlement still
#: finds its reservation).
KEY_GRACE_MS = 60_000
#: Reservations one script call carries, at most (a larger queue takes more calls).
MAX_BATCH = 256

ADMIT = """
local batch = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[2])
local function purge(key, span)
  local z, h, tk = key .. ':z', key .. ':h', key .. ':t'
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - span)
  if #old > 0 then
    local sum = 0
    for _, r in ipairs(old) do
      sum = sum + (tonumber(redis.call('HGET', h, r)) or 0)
      redis.call('HDEL', h, r)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - span)
    redis.call('DECRBY', tk, sum)
  end
  return tonumber(redis.call('GET', tk) or '0')
end
local out = {}
for i, req in ipairs(batch) do
  local rid, claims = req[1], req[2]
  local refused, retry = -1, 0
  for j, c in ipairs(claims) do
    local key, kind, limit, amount, span = c[1], c[2], c[3], c[4], c[5]
    if kind == 'window' then
      local total = purge(key, span)
      if total + amount > limit then
        local over = total + amount - limit
        local entries = redis.call('ZRANGE', key .. ':z', 0, -1, 'WITHSCORES')
        retry = span
        for k = 1, #entries, 2 do
          over = over - (tonumber(redis.call('HGET', key .. ':h', entries[k])) or 0)
          if over <= 0 then
            retry = math.max(1, tonumber(entries[k + 1]) + span - now)
            break
          end
        end
        refused = j - 1
        break
      end
    elseif kind == 'concurrent' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      if redis.call('ZCARD', key) >= limit then
        local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        retry = math.max(1, tonumber(first[2]) - now)
        refused = j - 1
        break
      end
    else
      local total = tonumber(redis.call('GET', key .. ':t') or '0')
      if total + amount > limit then
        retry = math.max(1, span)
        refused = j - 1
        break
      end
    end
  end
  if refused >= 0 then
    out[i] = {0, refused, retry, now}
  else
    local states = {}
    for j, c in ipairs(claims) do
      local key, kind, limit, amount, span = c[1], c[2], c[3], c[4], c[5]
      if kind == 'window' then
        local z, h, tk = key .. ':z', key .. ':h', key .. ':t'
        redis.call('ZADD', z, now, rid)
        redis.call('HSET', h, rid, amount)
        local total = redis.call('INCRBY', tk, amount)
        redis.call('PEXPIRE', z, span + grace)
        redis.call('PEXPIRE', h, span + grace)
        redis.call('PEXPIRE', tk, span + grace)
        local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
        states[j] = {total, tonumber(first[2]) + span - now}
      elseif kind == 'concurrent' then
        redis.call('ZADD', key, now + span, rid)
        redis.call('PEXPIRE', key, span + grace)
        states[j] = {redis.call('ZCARD', key), 0}
      else
        redis.call('HSET', key .. ':h', rid, amount)
        local total = redis.call('INCRBY', key .. ':t', amount)
        redis.call('PEXPIRE', key .. ':h', span + grace)
        redis.call('PEXPIRE', key .. ':t', span + grace)
        states[j] = {total, span}
      end
    end
    out[i] = {1, states, now}
  end
end
return cjson.encode(out)
"""

SETTLE = """
local batch = cjson.decode(ARGV[1])
for _, req in ipairs(batch) do
  local rid, claims = req[1], req[2]
  for _, c in ipairs(claims) do
    local key, kind, amount = c[1], c[2], c[3]
    if kind == 'concurrent' then
      redis.call('ZREM', key, rid)
    else
      local old = redis.call('HGET', key .. ':h', rid)
      if old then
        redis.call('HSET', key .. ':h', rid, amount)
        redis.call('INCRBY', key .. ':t', amount - tonumber(old))
      end
    end
  end
end
return 1
"""

USAGE = """
local claims = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for j, c in ipairs(claims) do
  local key, kind, span = c[1], c[2], c[3]
  if kind == 'window' then
    local z = key .. ':z'
    local since = '(' .. (now - span)
    local first = redis.call('ZRANGEBYSCORE', z, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local live = redis.call('ZRANGEBYSCORE', z, since, '+inf')
    local sum = 0
    for _, r in ipairs(live) do sum = sum + (tonumber(redis.call('HGET', key .. ':h', r)) or 0) end
    out[j] = {sum, (#first > 0) and (tonumber(first[2]) + span - now) or 0}
  elseif kind == 'concurrent' then
    out[j] = {redis.call('ZCOUNT', key, '(' .. now, '+inf'), 0}
  else
    out[j] = {tonumber(redis.call('GET', key .. ':t') or '0'), span}
  end
end
return cjson.encode(out)
"""


Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Coalesces concurrent calls: one call in flight; what arrives meanwhile goes in
    the next one, in arrival order."""

    def __init__(self, call: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
        self._call = call
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running = False
        self.calls = 0
        self.items = 0

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self.calls += 1
                self.items += len(batch)
                try:
                    results = await self._call([item for item, _ in batch])
                except BaseException as exc:
                    error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(str(exc))
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = False


class RedisStore:
    shared = True

    def __init__(self, url: str, timeout_s: float = 0.2) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._admit_script = self._client.register_script(ADMIT)
        self._settle_script = self._client.register_script(SETTLE)
        self._usage_script = self._client.register_script(USAGE)
        self.admissions: Batcher[tuple[str, Sequence[Claim]], StoreAnswer] = Batcher(
            self._admit_batch
        )
        self.settlements: Batcher[tuple[str, Sequence[Claim]], None] = Batcher(self._settle_batch)

    async def _run(self, script: Any, payload: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await script(args=[orjson.dumps(payload), KEY_GRACE_MS])
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis at {self._where()}: {type(exc).__name__}") from exc

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]  # never a password

    async def _admit_batch(self, batch: list[tuple[str, Sequence[Claim]]]) -> list[StoreAnswer]:
        payload = [
            [rid, [[c.key, c.kind, c.limit, c.amount, c.span_ms] for c in claims]]
            for rid, claims in batch
        ]
        raw = orjson.loads(await self._run(self._admit_script, payload))
        answers = []
        for (_, claims), answer in zip(batch, raw, strict=True):
            if answer[0] == 1:
                states = tuple(
                    ClaimState(claim, int(used), max(0, int(reset)))
                    for claim, (used, reset) in zip(claims, answer[1], strict=True)
                )
                answers.append(StoreAnswer(True, states, at_ms=int(answer[2])))
            else:
                answers.append(StoreAnswer(False, refused_by=int(answer[1]),
                                           retry_after_ms=int(answer[2]),
                                           at_ms=int(answer[3])))  # fmt: skip
        return answers

    async def _settle_batch(self, batch: list[tuple[str, Sequence[Claim]]]) -> list[None]:
        payload = [[rid, [[c.key, c.kind, c.amount] for c in claims]] for rid, claims in batch]
        await self._run(self._settle_script, payload)
        return [None] * len(batch)

    async def admit(self, rid: str, claims: Sequence[Claim]) -> StoreAnswer:
        return await self.admissions.submit((rid, claims))

    async def settle(self, rid: str, claims: Sequence[Claim]) -> None:
        await self.settlements.submit((rid, claims))

    async def usage(self, claims: Sequence[Claim]) -> list[ClaimState]:
        payload = [[c.key, c.kind, c.span_ms] for c in claims]
        raw = orjson.loads(await self._run(self._usage_script, payload))
        return [
            ClaimState(claim, int(used), max(0, int(reset)))
            for claim, (used, reset) in zip(claims, raw, strict=True)
        ]

    async def aclose(self) -> None:
        await self._client.aclose()
