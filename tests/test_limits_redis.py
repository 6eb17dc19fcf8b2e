"""The Redis store (limits/redis_store.py) against a real `redis-server`: exact across
processes, decides as the memory store does, honest when Redis is down (and
redelivers the settlements it could not apply), settles leases and spend, computes
the same calendar periods as limits/periods.py, and leaves no key without a TTL.
The algorithm itself is held to a reference model in tests/test_limits.py."""

from __future__ import annotations

import asyncio
import calendar
import multiprocessing
import os
import signal
import time
from typing import Any

import orjson
import redis as redis_py
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from limits import Admission, Demand, Level, Limiter, MemoryStore, lua
from limits.claims import MICRO
from limits.config import LimitsConfig, SpendLimit
from limits.limiter import STORE_FAILURE_CLOSED, STORE_FAILURE_OPEN
from limits.periods import DAY_MS, period_of
from limits.redis_store import RedisStore
from tests.examples import examples
from tests.limit_strategies import admits, configs
from tests.services import RedisServer


def level(name: str = "tenant:t", **limits: Any) -> Level:
    return Level(name, LimitsConfig(**limits))


def fresh_prefix() -> str:
    """Every test (every hypothesis example) counts on keys of its own."""
    return f"test:{os.urandom(6).hex()}:"


# -- exact across processes --------------------------------------------------------------------

#: The hammered limits, and the shortened window (the algorithm does not depend on
#: its length; two seconds gives two refills in a few seconds).
HOT_RPM, HOT_TPM, HOT_WINDOW_MS = 20, 1500, 2000
#: Each of a process's tasks asks for its own size: 40, 50, ... 130 tokens.
HOT_SIZES = tuple(40 + 10 * n for n in range(10))


def _hammer(url: str, seconds: float, start: Any, queue: Any) -> None:
    """One process: 10 tasks admitting as fast as they can on one key, from the
    moment every process is ready. Reports each admission's (store time, tokens),
    the latest store time it saw, and the coalescer's (calls, items)."""

    async def run() -> None:
        store = RedisStore(url, timeout_s=2.0)
        limiter = Limiter(store, window_ms=HOT_WINDOW_MS, key_prefix="hot:")
        levels = [level("key:hot", requests_per_minute=HOT_RPM, tokens_per_minute=HOT_TPM)]
        await limiter.usage(levels)  # connected before the start
        admitted: list[tuple[int, int]] = []
        latest = 0
        await asyncio.to_thread(start.wait, 60)
        stop = time.monotonic() + seconds

        async def worker(tokens: int) -> None:
            nonlocal latest
            while time.monotonic() < stop:
                admission = await limiter.admit(levels, Demand(tokens))
                assert admission.at_ms is not None, admission.refusal
                latest = max(latest, admission.at_ms)
                if admission.allowed:
                    admitted.append((admission.at_ms, tokens))

        await asyncio.gather(*(worker(tokens) for tokens in HOT_SIZES))
        counts = (store.admissions.calls, store.admissions.items)
        await limiter.aclose()
        queue.put((admitted, latest, counts))

    asyncio.run(run())


def test_redis_is_exact_across_processes(redis: RedisServer) -> None:
    """4 processes x 10 tasks on one key (RPM 20, TPM 1500, the window shortened to
    2 s) for 4.5 s, demand far above the limits: no window of the store's clock
    ever holds more than either limit; every whole window from the first admission
    on is filled to 97% of the tokens or to the request limit (while the 40-token
    tasks keep asking, a window's leftover room stays under 40 tokens: 2.7%; measured
    99.3%, 19 requests and 1490 tokens a window); and concurrent
    admissions shared script calls (coalescing)."""
    seconds = 4.5
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start = context.Barrier(4)
    workers = [
        context.Process(target=_hammer, args=(redis.url, seconds, start, queue)) for _ in range(4)
    ]
    for process in workers:
        process.start()
    try:
        results = [queue.get(timeout=60) for _ in workers]
    finally:
        for process in workers:
            process.join(10)
    assert all(process.exitcode == 0 for process in workers)
    admitted = sorted(item for items, _, _ in results for item in items)
    latest = max(seen for _, seen, _ in results)
    # No window ever holds more than the limits (every admission's window is checked:
    # a window's content only grows at an admission).
    for at, _ in admitted:
        inside = [tokens for when, tokens in admitted if at - HOT_WINDOW_MS < when <= at]
        assert len(inside) <= HOT_RPM
        assert sum(inside) <= HOT_TPM
    # Every whole window from the first admission on is (nearly) full.
    first = admitted[0][0]
    whole = (latest - first) // HOT_WINDOW_MS
    assert whole >= 2, (first, latest)
    for k in range(whole):
        lo = first + k * HOT_WINDOW_MS
        inside = [tokens for when, tokens in admitted if lo <= when < lo + HOT_WINDOW_MS]
        assert sum(inside) >= 0.97 * HOT_TPM or len(inside) == HOT_RPM, (k, inside)
    calls = sum(c for _, _, (c, _) in results)
    items = sum(i for _, _, (_, i) in results)
    assert calls < items, (calls, items)  # concurrent admissions shared script calls


# -- the same decisions as the memory store ------------------------------------------------------

operations = st.lists(
    st.one_of(
        admits,
        admits,
        st.tuples(st.just("settle"), st.integers(0, 30), st.integers(0, 160), st.integers(0, 80)),
        st.tuples(st.just("release"), st.integers(0, 30)),
        st.tuples(st.just("unknown"), st.integers(0, 30)),
    ),
    min_size=4,
    max_size=30,
)
#: The whole sequence runs well within this margin of the store's clock: no window
#: (60 s), lease (30 s) or period (a UTC day) changes under it.
SAME_INSTANT_MS = 30_000


def _decision(admission: Admission) -> tuple[Any, ...]:
    refusal = admission.refusal
    if refusal is None:
        return ("admitted",)
    return (refusal.status, refusal.code, refusal.limit, refusal.level, refusal.too_large)


# One server serves every example; each example counts on keys of its own.
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(configs, configs, configs, operations)
def test_redis_decides_exactly_as_the_memory_store(
    redis: RedisServer,
    tenant: LimitsConfig,
    key_a: LimitsConfig,
    key_b: LimitsConfig,
    ops: list[tuple[Any, ...]],
) -> None:
    """The same sequence of admissions (two keys of one tenant, every limit kind),
    settlements above and below the estimate, settlements with usage unknown,
    releases and double settlements, against the memory store and Redis: the same
    decisions (admitted, or refused by the same limit of the same level, with the
    same code and too-large flag) and, after every step, the same used and reserved
    amounts in every bucket, and the same spend period.

    Time is not part of it: Redis keeps its own clock (`TIME`) and cannot be moved,
    so the memory store's clock is frozen at Redis's time when the example starts,
    and the whole sequence runs within one window, one lease and one UTC day
    (asserted; an example starting within `SAME_INSTANT_MS` of midnight is
    discarded). Aging out, lease expiry and period changes are held to a model in
    tests/test_limits.py; here retry hints are only held to be no later than the
    memory store's (Redis's clock has moved on by a few ms)."""
    probe = redis_py.Redis.from_url(redis.url)
    try:
        seconds, micros = probe.time()
    finally:
        probe.close()
    started = seconds * 1000 + micros // 1000
    assume(started % DAY_MS < DAY_MS - SAME_INSTANT_MS)
    configured = {"tenant:t": tenant, "key:a": key_a, "key:b": key_b}
    note(f"levels: { {name: c.model_dump(exclude_none=True) for name, c in configured.items()} }")
    note(f"operations: {ops}")
    chains = (("tenant:t", "key:a"), ("tenant:t", "key:b"))

    async def run() -> None:
        frozen = started / 1000
        memory = Limiter(MemoryStore(lambda: frozen), key_prefix=fresh_prefix())
        shared = Limiter(RedisStore(redis.url, timeout_s=2.0), key_prefix=fresh_prefix())
        levels = {name: Level(name, config) for name, config in configured.items()}
        everything = list(levels.values())
        held: list[tuple[Any, Any]] = []  # (memory's reservation, Redis's)
        try:
            for op in ops:
                if op[0] == "admit":
                    chain = [levels[name] for name in chains[op[1]]]
                    demand = Demand(op[2], op[3] * 10_000 / MICRO)
                    expected = await memory.admit(chain, demand)
                    actual = await shared.admit(chain, demand)
                    assert _decision(actual) == _decision(expected)
                    event(
                        f"refused by {expected.refusal.limit}" if expected.refusal else "admitted"
                    )
                    if expected.refusal is not None and actual.refusal is not None:
                        assert 0 < actual.refusal.retry_after_s <= expected.refusal.retry_after_s
                    if expected.reservation is not None:
                        held.append((expected.reservation, actual.reservation))
                elif held:
                    mine, theirs = held[op[1] % len(held)]
                    for limiter, reservation in ((memory, mine), (shared, theirs)):
                        if op[0] == "settle":
                            cost = op[3] * 10_000 / MICRO
                            await limiter.settle(reservation, tokens=op[2], cost_usd=cost)
                        elif op[0] == "release":
                            await limiter.release(reservation)
                        else:
                            await limiter.settle(reservation)  # usage unknown
                        await limiter.settle(reservation, tokens=999, cost_usd=1.0)  # no-op
                expected_states = await memory.usage(everything)
                actual_states = await shared.usage(everything)
                assert [
                    (s.claim.level, s.claim.name, s.used, s.reserved) for s in actual_states
                ] == [(s.claim.level, s.claim.name, s.used, s.reserved) for s in expected_states]
                assert [
                    s.claim.bucket and s.claim.bucket.rsplit(":", 1)[1] for s in actual_states
                ] == [s.claim.bucket and s.claim.bucket.rsplit(":", 1)[1] for s in expected_states]
        finally:
            await memory.aclose()
            await shared.aclose()
        assert time.time() * 1000 - started < SAME_INSTANT_MS

    asyncio.run(run())


def test_a_batch_decides_as_its_admissions_would_one_by_one(redis: RedisServer) -> None:
    """Admissions that arrive together go to Redis in one call, which looks at each
    bucket once and carries the counts from one admission to the next: 40 of them,
    on two keys sharing their tenant's buckets, with limits that refuse part of
    them, decide exactly as the same admissions one at a time on the memory store,
    in arrival order, and leave the same counts behind."""

    async def run() -> None:
        tenant = level("tenant:t", requests_per_minute=30, tokens_per_minute=2_000)
        keys = [level("key:a", max_concurrent=12), level("key:b", tokens_per_minute=900)]
        store = RedisStore(redis.url, timeout_s=5.0)
        shared = Limiter(store, key_prefix=fresh_prefix())
        at = time.time()
        memory = Limiter(MemoryStore(lambda: at), key_prefix=fresh_prefix())
        asks = [([tenant, keys[n % 2]], Demand(20 + 7 * n)) for n in range(40)]
        await shared.usage([tenant])  # connected, so the first call goes at once
        calls = store.admissions.calls
        together = await asyncio.gather(*(shared.admit(chain, demand) for chain, demand in asks))
        alone = [await memory.admit(chain, demand) for chain, demand in asks]
        assert store.admissions.calls - calls < len(asks)  # they were batched
        assert [_decision(a) for a in together] == [_decision(a) for a in alone]
        assert {_decision(a)[0] for a in together} >= {"admitted", 429}  # both happened
        for mine, theirs in zip(alone, together, strict=True):
            assert dict(theirs.headers).keys() == dict(mine.headers).keys()
            remaining = [k for k in mine.headers if k.startswith("x-ratelimit-remaining")]
            assert {k: theirs.headers[k] for k in remaining} == {
                k: mine.headers[k] for k in remaining
            }
        everything = [tenant, *keys]
        expected = [(s.claim.key, s.used, s.reserved) for s in await memory.usage(everything)]
        actual = [(s.claim.key, s.used, s.reserved) for s in await shared.usage(everything)]
        assert [u[1:] for u in actual] == [u[1:] for u in expected]
        await shared.aclose()
        await memory.aclose()

    asyncio.run(run())


def test_a_settlement_reaches_redis_though_its_caller_is_cancelled(redis: RedisServer) -> None:
    """The completion hook settles without a shield: a hook cancelled as it settles
    (a server shutting down) still has its settlement applied, as it was queued
    before the hook could be interrupted."""

    async def run() -> None:
        store = RedisStore(redis.url)
        limiter = Limiter(store, key_prefix=fresh_prefix())
        levels = [level(tokens_per_minute=10_000, max_concurrent=5)]
        admission = await limiter.admit(levels, Demand(1_000))
        assert admission.allowed
        hook = asyncio.ensure_future(limiter.settle(admission.reservation, tokens=10))
        await asyncio.sleep(0)  # the hook starts, queues its settlement and waits
        hook.cancel()
        await asyncio.wait([hook])
        assert hook.cancelled()
        await store.settlements.idle()  # sent by the coalescer's own task
        tokens, slots = await limiter.usage(levels)
        assert (tokens.used, tokens.reserved, slots.used) == (10, 0, 0)
        await limiter.aclose()

    asyncio.run(run())


# -- Redis down ----------------------------------------------------------------------------------


def test_redis_down_fails_open_or_closed_per_level_and_recovers(redis: RedisServer) -> None:
    """Redis killed (SIGKILL): a fail_open level is admitted unchecked, a fail_closed
    one refused with 503 `limit_store_unavailable`, each within the store's timeout
    (never a hang), and both decisions counted. A settlement made while Redis is
    down is kept and redelivered: once Redis is back (on the same port, with the
    data it had saved), admissions succeed again and the settlement shows in usage."""

    async def run() -> None:
        store = RedisStore(redis.url, timeout_s=0.3)
        limiter = Limiter(store, key_prefix=fresh_prefix())
        closed = level("tenant:strict", requests_per_minute=100, tokens_per_minute=10_000)
        open_ = level("tenant:lenient", requests_per_minute=100, on_store_failure="fail_open")
        held = await limiter.admit([closed], Demand(500))
        assert held.reservation is not None
        assert [(s.used, s.reserved) for s in await limiter.usage([closed])] == [
            (1, 0),
            (500, 500),
        ]
        saver = redis_py.Redis.from_url(redis.url)
        saver.save()  # the server keeps no data over a restart unless it was saved
        saver.close()
        redis.kill()

        started = time.monotonic()
        refused = await limiter.admit([closed], Demand(10))
        assert time.monotonic() - started < 2  # bounded, never a hang
        assert refused.refusal is not None and refused.refusal.status == 503
        assert refused.refusal.code == "limit_store_unavailable"
        assert refused.refusal.level == "tenant:strict"
        started = time.monotonic()
        unchecked = await limiter.admit([open_], Demand(10))
        assert time.monotonic() - started < 2
        assert unchecked.allowed and unchecked.unchecked and unchecked.reservation is None
        assert limiter.decisions[("requests_per_minute", "tenant", STORE_FAILURE_OPEN)] == 1
        assert limiter.decisions[("requests_per_minute", "tenant", STORE_FAILURE_CLOSED)] == 1
        assert limiter.decisions[("tokens_per_minute", "tenant", STORE_FAILURE_CLOSED)] == 1
        assert limiter.store_errors >= 2

        started = time.monotonic()
        await limiter.settle(held.reservation, tokens=120)  # cannot be applied now
        assert time.monotonic() - started < 2
        # The settlement, and a void for each admission whose call failed (it may
        # have run before the connection died; voiding one that never ran is nothing).
        assert store.redeliveries_pending == 3

        redis.start()
        deadline = time.monotonic() + 10
        while not (await limiter.admit([closed], Demand(0))).allowed:
            assert time.monotonic() < deadline, "admissions never recovered"
            await asyncio.sleep(0.05)
        while store.redeliveries_pending:  # retried every REDELIVER_EVERY_S
            assert time.monotonic() < deadline, "the settlement was never redelivered"
            await asyncio.sleep(0.05)
        states = await limiter.usage([closed])
        assert (states[1].used, states[1].reserved) == (120, 0)  # the settlement applied
        assert states[0].used >= 2  # the request before the outage still counts
        assert store.redeliveries_dropped == 0
        await limiter.aclose()

    asyncio.run(run())


def test_a_redis_that_stops_answering_fails_within_the_timeout(redis: RedisServer) -> None:
    """Redis frozen (SIGSTOP: connections are accepted, nothing is answered, as in a
    partition or a stalled server): a fail_closed admission is refused with 503 once
    the store's timeout (0.3 s) has passed, not sooner and not much later; once
    Redis answers again (SIGCONT), admissions are decided again."""

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url, timeout_s=0.3), key_prefix=fresh_prefix())
        closed = level("tenant:strict", requests_per_minute=100)
        assert (await limiter.admit([closed], Demand(1))).allowed
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            refused = await limiter.admit([closed], Demand(1))
            elapsed = time.monotonic() - started
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        assert refused.refusal is not None and refused.refusal.status == 503
        assert refused.refusal.code == "limit_store_unavailable"
        assert 0.25 <= elapsed < 2, elapsed  # the timeout decided, never a hang
        deadline = time.monotonic() + 10
        while not (await limiter.admit([closed], Demand(1))).allowed:
            assert time.monotonic() < deadline, "admissions never recovered"
            await asyncio.sleep(0.05)
        await limiter.aclose()

    asyncio.run(run())


# -- leases and spend -----------------------------------------------------------------------------


def test_redis_leases_are_freed_by_release(redis: RedisServer) -> None:
    """max_concurrent 1: the second request is refused while the first holds the
    slot (retry hint: the lease hint, a second), a release frees it."""

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), key_prefix=fresh_prefix())
        levels = [level(max_concurrent=1)]
        first = await limiter.admit(levels, Demand(0))
        assert first.allowed
        second = await limiter.admit(levels, Demand(0))
        assert second.refusal is not None and second.refusal.limit == "max_concurrent"
        assert second.refusal.status == 429 and second.refusal.retry_after_s == 1.0
        assert (await limiter.usage(levels))[0].used == 1
        await limiter.release(first.reservation)
        assert (await limiter.usage(levels))[0].used == 0
        third = await limiter.admit(levels, Demand(0))
        assert third.allowed
        await limiter.release(third.reservation)
        await limiter.aclose()

    asyncio.run(run())


def test_redis_leases_renew_expire_and_release_across_levels(redis: RedisServer) -> None:
    """Leases of 1 s on two levels (max_concurrent 1 each): a renewal moves both to
    a new expiry (the reset counts from the renewal), a release frees both; a lease
    not renewed expires by Redis's clock, frees both slots, and its renewal then
    reports it lost while the one still held is renewed. (The background renewer is
    slowed to never: this test renews by hand. The waits are for Redis's clock to
    pass an expiry, each with 400 ms to spare.)"""

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), lease_s=1.0, key_prefix=fresh_prefix())
        limiter.renew_every_s = 3600
        levels = [level("tenant:t", max_concurrent=1), level("key:k", max_concurrent=1)]
        first = await limiter.admit(levels, Demand(0))
        assert first.allowed
        await asyncio.sleep(0.5)
        assert await limiter.renew_leases() == 1
        states = await limiter.usage(levels)
        assert [s.used for s in states] == [1, 1]
        # From the renewal (~1,000 ms), not from the admission (~500 ms).
        assert all(600 < s.reset_ms <= 1000 for s in states), states
        await asyncio.sleep(0.6)  # past the first expiry, not the renewed one
        refused = await limiter.admit(levels, Demand(0))
        assert refused.refusal is not None and refused.refusal.limit == "max_concurrent"
        await limiter.release(first.reservation)
        assert [s.used for s in await limiter.usage(levels)] == [0, 0]

        lapsed = await limiter.admit(levels, Demand(0))
        assert lapsed.allowed
        await asyncio.sleep(1.4)  # not renewed: it expires
        assert [s.used for s in await limiter.usage(levels)] == [0, 0]
        held = await limiter.admit(levels, Demand(0))
        assert held.allowed
        assert await limiter.renew_leases() == 1  # `held` renewed, `lapsed` lost
        assert limiter.leases_lost == 1
        assert [s.used for s in await limiter.usage(levels)] == [1, 1]
        await limiter.release(held.reservation)
        await limiter.release(lapsed.reservation)  # long expired: changes nothing
        assert [s.used for s in await limiter.usage(levels)] == [0, 0]
        await limiter.aclose()

    asyncio.run(run())


def test_a_released_leases_empty_slot_is_not_the_retry_hint(redis: RedisServer) -> None:
    """A release leaves its lease slot empty until it expires: the refusal's retry
    hint is the earliest lease still held (B's expiry), not the released one's (A's,
    earlier). Leases of 0.8 s, so the hint is below the 1 s cap."""

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), lease_s=0.8, key_prefix=fresh_prefix())
        limiter.renew_every_s = 3600
        levels = [level(max_concurrent=1)]
        a = await limiter.admit(levels, Demand(0))
        await limiter.release(a.reservation)
        await asyncio.sleep(0.1)
        b = await limiter.admit(levels, Demand(0))
        refused = await limiter.admit(levels, Demand(0))
        assert a.at_ms is not None and b.at_ms is not None and refused.at_ms is not None
        assert b.at_ms - a.at_ms >= 100
        assert refused.refusal is not None and refused.refusal.limit == "max_concurrent"
        expected = max(1, min(1000, b.at_ms + 800 - refused.at_ms))
        assert refused.refusal.retry_after_s * 1000 == expected
        (state,) = await limiter.usage(levels)
        assert 0 < state.reset_ms <= b.at_ms + 800 - refused.at_ms
        await limiter.release(b.reservation)
        await limiter.aclose()

    asyncio.run(run())


def test_redis_spend_settles_to_the_actual_cost(redis: RedisServer) -> None:
    """$1 a month: $0.90 estimated leaves no room for $0.20; settled at $0.10 it
    leaves room for $0.90 and not a cent more; a request above $1 alone is too large."""

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), key_prefix=fresh_prefix())
        levels = [level("key:m", spend_usd=SpendLimit(amount=1.0, per="month"))]
        first = await limiter.admit(levels, Demand(0, 0.9))
        assert first.reservation is not None
        month = first.reservation.claims[0].bucket
        assert month is not None and month.endswith(period_of("month", first.at_ms or 0)[0])
        refused = await limiter.admit(levels, Demand(0, 0.2))
        assert refused.refusal is not None and refused.refusal.code == "insufficient_quota"
        assert not refused.refusal.too_large
        await limiter.settle(first.reservation, cost_usd=0.1)
        state = (await limiter.usage(levels))[0]
        assert (state.used, state.reserved) == (100_000, 0)
        assert (await limiter.admit(levels, Demand(0, 0.8))).allowed
        assert not (await limiter.admit(levels, Demand(0, 0.11))).allowed
        assert (await limiter.admit(levels, Demand(0, 0.1))).allowed  # exactly $1
        assert (await limiter.usage(levels))[0].used == 1_000_000
        too_large = await limiter.admit(levels, Demand(0, 1.5))
        assert too_large.refusal is not None and too_large.refusal.too_large
        await limiter.aclose()

    asyncio.run(run())


def test_a_voided_admission_gives_every_bucket_back(redis: RedisServer) -> None:
    """An admission Redis made but nobody will settle (its caller was cancelled
    while the call was in flight) is voided: its request, tokens, slot and spend
    are given back, as if it never happened, and its record is gone. Voiding it
    again, or voiding one Redis never admitted, changes nothing; a settled
    reservation's void is nothing either."""
    prefix = fresh_prefix()

    async def run() -> None:
        store = RedisStore(redis.url)
        limiter = Limiter(store, key_prefix=prefix)
        levels = [
            level(
                requests_per_minute=10,
                tokens_per_minute=1000,
                max_concurrent=2,
                spend_usd=SpendLimit(amount=1.0, per="day"),
            )
        ]
        kept = await limiter.admit(levels, Demand(100, 0.1))  # stays, settled
        assert kept.reservation is not None
        await limiter.settle(kept.reservation, tokens=60, cost_usd=0.05)
        settled = [(s.used, s.reserved) for s in await limiter.usage(levels)]
        assert settled == [(1, 0), (60, 0), (0, 0), (50_000, 0)]

        sent, call = asyncio.Event(), store.admissions._call

        async def sending(batch: list[Any]) -> list[Any]:
            sent.set()
            return await call(batch)

        store.admissions._call = sending
        orphan = asyncio.ensure_future(limiter.admit(levels, Demand(300, 0.2)))
        await sent.wait()  # the call is in flight
        orphan.cancel()
        await store.admissions.idle()  # answered: admitted, and orphaned
        assert store._redeliverer is not None
        await store._redeliverer
        assert [(s.used, s.reserved) for s in await limiter.usage(levels)] == settled

        plan = limiter.plan(levels)
        store._void(("never-admitted", plan, 300, 200_000))
        store._void((kept.reservation.rid, plan, 100, 100_000))
        await store._redeliverer
        assert [(s.used, s.reserved) for s in await limiter.usage(levels)] == settled
        assert store.redeliveries_pending == 0 and store.failures == 0
        await limiter.aclose()

    asyncio.run(run())
    client = redis_py.Redis.from_url(redis.url)
    try:
        assert not list(client.scan_iter(match=f"{prefix}*:r:*"))  # no record left
    finally:
        client.close()


# -- calendar periods -----------------------------------------------------------------------------


def _instants() -> list[int]:
    moments = [
        (1970, 1, 1, 0, 0, 0),
        (2024, 2, 29, 12, 0, 0),  # a leap day
        (2024, 12, 31, 23, 59, 59),  # the last second of a year
        (2025, 1, 1, 0, 0, 0),
        (2027, 1, 31, 23, 59, 59),
        (2027, 2, 28, 23, 59, 59),  # February of a common year
        (2100, 2, 28, 12, 0, 0),  # a century that is not a leap year
        (2000, 2, 29, 0, 0, 0),  # one that is
    ]
    instants = [calendar.timegm(moment) * 1000 for moment in moments]
    return instants + [at + 999 for at in instants] + [at - 1 for at in instants[1:]]


def test_lua_periods_are_those_of_periods_py(redis: RedisServer) -> None:
    """The script's UTC day and month (id and exclusive end) for a set of instants
    (leap days, year ends, centuries, the last millisecond before midnight) equal
    limits/periods.py's."""
    client = redis_py.Redis.from_url(redis.url)
    try:
        queries = [(per, at) for at in _instants() for per in ("day", "month")]
        raw = client.eval(lua.PERIODS, 0, orjson.dumps(queries), 60_000, 1000)
    finally:
        client.close()
    computed = [(period, int(end)) for period, end in orjson.loads(raw)]
    assert computed == [period_of(per, at) for per, at in queries]


# -- TTLs ---------------------------------------------------------------------------------------


def test_every_key_the_store_writes_has_a_ttl(redis: RedisServer) -> None:
    """After admissions of every limit kind, a settlement, a release and a refusal,
    every key under the limiter's prefix expires by itself."""
    prefix = fresh_prefix()
    periods: list[str] = []

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), key_prefix=prefix)
        levels = [
            level(
                "tenant:t",
                requests_per_minute=10,
                tokens_per_minute=1000,
                max_concurrent=2,
                spend_usd=SpendLimit(amount=1.0, per="day"),
            ),
            level("key:k", spend_usd=SpendLimit(amount=5.0, per="month")),
        ]
        first = await limiter.admit(levels, Demand(400, 0.2))
        second = await limiter.admit(levels, Demand(300, 0.1))
        assert first.allowed and second.allowed
        assert not (await limiter.admit(levels, Demand(400, 0.1))).allowed
        await limiter.settle(first.reservation, tokens=350, cost_usd=0.3)
        await limiter.release(second.reservation)
        held = await limiter.admit(levels, Demand(100, 0.1))  # its lease stays held
        assert held.allowed and held.at_ms is not None
        periods.extend(period_of(per, held.at_ms)[0] for per in ("day", "month"))
        await limiter.aclose()

    asyncio.run(run())
    client = redis_py.Redis.from_url(redis.url)
    try:
        keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}*"))
        ttls = {key: client.pttl(key) for key in keys}
    finally:
        client.close()
    day, month = periods
    # The requests', tokens' and leases' slot sets and hashes; a day's and
    # a month's spend hash; and the record of the one reservation not settled (the
    # settled and the released ones' are gone).
    t, k = f"{prefix}tenant:t:", f"{prefix}key:k:"
    record = f"{t}requests_per_minute:r:"
    expected = {
        f"{t}requests_per_minute:z", f"{t}requests_per_minute:h",
        f"{t}tokens_per_minute:z", f"{t}tokens_per_minute:h",
        f"{t}max_concurrent:z", f"{t}max_concurrent:h",
        f"{t}spend_usd:{day}", f"{k}spend_usd:{month}",
    }  # fmt: skip
    assert set(keys) - expected == {key for key in keys if key.startswith(record)}, keys
    assert expected <= set(keys), keys
    assert len(keys) == len(expected) + 1, keys
    assert all(ttl > 0 for ttl in ttls.values()), ttls


# -- zero amounts ---------------------------------------------------------------------------------
# Lua turns `-x` of a zero into -0, which Redis refuses as an integer argument
# ("value is not an integer or out of range"), and a failed script is not rolled
# back. This suite found HINCRBY by `-reserved`, `-estimate` and `-charge(v)` failing
# whenever the amount was 0; limits/lua.py now subtracts (`0 - x`) instead.


def test_a_zero_estimate_settles_on_redis(redis: RedisServer) -> None:
    """A request admitted with a zero estimate (no tokens counted, a free model's
    spend) and released frees its concurrency slot at once, as in memory."""

    async def run() -> None:
        store = RedisStore(redis.url)
        limiter = Limiter(store, key_prefix=fresh_prefix())
        levels = [level(tokens_per_minute=20, max_concurrent=1)]
        first = await limiter.admit(levels, Demand(0))
        assert first.allowed
        await limiter.release(first.reservation)
        try:
            assert store.failures == 0, store.last_error
            assert (await limiter.usage(levels))[1].used == 0
        finally:
            await limiter.aclose()

    asyncio.run(run())


def test_an_admission_after_settled_ones_aged_out(redis: RedisServer) -> None:
    """Once settled admissions age out of a tokens window (so nothing unsettled
    leaves it: `reserved` drops by 0), the next admission is decided, not failed
    as a store outage (503 for a fail_closed level). The window is shortened to
    0.2 s; the wait is for Redis's clock to move past it. The buckets' slot sets,
    emptied when their last slot aged out, are made anew with a TTL."""
    prefix = fresh_prefix()

    async def run() -> None:
        limiter = Limiter(RedisStore(redis.url), window_ms=200, key_prefix=prefix)
        levels = [level(tokens_per_minute=1000, requests_per_minute=10)]
        first = await limiter.admit(levels, Demand(100))
        await limiter.settle(first.reservation, tokens=80)
        await asyncio.sleep(0.3)
        try:
            second = await limiter.admit(levels, Demand(100))
            assert second.allowed, (second.refusal, limiter.last_store_error)
            assert [s.used for s in await limiter.usage(levels)] == [1, 100]
        finally:
            await limiter.aclose()

    asyncio.run(run())
    client = redis_py.Redis.from_url(redis.url)
    try:
        ttls = {key: client.pttl(key) for key in client.scan_iter(match=f"{prefix}*")}
    finally:
        client.close()
    assert len(ttls) == 5 and all(ttl > 0 for ttl in ttls.values()), ttls
