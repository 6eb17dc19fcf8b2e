"""OpenTelemetry spans: client spans for upstream calls, and the gateway's own server
spans (at the end of this module; made by gateway/pipeline.py).

seawall calls its transports directly (docs/performance.md), so OpenTelemetry's
automatic httpx instrumentation, which patches httpx's own transport classes, never
sees those calls. With `telemetry.opentelemetry: true` each deployment's transport,
and the tool endpoints', is wrapped in the instrumentation's
`AsyncOpenTelemetryTransport` instead: one CLIENT span per upstream attempt (retries
and hedges are separate spans), W3C trace context injected into the upstream request,
and the instrumentation's request-duration metric.

Spans go to the global tracer provider, which seawall does not configure: the
operator does, usually with `opentelemetry-instrument seawall serve` and the
`OTEL_*` environment variables. Without one, the spans are no-ops.

The span covers an attempt up to the upstream's response headers (time to first
byte for a stream), not the body. The instrumentation is imported only when enabled:
it costs ~0.1 s of start-up, and per request ~85 µs of CPU with no provider and ~185 µs
with the SDK's (docs/configuration.md#telemetry), so it is off by default.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from common.headers import DEPLOYMENT_EXTENSION

#: How long shutdown waits for the tracer provider to export what it still holds.
FLUSH_TIMEOUT_MS = 5000

#: Span attribute naming the deployment an upstream call went to.
DEPLOYMENT_ATTRIBUTE = DEPLOYMENT_EXTENSION


def traced(transport: httpx.AsyncBaseTransport, target: str) -> httpx.AsyncBaseTransport:
    """`transport` with a span around each request, tagged with `target` (a deployment
    id, or `tool:NAME` for tool endpoints)."""
    from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

    async def tag(span: Any, request: Any) -> None:
        if span.is_recording():
            span.set_attribute(DEPLOYMENT_ATTRIBUTE, target)

    return AsyncOpenTelemetryTransport(transport, request_hook=tag)


async def flush_spans() -> None:
    """Export the spans a batching provider still holds. Called at shutdown: uvicorn
    re-raises SIGTERM after its own shutdown, so the SDK's exit hook never runs and
    the last few seconds of spans would be lost. Off the loop: the export may block."""
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        await asyncio.to_thread(flush, FLUSH_TIMEOUT_MS)


def provider_configured() -> bool:
    """Whether anyone set a global tracer provider (else spans cost CPU and go nowhere)."""
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


# -- server spans ------------------------------------------------------------------
#
# With `telemetry.opentelemetry: true` the pipeline (gateway/pipeline.py) makes one
# SERVER span per inference or tool request, current from the request's arrival to
# the end of its completion hooks (so the audit hook's `seawall.audit` event and the
# client spans of its upstream attempts are its children). Its parent is the span
# current when the request arrives (an operator's ASGI instrumentation), else the
# caller's `traceparent`.

#: Span attributes of the server span (besides the conventions' `http.*`, `gen_ai.*`).
TENANT_ATTRIBUTE = "seawall.tenant"
MODEL_GROUP_ATTRIBUTE = "seawall.model_group"
CONFIG_VERSION_ATTRIBUTE = "seawall.config_version"
REQUEST_ID_ATTRIBUTE = "seawall.request_id"
ROUTE_ATTRIBUTE = "seawall.route"

#: `gen_ai.operation.name` by endpoint.
OPERATIONS = {"chat": "chat", "responses": "chat", "embeddings": "embeddings"}


def server_tracer(enabled: bool) -> Any:
    """The tracer the pipeline makes its server spans with; None when telemetry is off."""
    if not enabled:
        return None
    from opentelemetry import trace

    return trace.get_tracer("seawall")


def start_server_span(tracer: Any, scope: Any, endpoint: str) -> Any:
    """A context manager: the SERVER span of one request, made current."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    context = None
    if not trace.get_current_span().get_span_context().is_valid:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in (b"traceparent", b"tracestate")
        }
        if carrier:
            context = propagate.extract(carrier)
    path = scope.get("path", "")
    attributes: dict[str, Any] = {
        "http.request.method": scope.get("method", ""),
        "url.path": path,
        "http.route": path,
    }
    operation = OPERATIONS.get(endpoint)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    return tracer.start_as_current_span(
        f"{scope.get('method', '')} {path}",
        context=context,
        kind=SpanKind.SERVER,
        attributes=attributes,
    )


def describe_server_span(span: Any, exchange: Any, version: str) -> None:
    """The request's outcome on its server span, before the completion hooks run."""
    if not span.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    from routing.router import render_route

    status = exchange.status
    span.set_attribute("http.response.status_code", status)
    span.set_attribute(REQUEST_ID_ATTRIBUTE, exchange.request_id)
    span.set_attribute(CONFIG_VERSION_ATTRIBUTE, version)
    identity = exchange.identity
    if identity is not None:
        span.set_attribute(TENANT_ATTRIBUTE, identity.tenant_id)
    group = exchange.group
    if group is not None:
        span.set_attribute(MODEL_GROUP_ATTRIBUTE, group.name)
        span.set_attribute("gen_ai.request.model", group.name)
    routed = exchange.routed
    if routed is not None:
        span.set_attribute(DEPLOYMENT_ATTRIBUTE, routed.reply.deployment)
    if exchange.hops:
        span.set_attribute(ROUTE_ATTRIBUTE, render_route(exchange.hops))
    usage = exchange.usage
    if usage is not None:
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int):
            span.set_attribute("gen_ai.usage.input_tokens", prompt)
        if isinstance(completion, int):
            span.set_attribute("gen_ai.usage.output_tokens", completion)
    if exchange.error_code is not None:
        span.set_attribute("error.type", exchange.error_code)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, exchange.error_code))
