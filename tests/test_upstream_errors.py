"""Upstream failures reach the client as the error table says (DESIGN.md section 4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, error_body, text_events
from tests.support import ServerThread, bound_socket, running_gateway


def deployment(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "primary",
        "provider": "openai",
        "model": "upstream-model",
        "api_base": url + "/v1",
        "api_key": "sk-upstream-secret",
        **extra,
    }


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    scripted = ScriptedUpstream()
    with ServerThread(scripted) as server:
        yield scripted, server


def gateway_for(url: str, **extra: Any) -> Any:
    return running_gateway(
        {"models": [{"name": "chat", "deployments": [deployment(url, **extra)]}]}
    )


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def ask(gateway: ServerThread, **extra: Any) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


def test_request_goes_upstream_with_model_mapped_and_key_replaced(upstream: Any) -> None:
    scripted, server = upstream
    with gateway_for(server.url) as gateway:
        response = sdk(gateway.url).chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            temperature=0.2,
            extra_body={"custom_provider_field": {"keep": True}},
        )
    assert response.choices[0].message.content == "scripted reply"
    assert response.model == "scripted-model"  # the upstream's answer, unchanged
    sent = scripted.requests[0]
    assert sent["model"] == "upstream-model"
    assert sent["temperature"] == 0.2
    assert sent["custom_provider_field"] == {"keep": True}
    assert scripted.headers[0]["authorization"] == "Bearer sk-upstream-secret"


@pytest.mark.parametrize(
    ("status", "client_status", "code"),
    [
        (500, 502, "upstream_server"),
        (502, 502, "upstream_server"),
        (503, 503, "upstream_server"),
        (529, 503, "upstream_server"),
        (504, 502, "upstream_server"),
    ],
)
def test_server_errors_name_the_deployment(
    upstream: Any, status: int, client_status: int, code: str
) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(status, error_body("provider melted"))
    with gateway_for(server.url) as gateway:
        response = ask(gateway)
    assert response.status_code == client_status
    error = response.json()["error"]
    assert error["code"] == code
    # The deployment and the failure class, never the upstream's own words.
    assert error["message"] == (
        f"Deployment 'primary' failed: its upstream returned a server error (HTTP {status})."
    )
    assert response.headers["x-seawall-deployment"] == "primary"
    # retry.attempts defaults to 2: the same deployment, twice, then the error
    assert response.headers["x-seawall-route"] == f"chat/primary!{status} > chat/primary!{status}"
    assert scripted.calls == 2
    assert response.headers["x-should-retry"] == "false"


def test_sdk_sees_typed_exceptions(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(503, error_body("overloaded"))
    with gateway_for(server.url) as gateway, pytest.raises(openai.InternalServerError) as info:
        sdk(gateway.url).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503


def test_rate_limit_passes_retry_after(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        429, error_body("slow down", "rate_limit_error"), headers={"retry-after-ms": "1500"}
    )
    with gateway_for(server.url) as gateway:
        response = ask(gateway)
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["retry-after"] == "2"


def test_client_errors_keep_the_providers_message(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        400,
        {
            "error": {
                "message": "Invalid value for 'top_p'",
                "type": "invalid_request_error",
                "param": "top_p",
                "code": "invalid_value",
            }
        },
    )
    with gateway_for(server.url) as gateway, pytest.raises(openai.BadRequestError) as info:
        sdk(gateway.url).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == "Invalid value for 'top_p'"
    assert info.value.param == "top_p" and info.value.code == "invalid_value"


def test_context_length_error_is_400_with_code(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        400,
        error_body("This model's maximum context length is 8192 tokens", "invalid_request_error"),
    )
    with gateway_for(server.url) as gateway:
        response = ask(gateway)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("raw", [b"<html>oops</html>", b'{"id": "trunc', b"[]"])
def test_invalid_upstream_body_is_502(upstream: Any, raw: bytes) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(200, raw=raw)
    with gateway_for(server.url) as gateway:
        response = ask(gateway)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_bad_response"


def test_connection_refused_is_502() -> None:
    closed = bound_socket()
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with gateway_for(f"http://127.0.0.1:{port}") as gateway:
        response = ask(gateway)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_connect" and "'primary'" in error["message"]


def test_slow_upstream_is_504_within_total_timeout(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body(), delay=2.0)
    with gateway_for(server.url, timeouts={"total_ms": 300}) as gateway:
        response = ask(gateway)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_stream_error_before_first_byte_keeps_its_status(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(503, error_body("busy"))
    with gateway_for(server.url) as gateway:
        response = ask(gateway, stream=True)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"


def test_stream_slow_first_token_is_504(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(events=text_events(["a"]), delay=2.0)
    with gateway_for(server.url, timeouts={"ttft_ms": 200}) as gateway:
        response = ask(gateway, stream=True)
    assert response.status_code == 504


def test_stream_cut_mid_way_ends_with_an_error_event(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        events=text_events(["one ", "two ", "three"]), cut_after=2
    )
    with gateway_for(server.url) as gateway:
        stream = sdk(gateway.url).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], stream=True
        )
        received: list[str | None] = []

        def consume() -> None:
            for chunk in stream:
                received.append(chunk.choices[0].delta.content)

        with pytest.raises(openai.APIError) as info:
            consume()
    assert received == ["one ", "two "]
    assert "'primary'" in info.value.message
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "stream_interrupted"


def test_stream_without_done_is_reported(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(events=text_events(["only"]), done=False)
    with gateway_for(server.url) as gateway:
        response = ask(gateway, stream=True)
    assert response.status_code == 200
    assert response.text.count("data: ") == 3  # 2 relayed events + the error event
    assert response.text.rstrip().endswith("}")
    assert "event: error" in response.text and "stream broke off" in response.text


def test_stream_with_wrong_content_type_is_502(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body())  # JSON for a stream request
    with gateway_for(server.url) as gateway:
        response = ask(gateway, stream=True)
    assert response.status_code == 502


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "upstream_auth_failed"), (403, "upstream_forbidden"), (404, "upstream_not_found")],
)
def test_deployment_config_problems_keep_status_but_say_whose_problem(
    upstream: Any, status: int, code: str
) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        status, error_body("Incorrect API key provided", "invalid_request_error")
    )
    with gateway_for(server.url) as gateway:
        response = ask(gateway)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert "Deployment 'primary'" in error["message"]
    assert "not a problem with your request or key" in error["message"]
    # What the provider said about the gateway's own key stays in the server log.
    assert "Incorrect API key provided" not in error["message"]
