"""A streamed answer to a request that offered tools is held until it shows what it
is; when the upstream stream breaks while it is held, no byte has reached the client,
so the client gets the upstream failure as a real error response (status, OpenAI
envelope, route), never a 500. Real gateway, real sockets, faults injected by chaos
mode or by a scripted upstream that drops the connection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import Answer, ScriptedUpstream, tool_call_events
from tests.support import ServerThread, running_gateway, sdk

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OFFERED = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}]

CONFIG = {
    "models": [
        {
            "name": "g",
            "deployments": [
                {
                    "id": "d",
                    "provider": "mock",
                    "model": "mock-gpt",
                    "retry": {"attempts": 1},
                    "breaker": {"consecutive_failures": 10_000},
                    "timeouts": {"connect_ms": 200, "ttft_ms": 400, "total_ms": 1500},
                    "mock": {"chunk_delay_ms": 1, "stream_chunks": 6},
                }
            ],
        }
    ],
    "chaos": {"enabled": True},
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway(CONFIG) as server:
        yield server


def ask(gateway: ServerThread, chaos: str, **body: Any) -> httpx.Response:
    payload = {"model": "g", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**payload, **body},
        headers={"x-seawall-chaos": chaos},
        timeout=30,
    )


def assert_envelope(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return dict(error)


@pytest.mark.parametrize(
    ("fault", "status", "code", "detail"),
    [
        ("stream_cut;after_events=2", 502, "upstream_stream_broken", "peer closed connection"),
        ("sse_truncated", 502, "upstream_stream_broken", "before [DONE]"),
        ("truncated", 502, "upstream_stream_broken", "peer closed connection"),
        ("stall;ms=3000", 502, "upstream_stream_broken", "stalled"),
    ],
)
def test_a_held_stream_that_breaks_is_the_upstream_failure_not_a_500(
    gateway: ServerThread,
    fault: str,
    status: int,
    code: str,
    detail: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="seawall"):
        response = ask(gateway, fault, tools=OFFERED)
    assert response.status_code == status
    error = assert_envelope(response)
    assert (error["type"], error["code"]) == ("server_error", code)
    assert error["message"] == "Deployment 'd' failed: its upstream stream broke off."
    assert detail in caplog.text and response.headers["x-seawall-request-id"] in caplog.text
    # The same hop rendering the router uses for a failed attempt.
    assert response.headers["x-seawall-route"] == f"g/d!{code.removeprefix('upstream_')}"
    assert response.headers["x-seawall-deployment"] == "d"
    assert response.headers["x-seawall-chaos-injected"] == f"{fault.split(';')[0]}@d"


@pytest.mark.parametrize("fault", ["stream_cut;after_events=2", "sse_truncated"])
def test_without_tools_the_same_fault_still_ends_the_stream_with_an_error_event(
    gateway: ServerThread, fault: str
) -> None:
    # Unheld streams are relayed at once: the status is long sent when they break.
    response = ask(gateway, fault)
    assert response.status_code == 200
    assert '"code":"stream_interrupted"' in response.text


def test_the_openai_sdk_sees_a_typed_error_for_a_broken_tool_call_stream() -> None:
    arguments = '{"city": "Oslo"}'
    model = ScriptedUpstream(Answer(events=tool_call_events("get_weather", arguments), cut_after=2))
    with ServerThread(model) as upstream:
        config = {
            "models": [
                {
                    "name": "g",
                    "deployments": [
                        {
                            "id": "m",
                            "provider": "openai",
                            "model": "m",
                            "api_base": upstream.url + "/v1",
                            "api_key": "sk-x",
                            "retry": {"attempts": 1},
                        }
                    ],
                }
            ]
        }
        with running_gateway(config) as gateway, pytest.raises(openai.APIStatusError) as info:
            sdk(gateway.url).chat.completions.create(
                model="g",
                messages=[{"role": "user", "content": "Weather in Oslo?"}],
                tools=OFFERED,  # type: ignore[arg-type]
                stream=True,
            )
    assert info.value.status_code == 502
    assert info.value.code == "upstream_stream_broken"
    assert info.value.response.headers["x-seawall-route"] == "g/m!stream_broken"
    assert model.calls == 1
