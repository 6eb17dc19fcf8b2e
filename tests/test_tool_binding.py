"""A registered tool's contract binds only the requests that opt into it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, tool_call_body
from tests.support import ServerThread, running_gateway, sdk
from tools.binding import bind
from tools.config import ToolConfig
from tools.registry import ToolRegistry

REGISTERED_INPUT = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1}},
    "required": ["city"],
    "additionalProperties": False,
}
REGISTERED_OUTPUT = {
    "type": "object",
    "properties": {"temp": {"type": "number"}},
    "required": ["temp"],
}
#: The framework-docs shape: a client's own get_weather with its own schema.
CLIENT_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["location"],
}


def registry_tool(**extra: Any) -> dict[str, Any]:
    return {
        "name": "get_weather",
        "description": "The gateway's weather tool.",
        "input_schema": REGISTERED_INPUT,
        "output_schema": REGISTERED_OUTPUT,
        "mode": "enforce",
        **extra,
    }


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    scripted = ScriptedUpstream()
    with ServerThread(scripted) as server:
        yield scripted, server


def gateway_config(url: str, tool: dict[str, Any]) -> dict[str, Any]:
    deployment = {
        "id": "p",
        "provider": "openai",
        "model": "m",
        "api_base": url + "/v1",
        "retry": {"attempts": 1},
    }
    return {"models": [{"name": "g", "deployments": [deployment]}], "tools": [tool]}


def offered(parameters: dict[str, Any] | None) -> list[dict[str, Any]]:
    function: dict[str, Any] = {"name": "get_weather"}
    if parameters is not None:
        function["parameters"] = parameters
    return [{"type": "function", "function": function}]


def round_trip(result: str) -> list[dict[str, Any]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Oslo"}'},
    }
    return [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def post(gateway: ServerThread, **body: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json={"model": "g", **body}, timeout=10)


def test_a_clients_own_get_weather_round_trips_untouched(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        body=tool_call_body("get_weather", '{"location": "Oslo", "unit": "c"}')
    )
    with running_gateway(gateway_config(server.url, registry_tool())) as gateway:
        call = post(gateway, messages=round_trip("x")[:1], tools=offered(CLIENT_SCHEMA))
        scripted.script = lambda n, body: Answer(body=chat_body("It is sunny."))
        answer = post(gateway, messages=round_trip("Sunny, 21 C"), tools=offered(CLIENT_SCHEMA))
    assert call.status_code == 200
    arguments = call.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"location": "Oslo", "unit": "c"}'  # valid for the client's schema
    assert "x-seawall-tool-violations" not in call.headers
    assert "x-seawall-tool-repaired" not in call.headers
    assert scripted.calls == 2  # no repair round trip
    assert call.headers["x-seawall-tool-collision"] == "get_weather"
    # A plain-text result is fine: the registered output schema does not bind.
    assert answer.status_code == 200, answer.text
    assert scripted.requests[-1]["tools"][0]["function"]["parameters"] == CLIENT_SCHEMA


def test_offered_by_reference_binds_and_fills_in_the_contract(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("ok"))
    with running_gateway(gateway_config(server.url, registry_tool())) as gateway:
        ok = post(gateway, messages=round_trip('{"temp": 21}'), tools=offered(None))
        bad = post(gateway, messages=round_trip("Sunny, 21 C"), tools=offered(None))
    assert ok.status_code == 200
    sent = scripted.requests[0]["tools"][0]["function"]
    assert sent["parameters"] == REGISTERED_INPUT
    assert sent["description"] == "The gateway's weather tool."
    assert "x-seawall-tool-collision" not in ok.headers
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "tool_result_invalid"


def test_offering_exactly_the_registered_schema_binds(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("ok"))
    with running_gateway(gateway_config(server.url, registry_tool())) as gateway:
        client = sdk(gateway.url)
        with pytest.raises(openai.BadRequestError, match=r"rejected: .*not valid JSON"):
            client.chat.completions.create(
                model="g",
                messages=round_trip("not json"),  # type: ignore[arg-type]
                tools=offered(dict(REGISTERED_INPUT)),  # type: ignore[arg-type]
            )


def test_bind_always_applies_the_contract_to_any_schema(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("ok"))
    tool = registry_tool(bind="always")
    with running_gateway(gateway_config(server.url, tool)) as gateway:
        response = post(gateway, messages=round_trip("Sunny"), tools=offered(CLIENT_SCHEMA))
        no_tools = post(gateway, messages=round_trip("Sunny"))
    assert response.status_code == 400
    assert response.headers["x-seawall-tool-collision"] == "get_weather"
    assert no_tools.status_code == 400  # the name alone binds


def test_binding_rules_in_isolation() -> None:
    registry = ToolRegistry([ToolConfig(**registry_tool())])
    assert bind({"tools": offered(None)}, registry).bound == {"get_weather"}
    assert bind({"tools": offered(dict(REGISTERED_INPUT))}, registry).bound == {"get_weather"}
    reordered = dict(reversed(list(REGISTERED_INPUT.items())))
    assert bind({"tools": offered(reordered)}, registry).bound == {"get_weather"}
    other = bind({"tools": offered(CLIENT_SCHEMA)}, registry)
    assert other.bound == frozenset() and other.collisions == ("get_weather",)
    custom = [{"type": "custom", "custom": {"name": "get_weather"}}]
    assert bind({"tools": custom}, registry).bound == set()
    assert bind({}, registry).bound == set()
    # The legacy `functions` bind exactly as `tools` do.
    assert bind({"functions": [{"name": "get_weather"}]}, registry).bound == {"get_weather"}
    mismatched = [{"name": "get_weather", "parameters": CLIENT_SCHEMA}]
    assert bind({"functions": mismatched}, registry).collisions == ("get_weather",)
