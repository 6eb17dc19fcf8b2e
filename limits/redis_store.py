"""The Redis store: the same buckets as the memory store, exact across workers and replicas.

Every admission runs inside one Lua script (limits/lua.py): atomic, because Redis
runs one script at a time; on Redis's own clock (`TIME`), never a replica's; over
one key per bucket, each with a TTL. Admissions are **coalesced** (limits/coalesce.py):
while one script call is in flight, new admissions queue, and the next call
carries all of them. The script handles them one after another, in arrival order,
each against the buckets as the previous one left them: exactly what the same
admissions would do one call each, so batching changes throughput and nothing
else. Settlements are coalesced the same way, on a connection of their own.

Nothing waits longer than `timeout_s`: an admission whose answer does not come in
time (Redis down, slow, partitioned) raises `StoreUnavailable`, and the limiter
applies each level's `on_store_failure`. Nothing falls back to counting per
process. And nothing leaks when calls fail:

- an admission whose caller gave up, but which Redis admitted, is voided (as if it
  never happened: its request, tokens, spend and slot are given back);
- an admission whose call failed mid-way (it may or may not have run) is voided too
  (voiding one that never ran does nothing);
- a settlement that could not be applied is applied later: retried every
  `REDELIVER_EVERY_S` until Redis answers, for up to `REDELIVER_FOR_S`, at most
  `MAX_REDELIVERIES` of them (beyond that the oldest is dropped and counted: its
  estimate stands, its lease expires by itself).

Voids and settlements are idempotent, so applying one twice, or one that is no
longer needed, is harmless. A connection error is retried once at once (a pooled
connection may be stale after Redis restarted): admissions are idempotent per
reservation id, so a retry never counts one twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
from redis.commands.core import AsyncScript

from common.redis_client import FAILURES, connect, failure_reason
from common.secrets import mask_url
from limits import lua
from limits.claims import BucketState, Claim, Plan
from limits.coalesce import Coalescer
from limits.store import LEASE_RETRY_MS, StoreAnswer, StoreUnavailable

log = logging.getLogger("seawall.limits")

#: How much longer than its last use a bucket's keys live: a settlement arriving
#: just after a window moved on, or a period ended, still finds its bucket.
KEY_GRACE_MS = 60_000
#: Admissions (settlements) one script call carries at most; more queue for the
#: next call. Bounds the time one call holds Redis (a few ms).
MAX_BATCH = 128
#: Leases one renewal call carries at most.
RENEW_CHUNK = 1000
#: Settlements and voids that could not be applied are retried this often...
REDELIVER_EVERY_S = 1.0
#: ...for this long (by then every window has moved on and every lease expired;
#: only a spend estimate would still stand)...
REDELIVER_FOR_S = 3600.0
#: ...and at most this many are kept (the oldest is dropped first).
MAX_REDELIVERIES = 100_000
#: A settlement's tokens that void the reservation instead (as if never admitted).
VOID = -1
#: Which of a plan's two serialisations (`RedisStore._wire`) a script reads.
ADMITTING, SETTLING = 0, 1

#: Plans whose claims are kept serialised, at most this many (the cache is emptied
#: when full: a plan is serialised again in microseconds).
MAX_WIRE_PLANS = 4096

#: (reservation id, plan, tokens, cost): an admission.
Admit = tuple[str, Plan, int, int]
#: (reservation id, plan, tokens, cost): a settlement, or a void when tokens is `VOID`.
Settle = tuple[str, Plan, int, int]


class RedisStore:
    shared = True

    def __init__(
        self,
        url: str,
        timeout_s: float = 0.2,
        *,
        coalesce: bool = True,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`url`: `redis://`, `rediss://` or `unix://`; `timeout_s`: the longest an
        admission waits for Redis (connecting included) before it is a store
        failure; `coalesce=False` sends one call per admission (for comparison)."""
        self.url = url
        self.timeout_s = timeout_s
        self._client = connect(url, timeout_s)
        self._admit: AsyncScript = self._client.register_script(lua.ADMIT)
        self._settle: AsyncScript = self._client.register_script(lua.SETTLE)
        self._renew: AsyncScript = self._client.register_script(lua.RENEW)
        self._usage: AsyncScript = self._client.register_script(lua.USAGE)
        self.admissions: Coalescer[Admit, StoreAnswer] = Coalescer(
            self._admit_batch,
            max_batch=max_batch,
            enabled=coalesce,
            orphaned=self._void_if_admitted,
            lost=self._void,
        )
        self.settlements: Coalescer[Settle, None] = Coalescer(
            self._settle_batch,
            max_batch=max_batch,
            enabled=coalesce,
            drop_unsent=False,
            lost=self._redeliver_later,
        )
        #: Store calls that failed or timed out (a metric), and the last one's reason.
        self.failures = 0
        self.last_error: str | None = None
        #: Settlements and voids given up on (see REDELIVER_FOR_S, MAX_REDELIVERIES).
        self.redeliveries_dropped = 0
        self._redeliveries: deque[tuple[float, Settle]] = deque()
        self._redeliverer: asyncio.Task[None] | None = None
        self._wires: dict[Plan, tuple[orjson.Fragment, orjson.Fragment]] = {}

    def _wire(self, plan: Plan) -> tuple[orjson.Fragment, orjson.Fragment]:
        """`plan`'s claims as the admission script and the settlement script read
        them, serialised once."""
        wire = self._wires.get(plan)
        if wire is None:
            if len(self._wires) >= MAX_WIRE_PLANS:
                self._wires.clear()
            claims = plan.claims
            admit = [
                [c.key, c.kind, c.limit, source, c.span_ms, c.per]
                for c, source in zip(claims, plan.sources, strict=True)
            ]
            settle = [[c.key, c.kind, c.span_ms, c.per] for c in claims]
            wire = self._wires[plan] = (
                orjson.Fragment(orjson.dumps(admit)),
                orjson.Fragment(orjson.dumps(settle)),
            )
        return wire

    def _payload(self, batch: Sequence[Admit] | Sequence[Settle], script: int) -> Any:
        """A batch as a script reads it: each plan's claims once, however many of
        the batch's requests name it, then the requests by plan index."""
        plans: dict[Plan, int] = {}
        requests = []
        for rid, plan, tokens, cost in batch:
            index = plans.get(plan)
            if index is None:
                index = plans[plan] = len(plans)
            requests.append([rid, index, tokens, cost])
        wire = self._wire
        return [[wire(plan)[script] for plan in plans], requests]

    @property
    def where(self) -> str:
        """The URL with its credentials masked (common/secrets.py)."""
        return mask_url(self.url)

    async def _call(self, script: AsyncScript, payload: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await script(args=[orjson.dumps(payload), KEY_GRACE_MS, LEASE_RETRY_MS])
        except FAILURES as exc:
            reason = failure_reason(exc)
            raise self._failed(reason) from exc

    def _failed(self, reason: str) -> StoreUnavailable:
        self.failures += 1
        self.last_error = f"redis at {self.where}: {reason}"
        return StoreUnavailable(self.last_error)

    # -- admissions ----------------------------------------------------------------

    async def admit(self, rid: str, plan: Plan, tokens: int, cost: int) -> StoreAnswer:
        try:
            return await self.admissions.submit((rid, plan, tokens, cost), self.timeout_s)
        except TimeoutError:
            raise self._failed(f"no answer within {self.timeout_s:g} s") from None

    async def _admit_batch(self, batch: list[Admit]) -> list[StoreAnswer]:
        payload = self._payload(batch, ADMITTING)
        at, results = orjson.loads(await self._call(self._admit, payload))
        now = int(at)
        answers = []
        for result in results:
            # An empty Lua table comes back as `{}`: no spend claims, no periods.
            periods = tuple(result[3]) if result[3] else ()
            if result[0] == 1:
                answers.append(StoreAnswer(True, now, result[1], result[2], periods))
            else:
                refused, retry, large = result[4], result[5], bool(result[6])
                answers.append(
                    StoreAnswer(False, now, result[1], result[2], periods, refused, retry, large)
                )
        return answers

    def _void_if_admitted(self, item: Admit, answer: StoreAnswer) -> None:
        if answer.admitted:
            self._void(item)

    def _void(self, item: Admit) -> None:
        """Void an admission that may have run: its record, if Redis has one, says
        what to give back (nothing, if it never ran)."""
        self._redeliver_later((item[0], item[1], VOID, 0))

    # -- settlements -----------------------------------------------------------------

    async def settle(
        self, rid: str, plan: Plan, periods: Sequence[str], tokens: int, cost: int
    ) -> None:
        # The reservation's record in Redis says which slots and periods to correct
        # (`periods` is for stores that keep none).
        item = (rid, plan, tokens, cost)
        # Past the timeout it is applied late, or lost and redelivered: the
        # coalescer's hooks see to it either way.
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            await self.settlements.submit(item, self.timeout_s)

    async def _settle_batch(self, batch: list[Settle]) -> list[None]:
        await self._call(self._settle, self._payload(batch, SETTLING))
        return [None] * len(batch)

    def _redeliver_later(self, item: Settle) -> None:
        if len(self._redeliveries) >= MAX_REDELIVERIES:
            self._redeliveries.popleft()
            self.redeliveries_dropped += 1
        self._redeliveries.append((time.monotonic() + REDELIVER_FOR_S, item))
        if self._redeliverer is None or self._redeliverer.done():
            self._redeliverer = asyncio.get_running_loop().create_task(self._redeliver())

    async def _redeliver(self) -> None:
        """Applies what could not be applied, first at once, then every
        `REDELIVER_EVERY_S` while Redis does not answer."""
        while self._redeliveries:
            now = time.monotonic()
            batch: list[tuple[float, Settle]] = []
            while self._redeliveries and len(batch) < self.settlements.max_batch:
                entry = self._redeliveries.popleft()
                if entry[0] > now:
                    batch.append(entry)
                else:
                    self.redeliveries_dropped += 1
            if not batch:
                continue
            try:
                await self._settle_batch([item for _, item in batch])
            except StoreUnavailable:
                self._redeliveries.extendleft(reversed(batch))
                await asyncio.sleep(REDELIVER_EVERY_S)

    @property
    def redeliveries_pending(self) -> int:
        return len(self._redeliveries)

    # -- leases and the admin view ------------------------------------------------------

    async def renew(self, leases: Sequence[tuple[str, Plan]]) -> set[str]:
        lost = set()
        for start in range(0, len(leases), RENEW_CHUNK):
            chunk = leases[start : start + RENEW_CHUNK]
            payload = [
                [rid, plan.claims[0].key, [c.key for c in plan.lease_claims],
                 plan.lease_claims[0].span_ms]
                for rid, plan in chunk
            ]  # fmt: skip
            held = orjson.loads(await self._call(self._renew, payload))
            lost |= {rid for (rid, _), ok in zip(chunk, held, strict=True) if not ok}
        return lost

    async def usage(self, claims: Sequence[Claim]) -> list[BucketState]:
        payload = [[c.key, c.kind, c.limit, c.amount, c.span_ms, c.per] for c in claims]
        _, states = orjson.loads(await self._call(self._usage, payload))
        return list(_states(claims, states))

    async def aclose(self) -> None:
        """Stops coalescing and redelivering (what is still pending is dropped:
        leases expire by themselves) and closes the connections."""
        await self.admissions.aclose()
        await self.settlements.aclose()
        if self._redeliverer is not None:
            self._redeliverer.cancel()
            await asyncio.gather(self._redeliverer, return_exceptions=True)
        await self._client.aclose()


def _states(claims: Sequence[Claim], raw: list[list[Any]]) -> tuple[BucketState, ...]:
    return tuple(
        BucketState(claim.placed(bucket), int(used), int(reserved), max(0, int(reset)))
        for claim, (bucket, used, reserved, reset) in zip(claims, raw, strict=True)
    )
