"""A request flows one way through an ordered list of stages.

Each stage is a small object with one job (authenticate, read the body, validate,
route, render...). It reads and writes the `Exchange`, and stops the request by
raising `GatewayError`. New behaviour is a new stage in the list, never a branch
in a handler. The last stage must set `exchange.response`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, error_response
from gateway.exchange import Exchange


class Stage(Protocol):
    async def __call__(self, exchange: Exchange) -> None: ...


def _ignore(endpoint: str, status: int) -> None:
    return None


class Pipeline:
    def __init__(
        self,
        endpoint: str,
        stages: Sequence[Stage],
        observe: Callable[[str, int], None] = _ignore,
    ) -> None:
        self.endpoint = endpoint
        self.stages = tuple(stages)
        self._observe = observe

    def names(self) -> list[str]:
        return [type(stage).__name__ for stage in self.stages]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A plain ASGI endpoint: Starlette's function-endpoint wrapper would add a
        per-request exception-handling closure that the app's own middleware already
        provides (it still handles whatever escapes here)."""
        response = await self.handle(Request(scope, receive, send))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        exchange = Exchange(request, self.endpoint)
        try:
            for stage in self.stages:
                await stage(exchange)
        except GatewayError as error:
            self._observe(self.endpoint, error.status)
            return _finalized(exchange, error_response(error, exchange.headers))
        assert exchange.response is not None, "the last stage must set exchange.response"
        self._observe(self.endpoint, exchange.response.status_code)
        return _finalized(exchange, exchange.response)


def _finalized(exchange: Exchange, response: Response) -> Response:
    if exchange.finalizers:
        for finalize in exchange.finalizers:
            finalize(exchange, response)
    return response
