"""The interface every provider adapter implements."""

from __future__ import annotations

import time
from typing import Protocol

from routing.call import Reply, UpstreamRequest
from routing.outcomes import Failure, UpstreamError


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


def attempt_limit(deployment: str, total: float, deadline: float | None) -> tuple[float, bool]:
    """Seconds this attempt may take, and whether the request deadline (not the
    deployment's own `total_ms`) is what limits it: running out of the request's
    time says nothing about the deployment's health."""
    if deadline is None:
        return total, False
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamError(Failure.DEADLINE, deployment, "request deadline exceeded")
    return (remaining, True) if remaining < total else (total, False)
