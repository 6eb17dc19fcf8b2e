"""Resolving the model group, then sending the request through the router."""

from __future__ import annotations

import logging
from typing import Any

from common.headers import DEPLOYMENT_HEADER, ROUTE_HEADER, SHOULD_RETRY_HEADER
from gateway.errors import UpstreamErrors, model_not_found
from gateway.exchange import Exchange
from routing.call import Endpoint, UpstreamRequest
from routing.router import Routed, Router, RoutingError, render_route

log = logging.getLogger("seawall")

#: The upstream API each client endpoint is served by: the Responses API is
#: translated to Chat Completions (gateway/stages/responses.py).
UPSTREAM_ENDPOINTS: dict[str, Endpoint] = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
}


class ResolveModel:
    """Maps the client's `model` to a configured model group: 404 when there is none,
    or when the caller's tenant may not use it (as OpenAI answers for a model a key
    has no access to: the answer does not tell which)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.body["model"]
        group = self.router.group(name)
        identity = exchange.identity
        if group is None or (identity is not None and not identity.may_use_model(name)):
            raise model_not_found(name)
        exchange.group = group


def _add_route(exchange: Exchange, route: str) -> None:
    earlier = exchange.headers.get(ROUTE_HEADER)
    exchange.headers[ROUTE_HEADER] = f"{earlier} > {route}" if earlier else route


async def send(
    router: Router, errors: UpstreamErrors, exchange: Exchange, body: dict[str, Any]
) -> Routed:
    """One trip through the router for `body`; its hops are added to the route header.

    A stage that must ask again (a tool-call repair) calls this too, so the client
    sees every hop the request made. A failure's detail (what the upstream or the
    connection said) goes to the log with the request id; the client gets what
    `errors` renders.
    """
    assert exchange.group is not None
    endpoint = UPSTREAM_ENDPOINTS[exchange.endpoint]
    only = exchange.upstream_only
    groups = None
    identity = exchange.identity
    if identity is not None:
        permissions = identity.permissions
        groups = permissions.models
        if permissions.deployments is not None:
            only = permissions.deployments if only is None else only & permissions.deployments
    request = UpstreamRequest(
        endpoint, body, exchange.stream, exchange.upstream_extensions or {}, only, groups
    )
    try:
        routed = await router.send(exchange.group, request, exchange.deadline)
    except RoutingError as exc:
        route = render_route(exc.route)
        _add_route(exchange, route)
        log.warning(
            "request %s failed upstream (route %s): %s",
            exchange.request_id,
            route or exc.error.failure.label,
            exc.error.message,
        )
        # The gateway already spent its retries and fallbacks on this request;
        # the OpenAI SDKs honour this and do not multiply them.
        exchange.headers[SHOULD_RETRY_HEADER] = "false"
        raise errors(exc.error) from exc
    _add_route(exchange, render_route(routed.route))
    exchange.headers[DEPLOYMENT_HEADER] = routed.reply.deployment
    return routed


class Forward:
    """Hands the request to the router: deployment choice, attempts, failover."""

    def __init__(self, router: Router, errors: UpstreamErrors) -> None:
        self.router = router
        self.errors = errors

    async def __call__(self, exchange: Exchange) -> None:
        exchange.routed = await send(self.router, self.errors, exchange, exchange.body)
