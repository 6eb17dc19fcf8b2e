"""Limits in one process: the algorithm against a naive reference model (hypothesis),
its exact bounds, reservation and settlement, leases and their renewal, spend
periods, refusals and OpenAI's headers. Redis: tests/test_limits_redis.py."""

from __future__ import annotations

import asyncio
import calendar
import gc
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from limits import Demand, Level, Limiter, MemoryStore
from limits.claims import MICRO, BucketState, micro_usd
from limits.config import LimitsConfig, SpendLimit
from limits.headers import duration, plan_headers, rate_headers
from limits.periods import period_of
from tests.examples import examples
from tests.limit_strategies import admits, configs
from tests.support import FakeClock

WINDOW = 60_000
LEASE_S = 30.0
LEASE = 30_000
#: 2027-01-31 23:58:30 UTC: the operations below cross a day and a month.
START = calendar.timegm((2027, 1, 31, 23, 58, 30))


def limiter_at(start: float = START, lease_s: float = LEASE_S) -> tuple[Limiter, FakeClock]:
    clock = FakeClock(start)
    return Limiter(MemoryStore(clock), lease_s), clock


def level(name: str = "tenant:t", **limits: Any) -> Level:
    return Level(name, LimitsConfig(**limits))


# -- the reference model ------------------------------------------------------------------


@dataclass
class Record:
    """One admission as the model sees it."""

    levels: tuple[str, ...]
    at: int
    tokens: int  # the estimate
    cost: int  # micro-dollars, the estimate
    actual_tokens: int | None = None
    actual_cost: int | None = None
    lease_until: int | None = None  # None: released
    renewed: bool = True  # still renewed by a live process
    reservation: Any = None  # the limiter's; None once dropped

    @property
    def settled(self) -> bool:
        return self.actual_tokens is not None

    def charge(self) -> int:
        return self.tokens if self.actual_tokens is None else self.actual_tokens

    def spend(self) -> int:
        return self.cost if self.actual_cost is None else self.actual_cost


class Model:
    """Naive recomputation from the full history, for every question."""

    def __init__(self, levels: dict[str, LimitsConfig]) -> None:
        self.configs = levels
        self.records: list[Record] = []

    def live(self, name: str, now: int) -> list[Record]:
        return [r for r in self.records if name in r.levels and now - r.at < WINDOW]

    def used(self, name: str, limit: str, now: int) -> tuple[int, int]:
        """(used, reserved) of one limit of one level at `now`."""
        config = self.configs[name]
        if limit == "requests_per_minute":
            return len(self.live(name, now)), 0
        if limit == "tokens_per_minute":
            live = self.live(name, now)
            return sum(r.charge() for r in live), sum(r.tokens for r in live if not r.settled)
        if limit == "max_concurrent":
            held = self.held(name, now)
            return held, held
        assert config.spend_usd is not None
        per = config.spend_usd.per
        current = period_of(per, now)[0]
        here = [r for r in self.records if name in r.levels and period_of(per, r.at)[0] == current]
        return sum(r.spend() for r in here), sum(r.cost for r in here if not r.settled)

    def held(self, name: str, now: int) -> int:
        return sum(
            1
            for r in self.records
            if name in r.levels and r.lease_until is not None and r.lease_until > now
        )

    def fits(self, name: str, limit: str, amount: int, now: int) -> bool:
        cap = limit_value(self.configs[name], limit)
        return self.used(name, limit, now)[0] + amount <= cap

    def expected(
        self, names: Sequence[str], tokens: int, cost: int, now: int
    ) -> tuple[str, str, int, bool] | None:
        """None when admitted, else (limit, level, retry ms, too large), each limit of
        each level in order, the first that does not fit."""
        for name in names:
            config = self.configs[name]
            for limit in LIMITS:
                cap = limit_value(config, limit)
                if cap is None:
                    continue
                amount = {"tokens_per_minute": tokens, "spend_usd": cost}.get(limit, 1)
                if self.fits(name, limit, amount, now):
                    continue
                return (limit, name, *self.wait(name, limit, amount, cap, now))
        return None

    def wait(self, name: str, limit: str, amount: int, cap: int, now: int) -> tuple[int, bool]:
        """When it would fit if nothing were settled meanwhile: the first instant at
        which an admission ages out and it fits (windows); the lease hint; the
        period's end."""
        if limit == "max_concurrent":
            earliest = min(
                r.lease_until
                for r in self.records
                if name in r.levels and r.lease_until is not None and r.lease_until > now
            )
            return max(1, min(1000, earliest - now)), False
        if limit == "spend_usd":
            per = self.configs[name].spend_usd.per  # type: ignore[union-attr]
            return period_of(per, now)[1] - now, amount > cap
        if amount > cap:
            return WINDOW, True
        for moment in sorted(r.at + WINDOW for r in self.live(name, now)):
            if self.fits(name, limit, amount, moment):
                return moment - now, False
        raise AssertionError("a claim within its limit fits once its window is empty")


LIMITS = ("requests_per_minute", "tokens_per_minute", "max_concurrent", "spend_usd")


def limit_value(config: LimitsConfig, limit: str) -> int | None:
    if limit == "spend_usd":
        return None if config.spend_usd is None else micro_usd(config.spend_usd.amount)
    value: int | None = getattr(config, limit)
    return value


operations = st.lists(
    st.one_of(
        admits,
        admits,
        admits,
        st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 160), st.integers(0, 80)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
        st.tuples(st.just("wait"), st.integers(1, 4_000)),
        st.tuples(st.just("wait"), st.integers(4_000, 40_000)),
        st.tuples(st.just("renew")),
    ),
    max_size=80,
)


@settings(max_examples=examples(300), deadline=None)
@given(configs, configs, configs, operations)
def test_the_limiter_decides_exactly_as_a_naive_model(
    tenant: LimitsConfig, key_a: LimitsConfig, key_b: LimitsConfig, ops: list[tuple[Any, ...]]
) -> None:
    """Every decision (admitted or which limit of which level refused, and the retry
    hint), and every bucket's used and reserved amounts, equal a model that
    recomputes them from the whole history: two keys of one tenant; admissions,
    settlements above and below the estimate, releases, double settlements,
    reservations dropped unsettled (a crash), lease renewals, time passing over a
    UTC day and month boundary."""
    model = Model({"tenant:t": tenant, "key:a": key_a, "key:b": key_b})
    chains = (("tenant:t", "key:a"), ("tenant:t", "key:b"))

    async def run() -> None:
        limiter, clock = limiter_at()
        levels = {name: Level(name, config) for name, config in model.configs.items()}

        def now() -> int:
            return round(clock.now * 1000)

        async def admit(names: tuple[str, str], tokens: int, cost: int) -> None:
            """In a function of its own: the test keeps a reservation only in its
            record, so dropping it there drops it."""
            expected = model.expected(names, tokens, cost, now())
            admission = await limiter.admit(
                [levels[n] for n in names], Demand(tokens, cost / MICRO)
            )
            if expected is None:
                assert admission.allowed, admission.refusal
                leased = any(levels[n].config.max_concurrent for n in names)
                lease_until = now() + LEASE if leased else None
                record = Record(names, now(), tokens, cost, lease_until=lease_until)
                record.reservation = admission.reservation
                model.records.append(record)
                return
            refusal = admission.refusal
            assert refusal is not None, expected
            limit, name, retry, too_large = expected
            event(f"refused by {limit}{' (too large)' if too_large else ''}")
            assert (refusal.limit, refusal.level) == (limit, name)
            assert round(refusal.retry_after_s * 1000) == retry
            assert refusal.too_large == too_large
            code = "insufficient_quota" if limit == "spend_usd" else "rate_limit_exceeded"
            assert refusal.code == code and name in refusal.message

        for op in ops:
            if op[0] == "admit":
                await admit(chains[op[1]], op[2], op[3] * 10_000)
            elif op[0] in ("settle", "release", "drop"):
                live = [r for r in model.records if r.reservation is not None]
                if not live:
                    continue
                record = live[op[1] % len(live)]
                if op[0] == "drop":
                    record.reservation = None
                    record.renewed = False
                    gc.collect()
                    continue
                tokens, cost = (op[2], op[3] * 10_000) if op[0] == "settle" else (0, 0)
                if op[0] == "settle":
                    await limiter.settle(record.reservation, tokens=tokens, cost_usd=cost / MICRO)
                else:
                    await limiter.release(record.reservation)
                if not record.settled:
                    record.actual_tokens, record.actual_cost = tokens, cost
                    record.lease_until = None
                    record.renewed = False
                # Settling again is nothing: the model already says so.
                await limiter.settle(record.reservation, tokens=tokens + 7, cost_usd=1.0)
            elif op[0] == "wait":
                clock.advance(op[1] / 1000)
            else:
                await limiter.renew_leases()
                for record in model.records:
                    if record.renewed and record.lease_until is not None:
                        if record.lease_until > now():
                            record.lease_until = now() + LEASE
                        else:
                            record.renewed = False
            await check_buckets(limiter, levels, model, now())
        check_history(model)

    asyncio.run(run())


async def check_buckets(limiter: Limiter, levels: dict[str, Level], model: Model, now: int) -> None:
    for state in await limiter.usage(list(levels.values())):
        name, limit = state.claim.level, state.claim.name
        assert (state.used, state.reserved) == model.used(name, limit, now), (name, limit)
        if limit == "max_concurrent":
            assert state.used <= state.claim.limit  # concurrency never exceeds its limit


def check_history(model: Model) -> None:
    """The guarantees, read off the history alone: in any window, admitted requests
    never exceed the limit, and tokens never exceed it by more than the settlements
    above their estimates (debt); per period, spend likewise."""
    for name, config in model.configs.items():
        mine = [r for r in model.records if name in r.levels]
        for r in mine:
            window = [u for u in mine if r.at - WINDOW < u.at <= r.at]
            if config.requests_per_minute is not None:
                assert len(window) <= config.requests_per_minute
            if config.tokens_per_minute is not None:
                debt = sum(max(0, u.charge() - u.tokens) for u in window)
                assert sum(u.charge() for u in window) <= config.tokens_per_minute + debt
        if config.spend_usd is not None:
            per = config.spend_usd.per
            for period in {period_of(per, r.at)[0] for r in mine}:
                spent = [r for r in mine if period_of(per, r.at)[0] == period]
                debt = sum(max(0, r.spend() - r.cost) for r in spent)
                assert sum(r.spend() for r in spent) <= micro_usd(config.spend_usd.amount) + debt


# -- the bounds under sustained overload ---------------------------------------------------


@settings(max_examples=examples(30), deadline=None)
@given(
    st.integers(1, 50),
    st.integers(100, 2_000),
    st.lists(st.integers(1, 40), min_size=1, max_size=20),
    st.integers(20, 400),
)
def test_under_overload_every_window_holds_the_limit_less_one_request_at_most(
    rpm: int, tpm: int, sizes: list[int], gap_ms: int
) -> None:
    """Demand far above the limit (an attempt every `gap_ms` for three minutes): no
    60 s window ever holds more than the limit, and at every refusal the window
    already held more than `limit - amount` (requests: the whole limit). So once
    the first window has filled, every window holds at least `limit - largest
    request + 1` tokens: 99% of the limit whenever requests are at most 1% of it."""

    async def run() -> None:
        limiter, clock = limiter_at()
        levels = [level(requests_per_minute=rpm, tokens_per_minute=tpm)]
        window: deque[tuple[int, int]] = deque()  # admissions of the last 60 s
        in_window = 0
        for n in range(180_000 // gap_ms):
            tokens = sizes[n % len(sizes)]
            at = round(clock.now * 1000)
            while window and window[0][0] <= at - WINDOW:
                in_window -= window.popleft()[1]
            admission = await limiter.admit(levels, Demand(tokens))
            if admission.allowed:
                window.append((at, tokens))
                in_window += tokens
                assert len(window) <= rpm and in_window <= tpm
            else:
                assert admission.refusal is not None
                if admission.refusal.limit == "requests_per_minute":
                    assert len(window) == rpm
                else:
                    assert in_window > tpm - tokens
            clock.advance(gap_ms / 1000)

    asyncio.run(run())


def test_a_flood_is_cut_at_exactly_the_limit_in_every_window() -> None:
    """RPM 600, an attempt every 10 ms for three minutes: every 60 s window from the
    first admission on holds exactly 600 (100% of the limit, never 601)."""

    async def run() -> list[int]:
        limiter, clock = limiter_at()
        levels = [level(requests_per_minute=600)]
        admitted = []
        for _ in range(18_000):
            if (await limiter.admit(levels, Demand(1))).allowed:
                admitted.append(round(clock.now * 1000))
            clock.advance(0.01)
        return admitted

    admitted = asyncio.run(run())
    first = admitted[0]
    for start in range(first, admitted[-1] - WINDOW, 1_000):
        assert sum(1 for t in admitted if start <= t < start + WINDOW) == 600


# -- reservation and settlement --------------------------------------------------------------


def test_a_refusal_reserves_nothing_at_any_level() -> None:
    async def run() -> None:
        limiter, _ = limiter_at()
        tenant = level("tenant:acme", requests_per_minute=5, tokens_per_minute=1000)
        key = level("key:ci", requests_per_minute=2, max_concurrent=10)
        for _ in range(2):
            assert (await limiter.admit([tenant, key], Demand(100))).allowed
        refused = await limiter.admit([tenant, key], Demand(100))
        assert refused.refusal is not None and refused.refusal.level == "key:ci"
        assert refused.refusal.code == "rate_limit_exceeded"
        assert "requests_per_minute 2 of key:ci" in refused.refusal.message
        assert 59 < refused.refusal.retry_after_s <= 60
        states = {(s.claim.level, s.claim.name): s for s in await limiter.usage([tenant, key])}
        assert states["tenant:acme", "requests_per_minute"].used == 2
        assert states["tenant:acme", "tokens_per_minute"].used == 200
        assert states["key:ci", "max_concurrent"].used == 2
        assert limiter.decisions[("requests_per_minute", "key", "refused")] == 1
        assert limiter.decisions[("tokens_per_minute", "tenant", "allowed")] == 2

    asyncio.run(run())


def test_settlement_refunds_charges_debt_and_happens_once() -> None:
    async def run() -> None:
        limiter, clock = limiter_at()
        levels = [level(tokens_per_minute=1000, max_concurrent=5)]

        async def tokens() -> tuple[int, int]:
            state = (await limiter.usage(levels))[0]
            return state.used, state.reserved

        first = await limiter.admit(levels, Demand(900))
        assert await tokens() == (900, 900)
        assert not (await limiter.admit(levels, Demand(200))).allowed
        await limiter.settle(first.reservation, tokens=100)  # used less: refunded
        assert await tokens() == (100, 0)
        second = await limiter.admit(levels, Demand(800))
        await limiter.settle(second.reservation, tokens=1500)  # used more: debt
        assert await tokens() == (1600, 0)
        await limiter.settle(second.reservation, tokens=1)  # twice is once
        await limiter.release(second.reservation)  # and so is a release after
        assert await tokens() == (1600, 0)
        refused = await limiter.admit(levels, Demand(0))  # in debt, nothing passes
        assert refused.refusal is not None and "1600 used" in refused.refusal.message
        clock.advance(61)  # the debt ages out with its admission
        third = await limiter.admit(levels, Demand(1000))
        assert third.allowed
        await limiter.release(third.reservation)  # failed before any usage: refunded
        assert await tokens() == (0, 0)
        kept = await limiter.admit(levels, Demand(300))
        await limiter.settle(kept.reservation)  # usage unknown: the estimate is the charge
        assert await tokens() == (300, 0)
        assert (await limiter.usage(levels))[1].used == 0  # every slot freed
        await limiter.release(None)  # nothing to release: fine

    asyncio.run(run())


def test_spend_is_a_quota_per_utc_day_and_month() -> None:
    async def run() -> None:
        limiter, clock = limiter_at(calendar.timegm((2027, 1, 31, 23, 59, 0)))
        daily = [level("key:d", spend_usd=SpendLimit(amount=1.0, per="day"))]
        monthly = [level("key:m", spend_usd=SpendLimit(amount=1.0, per="month"))]
        first = await limiter.admit(daily, Demand(0, 0.75))
        assert first.reservation is not None
        assert first.reservation.claims[0].bucket == "seawall:limit:key:d:spend_usd:2027-01-31"
        refused = await limiter.admit(daily, Demand(0, 0.5))
        assert refused.refusal is not None and refused.refusal.code == "insufficient_quota"
        assert "spend_usd $1 per day of key:d" in refused.refusal.message
        assert refused.refusal.retry_after_s == 60  # midnight
        assert refused.refusal.status == 429 and not refused.refusal.too_large
        too_large = await limiter.admit(daily, Demand(0, 1.5))
        assert too_large.refusal is not None and too_large.refusal.too_large
        assert (await limiter.admit(monthly, Demand(0, 0.9))).allowed
        clock.advance(60)  # 2027-02-01 00:00:00: a new day and a new month
        # Settled after midnight: corrects the day it was admitted in, not this one.
        await limiter.settle(first.reservation, cost_usd=0.25)
        assert (await limiter.admit(daily, Demand(0, 0.99))).allowed
        assert (await limiter.admit(monthly, Demand(0, 0.99))).allowed
        snapshot = await limiter.snapshot(daily + monthly)
        assert [(s["period"], s["used"], s["max"], s["reset"]) for s in snapshot] == [
            ("2027-02-01", 0.99, 1.0, "24h0m0s"),
            ("2027-02", 0.99, 1.0, "672h0m0s"),  # February 2027 has 28 days
        ]

    asyncio.run(run())


# -- leases ------------------------------------------------------------------------------------


def test_leases_are_renewed_while_held_and_expire_when_not() -> None:
    """A long stream keeps its slot past the lease's TTL because the limiter renews
    it; a reservation nobody holds any more (a crash, a bug) is not renewed and
    frees its slot one TTL later; a renewal that comes too late is counted."""

    async def run() -> None:
        limiter, clock = limiter_at(lease_s=30)
        levels = [level(max_concurrent=2)]
        streaming = await limiter.admit(levels, Demand(0))
        crashed = await limiter.admit(levels, Demand(0))
        assert crashed.reservation is not None
        del crashed
        gc.collect()
        for _ in range(12):  # two minutes, renewed every 10 s as the renewer does
            clock.advance(10)
            await limiter.renew_leases()
        held = (await limiter.usage(levels))[0]
        assert held.used == 1  # the stream's, renewed; the crashed one expired
        await limiter.settle(streaming.reservation)
        assert (await limiter.usage(levels))[0].used == 0
        late = await limiter.admit(levels, Demand(0))
        clock.advance(31)  # the event loop stalled past the lease
        assert await limiter.renew_leases() == 0
        assert limiter.leases_lost == 1
        assert late.reservation is not None

    asyncio.run(run())


def test_the_renewer_runs_by_itself_and_stops_with_the_limiter() -> None:
    async def run() -> None:
        limiter = Limiter(MemoryStore(), lease_s=0.6)  # renewed every 0.2 s
        levels = [level(max_concurrent=1)]
        admission = await limiter.admit(levels, Demand(0))
        await asyncio.sleep(1.3)  # twice the lease: only renewal kept it
        assert not (await limiter.admit(levels, Demand(0))).allowed
        assert limiter.leases_lost == 0
        await limiter.release(admission.reservation)
        assert (await limiter.admit(levels, Demand(0))).allowed
        await limiter.aclose()

    asyncio.run(run())


# -- headers and names ----------------------------------------------------------------------


def test_openai_headers_speak_for_the_tightest_limits() -> None:
    async def run() -> tuple[dict[str, str], dict[str, str]]:
        limiter, clock = limiter_at()
        levels = [
            level("tenant:a", requests_per_minute=100, tokens_per_minute=9000),
            level("key:k", requests_per_minute=10, tokens_per_minute=20_000),
        ]
        admitted = await limiter.admit(levels, Demand(500))
        clock.advance(0.25)
        refused = await limiter.admit(levels, Demand(8600))
        return dict(admitted.headers), dict(refused.headers)

    admitted, refused = asyncio.run(run())
    assert admitted == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "9000",
        "x-ratelimit-remaining-tokens": "8500",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    assert refused == {  # a refusal carries them too, as the buckets stand
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "59.75s",
        "x-ratelimit-limit-tokens": "9000",
        "x-ratelimit-remaining-tokens": "8500",
        "x-ratelimit-reset-tokens": "59.75s",
    }
    assert rate_headers([]) == {}


@given(
    st.lists(st.tuples(st.integers(1, 50), st.booleans(), st.booleans()), min_size=1, max_size=6),
    st.data(),
)
@settings(max_examples=examples(300), deadline=None)
def test_plan_headers_are_the_headers_of_every_bucket_state(
    levels: list[tuple[int, bool, bool]], data: st.DataObject
) -> None:
    """The one-pass headers of an admission (`plan_headers`, read off the store's
    answer) against `rate_headers` over every bucket's state: any mix of levels
    with requests and tokens limits, small limits so that ties and settlement debt
    (used past the limit, on several levels at once) come up."""
    chosen = [
        Level(f"tenant:l{n}", LimitsConfig(
            requests_per_minute=limit if requests else None,
            tokens_per_minute=limit * 2 if tokens else None,
            max_concurrent=3,
        ))
        for n, (limit, requests, tokens) in enumerate(levels)
    ]  # fmt: skip
    plan = Limiter(MemoryStore()).plan(chosen)
    used = [data.draw(st.integers(0, 120)) for _ in plan.claims]
    resets = [data.draw(st.integers(0, WINDOW)) for _ in plan.claims]
    states = [BucketState(claim, used[i], 0, resets[i]) for i, claim in enumerate(plan.claims)]
    assert plan_headers(plan, used, resets) == rate_headers(states)


def test_durations_are_written_as_openai_writes_them() -> None:
    cases = {0: "0s", 1: "1ms", 250: "250ms", 1000: "1s", 8640: "8.64s", 60_000: "1m0s"}
    cases |= {360_000: "6m0s", 61_500: "1m1.5s", 3_600_000: "1h0m0s", 90_061_001: "25h1m1.001s"}
    assert {ms: duration(ms) for ms in cases} == cases


def _duration_by_float(ms: int) -> str:
    """Go's format worked out through seconds as a float, the plain way: what the
    integer arithmetic of `duration` must always agree with."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


@given(st.one_of(st.integers(-10, 200_000), st.integers(0, 10**12)))
def test_durations_agree_with_the_float_formula(ms: int) -> None:
    assert duration(ms) == _duration_by_float(ms)


def test_levels_without_limits_admit_with_nothing_to_settle() -> None:
    async def run() -> None:
        limiter, _ = limiter_at()
        admission = await limiter.admit([level()], Demand(10**9, 10**6))
        assert admission.allowed and admission.reservation is None and not admission.headers
        await limiter.settle(admission.reservation, tokens=5)

    asyncio.run(run())


def test_a_level_named_twice_is_charged_once() -> None:
    async def run() -> None:
        limiter, _ = limiter_at()
        first = level("class:tight", requests_per_minute=2)
        again = level("class:tight", requests_per_minute=1000)
        assert (await limiter.admit([first, again], Demand(0))).allowed
        assert (await limiter.admit([first, again], Demand(0))).allowed
        refused = await limiter.admit([first, again], Demand(0))
        assert refused.refusal is not None and "requests_per_minute 2" in refused.refusal.message

    asyncio.run(run())
