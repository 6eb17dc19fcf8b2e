"""What every upstream connector shares: its errors, its interface, the handshake.

Errors carry a message that is safe to show the agent: the server's configured
name and what went wrong in general words ("cannot be reached", "did not answer
within 10000 ms"), never its URL, host, command line or a credential. The detail
goes to the gateway's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from toolservers.jsonrpc import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
    Error,
    Notification,
    Request,
    Response,
)

log = logging.getLogger("seawall.mcp")

#: The revisions the connectors speak, newest first: the initialize handshake's.
#: 2026-07-28 (no handshake, no sessions) is not spoken upstream: every server of
#: that revision built on the official SDKs also accepts the handshake.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_VERSION = HANDSHAKE_VERSIONS[0]
CLIENT_INFO = {"name": "seawall", "title": "seawall MCP gateway", "version": "0.1.0"}


class UpstreamError(Exception):
    """A call that did not get the server's answer. `code` is the JSON-RPC code the
    agent gets; `message` names the server and is safe to show; `failure` says
    whether it counts against the server's breaker."""

    code = INTERNAL_ERROR
    failure = True

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ServerDown(UpstreamError):
    """The server cannot be reached, is not running, or went away mid-call."""

    code = CONNECTION_CLOSED


class ServerTimeout(UpstreamError):
    code = REQUEST_TIMEOUT


class ProtocolViolation(UpstreamError):
    """The server answered something that is not MCP (bad JSON, wrong shape, too large)."""


class RemoteError(UpstreamError):
    """The server's own JSON-RPC error, relayed: the server is up, so it is no
    failure for the breaker."""

    failure = False

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message, data)
        self.code = code


NotificationHandler = Callable[[Notification], None]


class Connection(Protocol):
    """One connection to one server, with the handshake done inside `start`/lazily.

    `request` returns the JSON-RPC `result` or raises an `UpstreamError`; it never
    waits longer than `limit_s` seconds. `on_notification` gets the server's
    notifications that belong to no request (list_changed...)."""

    on_notification: NotificationHandler | None
    #: The server's `initialize` result, once the handshake is done.
    initialize_result: dict[str, Any] | None

    async def start(self) -> None: ...

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        limit_s: float,
        on_notification: NotificationHandler | None = None,
    ) -> dict[str, Any]: ...

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None: ...

    async def close(self) -> None: ...


def initialize_params() -> dict[str, Any]:
    """What the gateway says of itself: no client capabilities, since it relays no
    sampling, elicitation or roots to its agents; a server that asks anyway gets
    `refuse_server_request`'s error."""
    return {"protocolVersion": LATEST_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}


def check_initialize(server: str, result: dict[str, Any]) -> str:
    """The agreed revision, or `ProtocolViolation` when the server picked one the
    gateway does not speak."""
    version = result.get("protocolVersion")
    if version not in HANDSHAKE_VERSIONS:
        raise ProtocolViolation(
            f"MCP server '{server}' speaks protocol revision {str(version)[:32]!r}, "
            f"which the gateway does not ({', '.join(HANDSHAKE_VERSIONS)})"
        )
    if not isinstance(result.get("capabilities", {}), dict):
        raise ProtocolViolation(f"MCP server '{server}' sent malformed capabilities")
    return str(version)


def refuse_server_request(request: Request) -> Response | Error:
    """The answer to a request a server sends the gateway: `ping` is answered;
    sampling, elicitation and roots are refused (the gateway advertised none of
    them, so a conforming server never sends them)."""
    if request.method == "ping":
        return Response(request.id, {})
    return Error(
        request.id,
        METHOD_NOT_FOUND,
        f"the seawall gateway does not relay '{request.method[:64]}' requests to its clients",
    )
