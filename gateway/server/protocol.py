"""uvicorn's httptools protocol with a bounded front door.

httptools parses fast but bounds nothing: a header that never ends grows in memory
(quadratically, as the parser re-buffers it), a connection that sends one byte every
few seconds is held forever, and a malformed request gets a `text/plain` 400. This
subclass keeps httptools' speed and adds, per connection (limits in `FrontDoorLimits`):

- header size and count: bytes are counted as they arrive, so a header that never
  ends is refused (431) once it passes the limit, not when it completes;
- one watchdog timer per connection for the header read timeout (from the first byte
  of a request, or from accepting the connection, to the end of its headers) and the
  body idle timeout (the longest silence between body chunks); a timeout is a 408, or
  a silent close when the client sent nothing at all;
- a cap on open connections: at the cap the connection that has waited longest for
  a request is closed to admit the new one (`Waiting`); with every connection busy,
  the new one is answered 503 and closed;
- protocol-level refusals in OpenAI's error envelope (`raw_error_response`);
- the writes of one event-loop turn sent as one (`CoalescingTransport`): uvicorn
  writes a response's head and its body apart, a system call each.

Why one watchdog instead of a timer per phase: arming and cancelling a timer on every
request (and on every body chunk) costs more than the request's own parsing; a
watchdog fires at most once per timeout period, and each phase change only moves a
deadline (one `loop.time()` call).

The choice of uvicorn + httptools + this guard over uvicorn + h11 and granian is
measured in docs/performance.md ("HTTP server").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.server.frontdoor import (
    FrontDoorLimits,
    FrontDoorStats,
    Waiting,
    raw_error_response,
)

log = logging.getLogger("seawall.frontdoor")

#: Watchdog phases.
IDLE, HEAD, BODY = 0, 1, 2


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: FrontDoorLimits,
        stats: FrontDoorStats,
        waiting: Waiting,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.stats = stats
        #: The worker's connections waiting for a request; this one is among them
        #: while `_waits`.
        self.waiting = waiting
        self._waits = False
        self._phase = HEAD
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received while the current head is unfinished
        self._head_size = 0  # request line + header bytes, counted by the parser callbacks
        self._header_count = 0
        self._refused = False

    # -- connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # What the cycles write goes through it; flow control keeps the real one.
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._refuse(
                503,
                "The gateway has too many open connections; retry shortly.",
                "too_many_connections",
            )
            return
        self._enter(HEAD, self.limits.header_timeout_s)
        self._wait()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request, if any waits."""
        longest = self.waiting.longest()
        if longest is None:
            return False
        longest._waits = False
        longest._close_waiting()
        self.stats.waiting_closed += 1
        return True

    def _close_waiting(self) -> None:
        """Closed at the cap while waiting for a request: silently, as a keep-alive
        expiry closes it (nothing was asked, so nothing is answered)."""
        self._refused = True
        self._phase = IDLE
        self.transport.close()

    def _wait(self) -> None:
        self._waits = True
        self.waiting.add(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive, waiting for the next
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waits:
            self._waits = False
            self.waiting.discard(self)
        self._phase = IDLE
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._waits:  # a request is coming: no longer a connection to close at the cap
            self._waits = False
            self.waiting.discard(self)
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._phase == IDLE:  # the first bytes of the next request on this connection
            self._head_bytes = 0
            self._enter(HEAD, self.limits.header_timeout_s)
        if self._phase == HEAD:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if not self._refused:
                reason = str(exc).strip().rstrip(".") or "invalid syntax"
                self._refuse(400, f"Malformed HTTP request: {reason}.", "malformed_request")
            return
        if (
            self._phase == HEAD
            and not self._refused
            and self._head_bytes > self.limits.max_header_bytes
        ):
            self._refuse_large_head()

    # -- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_size = 0
        self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        if self._header_count > self.limits.max_headers:
            self._refuse(
                431,
                f"The request has {self._header_count} headers; the gateway accepts at most "
                f"{self.limits.max_headers} (server.max_headers).",
                "too_many_headers",
            )
            return
        if self._head_size > self.limits.max_header_bytes:
            self._refuse_large_head()
            return
        self._enter(BODY, self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._deadline = self.loop.time() + self.limits.body_timeout_s
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = IDLE
        super().on_message_complete()

    # -- the watchdog -----------------------------------------------------------------

    def _enter(self, phase: int, timeout: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + timeout
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self._deadline, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if self._phase == IDLE or self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        if now < self._deadline or (self._phase == BODY and self.flow.read_paused):
            # Moved since armed, or the app (not the client) is what is slow to read.
            self._watchdog = self.loop.call_at(max(self._deadline, now + 0.05), self._check)
            return
        if self._phase == HEAD:
            if self._head_bytes == 0:
                self.stats.refused("header_timeout")
                self._refused = True
                self.transport.close()  # nothing was asked: nothing to answer
                return
            self._refuse(
                408,
                f"The request headers did not arrive within {self.limits.header_timeout_s:g} s "
                "(server.header_timeout_s).",
                "header_timeout",
            )
            return
        self._refuse(
            408,
            f"The request body stalled for more than {self.limits.body_timeout_s:g} s "
            "(server.body_timeout_s).",
            "body_timeout",
        )

    # -- refusals ---------------------------------------------------------------------

    def _refuse_large_head(self) -> None:
        self._refuse(
            431,
            f"The request line and headers exceed {self.limits.max_header_bytes} bytes "
            "(server.max_header_bytes).",
            "headers_too_large",
        )

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer in the error envelope and close. A response the app already started
        cannot be replaced: then the connection is only closed."""
        self._refused = True
        self._phase = IDLE
        self.stats.refused(reason)
        log.info("front door: %s from %s (%d)", reason, _peer(self.client), status)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(raw_error_response(status, message, reason))
        self.transport.close()


class CoalescingTransport:
    """A connection's transport whose writes in one event-loop turn go out as one.

    uvicorn writes a response's head when the app sends `http.response.start` and its
    body when the app sends it, one `send` system call each, though an answer that is
    not streamed sends both in the same turn. Here the first write of a turn is held
    and a flush is scheduled (`call_soon`: it runs before the loop polls again); the
    turn's later writes join it. Measured on the governed bench's plain target: 3
    `write`s a request became 2, as the aiohttp floor makes (docs/performance.md).
    A stream's events written in one turn are coalesced the same way; one per turn
    goes out at the end of that turn. `close` and `write_eof` send what is held first;
    `abort` drops it, as the real transport drops its buffer. Everything else is the
    real transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def flush(self) -> None:
        held = self._held
        if held is None:
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:  # asked on every request: not through __getattr__
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown peer"
