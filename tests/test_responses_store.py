"""The response store (responses/memory.py), conversations (responses/conversation.py)
and input-item pages (`responses.listing`).

The quota properties (no owner evicts another tenant's records; bounds always hold)
are in tests/test_responses_quotas.py, against the memory and the Redis store alike.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseItemList
from pydantic import ValidationError

from responses.config import Quota, ResponsesConfig
from responses.conversation import Bounds, check_head, conversation_history
from responses.errors import InvalidRequest
from responses.listing import input_items_page, parse_page_query
from responses.memory import MemoryResponseStore
from responses.request import to_chat
from responses.response import from_chat
from responses.store import EMPTY, EMPTY_OUTPUT, Chain, Owner, Put, StoredResponse, encode
from tests.examples import examples
from tests.response_records import A, config, record, size_of
from tests.support import FakeClock

DAY = 24 * 3600
B = Owner("tenant-b", "key-b")
BOUNDS = Bounds(max_depth=1000, max_bytes=1 << 30)


# --- encoding ----------------------------------------------------------------------------

#: Keys that make an emptied `output` appear more than once in a response blob.
AWKWARD_KEYS = st.sampled_from(["output", 'a"output', "id", "text"]) | st.text(max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=6) | st.just([]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(AWKWARD_KEYS, children, max_size=3)
    ),
    max_leaves=8,
)
items = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("message")},
        optional={"id": st.text(max_size=6) | json_values, "content": json_values},
    ),
    max_size=3,
)
others = st.dictionaries(AWKWARD_KEYS.filter(lambda key: key != "output"), json_values, max_size=4)


@settings(max_examples=examples(300), deadline=None)
@given(others, st.none() | items, others, items)
def test_a_record_encoded_gives_back_its_response_json(
    before: dict[str, Any], output: list[Any] | None, after: dict[str, Any], inputs: list[Any]
) -> None:
    """`Encoded.whole` (what the gateway sends instead of encoding the response again)
    is exactly `orjson.dumps` of the response, wherever `output` is and whatever the
    other values hold; it declines (None) only when there is no `output` or its
    emptied form is not unique in the response blob."""
    response = {**before, **({} if output is None else {"output": output}), **after}
    encoded = encode(StoredResponse(response, inputs, A))
    whole = encoded.whole()
    if whole is not None:
        assert whole == orjson.dumps(response)
    else:
        assert output is None or encoded.response.count(EMPTY_OUTPUT) > 1


def test_a_translated_response_is_encoded_once() -> None:
    """A Response `from_chat` made always comes back whole from its stored blobs."""
    translation = to_chat({"model": "m", "input": [{"role": "user", "content": "hi"}]})
    chat = {"choices": [{"message": {"content": "hello", "tool_calls": None}}], "usage": {}}
    response = from_chat(chat, translation, "resp_1", 1)
    encoded = encode(StoredResponse(response, translation.input_items, A))
    assert encoded.whole() == orjson.dumps(response)


# --- the memory store ------------------------------------------------------------------


async def test_put_then_get() -> None:
    store = MemoryResponseStore()
    original = record("resp_1")
    assert await store.put(original) == Put.STORED
    got = await store.get("resp_1", A)
    assert got == original
    assert got is not None and got.id == "resp_1" and got.created_at == 1.0
    assert got.conversation_items == [*original.input_items, *original.response["output"]]
    assert list(got.response) == list(original.response)  # `output` keeps its place


async def test_what_is_stored_cannot_be_changed_from_outside() -> None:
    store = MemoryResponseStore()
    original = record("resp_1")
    await store.put(original)
    original.response["output"].clear()
    got = await store.get("resp_1", A)
    assert got is not None and len(got.response["output"]) == 1
    got.input_items.clear()
    again = await store.get("resp_1", A)
    assert again is not None and len(again.input_items) == 1


async def test_another_owner_sees_nothing() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1", A))
    for other in (B, Owner(A.tenant, "key-other"), Owner("tenant-other", A.key)):
        assert await store.get("resp_1", other) is None
        assert await store.head("resp_1", other) is None
        assert (await store.chain("resp_1", other, 10, 1 << 20)).missing == "resp_1"
        assert await store.delete("resp_1", other) is False
        # nor can it overwrite the record by putting the same id
        assert await store.put(record("resp_1", other, text="hijack")) == Put.CONFLICT
    kept = await store.get("resp_1", A)
    assert kept is not None and kept.response["output"][0]["content"][0]["text"] == "answer"


async def test_delete() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1"))
    assert await store.delete("resp_1", A) is True
    assert await store.get("resp_1", A) is None
    assert await store.delete("resp_1", A) is False
    assert len(store) == 0 and store.bytes == 0
    assert store.usage(A) == ((0, 0), (0, 0))


async def test_store_false_is_never_kept() -> None:
    store = MemoryResponseStore()
    assert await store.put(record("resp_1", store=False)) == Put.NOT_REQUESTED
    assert await store.get("resp_1", A) is None
    assert len(store) == 0


async def test_replacing_a_record_counts_its_bytes_once() -> None:
    store = MemoryResponseStore()
    await store.put(record("resp_1", text="short"))
    await store.put(record("resp_1", text="a much longer answer than before"))
    assert len(store) == 1
    size = size_of(record("resp_1", text="a much longer answer than before"))
    assert store.bytes == size
    assert store.usage(A) == ((1, size), (1, size))


async def test_what_a_record_holds_in_memory_is_what_the_quotas_count() -> None:
    """The byte quotas bound real memory: 400 small records hold (tracemalloc) no more
    than their counted bytes plus 512 bytes of bookkeeping each (measured: 1.35x the
    count). Kept as orjson hands them over, their blobs held 4 KiB or more each
    (orjson's buffer): 8.5x what was counted."""
    store = MemoryResponseStore(config(entries=1_000, size=10**8))
    records = [record(f"resp_{n}", text="ok") for n in range(400)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for stored in records:
            assert await store.put(stored) == Put.STORED
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = store.bytes
    assert counted < 400 * 2_048  # small records: the case the buffer hurt most
    assert held <= counted + 400 * 512, (held, counted)


async def test_least_recently_used_is_evicted_past_max_entries() -> None:
    store = MemoryResponseStore(config(entries=3))
    for n in range(3):
        await store.put(record(f"resp_{n}"))
    await store.get("resp_0", A)  # now the most recently used
    await store.put(record("resp_3"))
    assert len(store) == 3
    assert await store.get("resp_1", A) is None
    for n in (0, 2, 3):
        assert await store.get(f"resp_{n}", A) is not None


async def test_bytes_are_bounded() -> None:
    one = size_of(record("resp_0"))
    store = MemoryResponseStore(config(size=one * 2 + one // 2))
    for n in range(5):
        assert await store.put(record(f"resp_{n}")) == Put.STORED
        assert store.bytes <= store.config.per_key.max_bytes
    assert len(store) == 2
    assert [await store.get(f"resp_{n}", A) is not None for n in range(5)] == [
        False,
        False,
        False,
        True,
        True,
    ]


async def test_a_key_over_its_quota_evicts_its_own_not_its_siblings() -> None:
    sibling = Owner(A.tenant, "key-sibling")
    store = MemoryResponseStore(config(key=(2, 1 << 20), tenant=(4, 1 << 20), total=(100, 1 << 30)))
    await store.put(record("sib_1", sibling))
    await store.put(record("sib_2", sibling))
    for n in range(6):
        assert await store.put(record(f"resp_{n}")) == Put.STORED
    assert store.ids() == {"sib_1", "sib_2", "resp_4", "resp_5"}


async def test_a_tenant_over_its_quota_evicts_its_own_keys_least_recently_used() -> None:
    sibling = Owner(A.tenant, "key-sibling")
    store = MemoryResponseStore(config(key=(3, 1 << 20), tenant=(4, 1 << 20), total=(100, 1 << 30)))
    await store.put(record("b_1", B))
    await store.put(record("sib_1", sibling))
    await store.put(record("sib_2", sibling))
    await store.put(record("a_1"))
    await store.put(record("a_2"))
    await store.get("sib_1", sibling)  # now sib_2 is the tenant's least recently used
    await store.put(record("a_3"))  # the tenant is full: its least recently used goes
    assert store.ids() == {"b_1", "sib_1", "a_1", "a_2", "a_3"}


async def test_at_the_total_a_put_is_refused_and_nothing_is_evicted() -> None:
    one = size_of(record("b_0", B))
    store = MemoryResponseStore(config(key=(3, 1 << 20), tenant=(3, 1 << 20), total=(3, 1 << 30)))
    for n in range(3):
        await store.put(record(f"b_{n}", B))
    assert await store.put(record("a_0")) == Put.STORE_FULL
    assert store.ids() == {"b_0", "b_1", "b_2"} and store.bytes == 3 * one
    await store.delete("b_0", B)
    assert await store.put(record("a_0")) == Put.STORED


async def test_a_record_over_the_record_limit_is_not_stored_and_evicts_nothing() -> None:
    small = record("resp_small")
    store = MemoryResponseStore(config(record_bytes=size_of(small) + 10))
    await store.put(small)
    assert await store.put(record("resp_big", text="x" * 1000)) == Put.TOO_LARGE
    assert await store.get("resp_big", A) is None
    assert await store.get("resp_small", A) is not None


async def test_records_expire_and_reads_do_not_extend_them() -> None:
    clock = FakeClock()
    store = MemoryResponseStore(config(ttl=30 * DAY), clock)
    await store.put(record("resp_old"))
    clock.advance(20 * DAY)
    await store.put(record("resp_new"))
    assert await store.get("resp_old", A) is not None  # a read...
    clock.advance(10 * DAY + 1)
    assert await store.get("resp_old", A) is None  # ...did not extend it
    assert await store.get("resp_new", A) is not None
    clock.advance(20 * DAY)
    assert await store.get("resp_new", A) is None


async def test_expired_records_leave_memory_without_being_read() -> None:
    clock = FakeClock()
    store = MemoryResponseStore(config(ttl=60), clock)
    for n in range(10):
        await store.put(record(f"resp_{n}"))
    clock.advance(61)
    await store.put(record("resp_fresh"))
    assert len(store) == 1
    assert store.bytes == size_of(record("resp_fresh"))


@pytest.mark.parametrize(
    "settings",
    [
        {"per_key": {"max_entries": 0, "max_bytes": 1}},
        {"total": {"max_entries": 1, "max_bytes": 0}},
        {"max_record_bytes": -1},
        {"ttl_seconds": 0},
        {"max_chain_depth": 0},
        {"max_chain_bytes": 0},
    ],
)
def test_limits_must_be_positive(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        ResponsesConfig.model_validate(settings)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"max_record_bytes": 64 * 1024 * 1024}, "max_record_bytes"),
        ({"per_key": {"max_entries": 6000, "max_bytes": 1 << 25}}, "per_key.max_entries"),
        ({"per_tenant": {"max_entries": 5000, "max_bytes": 1 << 40}}, "per_tenant.max_bytes"),
        ({"store": "postgres://db"}, "redis://"),
    ],
)
def test_quotas_nest(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ResponsesConfig.model_validate(settings)


def test_default_limits() -> None:
    defaults = ResponsesConfig()
    mib = 1024 * 1024
    assert defaults.per_key == Quota(max_entries=2_500, max_bytes=32 * mib)
    assert defaults.per_tenant == Quota(max_entries=5_000, max_bytes=64 * mib)
    assert defaults.total == Quota(max_entries=50_000, max_bytes=512 * mib)
    assert defaults.max_record_bytes == 8 * mib
    assert defaults.ttl_seconds == 30 * DAY
    assert (defaults.max_chain_depth, defaults.max_chain_bytes) == (256, 4 * mib)
    assert defaults.store == "memory" and not defaults.shared


def test_store_url_credentials_are_masked_when_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONSES_REDIS_PASSWORD", "hunter2-secret")
    settings = ResponsesConfig(store="redis://app:env:RESPONSES_REDIS_PASSWORD@10.0.0.7:6379/1")
    assert settings.shared and "hunter2-secret" in settings.store
    shown = settings.model_dump_json()
    assert "hunter2-secret" not in shown and "10.0.0.7:6379/1" in shown


# --- conversations ---------------------------------------------------------------------


async def chain_of(
    store: MemoryResponseStore, n: int, owner: Owner = A, prefix: str = "resp"
) -> None:
    """Puts responses `prefix_1`..`prefix_n`, each continuing the one before."""
    history: Chain = EMPTY
    for k in range(1, n + 1):
        previous = f"{prefix}_{k - 1}" if k > 1 else None
        stored = record(f"{prefix}_{k}", owner, previous=previous, history=history)
        assert await store.put(stored) == Put.STORED
        head = await store.head(stored.id, owner)
        assert head is not None
        history = head


async def test_each_record_carries_its_conversations_depth_and_bytes() -> None:
    store = MemoryResponseStore()
    await chain_of(store, 3)
    items = [encode(record(f"resp_{k}")).items for k in (1, 2, 3)]
    assert await store.head("resp_1", A) == Chain(1, len(items[0]))
    assert await store.head("resp_3", A) == Chain(3, sum(len(blob) for blob in items))
    got = await store.get("resp_3", A)
    assert got is not None and got.history == Chain(2, len(items[0]) + len(items[1]))


async def test_history_walks_the_chain_oldest_first() -> None:
    store = MemoryResponseStore()
    await chain_of(store, 3)
    items = await conversation_history(store, "resp_3", A, BOUNDS)
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
    await store.put(record("resp_1", A))
    for response_id, owner in (("resp_nope", A), ("resp_1", B)):
        with pytest.raises(InvalidRequest) as caught:
            await conversation_history(store, response_id, owner, BOUNDS)
        assert caught.value.param == "previous_response_id"
        assert caught.value.code == "previous_response_not_found"
        assert response_id in caught.value.message


async def test_history_with_a_lost_link_is_refused() -> None:
    store = MemoryResponseStore()
    await chain_of(store, 2)
    await store.delete("resp_1", A)
    with pytest.raises(InvalidRequest) as caught:
        await conversation_history(store, "resp_2", A, BOUNDS)
    assert "resp_1" in caught.value.message and "no longer stored" in caught.value.message


async def test_history_depth_and_bytes_are_bounded_by_the_head_alone() -> None:
    store = MemoryResponseStore()
    await chain_of(store, 5)
    head = await store.head("resp_5", A)
    assert head is not None and head.depth == 5
    assert await check_head(store, "resp_5", A, Bounds(5, head.bytes)) == head
    assert len(await conversation_history(store, "resp_5", A, Bounds(5, head.bytes))) == 10
    with pytest.raises(InvalidRequest) as caught:
        await check_head(store, "resp_5", A, Bounds(4, head.bytes))
    assert caught.value.code == "conversation_too_long" and "4 responses" in caught.value.message
    with pytest.raises(InvalidRequest) as caught:
        await check_head(store, "resp_5", A, Bounds(5, head.bytes - 1))
    assert caught.value.code == "conversation_too_large"
    assert caught.value.param == "previous_response_id"


async def test_a_chain_walk_stops_at_its_bounds() -> None:
    store = MemoryResponseStore()
    await chain_of(store, 4)
    assert (await store.chain("resp_4", A, 3, 1 << 20)).over
    head = await store.head("resp_4", A)
    assert head is not None
    assert (await store.chain("resp_4", A, 4, head.bytes - 1)).over
    walked = await store.chain("resp_4", A, 4, head.bytes)
    assert not walked.over and walked.missing is None and walked.bytes == head.bytes


async def test_walking_a_chain_keeps_it_from_eviction() -> None:
    store = MemoryResponseStore(config(entries=4))
    await chain_of(store, 2)
    await store.put(record("other_1"))
    await store.put(record("other_2"))
    await conversation_history(store, "resp_2", A, BOUNDS)  # touches resp_1 and resp_2
    head = await store.head("resp_2", A)
    assert head is not None
    await store.put(record("resp_3", previous="resp_2", history=head))
    await store.put(record("other_3"))
    assert len(await conversation_history(store, "resp_3", A, BOUNDS)) == 6


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
