"""The state of one client request as it flows through the stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from routing.router import ModelGroup, Routed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key id and what that key may do."""

    key_id: str
    roles: frozenset[str]


class Exchange:
    """Filled in stage by stage; each stage reads what earlier ones wrote.

    Slots instead of a dict: one of these is allocated per request on the hot path.
    """

    __slots__ = (
        "body",
        "chaos",
        "deadline",
        "endpoint",
        "finalizers",
        "group",
        "headers",
        "principal",
        "raw",
        "request",
        "response",
        "routed",
        "stream",
        "upstream_extensions",
        "upstream_only",
    )

    def __init__(self, request: Request, endpoint: str) -> None:
        self.request = request
        self.endpoint = endpoint
        self.principal: Principal | None = None
        self.raw = b""
        self.body: dict[str, Any] = {}
        self.stream = False
        #: `time.monotonic()` instant the whole request must finish by.
        self.deadline: float | None = None
        self.group: ModelGroup | None = None
        self.routed: Routed | None = None
        self.response: Response | None = None
        #: Headers added to the client response, error or not.
        self.headers: dict[str, str] = {}
        #: The chaos plan, when faults are in force for this request.
        self.chaos: Any = None
        #: Passed to every upstream request: extensions for the layers below
        #: routing, and the deployments this request may use (a traffic partition).
        self.upstream_extensions: dict[str, Any] | None = None
        self.upstream_only: frozenset[str] | None = None
        #: Called with the final response, success or error, just before it is sent.
        self.finalizers: list[Callable[[Exchange, Response], None]] | None = None
