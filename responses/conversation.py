"""Continuing a stored conversation (`previous_response_id`), in two steps.

1. `check_head`: before anything costly, one small read of the response continued
   (`ResponseStore.head`) says how deep and how large its conversation is; over
   `max_chain_depth` or `max_chain_bytes` it is refused (400, in OpenAI's envelope,
   `param: previous_response_id`). The gateway does this when it translates the
   request, and counts the conversation's bytes as prompt for policies and limits.
2. `read_history` + `rebuild`: after admission, the conversation's item blobs are
   read (one walk of the chain) and decoded, and `items.join` puts them in front of
   the request's own messages. Decoding is the costly part, and its cost is the
   conversation's bytes, which step 1 bounded. `rebuild` runs on the event loop in
   slices: one record at a time, giving the loop back every `SLICE_S`, so other
   requests wait at most about a slice and one record's decode (a worker thread was
   measured and stalls the loop longer: it holds the GIL for whole switch intervals;
   docs/responses.md has the numbers).

`conversation_history` does both for callers that want the items (tests, tools).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from responses.config import ResponsesConfig
from responses.errors import InvalidRequest
from responses.items import Conversation, Item, Message, join
from responses.request import ChatTranslation
from responses.store import Chain, History, Owner, ResponseStore


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long (responses) and how large (bytes of conversation items) a continued
    conversation may be (`responses.max_chain_depth`, `responses.max_chain_bytes`)."""

    max_depth: int
    max_bytes: int

    @classmethod
    def of(cls, config: ResponsesConfig) -> Bounds:
        return cls(config.max_chain_depth, config.max_chain_bytes)


async def check_head(
    store: ResponseStore, previous_response_id: str, owner: Owner, bounds: Bounds
) -> Chain:
    """The conversation `previous_response_id` ends, if this owner may continue it
    and it is within `bounds`; otherwise `InvalidRequest` (or `StoreUnavailable`)."""
    head = await store.head(previous_response_id, owner)
    if head is None:
        raise not_found(previous_response_id)
    if head.depth > bounds.max_depth:
        raise too_long(previous_response_id, bounds)
    if head.bytes > bounds.max_bytes:
        raise too_large(previous_response_id, head.bytes, bounds)
    return head


async def read_history(
    store: ResponseStore, previous_response_id: str, owner: Owner, bounds: Bounds
) -> list[bytes]:
    """The items blobs of the conversation, oldest first; refused as `check_head`
    refuses, or when a link of the chain is no longer stored."""
    history: History = await store.chain(
        previous_response_id, owner, bounds.max_depth, bounds.max_bytes
    )
    if history.missing == previous_response_id:
        raise not_found(previous_response_id)
    if history.missing is not None:
        raise InvalidRequest(
            f"The conversation of response '{previous_response_id}' is incomplete: an "
            f"earlier response, '{history.missing}', is no longer stored.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    if history.over:
        # The head was within bounds when it was checked: the chain changed since
        # (a record replaced). Refused the same way.
        raise too_long(previous_response_id, bounds)
    return history.blobs


#: How long `rebuild` works before it lets the event loop serve others.
SLICE_S = 0.001


def decode_history(blobs: Sequence[bytes]) -> list[Item]:
    """The canonical items of the conversation, oldest first."""
    items: list[Item] = []
    for blob in blobs:
        items.extend(orjson.loads(blob))
    return items


async def rebuild(
    translation: ChatTranslation,
    messages: list[Message],
    blobs: Sequence[bytes],
    slice_s: float = SLICE_S,
) -> list[Message]:
    """The chat messages of the continued request: its own `messages` (as the
    pipeline has them) with the decoded history in front (`items.join`).

    One record decoded at a time, one item added at a time: whenever `slice_s` has
    passed since the loop last had a turn, it gets one (`asyncio.sleep(0)`). A short
    conversation never yields at all. A slice is at least one record's decode (one
    `orjson.loads`), which is also what parsing the request that stored it cost."""
    assert translation.continuation is not None
    past = Conversation()
    clock = time.perf_counter
    started = clock()
    for blob in blobs:
        for item in orjson.loads(blob):
            past.add(item, None)
            if clock() - started >= slice_s:
                await asyncio.sleep(0)
                started = clock()
    return join(messages, past, translation.continuation)


async def release(messages: list[Message], slice_s: float = SLICE_S) -> None:
    """Empties `messages`, last first, giving the loop a turn whenever `slice_s` has
    passed: freeing a large conversation's objects in one piece holds the loop about
    as long as building them did, so a continued request's messages are let go the
    way they were built."""
    clock = time.perf_counter
    started = clock()
    while messages:
        messages.pop()
        if clock() - started >= slice_s:
            await asyncio.sleep(0)
            started = clock()


async def conversation_history(
    store: ResponseStore, previous_response_id: str, owner: Owner, bounds: Bounds
) -> list[Item]:
    """The items a request with `previous_response_id` continues from, oldest first."""
    await check_head(store, previous_response_id, owner, bounds)
    return decode_history(await read_history(store, previous_response_id, owner, bounds))


def not_found(previous_response_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{_cut(previous_response_id)}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def too_long(previous_response_id: str, bounds: Bounds) -> InvalidRequest:
    return InvalidRequest(
        f"The conversation of response '{previous_response_id}' is longer than "
        f"{bounds.max_depth} responses (responses.max_chain_depth); send its items as "
        "input instead.",
        param="previous_response_id",
        code="conversation_too_long",
    )


def too_large(previous_response_id: str, size: int, bounds: Bounds) -> InvalidRequest:
    return InvalidRequest(
        f"The conversation of response '{previous_response_id}' is {size} bytes of "
        f"items, over the {bounds.max_bytes} this gateway continues "
        "(responses.max_chain_bytes); send the items you need as input instead.",
        param="previous_response_id",
        code="conversation_too_large",
    )


def _cut(value: str) -> str:
    """An id as an error repeats it (a client may send a megabyte as an id)."""
    return value if len(value) <= 128 else value[:128] + "..."
