"""`POST /v1/responses` passed through to an upstream that speaks the Responses API.

A model group whose deployments have `api: responses` (OpenAI, Azure OpenAI, vLLM,
the mock in Responses mode) gets the request as the client sent it, so what only such
an upstream has survives: built-in tools (`web_search`, `file_search`, `mcp`...),
reasoning items and their `encrypted_content`, parameters translation refuses. The
gateway's stages govern it in the Responses shape (`Exchange.shape`,
common/chat.py): authentication, the tenant's models and caps (`max_output_tokens`),
policies (`tools` names built-in tools by type; `tool_results` reads
`function_call_output` items), chaos at the wire, limits (an estimate from bytes,
settled with the reported usage), the deadline, and routing with breakers, retries
and failover before the first byte.

Conversation state stays the gateway's, as with translation: a `previous_response_id`
and `item_reference`s are this key's stored responses and items (the same store,
quotas and bounds; another key's ids answer as unknown ones), and the upstream is
sent the whole conversation as `input` items, so any deployment of the group can
continue any conversation and no state lives with one upstream. The stored history
is spliced in as the JSON bytes it is stored as (`orjson.Fragment`): never decoded.

Three stages, in the order the work may be done (DESIGN.md 10b):

- `PassThrough`: checks the simple parameters' types (the field kernel), reads the
  head of a continued conversation and the sizes of referenced items (the same
  bounds; their bytes are prompt for policies and limits), and sets the shape;
- `ContinueItems`, after admission: the referenced items in their references'
  places, the stored conversation in front;
- `RelayResponses`: the Response (or its events) as the upstream sent it, the
  conversation's `previous_response_id` put back where the upstream saw none; stored
  for later turns; its usage, for settlement.

Not applied to a pass-through, unlike translation: the tool-call and tool-result
checks (schemas, repairs, receipts on `function_call_output` items), the prompt guard's
exact count (the upstream refuses an over-long input: `context_length_exceeded`,
with `context_window_fallbacks`), and forged tool results (chaos's `forge_tool`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from common.chat import RESPONSES
from common.fields import FieldProblem, check_fields, missing_parameter
from gateway.drain import Drain
from gateway.errors import GatewayError, UpstreamErrors, bad_request
from gateway.exchange import Exchange
from gateway.stages.render import SSE_HEADERS, relay_events
from gateway.stages.validate import check_model
from gateway.stored_responses import PutOutcomes, owner_of, responses_error
from responses.conversation import (
    Bounds,
    check_head,
    check_references,
    read_history,
    read_references,
)
from responses.errors import ResponsesError
from responses.ids import new_id
from responses.request import RESPONSES_FIELDS
from responses.store import EMPTY, Chain, Owner, ResponseStore, StoredResponse

log = logging.getLogger("seawall")

Json = dict[str, Any]
#: The events whose `response` is the Response object (a snapshot, or the last).
RESPONSE_EVENTS = (b'"response.created"', b'"response.in_progress"', b'"response.completed"')
#: The last event of a Responses stream carries the final Response.
FINAL_EVENTS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


@dataclass(slots=True)
class PassThroughCall:
    """One passed-through request: whose, what it continues, what it refers to, and
    its own input items (what the store keeps: the history is the earlier records')."""

    owner: Owner
    previous_response_id: str | None
    history: Chain = EMPTY
    references: list[str] = field(default_factory=list)
    store: bool = True
    input_items: list[Json] = field(default_factory=list)


class PassThrough:
    """Reads `exchange.body` (a Responses request), `exchange.identity`, the head of a
    continued conversation and the sizes of referenced items (never the items).
    Writes `exchange.shape` (Responses), `exchange.stream`, `exchange.history_bytes`,
    `exchange.responses` (a `PassThroughCall`)."""

    def __init__(self, store: ResponseStore, bounds: Bounds) -> None:
        self.store = store
        self.bounds = bounds

    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        try:
            check_model(body)
            if body.get("input") is None:
                raise missing_parameter("input")
            check_fields(body, RESPONSES_FIELDS)
        except FieldProblem as problem:
            raise bad_request(problem) from None
        exchange.shape = RESPONSES
        exchange.stream = body.get("stream") is True
        owner = owner_of(exchange.identity)
        previous = body.get("previous_response_id")
        references = [
            item["id"]
            for item in _as_items(body["input"])
            if item.get("type") == "item_reference" and isinstance(item.get("id"), str)
        ]
        try:
            history = (
                await check_head(self.store, previous, owner, self.bounds)
                if isinstance(previous, str)
                else EMPTY
            )
            referenced = (
                await check_references(self.store, references, owner, self.bounds, history)
                if references
                else 0
            )
        except ResponsesError as exc:
            raise responses_error(exc) from None
        exchange.history_bytes = history.bytes + referenced
        exchange.responses = PassThroughCall(
            owner,
            previous if isinstance(previous, str) else None,
            history,
            references,
            body.get("store") is not False,
        )


class ContinueItems:
    """After admission: each `item_reference` replaced by the stored item it names,
    and the stored conversation of `previous_response_id` put in front of the input
    (its stored JSON bytes spliced in, never decoded); `previous_response_id` is then
    not sent: the upstream gets the whole conversation.

    Reads `exchange.responses`, the store. Writes `exchange.body["input"]`,
    `exchange.responses.input_items`."""

    def __init__(self, store: ResponseStore, bounds: Bounds) -> None:
        self.store = store
        self.bounds = bounds

    async def __call__(self, exchange: Exchange) -> None:
        call: PassThroughCall = exchange.responses
        body = exchange.body
        own = _as_items(body["input"])
        try:
            if call.references:
                found = await read_references(self.store, call.references, call.owner)
                own = [_resolved(item, found) for item in own]
            call.input_items = own
            if call.previous_response_id is None:
                body["input"] = own
                return
            blobs = await read_history(
                self.store, call.previous_response_id, call.owner, self.bounds
            )
        except ResponsesError as exc:
            raise responses_error(exc) from None
        del body["previous_response_id"]
        parts = [blob[1:-1] for blob in blobs if len(blob) > 2]  # each is `[item,...]`
        own_json = orjson.dumps(own)
        if len(own_json) > 2:
            parts.append(own_json[1:-1])
        body["input"] = orjson.Fragment(b"[" + b",".join(parts) + b"]")


def _as_items(value: Any) -> list[Json]:
    """The input as items: a string is one user message (with an id, as stored)."""
    if isinstance(value, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "content": value}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _resolved(item: Json, found: dict[str, Json]) -> Json:
    if item.get("type") == "item_reference" and item.get("id") in found:
        return found[item["id"]]
    return item


def chat_usage(usage: Any) -> Json | None:
    """A Responses `usage` as settlement reads it (chat's names)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class RelayResponses:
    """Reads `exchange.routed` (the upstream's Response or its events),
    `exchange.responses`. Writes `exchange.usage`, `exchange.response`; stores the
    Response (a put refused or failed is counted, and the response still served)."""

    def __init__(
        self, store: ResponseStore, outcomes: PutOutcomes, errors: UpstreamErrors, drain: Drain
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self.errors = errors
        self.drain = drain

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.routed is not None
        call: PassThroughCall = exchange.responses
        reply = exchange.routed.reply
        if reply.headers:
            exchange.headers.update(reply.headers)
        if reply.events is not None:
            output = PassThroughStream(call, self, exchange)
            exchange.response = StreamingResponse(
                relay_events(reply, exchange, self.errors, self.drain, output),
                status_code=reply.status,
                headers={**SSE_HEADERS, **exchange.headers},
                media_type="text/event-stream",
            )
            return
        response = reply.data or {}
        body = reply.body
        if call.previous_response_id is not None:
            response["previous_response_id"] = call.previous_response_id
            body = orjson.dumps(response)
        exchange.usage = chat_usage(response.get("usage"))
        await self.keep(call, response)
        exchange.response = Response(body, headers=exchange.headers, media_type="application/json")

    async def keep(self, call: PassThroughCall, response: Json) -> None:
        """Stores the Response for later turns, unless the request said `store: false`."""
        if call.store and isinstance(response.get("id"), str):
            record = StoredResponse(response, call.input_items, call.owner, call.history)
            await self.outcomes.put(self.store, record)


class PassThroughStream:
    """The upstream's events as they came (the `StreamOutput` of the relay), except
    where the Response object is: `previous_response_id` put back in it, and the
    final one stored and its usage kept for settlement."""

    def __init__(self, call: PassThroughCall, relay: RelayResponses, exchange: Exchange) -> None:
        self.call = call
        self.relay = relay
        self.exchange = exchange
        self.final: Json | None = None

    def start(self) -> bytes:
        return b""

    def feed(self, events: bytes) -> bytes:
        # A C-level scan: only the few events that carry the Response are parsed.
        continued = self.call.previous_response_id is not None
        if continued and any(kind in events for kind in RESPONSE_EVENTS):
            events = b"".join(self._patched(block) for block in events.split(b"\n\n"))
        if self.final is None and any(kind in events for kind in FINAL_EVENTS):
            self.final = _final_response(events)
        return events

    def _patched(self, block: bytes) -> bytes:
        if not block:
            return b""
        head, sep, data = block.partition(b"data: ")
        if sep and b'"previous_response_id"' in data:
            payload = orjson.loads(data)
            response = payload.get("response") if isinstance(payload, dict) else None
            if isinstance(response, dict):
                response["previous_response_id"] = self.call.previous_response_id
                data = orjson.dumps(payload)
        return head + sep + data + b"\n\n"

    async def finish(self) -> bytes:
        if self.final is not None:
            self.exchange.usage = chat_usage(self.final.get("usage"))
            await self.relay.keep(self.call, self.final)
        return b""

    async def failed(self, error: GatewayError) -> bytes:
        """The Responses API's error event (what its SDKs raise on), after which the
        stream ends: no `response.completed` will come."""
        event = {
            "type": "error",
            "code": "stream_interrupted",
            "message": error.message,
            "param": None,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


def _final_response(events: bytes) -> Json | None:
    for block in reversed(events.split(b"\n\n")):
        _, sep, data = block.partition(b"data: ")
        if sep and any(kind in data for kind in FINAL_EVENTS):
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None
            response = payload.get("response") if isinstance(payload, dict) else None
            return response if isinstance(response, dict) else None
    return None
