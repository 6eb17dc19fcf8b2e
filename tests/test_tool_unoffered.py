"""A model that calls a tool when the request offered none: an `unknown_tool`
violation in `tool_policy.offered_mode`, complete replies and streams alike, while
a plain chat passes untouched. Real gateway, scripted model, loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.servers.scripted import (
    Answer,
    Script,
    ScriptedUpstream,
    chat_body,
    text_events,
    tool_call_body,
    tool_call_events,
)
from tests.support import ServerThread, running_gateway

CALL = tool_call_body("delete_everything", "{}")
ENTRY = "delete_everything:unknown_tool:name"


@contextmanager
def gateway(model: Script | Answer, mode: str) -> Iterator[tuple[ServerThread, ScriptedUpstream]]:
    upstream = ScriptedUpstream(model)
    with ServerThread(upstream) as server:
        deployment = {
            "id": "m",
            "provider": "openai",
            "model": "m",
            "api_base": server.url + "/v1",
            "api_key": "sk-x",
        }
        config = {
            "models": [{"name": "g", "deployments": [deployment]}],
            "tool_policy": {"offered_mode": mode},
        }
        with running_gateway(config) as running:
            yield running, upstream


def chat(gateway: ServerThread, **body: Any) -> httpx.Response:
    payload = {"model": "g", "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(gateway.url + "/v1/chat/completions", json=payload, timeout=30)


def test_warn_passes_the_call_with_a_violation_header() -> None:
    with gateway(Answer(body=CALL), "warn") as (server, model):
        response = chat(server)
    assert response.status_code == 200
    assert response.headers["x-seawall-tool-violations"] == ENTRY
    assert model.calls == 1


def test_enforce_repairs_then_refuses_with_a_502() -> None:
    with gateway(Answer(body=CALL), "enforce") as (server, model):
        response = chat(server)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "tool_call_invalid"
    assert "delete_everything" in error["message"] and "did not offer" in error["message"]
    assert model.calls == 2  # one repair attempt
    assert model.requests[1]["messages"][-1]["role"] == "tool"


def test_enforce_passes_a_repaired_answer() -> None:
    def then_text(n: int, body: dict[str, Any]) -> Answer:
        return Answer(body=CALL if n == 1 else chat_body("no tools needed"))

    with gateway(then_text, "enforce") as (server, _):
        response = chat(server)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "no tools needed"
    assert response.headers["x-seawall-tool-repaired"] == "1"


def test_off_lets_the_call_through_unchecked() -> None:
    with gateway(Answer(body=CALL), "off") as (server, _):
        response = chat(server)
    assert response.status_code == 200
    assert "x-seawall-tool-violations" not in response.headers


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_a_plain_chat_passes_untouched(mode: str) -> None:
    def plain(n: int, body: dict[str, Any]) -> Answer:
        if body.get("stream"):
            return Answer(events=text_events(["hel", "lo"]))
        return Answer(body=chat_body("hello"))

    with gateway(plain, mode) as (server, model):
        response = chat(server)
        streamed = chat(server, stream=True)
    assert response.status_code == 200 and "x-seawall-tool-violations" not in response.headers
    assert response.json()["choices"][0]["message"]["content"] == "hello"
    assert streamed.text.endswith("data: [DONE]\n\n") and "error" not in streamed.text
    assert model.calls == 2


def test_a_streamed_call_in_warn_mode_ends_with_a_violation_comment() -> None:
    events = Answer(events=tool_call_events("delete_everything", "{}"))
    with gateway(events, "warn") as (server, _):
        response = chat(server, stream=True)
    assert response.status_code == 200
    assert f": x-seawall-tool-violations: {ENTRY}\n\n" in response.text
    assert response.text.endswith("data: [DONE]\n\n")


def test_a_streamed_call_in_enforce_mode_ends_with_an_error_event() -> None:
    events = text_events(["Sure."])[:-1] + tool_call_events("delete_everything", "{}")
    with gateway(Answer(events=events), "enforce") as (server, _):
        response = chat(server, stream=True)
    assert response.status_code == 200  # relayed at once: nothing is held for plain chats
    assert "event: error" in response.text and '"code":"tool_call_invalid"' in response.text
    assert "data: [DONE]" not in response.text
