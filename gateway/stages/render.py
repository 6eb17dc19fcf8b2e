"""Turning the upstream reply into the client response."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.errors import GatewayError, upstream_error
from gateway.exchange import Exchange
from routing.call import Reply
from routing.outcomes import UpstreamError

log = logging.getLogger("seawall")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_error_event(error: GatewayError) -> bytes:
    """An OpenAI-style error event: the openai SDK raises `APIError` when it reads it.

    The stream already started, so the status cannot change and switching to another
    deployment would splice two different answers together. The client is told
    instead, and decides.
    """
    envelope = error.envelope()
    envelope["error"]["code"] = "stream_interrupted"
    return b"event: error\ndata: " + orjson.dumps(envelope) + b"\n\n"


async def relay_events(reply: Reply) -> AsyncIterator[bytes]:
    assert reply.events is not None
    try:
        async for events in reply.events:
            yield events
    except UpstreamError as exc:
        yield sse_error_event(upstream_error(exc))
    except Exception:
        # A bug must still end the stream readably, not as a dropped connection.
        log.exception("stream relay failed on deployment %s", reply.deployment)
        yield sse_error_event(GatewayError(500, "The gateway hit an internal error mid-stream."))
    finally:
        await reply.close()


class Render:
    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.routed is not None
        reply = exchange.routed.reply
        if reply.events is not None:
            exchange.response = StreamingResponse(
                relay_events(reply),
                status_code=reply.status,
                headers={**SSE_HEADERS, **exchange.headers},
                media_type="text/event-stream",
            )
        else:
            exchange.response = Response(
                reply.body,
                status_code=reply.status,
                headers=exchange.headers,
                media_type="application/json",
            )
