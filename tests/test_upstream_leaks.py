"""Nothing internal reaches a client: hosts, IPs, library wording, key fragments.

Upstreams here answer exactly like the reports that found the leaks: a refused
connection to a loopback port, a DNS failure naming an internal host, a proxy's 500
page naming internal services, OpenAI's 401 quoting part of the gateway's provider
key. The client gets the deployment id, the failure class and a stable sentence; the
server log gets the detail beside the request id; `server.expose_upstream_errors`
restores the detail for trusted setups.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import Answer, ScriptedUpstream, chunk, error_body
from tests.services import free_port
from tests.support import ServerThread, running_gateway

PROVIDER_KEY = "sk-upstream-secret-key-1234567890XYZW"
INTERNAL = re.compile(r"127\.0\.0\.1|10\.3\.4\.5|\.internal|sk-upstr|XYZW|aiohttp|Errno|ssl:")
CHAT = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}


def config(api_base: str, expose: bool = False) -> dict[str, Any]:
    deployment = {
        "id": "backend",
        "provider": "openai",
        "model": "m",
        "api_base": api_base,
        "api_key": PROVIDER_KEY,
        "retry": {"attempts": 1},
        "timeouts": {"connect_ms": 1000, "ttft_ms": 2000, "total_ms": 3000},
    }
    return {
        "server": {"expose_upstream_errors": expose},
        "models": [{"name": "g", "deployments": [deployment]}],
    }


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    upstream = ScriptedUpstream()
    with ServerThread(upstream) as server:
        yield upstream, server


def ask(gateway: ServerThread, **extra: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json={**CHAT, **extra}, timeout=10)


def assert_clean(response: httpx.Response) -> str:
    message = response.json()["error"]["message"]
    assert not INTERNAL.search(message), message
    assert "backend" in message  # the deployment id is fine, and useful
    return str(message)


def logged(caplog: pytest.LogCaptureFixture, request_id: str) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if request_id in r.getMessage())


def test_connection_refused_names_no_host_or_ip(caplog: pytest.LogCaptureFixture) -> None:
    closed = free_port()
    with (
        running_gateway(config(f"http://127.0.0.1:{closed}/v1")) as gateway,
        caplog.at_level(logging.WARNING, logger="seawall"),
    ):
        response = ask(gateway)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_connect"
    assert (
        assert_clean(response) == "Deployment 'backend' failed: could not connect to its upstream."
    )
    detail = logged(caplog, response.headers["x-seawall-request-id"])
    assert f"127.0.0.1:{closed}" in detail or "Connection refused" in detail


def test_dns_failure_names_no_host(caplog: pytest.LogCaptureFixture) -> None:
    with (
        running_gateway(config("http://llm-backend.internal.invalid:8000/v1")) as gateway,
        caplog.at_level(logging.WARNING, logger="seawall"),
    ):
        response = ask(gateway)
    assert response.status_code == 502
    assert_clean(response)
    assert "llm-backend.internal.invalid" in logged(
        caplog, response.headers["x-seawall-request-id"]
    )


def test_an_upstream_500_body_is_not_relayed(
    scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    upstream, server = scripted
    page = "<html>upstream vector-db.prod.internal:6333 (10.3.4.5) is down</html>"
    upstream.script = lambda n, body: Answer(
        status=500, raw=page.encode(), content_type="text/html"
    )
    with (
        running_gateway(config(server.url + "/v1")) as gateway,
        caplog.at_level(logging.WARNING, logger="seawall"),
    ):
        response = ask(gateway)
    assert response.status_code == 502
    assert assert_clean(response).endswith("returned a server error (HTTP 500).")
    assert "vector-db.prod.internal" in logged(caplog, response.headers["x-seawall-request-id"])


def test_an_upstream_401_never_shows_the_gateways_key(scripted: Any) -> None:
    upstream, server = scripted
    message = (
        "Incorrect API key provided: sk-upstr********************XYZW. You can find your "
        "API key at https://platform.openai.com/account/api-keys."
    )
    upstream.script = lambda n, body: Answer(
        status=401, body=error_body(message, "invalid_request_error", "invalid_api_key")
    )
    with running_gateway(config(server.url + "/v1")) as gateway:
        response = ask(gateway)
        with pytest.raises(openai.AuthenticationError) as raised:
            openai.OpenAI(
                base_url=gateway.url + "/v1", api_key="x", max_retries=0
            ).chat.completions.create(**CHAT)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert_clean(response)
    assert "XYZW" not in str(raised.value)


def test_caller_errors_keep_the_providers_words_scrubbed_of_keys(scripted: Any) -> None:
    upstream, server = scripted
    message = (
        "Invalid 'temperature': 3 is greater than the maximum of 2 (request from key "
        f"{PROVIDER_KEY[:8]}..., org proxy at 10.3.4.5)"
    )
    upstream.script = lambda n, body: Answer(
        status=400,
        body={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "invalid_value",
            }
        },
    )
    with running_gateway(config(server.url + "/v1")) as gateway:
        response = ask(gateway, temperature=3)
    error = response.json()["error"]
    assert response.status_code == 400
    assert (error["code"], error["param"]) == ("invalid_value", "temperature")
    assert error["message"].startswith("Invalid 'temperature': 3 is greater than the maximum of 2")
    assert "sk-upstr" not in error["message"] and "10.3.4.5" not in error["message"]


def test_a_broken_stream_event_names_nothing_internal(scripted: Any) -> None:
    upstream, server = scripted
    upstream.script = lambda n, body: Answer(
        events=[chunk("a"), chunk("b"), chunk("c")], cut_after=2
    )
    with (
        running_gateway(config(server.url + "/v1")) as gateway,
        httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
        ) as response,
    ):
        text = "".join(response.iter_text())
    assert "stream_interrupted" in text
    assert "backend" in text
    assert not INTERNAL.search(text), text
    assert "peer closed" not in text


def test_expose_upstream_errors_restores_the_detail(scripted: Any) -> None:
    upstream, server = scripted
    upstream.script = lambda n, body: Answer(status=500, raw=b"vector-db.prod.internal:6333 down")
    with running_gateway(config(server.url + "/v1", expose=True)) as gateway:
        response = ask(gateway)
    assert "vector-db.prod.internal:6333" in response.json()["error"]["message"]
