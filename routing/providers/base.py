"""The interface every provider adapter implements."""

from __future__ import annotations

from typing import Protocol

from routing.call import Reply, UpstreamRequest


class Provider(Protocol):
    """Sends one attempt to one deployment.

    `send` returns a `Reply` or raises `routing.outcomes.UpstreamError`; anything
    else escaping it is a bug. `deadline` is a `time.monotonic()` instant the attempt
    must not outlive (None: only the deployment's own timeouts apply).
    """

    deployment_id: str

    async def send(self, request: UpstreamRequest, deadline: float | None = None) -> Reply: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
