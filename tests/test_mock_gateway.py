"""The mock behind the gateway: what a newcomer's first requests to the embedded
default config get (its model group `demo` is served by in-process mocks). The
gateway's own stages (tool-call checks, the Responses translation, the stream
relay) must pass the mock's answers on valid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from common.headers import FLAGS_HEADER, VIOLATIONS_HEADER
from gateway.app import create_app
from gateway.config import load_config
from tests.support import ServerThread, sdk


class Forecast(BaseModel):
    city: str
    celsius: float
    summary: str | None


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            },
            "required": ["city", "country"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with ServerThread(create_app(load_config(None))) as server:
        yield sdk(server.url)


def test_an_agent_loop_through_the_gateway_ends(client: openai.OpenAI) -> None:
    messages: list[Any] = list(ASK)
    for _ in range(3):
        response = client.chat.completions.with_raw_response.create(
            model="demo", messages=messages, tools=[WEATHER]
        )
        # The gateway checks each call against the offered schema (mode `warn` by
        # default): the mock's arguments pass, `pattern` included.
        assert VIOLATIONS_HEADER not in response.headers
        assert FLAGS_HEADER not in response.headers
        message = response.parse().choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        messages.extend(
            {"role": "tool", "tool_call_id": call.id, "content": "4 degrees"}
            for call in message.tool_calls
        )
    assert message.content == "The tool returned: 4 degrees"


def test_structured_output_through_chat_and_responses(client: openai.OpenAI) -> None:
    chat = client.chat.completions.parse(model="demo", messages=ASK, response_format=Forecast)
    assert isinstance(chat.choices[0].message.parsed, Forecast)
    response = client.responses.parse(model="demo", input="Weather in Oslo?", text_format=Forecast)
    assert isinstance(response.output_parsed, Forecast)


def test_n_choices_through_the_gateway(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="demo", messages=ASK, n=2)
    assert [c.index for c in plain.choices] == [0, 1]
    with client.chat.completions.stream(model="demo", messages=ASK, tools=[WEATHER], n=2) as s:
        streamed = s.get_final_completion()
    calls = [c.message.tool_calls[0] for c in streamed.choices if c.message.tool_calls]
    assert len(calls) == 2 and calls[0].id != calls[1].id
    assert calls[0].function.arguments == calls[1].function.arguments


def test_legacy_functions_through_the_gateway(client: openai.OpenAI) -> None:
    choice = client.chat.completions.create(
        model="demo", messages=ASK, functions=[WEATHER["function"]]
    ).choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"
