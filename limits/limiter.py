"""Admission and settlement across every level that applies to a request.

`admit(levels, demand)` reserves, atomically across all levels' limits, one request,
one concurrency slot, the estimated tokens and the estimated spend: all or nothing.
`settle(reservation, tokens, cost)` replaces the estimates with what the provider
reported (the reservation may have been too high or too low) and frees the slot;
`release` is a settlement with no usage (the request failed before any was
reported). Both are idempotent.

When the store cannot answer (Redis down or slow), each level follows its
`on_store_failure`: a request whose levels are all `fail_open` is admitted (counted
as such, with no reservation to settle); one with a `fail_closed` level is refused
with 503 `limit_store_unavailable`. Never a silent fall-back to per-process counting.

The refusal says which limit of which level refused, and when to retry; the
response headers are OpenAI's (`x-ratelimit-limit-requests`, `-remaining-`,
`-reset-`, and the same for tokens), for the tightest applicable limit.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from limits.claims import (
    CONCURRENT,
    MICRO,
    REQUESTS,
    SPEND,
    TOKENS,
    WINDOW_MS,
    Claim,
    ClaimState,
    Demand,
    Level,
    StoreAnswer,
    StoreUnavailable,
    claims_for,
)

log = logging.getLogger("seawall.limits")

KEY_PREFIX = "seawall:limit:"
#: Settlements kept while the store is down, at most (beyond: left to the TTLs).
MAX_UNSETTLED = 10_000


class Store(Protocol):
    #: Whether the counters are shared with other processes (Redis) or not (memory).
    shared: bool

    async def admit(self, rid: str, claims: Sequence[Claim]) -> StoreAnswer: ...

    async def settle(self, rid: str, claims: Sequence[Claim]) -> None: ...

    async def usage(self, claims: Sequence[Claim]) -> list[ClaimState]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Reservation:
    rid: str
    claims: tuple[Claim, ...]
    demand: Demand
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str
    limit: str
    level: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    reservation: Reservation | None = None
    refusal: Refusal | None = None
    headers: dict[str, str] | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


ADMITTED = Admission()


def duration(ms: int) -> str:
    """OpenAI's reset format: `250ms`, `1s`, `8.6s`, `6m0s`."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    minutes, rest = divmod(ms, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def rate_headers(states: Sequence[ClaimState]) -> dict[str, str]:
    """OpenAI's headers for the tightest request limit and the tightest token limit."""
    headers = {}
    for name, suffix in ((REQUESTS, "requests"), (TOKENS, "tokens")):
        candidates = [s for s in states if s.claim.name == name]
        if not candidates:
            continue
        tightest = min(candidates, key=lambda s: (s.remaining, s.claim.limit))
        headers[f"x-ratelimit-limit-{suffix}"] = str(tightest.claim.limit)
        headers[f"x-ratelimit-remaining-{suffix}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{suffix}"] = duration(tightest.reset_ms)
    return headers


def describe_limit(claim: Claim) -> str:
    if claim.name == SPEND:
        return f"spend_usd ${claim.limit / MICRO:g} per {claim.per}"
    if claim.name == CONCURRENT:
        return f"max_concurrent {claim.limit}"
    return f"{claim.name} {claim.limit}"


class Limiter:
    def __init__(
        self,
        store: Store,
        lease_s: float = 900,
        clock: Callable[[], float] = time.time,
        window_ms: int = WINDOW_MS,
    ) -> None:
        self.store = store
        self.lease_s = lease_s
        self._clock = clock
        self.window_ms = window_ms
        #: Decisions by (limit, level kind, result): allowed, refused,
        #: store_failure_open, store_failure_closed.
        self.decisions: dict[tuple[str, str, str], int] = {}
        self.store_errors = 0
        self.last_store_error: str | None = None
        #: Settlements the store could not take (it was down): replayed after its next
        #: answer, so an outage frees its leases when it ends, not `lease_s` later.
        self._unsettled: list[tuple[str, list[Claim]]] = []
        self._store_down = False

    def _count(self, claims: Sequence[Claim], result: str) -> None:
        for claim in claims:
            key = (claim.name, claim.level.split(":", 1)[0], result)
            self.decisions[key] = self.decisions.get(key, 0) + 1

    def claims(self, levels: Sequence[Level], demand: Demand) -> list[Claim]:
        return claims_for(
            tuple(levels), demand, self.lease_s, KEY_PREFIX, self._clock(), self.window_ms
        )

    async def admit(self, levels: Sequence[Level], demand: Demand) -> Admission:
        claims = self.claims(levels, demand)
        if not claims:
            return ADMITTED
        rid = uuid.uuid4().hex
        try:
            answer = await self.store.admit(rid, claims)
        except StoreUnavailable as exc:
            return self._store_failed(claims, exc)
        if self._store_down:
            self._store_down = False
            log.warning("limit store is back: counting resumed")
        if self._unsettled:
            await self._replay()
        if not answer.admitted:
            refused = claims[answer.refused_by]
            self._count([refused], "refused")
            return Admission(refusal=self._refusal(refused, answer.retry_after_ms))
        self._count(claims, "allowed")
        return Admission(Reservation(rid, tuple(claims), demand), None, rate_headers(answer.states))

    def _note_store_failure(self, exc: Exception) -> None:
        """Counted every time, logged once per outage: a store that is down for a
        minute at 1,000 requests a second must not write 60,000 log lines."""
        self.store_errors += 1
        self.last_store_error = str(exc)
        if not self._store_down:
            self._store_down = True
            log.warning(
                "limit store unavailable (%s): fail_open levels admit, fail_closed levels "
                "refuse with 503 until it answers again",
                exc,
            )

    def _store_failed(self, claims: Sequence[Claim], exc: Exception) -> Admission:
        self._note_store_failure(exc)
        closed = [c for c in claims if not c.fail_open]
        if not closed:
            self._count(claims, "store_failure_open")
            return ADMITTED
        self._count(closed, "store_failure_closed")
        first = closed[0]
        return Admission(
            refusal=Refusal(
                503,
                "limit_store_unavailable",
                f"The rate-limit store is unavailable and {first.level}'s "
                f"{describe_limit(first)} fails closed; retry shortly.",
                first.name,
                first.level,
                1.0,
            )
        )

    @staticmethod
    def _refusal(claim: Claim, retry_after_ms: int) -> Refusal:
        spend = claim.name == SPEND
        retry = retry_after_ms / 1000
        what = "Quota exceeded" if spend else "Rate limit reached"
        return Refusal(
            429,
            "insufficient_quota" if spend else "rate_limit_exceeded",
            f"{what} for {describe_limit(claim)} of {claim.level}. "
            f"Please try again in {math.ceil(retry * 10) / 10:g}s.",
            claim.name,
            claim.level,
            retry,
        )

    async def settle(
        self, reservation: Reservation | None, tokens: int | None, cost_usd: float | None
    ) -> None:
        """Actual usage replaces the estimates (None: keep the estimate, which is what
        a request whose usage is unknown is charged); the concurrency slot is freed."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        updates = []
        for claim in reservation.claims:
            if claim.name == TOKENS and tokens is not None:
                updates.append(claim.with_amount(max(0, tokens)))
            elif claim.name == SPEND and cost_usd is not None:
                updates.append(claim.with_amount(round(cost_usd * MICRO)))
            elif claim.name == CONCURRENT:
                updates.append(claim)
        if not updates:
            return
        try:
            await self.store.settle(reservation.rid, updates)
        except StoreUnavailable as exc:
            # Kept for when the store is back; if this process ends first, the
            # estimates stand and the lease expires by itself (`lease_s`).
            self._note_store_failure(exc)
            if len(self._unsettled) < MAX_UNSETTLED:
                self._unsettled.append((reservation.rid, updates))

    async def _replay(self) -> None:
        pending, self._unsettled = self._unsettled, []
        for rid, updates in pending:
            try:
                await self.store.settle(rid, updates)
            except StoreUnavailable:
                self._unsettled.append((rid, updates))

    async def release(self, reservation: Reservation | None) -> None:
        """No usage to report (failed before the provider answered): tokens and spend
        are refunded, the request itself still counts."""
        await self.settle(reservation, 0, 0.0)

    async def usage(self, levels: Sequence[Level]) -> list[ClaimState]:
        claims = self.claims(levels, Demand(0, 0.0))
        return await self.store.usage(claims) if claims else []
