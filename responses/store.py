"""Stored responses: what `GET /v1/responses/{id}` and `previous_response_id` read.

A `StoredResponse` keeps one response's own part of a conversation: the Response
object (its `output` items and its `previous_response_id`) and the input items of
the request that made it. A conversation is the chain of its responses; the history
a new request continues from is rebuilt by walking that chain back
(responses/conversation.py). Storing each response's own items only keeps the store
linear in the conversation's length (a full copy per response would be quadratic),
and walking the chain touches every link, so an active conversation never loses an
ancestor to LRU eviction.

**Owners.** Every record belongs to an `Owner`: a tenant and a key (the key's id and
a tag of its token, so a key id given a new token does not inherit the old token's
responses). A lookup by another owner behaves exactly like a lookup of an id that
does not exist, so one caller can neither read nor continue, nor learn of, another's
response.

**Quotas** (responses/config.py): each key and each tenant may hold so many records
and bytes; a put over a quota evicts that key's (tenant's) own least recently used
records, never another's; a put that would cross the store's `total` is refused.

**What is counted is what is stored.** A record is kept as two JSON blobs: the
Response object with its `output` emptied, and its conversation items (the input
items, then the output items), and its entries in the item index (below). The
quotas count all three; a conversation's bytes
(`Chain.bytes`, what `max_chain_bytes` bounds and policies and limits count as prompt)
count the items blobs, which is what a rebuild decodes, and nothing else.

**Chains.** Each record carries its conversation's cumulative depth and bytes
(`Chain`), computed at put from its predecessor's, so checking a continuation's bounds
reads one small record (`head`), not the conversation.

**Items by id.** An input item `{"type": "item_reference", "id": ...}` stands for an
item of an earlier stored response (its output, or its request's input). Each owner
has an index from item id to the record holding it and where in the record's items
blob the item's JSON is (`Encoded.index`), so finding an item reads its bytes alone,
never decodes its record; `item_sizes` answers how large each referenced item is
without reading it (what admission counts), `read_items` reads them. The index is
per owner: another key's item id is not in it, exactly like an id that never
existed. An id in several of the owner's records (a client that sends items back by
value, ids and all) points at the last one put; removing a record removes only the
entries that point at it. The index is stored, so it is counted: each entry costs
its id's bytes and `INDEX_ENTRY_BYTES` in the record's size.

`ResponseStore` is the protocol; responses/memory.py and responses/redis_store.py
implement it with the same semantics (tests/test_responses_quotas.py runs one
property test against both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a record is: the tenant whose share it counts against, and the key (id
    and token tag, `team-a#3f2a...`: tenants/keys.py `token_tag`) whose share it
    counts against and who alone may read, continue, list or delete it."""

    tenant: str
    key: str


@dataclass(frozen=True, slots=True)
class Chain:
    """A stored conversation up to and including one response: how many responses
    it has (`depth`) and the bytes of their conversation items (`bytes`)."""

    depth: int = 0
    bytes: int = 0


#: The conversation before a first response.
EMPTY = Chain()


class Put(StrEnum):
    """What `put` did."""

    STORED = "stored"
    #: The request said `store: false`.
    NOT_REQUESTED = "not_requested"
    #: Over `max_record_bytes`.
    TOO_LARGE = "too_large"
    #: It would cross the store's `total` (nothing was evicted for it).
    STORE_FULL = "store_full"
    #: The id is another owner's (ids are random: a bug, never a race).
    CONFLICT = "conflict"


@dataclass(slots=True)
class StoredResponse:
    """One stored response: what it said, what it was asked, whose it is, and the
    conversation it continues (`history`: its predecessor's `Chain`).

    Read-only by convention, not `frozen`: one is built for every stored response,
    and a frozen dataclass's `object.__setattr__` per field made that cost nearly
    three times as much (`response` and `input_items` were never frozen anyway)."""

    response: Json
    input_items: list[Json]
    owner: Owner
    history: Chain = EMPTY

    @property
    def id(self) -> str:
        return str(self.response["id"])

    @property
    def previous_response_id(self) -> str | None:
        previous = self.response.get("previous_response_id")
        return previous if isinstance(previous, str) else None

    @property
    def created_at(self) -> float:
        return float(self.response.get("created_at") or 0.0)

    @property
    def conversation_items(self) -> list[Json]:
        """This response's part of the conversation: its input items, then its output."""
        return [*self.input_items, *self.response.get("output", ())]


#: What one entry of the item index costs the quotas besides its item id's bytes: the
#: record id it points at, where the item is, and each store's own bookkeeping of it.
#: Measured with 52-character ids: ~250 bytes an entry in Redis (`MEMORY USAGE` of
#: the key's index hash and `xs`), ~400 in this process (tracemalloc: the dicts, the
#: id strings, the places). Counted on the high side of Redis and near the process:
#: a quota bounds what is really held.
INDEX_ENTRY_BYTES = 320


@dataclass(slots=True)
class Encoded:
    """A record as stores keep it: JSON bytes, so the byte quotas bound real memory
    and nothing a caller mutates after a put or a get changes what is stored.

    Read-only by convention, not `frozen`, like `StoredResponse`: every put builds
    one, and frozen, building it cost as much as encoding the response object."""

    #: The Response object with `output` emptied (its place kept).
    response: bytes
    #: Its input items, then its output items: a JSON array.
    items: bytes
    #: How many of `items` are input items.
    inputs: int
    previous: str | None
    #: The conversation up to and including this record.
    chain: Chain
    #: The item index's entries for this record: item id -> (start, length) of its
    #: JSON in `items`; each id once (a later item with the id replaces an earlier).
    index: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: What the index entries cost (`INDEX_ENTRY_BYTES` and the id's bytes each).
    index_bytes: int = 0
    #: Where in `items` the output items' JSON starts (`len(items)` when there are
    #: none); -1 when the Response object had no `output` (see `whole`).
    outputs_at: int = -1

    @property
    def size(self) -> int:
        """What the quotas count: the two blobs and the item index entries."""
        return len(self.response) + len(self.items) + self.index_bytes

    def item(self, place: tuple[int, int]) -> bytes:
        """One item's JSON, cut from the items blob (`place`: an `index` value)."""
        start, length = place
        return self.items[start : start + length]

    def whole(self) -> bytes | None:
        """The Response object's JSON, output and all, exactly as `orjson.dumps` of
        the record's response gives it: the response blob with the output items'
        JSON put back between its emptied output's brackets. The gateway sends this
        to the client, so a stored response is encoded once, not twice.

        None when the place is not certain: no `output`, or `"output":[]` more than
        once in the blob (a value before the output holding an empty `output`, or a
        key ending in an escaped quote and `output`). The key itself is always there,
        and a JSON string cannot hold an unescaped quote, so a lone one is it."""
        if self.outputs_at < 0:
            return None
        response = self.response
        at = response.find(EMPTY_OUTPUT)
        if at < 0 or response.find(EMPTY_OUTPUT, at + 1) >= 0:
            return None
        at += len(EMPTY_OUTPUT) - 1  # between the brackets
        return response[:at] + self.items[self.outputs_at : -1] + response[at:]


#: How an emptied `output` reads in a response blob (orjson writes no spaces).
EMPTY_OUTPUT = b'"output":[]'


def exact(blob: bytes) -> bytes:
    """`blob` in a bytes object of its own size. orjson writes into a buffer of at
    least 4 KiB, grown by doubling, and hands that buffer back as the bytes object:
    a 100-byte blob kept as it came holds 4 KiB, a 9 KiB one 16 KiB. A store that
    keeps blobs keeps them exact, or its byte quotas would count a fraction of the
    memory they bound (measured: ~20 KiB held per small stored response, ~3 KiB
    counted)."""
    return memoryview(blob).tobytes()


def encode(record: StoredResponse) -> Encoded:
    conversation = record.conversation_items
    items = exact(orjson.dumps(conversation))
    # The list's JSON is `[`, each item's JSON joined by `,`, then `]`: each item's
    # place follows from its own JSON's length. Measuring each item (its bytes freed
    # at once) costs about one more encoding of the list; keeping each item's bytes to
    # join them was measured 15 times slower (an allocation per item that lives on).
    places: dict[str, tuple[int, int]] = {}
    inputs = len(record.input_items)
    outputs_at = len(items)
    start = 1
    for k, item in enumerate(conversation):
        if k == inputs:
            outputs_at = start
        length = len(orjson.dumps(item))
        item_id = item.get("id")
        if item_id.__class__ is str and item_id:
            places[item_id] = (start, length)  # a later item with the id replaces it
        start += length + 1
    index_bytes = INDEX_ENTRY_BYTES * len(places)
    for item_id in places:
        index_bytes += len(item_id.encode())
    response = exact(orjson.dumps({**record.response, "output": []}))
    history = record.history
    chain = Chain(history.depth + 1, history.bytes + len(items))
    return Encoded(
        response,
        items,
        inputs,
        record.previous_response_id,
        chain,
        places,
        index_bytes,
        outputs_at if "output" in record.response else -1,
    )


def decode(
    owner: Owner, response: bytes, items: bytes, inputs: int, chain: Chain
) -> StoredResponse:
    conversation = orjson.loads(items)
    data = orjson.loads(response)
    data["output"] = conversation[inputs:]
    history = Chain(chain.depth - 1, chain.bytes - len(items))
    return StoredResponse(data, conversation[:inputs], owner, history)


@dataclass(frozen=True, slots=True)
class History:
    """What walking a conversation back found: each response's items blob, oldest
    first; or where the walk stopped short (`missing`: the first id not stored for
    the owner, the head's own id when the head is not; `over`: the chain is longer
    or larger than the walk was allowed to go)."""

    blobs: list[bytes]
    missing: str | None = None
    over: bool = False

    @property
    def bytes(self) -> int:
        return sum(len(blob) for blob in self.blobs)


class ResponseStore(Protocol):
    """Where responses are kept, bounded per key, per tenant and in total."""

    async def get(self, response_id: str, owner: Owner) -> StoredResponse | None:
        """The record, or None if it is absent, expired, or another owner's. Counts as
        a use (LRU). Raises `StoreUnavailable` when the store cannot answer."""
        ...

    async def head(self, response_id: str, owner: Owner) -> Chain | None:
        """The conversation a record ends, without reading the record: None as `get`.
        Not a use. Raises `StoreUnavailable`."""
        ...

    async def chain(
        self, response_id: str, owner: Owner, max_depth: int, max_bytes: int
    ) -> History:
        """The conversation ending at `response_id`, walked back at most `max_depth`
        records and `max_bytes` item bytes. Every record walked counts as a use.
        Raises `StoreUnavailable`."""
        ...

    async def put(self, record: StoredResponse, encoded: Encoded | None = None) -> Put:
        """Keep `record` (replacing the owner's record with the same id), evicting the
        owner's own least recently used records past its key's and its tenant's
        quotas. `encoded` is `encode(record)` when the caller has made it already
        (the gateway does, for the client's body too). Raises `StoreUnavailable`."""
        ...

    async def delete(self, response_id: str, owner: Owner) -> bool:
        """Forget the record; False if there was none for this owner. Raises
        `StoreUnavailable`."""
        ...

    async def item_sizes(self, item_ids: Sequence[str], owner: Owner) -> list[int | None]:
        """The JSON bytes of each item (by id) of this owner's stored responses, None
        for an id that is not one (never stored, expired, evicted, another owner's).
        One call for all `item_ids` (the caller bounds how many); not a use. Raises
        `StoreUnavailable`."""
        ...

    async def read_items(self, item_ids: Sequence[str], owner: Owner) -> list[bytes | None]:
        """The JSON of each item, None as `item_sizes`. One call for all; every record
        an item is read from counts as a use. Raises `StoreUnavailable`."""
        ...

    async def aclose(self) -> None: ...
