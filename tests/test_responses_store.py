"""The response store (`responses.store`) and input-item pages (`responses.listing`)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from openai.types.responses import ResponseItemList

from responses.errors import InvalidRequest
from responses.listing import input_items_page, parse_page_query
from responses.store import (
    MemoryLimits,
    MemoryResponseStore,
    StoredResponse,
    conversation_history,
)
from tests.support import FakeClock

DAY = 24 * 3600.0


def record(
    response_id: str,
    owner: str = "tenant-a",
    *,
    previous: str | None = None,
    text: str = "answer",
    store: bool = True,
    inputs: list[dict[str, Any]] | None = None,
) -> StoredResponse:
    response = {
        "id": response_id,
        "object": "response",
        "created_at": 1.0,
        "status": "completed",
        "previous_response_id": previous,
        "store": store,
        "output": [
            {
                "id": f"msg_out_{response_id}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
    }
    if inputs is None:
        inputs = [
            {
                "id": f"msg_in_{response_id}",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": f"question {response_id}"}],
            }
        ]
    return StoredResponse(response, inputs, owner)


def size_of(stored: StoredResponse) -> int:
    return len(orjson.dumps({"response": stored.response, "input_items": stored.input_items}))


# --- the memory store ------------------------------------------------------------------


async def test_put_then_get() -> None:
    store = MemoryResponseStore()
    original = record("resp_1")
    assert await store.put(original)
    got = await store.get("resp_1", "tenant-a")
    assert got == original
    assert got is not None and got.id == "resp_1" and got.created_at == 1.0
    assert got.conversation_items == [*original.input_items, *original.response["output"]]


async def test_what_is_stored_cannot_be_changed_from_outside() -> None:
    store = MemoryResponseStore()
    original = record("resp_1")
    await store.put(original)
    original.response["output"].clear()
    got = await store.get("resp_1", "tenant-a")
    assert got is not None and len(got.response["output"]) == 1
    got.input_items.clear()
    again = await store.get("resp_1", "tenant-a")
    assert again is not None and len(again.input_items) == 1


async def test_another_owner_sees_nothing() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1", "tenant-a"))
    assert await store.get("resp_1", "tenant-b") is None
    assert await store.delete("resp_1", "tenant-b") is False
    assert await store.get("resp_1", "tenant-a") is not None
    # nor can it overwrite the record by putting the same id
    assert await store.put(record("resp_1", "tenant-b", text="hijack")) is False
    kept = await store.get("resp_1", "tenant-a")
    assert kept is not None and kept.response["output"][0]["content"][0]["text"] == "answer"


async def test_delete() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1"))
    assert await store.delete("resp_1", "tenant-a") is True
    assert await store.get("resp_1", "tenant-a") is None
    assert await store.delete("resp_1", "tenant-a") is False
    assert len(store) == 0 and store.bytes == 0


async def test_store_false_is_never_kept() -> None:
    store = MemoryResponseStore()
    assert await store.put(record("resp_1", store=False)) is False
    assert await store.get("resp_1", "tenant-a") is None
    assert len(store) == 0


async def test_replacing_a_record_counts_its_bytes_once() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1", text="short"))
    await store.put(record("resp_1", text="a much longer answer than before"))
    assert len(store) == 1
    assert store.bytes == size_of(record("resp_1", text="a much longer answer than before"))


async def test_least_recently_used_is_evicted_past_max_entries() -> None:
    store = MemoryResponseStore(MemoryLimits(max_entries=3))
    for n in range(3):
        await store.put(record(f"resp_{n}"))
    await store.get("resp_0", "tenant-a")  # now the most recently used
    await store.put(record("resp_3"))
    assert len(store) == 3
    assert await store.get("resp_1", "tenant-a") is None
    for n in (0, 2, 3):
        assert await store.get(f"resp_{n}", "tenant-a") is not None


async def test_bytes_are_bounded() -> None:
    one = size_of(record("resp_0"))
    store = MemoryResponseStore(MemoryLimits(max_bytes=one * 2 + one // 2))
    for n in range(5):
        assert await store.put(record(f"resp_{n}"))
        assert store.bytes <= store.limits.max_bytes
    assert len(store) == 2
    assert [await store.get(f"resp_{n}", "tenant-a") is not None for n in range(5)] == [
        False,
        False,
        False,
        True,
        True,
    ]


async def test_a_record_over_the_record_limit_is_not_stored_and_evicts_nothing() -> None:
    small = record("resp_small")
    store = MemoryResponseStore(MemoryLimits(max_record_bytes=size_of(small) + 10))
    await store.put(small)
    assert await store.put(record("resp_big", text="x" * 1000)) is False
    assert await store.get("resp_big", "tenant-a") is None
    assert await store.get("resp_small", "tenant-a") is not None


async def test_records_expire_and_reads_do_not_extend_them() -> None:
    clock = FakeClock()
    store = MemoryResponseStore(MemoryLimits(ttl_seconds=30 * DAY), clock)
    await store.put(record("resp_old"))
    clock.advance(20 * DAY)
    await store.put(record("resp_new"))
    assert await store.get("resp_old", "tenant-a") is not None  # a read...
    clock.advance(10 * DAY + 1)
    assert await store.get("resp_old", "tenant-a") is None  # ...did not extend it
    assert await store.get("resp_new", "tenant-a") is not None
    clock.advance(20 * DAY)
    assert await store.get("resp_new", "tenant-a") is None


async def test_expired_records_leave_memory_without_being_read() -> None:
    clock = FakeClock()
    store = MemoryResponseStore(MemoryLimits(ttl_seconds=60), clock)
    for n in range(10):
        await store.put(record(f"resp_{n}"))
    clock.advance(61)
    await store.put(record("resp_fresh"))
    assert len(store) == 1
    assert store.bytes == size_of(record("resp_fresh"))


@pytest.mark.parametrize(
    "limits",
    [
        {"max_entries": 0},
        {"max_bytes": 0},
        {"max_record_bytes": -1},
        {"ttl_seconds": 0},
    ],
)
def test_limits_must_be_positive(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive"):
        MemoryLimits(**limits)


def test_default_limits() -> None:
    limits = MemoryLimits()
    assert (limits.max_entries, limits.max_bytes, limits.max_record_bytes) == (
        10_000,
        256 * 1024 * 1024,
        8 * 1024 * 1024,
    )
    assert limits.ttl_seconds == 30 * DAY


class StoreMachine(RuleBasedStateMachine):
    """The memory store against a plain list model: same answers, bounds always kept."""

    @initialize(
        max_entries=st.integers(1, 6),
        max_bytes=st.integers(400, 3000),
        ttl=st.integers(5, 50),
    )
    def setup(self, max_entries: int, max_bytes: int, ttl: int) -> None:
        self.clock = FakeClock()
        self.limits = MemoryLimits(
            max_entries=max_entries,
            max_bytes=max_bytes,
            max_record_bytes=max_bytes,
            ttl_seconds=ttl,
        )
        self.store = MemoryResponseStore(self.limits, self.clock)
        # (id, owner, size, expires, record), least recently used first
        self.model: list[tuple[str, str, int, float, StoredResponse]] = []

    def _expire(self) -> None:
        self.model = [entry for entry in self.model if entry[3] > self.clock.now]

    @rule(n=st.integers(0, 7), owner=st.sampled_from(["a", "b"]), text=st.text(max_size=300))
    def put(self, n: int, owner: str, text: str) -> None:
        stored = record(f"resp_{n}", owner, text=text)
        size = size_of(stored)
        kept = asyncio.run(self.store.put(stored))
        self._expire()
        existing = [e for e in self.model if e[0] == stored.id]
        expected = size <= self.limits.max_record_bytes and not (
            existing and existing[0][1] != owner
        )
        assert kept == expected
        if not kept:
            return
        self.model = [e for e in self.model if e[0] != stored.id]
        self.model.append(
            (stored.id, owner, size, self.clock.now + self.limits.ttl_seconds, stored)
        )
        while (
            len(self.model) > self.limits.max_entries
            or sum(e[2] for e in self.model) > self.limits.max_bytes
        ):
            self.model.pop(0)

    @rule(n=st.integers(0, 7), owner=st.sampled_from(["a", "b"]))
    def get(self, n: int, owner: str) -> None:
        got = asyncio.run(self.store.get(f"resp_{n}", owner))
        self._expire()
        match = [e for e in self.model if e[0] == f"resp_{n}" and e[1] == owner]
        if match:
            assert got == match[0][4]
            self.model.remove(match[0])
            self.model.append(match[0])
        else:
            assert got is None

    @rule(n=st.integers(0, 7), owner=st.sampled_from(["a", "b"]))
    def delete(self, n: int, owner: str) -> None:
        deleted = asyncio.run(self.store.delete(f"resp_{n}", owner))
        self._expire()
        match = [e for e in self.model if e[0] == f"resp_{n}" and e[1] == owner]
        assert deleted == bool(match)
        if match:
            self.model.remove(match[0])

    @rule(seconds=st.integers(0, 30))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def bounded(self) -> None:
        assert len(self.store) <= self.limits.max_entries
        assert self.store.bytes <= self.limits.max_bytes


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


# --- conversation history ------------------------------------------------------------------


async def test_history_walks_the_chain_oldest_first() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1"))
    await store.put(record("resp_2", previous="resp_1"))
    await store.put(record("resp_3", previous="resp_2"))
    items = await conversation_history(store, "resp_3", "tenant-a")
    assert [item["id"] for item in items] == [
        "msg_in_resp_1",
        "msg_out_resp_1",
        "msg_in_resp_2",
        "msg_out_resp_2",
        "msg_in_resp_3",
        "msg_out_resp_3",
    ]


async def test_history_of_an_unknown_or_foreign_response_is_not_found() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1", "tenant-a"))
    for response_id, owner in (("resp_nope", "tenant-a"), ("resp_1", "tenant-b")):
        with pytest.raises(InvalidRequest) as caught:
            await conversation_history(store, response_id, owner)
        assert caught.value.param == "previous_response_id"
        assert caught.value.code == "previous_response_not_found"
        assert response_id in caught.value.message


async def test_history_with_a_lost_link_is_refused() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1"))
    await store.put(record("resp_2", previous="resp_1"))
    await store.delete("resp_1", "tenant-a")
    with pytest.raises(InvalidRequest) as caught:
        await conversation_history(store, "resp_2", "tenant-a")
    assert "resp_1" in caught.value.message and "no longer stored" in caught.value.message


async def test_history_depth_is_limited() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_0"))
    for n in range(1, 5):
        await store.put(record(f"resp_{n}", previous=f"resp_{n - 1}"))
    assert len(await conversation_history(store, "resp_4", "tenant-a", max_depth=5)) == 10
    with pytest.raises(InvalidRequest) as caught:
        await conversation_history(store, "resp_4", "tenant-a", max_depth=4)
    assert caught.value.code == "conversation_too_long"


async def test_walking_a_chain_keeps_it_from_eviction() -> None:
    store = MemoryResponseStore(MemoryLimits(max_entries=4))
    await store.put(record("resp_1"))
    await store.put(record("resp_2", previous="resp_1"))
    await store.put(record("other_1"))
    await store.put(record("other_2"))
    await conversation_history(store, "resp_2", "tenant-a")  # touches resp_1 and resp_2
    await store.put(record("resp_3", previous="resp_2"))
    await store.put(record("other_3"))
    assert len(await conversation_history(store, "resp_3", "tenant-a")) == 6


# --- input item pages ----------------------------------------------------------------------


def items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"msg_{k}",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": str(k)}],
        }
        for k in range(n)
    ]


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def test_page_defaults_newest_first() -> None:
    page = input_items_page(items(25))
    ResponseItemList.model_validate(page)
    assert page["object"] == "list"
    assert ids(page) == [f"msg_{k}" for k in range(24, 4, -1)]
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("msg_24", "msg_5", True)


def test_page_after_and_ascending() -> None:
    first = input_items_page(items(5), limit=2, order="asc")
    assert ids(first) == ["msg_0", "msg_1"] and first["has_more"] is True
    second = input_items_page(items(5), limit=2, order="asc", after=first["last_id"])
    assert ids(second) == ["msg_2", "msg_3"] and second["has_more"] is True
    third = input_items_page(items(5), limit=2, order="asc", after=second["last_id"])
    assert ids(third) == ["msg_4"] and third["has_more"] is False
    last = input_items_page(items(5), limit=2, order="asc", after="msg_4")
    assert last == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_pages_cover_every_item_once() -> None:
    source = items(23)
    for order in ("asc", "desc"):
        seen: list[str] = []
        after = None
        while True:
            page = input_items_page(source, limit=5, order=order, after=after)
            seen += ids(page)
            if not page["has_more"]:
                break
            after = page["last_id"]
        expected = [item["id"] for item in source]
        assert seen == (expected if order == "asc" else expected[::-1])


@pytest.mark.parametrize(
    ("arguments", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": True}, "limit"),
        ({"order": "random"}, "order"),
        ({"after": "msg_404"}, "after"),
    ],
)
def test_bad_page_arguments(arguments: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        input_items_page(items(3), **arguments)
    assert caught.value.param == param


def test_page_query_parsing() -> None:
    assert parse_page_query({"limit": "5", "order": "asc", "after": "msg_1", "include[]": "x"}) == {
        "limit": 5,
        "order": "asc",
        "after": "msg_1",
    }
    assert parse_page_query({}) == {}
    with pytest.raises(InvalidRequest):
        parse_page_query({"limit": "five"})
