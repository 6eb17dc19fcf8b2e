"""Reading and parsing the request body, within the size limit."""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError, body_too_large, invalid_json
from gateway.exchange import Exchange


class ReadBody:
    """Reads the body, refusing it (413) as soon as it passes `max_bytes`.

    The declared Content-Length is checked first so an honest oversized request is
    refused before a byte is read; the running count catches chunked bodies.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise GatewayError(400, "Invalid Content-Length header.", code="invalid_request")
            if int(declared) > self.max_bytes:
                raise body_too_large(self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise body_too_large(self.max_bytes)
            chunks.append(chunk)
        exchange.raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ParseJSON:
    """Parses the body once (orjson); every later stage reads `exchange.body`.

    orjson refuses nesting deeper than 1024 levels with a clean error, so a nesting
    bomb is a fast 400, never a RecursionError.
    """

    async def __call__(self, exchange: Exchange) -> None:
        if not exchange.raw:
            raise invalid_json("the body is empty")
        try:
            body = orjson.loads(exchange.raw)
        except orjson.JSONDecodeError as exc:
            raise invalid_json(str(exc)) from None
        if not isinstance(body, dict):
            raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
        exchange.body = body
