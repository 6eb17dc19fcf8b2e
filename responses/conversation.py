"""Continuing a stored conversation (`previous_response_id`), and reading the stored
items an input refers to (`item_reference`), each in two steps.

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

Item references go the same way, with the same bounds: `check_references`, before
admission, asks the store how large each referenced item is (its index, never the
item): an unknown id, or another owner's, is refused with OpenAI's 404; more than
`max_item_references`, or items that make the conversation (the history it
continues included) larger than `max_chain_bytes`, with 400. Their bytes are prompt
for policies and limits, as a history's are. `read_references`, after admission,
reads the items (their own bytes, cut from their records: a record is not decoded
for one of its items) and decodes them one at a time in slices, as `rebuild` does.
A referenced item that is also in the history a request continues appears twice:
refused as OpenAI refuses it (`rebuild(..., referenced=...)`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import orjson

from common.fields import echoed
from responses.config import DEFAULT_MAX_ITEM_REFERENCES, ResponsesConfig
from responses.errors import InvalidRequest, NotFound
from responses.items import Conversation, Item, Message, duplicate_item, join
from responses.request import ChatTranslation
from responses.store import Chain, History, Owner, ResponseStore


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long (responses) and how large (bytes of conversation items) a continued
    conversation may be (`responses.max_chain_depth`, `responses.max_chain_bytes`),
    and how many stored items a request may refer to (`max_item_references`)."""

    max_depth: int
    max_bytes: int
    max_references: int = DEFAULT_MAX_ITEM_REFERENCES

    @classmethod
    def of(cls, config: ResponsesConfig) -> Bounds:
        return cls(config.max_chain_depth, config.max_chain_bytes, config.max_item_references)


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
    referenced: Collection[str] = (),
) -> list[Message]:
    """The chat messages of the continued request: its own `messages` (as the
    pipeline has them) with the decoded history in front (`items.join`). An item of
    the history whose id is `referenced` (the request's input referred to it too)
    is refused: it would appear twice.

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
            if referenced and item.get("id") in referenced:
                raise duplicate_item(item["id"])
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


async def check_references(
    store: ResponseStore, item_ids: Sequence[str], owner: Owner, bounds: Bounds, history: Chain
) -> int:
    """The bytes of the items `item_ids` name (a request's item references), if each
    is one of this owner's stored items and they are within `bounds` together with
    the conversation the request continues (`history`); otherwise `NotFound` (OpenAI's
    404 for an unknown item), `InvalidRequest` or `StoreUnavailable`. Reads the
    store's index only, never an item."""
    if len(item_ids) > bounds.max_references:
        raise InvalidRequest(
            f"The input refers to {len(item_ids)} stored items, over the "
            f"{bounds.max_references} this gateway resolves in one request "
            "(responses.max_item_references); send the items themselves instead.",
            param="input",
            code="too_many_item_references",
        )
    sizes = await store.item_sizes(item_ids, owner)
    for item_id, size in zip(item_ids, sizes, strict=True):
        if size is None:
            raise item_not_found(item_id)
    total = sum(size for size in sizes if size is not None)
    if history.bytes + total > bounds.max_bytes:
        continued = f" and the conversation it continues {history.bytes}" if history.depth else ""
        raise InvalidRequest(
            f"The items the input refers to are {total} bytes{continued}, over the "
            f"{bounds.max_bytes} this gateway replays (responses.max_chain_bytes); send "
            "the items you need as input instead.",
            param="input",
            code="conversation_too_large",
        )
    return total


async def read_references(
    store: ResponseStore, item_ids: Sequence[str], owner: Owner, slice_s: float = SLICE_S
) -> dict[str, Item]:
    """The items `item_ids` name, by id: one store call, then each item decoded on
    the event loop, which gets a turn whenever `slice_s` has passed (as in
    `rebuild`). An item no longer stored (evicted or expired since
    `check_references`) is `NotFound`, as an unknown one."""
    blobs = await store.read_items(item_ids, owner)
    found: dict[str, Item] = {}
    clock = time.perf_counter
    started = clock()
    for item_id, blob in zip(item_ids, blobs, strict=True):
        if blob is None:
            raise item_not_found(item_id)
        found[item_id] = orjson.loads(blob)
        if clock() - started >= slice_s:
            await asyncio.sleep(0)
            started = clock()
    return found


def item_not_found(item_id: str) -> NotFound:
    """OpenAI's answer for an item reference it cannot resolve, in its words (404,
    `param: input`, no code). The same for an id never stored, expired or evicted,
    stored with `store: false`, or another key's: an id tells nothing."""
    return NotFound(
        f"Item with id '{echoed(item_id)}' not found. Items are not persisted when "
        "`store` is set to false. Try again with `store` set to true, or remove this "
        "item from your input.",
        param="input",
    )


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
