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
#: Open connections per worker process; the next one is answered 503 and closed.
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

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1


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
