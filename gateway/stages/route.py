"""Resolving the model group, then sending the request through the router."""

from __future__ import annotations

from gateway.errors import model_not_found, upstream_error
from gateway.exchange import Exchange
from routing.call import UpstreamRequest
from routing.router import Router, RoutingError, render_route


class ResolveModel:
    """Maps the client's `model` to a configured model group (404 if none)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.body["model"]
        group = self.router.group(name)
        if group is None:
            raise model_not_found(name)
        exchange.group = group


class Forward:
    """Hands the request to the router: deployment choice, attempts, failover."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.group is not None
        request = UpstreamRequest(exchange.endpoint, exchange.body, exchange.stream)
        try:
            routed = await self.router.send(exchange.group, request, exchange.deadline)
        except RoutingError as exc:
            exchange.headers["x-seawall-route"] = render_route(exc.route)
            # The gateway already spent its retries and fallbacks on this request;
            # the OpenAI SDKs honour this and do not multiply them.
            exchange.headers["x-should-retry"] = "false"
            raise upstream_error(exc.error) from exc
        exchange.routed = routed
        exchange.headers["x-seawall-route"] = render_route(routed.route)
        exchange.headers["x-seawall-deployment"] = routed.reply.deployment
