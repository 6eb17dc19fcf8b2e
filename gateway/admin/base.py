"""What every admin handler shares: the gateway it manages, and who may call it.

Each admin resource is a module with one class whose methods are the handlers, one
method per verb. They reach the gateway through `AdminTarget` (not the app module),
read the runtime once per request like everything else, and require the `admin`
role of the calling key (the key-less local default has it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.exchange import Principal

if TYPE_CHECKING:
    from gateway.reload import Reloader
    from gateway.runtime import Runtime
    from gateway.state import State


class ConfigSource(Protocol):
    """Where the config comes from, as the admin API sees it."""

    origin: str
    #: Whether `write` may be called (a file or etcd: yes; a ConfigMap: no).
    writable: bool

    async def write(self, files: Mapping[str, str]) -> None: ...


class AdminTarget(Protocol):
    runtime: Runtime
    state: State
    reloader: Reloader
    source: ConfigSource | None

    def respond(self, payload: Any, status: int = 200) -> Response: ...


class AdminResource:
    def __init__(self, gateway: AdminTarget) -> None:
        self.gateway = gateway

    def authorize(self, request: Request) -> Principal:
        return self.gateway.runtime.keyring.require(request.headers.get("authorization"), "admin")

    def respond(self, payload: Any, status: int = 200) -> Response:
        return self.gateway.respond(payload, status)
