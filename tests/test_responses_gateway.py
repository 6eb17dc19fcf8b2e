"""`/v1/responses` through the gateway, with the official openai SDK, over loopback.

The upstream is a scripted chat-completions server: what it receives shows that the
Responses request went through the chat stages (translated, the conversation of
`previous_response_id` included, guards and tool checks applied), and what the SDK
gets back shows the translation back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.servers.scripted import (
    Answer,
    ScriptedUpstream,
    chat_body,
    chunk,
    text_events,
    tool_call_body,
)
from tests.support import ServerThread, running_gateway

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}]


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    scripted = ScriptedUpstream(Answer(body=chat_body("Hello from upstream")))
    with ServerThread(scripted) as server:
        yield scripted, server


def config(url: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "id": "p",
        "provider": "openai",
        "model": "upstream-model",
        "api_base": url + "/v1",
        "retry": {"attempts": 1},
    }
    return {"models": [{"name": "g", "deployments": [deployment], **extra}]}


def client(gateway: ServerThread, key: str = "x", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=key, max_retries=0, default_headers=headers
    )


def test_create_and_continue_a_conversation(upstream: Any) -> None:
    scripted, server = upstream
    with running_gateway(config(server.url)) as gateway:
        sdk = client(gateway)
        first = sdk.responses.with_raw_response.create(
            model="g", input="Hi", instructions="Be brief."
        )
        response = first.parse()
        assert response.output_text == "Hello from upstream"
        assert first.headers["x-seawall-route"] == "g/p"
        assert response.usage is not None and response.usage.total_tokens == 7
        scripted.script = lambda n, body: Answer(body=chat_body("Second answer"))
        second = sdk.responses.create(model="g", input="And?", previous_response_id=response.id)
    assert second.output_text == "Second answer"
    assert second.previous_response_id == response.id
    sent = scripted.requests[-1]
    assert sent["model"] == "upstream-model"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == "Hello from upstream"
    assert scripted.requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_stream_events_and_the_final_response(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(events=text_events(["Str", "eam", "ed"]))
    with (
        running_gateway(config(server.url)) as gateway,
        client(gateway).responses.stream(model="g", input="Hi") as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert final.output_text == "Streamed"
    assert scripted.requests[0]["stream"] is True
    assert scripted.requests[0]["stream_options"] == {"include_usage": True}


def test_a_stream_that_breaks_raises_a_typed_error(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(
        events=[chunk("a"), chunk("b"), chunk("c")], cut_after=2
    )
    with (
        running_gateway(config(server.url)) as gateway,
        pytest.raises(openai.APIError),
        client(gateway).responses.stream(model="g", input="Hi") as stream,
    ):
        for _ in stream:
            pass


def test_function_calls_and_their_outputs(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=tool_call_body("get_weather", '{"city": "Oslo"}'))
    with running_gateway(config(server.url)) as gateway:
        sdk = client(gateway)
        response = sdk.responses.create(model="g", input="Weather in Oslo?", tools=TOOLS)
        (call,) = [item for item in response.output if item.type == "function_call"]
        assert (call.name, call.arguments) == ("get_weather", '{"city": "Oslo"}')
        scripted.script = lambda n, body: Answer(body=chat_body("It is 21 C in Oslo."))
        final = sdk.responses.create(
            model="g",
            previous_response_id=response.id,
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}
            ],
            tools=TOOLS,
        )
    assert final.output_text == "It is 21 C in Oslo."
    messages = scripted.requests[-1]["messages"]
    assert messages[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"temp": 21}'}


def test_an_invalid_function_call_is_repaired_like_a_chat_one(upstream: Any) -> None:
    scripted, server = upstream

    def script(n: int, body: dict[str, Any]) -> Answer:
        if n == 1:
            return Answer(body=tool_call_body("get_weather", '{"town": "Oslo"}'))
        return Answer(body=tool_call_body("get_weather", '{"city": "Oslo"}'))

    scripted.script = script
    enforced = {**config(server.url), "tool_policy": {"offered_mode": "enforce"}}
    with running_gateway(enforced) as gateway:
        raw = client(gateway).responses.with_raw_response.create(
            model="g", input="Weather?", tools=TOOLS
        )
    assert raw.headers["x-seawall-tool-repaired"] == "1"
    (call,) = [item for item in raw.parse().output if item.type == "function_call"]
    assert call.arguments == '{"city": "Oslo"}'


def test_structured_output_parses(upstream: Any) -> None:
    class Weather(BaseModel):
        city: str
        temp: float

    scripted, server = upstream
    scripted.script = lambda n, body: Answer(body=chat_body('{"city": "Oslo", "temp": 21.5}'))
    with running_gateway(config(server.url)) as gateway:
        parsed = client(gateway).responses.parse(model="g", input="Weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Oslo", temp=21.5)
    sent = scripted.requests[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather"


def test_the_prompt_guard_sees_the_whole_conversation(upstream: Any) -> None:
    scripted, server = upstream
    with running_gateway(config(server.url, max_prompt_tokens=60)) as gateway:
        sdk = client(gateway)
        first = sdk.responses.create(model="g", input="word " * 35)
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.responses.create(model="g", input="word " * 35, previous_response_id=first.id)
    assert raised.value.code == "context_length_exceeded"
    assert len(scripted.requests) == 1  # refused before the provider


def test_errors_are_typed(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config(server.url)) as gateway:
        sdk = client(gateway)
        with pytest.raises(openai.BadRequestError) as missing:
            sdk.responses.create(model="g", input="x", previous_response_id="resp_nope")
        with pytest.raises(openai.NotFoundError):
            sdk.responses.create(model="unknown", input="x")
        with pytest.raises(openai.BadRequestError) as builtin:
            sdk.responses.create(model="g", input="x", tools=[{"type": "web_search"}])
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve("resp_never")
    assert missing.value.code == "previous_response_not_found"
    assert builtin.value.param is not None


def test_chaos_applies_to_the_translated_request(upstream: Any) -> None:
    _, server = upstream
    with running_gateway({**config(server.url), "chaos": {"enabled": True}}) as gateway:
        sdk = client(gateway, **{"x-seawall-chaos": "http_error;status=503"})
        with pytest.raises(openai.InternalServerError) as raised:
            sdk.responses.create(model="g", input="x")
    assert raised.value.response.headers["x-seawall-chaos-injected"] == "http_error@p"


def test_stored_responses_belong_to_their_key(upstream: Any) -> None:
    _, server = upstream
    keys = [
        {"id": name, "key_sha256": hashlib.sha256(name.encode()).hexdigest()}
        for name in ("alice", "bob")
    ]
    with running_gateway({**config(server.url), "keys": keys}) as gateway:
        alice, bob = client(gateway, "alice"), client(gateway, "bob")
        response = alice.responses.create(model="g", input="secret")
        assert alice.responses.retrieve(response.id).id == response.id
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(response.id)
        with pytest.raises(openai.BadRequestError):
            bob.responses.create(model="g", input="x", previous_response_id=response.id)
        unstored = alice.responses.create(model="g", input="x", store=False)
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(unstored.id)
        alice.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(response.id)
