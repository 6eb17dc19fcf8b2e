"""`POST /v1/responses`: the Responses API, served through the chat pipeline.

Three stages, so that work is admitted before it is done (DESIGN.md 10b):

- `TranslateResponses` turns the Responses request into a Chat Completions request
  of its own input, so every later stage is the one chat requests go through. For a
  `previous_response_id` it reads one small record, the conversation's head: a
  conversation over `responses.max_chain_depth` / `max_chain_bytes` is refused here,
  and its bytes go to `exchange.history_bytes`, which policies, limits and the prompt
  guard count as prompt.
  Item references (`item_reference` input items) are checked the same way: the
  store's index says how large each referenced item is (an unknown or another key's
  id is OpenAI's 404), and their bytes are prompt too.
- `ContinueConversation`, after `AdmitLimits`, reads the referenced items and puts
  each in its reference's place, then reads and decodes the conversation and puts
  it in front of the request's messages (in slices of about a millisecond, so other
  requests are never held up longer), so the tool-result checks (forged results
  included), the prompt guard and routing see the whole conversation;
  `ReleaseConversation`, a
  completion hook, lets it go the same way once the response is sent.
- `RenderResponses` turns the chat reply back into a Response object (or its event
  stream) and stores it (`PutOutcomes`) for later `previous_response_id`s and
  `GET /v1/responses/{id}`. The translation itself is the `responses` package's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.drain import Drain
from gateway.errors import GatewayError, UpstreamErrors
from gateway.exchange import Exchange
from gateway.stages.render import SSE_HEADERS, relay_events
from gateway.stored_responses import PutOutcomes, owner_of, responses_error
from responses.conversation import (
    Bounds,
    check_head,
    check_references,
    read_history,
    read_references,
    rebuild,
    release,
)
from responses.errors import ResponsesError
from responses.ids import new_response_id
from responses.request import ChatTranslation, resolve_references, to_chat
from responses.response import from_chat
from responses.store import EMPTY, Chain, Owner, ResponseStore, StoredResponse, encode
from responses.stream import StreamTranslator
from routing.call import Reply
from routing.outcomes import Failure, UpstreamError
from routing.sse import data_payloads

log = logging.getLogger("seawall")


@dataclass(slots=True)
class ResponsesCall:
    """One Responses request in flight: its translation, its id, whose it is, the
    stored conversation it continues (`EMPTY` for none) and the bytes of the stored
    items its input refers to."""

    translation: ChatTranslation
    id: str
    created_at: int
    owner: Owner
    history: Chain = EMPTY
    referenced_bytes: int = 0


class TranslateResponses:
    """Reads `exchange.body` (the Responses request), `exchange.identity` (the
    owner). Reads the head of the conversation a `previous_response_id` continues
    (one small record: `ResponseStore.head`), never the conversation, and the sizes
    of the items the input refers to (`ResponseStore.item_sizes`), never the items.
    Writes `exchange.body` (the chat request of the input alone, references left
    out), `exchange.stream`, `exchange.history_bytes` (the conversation's and the
    referenced items' bytes), `exchange.responses`."""

    def __init__(self, store: ResponseStore, bounds: Bounds) -> None:
        self.store = store
        self.bounds = bounds

    async def __call__(self, exchange: Exchange) -> None:
        owner = owner_of(exchange.identity)
        try:
            translation = to_chat(exchange.body)
            previous = translation.previous_response_id
            history = (
                await check_head(self.store, previous, owner, self.bounds)
                if previous is not None
                else EMPTY
            )
            referenced = (
                await check_references(
                    self.store, translation.references, owner, self.bounds, history
                )
                if translation.references
                else 0
            )
        except ResponsesError as exc:
            raise responses_error(exc) from None
        exchange.body = translation.chat
        exchange.stream = translation.stream
        exchange.history_bytes = history.bytes + referenced
        exchange.responses = ResponsesCall(
            translation, new_response_id(), int(time.time()), owner, history, referenced
        )


class ContinueConversation:
    """Puts the referenced items in their references' places and the stored
    conversation in front of the request's messages, after authentication and
    limit admission: reading and decoding them is the costly part of a
    continuation, so it is done only for a request that may cost that much. The
    rest of the pipeline (tool-result checks, the prompt guard with its exact count,
    routing) then sees the whole conversation.

    With both, the conversation `previous_response_id` names comes first, then the
    input with its references resolved, as OpenAI orders them; an item that is in
    both (referred to and already in the conversation) is refused as a duplicate,
    as OpenAI refuses it.

    Reads `exchange.responses` (the head and the references checked by
    `TranslateResponses`), the response store. Writes `exchange.body["messages"]`,
    `exchange.responses.translation` (the input items, references resolved, are
    what the response stores)."""

    def __init__(self, store: ResponseStore, bounds: Bounds) -> None:
        self.store = store
        self.bounds = bounds

    async def __call__(self, exchange: Exchange) -> None:
        call: ResponsesCall | None = exchange.responses
        if call is None:
            return
        translation = call.translation
        previous = translation.previous_response_id
        references = translation.references
        if previous is None and not references:
            return
        try:
            if references:
                found = await read_references(self.store, references, call.owner)
                translation, messages = resolve_references(translation, found)
                call.translation = translation
                exchange.body["messages"] = messages
            if previous is not None:
                blobs = await read_history(self.store, previous, call.owner, self.bounds)
                exchange.body["messages"] = await rebuild(
                    translation, exchange.body["messages"], blobs, referenced=frozenset(references)
                )
        except ResponsesError as exc:
            raise responses_error(exc) from None


class ReleaseConversation:
    """A completion hook (after the last byte): lets a continued conversation's
    messages go a slice at a time (`responses.conversation.release`). They are the
    largest thing a continuation holds, and freeing them in one piece when the
    exchange is dropped would hold the event loop as long as building them did.

    Reads `exchange.responses`. Writes `exchange.body["messages"]` (empties it)."""

    async def __call__(self, exchange: Exchange) -> None:
        call = exchange.responses
        if not isinstance(call, ResponsesCall):
            return  # not translated (passed through, or refused before)
        messages = exchange.body.get("messages")
        large = call.history.depth or call.referenced_bytes
        if large and isinstance(messages, list):
            await release(messages)


def stored(call: ResponsesCall, response: dict[str, Any]) -> StoredResponse:
    return StoredResponse(response, call.translation.input_items, call.owner, call.history)


class ResponsesStream:
    """A chat reply's events as Responses events (the `StreamOutput` of the relay)."""

    def __init__(
        self, call: ResponsesCall, store: ResponseStore, outcomes: PutOutcomes, deployment: str
    ) -> None:
        self.call = call
        self.store = store
        self.outcomes = outcomes
        self.deployment = deployment
        self.translator = StreamTranslator(call.translation, call.id, call.created_at)

    def start(self) -> bytes:
        return self.translator.start()

    def feed(self, events: bytes) -> bytes:
        out = []
        for payload in data_payloads(events):
            try:
                out.append(self.translator.feed(orjson.loads(payload)))
            except ResponsesError as exc:
                raise UpstreamError(Failure.STREAM_BROKEN, self.deployment, exc.message) from exc
        return b"".join(out)

    async def finish(self) -> bytes:
        end = self.translator.finish()
        await self._store()
        return end

    async def failed(self, error: GatewayError) -> bytes:
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        end = self.translator.failed(code, error.message)
        await self._store()
        return end

    async def _store(self) -> None:
        # Stored before the last event goes out: a client that has seen the end can
        # retrieve or continue the response at once.
        response = self.translator.response
        if self.call.translation.store and response is not None:
            await self.outcomes.put(self.store, stored(self.call, response))


class RenderResponses:
    """Reads `exchange.routed` (the chat reply), `exchange.responses`. Writes
    `exchange.usage`, `exchange.response`; stores the Response (a put refused or
    failed is counted, and the response still served). A stored Response is
    encoded once: the client's body is the store's blobs joined (`Encoded.whole`)."""

    def __init__(
        self, store: ResponseStore, outcomes: PutOutcomes, errors: UpstreamErrors, drain: Drain
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self.errors = errors
        self.drain = drain

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.routed is not None and exchange.responses is not None
        call = exchange.responses
        reply = exchange.routed.reply
        if reply.headers:
            exchange.headers.update(reply.headers)
        if reply.events is not None:
            output = ResponsesStream(call, self.store, self.outcomes, reply.deployment)
            exchange.response = StreamingResponse(
                relay_events(reply, exchange, self.errors, self.drain, output),
                status_code=reply.status,
                headers={**SSE_HEADERS, **exchange.headers},
                media_type="text/event-stream",
            )
            return
        response = self._translate(reply, call)
        usage = (reply.data or {}).get("usage")
        exchange.usage = usage if isinstance(usage, dict) else None
        body = None
        if call.translation.store:
            # Encoded once: the store keeps the blobs, the client gets them joined.
            record = stored(call, response)
            encoded = encode(record)
            await self.outcomes.put(self.store, record, encoded)
            body = encoded.whole()
        exchange.response = Response(
            orjson.dumps(response) if body is None else body,
            headers=exchange.headers,
            media_type="application/json",
        )

    def _translate(self, reply: Reply, call: ResponsesCall) -> dict[str, Any]:
        try:
            return from_chat(reply.data or {}, call.translation, call.id, call.created_at)
        except ResponsesError as exc:
            failure = UpstreamError(Failure.BAD_RESPONSE, reply.deployment, exc.message)
            log.warning("request: deployment %s answered a reply that is not a chat completion: %s",
                        reply.deployment, exc.message)  # fmt: skip
            raise self.errors(failure) from None
