"""Resolving the model group, then sending the request through the router."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from common.headers import DEPLOYMENT_HEADER, ROUTE_HEADER, SHOULD_RETRY_HEADER
from gateway.errors import UpstreamErrors, model_not_found
from gateway.exchange import Exchange
from routing.call import Endpoint, UpstreamRequest
from routing.outcomes import UpstreamError
from routing.router import Hop, Routed, Router, RoutingError, render_route

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


class ReplyFlow(Protocol):
    """What may need further round trips once the first reply is in (the tool-call
    checks, which repair an invalid call by asking the model again).

    The shape of httpx's auth flow, driven by the forwarding stage: `steps` reads the
    reply in `exchange.routed` and returns None when it stands as it is (the common
    case, with no generator made), else steps that yield a body when another trip is
    due; `Forward` sends it, puts the new reply in `exchange.routed` and resumes them.
    They end when the reply stands, or raise `GatewayError` to refuse it; an
    `UpstreamError` they meet (a held stream that broke) is answered as the router's.
    """

    def steps(self, exchange: Exchange) -> AsyncIterator[dict[str, Any]] | None: ...


class Forward:
    """Hands the request to the router (deployment choice, attempts, failover), then
    drives its reply flow. The only stage that sends requests upstream, so every trip's
    hops are recorded in one place: `exchange.hops`, rendered into `x-seawall-route`.

    Reads `exchange.body`, `exchange.group`, `exchange.identity`, `exchange.upstream_only`,
    `exchange.upstream_extensions`, `exchange.observed`, `exchange.deadline`. Writes
    `exchange.routed`, `exchange.hops`, the route and deployment headers.
    """

    def __init__(
        self,
        router: Router,
        errors: UpstreamErrors,
        flow: ReplyFlow | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self.router = router
        self.errors = errors
        self.flow = flow
        #: The upstream API; None: the one the client's endpoint is served by.
        self.endpoint = endpoint

    async def __call__(self, exchange: Exchange) -> None:
        exchange.routed = await self._send(exchange, exchange.body)
        if self.flow is None:
            return
        steps = self.flow.steps(exchange)
        if steps is None:
            return
        try:
            async for body in steps:
                exchange.routed = await self._send(exchange, body)
        except UpstreamError as exc:
            await exchange.routed.reply.close()
            # It broke after the router handed it over: its hop failed after all.
            exchange.hops[-1].outcome = str(exc.status or exc.failure.label)
            exchange.headers[ROUTE_HEADER] = render_route(exchange.hops)
            log.warning(
                "request %s: held stream from deployment %s broke: %s",
                exchange.request_id,
                exc.deployment,
                exc.message,
            )
            raise self.errors(exc) from exc

    async def _send(self, exchange: Exchange, body: dict[str, Any]) -> Routed:
        """One trip through the router for `body`; its hops join the request's route.
        A failure's detail (what the upstream or the connection said) goes to the log
        with the request id; the client gets what `errors` renders."""
        assert exchange.group is not None
        endpoint = self.endpoint or UPSTREAM_ENDPOINTS[exchange.endpoint]
        only = exchange.upstream_only
        groups = None
        identity = exchange.identity
        if identity is not None:
            permissions = identity.permissions
            groups = permissions.models
            if permissions.deployments is not None:
                only = permissions.deployments if only is None else only & permissions.deployments
        request = UpstreamRequest(
            endpoint,
            body,
            exchange.stream,
            exchange.upstream_extensions or {},
            only,
            groups,
            exchange.observed,
        )
        try:
            routed = await self.router.send(exchange.group, request, exchange.deadline)
        except RoutingError as exc:
            route = self._record(exchange, exc.route)
            log.warning(
                "request %s failed upstream (route %s): %s",
                exchange.request_id,
                route or exc.error.failure.label,
                exc.error.message,
            )
            # The gateway already spent its retries and fallbacks on this request;
            # the OpenAI SDKs honour this and do not multiply them.
            exchange.headers[SHOULD_RETRY_HEADER] = "false"
            raise self.errors(exc.error) from exc
        self._record(exchange, routed.route)
        exchange.headers[DEPLOYMENT_HEADER] = routed.reply.deployment
        return routed

    @staticmethod
    def _record(exchange: Exchange, hops: list[Hop]) -> str:
        """Adds a trip's hops to the request's route; the route header, rendered."""
        exchange.hops.extend(hops)
        route = render_route(exchange.hops)
        if route:
            exchange.headers[ROUTE_HEADER] = route
        return route
