"""OpenTelemetry client spans around upstream calls (`telemetry.opentelemetry`).

The spans go to the global tracer provider, as in production under
`opentelemetry-instrument`; this module installs an SDK provider that keeps them in
memory. The gateway and the upstreams are real servers on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.telemetry import DEPLOYMENT_ATTRIBUTE
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, error_body
from tests.support import ServerThread, running_gateway, sdk

EXPORTER = InMemorySpanExporter()
#: Behind a batching processor that, left alone, exports only every ten minutes.
BATCHED = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    provider.add_span_processor(BatchSpanProcessor(BATCHED, schedule_delay_millis=600_000))
    trace.set_tracer_provider(provider)
    # The global provider can be set once per process: fail loudly, not vacuously,
    # if something else set it first.
    assert trace.get_tracer_provider() is provider


@pytest.fixture(autouse=True)
def no_spans_yet() -> None:
    EXPORTER.clear()
    BATCHED.clear()


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, str]]:
    scripted = ScriptedUpstream(Answer(body=chat_body()))
    with ServerThread(scripted) as server:
        yield scripted, server.url


def config(url: str, telemetry: bool = True, **extra: Any) -> dict[str, Any]:
    deployment = {
        "id": "primary",
        "provider": "openai",
        "model": "m",
        "api_base": url + "/v1",
        "api_key": "sk-test",
        "retry": extra.pop("retry", {"attempts": 1}),
    }
    return {
        "models": [{"name": "g", "deployments": [deployment]}],
        "telemetry": {"opentelemetry": telemetry},
        **extra,
    }


def client_spans() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.kind is SpanKind.CLIENT]


def status_of(span: ReadableSpan) -> Any:
    attributes = span.attributes or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


def test_each_upstream_call_is_a_client_span_with_context_sent_upstream(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    scripted, url = upstream
    with running_gateway(config(url)) as gateway:
        reply = sdk(gateway.url).chat.completions.create(
            model="g", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].message.content == "scripted reply"
    [span] = client_spans()
    assert span.attributes is not None
    assert span.attributes[DEPLOYMENT_ATTRIBUTE] == "primary"
    assert status_of(span) == 200
    # W3C trace context reached the upstream, naming this very span as the parent.
    assert span.context is not None
    traceparent = scripted.headers[0]["traceparent"]
    _, trace_id, parent_id, _ = traceparent.split("-")
    assert int(trace_id, 16) == span.context.trace_id
    assert int(parent_id, 16) == span.context.span_id


def test_a_retry_is_a_span_of_its_own() -> None:
    script = ScriptedUpstream(
        lambda n, body: Answer(503, error_body("down")) if n == 1 else Answer(body=chat_body())
    )
    with ServerThread(script) as server:
        retry = {"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 1}
        with running_gateway(config(server.url, retry=retry)) as gateway:
            body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert script.calls == 2
    spans = sorted(client_spans(), key=lambda s: s.start_time or 0)
    assert [status_of(s) for s in spans] == [503, 200]


def test_an_injected_fault_is_recorded_as_the_failure_the_router_saw(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    scripted, url = upstream
    with running_gateway(config(url, chaos={"enabled": True})) as gateway:
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "g", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-seawall-chaos": "http_error;status=503"},
        )
    assert response.status_code == 503
    assert scripted.calls == 0  # chaos answered below the span, at the wire
    [span] = client_spans()
    assert status_of(span) == 503


def test_off_by_default_no_spans_and_nothing_sent_upstream(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    scripted, url = upstream
    with running_gateway(config(url, telemetry=False)) as gateway:
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(gateway.url + "/v1/chat/completions", json=body).status_code == 200
    assert client_spans() == []
    assert "traceparent" not in scripted.headers[0]


def test_shutdown_exports_what_a_batching_provider_still_holds(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    _, url = upstream
    with running_gateway(config(url)) as gateway:
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(gateway.url + "/v1/chat/completions", json=body).status_code == 200
        assert BATCHED.get_finished_spans() == ()  # still queued in the processor
    [span] = [s for s in BATCHED.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert status_of(span) == 200
