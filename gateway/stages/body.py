"""Reading and parsing the request body, within the size limit."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect

from gateway.errors import GatewayError, body_too_large, invalid_json
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from tools.schemas import depth_exceeds


class ReadBody:
    """Reads the body, refusing it (413) as soon as it passes `max_bytes`.

    The declared Content-Length is checked first so an honest oversized request is
    refused before a byte is read; the running count catches chunked bodies. A
    refusal is a guard decision like any other, so it goes through `events`
    (`request_too_large`): a flood of oversized bodies shows in /metrics.
    """

    def __init__(self, max_bytes: int, events: Events) -> None:
        self.max_bytes = max_bytes
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        declared = exchange.request_headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise GatewayError(400, "Invalid Content-Length header.", code="invalid_request")
            if int(declared) > self.max_bytes:
                raise self._too_large(f"declared Content-Length {declared}")
        # The ASGI messages read directly, as Starlette's `Request.stream()` reads
        # them, without its async generator (~1.5 µs a request); nothing else reads
        # an inference request's body.
        receive = exchange.request.receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(
                            f"body passed {self.max_bytes} bytes while being read"
                        )
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect()
        exchange.raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, detail: str) -> GatewayError:
        error = body_too_large(self.max_bytes)
        self.events.emit(GuardEvent("request_too_large", "reject", detail=detail))
        return error


class ParseJSON:
    """Parses the body once (orjson); every later stage reads `exchange.body`.

    Nesting is limited to `max_depth` (server.max_json_depth): deeper bodies are a
    fast 400, never a RecursionError or a failed re-serialization later (orjson
    parses up to 1024 levels but writes at most 254). The check walks containers,
    not bytes, so a long prompt costs it nothing more. The refusal goes through
    `events` (`json_too_deep`), like every guard decision.
    """

    def __init__(self, max_depth: int, events: Events) -> None:
        self.max_depth = max_depth
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        raw = exchange.raw
        if not raw:
            raise invalid_json("the body is empty")
        body = json_object(raw)
        if depth_exceeds(body, self.max_depth):
            message = (
                f"The request body nests deeper than {self.max_depth} levels "
                "(server.max_json_depth)."
            )
            self.events.emit(GuardEvent("json_too_deep", "reject", detail=message))
            raise GatewayError(400, message, code="json_too_deep")
        exchange.body = body


def json_object(raw: bytes) -> dict[str, Any]:
    """`raw` parsed as a JSON object, or the 400 for anything else (the API's bodies
    and the admin API's alike)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_json(str(exc)) from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    return body
