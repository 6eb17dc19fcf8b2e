"""The MCP result ledger's two stores (toolservers/ledger.py, toolservers/redis_ledger.py).

Property tests: a tenant only ever evicts its own results (memory); the Redis ledger
decides exactly as the memory one over the same operations (what is recognised,
what was evicted or not recorded, the bytes each tenant holds), against a real
`redis-server`. Then what only Redis has: every key expires, and a Redis that does
not answer is a `LedgerUnavailable` on lookup and an unrecorded result on record,
within the timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.examples import examples
from tests.services import RedisServer
from toolservers.config import LedgerSettings
from toolservers.fingerprints import lookup_prints, message_forms, result_prints, text_parts
from toolservers.ledger import LedgerUnavailable, MemoryLedger
from toolservers.redis_ledger import RedisLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result(n: int) -> dict[str, Any]:
    """Result `n` of tool `t`: plain text, JSON text (two fingerprints), or six JSON
    parts and structured content (eight, the most one result has), by `n % 3`, so
    results differ in size as real ones do and every byte bound is reachable."""
    if n % 3 == 0:
        return {"content": [{"type": "text", "text": f"result {n}"}]}
    if n % 3 == 1:
        return {"content": [{"type": "text", "text": json.dumps({"n": n})}]}
    parts = [{"type": "text", "text": json.dumps({"n": n, "part": p})} for p in range(6)]
    return {"content": parts, "structuredContent": {"n": n}}


def served(n: int) -> tuple[bytes, ...]:
    """The fingerprints result `n` is remembered by."""
    return result_prints("t", {}, result(n))


def shown(n: int) -> list[bytes]:
    """The fingerprints a tool message showing result `n` (its text) is looked up by."""
    return lookup_prints("t", {}, message_forms("\n".join(text_parts(result(n)))))


#: Tight bounds, so short runs reach every one of them.
TIGHT = LedgerSettings(
    max_entries_per_key=4,
    max_bytes_per_key=1024,
    max_keys=6,
    max_keys_per_tenant=3,
    max_bytes_per_tenant=1024 + 256,
    ttl_s=60,
)

ledger_ops = st.lists(
    st.tuples(st.sampled_from(["red", "blue", "wait"]), st.integers(0, 4), st.integers(0, 30)),
    max_size=80,
)


def key_of(who: str, k: int) -> str:
    """Five red keys, two blue ones."""
    return f"{who}{k % (5 if who == 'red' else 2)}"


@settings(max_examples=examples(150), deadline=None)
@given(ledger_ops)
def test_a_tenant_only_ever_evicts_its_own_ledger(ops: list[tuple[str, int, int]]) -> None:
    """Five red keys and two blue ones record results under tight per-tenant and total
    bounds: every bound holds, and nothing red records makes a blue result that was
    recognised stop being recognised (only blue's own records, or time, do)."""
    clock = Clock()
    ledger = MemoryLedger(TIGHT, clock)
    recorded: list[tuple[str, int]] = []

    def known(key: str, n: int) -> bool:
        return ledger.recognises_now(key, shown(n))

    for who, k, n in ops:
        if who == "wait":
            clock.now += n
            continue
        key = key_of(who, k)
        blue_before = {(b, m) for b, m in recorded if b.startswith("blue") and known(b, m)}
        ledger.record_now(key, who, served(n))
        recorded.append((key, n))
        if who == "red":
            assert all(known(b, m) for b, m in blue_before)
        for tenant in ("red", "blue"):
            owner = ledger._tenants.get(tenant)
            if owner is not None:
                assert len(owner.keys) <= 3 and owner.bytes <= TIGHT.max_bytes_per_tenant
                assert owner.bytes == sum(ledger.size(key) for key in owner.keys)
        assert len(ledger._keys) <= TIGHT.max_keys


def test_ledger_is_bounded_per_key_and_expires() -> None:
    clock = Clock()
    ledger = MemoryLedger(
        LedgerSettings(max_entries_per_key=3, max_bytes_per_key=1024, max_keys=2, ttl_s=60), clock
    )
    for n in (0, 3, 6, 9, 12):  # plain text: one fingerprint each
        ledger.record_now("a", "t", served(n))
    assert ledger.served("a") == 3
    assert not ledger.recognises_now("a", shown(3)) and ledger.recognises_now("a", shown(12))
    assert ledger.size("a") <= 1024
    ledger.record_now("b", "t", served(9))
    ledger.record_now("c", "t", served(9))  # a third key: the least recently served goes
    assert not ledger.recognises_now("a", shown(12)) and ledger.recognises_now("c", shown(9))
    clock.now += 61
    assert not ledger.recognises_now("c", shown(9))


# -- Redis: the same decisions ----------------------------------------------------------------

#: Each example writes under a prefix of its own, so one Redis serves them all.
PREFIXES = (f"seawall:ledger-test:{n}:" for n in itertools.count())
#: Long enough that nothing expires during an example (expiry is tested apart: the
#: memory ledger's clock is the test's, Redis's is its own).
NO_EXPIRY = TIGHT.model_copy(update={"ttl_s": 3600.0})

parity_ops = st.lists(
    st.tuples(st.sampled_from(["red", "blue", "green"]), st.integers(0, 4), st.integers(0, 12)),
    min_size=1,
    max_size=50,
)


@pytest.fixture(scope="module")
def shared_redis() -> Any:
    from tests.services import redis_server

    with redis_server() as server:
        yield server


async def tenant_bytes(redis: Any, prefix: str) -> dict[str, int]:
    return {t.decode(): int(b) for t, b in (await redis.hgetall(f"{prefix}tb")).items()}


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(parity_ops)
def test_redis_decides_exactly_as_memory(
    shared_redis: RedisServer, ops: list[tuple[str, int, int]]
) -> None:
    """The same records, in the same order, into both stores: after each one, the
    same counts of evicted and unrecorded results and the same bytes per tenant;
    at the end, the same answer for every result ever recorded."""
    settings_ = NO_EXPIRY.model_copy(update={"store": shared_redis.url})
    prefix = next(PREFIXES)

    async def run() -> None:
        memory = MemoryLedger(NO_EXPIRY)
        shared = RedisLedger(settings_, prefix=prefix)
        client = shared._client
        try:
            for who, k, n in ops:
                key = key_of(who, k)
                memory.record_now(key, who, served(n))
                await shared.record(key, who, served(n))
                assert (shared.evicted, shared.unrecorded) == (memory.evicted, memory.unrecorded)
                expected = {t: o.bytes for t, o in memory._tenants.items() if o.bytes}
                assert await tenant_bytes(client, prefix) == expected
                assert await client.zcard(f"{prefix}seen") == len(memory._keys)
            for who, k, n in {(who, k, n) for who, k, n in ops}:
                key = key_of(who, k)
                assert await shared.recognises(key, shown(n)) == memory.recognises_now(
                    key, shown(n)
                ), (key, n)
        finally:
            await shared.aclose()

    asyncio.run(run())


# -- Redis: what only it has ---------------------------------------------------------------


def redis_ledger(redis: RedisServer, **settings: Any) -> RedisLedger:
    return RedisLedger(LedgerSettings(store=redis.url, **settings))  # type: ignore[arg-type]


async def record_all(ledger: RedisLedger, records: Sequence[tuple[str, str, int]]) -> None:
    for key, tenant, n in records:
        await ledger.record(key, tenant, served(n))


async def test_every_redis_key_expires_and_results_expire(redis: RedisServer) -> None:
    ledger = redis_ledger(redis, ttl_s=1)
    try:
        await record_all(ledger, [("a", "blue", 1), ("b", "red", 2)])
        assert await ledger.recognises("a", shown(1))
        assert not await ledger.recognises("a", shown(2))  # b's, not a's
        client = sync_redis.Redis.from_url(redis.url)
        keys = client.keys("seawall:ledger:*")
        assert keys and all(0 < client.pttl(k) <= 61_000 for k in keys), keys
        deadline = time.monotonic() + 5
        # Both results expired, on Redis's clock (b's was recorded after a's: under
        # load, enough later that a's alone may be gone).
        while await ledger.recognises("a", shown(1)) or await ledger.recognises("b", shown(2)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # The next record forgets both keys (their every result expired): the count of
        # keys held, against `max_keys`, is only the new one.
        await ledger.record("c", "blue", served(3))
        assert client.zcard("seawall:ledger:seen") == 1
        assert client.hgetall("seawall:ledger:tb") == {
            b"blue": client.hget("seawall:ledger:kb", "c")
        }
    finally:
        await ledger.aclose()


async def test_redis_down_is_unavailable_at_once_and_results_are_unrecorded(
    redis: RedisServer,
) -> None:
    ledger = redis_ledger(redis, store_timeout_ms=300)
    try:
        await ledger.record("a", "blue", served(1))
        redis.kill()
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            await ledger.recognises("a", shown(1))
        await ledger.record("a", "blue", served(2))
        assert time.monotonic() - started < 2
        assert ledger.unrecorded == 1 and ledger.failures == 2
    finally:
        await ledger.aclose()
