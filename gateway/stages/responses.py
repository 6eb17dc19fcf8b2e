"""`POST /v1/responses`: the Responses API, served through the chat pipeline.

`TranslateResponses` turns the Responses request (with the conversation of its
`previous_response_id`, from the response store) into a Chat Completions request,
so every later stage is the one chat requests go through: the prompt guard sees the
whole conversation, tool results are verified, chaos and routing apply, the model's
tool calls are checked. `RenderResponses` turns the chat reply back into a Response
object (or its event stream) and stores it for later `previous_response_id`s and
`GET /v1/responses/{id}`. The translation itself is the `responses` package's.

Reads: `exchange.body` (the Responses request), `exchange.identity` (the store's
owner). Writes: `exchange.body` (the chat request), `exchange.stream`,
`exchange.responses`; then `exchange.response`.
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
from responses.errors import ResponsesError
from responses.ids import new_response_id
from responses.request import ChatTranslation, to_chat
from responses.response import from_chat
from responses.store import ResponseStore, StoredResponse, conversation_history
from responses.stream import StreamTranslator
from routing.call import Reply
from routing.outcomes import Failure, UpstreamError
from routing.sse import data_payloads
from tenants.identity import Identity

log = logging.getLogger("seawall")


def owner_of(identity: Identity | None) -> str:
    """Who a stored response belongs to: only the same key can read or continue it."""
    return f"key:{identity.key_id}" if identity is not None else "key:local"


def responses_error(error: ResponsesError) -> GatewayError:
    return GatewayError(error.status, error.message, code=error.code, param=error.param)


@dataclass(slots=True)
class ResponsesCall:
    """One Responses request in flight: its translation and its identity."""

    translation: ChatTranslation
    id: str
    created_at: int
    owner: str


class TranslateResponses:
    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        owner = owner_of(exchange.identity)
        previous = body.get("previous_response_id")
        try:
            history = (
                await conversation_history(self.store, previous, owner)
                if isinstance(previous, str)
                else None
            )
            translation = to_chat(body, history)
        except ResponsesError as exc:
            raise responses_error(exc) from None
        exchange.body = translation.chat
        exchange.stream = translation.stream
        exchange.responses = ResponsesCall(translation, new_response_id(), int(time.time()), owner)


class ResponsesStream:
    """A chat reply's events as Responses events (the `StreamOutput` of the relay)."""

    def __init__(self, call: ResponsesCall, store: ResponseStore, deployment: str) -> None:
        self.call = call
        self.store = store
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
            await self.store.put(
                StoredResponse(response, self.call.translation.input_items, self.call.owner)
            )


class RenderResponses:
    def __init__(self, store: ResponseStore, errors: UpstreamErrors, drain: Drain) -> None:
        self.store = store
        self.errors = errors
        self.drain = drain

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.routed is not None and exchange.responses is not None
        call = exchange.responses
        reply = exchange.routed.reply
        if reply.headers:
            exchange.headers.update(reply.headers)
        if reply.events is not None:
            output = ResponsesStream(call, self.store, reply.deployment)
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
        if call.translation.store:
            await self.store.put(StoredResponse(response, call.translation.input_items, call.owner))
        exchange.response = Response(
            orjson.dumps(response), headers=exchange.headers, media_type="application/json"
        )

    def _translate(self, reply: Reply, call: ResponsesCall) -> dict[str, Any]:
        try:
            return from_chat(reply.data or {}, call.translation, call.id, call.created_at)
        except ResponsesError as exc:
            failure = UpstreamError(Failure.BAD_RESPONSE, reply.deployment, exc.message)
            log.warning("request: deployment %s answered a reply that is not a chat completion: %s",
                        reply.deployment, exc.message)  # fmt: skip
            raise self.errors(failure) from None
