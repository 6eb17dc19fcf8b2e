"""Responses create bodies translated to Chat Completions bodies (`responses.request`)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import ResponseItem
from pydantic import TypeAdapter

from responses.errors import InvalidRequest
from responses.request import ChatTranslation, to_chat

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
ITEM = TypeAdapter(ResponseItem)


def translate(history: list[dict[str, Any]] | None = None, **body: Any) -> ChatTranslation:
    body.setdefault("model", "gpt-4o")
    if history is not None:
        body.setdefault("previous_response_id", "resp_previous")
    return to_chat(body, history)


def refused(**body: Any) -> InvalidRequest:
    body.setdefault("model", "gpt-4o")
    body.setdefault("input", "hi")
    with pytest.raises(InvalidRequest) as caught:
        to_chat(body)
    return caught.value


def function_tool(name: str = "get_weather", **extra: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": WEATHER, **extra}


def call_item(call_id: str, name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> dict:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output_item(call_id: str, output: Any = "sunny") -> dict:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


# --- input ---------------------------------------------------------------------------


def test_string_input_is_one_user_message() -> None:
    t = translate(input="Hello")
    assert t.chat == {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
    assert [item["role"] for item in t.input_items] == ["user"]
    assert t.input_items[0]["content"] == [{"type": "input_text", "text": "Hello"}]


@pytest.mark.parametrize(
    ("role", "chat_role"),
    [("user", "user"), ("system", "system"), ("developer", "system"), ("assistant", "assistant")],
)
def test_message_roles(role: str, chat_role: str) -> None:
    messages = translate(
        input=[{"role": role, "content": "text"}, {"role": "user", "content": "q"}]
    )
    assert messages.chat["messages"][0] == {"role": chat_role, "content": "text"}


def test_content_parts_become_chat_parts() -> None:
    t = translate(
        input=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in"},
                    {"type": "input_text", "text": " this image?"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,JVBE",
                        "filename": "a.pdf",
                    },
                ],
            }
        ]
    )
    assert t.chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "text", "text": " this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"},
                },
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
            ],
        }
    ]


def test_a_lone_text_part_is_sent_as_a_string() -> None:
    t = translate(input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    assert t.chat["messages"] == [{"role": "user", "content": "hi"}]


def test_assistant_output_text_is_joined_and_refusal_kept() -> None:
    t = translate(
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Part one, ", "annotations": []},
                    {"type": "output_text", "text": "part two.", "annotations": []},
                    {"type": "refusal", "refusal": "I can't do the rest."},
                ],
            },
            {"role": "user", "content": "ok"},
        ]
    )
    assert t.chat["messages"][1] == {
        "role": "assistant",
        "content": "Part one, part two.",
        "refusal": "I can't do the rest.",
    }
    assert t.input_items[1]["id"] == "msg_1"


def test_function_calls_and_outputs() -> None:
    t = translate(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            call_item("call_1"),
            call_item("call_2", arguments='{"city":"Rome"}'),
            output_item("call_1", "sunny"),
            output_item("call_2", [{"type": "input_text", "text": "rain"}]),
        ]
    )
    assert t.chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
    ]


def test_calls_join_the_assistant_message_right_before_them() -> None:
    t = translate(
        input=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me check."},
            call_item("call_1"),
            output_item("call_1"),
        ]
    )
    assert t.chat["messages"][1] == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert len(t.chat["messages"]) == 3


def test_calls_separated_by_outputs_are_separate_turns() -> None:
    t = translate(
        input=[
            {"role": "user", "content": "q"},
            call_item("call_1"),
            output_item("call_1"),
            call_item("call_2"),
            output_item("call_2"),
        ]
    )
    roles = [m["role"] for m in t.chat["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool"]


def test_reasoning_items_are_stored_but_not_sent() -> None:
    t = translate(
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "hm"}],
            },
            {"role": "assistant", "content": "a"},
        ]
    )
    assert [m["role"] for m in t.chat["messages"]] == ["user", "assistant"]
    assert [item["type"] for item in t.input_items] == ["message", "reasoning", "message"]


@pytest.mark.parametrize(
    ("item", "param", "words"),
    [
        ({"type": "web_search_call", "id": "ws_1"}, "input[0].type", "'web_search_call'"),
        ({"type": "mcp_call", "id": "m"}, "input[0].type", "'mcp_call'"),
        ({"type": "computer_call_output"}, "input[0].type", "'computer_call_output'"),
    ],
)
def test_untranslatable_items_are_refused_by_name(item: dict, param: str, words: str) -> None:
    error = refused(input=[item])
    assert error.param == param
    assert error.code == "unsupported_parameter"
    assert words in error.message


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"content": "no role"}, "input[0].type", "missing_required_parameter"),
        ({"role": "critic", "content": "x"}, "input[0].role", "invalid_value"),
        ({"role": "user"}, "input[0].content", "missing_required_parameter"),
        ({"role": "user", "content": 3}, "input[0].content", "invalid_type"),
        ({"role": "user", "content": []}, "input[0].content", "invalid_value"),
        (
            {"role": "user", "content": [{"type": "output_text", "text": "x"}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"role": "user", "content": [{"type": "input_text"}]},
            "input[0].content[0].text",
            "invalid_type",
        ),
        (
            {"role": "system", "content": [{"type": "input_image", "image_url": "u"}]},
            "input[0].content[0].type",
            "unsupported_parameter",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
            "input[0].content[0].file_id",
            "unsupported_parameter",
        ),
        (
            {"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]},
            "input[0].content[0].file_url",
            "unsupported_parameter",
        ),
        (
            {"type": "function_call", "name": "f", "arguments": "{}"},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            {"type": "function_call", "call_id": "c", "name": "", "arguments": "{}"},
            "input[0].name",
            "invalid_value",
        ),
        (
            {"type": "function_call_output", "call_id": "c", "output": 5},
            "input[0].output",
            "invalid_type",
        ),
        ({"type": "reasoning", "summary": []}, "input[0].id", "missing_required_parameter"),
        ("just a string", "input[0]", "invalid_type"),
    ],
)
def test_malformed_items_name_the_field(item: Any, param: str, code: str) -> None:
    error = refused(input=[item])
    assert (error.param, error.code) == (param, code)


def test_tool_output_images_are_refused() -> None:
    error = refused(
        input=[
            {"role": "user", "content": "q"},
            call_item("c1"),
            output_item("c1", [{"type": "input_image", "image_url": "https://x/y.png"}]),
        ]
    )
    assert error.param == "input[2].output[0].type"


def test_output_without_its_call_is_refused() -> None:
    error = refused(input=[{"role": "user", "content": "q"}, output_item("call_9")])
    assert error.param == "input[1].call_id"
    assert "call_9" in error.message


def test_a_second_output_for_one_call_is_refused() -> None:
    error = refused(
        input=[
            {"role": "user", "content": "q"},
            call_item("c1"),
            output_item("c1"),
            output_item("c1"),
        ]
    )
    assert error.param == "input[3].call_id"
    assert "Duplicate" in error.message


def test_a_call_id_used_twice_is_refused() -> None:
    error = refused(
        input=[
            {"role": "user", "content": "q"},
            call_item("c1"),
            output_item("c1"),
            call_item("c1"),
        ]
    )
    assert (error.param, error.code) == ("input[3].call_id", "duplicate_function_call")


def test_a_call_left_without_output_is_refused() -> None:
    error = refused(
        input=[{"role": "user", "content": "q"}, call_item("c1"), {"role": "user", "content": "?"}]
    )
    assert error.code == "missing_function_call_output"
    assert error.param == "input[1]"


def test_input_is_required_and_must_send_something() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat({"model": "gpt-4o"})
    assert caught.value.param == "input"
    assert refused(input=[]).code == "empty_input"
    assert refused(input=7).code == "invalid_type"


def test_canonical_input_items_validate_as_sdk_items() -> None:
    t = translate(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_image", "image_url": "https://x/i.png"},
                ],
            },
            {"role": "developer", "content": "be nice"},
            {"role": "assistant", "content": "ok"},
            call_item("c1"),
            output_item("c1"),
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ]
    )
    ids = [item["id"] for item in t.input_items]
    assert len(set(ids)) == len(ids)
    for item in t.input_items:
        ITEM.validate_python(item)


# --- instructions and history --------------------------------------------------------------


def test_instructions_lead_as_a_system_message() -> None:
    t = translate(instructions="Answer in French.", input="Hi")
    assert t.chat["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert t.echo["instructions"] == "Answer in French."
    assert all(item["role"] != "system" for item in t.input_items)


def test_history_comes_first_and_instructions_before_it() -> None:
    history = [
        {
            "id": "msg_a",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": "first"}],
        },
        {
            "id": "fc_a",
            "type": "function_call",
            "call_id": "c1",
            "name": "get_weather",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    t = translate(
        history,
        instructions="new rules",
        input=[output_item("c1"), {"role": "user", "content": "next"}],
    )
    assert [m["role"] for m in t.chat["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
    ]
    assert t.chat["messages"][0]["content"] == "new rules"
    assert t.previous_response_id == "resp_previous"
    assert [item["type"] for item in t.input_items] == ["function_call_output", "message"]


def test_history_errors_name_previous_response_id() -> None:
    history = [
        {
            "id": "fc_a",
            "type": "function_call",
            "call_id": "c1",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
    ]
    with pytest.raises(InvalidRequest) as caught:
        translate(history, input="forgot the output")
    assert caught.value.param == "previous_response_id"


def test_history_must_come_with_previous_response_id() -> None:
    with pytest.raises(ValueError, match="previous_response_id"):
        to_chat({"model": "m", "input": "x"}, [])


def test_without_its_history_a_continuation_is_its_own_input_ready_to_join() -> None:
    t = to_chat({"model": "m", "input": "x", "previous_response_id": "resp_1"})
    assert t.chat["messages"] == [{"role": "user", "content": "x"}]
    assert t.continuation is not None and t.continuation.at == 0
    assert to_chat({"model": "m", "input": "x"}).continuation is None


# --- tools -----------------------------------------------------------------------------------


def test_function_tools_are_nested() -> None:
    t = translate(
        input="hi",
        tools=[
            function_tool(description="Weather for a city", strict=True),
            {"type": "function", "name": "noop", "parameters": None, "strict": None},
        ],
    )
    assert t.chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "noop"}},
    ]
    assert t.echo["tools"][0]["name"] == "get_weather"


@pytest.mark.parametrize(
    "tool_type",
    [
        "web_search",
        "web_search_preview",
        "file_search",
        "computer_use_preview",
        "code_interpreter",
        "mcp",
        "image_generation",
        "local_shell",
        "shell",
        "apply_patch",
    ],
)
def test_built_in_tools_are_refused_by_type(tool_type: str) -> None:
    error = refused(tools=[function_tool(), {"type": tool_type}])
    assert error.param == "tools[1].type"
    assert error.code == "unsupported_parameter"
    assert f"'{tool_type}'" in error.message


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "namespace", "name": "grammar"}, "tools[0].type"),
        ({"type": "custom", "format": {"type": "text"}}, "tools[0].name"),
        (function_tool(defer_loading=True), "tools[0].defer_loading"),
        (function_tool(output_schema={"type": "string"}), "tools[0].output_schema"),
        (function_tool(allowed_callers=["programmatic"]), "tools[0].allowed_callers"),
        (function_tool(cache_control={"type": "ephemeral"}), "tools[0].cache_control"),
        ({"type": "function", "parameters": WEATHER}, "tools[0].name"),
        (function_tool(parameters="nope"), "tools[0].parameters"),
    ],
)
def test_untranslatable_function_tools(tool: dict, param: str) -> None:
    assert refused(tools=[tool]).param == param


def test_duplicate_tool_names_are_refused() -> None:
    assert refused(tools=[function_tool(), function_tool()]).param == "tools[1].name"


@pytest.mark.parametrize(
    ("choice", "chat_choice"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: Any, chat_choice: Any) -> None:
    t = translate(input="hi", tools=[function_tool()], tool_choice=choice)
    assert t.chat["tool_choice"] == chat_choice
    assert t.echo["tool_choice"] == choice


def test_allowed_tools_sends_only_the_allowed_functions() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "b"}],
    }
    t = translate(
        input="hi",
        tools=[function_tool("a"), function_tool("b"), function_tool("c")],
        tool_choice=choice,
    )
    assert [tool["function"]["name"] for tool in t.chat["tools"]] == ["b"]
    assert t.chat["tool_choice"] == "required"
    assert [tool["name"] for tool in t.echo["tools"]] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "name": "missing"}, "tool_choice.name"),
        ({"type": "file_search"}, "tool_choice.type"),
        ({"type": "mcp", "server_label": "x"}, "tool_choice.type"),
        (
            {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "mcp", "server_label": "x"}],
            },
            "tool_choice.tools[0].type",
        ),
        (
            {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": "zz"}],
            },
            "tool_choice.tools[0].name",
        ),
        ({"type": "allowed_tools", "mode": "none", "tools": []}, "tool_choice.mode"),
        ("sometimes", "tool_choice"),
    ],
)
def test_bad_tool_choices(choice: Any, param: str) -> None:
    assert refused(tools=[function_tool()], tool_choice=choice).param == param


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in translate(input="hi", tool_choice="auto").chat
    assert refused(tool_choice="required").param == "tool_choice"


def test_parallel_tool_calls_only_travels_with_tools() -> None:
    assert (
        translate(input="hi", tools=[function_tool()], parallel_tool_calls=False).chat[
            "parallel_tool_calls"
        ]
        is False
    )
    t = translate(input="hi", parallel_tool_calls=False)
    assert "parallel_tool_calls" not in t.chat
    assert t.echo["parallel_tool_calls"] is False
    assert translate(input="hi").echo["parallel_tool_calls"] is True


# --- text format and sampling ------------------------------------------------------------------


def test_json_schema_format() -> None:
    fmt = {
        "type": "json_schema",
        "name": "weather",
        "schema": WEATHER,
        "strict": True,
        "description": "d",
    }
    t = translate(input="hi", text={"format": fmt, "verbosity": "low"})
    assert t.chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": WEATHER, "strict": True, "description": "d"},
    }
    assert t.chat["verbosity"] == "low"
    assert t.echo["text"] == {"format": fmt, "verbosity": "low"}


def test_json_object_and_text_formats() -> None:
    assert translate(input="hi", text={"format": {"type": "json_object"}}).chat[
        "response_format"
    ] == {"type": "json_object"}
    plain = translate(input="hi", text={"format": {"type": "text"}})
    assert "response_format" not in plain.chat
    assert translate(input="hi").echo["text"] == {"format": {"type": "text"}}


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ({"format": {"type": "json_schema", "schema": WEATHER}}, "text.format.name"),
        ({"format": {"type": "json_schema", "name": "w"}}, "text.format.schema"),
        ({"format": {"type": "grammar"}}, "text.format.type"),
        (
            {"format": {"type": "json_schema", "name": "w", "schema": WEATHER, "strict": "yes"}},
            "text.format.strict",
        ),
        ({"shape": "round"}, "text.shape"),
    ],
)
def test_bad_text_formats(text: Any, param: str) -> None:
    assert refused(text=text).param == param


def test_sampling_and_limits() -> None:
    t = translate(
        input="hi",
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=256,
        user="u-1",
        safety_identifier="hash",
        prompt_cache_key="k",
        service_tier="flex",
        reasoning={"effort": "low", "summary": "auto"},
    )
    chat = t.chat
    assert chat["temperature"] == 0.3 and chat["top_p"] == 0.9
    assert chat["max_completion_tokens"] == 256 and "max_output_tokens" not in chat
    assert chat["user"] == "u-1" and chat["safety_identifier"] == "hash"
    assert chat["prompt_cache_key"] == "k" and chat["service_tier"] == "flex"
    assert chat["reasoning_effort"] == "low" and "reasoning" not in chat
    assert t.echo["max_output_tokens"] == 256
    assert t.echo["reasoning"] == {"effort": "low", "summary": "auto"}


def test_stream_forces_usage_in_the_last_chunk() -> None:
    t = translate(input="hi", stream=True, stream_options={"include_obfuscation": False})
    assert t.stream is True
    assert t.chat["stream"] is True
    assert t.chat["stream_options"] == {"include_usage": True}
    assert "stream" not in translate(input="hi", stream=False).chat


def test_response_only_parameters_stay_home() -> None:
    t = translate(
        input="hi",
        metadata={"k": "v"},
        store=False,
        truncation="auto",
        max_tool_calls=3,
        include=["reasoning.encrypted_content"],
    )
    assert set(t.chat) == {"model", "messages"}
    assert t.store is False
    assert t.echo["metadata"] == {"k": "v"}
    assert t.echo["truncation"] == "auto"
    assert t.echo["max_tool_calls"] == 3
    assert translate(input="hi").store is True


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"background": True}, "background", "unsupported_parameter"),
        ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
        ({"moderation": {"model": "omni"}}, "moderation", "unsupported_parameter"),
        (
            {"context_management": [{"type": "compaction"}]},
            "context_management",
            "unsupported_parameter",
        ),
        ({"top_logprobs": 3}, "top_logprobs", "unsupported_parameter"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]", "unsupported_parameter"),
        ({"include": ["everything"]}, "include[0]", "invalid_value"),
        ({"include": [["a", "list"]]}, "include[0]", "invalid_type"),
        ({"reasoning": {"mode": "pro"}}, "reasoning.mode", "unsupported_parameter"),
        ({"frobnicate": 1}, "frobnicate", "unknown_parameter"),
        ({"messages": []}, "messages", "unknown_parameter"),
        ({"temperature": "hot"}, "temperature", "invalid_type"),
        ({"max_output_tokens": True}, "max_output_tokens", "invalid_type"),
        ({"max_output_tokens": 1.5}, "max_output_tokens", "invalid_type"),
        ({"stream": "yes"}, "stream", "invalid_type"),
        ({"truncation": "middle"}, "truncation", "invalid_value"),
        ({"model": ""}, "model", "invalid_type"),
        ({"model": None}, "model", "missing_required_parameter"),
    ],
)
def test_refused_parameters(body: dict[str, Any], param: str, code: str) -> None:
    error = refused(**body)
    assert (error.param, error.code) == (param, code)


def test_refusable_parameters_pass_when_off() -> None:
    t = translate(
        input="hi", background=False, conversation=None, prompt=None, top_logprobs=0, include=[]
    )
    assert set(t.chat) == {"model", "messages"}


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 1}, "metadata.k"),
        ("flat", "metadata"),
    ],
)
def test_metadata_limits(metadata: Any, param: str) -> None:
    assert refused(metadata=metadata).param == param


def test_metadata_at_its_limits_is_accepted() -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assert translate(input="hi", metadata=metadata).echo["metadata"] == metadata


def test_errors_read_like_openai_errors() -> None:
    error = refused(tools=[{"type": "web_search"}])
    assert str(error) == error.message
    assert "Chat Completions" in error.message
    assert error.status == 400
