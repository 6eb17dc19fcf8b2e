"""The limiter as it decided before it was made O(1) (issue 19, commit 23a0358): the
reference the current one is held to (tests/test_limits_equivalence.py).

Its algorithm, copied from limits/claims.py, memory.py, headers.py and limiter.py
of that commit, cut to what decides: a `Claim` per limit per level built for every
request, each bucket looked at and then charged, a `BucketState` per claim, headers
read off all of them, settlement claim by claim. Slow and simple on purpose; never
imported by the gateway. Only the in-process store: the Redis store is held to this
one with the memory store's clock frozen at Redis's time, as tests/test_limits_redis.py
holds it to the memory store.
"""

from __future__ import annotations

import heapq
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from limits.claims import CONCURRENT, MICRO, REQUESTS, SPEND, TOKENS, WINDOW_MS, Demand, Level
from limits.headers import duration
from limits.periods import period_of

LEASE_RETRY_MS = 1000


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    kind: str
    limit: int
    amount: int
    span_ms: int
    level: str
    name: str
    fail_open: bool
    per: str = ""
    bucket: str | None = None

    def with_amount(self, amount: int) -> Claim:
        return Claim(
            self.key, self.kind, self.limit, amount, self.span_ms, self.level, self.name,
            self.fail_open, self.per, self.bucket,
        )  # fmt: skip

    def placed(self, bucket: str) -> Claim:
        if self.kind != "period" or bucket == self.bucket:
            return self
        return Claim(
            self.key, self.kind, self.limit, self.amount, self.span_ms, self.level, self.name,
            self.fail_open, self.per, bucket,
        )  # fmt: skip


def micro_usd(usd: float) -> int:
    return round(usd * MICRO)


def claims_for(
    levels: Sequence[Level], demand: Demand, *, lease_ms: int, prefix: str, window_ms: int
) -> list[Claim]:
    seen: set[str] = set()
    claims: list[Claim] = []
    for level in levels:
        if level.name in seen:
            continue
        seen.add(level.name)
        config, name = level.config, level.name
        base = f"{prefix}{name}:"
        open_ = config.on_store_failure == "fail_open"
        if config.requests_per_minute is not None:
            limit = config.requests_per_minute
            claims.append(
                Claim(base + REQUESTS, "count", limit, 1, window_ms, name, REQUESTS, open_)
            )
        if config.tokens_per_minute is not None:
            limit, tokens = config.tokens_per_minute, max(0, demand.tokens)
            claims.append(
                Claim(base + TOKENS, "window", limit, tokens, window_ms, name, TOKENS, open_)
            )
        if config.max_concurrent is not None:
            limit = config.max_concurrent
            claims.append(
                Claim(base + CONCURRENT, "lease", limit, 1, lease_ms, name, CONCURRENT, open_)
            )
        if config.spend_usd is not None:
            spend = config.spend_usd
            limit, cost = micro_usd(spend.amount), micro_usd(max(0.0, demand.cost_usd))
            claims.append(
                Claim(base + SPEND, "period", limit, cost, 0, name, SPEND, open_, spend.per)
            )
    return claims


def describe(claim: Claim) -> str:
    if claim.name == SPEND:
        return f"spend_usd ${claim.limit / MICRO:g} per {claim.per}"
    return f"{claim.name} {claim.limit}"


@dataclass(frozen=True, slots=True)
class BucketState:
    claim: Claim
    used: int
    reserved: int
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.claim.limit - self.used)


# -- the buckets ---------------------------------------------------------------------------

Look = tuple[int, int, int]


class _Count:
    def __init__(self) -> None:
        self.log: deque[tuple[int, str]] = deque()

    def look(self, now: int, claim: Claim) -> Look:
        log, span = self.log, claim.span_ms
        while log and log[0][0] <= now - span:
            log.popleft()
        return len(log), 0, (log[0][0] + span - now if log else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        at = self.log[used - claim.limit][0]
        return max(1, at + claim.span_ms - now), False

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.log.append((now, rid))

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        return None


class _Window:
    def __init__(self) -> None:
        self.log: deque[tuple[int, str]] = deque()
        self.charges: dict[str, int] = {}
        self.pending: dict[str, int] = {}
        self.total = 0
        self.reserved = 0

    def look(self, now: int, claim: Claim) -> Look:
        log, span = self.log, claim.span_ms
        while log and log[0][0] <= now - span:
            _, rid = log.popleft()
            self.total -= self.charges.pop(rid)
            self.reserved -= self.pending.pop(rid, 0)
        return self.total, self.reserved, (log[0][0] + span - now if log else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        if claim.amount > claim.limit:
            return claim.span_ms, True
        over = used + claim.amount - claim.limit
        for at, rid in self.log:
            over -= self.charges[rid]
            if over <= 0:
                return max(1, at + claim.span_ms - now), False
        return claim.span_ms, False

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.log.append((now, rid))
        self.charges[rid] = self.pending[rid] = claim.amount
        self.total += claim.amount
        self.reserved += claim.amount

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        estimate = self.pending.pop(rid, None)
        if estimate is None:
            return
        self.charges[rid] = claim.amount
        self.total += claim.amount - estimate
        self.reserved -= estimate


class _Leases:
    def __init__(self) -> None:
        self.expiries: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def look(self, now: int, claim: Claim) -> Look:
        heap, expiries = self.heap, self.expiries
        while heap and (heap[0][0] <= now or expiries.get(heap[0][1]) != heap[0][0]):
            at, rid = heapq.heappop(heap)
            if expiries.get(rid) == at:
                del expiries[rid]
        held = len(expiries)
        return held, held, (heap[0][0] - now if heap else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        return max(1, min(LEASE_RETRY_MS, self.heap[0][0] - now)), False

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.expiries[rid] = now + claim.span_ms
        heapq.heappush(self.heap, (now + claim.span_ms, rid))

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        self.expiries.pop(rid, None)

    def renew(self, now: int, rid: str, span_ms: int) -> bool:
        if self.expiries.get(rid, now) <= now:
            return False
        self.expiries[rid] = now + span_ms
        heapq.heappush(self.heap, (now + span_ms, rid))
        return True


class _Period:
    def __init__(self, end: int) -> None:
        self.end = end
        self.pending: dict[str, int] = {}
        self.total = 0
        self.reserved = 0

    def look(self, now: int, claim: Claim) -> Look:
        return self.total, self.reserved, max(0, self.end - now)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        return max(1, self.end - now), claim.amount > claim.limit

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.pending[rid] = claim.amount
        self.total += claim.amount
        self.reserved += claim.amount

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        estimate = self.pending.pop(rid, None)
        if estimate is not None:
            self.total += claim.amount - estimate
            self.reserved -= estimate


Bucket = _Count | _Window | _Leases | _Period
_KINDS: dict[str, type[_Count] | type[_Window] | type[_Leases]] = {
    "count": _Count,
    "window": _Window,
    "lease": _Leases,
}


@dataclass(frozen=True, slots=True)
class StoreAnswer:
    admitted: bool
    states: tuple[BucketState, ...]
    at_ms: int
    refused_by: int = -1
    retry_after_ms: int = 0
    too_large: bool = False


class ReferenceStore:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    def now(self) -> int:
        return round(self._clock() * 1000)

    def _bucket(self, claim: Claim, now: int) -> tuple[str, Bucket]:
        if claim.kind == "period":
            period, end = period_of(claim.per, now)
            key = f"{claim.key}:{period}"
            bucket = self._buckets.get(key)
            if bucket is None:
                ended = [
                    k for k, b in self._buckets.items() if isinstance(b, _Period) and b.end <= now
                ]
                for old in ended:
                    del self._buckets[old]
                bucket = self._buckets[key] = _Period(end)
            return key, bucket
        bucket = self._buckets.get(claim.key)
        if bucket is None:
            bucket = self._buckets[claim.key] = _KINDS[claim.kind]()
        return claim.key, bucket

    def admit(self, rid: str, claims: Sequence[Claim]) -> StoreAnswer:
        now = self.now()
        placed = [self._bucket(claim, now) for claim in claims]
        states = [
            BucketState(claim.placed(key), *bucket.look(now, claim))
            for claim, (key, bucket) in zip(claims, placed, strict=True)
        ]
        for index, (state, (_, bucket)) in enumerate(zip(states, placed, strict=True)):
            claim = state.claim
            if state.used + claim.amount > claim.limit:
                retry, too_large = bucket.wait(now, claim, state.used)
                return StoreAnswer(False, tuple(states), now, index, retry, too_large)
        for claim, (_, bucket) in zip(claims, placed, strict=True):
            bucket.add(now, rid, claim)
        return StoreAnswer(True, tuple(map(_admitted, states)), now)

    def settle(self, rid: str, claims: Sequence[Claim]) -> None:
        now = self.now()
        for claim in claims:
            bucket = self._buckets.get(claim.bucket or claim.key)
            if bucket is not None:
                bucket.settle(now, rid, claim)

    def renew(self, leases: Sequence[tuple[str, Claim]]) -> set[str]:
        now = self.now()
        lost = set()
        for rid, claim in leases:
            bucket = self._buckets.get(claim.key)
            if not (isinstance(bucket, _Leases) and bucket.renew(now, rid, claim.span_ms)):
                lost.add(rid)
        return lost

    def usage(self, claims: Sequence[Claim]) -> list[BucketState]:
        now = self.now()
        states = []
        for claim in claims:
            key, bucket = self._bucket(claim, now)
            used, reserved, reset = bucket.look(now, claim)
            states.append(BucketState(claim.placed(key), used, reserved, reset))
        return states


def _admitted(state: BucketState) -> BucketState:
    claim, reset = state.claim, state.reset_ms
    reserved = state.reserved if claim.kind == "count" else state.reserved + claim.amount
    if claim.kind != "period":
        reset = claim.span_ms if reset == 0 else min(reset, claim.span_ms)
    return BucketState(claim, state.used + claim.amount, reserved, reset)


def rate_headers(states: Sequence[BucketState]) -> dict[str, str]:
    headers = {}
    for name, suffix in ((REQUESTS, "requests"), (TOKENS, "tokens")):
        candidates = [s for s in states if s.claim.name == name]
        if candidates:
            tightest = min(candidates, key=lambda s: (s.remaining, s.claim.limit))
            headers[f"x-ratelimit-limit-{suffix}"] = str(tightest.claim.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(tightest.remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = duration(tightest.reset_ms)
    return headers


# -- the limiter -------------------------------------------------------------------------------


@dataclass(eq=False)
class Reservation:
    rid: str
    claims: tuple[Claim, ...]
    demand: Demand
    at_ms: int
    settled: bool = False


@dataclass(frozen=True)
class Decision:
    """An admission's outcome, in the terms a client sees: admitted or not, and for a
    refusal its status, code, limit, level, retry hint (ms), too-large flag and
    message; the headers either way."""

    admitted: bool
    headers: dict[str, str]
    refusal: tuple[object, ...] | None = None
    reservation: Reservation | None = field(default=None, compare=False)


class ReferenceLimiter:
    """`Limiter`'s admission and settlement over `ReferenceStore`, with the same
    decision counter; no lease renewer (tests renew by hand)."""

    def __init__(
        self,
        clock: Callable[[], float],
        lease_s: float = 30.0,
        *,
        window_ms: int = WINDOW_MS,
        key_prefix: str = "seawall:limit:",
    ) -> None:
        self.store = ReferenceStore(clock)
        self.lease_ms = round(lease_s * 1000)
        self.window_ms = window_ms
        self.prefix = key_prefix
        self.decisions: dict[tuple[str, str, str], int] = {}
        self.held: dict[str, Reservation] = {}

    def claims(self, levels: Sequence[Level], demand: Demand) -> list[Claim]:
        return claims_for(
            levels, demand, lease_ms=self.lease_ms, prefix=self.prefix, window_ms=self.window_ms
        )

    def _count(self, claims: Sequence[Claim], result: str) -> None:
        for claim in claims:
            key = (claim.name, claim.level.split(":", 1)[0], result)
            self.decisions[key] = self.decisions.get(key, 0) + 1

    def admit(self, levels: Sequence[Level], demand: Demand) -> Decision:
        claims = self.claims(levels, demand)
        if not claims:
            return Decision(True, {})
        rid = os.urandom(9).hex()
        answer = self.store.admit(rid, claims)
        headers = rate_headers(answer.states)
        if not answer.admitted:
            state = answer.states[answer.refused_by]
            self._count([state.claim], "refused")
            return Decision(False, headers, refusal(state, answer))
        self._count(claims, "allowed")
        placed = tuple(state.claim for state in answer.states)
        reservation = Reservation(rid, placed, demand, answer.at_ms)
        if any(c.kind == "lease" for c in placed):
            self.held[rid] = reservation
        return Decision(True, headers, None, reservation)

    def store_failed(self, levels: Sequence[Level], demand: Demand) -> tuple[object, ...]:
        """What the limiter decides when the store cannot answer: (admitted unchecked,
        or the refusal's status, code, limit, level), and the counts it makes."""
        claims = self.claims(levels, demand)
        closed = [c for c in claims if not c.fail_open]
        if not closed:
            self._count(claims, "store_failure_open")
            return ("unchecked",)
        self._count(closed, "store_failure_closed")
        first = closed[0]
        return (503, "limit_store_unavailable", first.name, first.level, 1000)

    def settle(
        self,
        reservation: Reservation | None,
        tokens: int | None = None,
        cost_usd: float | None = None,
    ) -> None:
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        self.held.pop(reservation.rid, None)
        updates = []
        for claim in reservation.claims:
            if claim.kind == "window":
                updates.append(claim if tokens is None else claim.with_amount(max(0, tokens)))
            elif claim.kind == "period":
                cost = None if cost_usd is None else micro_usd(max(0.0, cost_usd))
                updates.append(claim if cost is None else claim.with_amount(cost))
            elif claim.kind == "lease":
                updates.append(claim)
        if updates:
            self.store.settle(reservation.rid, updates)

    def release(self, reservation: Reservation | None) -> None:
        self.settle(reservation, 0, 0.0)

    def renew_leases(self) -> int:
        held = [r for r in self.held.values() if not r.settled]
        leases = [(r.rid, c) for r in held for c in r.claims if c.kind == "lease"]
        if not leases:
            return 0
        lost = self.store.renew(leases)
        for rid in lost:
            self.held.pop(rid, None)
        return len(held) - len(lost)

    def usage(self, levels: Sequence[Level]) -> list[BucketState]:
        return self.store.usage(self.claims(levels, Demand(0, 0.0)))


def refusal(state: BucketState, answer: StoreAnswer) -> tuple[object, ...]:
    """(status, code, limit, level, retry ms, too large, message), as `Refusal` has them."""
    claim, retry_ms = state.claim, answer.retry_after_ms
    spend = claim.name == SPEND
    code = "insufficient_quota" if spend else "rate_limit_exceeded"
    what = f"{describe(claim)} of {claim.level}"
    if answer.too_large:
        asked = f"${claim.amount / MICRO:g}" if spend else f"{claim.amount} tokens"
        message = (
            f"Request too large for {what}: it needs {asked}, more than the limit allows "
            "at once. Reduce the prompt or max_tokens."
        )
    else:
        if spend:
            used = f"${state.used / MICRO:g} used, this request is estimated at "
            used += f"${claim.amount / MICRO:g}"
        elif claim.kind == "window":
            used = f"{state.used} used, this request needs {claim.amount}"
        elif claim.kind == "count":
            used = f"{state.used} in the last {duration(claim.span_ms)}"
        else:
            used = f"{state.used} in flight"
        head = "Quota exceeded" if spend else "Rate limit reached"
        message = f"{head} for {what} ({used}). Please try again in {duration(retry_ms)}."
    return (429, code, claim.name, claim.level, retry_ms, answer.too_large, message)
