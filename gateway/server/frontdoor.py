"""The front door's limits and counters: what a connection may cost before the app sees it.

Everything here happens below the application, on raw connections: a header that
never ends, a body that trickles, ten thousand idle sockets. Each of those would hold
memory or a file descriptor for free if the server waited politely, so each has an
explicit bound (defaults below, all in `server:` of the config) and every refusal is
counted, so an attack shows in /metrics instead of only in latency.

Anchors for the defaults: Envoy allows 60 KiB of headers and 100 of them, Node 16 KiB;
Go's ReadHeaderTimeout, Node's headersTimeout (60 s) and Kestrel's
RequestHeadersTimeout (30 s) bound the wait for headers. An agent's request headers
are small (an SDK sends ~1 KiB; a long JWT ~8 KiB), so 32 KiB leaves room without
letting one connection hold megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

#: Request line plus headers, in bytes.
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_HEADERS = 100
#: From a request's first byte (or a new connection) to the end of its headers.
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Longest silence while a request body is being received.
DEFAULT_BODY_TIMEOUT_S = 10.0
#: An idle keep-alive connection is closed after this long: longer than the clients
#: agents use keep an idle connection (httpx, so the OpenAI Python SDK: 5 s; Node's
#: fetch: 4 s), so a client never sends a request on a connection the gateway is
#: closing. With equal timeouts (uvicorn's default is 5 s) a request sent at the
#: moment of expiry meets the close and fails without an answer. nginx's default.
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0
#: Open connections per worker process. At the cap a new connection closes the one
#: that has waited longest for a request (idle between requests, or new and silent);
#: when every connection is busy with a request, the new one is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 4096


@dataclass(frozen=True, slots=True)
class FrontDoorLimits:
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS


#: What the front door refused, by reason: the label of `seawall_front_door_refusals_total`.
REASONS = (
    "headers_too_large",  # 431: header bytes over max_header_bytes
    "too_many_headers",  # 431: more than max_headers
    "header_timeout",  # 408 (or a silent close if nothing was sent)
    "body_timeout",  # 408
    "too_many_connections",  # 503
    "malformed_request",  # 400: the HTTP parser refused the request
)


@dataclass(slots=True)
class FrontDoorStats:
    """Counters the protocol bumps and the metrics collector reads (plain ints)."""

    refusals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: Connections waiting for a request, closed at the cap to admit a new one.
    waiting_closed: int = 0

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1


class Waiting:
    """The connections waiting for a request, longest-waiting first: new ones that
    have sent nothing yet, and kept-alive ones between requests.

    With a 75 s keep-alive an idle connection holds one of a worker's connection
    slots for long, so a client could hold them all with a few cheap requests a
    second. At the cap the longest-waiting connection is closed to admit the new
    one, as nginx reuses its "reusable" connections: what a waiting connection loses
    is a socket its client reopens (an HTTP/1.1 client expects an idle connection to
    be closed at any time), while a refusal would lose the new client's request.
    Only when every connection is busy with a request is the new one refused.

    Kept in a dict's insertion order (a connection that waits again is moved to the
    end): O(1) as a connection starts and stops waiting, so nothing is scanned when
    the cap is reached."""

    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: dict[Any, None] = {}

    def __len__(self) -> int:
        return len(self._order)

    def add(self, connection: Any) -> None:
        order = self._order
        order.pop(connection, None)
        order[connection] = None

    def discard(self, connection: Any) -> None:
        self._order.pop(connection, None)

    def longest(self) -> Any | None:
        """The connection that has waited longest, taken out (None: none waits)."""
        for connection in self._order:
            del self._order[connection]
            return connection
        return None


STATUS_TEXT = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def raw_error_response(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 response in OpenAI's error envelope, written straight to a
    socket that the app never saw: the same envelope every other error uses, so a
    client's SDK raises its typed exception even for a protocol-level refusal."""
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "param": None,
                "code": code,
            }
        }
    )
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, STATUS_TEXT[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )
