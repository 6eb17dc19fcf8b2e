"""Stored responses: what `GET /v1/responses/{id}` and `previous_response_id` read.

A `StoredResponse` keeps one response's own part of a conversation: the Response
object (its `output` items and its `previous_response_id`) and the input items of
the request that made it. A conversation is the chain of its responses; the history
a new request continues from is rebuilt by walking that chain back
(`conversation_history`). Storing each response's own items only keeps the store
linear in the conversation's length (a full copy per response would be quadratic),
and walking the chain touches every link, so an active conversation never loses an
ancestor to LRU eviction.

Every record has an owner: an opaque string the gateway sets (a tenant, a key id).
A lookup by another owner behaves exactly like a lookup of an id that does not
exist, so one caller can neither read nor continue, nor learn of, another's response.

`ResponseStore` is the protocol (async, so a Redis store can implement it);
`MemoryResponseStore` is the in-process one, with these limits (all constructor
arguments, documented on `MemoryLimits`):

- `max_entries` (10,000): least recently used records are evicted past it;
- `max_bytes` (256 MiB): the same, counting each record's JSON size;
- `max_record_bytes` (8 MiB): a larger record is not stored (`put` returns False);
- `ttl_seconds` (30 days, what OpenAI keeps a response for): counted from the put,
  never extended by reads: a hard retention bound. A chain whose first response has
  expired cannot be continued by id; the client sends the full input instead.

Records are kept as JSON bytes, not dicts: the byte limits then bound real memory,
and a caller that mutates what it got (or put) cannot change what is stored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from responses.errors import InvalidRequest

Json = dict[str, Any]
Clock = Callable[[], float]

#: How many responses `conversation_history` walks back at most. Each hop is one
#: `get`; an agent loop makes one response per model turn, and a chain this long is
#: far past any context window.
MAX_CHAIN_DEPTH = 1_000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response: what it said, what it was asked, and whose it is."""

    response: Json
    input_items: list[Json]
    owner: str

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


class ResponseStore(Protocol):
    """Where responses are kept. A record stored with `store: false` is never kept."""

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The record, or None if it is absent, expired, or another owner's."""
        ...

    async def put(self, record: StoredResponse) -> bool:
        """Keep `record` (replacing the owner's record with the same id); False if it
        was not kept (`store: false`, over the per-record size limit, or the id is
        another owner's)."""
        ...

    async def delete(self, response_id: str, owner: str) -> bool:
        """Forget the record; False if there was none for this owner."""
        ...


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    #: Records kept at most; the least recently used go first.
    max_entries: int = 10_000
    #: Total JSON bytes of all records at most (least recently used go first).
    max_bytes: int = 256 * 1024 * 1024
    #: A record over this many JSON bytes is not stored at all.
    max_record_bytes: int = 8 * 1024 * 1024
    #: Seconds a record lives after its put; reads do not extend it.
    ttl_seconds: float = 30 * 24 * 3600.0

    def __post_init__(self) -> None:
        if (
            min(self.max_entries, self.max_bytes, self.max_record_bytes) < 1
            or self.ttl_seconds <= 0
        ):
            raise ValueError("response store limits must be positive")


@dataclass(slots=True)
class _Entry:
    owner: str
    blob: bytes  # {"response": ..., "input_items": [...]} as JSON
    expires: float


class MemoryResponseStore:
    """A bounded LRU of responses with a TTL; every operation is O(1) (amortized)
    apart from encoding and decoding the record itself."""

    def __init__(self, limits: MemoryLimits | None = None, clock: Clock = time.monotonic) -> None:
        self.limits = limits or MemoryLimits()
        self._clock = clock
        self._lru: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._by_age: OrderedDict[str, None] = OrderedDict()  # oldest put first
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._lru)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        self._expire()
        entry = self._lru.get(response_id)
        if entry is None or entry.owner != owner:
            return None
        self._lru.move_to_end(response_id)
        data = orjson.loads(entry.blob)
        return StoredResponse(data["response"], data["input_items"], entry.owner)

    async def put(self, record: StoredResponse) -> bool:
        if record.response.get("store") is False:
            return False
        blob = orjson.dumps({"response": record.response, "input_items": record.input_items})
        if len(blob) > self.limits.max_record_bytes:
            return False
        self._expire()
        existing = self._lru.get(record.id)
        if existing is not None and existing.owner != record.owner:
            return False  # ids are the gateway's own and random: this is a bug, not a race
        self._remove(record.id)
        self._lru[record.id] = _Entry(record.owner, blob, self._clock() + self.limits.ttl_seconds)
        self._by_age[record.id] = None
        self.bytes += len(blob)
        while len(self._lru) > self.limits.max_entries or self.bytes > self.limits.max_bytes:
            self._remove(next(iter(self._lru)))
        return True

    async def delete(self, response_id: str, owner: str) -> bool:
        self._expire()
        entry = self._lru.get(response_id)
        if entry is None or entry.owner != owner:
            return False
        self._remove(response_id)
        return True

    def _remove(self, response_id: str) -> None:
        entry = self._lru.pop(response_id, None)
        if entry is not None:
            del self._by_age[response_id]
            self.bytes -= len(entry.blob)

    def _expire(self) -> None:
        """Drop expired records, oldest first: they leave memory when their time is
        up, not only when something else needs the room."""
        now = self._clock()
        while self._by_age:
            oldest = next(iter(self._by_age))
            if self._lru[oldest].expires > now:
                return
            self._remove(oldest)


async def conversation_history(
    store: ResponseStore, previous_response_id: str, owner: str, *, max_depth: int = MAX_CHAIN_DEPTH
) -> list[Json]:
    """The items a request with `previous_response_id` continues from: every earlier
    response's input items and output items, oldest first.

    Refused (`InvalidRequest`, param `previous_response_id`) when the response is not
    stored for `owner`, when an earlier link of its chain is gone, or when the chain
    is longer than `max_depth`.
    """
    chain: list[StoredResponse] = []
    next_id: str | None = previous_response_id
    while next_id is not None:
        if len(chain) >= max_depth:
            raise InvalidRequest(
                f"The conversation of response '{previous_response_id}' is longer than "
                f"{max_depth} responses; send its items as input instead.",
                param="previous_response_id",
                code="conversation_too_long",
            )
        record = await store.get(next_id, owner)
        if record is None:
            if not chain:
                raise InvalidRequest(
                    f"Previous response with id '{previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            raise InvalidRequest(
                f"The conversation of response '{previous_response_id}' is incomplete: an "
                f"earlier response, '{next_id}', is no longer stored.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        chain.append(record)
        next_id = record.previous_response_id
    items: list[Json] = []
    for record in reversed(chain):
        items.extend(record.conversation_items)
    return items
