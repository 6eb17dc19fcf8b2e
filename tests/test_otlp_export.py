"""The gateway's spans exported over OTLP/HTTP to a collector: here a small sink in
the test that decodes the protobuf posted to /v1/traces.

The gateway is a real `seawall serve` process whose global tracer provider has an
SDK `OTLPSpanExporter` pointed at the sink (what `opentelemetry-instrument` sets up
from `OTEL_*` variables). Needs `opentelemetry-exporter-otlp-proto-http` (a dev
dependency, which brings `opentelemetry-proto`).
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.servers.scripted import Answer, ScriptedUpstream, chat_body
from tests.support import SeawallProcess, ServerThread, write_config

#: Runs `seawall` with an SDK provider exporting every span at once over OTLP/HTTP
#: (the endpoint from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
LAUNCHER = """
import sys
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Sink:
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its scope."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.content_types: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                sink.content_types.append(self.headers.get("content-type", ""))
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        sink.spans.extend((scope.scope.name, span) for span in scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[str, Span]]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.spans)


@pytest.fixture
def sink() -> Iterator[Sink]:
    one = Sink()
    thread = threading.Thread(target=one.server.serve_forever, daemon=True)
    thread.start()
    yield one
    one.server.shutdown()
    one.server.server_close()


def attributes(span: Span) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


def test_the_server_span_and_its_client_span_reach_an_otlp_collector(
    sink: Sink, tmp_path: Path
) -> None:
    upstream = ScriptedUpstream(Answer(body=chat_body()))
    with ServerThread(upstream) as server:
        deployment = {
            "id": "primary",
            "provider": "openai",
            "model": "m",
            "api_base": server.url + "/v1",
            "api_key": "sk-test",
        }
        config = {
            "models": [{"name": "g", "deployments": [deployment]}],
            "telemetry": {"opentelemetry": True},
        }
        path = write_config(tmp_path / "seawall.yaml", config)
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.url + "/v1/traces"}
        process = SeawallProcess(["serve", "--config", str(path), "--port", "0"], env=env)
        process.args = [sys.executable, "-c", LAUNCHER, *process.args[3:]]
        process.start()
        try:
            process.wait_ready()
            body = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(process.url + "/v1/chat/completions", json=body)
            assert response.status_code == 200
            spans = sink.wait_for(2)
        finally:
            process.stop(drain=False)
    assert set(sink.content_types) == {"application/x-protobuf"}
    [server_span] = [s for scope, s in spans if scope == "seawall"]
    [client_span] = [s for _, s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert server_span.kind == Span.SPAN_KIND_SERVER
    assert server_span.name == "POST /v1/chat/completions"
    server_attributes = attributes(server_span)
    assert server_attributes["seawall.tenant"] == "root"
    assert server_attributes["gen_ai.request.model"] == "g"
    assert server_attributes["seawall.deployment"] == "primary"
    assert server_attributes["http.response.status_code"] == 200
    version = response.headers["x-seawall-config-version"]
    assert server_attributes["seawall.config_version"] == version
    assert attributes(client_span)["seawall.deployment"] == "primary"
    # One trace: the upstream call is the server span's child.
    assert client_span.trace_id == server_span.trace_id
    assert client_span.parent_span_id == server_span.span_id
