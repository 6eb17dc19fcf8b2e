"""Turning the upstream reply into the client response."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.drain import Drain
from gateway.errors import STREAM_INTERRUPTED, GatewayError, UpstreamErrors
from gateway.exchange import CLIENT_CLOSED, Exchange
from gateway.stages.limits import without_usage
from routing.call import Reply
from routing.outcomes import UpstreamError
from routing.sse import data_payloads

log = logging.getLogger("seawall")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_error_event(error: GatewayError, code: str | None = STREAM_INTERRUPTED) -> bytes:
    """An OpenAI-style error event: the openai SDK raises `APIError` when it reads it.

    The stream already started, so the status cannot change and switching to another
    deployment would splice two different answers together. The client is told
    instead, and decides. `code`: the event's code (`stream_interrupted` for a stream
    that broke, whatever the failure; None keeps the error's own).
    """
    envelope = error.envelope()
    if code is not None:
        envelope["error"]["code"] = code
    return b"event: error\ndata: " + orjson.dumps(envelope) + b"\n\n"


def stream_usage(events: bytes) -> dict[str, Any] | None:
    """The `usage` object in a chunk of a stream's events, if the provider sent one
    there (`stream_options.include_usage`); a C-level scan rules out every other chunk."""
    if b'"usage"' not in events:
        return None
    for payload in reversed(data_payloads(events)):
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        usage = data.get("usage") if isinstance(data, dict) else None
        if isinstance(usage, dict):
            return usage
    return None


class StreamOutput(Protocol):
    """What a relayed stream becomes when it is not relayed as it came (the Responses
    API's events): a beginning, each upstream chunk translated, an end, and the end
    of a stream that broke."""

    def start(self) -> bytes: ...

    def feed(self, events: bytes) -> bytes: ...

    async def finish(self) -> bytes: ...

    async def failed(self, error: GatewayError) -> bytes: ...


async def relay_events(
    reply: Reply,
    exchange: Exchange,
    errors: UpstreamErrors,
    drain: Drain,
    output: StreamOutput | None = None,
) -> AsyncIterator[bytes]:
    """Relays a stream's events (as they came, or through `output`); every way it can
    end is recorded on the exchange.

    - the upstream breaks: the documented error event, then a clean end;
    - the gateway shuts down while it runs (`Drain.interrupt`): the same event, so the
      client knows the answer is incomplete, never a silent cut;
    - the client leaves: nothing more to send; recorded as a client abort;
    - a bug: an error event too, and the traceback in the log.
    """
    assert reply.events is not None
    # Only a config with secrets has anything to scan upstream error events for.
    scan_errors = bool(errors.redactor)
    task = drain.enter()
    try:
        if drain.interrupted:
            yield await _ended(exchange, output, _interrupted(exchange))
            return
        if output is not None:
            yield output.start()
        async for events in reply.events:
            if b'"usage"' in events:
                exchange.usage = stream_usage(events) or exchange.usage
            if scan_errors and b'"error"' in events:
                # An upstream's own error event may quote the gateway's credentials.
                # The same C-level scan as for usage keeps the redactor off every
                # other chunk.
                events = errors.redactor.secrets_in_bytes(events)
            if exchange.strip_usage:
                events = without_usage(events)
                if not events:
                    continue
            if output is not None:
                events = output.feed(events)
            if not exchange.bytes_sent:
                exchange.first_byte = time.monotonic()
            exchange.bytes_sent += len(events)
            yield events
        if output is not None:
            yield await output.finish()
    except UpstreamError as exc:
        log.warning(
            "request %s: stream from deployment %s broke: %s",
            exchange.request_id,
            exc.deployment,
            exc.message,
        )
        exchange.error_code = STREAM_INTERRUPTED
        yield await _ended(exchange, output, errors(exc))
    except asyncio.CancelledError:
        if not drain.claim(task):
            _client_left(exchange)
            raise
        yield await _ended(exchange, output, _interrupted(exchange))
    except GeneratorExit:
        if not drain.interrupted:
            _client_left(exchange)
        raise
    except Exception:
        # A bug must still end the stream readably, not as a dropped connection.
        log.exception(
            "request %s: stream relay failed on deployment %s",
            exchange.request_id,
            reply.deployment,
        )
        exchange.error_code = STREAM_INTERRUPTED
        error = GatewayError(500, "The gateway hit an internal error mid-stream.")
        yield await _ended(exchange, output, error)
    finally:
        drain.leave(task)
        await reply.close()


async def _ended(exchange: Exchange, output: StreamOutput | None, error: GatewayError) -> bytes:
    """The last event of a stream that did not finish: the documented error event."""
    exchange.error_code = STREAM_INTERRUPTED
    if output is not None:
        return await output.failed(error)
    return sse_error_event(error)


def _interrupted(exchange: Exchange) -> GatewayError:
    log.info("request %s: stream interrupted, the gateway is shutting down", exchange.request_id)
    return GatewayError(503, "The gateway is shutting down; this stream was interrupted.")


def _client_left(exchange: Exchange) -> None:
    exchange.client_left = True
    exchange.error_code = CLIENT_CLOSED
    log.info("request %s: the client left during the stream", exchange.request_id)


class Render:
    """Sets `exchange.response` from `exchange.routed`: the upstream's JSON body as it
    came, or its event stream through `relay_events`."""

    def __init__(self, errors: UpstreamErrors, drain: Drain) -> None:
        self.errors = errors
        self.drain = drain

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.routed is not None
        reply = exchange.routed.reply
        if reply.headers:
            exchange.headers.update(reply.headers)
        if reply.events is not None:
            exchange.response = StreamingResponse(
                relay_events(reply, exchange, self.errors, self.drain),
                status_code=reply.status,
                headers={**SSE_HEADERS, **exchange.headers},
                media_type="text/event-stream",
            )
        else:
            if reply.data is not None:
                usage = reply.data.get("usage")
                exchange.usage = usage if isinstance(usage, dict) else None
            exchange.response = Response(
                reply.body,
                status_code=reply.status,
                headers=exchange.headers,
                media_type="application/json",
            )
