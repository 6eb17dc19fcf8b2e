"""A request flows one way through an ordered list of stages.

Each stage is a small object with one job (authenticate, read the body, validate,
route, render...). It reads and writes the `Exchange`, and stops the request by
raising `GatewayError`. New behaviour is a new stage in the list, never a branch
in a handler. The last stage must set `exchange.response`.

Around the stages the pipeline does what every request needs, once:

- a request id (`x-seawall-request-id`, on every response, errors included), which
  the server log carries beside every detail a client is not shown;
- the outcome, recorded on the exchange: status, error code, and whether the
  client left (a body cut short by a closed connection is a client abort, logged
  as one line at info, never as an application error with a traceback);
- graceful shutdown (`gateway.drain`): a request still running when the shutdown
  time is up is answered 503 `server_shutting_down` instead of being cancelled;
- a bug in a stage is answered like any error (500 `internal_error`, in the envelope,
  with the request id) and logged with its traceback: the inference routes reach the
  pipeline without Starlette's exception middleware (gateway/app.py, `GatewayApp`);
- the completion hooks, called after the last byte of the response went out,
  streams included, with the final outcome (`Exchange.completed`);
- with `telemetry.opentelemetry`, a SERVER span around all of it, completion hooks
  included (gateway/telemetry.py); off, the cost is one attribute check.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from common.headers import CONFIG_VERSION_HEADER, SHOULD_RETRY_HEADER
from gateway.drain import Drain
from gateway.errors import GatewayError, error_response
from gateway.exchange import CLIENT_CLOSED, Exchange
from gateway.server.logs import REQUEST_ID
from gateway.telemetry import describe_server_span, start_server_span

log = logging.getLogger("seawall")


#: The status recorded (never sent) for a request whose client left before it was
#: read: nginx's "client closed request".
CLIENT_CLOSED_STATUS = 499


class Stage(Protocol):
    async def __call__(self, exchange: Exchange) -> None: ...


#: Called once per request after its response was sent (or abandoned).
CompletionHook = Callable[[Exchange], Awaitable[None]]


class InFlight:
    """The requests one runtime is serving, from their start to their last byte: a
    replaced runtime is closed only once they are done."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if not self.count and self._idle is not None:
            self._idle.set()

    async def idle(self) -> None:
        if self.count:
            self._idle = asyncio.Event()
            await self._idle.wait()


class RequestIds:
    """Request ids unique across processes and replicas: a random per-process prefix
    and a counter (cheaper than a random id per request, and they sort by arrival)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(5).hex() + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return self._prefix + str(next(self._counter))


def internal_error() -> GatewayError:
    return GatewayError(500, "The gateway hit an internal error.", code="internal_error")


def shutting_down() -> GatewayError:
    return GatewayError(
        503,
        "The gateway is shutting down and could not finish this request; retry it.",
        code="server_shutting_down",
        headers={SHOULD_RETRY_HEADER: "true"},
    )


class Pipeline:
    def __init__(
        self,
        endpoint: str,
        stages: Sequence[Stage],
        *,
        drain: Drain,
        ids: RequestIds,
        in_flight: InFlight | None = None,
        version: str = "",
        completions: Sequence[CompletionHook] = (),
        tracer: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.stages = tuple(stages)
        self.drain = drain
        self.ids = ids
        self.in_flight = in_flight if in_flight is not None else InFlight()
        #: The config version's id, on every response (`x-seawall-config-version`).
        self.version = version
        self.completions = tuple(completions)
        #: Makes the server spans (`gateway.telemetry.server_tracer`, from the config's
        #: `telemetry.opentelemetry`); None: none are made.
        self.tracer = tracer

    def names(self) -> list[str]:
        return [type(stage).__name__ for stage in self.stages]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, span: Any = None) -> None:
        """A plain ASGI endpoint: Starlette's function-endpoint wrapper would add a
        per-request exception-handling closure that the app's own middleware already
        provides (it still handles whatever escapes here). With telemetry on, it calls
        itself again inside the request's server span (`span`)."""
        if span is None and self.tracer is not None:
            with start_server_span(self.tracer, scope, self.endpoint) as span:
                await self(scope, receive, send, span)
            return
        self.in_flight.enter()
        exchange = Exchange(Request(scope, receive, send), self.endpoint, self.ids.next())
        REQUEST_ID.set(exchange.request_id)  # every log line of this request names it
        exchange.headers[CONFIG_VERSION_HEADER] = self.version
        response: Response | None = None
        try:
            response = await self.handle(exchange)
            await response(scope, receive, send)
            if not isinstance(response, StreamingResponse):
                exchange.bytes_sent = len(response.body)  # a stream counts its own
        finally:
            if isinstance(response, StreamingResponse):
                # A stream abandoned mid-way (the client left while a chunk was being
                # sent) is closed now, not whenever the collector finds it: its
                # upstream connection is released and its outcome recorded first.
                aclose = getattr(response.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            exchange.completed = time.monotonic()
            if span is not None:
                describe_server_span(span, exchange, self.version)
            try:
                for hook in self.completions:
                    await hook(exchange)
            finally:
                self.in_flight.leave()

    async def handle(self, exchange: Exchange) -> Response:
        task = self.drain.enter()
        try:
            if self.drain.interrupted:
                raise shutting_down()
            for stage in self.stages:
                await stage(exchange)
        except GatewayError as error:
            return self._failed(exchange, error)
        except ClientDisconnect:
            log.info(
                "request %s: the client closed the connection before its request was read",
                exchange.request_id,
            )
            exchange.client_left = True
            exchange.status = CLIENT_CLOSED_STATUS
            exchange.error_code = CLIENT_CLOSED
            return Response(status_code=400)  # nobody is left to read it
        except asyncio.CancelledError:
            if not self.drain.claim(task):
                raise
            log.info("request %s: answered 503, the gateway is shutting down", exchange.request_id)
            return self._failed(exchange, shutting_down())
        except Exception:
            log.exception("request %s: the gateway hit an internal error", exchange.request_id)
            return self._failed(exchange, internal_error())
        finally:
            self.drain.leave(task)
        response = exchange.response
        assert response is not None, "the last stage must set exchange.response"
        exchange.status = response.status_code
        return _finalized(exchange, response)

    def _failed(self, exchange: Exchange, error: GatewayError) -> Response:
        exchange.status = error.status
        exchange.error_code = error.code or "error"
        return _finalized(exchange, error_response(error, exchange.headers))


def _finalized(exchange: Exchange, response: Response) -> Response:
    if exchange.finalizers:
        for finalize in exchange.finalizers:
            finalize(exchange, response)
    return response
