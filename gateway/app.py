"""Composition root: the Starlette app over a `Gateway` (State + current Runtime)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import operator
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.headers import CONFIG_VERSION_HEADER, REQUEST_ID_HEADER
from common.redact import LOG_REDACTION, Redactor
from common.secrets import revealed, source_secrets
from gateway.access_log import ACCESS_LOG
from gateway.admin import admin_routes
from gateway.config import GatewayConfig
from gateway.drain import Drain
from gateway.errors import GatewayError, echoed, error_response, model_not_found
from gateway.mcp_endpoint import McpEndpoint
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.metrics import Metrics
from gateway.openapi import OpenAPIEndpoint
from gateway.pipeline import Pipeline, internal_error
from gateway.reload import Reloader
from gateway.rollouts import Rollouts
from gateway.runtime import Runtime, build_runtime
from gateway.sources import Source, source_for
from gateway.stages.authenticate import require
from gateway.state import State
from gateway.stored_responses import StoredResponses
from gateway.telemetry import flush_spans, provider_configured
from routing.stats import Clock
from tenants.identity import Identity

log = logging.getLogger("seawall")

#: The cyclic collector's young-generation threshold (Python's default is 700). A
#: request leaves no cyclic garbage (tests/test_gc.py; a failed upstream call leaves
#: its connection and that connection's parser, 7 objects), so a young collection
#: mostly rescans the objects of the requests in flight and frees nothing: at 700 net
#: allocations that happened every ~20-30 requests at c=32, ~3% of the CPU; at
#: 10,000, a few times a minute (docs/performance.md, "The governed path, third
#: pass").
GC_YOUNG_THRESHOLD = 10_000


class Gateway:
    """A running gateway: the process-long `State`, the `Runtime` of the config
    version being served, and the endpoints, which read the runtime once per request.

    `runtime` is replaced whole by a reload (one assignment on the event loop, after
    the new one is built and started); a request that started on the old one keeps
    it to its last byte.
    """

    def __init__(
        self,
        config: GatewayConfig,
        clock: Clock = time.monotonic,
        documents: Mapping[str, str] | None = None,
        origin: str = "<config object>",
        source: str | None = None,
        worker: int = 0,
    ) -> None:
        # Every log record the process makes loses the secrets of the config versions
        # alive (each Runtime registers its own) and of the config source.
        LOG_REDACTION.install()
        self._source_secrets = Redactor(source_secrets(source))
        LOG_REDACTION.add(self._source_secrets)
        self.state = State(
            clock,
            limits=config.limits,
            responses=config.responses,
            mcp=config.mcp,
            audit=config.audit,
            worker=worker,
        )
        self.metrics = Metrics(self.state, lambda: self.runtime)
        if documents is None:  # what the config object says, secrets included
            documents = {"config.json": json.dumps(revealed(config.model_dump()), default=str)}
        version = self.state.versions.add(documents, origin)
        #: Guarded rollouts: a canary version beside the serving one (gateway/rollouts.py).
        self.rollouts = Rollouts(lambda: self.source)
        completions = [self.metrics.on_complete, ACCESS_LOG, self.rollouts.observe]
        self.runtime: Runtime = build_runtime(config, self.state, version, completions)
        #: Where new config versions come from (`--config`: a file, a directory, etcd),
        #: opened and watched from `start`; None: only the admin API changes the
        #: config, in this process's memory.
        self.source_spec = source
        self.source: Source | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.reloader = Reloader(
            self.state, lambda: self.runtime, self._swap, completions, self.rollouts
        )
        self.ready = False
        _warn_unchecked_prompts(self.runtime)
        if config.telemetry.opentelemetry and not provider_configured():
            log.warning(
                "telemetry.opentelemetry is on but no tracer provider is configured "
                "(e.g. run under opentelemetry-instrument): spans will go nowhere"
            )

    def _swap(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    @property
    def drain(self) -> Drain:
        return self.state.drain

    async def start(self) -> None:
        if self.state.audit is not None:
            await self.state.audit.start()
        await self.runtime.start()
        await self.runtime.adopt()
        self.state.adopt(self.runtime.router.budget)
        if self.source_spec is not None:
            source = source_for(
                self.source_spec,
                resync_s=self.config.reload.resync_s,
                event_filter=lambda: self.runtime.chaos.config_event_allowed(),
            )
            self.source = source
            self._watcher = asyncio.create_task(self.reloader.watch(source))
        # Everything allocated so far lives as long as the process. Freezing it keeps
        # the cyclic GC from rescanning it on every full collection: measured, c=32
        # p99 fell from ~27 ms to ~7 ms and throughput rose ~13% (docs/performance.md).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.source is not None:
            await self.source.aclose()
        await self.reloader.aclose()
        await self.runtime.close()
        LOG_REDACTION.discard(self._source_secrets)
        await self.state.limiter.store.aclose()
        await self.state.responses_store.aclose()
        await self.state.mcp_ledger.aclose()
        await self.state.mcp_pool.close()  # before the pool its HTTP servers use
        await self.state.tool_pool.aclose()
        if self.state.audit is not None:  # last: every request's record is queued
            await self.state.audit.close()
        if self.config.telemetry.opentelemetry:
            await flush_spans()

    # -- small endpoints that need no pipeline ------------------------------------

    def _model_card(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self.state.created,
            "owned_by": "seawall",
        }

    async def list_models(self, request: Request) -> Response:
        runtime = self.runtime
        identity = require(runtime.tenants, request.headers.get("authorization"), "user")
        names = identity.allowed_models(g.name for g in runtime.config.models)
        data = [self._model_card(name) for name in names]
        return self.respond({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        runtime = self.runtime
        identity = require(runtime.tenants, request.headers.get("authorization"), "user")
        name = request.path_params["model"]
        if runtime.router.group(name) is None or not identity.may_use_model(name):
            raise model_not_found(name)
        return self.respond(self._model_card(name))

    async def metrics_endpoint(self, request: Request) -> Response:
        # Deployment names, traffic and error rates are not for every caller: with
        # keys configured, scraping needs a key with the `metrics` (or `admin`) role,
        # and a key scoped to a tenant sees that tenant's view (gateway/metrics.py).
        identity = require(
            self.runtime.tenants, request.headers.get("authorization"), "metrics", "admin"
        )
        return Response(self.metrics.render(identity), media_type=METRICS_CONTENT_TYPE)

    def require_user(self, request: Request) -> Identity:
        return require(self.runtime.tenants, request.headers.get("authorization"), "user")

    async def healthz(self, request: Request) -> Response:
        return self.respond({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        version = self.runtime.version
        if self.drain.draining:
            # First thing on SIGTERM: a load balancer must stop sending traffic here.
            return self.respond({"status": "draining", "config_version": version.id}, status=503)
        if not self.ready:
            return self.respond({"status": "starting"}, status=503)
        return self.respond(
            {
                "status": "ready",
                "config_version": version.id,
                "config_number": version.number,
                "model_groups": len(self.runtime.config.models),
            }
        )

    def respond(self, payload: Any, status: int = 200) -> Response:
        """A JSON response with the headers every gateway response carries."""
        return Response(
            orjson.dumps(payload),
            status_code=status,
            media_type="application/json",
            headers={
                REQUEST_ID_HEADER: self.state.ids.next(),
                CONFIG_VERSION_HEADER: self.runtime.version.id,
            },
        )


class CurrentPipeline:
    """An ASGI endpoint that hands each request to the named pipeline of the runtime
    current when it arrives (an object, not a function, so Starlette mounts it as
    ASGI rather than wrapping it as a request handler)."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        self.gateway = gateway
        self.pipeline: Callable[[Runtime], Pipeline] = operator.attrgetter(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        runtime = gateway.runtime
        if gateway.rollouts.candidate is not None:  # a canary is running
            runtime = gateway.rollouts.choose(scope, runtime)
        await self.pipeline(runtime)(scope, receive, send)


def _warn_unchecked_prompts(runtime: Runtime) -> None:
    for name, limit in runtime.prompt_limits.items():
        if limit is None:
            log.warning(
                "model group %s: no context window known for its models and no "
                "max_prompt_tokens set: prompts are not size-checked",
                name,
            )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = GatewayError(
        exc.status_code,
        f"{request.method} {echoed(request.url.path)}: {exc.detail}",
        code="not_found" if exc.status_code == 404 else None,
        headers=exc.headers,
    )
    return error_response(error)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server log (Starlette re-raises after this), never
    # to the client.
    return error_response(internal_error())


VERSION_HEADER_BYTES = CONFIG_VERSION_HEADER.encode()


class GatewayApp(Starlette):
    """Starlette, with the inference endpoints reached around it.

    A POST to /v1/chat/completions, /v1/responses or /v1/embeddings goes straight to
    the pipeline: a plain ASGI endpoint that answers every error itself, in the
    envelope, with its request id (gateway/pipeline.py). Starlette's way there (two
    exception middlewares wrapping `send`, the router's regex scan, the route's method
    check) did nothing for those requests but cost 42,851 instructions each, 6% of a
    plain request (docs/performance.md, "The plain path"). Every other request takes it: other
    paths, other methods (405), the admin API, a trailing slash (404).
    """

    def __init__(self, *args: Any, direct: Mapping[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: POST endpoints by exact path.
        self.direct = dict(direct)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope["method"] == "POST":
            endpoint = self.direct.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, self._versioned(send))

    def _versioned(self, send: Send) -> Send:
        """`send` adding `x-seawall-config-version` to a response that lacks it (a 404,
        a 405, an admin API error): every response names the version that served it,
        not only the ones an endpoint answers itself."""
        gateway: Gateway = self.state.gateway

        async def versioned(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name == VERSION_HEADER_BYTES for name, _ in headers):
                    version = gateway.runtime.version.id.encode()
                    message = {**message, "headers": [*headers, (VERSION_HEADER_BYTES, version)]}
            await send(message)

        return versioned


def create_app(
    config: GatewayConfig,
    clock: Clock = time.monotonic,
    documents: Mapping[str, str] | None = None,
    origin: str = "<config object>",
    source: str | None = None,
    worker: int = 0,
) -> Starlette:
    """The app for `config`; `worker`: this process's number under `--workers` (its
    audit stream's name)."""
    gateway = Gateway(config, clock, documents, origin, source, worker)
    stored = StoredResponses(gateway, gateway.state.responses_store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    mcp = McpEndpoint(gateway)
    direct: dict[str, ASGIApp] = {
        "/v1/chat/completions": CurrentPipeline(gateway, "chat"),
        "/v1/responses": CurrentPipeline(gateway, "responses"),
        "/v1/embeddings": CurrentPipeline(gateway, "embeddings"),
    }
    pipelines = list(direct)
    direct["/mcp"] = mcp
    routes = [
        # Reached around Starlette (`GatewayApp`); listed for the OpenAPI document, the
        # 405 of another method, and any caller that walks the routes.
        *(Route(path, direct[path], methods=["POST"]) for path in pipelines),
        Route("/v1/responses/{response_id}", stored.get, methods=["GET"]),
        Route("/v1/responses/{response_id}", stored.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", stored.input_items, methods=["GET"]),
        Route("/v1/tools/{name}/invoke", CurrentPipeline(gateway, "tools"), methods=["POST"]),
        # MCP's Streamable HTTP transport in front of the configured MCP servers
        # (gateway/mcp/, docs/mcp.md).
        # (A POST is reached around Starlette, as the inference endpoints are.)
        Route("/mcp", mcp.handle, methods=["GET", "POST", "DELETE"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.get_model, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", OpenAPIEndpoint(gateway).get, methods=["GET"]),
        *admin_routes(gateway),
    ]
    app = GatewayApp(
        direct=direct,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    # A trailing-slash redirect would answer a POST or DELETE with an empty 307 that
    # SDKs do not follow; an unknown path is a 404 in the error envelope instead.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app
