"""Admission and settlement across every level that applies to a request.

`admit(levels, demand)` reserves, atomically across all levels' limits, one request,
one concurrency slot, the estimated tokens and the estimated spend: all or nothing.
`settle(reservation, tokens=..., cost_usd=...)` replaces the estimates with what
the provider reported (more or less than estimated) and frees the slot; `release`
is a settlement with no usage (the request failed before the provider answered:
tokens and spend are refunded, the request itself still counts). Both are
idempotent, and a reservation never leaks: its concurrency slot is a lease that
this limiter renews while the reservation is alive (every `lease_s / 3`), so a
long stream keeps it, and a crashed process's slots expire `lease_s` after their
last renewal. A reservation dropped without settlement (a bug) stops being renewed
once it is garbage, and expires the same way.

When the store cannot answer (Redis down or slow), each level follows its
`on_store_failure`: a request whose levels all fail open is admitted (counted, with
nothing to settle); one with a level that fails closed is refused (503
`limit_store_unavailable`). Never a silent fall-back to per-process counting. An
outage is one episode (`Limiter.outage`): logged once when the store first fails and
once when it answers again, with the requests admitted unchecked and refused in
between; nothing is logged per request.

A refusal says which limit of which level refused and when to retry; admissions
and refusals alike carry OpenAI's `x-ratelimit-*` headers for the tightest limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from limits.claims import (
    MICRO,
    SPEND,
    WINDOW_MS,
    BucketState,
    Claim,
    DecisionKey,
    Demand,
    Level,
    Plan,
    claims_for,
    describe,
    micro_usd,
    plan_claims,
)
from limits.headers import duration, plan_headers
from limits.store import Store, StoreAnswer, StoreUnavailable

log = logging.getLogger("seawall.limits")

#: Every bucket key starts with this (one Redis may serve other applications too).
KEY_PREFIX = "seawall:limit:"
#: A concurrency slot's lease, unless the limiter is told otherwise (`lease_s`).
DEFAULT_LEASE_S = 30.0
#: The retry hint of a refusal because the store is down and a level fails closed.
STORE_DOWN_RETRY_S = 1.0

#: Decision results, the `result` label of the decision counter.
ALLOWED, REFUSED = "allowed", "refused"
STORE_FAILURE_OPEN, STORE_FAILURE_CLOSED = "store_failure_open", "store_failure_closed"


@dataclass(slots=True, weakref_slot=True, eq=False)
class Reservation:
    """What one admission holds until it is settled or released."""

    rid: str
    #: The claims it was admitted for.
    plan: Plan
    demand: Demand
    #: When the store admitted it (ms since the epoch, the store's clock).
    at_ms: int
    #: What it reserved: tokens, and spend in micro-dollars (the demand's, as counted).
    tokens: int = 0
    cost: int = 0
    #: The period bucket of each spend claim (`<key>:2027-01-15`).
    periods: tuple[str, ...] = ()
    settled: bool = False

    @property
    def claims(self) -> tuple[Claim, ...]:
        """The claims as the store placed them (a spend claim knows its period's bucket),
        with this reservation's amounts."""
        claims = self.plan.with_amounts(self.tokens, self.cost)
        for index, bucket in zip(self.plan.periods, self.periods, strict=True):
            claims[index] = claims[index].placed(bucket)
        return tuple(claims)

    @property
    def leases(self) -> tuple[Claim, ...]:
        return self.plan.lease_claims


@dataclass(slots=True)
class Outage:
    """A store outage: since when (`time.monotonic()`), and the requests it admitted
    unchecked (every level fails open) and refused (a level fails closed)."""

    started: float
    admitted: int = 0
    refused: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    #: 429 for a limit; 503 when the store is down and a level fails closed.
    status: int
    #: `rate_limit_exceeded`, `insufficient_quota` (spend) or `limit_store_unavailable`.
    code: str
    #: Names the limit and the level, and when to retry.
    message: str
    limit: str  # requests_per_minute, tokens_per_minute, max_concurrent, spend_usd
    level: str  # tenant:acme, key:ci-bot, class:tight
    retry_after_s: float
    #: The request alone exceeds the limit (tokens or spend): retrying never helps.
    too_large: bool = False


@dataclass(slots=True)
class Admission:
    """Admitted (with a reservation to settle; none when nothing limits the request
    or the store was down and every level fails open) or refused.

    Not frozen, though nothing changes one after it is made: every limited request
    makes one, and a frozen dataclass's `__init__` sets each field through
    `object.__setattr__`."""

    reservation: Reservation | None = None
    refusal: Refusal | None = None
    #: OpenAI's `x-ratelimit-*` headers for the tightest limits (admitted or refused).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: When the store decided (ms since the epoch, its clock); None when it did not.
    at_ms: int | None = None
    #: Admitted without counting: the store was down and every level fails open.
    unchecked: bool = False

    @property
    def allowed(self) -> bool:
        return self.refusal is None


UNLIMITED = Admission()


class Limiter:
    def __init__(
        self,
        store: Store,
        lease_s: float = DEFAULT_LEASE_S,
        *,
        window_ms: int = WINDOW_MS,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        """`lease_s`: a concurrency slot's time to live after its last renewal;
        `window_ms`: the length of a "minute" (tests shorten it; nothing in the
        algorithm depends on it)."""
        self.store = store
        self.lease_s = lease_s
        self.window_ms = window_ms
        self.key_prefix = key_prefix
        #: Leases are renewed this often: a renewal may come up to a third of a
        #: lease late (a busy event loop) and still find its lease held.
        self.renew_every_s = lease_s / 3
        #: Decisions by (limit, level kind, result), but for admissions (see `decisions`).
        self._decisions: dict[DecisionKey, int] = {}
        #: Admissions by the counter keys of their plan's claims: one increment per
        #: admission, spread over the keys only when the counters are read.
        self._tallies: dict[tuple[DecisionKey, ...], list[int]] = {}
        #: Leases found expired at renewal (the process stalled longer than
        #: two thirds of a lease): their requests ran on without a slot.
        self.leases_lost = 0
        self.last_store_error: str | None = None
        #: The store outage under way (None: the store answers): logged once when it
        #: starts and once when it ends, with what it did to requests in between.
        self.outage: Outage | None = None
        #: The reservations holding leases, by id: weak references, so one dropped
        #: without settlement (a bug) stops being renewed once it is garbage (the
        #: renewer forgets dead ones). A plain dict of `weakref.ref`s, not a
        #: `WeakValueDictionary`: a third of the cost per request.
        self._held: dict[str, weakref.ref[Reservation]] = {}
        #: Reservation ids: this limiter's random prefix and a counter, unique across
        #: the replicas sharing a store without a random draw per request.
        self._rid_prefix = os.urandom(6).hex()
        self._rids = itertools.count()
        self._renewer: asyncio.Task[None] | None = None

    @property
    def store_errors(self) -> int:
        """Store calls that failed or timed out (admissions, settlements, renewals)."""
        return self.store.failures

    @property
    def decisions(self) -> dict[DecisionKey, int]:
        """Decisions by (limit, level kind, result): `allowed` counts every limit of
        an admitted request, `refused` the limit that refused, and the store
        failures what each limit did about it. A fresh dict (for metrics, tests)."""
        counted = dict(self._decisions)
        for keys, (admitted,) in self._tallies.items():
            if admitted:
                for key in keys:
                    counted[key] = counted.get(key, 0) + admitted
        return counted

    def claims(self, levels: Sequence[Level], demand: Demand) -> list[Claim]:
        return claims_for(
            levels,
            demand,
            lease_ms=round(self.lease_s * 1000),
            prefix=self.key_prefix,
            window_ms=self.window_ms,
        )

    def plan(self, levels: Sequence[Level]) -> Plan:
        """The claims of `levels` worked out once, for every request that names the
        same levels (the limits stage keeps one per caller and limit classes)."""
        claims = plan_claims(
            levels,
            lease_ms=round(self.lease_s * 1000),
            prefix=self.key_prefix,
            window_ms=self.window_ms,
        )
        plan = Plan(claims)
        plan.tally = self._tallies.setdefault(plan.allowed_keys, [0])
        return plan

    # -- admission ---------------------------------------------------------------

    async def admit(self, levels: Sequence[Level] | Plan, demand: Demand) -> Admission:
        """Admit `demand` on every level of `levels` (better: of a plan made once
        by `plan`), or on none."""
        plan = levels if isinstance(levels, Plan) else self.plan(levels)
        claims = plan.claims
        if not claims:
            return UNLIMITED
        tokens = cost = 0
        if plan.counts_tokens:
            tokens = max(0, demand.tokens)
            cost = micro_usd(max(0.0, demand.cost_usd))
        rid = f"{self._rid_prefix}{next(self._rids):x}"
        try:
            answer = await self.store.admit(rid, plan, tokens, cost)
        except StoreUnavailable as exc:
            return self._store_failed(claims, exc)
        if self.outage is not None:
            self._store_answered()
        headers = plan_headers(plan, answer.used, answer.resets)
        if not answer.admitted:
            index = answer.refused_by
            claim = plan.with_amounts(tokens, cost)[index]
            if claim.kind == "period":
                claim = claim.placed(answer.periods[plan.periods.index(index)])
            refused = BucketState(claim, answer.used[index], 0, answer.resets[index])
            self._count([claim], REFUSED)
            refusal = _refusal(refused, answer)
            return Admission(None, refusal, headers, answer.at_ms)
        plan.tally[0] += 1
        reservation = Reservation(
            rid, plan, demand, answer.at_ms, tokens, cost, tuple(answer.periods)
        )
        if plan.lease_claims:
            self._hold(reservation)
        return Admission(reservation, None, headers, answer.at_ms)

    def _count(self, claims: Sequence[Claim], result: str) -> None:
        decisions = self._decisions
        for claim in claims:
            key = (claim.name, claim.level.split(":", 1)[0], result)
            decisions[key] = decisions.get(key, 0) + 1

    def _store_failed(self, claims: Sequence[Claim], exc: StoreUnavailable) -> Admission:
        outage = self._store_down(exc)
        closed = [c for c in claims if not c.fail_open]
        if not closed:
            self._count(claims, STORE_FAILURE_OPEN)
            outage.admitted += 1
            return Admission(unchecked=True)
        self._count(closed, STORE_FAILURE_CLOSED)
        outage.refused += 1
        first = closed[0]
        refusal = Refusal(
            503,
            "limit_store_unavailable",
            f"The rate-limit store is unavailable and {first.level}'s {describe(first)} "
            f"fails closed; please try again shortly.",
            first.name,
            first.level,
            STORE_DOWN_RETRY_S,
        )
        return Admission(refusal=refusal)

    # -- store outages -------------------------------------------------------------

    def _store_down(self, exc: StoreUnavailable) -> Outage:
        """The outage `exc` is part of: a new one is logged (once, as it starts)."""
        self.last_store_error = str(exc)
        outage = self.outage
        if outage is None:
            outage = self.outage = Outage(time.monotonic())
            log.warning(
                "limit store unavailable (%s): fail_open levels admit unchecked, "
                "fail_closed levels answer 503 limit_store_unavailable, until it answers "
                "again (logged once, with the counts, when it does)",
                exc,
                extra={"episode": "limit_store_outage"},
            )
        return outage

    def _store_answered(self) -> None:
        """The store answered: the outage under way, if any, is over (logged once)."""
        outage = self.outage
        if outage is None:
            return
        self.outage = None
        log.warning(
            "limit store answered again after %.1f s: %d requests admitted unchecked, %d refused",
            time.monotonic() - outage.started,
            outage.admitted,
            outage.refused,
            extra={
                "episode": "limit_store_outage",
                "admitted_unchecked": outage.admitted,
                "refused": outage.refused,
            },
        )

    # -- settlement --------------------------------------------------------------

    async def settle(
        self,
        reservation: Reservation | None,
        tokens: int | None = None,
        cost_usd: float | None = None,
    ) -> None:
        """Actual usage replaces the estimates: `tokens` (prompt plus completion)
        and `cost_usd`; None keeps that estimate as the charge (usage unknown). The
        concurrency slot is freed. Settling again, or releasing after, does nothing.
        Never raises: a store that is down applies it when it is back."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        plan = reservation.plan
        if plan.lease_claims:
            self._held.pop(reservation.rid, None)
        if plan.settles:
            actual = reservation.tokens if tokens is None else max(0, tokens)
            cost = reservation.cost if cost_usd is None else micro_usd(max(0.0, cost_usd))
            await self.store.settle(reservation.rid, plan, reservation.periods, actual, cost)

    async def release(self, reservation: Reservation | None) -> None:
        """No usage to report (the request failed before the provider answered):
        tokens and spend are refunded, the slot freed; the request still counts."""
        await self.settle(reservation, 0, 0.0)

    # -- leases ------------------------------------------------------------------

    def _hold(self, reservation: Reservation) -> None:
        self._held[reservation.rid] = weakref.ref(reservation)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self.renew_every_s)
            try:
                await self.renew_leases()
            except Exception:  # the renewer must outlive any one failure
                log.exception("renewing concurrency leases failed")

    async def renew_leases(self) -> int:
        """Renew the lease of every unsettled reservation this limiter admitted (the
        background renewer calls this every `renew_every_s`); returns how many were
        renewed. A lease found expired is counted in `leases_lost`."""
        held = []
        for rid, ref in list(self._held.items()):
            reservation = ref()
            if reservation is None:
                del self._held[rid]  # dropped unsettled (a bug): its lease expires
            elif not reservation.settled:
                held.append(reservation)
        leases = [(r.rid, r.plan) for r in held if r.plan.lease_claims]
        if not leases:
            return 0
        try:
            lost = await self.store.renew(leases)
        except StoreUnavailable as exc:
            self._store_down(exc)
            return 0
        if self.outage is not None:
            self._store_answered()
        for rid in lost:
            self._held.pop(rid, None)
        self.leases_lost += len(lost)
        return len(held) - len(lost)

    # -- what the counters hold --------------------------------------------------

    async def usage(self, levels: Sequence[Level]) -> list[BucketState]:
        """Each limit of `levels` as the store counts it now. Raises `StoreUnavailable`."""
        claims = self.claims(levels, Demand(0, 0.0))
        return await self.store.usage(claims) if claims else []

    async def snapshot(self, levels: Sequence[Level]) -> list[dict[str, Any]]:
        """`usage` for people (`GET /admin/limits`): per limit per level, the limit
        (`max`), what is `used` (settled usage plus unsettled reservations), the
        part of it `reserved`, what `remaining`, and the `reset` (`reset_ms`).
        Spend is in USD. Raises `StoreUnavailable`."""
        by_level = {level.name: level for level in levels}
        return [_describe_state(s, by_level[s.claim.level]) for s in await self.usage(levels)]

    async def aclose(self) -> None:
        """Stop renewing leases and close the store."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self.store.aclose()


def _refusal(state: BucketState, answer: StoreAnswer) -> Refusal:
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
    return Refusal(429, code, message, claim.name, claim.level, retry_ms / 1000, answer.too_large)


def _describe_state(state: BucketState, level: Level) -> dict[str, Any]:
    claim = state.claim
    spend = claim.name == SPEND

    def amount(value: int) -> int | float:
        return value / MICRO if spend else value

    described: dict[str, Any] = {
        "level": claim.level,
        "limit": claim.name,
        "max": amount(claim.limit),
        "used": amount(state.used),
        "reserved": amount(state.reserved),
        "remaining": amount(state.remaining),
        "reset_ms": state.reset_ms,
        "reset": duration(state.reset_ms),
        "on_store_failure": level.config.on_store_failure,
    }
    if spend:
        described["per"] = claim.per
        described["period"] = (claim.bucket or "").rsplit(":", 1)[-1]
    return described
