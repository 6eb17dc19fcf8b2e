"""Which provider response headers a client sees: the request id and rate-limit state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from common.headers import relayed_name
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, error_body, text_events
from tests.support import ServerThread, running_gateway

PROVIDER_HEADERS = {
    "x-request-id": "req_provider_123",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-tokens": "6ms",
    "openai-processing-ms": "42",
    "anthropic-ratelimit-requests-remaining": "49",
    "set-cookie": "__cf_bm=secret; path=/",
    "openai-organization": "org-gateway-account",
    "openai-project": "proj_internal",
    "x-envoy-upstream-service-time": "41",
    "via": "1.1 internal-proxy.prod",
}
RELAYED = {
    "x-request-id": "req_provider_123",
    "x-upstream-ratelimit-limit-requests": "500",
    "x-upstream-ratelimit-remaining-requests": "499",
    "x-upstream-ratelimit-reset-tokens": "6ms",
    "x-upstream-openai-processing-ms": "42",
    "x-upstream-anthropic-ratelimit-requests-remaining": "49",
}
NEVER = ("set-cookie", "openai-organization", "openai-project", "via", "x-envoy-upstream")


@pytest.fixture
def gateway() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    upstream = ScriptedUpstream()
    with ServerThread(upstream) as server:
        deployment = {
            "id": "p",
            "provider": "openai",
            "model": "m",
            "api_base": server.url + "/v1",
            "api_key": "sk-gateway-provider-key",
            "retry": {"attempts": 1},
        }
        config = {"models": [{"name": "g", "deployments": [deployment]}]}
        with running_gateway(config) as gateway:
            yield upstream, gateway


def check(headers: httpx.Headers) -> None:
    for name, value in RELAYED.items():
        assert headers.get(name) == value, name
    for name in headers:
        assert not name.startswith(NEVER), name
        assert "sk-gateway" not in headers[name]


def post(gateway: ServerThread, **extra: Any) -> httpx.Response:
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=10)


def test_relayed_on_a_reply(gateway: Any) -> None:
    upstream, server = gateway
    upstream.script = lambda n, body: Answer(body=chat_body(), headers=PROVIDER_HEADERS)
    response = post(server)
    assert response.status_code == 200
    check(response.headers)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="g", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.request_id == "req_provider_123"
    assert reply.headers["x-seawall-request-id"] != "req_provider_123"


def test_relayed_on_a_stream(gateway: Any) -> None:
    upstream, server = gateway
    upstream.script = lambda n, body: Answer(
        events=text_events(["a", "b"]), headers=PROVIDER_HEADERS
    )
    response = post(server, stream=True)
    assert response.status_code == 200
    check(response.headers)


def test_relayed_on_an_upstream_429(gateway: Any) -> None:
    upstream, server = gateway
    upstream.script = lambda n, body: Answer(
        status=429,
        body=error_body("Rate limit reached", "requests", "rate_limit_exceeded"),
        headers={**PROVIDER_HEADERS, "retry-after": "2"},
    )
    response = post(server)
    assert response.status_code == 429
    check(response.headers)
    assert response.headers["x-upstream-retry-after"] == "2"
    assert response.headers["retry-after"] == "2"  # the gateway's own, from the same value


@pytest.mark.parametrize(
    "name",
    ["connection", "keep-alive", "transfer-encoding", "set-cookie", "authorization", "server"],
)
def test_hop_by_hop_and_private_headers_are_never_relayed(name: str) -> None:
    assert relayed_name(name) is None
