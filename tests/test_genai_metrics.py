"""GenAI metrics (OpenTelemetry's GenAI semantic conventions) after real requests
through a gateway with the mock provider: names, labels and bucket boundaries per
the conventions, counted on completion."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.metrics import TOKEN_BUCKETS
from tests.support import ServerThread, gateway_config, mock_group, running_gateway

HI = [{"role": "user", "content": "hi there"}]
LABELS = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "mock",
    "gen_ai_request_model": "demo",
    "gen_ai_response_model": "mock-gpt",
}


def scrape(url: str) -> dict[str, list[Sample]]:
    text = httpx.get(url + "/metrics").text
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def one(samples: list[Sample], name: str, **labels: str) -> float:
    [value] = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return value


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[ServerThread, list[dict[str, int]]]]:
    usages = []
    with running_gateway(gateway_config(mock_group())) as gw:
        for _ in range(3):
            reply = httpx.post(
                gw.url + "/v1/chat/completions", json={"model": "demo", "messages": HI}
            )
            assert reply.status_code == 200
            usages.append(reply.json()["usage"])
        body = {
            "model": "demo",
            "messages": HI,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            stream.read()
        missing = httpx.post(
            gw.url + "/v1/chat/completions", json={"model": "nope", "messages": HI}
        )
        assert missing.status_code == 404
        yield gw, usages


def test_token_usage_counts_input_and_output_tokens(
    gateway: tuple[ServerThread, list[dict[str, int]]],
) -> None:
    gw, usages = gateway
    samples = scrape(gw.url)["gen_ai_client_token_usage"]
    name = "gen_ai_client_token_usage"
    assert one(samples, name + "_count", **LABELS, gen_ai_token_type="input") == 4
    assert one(samples, name + "_count", **LABELS, gen_ai_token_type="output") == 4
    unary_input = sum(u["prompt_tokens"] for u in usages)
    assert one(samples, name + "_sum", **LABELS, gen_ai_token_type="input") > unary_input
    # The conventions' buckets: 1, 4, 16, ... 67108864.
    edges = [
        s.labels["le"] for s in samples
        if s.name == name + "_bucket" and s.labels["gen_ai_token_type"] == "input"
    ]  # fmt: skip
    assert [float(e) for e in edges] == [*TOKEN_BUCKETS, float("inf")]
    assert edges[:3] == ["1.0", "4.0", "16.0"] and edges[-2] == "6.7108864e+07"


def test_operation_duration_counts_every_request_with_its_error_type(
    gateway: tuple[ServerThread, list[dict[str, int]]],
) -> None:
    gw, _ = gateway
    samples = scrape(gw.url)["gen_ai_client_operation_duration_seconds"]
    name = "gen_ai_client_operation_duration_seconds"
    assert one(samples, name + "_count", **LABELS, error_type="") == 4
    assert 0 < one(samples, name + "_sum", **LABELS, error_type="") < 10
    # An unknown model names no group: not a GenAI operation the gateway served.
    assert {s.labels["gen_ai_request_model"] for s in samples} == {"demo"}
    edges = [s.labels["le"] for s in samples if s.name == name + "_bucket"]
    assert edges[:3] == ["0.01", "0.02", "0.04"] and edges[-2:] == ["81.92", "+Inf"]


def test_a_stream_counts_time_to_first_token_and_per_output_token(
    gateway: tuple[ServerThread, list[dict[str, int]]],
) -> None:
    gw, _ = gateway
    families = scrape(gw.url)
    ttft = families["gen_ai_server_time_to_first_token_seconds"]
    assert one(ttft, "gen_ai_server_time_to_first_token_seconds_count", **LABELS) == 1
    tpot = families["gen_ai_server_time_per_output_token_seconds"]
    assert one(tpot, "gen_ai_server_time_per_output_token_seconds_count", **LABELS) == 1


def test_an_error_is_counted_with_its_code() -> None:
    group = mock_group(
        "demo", {"id": "m", "provider": "mock", "model": "mock-gpt", "retry": {"attempts": 1}}
    )
    with running_gateway(gateway_config(group, chaos={"enabled": True})) as gw:
        reply = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "demo", "messages": HI},
            headers={"x-seawall-chaos": "http_error;status=503"},
        )
        samples = scrape(gw.url)["gen_ai_client_operation_duration_seconds"]
    assert reply.status_code >= 400
    code = reply.json()["error"]["code"]
    name = "gen_ai_client_operation_duration_seconds_count"
    assert one(samples, name, **LABELS, error_type=code) == 1


def test_the_genai_families_are_the_roots_only() -> None:
    from tests.isolation import call, chat, two_tenants

    with running_gateway(two_tenants()) as gw:
        assert chat(gw.url, "red-user").status_code == 200

        def families(key: str) -> set[str]:
            text = call(gw.url, key, "GET", "/metrics").text
            return {f.name for f in text_string_to_metric_families(text)}

        genai = {"gen_ai_client_token_usage", "gen_ai_client_operation_duration_seconds"}
        assert families("root-admin") >= genai
        assert families("red-all").isdisjoint(genai)
