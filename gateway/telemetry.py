"""OpenTelemetry client spans for upstream calls.

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
from routing.transport import start_transport

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

    return TracedTransport(AsyncOpenTelemetryTransport(transport, request_hook=tag), transport)


class TracedTransport(httpx.AsyncBaseTransport):
    """Keeps the wrapped transport's `start` reachable: the instrumentation's wrapper
    only forwards requests and `aclose`, and pools are opened at start-up."""

    def __init__(self, outer: httpx.AsyncBaseTransport, inner: httpx.AsyncBaseTransport) -> None:
        self.outer = outer
        self.inner = inner

    async def start(self) -> None:
        await start_transport(self.inner)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.outer.handle_async_request(request)

    async def aclose(self) -> None:
        await self.outer.aclose()


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
