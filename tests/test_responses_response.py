"""Chat completions translated to Response objects (`responses.response`).

Every produced object is validated with the openai SDK's own `Response` model.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from responses.errors import BadUpstreamReply
from responses.ids import new_response_id
from responses.request import ChatTranslation, to_chat
from responses.response import from_chat, usage
from routing.config import MockSettings
from routing.mock.llm import MockLLM

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}]


def chat_reply(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model-2025",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        **extra,
    }


def translate(**body: Any) -> ChatTranslation:
    body.setdefault("model", "gpt-4o")
    body.setdefault("input", "What is the weather?")
    return to_chat(body)


def respond(
    reply: dict[str, Any], translation: ChatTranslation | None = None
) -> tuple[dict, Response]:
    translation = translation or translate()
    data = from_chat(reply, translation, new_response_id(), 1_700_000_000.0)
    orjson.dumps(data)  # it is JSON as it stands
    return data, Response.model_validate(data)


def test_text_reply() -> None:
    data, response = respond(chat_reply({"role": "assistant", "content": "Sunny, 21C."}))
    assert response.output_text == "Sunny, 21C."
    assert response.status == "completed"
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.created_at == 1_700_000_000.0
    assert response.model == "upstream-model-2025"
    assert response.error is None and response.incomplete_details is None
    [item] = data["output"]
    assert item["id"].startswith("msg_") and item["role"] == "assistant"
    assert item["status"] == "completed"


def test_tool_calls_become_function_call_items() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    }
    data, response = respond(chat_reply(message, "tool_calls"), translate(tools=TOOLS))
    assert response.output_text == ""
    assert [(item.type, item.call_id, item.name, item.arguments) for item in response.output] == [  # type: ignore[union-attr]
        ("function_call", "call_a", "get_weather", '{"city":"Paris"}'),
        ("function_call", "call_b", "get_weather", '{"city":"Rome"}'),
    ]
    assert all(item["id"].startswith("fc_") for item in data["output"])
    assert response.status == "completed"


def test_text_then_calls_keeps_chat_order() -> None:
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    }
    _, response = respond(chat_reply(message, "tool_calls"), translate(tools=TOOLS))
    assert [item.type for item in response.output] == ["message", "function_call"]
    assert response.output_text == "Checking."


def test_a_call_without_id_gets_one_and_object_arguments_become_json() -> None:
    message = {
        "role": "assistant",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        ],
    }
    data, _ = respond(chat_reply(message, "tool_calls"), translate(tools=TOOLS))
    assert data["output"][0]["call_id"].startswith("call_")
    assert orjson.loads(data["output"][0]["arguments"]) == {"city": "Oslo"}


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_cut_short_replies_are_incomplete(finish: str, reason: str) -> None:
    data, response = respond(chat_reply({"role": "assistant", "content": "It is sunn"}, finish))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == reason
    assert data["output"][-1]["status"] == "incomplete"
    assert response.output_text == "It is sunn"


def test_only_the_last_item_of_an_incomplete_reply_is_incomplete() -> None:
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"ci'},
            }
        ],
    }
    data, _ = respond(chat_reply(message, "length"), translate(tools=TOOLS))
    assert [item["status"] for item in data["output"]] == ["completed", "incomplete"]


def test_refusal_is_a_refusal_part() -> None:
    data, response = respond(
        chat_reply({"role": "assistant", "content": None, "refusal": "I can't help."})
    )
    assert data["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    assert response.output_text == ""


def test_an_empty_reply_is_an_empty_message() -> None:
    data, response = respond(chat_reply({"role": "assistant", "content": ""}))
    assert [item["type"] for item in data["output"]] == ["message"]
    assert response.output_text == ""


def test_list_content_is_joined() -> None:
    content = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    _, response = respond(chat_reply({"role": "assistant", "content": content}))
    assert response.output_text == "ab"


def test_usage_is_mapped() -> None:
    chat_usage = {
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 8},
    }
    _, response = respond(chat_reply({"role": "assistant", "content": "x"}, usage=chat_usage))
    assert response.usage is not None
    assert response.usage.input_tokens == 100
    assert response.usage.output_tokens == 20
    assert response.usage.total_tokens == 120
    assert response.usage.input_tokens_details.cached_tokens == 64
    assert response.usage.output_tokens_details.reasoning_tokens == 8


def test_usage_edge_cases() -> None:
    assert usage(None) is None
    minimal = usage({"prompt_tokens": 3, "completion_tokens": 4})
    assert minimal is not None and minimal["total_tokens"] == 7
    assert minimal["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    odd = usage({"prompt_tokens": -1, "completion_tokens": True, "total_tokens": "9"})
    assert odd is not None and (odd["input_tokens"], odd["output_tokens"], odd["total_tokens"]) == (
        0,
        0,
        0,
    )
    _, response = respond(chat_reply({"role": "assistant", "content": "x"}))
    assert response.usage is None


@pytest.mark.parametrize(
    "reply",
    [
        {"choices": []},
        {"choices": "nope"},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
        chat_reply(
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}
        ),
        chat_reply({"role": "assistant", "tool_calls": ["c"]}),
    ],
)
def test_unreadable_replies_are_bad_upstream_replies(reply: dict[str, Any]) -> None:
    with pytest.raises(BadUpstreamReply) as caught:
        from_chat(reply, translate(), new_response_id(), 0.0)
    assert caught.value.status == 502


def test_request_parameters_are_echoed() -> None:
    fmt = {"type": "json_schema", "name": "w", "schema": WEATHER, "strict": True}
    translation = translate(
        instructions="Be brief.",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
        text={"format": fmt},
        temperature=0.5,
        top_p=0.8,
        parallel_tool_calls=False,
        max_output_tokens=99,
        metadata={"run": "7"},
        store=False,
        user="u1",
        safety_identifier="s1",
        reasoning={"effort": "low"},
        truncation="auto",
    )
    data, response = respond(chat_reply({"role": "assistant", "content": "{}"}), translation)
    assert response.instructions == "Be brief."
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert response.tool_choice.name == "get_weather"  # type: ignore[union-attr]
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.5, 0.8, 99)
    assert response.parallel_tool_calls is False
    assert response.metadata == {"run": "7"}
    assert data["store"] is False
    assert (response.user, response.safety_identifier) == ("u1", "s1")
    assert response.reasoning is not None and response.reasoning.effort == "low"
    assert response.truncation == "auto"


def test_defaults_are_echoed_like_openai() -> None:
    data, response = respond(chat_reply({"role": "assistant", "content": "x"}))
    assert response.tool_choice == "auto"
    assert response.tools == []
    assert response.parallel_tool_calls is True
    assert data["text"] == {"format": {"type": "text"}}
    assert data["metadata"] == {}
    assert data["store"] is True
    assert data["truncation"] == "disabled"
    assert data["previous_response_id"] is None
    assert data["background"] is False


class Weather(BaseModel):
    city: str
    celsius: int


def test_parse_reads_json_schema_output_into_the_model() -> None:
    """What `client.responses.parse(text_format=Weather)` does with the body."""
    from openai.lib._parsing._responses import parse_response, type_to_text_format_param

    fmt = type_to_text_format_param(Weather)
    translation = translate(text={"format": fmt})
    assert translation.chat["response_format"]["json_schema"]["schema"] == fmt["schema"]
    _, response = respond(
        chat_reply({"role": "assistant", "content": '{"city":"Paris","celsius":21}'}), translation
    )
    parsed = parse_response(text_format=Weather, input_tools=None, response=response)
    assert parsed.output_parsed == Weather(city="Paris", celsius=21)


def test_with_the_mock_llm_end_to_end() -> None:
    """A real chat completion from the project's mock model, through both directions."""
    mock = MockLLM("mock-gpt", MockSettings())
    first = translate(tools=TOOLS)
    _, called = respond(mock.chat(first.chat), first)
    [call] = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments)["city"]
    second = to_chat(
        {
            "model": "gpt-4o",
            "tools": TOOLS,
            "input": [
                *first.input_items,
                call.model_dump(exclude_none=True),
                {
                    "type": "function_call_output",
                    "call_id": call.call_id,
                    "output": "21C and sunny",
                },
            ],
        }
    )
    _, answered = respond(mock.chat(second.chat), second)
    assert answered.output_text == "The tool returned: 21C and sunny"
