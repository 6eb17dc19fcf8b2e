"""A request flows one way through an ordered list of stages.

Each stage is a small object with one job (authenticate, read the body, validate,
route, render...). It reads and writes the `Exchange`, and stops the request by
raising `GatewayError`. New behaviour is a new stage in the list, never a branch
in a handler. The last stage must set `exchange.response`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, error_response
from gateway.exchange import Exchange
from routing.call import Endpoint


class Stage(Protocol):
    async def __call__(self, exchange: Exchange) -> None: ...


class Pipeline:
    def __init__(self, endpoint: Endpoint, stages: Sequence[Stage]) -> None:
        self.endpoint = endpoint
        self.stages = tuple(stages)

    def names(self) -> list[str]:
        return [type(stage).__name__ for stage in self.stages]

    async def handle(self, request: Request) -> Response:
        exchange = Exchange(request, self.endpoint)
        try:
            for stage in self.stages:
                await stage(exchange)
        except GatewayError as error:
            return error_response(error, exchange.headers)
        assert exchange.response is not None, "the last stage must set exchange.response"
        return exchange.response
