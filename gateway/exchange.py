"""The state of one client request as it flows through the stages."""

from __future__ import annotations

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
        "deadline",
        "endpoint",
        "group",
        "headers",
        "principal",
        "raw",
        "request",
        "response",
        "routed",
        "stream",
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
