"""Response store quotas, one property test for both stores (memory, and Redis on a real
`redis-server`), and what only the Redis store has: TTLs on every key, expiry that
uncounts, outages that answer at once.

The property: against a plain list model of the quota rules (a key over its quota
evicts its own least recently used, then a tenant over its quota its own, a put that
would cross the total is refused), every answer matches, no put by one tenant ever
removes another tenant's record, and every bound holds after every step. The item
index too: an item id finds the owner's last record put with it while that record is
stored, and never another owner's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from responses.config import ResponsesConfig
from responses.errors import StoreUnavailable
from responses.memory import MemoryResponseStore
from responses.redis_store import RedisResponseStore
from responses.store import Owner, Put, ResponseStore, StoredResponse
from tests.examples import examples
from tests.response_records import config, record, size_of
from tests.services import RedisServer

OWNERS = [Owner(tenant, key) for tenant in ("t1", "t2") for key in ("k1", "k2")]
MACHINE_SETTINGS = settings(
    max_examples=examples(40),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Entry:
    id: str
    owner: Owner
    size: int
    items: tuple[str, ...] = ()


#: Item ids records share (a client that sends an item back by value keeps its id).
SHARED = ["msg_s0", "msg_s1"]


class QuotaMachine(RuleBasedStateMachine):
    """A store against the list model; `make` builds a fresh store for a config."""

    make: Callable[[ResponsesConfig], ResponseStore]

    @initialize(
        # A record is ~1,100 to ~1,900 bytes (two or three items, their index entries).
        key=st.tuples(st.integers(1, 4), st.integers(1000, 4000)),
        tenant_extra=st.tuples(st.integers(0, 3), st.integers(0, 3000)),
        total_extra=st.tuples(st.integers(0, 4), st.integers(0, 6000)),
    )
    def setup(
        self, key: tuple[int, int], tenant_extra: tuple[int, int], total_extra: tuple[int, int]
    ) -> None:
        tenant = (key[0] + tenant_extra[0], key[1] + tenant_extra[1])
        total = (tenant[0] + total_extra[0], tenant[1] + total_extra[1])
        self.config = config(key=key, tenant=tenant, total=total, record_bytes=key[1])
        self.loop = asyncio.new_event_loop()
        self.store = self.make(self.config)
        #: Least recently used first.
        self.model: list[Entry] = []
        #: (owner, item id) -> the id of the record the owner's index points at.
        self.index: dict[tuple[Owner, str], str] = {}

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.run_until_complete(self.store.aclose())
            self.loop.close()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def _plan(self, owner: Owner, response_id: str, size: int) -> list[Entry] | None:
        """The model's victims for a put, or None when the total refuses it."""
        quotas = ((self.config.per_key, lambda e: e.owner == owner),
                  (self.config.per_tenant, lambda e: e.owner.tenant == owner.tenant))  # fmt: skip
        staying = [e for e in self.model if e.id != response_id]
        victims: list[Entry] = []
        for quota, mine in quotas:
            for entry in [e for e in staying if mine(e)]:
                held = [e for e in staying if mine(e) and e not in victims]
                if (len(held) + 1 <= quota.max_entries
                        and sum(e.size for e in held) + size <= quota.max_bytes):  # fmt: skip
                    break
                if entry not in victims:
                    victims.append(entry)
        kept = [e for e in staying if e not in victims]
        total = self.config.total
        if len(kept) + 1 > total.max_entries or sum(e.size for e in kept) + size > total.max_bytes:
            return None
        return victims

    def _removed(self, gone: list[Entry]) -> None:
        for entry in gone:
            for item in entry.items:
                if self.index.get((entry.owner, item)) == entry.id:
                    del self.index[(entry.owner, item)]

    @rule(
        n=st.integers(0, 9),
        owner=st.sampled_from(OWNERS),
        text=st.text(max_size=400),
        shared=st.sampled_from([None, *SHARED]),
    )
    def put(self, n: int, owner: Owner, text: str, shared: str | None) -> None:
        stored = record(f"resp_{n}", owner, text=text)
        if shared is not None:
            extra = {**stored.input_items[0], "id": shared}
            stored = StoredResponse(stored.response, [*stored.input_items, extra], owner)
        items = tuple(item["id"] for item in stored.conversation_items)
        size = size_of(stored)
        others_before = {e.id for e in self.model if e.owner.tenant != owner.tenant}
        result = self.run(self.store.put(stored))
        existing = next((e for e in self.model if e.id == stored.id), None)
        if size > self.config.max_record_bytes:
            assert result == Put.TOO_LARGE
        elif existing is not None and existing.owner != owner:
            assert result == Put.CONFLICT
        else:
            victims = self._plan(owner, stored.id, size)
            if victims is None:
                assert result == Put.STORE_FULL
            else:
                assert result == Put.STORED
                self._removed([e for e in self.model if e in victims or e.id == stored.id])
                self.model = [e for e in self.model if e not in victims and e.id != stored.id]
                self.model.append(Entry(stored.id, owner, size, items))
                for item in items:
                    self.index[(owner, item)] = stored.id
        # The wall: a put never removes another tenant's record.
        assert others_before <= {e.id for e in self.model if e.owner.tenant != owner.tenant}

    @rule(n=st.integers(0, 9), owner=st.sampled_from(OWNERS))
    def get(self, n: int, owner: Owner) -> None:
        got = self.run(self.store.get(f"resp_{n}", owner))
        match = next((e for e in self.model if e.id == f"resp_{n}" and e.owner == owner), None)
        assert (got is not None) == (match is not None)
        if match is not None:
            self.model.remove(match)
            self.model.append(match)

    @rule(n=st.integers(0, 9), owner=st.sampled_from(OWNERS))
    def walk(self, n: int, owner: Owner) -> None:
        """A one-record chain walk is a use too."""
        walked = self.run(self.store.chain(f"resp_{n}", owner, 10, 1 << 20))
        match = next((e for e in self.model if e.id == f"resp_{n}" and e.owner == owner), None)
        assert (walked.missing is None) == (match is not None)
        if match is not None:
            self.model.remove(match)
            self.model.append(match)

    @rule(n=st.integers(0, 9), owner=st.sampled_from(OWNERS))
    def delete(self, n: int, owner: Owner) -> None:
        deleted = self.run(self.store.delete(f"resp_{n}", owner))
        match = next((e for e in self.model if e.id == f"resp_{n}" and e.owner == owner), None)
        assert deleted == (match is not None)
        if match is not None:
            self.model.remove(match)
            self._removed([match])

    @rule(n=st.integers(0, 9), owner=st.sampled_from(OWNERS))
    def find_items(self, n: int, owner: Owner) -> None:
        """Items by id: their sizes (not a use), then the items (a use of each record
        read from, in the order first read)."""
        ids = [f"msg_in_resp_{n}", f"msg_out_resp_{n}", *SHARED]
        sizes = self.run(self.store.item_sizes(ids, owner))
        read = self.run(self.store.read_items(ids, owner))
        expected = [self.index.get((owner, item)) for item in ids]
        assert [size is not None for size in sizes] == [e is not None for e in expected]
        touched: list[str] = []
        for item, size, blob, holder in zip(ids, sizes, read, expected, strict=True):
            assert (blob is None) == (holder is None)
            if blob is not None:
                assert len(blob) == size and orjson.loads(blob)["id"] == item
                if holder not in touched:
                    touched.append(str(holder))
        for holder in touched:
            entry = next(e for e in self.model if e.id == holder)
            self.model.remove(entry)
            self.model.append(entry)

    @invariant()
    def bounded(self) -> None:
        if not hasattr(self, "model"):
            return
        for owner in OWNERS:
            for quota, mine in (
                (self.config.per_key, [e for e in self.model if e.owner == owner]),
                (self.config.per_tenant, [e for e in self.model if e.owner.tenant == owner.tenant]),
            ):
                assert len(mine) <= quota.max_entries
                assert sum(e.size for e in mine) <= quota.max_bytes
        total = self.config.total
        assert len(self.model) <= total.max_entries
        assert sum(e.size for e in self.model) <= total.max_bytes
        # The store holds exactly the model's records, each its owner's.
        for entry in self.model:
            assert self.run(self.store.head(entry.id, entry.owner)) is not None
        if isinstance(self.store, MemoryResponseStore):
            assert self.store.ids() == {e.id for e in self.model}
            assert self.store.bytes == sum(e.size for e in self.model)
            for owner in OWNERS:
                key = [e for e in self.model if e.owner == owner]
                tenant = [e for e in self.model if e.owner.tenant == owner.tenant]
                assert self.store.usage(owner) == (
                    (len(key), sum(e.size for e in key)),
                    (len(tenant), sum(e.size for e in tenant)),
                )


def test_memory_store_quotas() -> None:
    class Memory(QuotaMachine):
        make = staticmethod(MemoryResponseStore)

    run_state_machine_as_test(
        Memory, settings=settings(MACHINE_SETTINGS, max_examples=examples(100))
    )


@settings(max_examples=examples(200), deadline=None)
@given(
    key=st.tuples(st.integers(1, 4), st.integers(1000, 4000)),
    tenant_extra=st.tuples(st.integers(0, 3), st.integers(0, 3000)),
    puts=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(OWNERS), st.text(max_size=400)),
        max_size=40,
    ),
)
def test_memory_store_skips_a_plan_only_when_it_would_evict_nothing(
    key: tuple[int, int], tenant_extra: tuple[int, int], puts: list[tuple[int, Owner, str]]
) -> None:
    """`MemoryResponseStore._victims` answers "nothing to evict" without planning when
    both shares have room for one more record; before every put of a random sequence
    (new ids and ids put again), it decides exactly as the full plan (`_plan`, what
    every put used to run) does."""
    tenant = (key[0] + tenant_extra[0], key[1] + tenant_extra[1])
    store = MemoryResponseStore(config(key=key, tenant=tenant, record_bytes=key[1]))
    loop = asyncio.new_event_loop()
    try:
        for n, owner, text in puts:
            stored = record(f"resp_{n}", owner, text=text)
            shares = (
                store._keys.get((owner.tenant, owner.key)),
                store._tenants.get(owner.tenant),
            )
            size = size_of(stored)
            assert store._victims(*shares, stored.id, size) == store._plan(*shares, stored.id, size)
            loop.run_until_complete(store.put(stored))
    finally:
        loop.close()


def test_redis_store_quotas(redis: RedisServer) -> None:
    def make(settings: ResponsesConfig) -> ResponseStore:
        # A fresh key prefix per example: the same Redis, nothing shared.
        # A generous timeout: this machine is shared, and a slow answer is not
        # what this test is about (test_redis_down_... is).
        return RedisResponseStore(
            settings.model_copy(update={"store": redis_url(redis), "store_timeout_ms": 5000}),
            prefix=f"test:{uuid.uuid4().hex}:",
        )

    class Redis(QuotaMachine):
        pass

    Redis.make = staticmethod(make)
    run_state_machine_as_test(Redis, settings=MACHINE_SETTINGS)


def redis_url(redis: RedisServer) -> object:
    return ResponsesConfig(store=redis.url).store


# --- what only the Redis store has --------------------------------------------------------


def redis_store(
    redis: RedisServer, prefix: str = "seawall:responses:", **settings: object
) -> RedisResponseStore:
    return RedisResponseStore(config(store=redis.url, **settings), prefix=prefix)  # type: ignore[arg-type]


async def test_every_redis_key_has_a_ttl(redis: RedisServer) -> None:
    store = redis_store(redis, ttl=3600)
    owner = OWNERS[0]
    await store.put(record("resp_1", owner))
    await store.put(record("resp_2", owner, previous="resp_1"))
    await store.get("resp_1", owner)
    await store.chain("resp_2", owner, 10, 1 << 20)
    await store.put(record("resp_1", owner, text="replaced"))
    await store.delete("resp_2", owner)
    await store.aclose()
    client = sync_redis.Redis.from_url(redis.url)
    keys = list(client.scan_iter("seawall:responses:*"))
    assert {key.decode().removeprefix("seawall:responses:") for key in keys} >= {
        "r:resp_1", "idx", "exp", "bytes", "tick", "t:t1", "k:t1:k1", "x:t1:k1", "xs",
    }  # fmt: skip
    for key in keys:
        ttl = client.pttl(key)
        assert 0 < ttl <= (3600 + 60) * 1000, (key, ttl)
    assert 0 < client.pttl("seawall:responses:r:resp_1") <= 3600 * 1000


async def test_an_expired_record_is_uncounted_by_the_next_put(redis: RedisServer) -> None:
    store = redis_store(redis, entries=2)
    owner = OWNERS[0]
    await store.put(record("resp_1", owner))
    await store.put(record("resp_2", owner))
    # Time passes for resp_1 only: its data expires and its expiry is due.
    client = sync_redis.Redis.from_url(redis.url)
    client.delete("seawall:responses:r:resp_1")
    client.zadd("seawall:responses:exp", {"resp_1": 0})
    assert await store.put(record("resp_3", owner)) == Put.STORED
    # resp_1 was uncounted, so resp_2 (the least recently used live one) stays.
    assert await store.get("resp_2", owner) is not None
    assert await store.get("resp_3", owner) is not None
    assert client.hlen("seawall:responses:idx") == 2
    # Its item index entries went with it; the live records' are there.
    index = {k.decode() for k in client.hkeys("seawall:responses:x:t1:k1")}
    assert index == {f"msg_{io}_resp_{n}" for io in ("in", "out") for n in (2, 3)}
    assert {k.decode() for k in client.hkeys("seawall:responses:xs")} == {"resp_2", "resp_3"}
    assert int(client.hget("seawall:responses:bytes", "all") or 0) == sum(
        size_of(record(f"resp_{n}", owner)) for n in (2, 3)
    )
    await store.aclose()


async def test_redis_down_answers_at_once_with_store_unavailable(redis: RedisServer) -> None:
    store = redis_store(redis, store_timeout_ms=300)
    owner = OWNERS[0]
    await store.put(record("resp_1", owner))
    redis.kill()
    for call in (
        lambda: store.get("resp_1", owner),
        lambda: store.head("resp_1", owner),
        lambda: store.chain("resp_1", owner, 10, 1 << 20),
        lambda: store.put(record("resp_2", owner)),
        lambda: store.delete("resp_1", owner),
        lambda: store.item_sizes(["msg_in_resp_1"], owner),
        lambda: store.read_items(["msg_in_resp_1"], owner),
    ):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        assert time.monotonic() - started < 2.0  # the timeout (and one reconnect), no hang
        assert "127.0.0.1" not in caught.value.message
    assert store.failures == 7
    redis.start()
    assert await store.put(record("resp_3", owner)) == Put.STORED
    assert await store.get("resp_3", owner) is not None
    await store.aclose()
