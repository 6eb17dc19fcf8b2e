"""OpenTelemetry client spans around upstream calls (`telemetry.opentelemetry`).

The spans go to the global tracer provider, as in production under
`opentelemetry-instrument`; this module installs an SDK provider that keeps them in
memory. The gateway and the upstreams are real servers on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
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


def gateway_spans() -> list[ReadableSpan]:
    """The SERVER spans the gateway made itself."""
    return [
        s
        for s in EXPORTER.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.instrumentation_scope is not None
        and s.instrumentation_scope.name == "seawall"
    ]  # fmt: skip


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
    assert gateway_spans() == []
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


class ServerSpan:
    """What the ASGI instrumentation does for an operator who installs it: a SERVER
    span around each HTTP request, current while the app (and its completion hooks)
    run."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracer = trace.get_tracer("test-asgi")
        with tracer.start_as_current_span(scope["path"], kind=SpanKind.SERVER):
            await self.app(scope, receive, send)


def test_audit_decisions_are_events_on_the_server_span(
    upstream: tuple[ScriptedUpstream, str], tmp_path: Path
) -> None:
    from audit.keys import generate_keypair
    from gateway.app import create_app
    from gateway.config import parse_config

    _, url = upstream
    generate_keypair(tmp_path / "audit.key", tmp_path / "audit.pub")
    audit = {
        "enabled": True,
        "directory": str(tmp_path / "log"),
        "stream": "t",
        "signing_key_file": str(tmp_path / "audit.key"),
    }
    app = create_app(parse_config(config(url, audit=audit), "<test>"))
    with ServerThread(ServerSpan(app)) as gateway:
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(gateway.url + "/v1/chat/completions", json=body)
        assert response.status_code == 200
    # The operator's ASGI span, and the gateway's own inside it: the audit event goes
    # to the gateway's, current while the completion hooks run.
    [outer] = [s for s in EXPORTER.get_finished_spans() if s.name == "/v1/chat/completions"]
    [server] = gateway_spans()
    assert server.parent is not None and outer.context is not None
    assert server.parent.span_id == outer.context.span_id
    assert not [e for e in outer.events if e.name == "seawall.audit"]
    [event] = [e for e in server.events if e.name == "seawall.audit"]
    assert event.attributes is not None
    assert event.attributes["seawall.status"] == 200
    assert event.attributes["seawall.key"] == "local"
    [line] = [
        json.loads(line)
        for segment in (tmp_path / "log").glob("*/*.jsonl")
        for line in segment.read_bytes().splitlines()
        if b'"kind":"request"' in line
    ]
    assert server.context is not None
    assert line["trace_id"] == format(server.context.trace_id, "032x")
    assert line["request_id"] == response.headers["x-seawall-request-id"]


def test_the_gateway_makes_a_server_span_parent_of_its_client_spans(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    _, url = upstream
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with running_gateway(config(url)) as gateway:
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(
            gateway.url + "/v1/chat/completions", json=body, headers={"traceparent": caller}
        )
    assert response.status_code == 200
    [server] = gateway_spans()
    [client] = client_spans()
    assert server.name == "POST /v1/chat/completions"
    attributes = dict(server.attributes or {})
    assert attributes["seawall.tenant"] == "root"
    assert attributes["gen_ai.request.model"] == "g"
    assert attributes["seawall.model_group"] == "g"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes[DEPLOYMENT_ATTRIBUTE] == "primary"
    assert attributes["seawall.config_version"] == response.headers["x-seawall-config-version"]
    assert attributes["seawall.request_id"] == response.headers["x-seawall-request-id"]
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.usage.input_tokens"] > 0
    # The caller's trace continues through the gateway to the upstream call.
    assert server.context is not None and client.context is not None
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent is not None and server.parent.span_id == 0xB7AD6B7169203331
    assert client.parent is not None and client.parent.span_id == server.context.span_id


def test_a_failed_request_is_an_error_span_with_its_code(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    scripted, url = upstream
    scripted.script = lambda n, body: Answer(503, error_body("down"))
    with running_gateway(config(url)) as gateway:
        body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert response.status_code >= 500
    [server] = gateway_spans()
    attributes = dict(server.attributes or {})
    assert attributes["http.response.status_code"] == response.status_code
    assert attributes["error.type"] == response.json()["error"]["code"]
    assert server.status.status_code.name == "ERROR"
