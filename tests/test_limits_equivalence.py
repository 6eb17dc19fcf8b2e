"""The O(1) limiter (plans made once, running sums, one pass over a request's buckets,
headers read off two kinds of claim, counters per plan) decides exactly as the limiter
it replaced, kept in tests/limits_reference.py: over random sequences of admissions
(through a plan, as the limits stage admits, and through levels), settlements above
and below the estimate, settlements with usage unknown, releases, double settlements,
reservations dropped unsettled, lease renewals and time passing over a UTC day and
month, the same admissions, the same refusals (limit, level, code, retry hint,
too-large flag, message), the same headers, the same reservations (claims, amounts,
period buckets), the same counters, and after every step the same buckets. On the
memory store and on Redis."""

from __future__ import annotations

import asyncio
import calendar
import gc
import os
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis as redis_py
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from limits import Admission, Demand, Level, Limiter, MemoryStore
from limits.claims import MICRO, Claim
from limits.config import LimitsConfig, SpendLimit
from limits.memory import PENDING_SWEEP_MIN
from limits.periods import DAY_MS
from limits.redis_store import RedisStore
from limits.store import StoreUnavailable
from tests import limits_reference as reference
from tests.examples import examples
from tests.limit_strategies import configs
from tests.services import RedisServer
from tests.support import FakeClock

#: 2027-01-31 23:58:30 UTC: the operations below cross a day and a month.
START = calendar.timegm((2027, 1, 31, 23, 58, 30))
NAMES = ("tenant:t", "key:a", "key:b", "class:c")
#: Chains as the limits stage builds them: the tenant, a key, a limit class; one names
#: a level twice (charged once: the first one's limits apply).
CHAINS = (
    ("tenant:t", "key:a"),
    ("tenant:t", "key:b"),
    ("tenant:t", "key:a", "class:c"),
    ("class:c", "key:b", "class:c"),
)
#: `configs` with either store-failure choice.
any_configs = st.builds(
    lambda config, open_: config.model_copy(
        update={"on_store_failure": "fail_open" if open_ else "fail_closed"}
    ),
    configs,
    st.booleans(),
)
admits = st.tuples(
    st.just("admit"),
    st.integers(0, len(CHAINS) - 1),
    st.integers(0, 80),
    st.integers(0, 40),
    st.booleans(),  # through a plan made once (the stage's way), or through levels
)
operations = st.lists(
    st.one_of(
        admits,
        admits,
        admits,
        st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 160), st.integers(0, 80)),
        st.tuples(st.just("unknown"), st.integers(0, 50)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
        st.tuples(st.just("wait"), st.integers(1, 4_000)),
        st.tuples(st.just("wait"), st.integers(4_000, 40_000)),
        # Past a whole window: what aged out, with reservations still unsettled.
        st.tuples(st.just("wait"), st.integers(40_000, 70_000)),
        st.tuples(st.just("renew")),
    ),
    max_size=60,
)


def claim_view(claim: Claim | reference.Claim) -> tuple[Any, ...]:
    return (
        claim.key, claim.kind, claim.limit, claim.amount, claim.span_ms, claim.level,
        claim.name, claim.fail_open, claim.per, claim.bucket,
    )  # fmt: skip


def decision(admission: Admission) -> tuple[Any, ...]:
    """An admission as the reference's `Decision` has it."""
    refusal = admission.refusal
    if refusal is None:
        return (True, None)
    return (
        False,
        (
            refusal.status, refusal.code, refusal.limit, refusal.level,
            round(refusal.retry_after_s * 1000), refusal.too_large, refusal.message,
        ),
    )  # fmt: skip


def expected(answer: reference.Decision) -> tuple[Any, ...]:
    return (answer.admitted, answer.refusal)


def bucket_views(states: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(claim_view(s.claim), s.used, s.reserved, s.reset_ms) for s in states]


class Held:
    """A reservation of each limiter, kept only here: dropping it here drops it."""

    def __init__(self, mine: Any, theirs: reference.Reservation) -> None:
        self.mine: Any = mine
        self.theirs = theirs


@settings(max_examples=examples(300), deadline=None)
@given(any_configs, any_configs, any_configs, any_configs, operations)
def test_the_memory_limiter_decides_as_the_reference(
    tenant: LimitsConfig,
    key_a: LimitsConfig,
    key_b: LimitsConfig,
    limit_class: LimitsConfig,
    ops: list[tuple[Any, ...]],
) -> None:
    configured = dict(zip(NAMES, (tenant, key_a, key_b, limit_class), strict=True))
    levels = {name: Level(name, config) for name, config in configured.items()}
    # A chain's second `class:c` has other limits: the first one's apply.
    doubled = Level("class:c", LimitsConfig(requests_per_minute=1))
    chains = [[levels[name] for name in chain] for chain in CHAINS]
    chains[3][2] = doubled
    everything = list(levels.values())

    async def run() -> None:
        clock = FakeClock(START)
        limiter = Limiter(MemoryStore(clock))
        model = reference.ReferenceLimiter(clock)
        plans = [limiter.plan(chain) for chain in chains]
        held: list[Held] = []

        async def admit(op: tuple[Any, ...]) -> None:
            _, which, tokens, hundredths, planned = op
            demand = Demand(tokens, hundredths * 10_000 / MICRO)
            theirs = model.admit(chains[which], demand)
            mine = await limiter.admit(plans[which] if planned else chains[which], demand)
            assert decision(mine) == expected(theirs)
            assert dict(mine.headers) == theirs.headers
            event("admitted" if theirs.admitted else f"refused by {theirs.refusal[2]}")  # type: ignore[index]
            if theirs.reservation is None:
                assert mine.reservation is None
                return
            assert mine.reservation is not None and mine.at_ms == theirs.reservation.at_ms
            assert [claim_view(c) for c in mine.reservation.claims] == [
                claim_view(c) for c in theirs.reservation.claims
            ]
            held.append(Held(mine.reservation, theirs.reservation))

        for op in ops:
            if op[0] == "admit":
                await admit(op)
            elif op[0] == "wait":
                clock.advance(op[1] / 1000)
            elif op[0] == "renew":
                assert await limiter.renew_leases() == model.renew_leases()
            elif held:
                index = op[1] % len(held)
                pair = held[index]
                if op[0] == "drop":
                    del held[index]
                    model.held.pop(pair.theirs.rid, None)
                    del pair
                    gc.collect()
                    continue
                if op[0] == "settle":
                    cost = op[3] * 10_000 / MICRO
                    await limiter.settle(pair.mine, tokens=op[2], cost_usd=cost)
                    model.settle(pair.theirs, tokens=op[2], cost_usd=cost)
                elif op[0] == "unknown":
                    await limiter.settle(pair.mine)
                    model.settle(pair.theirs)
                else:
                    await limiter.release(pair.mine)
                    model.release(pair.theirs)
                await limiter.settle(pair.mine, tokens=999, cost_usd=1.0)  # twice is once
                model.settle(pair.theirs, tokens=999, cost_usd=1.0)
            assert bucket_views(await limiter.usage(everything)) == bucket_views(
                model.usage(everything)
            )
            assert limiter.decisions == model.decisions
        await limiter.aclose()

    asyncio.run(run())


class DownStore(MemoryStore):
    """A store that cannot answer."""

    async def admit(self, rid: str, plan: Any, tokens: int, cost: int) -> Any:
        raise StoreUnavailable("down")


@settings(max_examples=examples(100), deadline=None)
@given(any_configs, any_configs, any_configs, any_configs, st.lists(admits, max_size=8))
def test_a_store_failure_is_decided_as_the_reference_decides_it(
    tenant: LimitsConfig,
    key_a: LimitsConfig,
    key_b: LimitsConfig,
    limit_class: LimitsConfig,
    ops: list[tuple[Any, ...]],
) -> None:
    """Each level's `on_store_failure`: admitted unchecked when every limit fails open,
    else 503 naming the first limit that fails closed; counted alike."""
    configured = dict(zip(NAMES, (tenant, key_a, key_b, limit_class), strict=True))
    levels = {name: Level(name, config) for name, config in configured.items()}
    chains = [[levels[name] for name in chain] for chain in CHAINS]

    async def run() -> None:
        limiter = Limiter(DownStore())
        model = reference.ReferenceLimiter(time.time)
        for _, which, tokens, hundredths, planned in ops:
            demand = Demand(tokens, hundredths / 100)
            admission = await limiter.admit(
                limiter.plan(chains[which]) if planned else chains[which], demand
            )
            if not model.claims(chains[which], demand):
                assert admission.allowed and not admission.unchecked
                continue
            theirs = model.store_failed(chains[which], demand)
            if theirs == ("unchecked",):
                assert admission.allowed and admission.unchecked
            else:
                refusal = admission.refusal
                assert refusal is not None
                mine = (refusal.status, refusal.code, refusal.limit, refusal.level)
                assert (*mine, round(refusal.retry_after_s * 1000)) == theirs
            assert limiter.decisions == model.decisions

    asyncio.run(run())


# -- Redis ----------------------------------------------------------------------------------

#: The whole sequence runs well within this margin of the store's clock: no window
#: (60 s), lease (30 s) or period (a UTC day) changes under it.
SAME_INSTANT_MS = 30_000


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(configs, configs, configs, configs, operations)
def test_the_redis_limiter_decides_as_the_reference(
    redis: RedisServer,
    tenant: LimitsConfig,
    key_a: LimitsConfig,
    key_b: LimitsConfig,
    limit_class: LimitsConfig,
    ops: list[tuple[Any, ...]],
) -> None:
    """The same, against a real Redis. Redis keeps its own clock (`TIME`), which no
    test can move: the reference decides each admission at the instant Redis decided
    it (its clock is set to the admission's `at_ms`), so retry hints, resets and
    messages must be equal to the millisecond; a wait is a real pause of up to 0.1 s
    (the sequence stays within one window, lease and UTC day: asserted; an example
    starting near midnight is discarded)."""
    probe = redis_py.Redis.from_url(redis.url)
    try:
        seconds, micros = probe.time()
    finally:
        probe.close()
    started = seconds * 1000 + micros // 1000
    assume(started % DAY_MS < DAY_MS - SAME_INSTANT_MS)
    configured = dict(zip(NAMES, (tenant, key_a, key_b, limit_class), strict=True))
    note(f"levels: { {n: c.model_dump(exclude_none=True) for n, c in configured.items()} }")
    levels = {name: Level(name, config) for name, config in configured.items()}
    chains = [[levels[name] for name in chain] for chain in CHAINS]
    chains[3][2] = Level("class:c", LimitsConfig(requests_per_minute=1))
    everything = list(levels.values())
    prefix = f"test:{os.urandom(6).hex()}:"

    async def run() -> None:
        clock = FakeClock(started / 1000)
        model = reference.ReferenceLimiter(clock, key_prefix=prefix)
        limiter = Limiter(RedisStore(redis.url, timeout_s=2.0), key_prefix=prefix)
        plans = [limiter.plan(chain) for chain in chains]
        held: list[Held] = []
        try:
            for op in ops:
                if op[0] == "admit":
                    _, which, tokens, hundredths, planned = op
                    demand = Demand(tokens, hundredths * 10_000 / MICRO)
                    mine = await limiter.admit(plans[which] if planned else chains[which], demand)
                    if mine.at_ms is not None:  # None: nothing limits the chain, no clock read
                        clock.now = mine.at_ms / 1000  # the reference decides when Redis did
                    theirs = model.admit(chains[which], demand)
                    assert decision(mine) == expected(theirs)
                    assert dict(mine.headers) == theirs.headers
                    if theirs.reservation is not None:
                        assert mine.reservation is not None
                        assert [claim_view(c) for c in mine.reservation.claims] == [
                            claim_view(c) for c in theirs.reservation.claims
                        ]
                        held.append(Held(mine.reservation, theirs.reservation))
                elif op[0] == "wait":
                    await asyncio.sleep(op[1] % 100 / 1000)
                elif op[0] in ("settle", "unknown", "release") and held:
                    pair = held[op[1] % len(held)]
                    if op[0] == "settle":
                        cost = op[3] * 10_000 / MICRO
                        await limiter.settle(pair.mine, tokens=op[2], cost_usd=cost)
                        model.settle(pair.theirs, tokens=op[2], cost_usd=cost)
                    elif op[0] == "unknown":
                        await limiter.settle(pair.mine)
                        model.settle(pair.theirs)
                    else:
                        await limiter.release(pair.mine)
                        model.release(pair.theirs)
                    await limiter.settle(pair.mine, tokens=999, cost_usd=1.0)
                    model.settle(pair.theirs, tokens=999, cost_usd=1.0)
                mine_states = await limiter.usage(everything)
                their_states = model.usage(everything)
                assert [(claim_view(s.claim), s.used, s.reserved) for s in mine_states] == [
                    (claim_view(s.claim), s.used, s.reserved) for s in their_states
                ]
                assert limiter.decisions == model.decisions
        finally:
            await limiter.aclose()
        assert time.time() * 1000 - started < SAME_INSTANT_MS

    asyncio.run(run())


def test_spend_and_leases_settle_alike_on_both_stores(redis: RedisServer) -> None:
    """A fixed sequence over every limit kind on two levels (a day's and a month's
    spend), settled above, below and at the estimate, released, refused: the Redis
    and memory limiters end with the reference's buckets."""
    probe = redis_py.Redis.from_url(redis.url)
    try:
        seconds, _ = probe.time()
    finally:
        probe.close()
    if seconds * 1000 % DAY_MS >= DAY_MS - SAME_INSTANT_MS:
        pytest.skip("too close to midnight: the day's spend would change under the test")
    levels = [
        Level(
            "tenant:t",
            LimitsConfig(
                requests_per_minute=5,
                tokens_per_minute=500,
                max_concurrent=2,
                spend_usd=SpendLimit(amount=1.0, per="day"),
            ),
        ),
        Level("key:k", LimitsConfig(spend_usd=SpendLimit(amount=0.5, per="month"))),
    ]
    prefix = f"test:{os.urandom(6).hex()}:"

    async def run() -> None:
        frozen = float(seconds)
        model = reference.ReferenceLimiter(lambda: frozen, key_prefix=prefix)
        stores = [MemoryStore(lambda: frozen), RedisStore(redis.url, timeout_s=2.0)]
        limiters = [Limiter(store, key_prefix=prefix) for store in stores]
        try:
            for limiter in limiters:
                plan = limiter.plan(levels)
                first = await limiter.admit(plan, Demand(200, 0.2))
                second = await limiter.admit(plan, Demand(200, 0.2))
                third = await limiter.admit(plan, Demand(10, 0.01))  # both slots held
                assert first.allowed and second.allowed and not third.allowed
                await limiter.settle(first.reservation, tokens=300, cost_usd=0.4)
                await limiter.settle(second.reservation)
                fourth = await limiter.admit(plan, Demand(0, 0.2))  # $0.6 + 0.2 > $0.5
                assert fourth.refusal is not None and fourth.refusal.level == "key:k"
            mine = [bucket_views(await limiter.usage(levels)) for limiter in limiters]
            first_ = model.admit(levels, Demand(200, 0.2))
            second_ = model.admit(levels, Demand(200, 0.2))
            model.admit(levels, Demand(10, 0.01))
            model.settle(first_.reservation, tokens=300, cost_usd=0.4)
            model.settle(second_.reservation)
            model.admit(levels, Demand(0, 0.2))
            theirs = [(v[0], v[1], v[2]) for v in bucket_views(model.usage(levels))]
            for views in mine:
                assert [(v[0], v[1], v[2]) for v in views] == theirs
        finally:
            for limiter in limiters:
                await limiter.aclose()

    asyncio.run(run())


def test_a_tie_for_the_tightest_limit_goes_to_the_first_level() -> None:
    """Two tokens limits with as much remaining, their oldest admissions apart (a
    settled-to-zero admission holds the tenant's window open): the header speaks for
    the first level of the chain, as the reference's `min` picks it."""
    tenant = Level("tenant:t", LimitsConfig(tokens_per_minute=100))
    key_a = Level("key:a", LimitsConfig(tokens_per_minute=100))
    key_b = Level("key:b", LimitsConfig())

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        clock = FakeClock(START)
        limiter = Limiter(MemoryStore(clock))
        model = reference.ReferenceLimiter(clock)
        first = await limiter.admit(limiter.plan([tenant, key_b]), Demand(50))
        first_ = model.admit([tenant, key_b], Demand(50))
        await limiter.settle(first.reservation, tokens=0)
        model.settle(first_.reservation, tokens=0)
        clock.advance(10)
        mine = await limiter.admit(limiter.plan([tenant, key_a]), Demand(30))
        theirs = model.admit([tenant, key_a], Demand(30))
        return dict(mine.headers), theirs.headers

    mine, theirs = asyncio.run(run())
    assert mine == theirs
    assert theirs["x-ratelimit-reset-tokens"] == "50s"  # the tenant's, admitted 10 s earlier


async def test_the_memory_store_is_exact_past_its_window_and_bounded_at_any_rate() -> None:
    """What the random sequences above reach only rarely, step by step against the
    reference: a reservation settled after its window passed changes nothing, one
    never settled stops counting as reserved when it ages out; many admissions in one
    millisecond share one slot (a window holds at most one slot a millisecond,
    whatever the rate), and a lease heap drops its stale entries."""
    clock = FakeClock(START)
    limiter = Limiter(MemoryStore(clock))
    model = reference.ReferenceLimiter(clock)
    level = Level(
        "key:a",
        LimitsConfig(requests_per_minute=10**6, tokens_per_minute=10**9, max_concurrent=10**6),
    )
    store = limiter.store
    assert isinstance(store, MemoryStore)

    async def same() -> None:
        assert bucket_views(await limiter.usage([level])) == bucket_views(model.usage([level]))

    def pair(tokens: int) -> tuple[Any, reference.Reservation]:
        demand = Demand(tokens)
        theirs = model.admit([level], demand).reservation
        assert theirs is not None
        return demand, theirs

    # Settled after the window, and never settled: both age out cleanly.
    demand, late_theirs = pair(100)
    late = (await limiter.admit([level], demand)).reservation
    demand, never_theirs = pair(40)
    never = (await limiter.admit([level], demand)).reservation
    await same()
    clock.advance(61)
    await same()
    await limiter.settle(late, tokens=50)
    model.settle(late_theirs, tokens=50)
    await same()
    # 1,000 admissions in one millisecond, then 1,000 more each a millisecond apart.
    reservations = []
    for step in range(2_000):
        if step >= 1_000:
            clock.advance(0.001)
        demand, theirs = pair(3)
        mine = (await limiter.admit([level], demand)).reservation
        reservations.append((mine, theirs))
    await same()
    buckets = {type(b).__name__: b for b in store._buckets.values()}
    assert len(buckets["_Count"].times) == 1 + 1_000
    assert len(buckets["_Window"].times) == len(buckets["_Window"].totals) == 1 + 1_000
    # Released leases leave stale heap entries: at most twice the held ones, plus
    # slack. The newest go, so the oldest held ones keep them from the heap's top.
    for mine, theirs in reservations[100:]:
        await limiter.release(mine)
        model.release(theirs)
    await same()
    leases = buckets["_Leases"]
    assert len(leases.expiries) == 100  # `never`'s lease expired with the minute
    assert len(leases.heap) <= 2 * len(leases.expiries) + 64
    clock.advance(31)  # every lease expired
    await same()
    del never, never_theirs
    await limiter.aclose()


async def test_the_memory_store_keeps_one_estimate_per_admission_and_forgets_aged_ones() -> None:
    """The token estimates not settled yet are kept once per admission, however many
    windows it was charged in (here four levels: four windows), and bounded: ones
    whose slot aged out of the window are dropped once they pile up past the mark,
    while the ones still in the window stay settleable, exactly."""
    clock = FakeClock(START)
    limiter = Limiter(MemoryStore(clock))
    model = reference.ReferenceLimiter(clock)
    config = LimitsConfig(requests_per_minute=10**6, tokens_per_minute=10**9)
    levels = [Level(name, config) for name in ("tenant:t", "tenant:t/u", "key:a", "class:c")]
    store = limiter.store
    assert isinstance(store, MemoryStore)

    async def same() -> None:
        assert bucket_views(await limiter.usage(levels)) == bucket_views(model.usage(levels))

    def admit_both(tokens: int) -> tuple[Any, reference.Reservation]:
        theirs = model.admit(levels, Demand(tokens)).reservation
        assert theirs is not None
        return Demand(tokens), theirs

    # Never settled (dropped by their callers, say): each is one estimate, not four.
    for _ in range(PENDING_SWEEP_MIN):
        demand, _theirs = admit_both(5)
        assert (await limiter.admit(levels, demand)).reservation is not None
        clock.advance(0.001)
    assert len(store._estimates) == PENDING_SWEEP_MIN
    await same()
    clock.advance(61)  # every one of them aged out of the window
    kept = []
    for _ in range(10):
        demand, theirs = admit_both(7)
        mine = (await limiter.admit(levels, demand)).reservation
        kept.append((mine, theirs))
    # The sweep ran once past the mark: only the 10 in the window are left.
    assert len(store._estimates) == 10
    await same()
    for mine, theirs in kept:
        await limiter.settle(mine, tokens=3)
        model.settle(theirs, tokens=3)
    assert not store._estimates
    await same()


async def test_a_sibling_flooding_unsettled_estimates_never_drops_the_victims() -> None:
    """The estimates are kept in one table for every tenant. Red, a sibling tenant,
    leaves thousands of reservations unsettled (streams that never end, say), so the
    table is swept again and again; blue's reservation, admitted before the flood and
    still in its window, is never swept with red's: its settlement is applied exactly
    (blue's tokens are what blue used), and red's buckets are only red's."""
    clock = FakeClock(START)
    limiter = Limiter(MemoryStore(clock))
    model = reference.ReferenceLimiter(clock)
    config = LimitsConfig(requests_per_minute=10**6, tokens_per_minute=10**9)
    blue = [Level("tenant:blue", config), Level("key:blue", config)]
    red = [Level("tenant:red", config), Level("key:red", config)]
    store = limiter.store
    assert isinstance(store, MemoryStore)

    async def same(levels: list[Level]) -> None:
        assert bucket_views(await limiter.usage(levels)) == bucket_views(model.usage(levels))

    victim = (await limiter.admit(blue, Demand(500))).reservation
    theirs = model.admit(blue, Demand(500)).reservation
    for _ in range(3 * PENDING_SWEEP_MIN):
        assert (await limiter.admit(red, Demand(9))).reservation is not None
        assert model.admit(red, Demand(9)).reservation is not None
        clock.advance(0.005)  # 15 s in all: everyone's slot is still in the window
    assert len(store._estimates) == 1 + 3 * PENDING_SWEEP_MIN  # swept, nothing dropped
    await limiter.settle(victim, tokens=120)
    model.settle(theirs, tokens=120)
    await same(blue)
    await same(red)
    states = await limiter.usage(blue)
    tokens = next(s for s in states if s.claim.level == "key:blue" and s.claim.kind == "window")
    assert (tokens.used, tokens.reserved) == (120, 0)
