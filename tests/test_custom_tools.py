"""Custom tools (`{"type": "custom", "custom": {...}}`: free-text input, optionally
under a grammar) end to end, as OpenAI's API takes them (openai-openapi 2.3.0:
CustomToolChatCompletions, ChatCompletionMessageCustomToolCall,
ChatCompletionNamedToolChoiceCustom, and the Responses API's CustomToolParam,
CustomToolCall, CustomToolCallOutput): request validation and the OpenAPI document
agreeing on them, relay (bodies and streams), the tool checks, policies, prompt
token counting, the embedded mock, and the Responses API's translation both ways,
with the official openai SDK where an agent would use it."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from common.chat import tool_call_parts, tool_names
from common.fields import FieldProblem
from gateway.openapi import chat_request
from gateway.stages.validate import check_chat
from responses.errors import InvalidRequest
from responses.request import to_chat
from responses.response import from_chat
from responses.stream import StreamTranslator
from routing.tokens import count_tools, get_encoding
from tests.examples import examples
from tests.openai_schemas import check, check_event
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body
from tests.support import (
    ServerThread,
    gateway_config,
    mock_group,
    running_gateway,
    sdk,
    tool_stack_config,
)
from tools.results import tool_results

SHELL: Any = {"type": "custom", "custom": {"name": "shell", "description": "Runs a command."}}
GRAMMAR = {"type": "grammar", "grammar": {"definition": "start: /[a-z ]+/", "syntax": "lark"}}
SHELL_WITH_GRAMMAR: Any = {"type": "custom", "custom": {"name": "shell", "format": GRAMMAR}}
WEATHER_INPUT = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER: Any = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": WEATHER_INPUT},
}
#: The registered `get_weather`, offered by reference: its contract binds the request.
BY_REFERENCE: Any = {"type": "function", "function": {"name": "get_weather"}}
MINTED = re.compile(r"call_[0-9a-f]{24}")


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def custom_call(name: str, text: str, call_id: str = "call_c") -> dict[str, Any]:
    return {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}


def function_call(name: str, arguments: str, call_id: str = "call_f") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def calls_body(*calls: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion whose answer is `calls`."""
    message = {"role": "assistant", "content": None, "tool_calls": list(calls)}
    return {
        **chat_body(),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
    }


def calls_events(*calls: dict[str, Any], pieces: int = 3) -> list[Any]:
    """`calls` streamed as OpenAI streams them: per call, a head delta (id, type,
    name, empty text), then the text in `pieces` deltas that name no type."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**chat_body(), "object": "chat.completion.chunk", "choices": [choice]}

    events: list[Any] = []
    for index, call in enumerate(calls):
        name, text, custom = tool_call_parts(call)
        kind, field = ("custom", "input") if custom else ("function", "arguments")
        head = {"index": index, "id": call["id"], "type": kind, kind: {"name": name, field: ""}}
        delta: dict[str, Any] = {"tool_calls": [head]}
        events.append(
            chunk({"role": "assistant", "content": None, **delta} if not index else delta)
        )
        size = max(1, -(-len(text) // pieces))
        for start in range(0, len(text), size):
            piece = {"index": index, kind: {field: text[start : start + size]}}
            events.append(chunk({"tool_calls": [piece]}))
    events.append(chunk({}, "tool_calls"))
    return events


def data_payloads(text: str) -> list[Any]:
    """The JSON payloads of an SSE body's `data:` lines (not `[DONE]`)."""
    return [
        orjson.loads(line[5:])
        for line in text.splitlines()
        if line.startswith("data:") and line[5:].strip() != "[DONE]"
    ]


# -- request validation ----------------------------------------------------------------------


def body_with(**fields: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": user("List the files."), **fields}


HISTORY = [
    *user("List the files."),
    {"role": "assistant", "content": None, "tool_calls": [custom_call("shell", "ls")]},
    {"role": "tool", "tool_call_id": "call_c", "content": "a.txt b.txt"},
]

ACCEPTED = [
    body_with(tools=[SHELL]),
    body_with(tools=[{"type": "custom", "custom": {"name": "shell"}}]),
    body_with(tools=[SHELL_WITH_GRAMMAR]),
    body_with(tools=[{"type": "custom", "custom": {"name": "n", "format": {"type": "text"}}}]),
    body_with(tools=[{"type": "custom", "custom": {"name": "n", "format": None}}]),
    body_with(tools=[WEATHER, SHELL], tool_choice={"type": "custom", "custom": {"name": "shell"}}),
    body_with(
        tools=[WEATHER, SHELL],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [
                    {"type": "custom", "custom": {"name": "shell"}},
                    {"function": {"name": "get_weather"}},
                ],
            },
        },
    ),
    body_with(tools=[SHELL], tool_choice="required"),
    {"model": "demo", "messages": HISTORY, "tools": [SHELL]},
]

REFUSED = [
    (body_with(tools=[{"type": "custom"}]), "tools[0].custom", "missing_required_parameter"),
    (body_with(tools=[{"type": "custom", "custom": "shell"}]), "tools[0].custom", "invalid_type"),
    (
        body_with(tools=[{"type": "custom", "custom": {"name": ""}}]),
        "tools[0].custom.name",
        "invalid_type",
    ),
    (
        body_with(tools=[{"type": "custom", "custom": {"name": "n", "description": 5}}]),
        "tools[0].custom.description",
        "invalid_type",
    ),
    (
        body_with(tools=[{"type": "custom", "custom": {"name": "n", "format": {"type": "json"}}}]),
        "tools[0].custom.format.type",
        "invalid_value",
    ),
    (
        body_with(tools=[{"type": "custom", "custom": {"name": "n", "format": {}}}]),
        "tools[0].custom.format.type",
        "missing_required_parameter",
    ),
    (
        body_with(
            tools=[{"type": "custom", "custom": {"name": "n", "format": {"type": "grammar"}}}]
        ),
        "tools[0].custom.format.grammar",
        "missing_required_parameter",
    ),
    (
        body_with(
            tools=[
                {
                    "type": "custom",
                    "custom": {
                        "name": "n",
                        "format": {"type": "grammar", "grammar": {"definition": "x"}},
                    },
                }
            ]
        ),
        "tools[0].custom.format.grammar.syntax",
        "missing_required_parameter",
    ),
    (
        body_with(
            tools=[
                {
                    "type": "custom",
                    "custom": {
                        "name": "n",
                        "format": {
                            "type": "grammar",
                            "grammar": {"definition": "x", "syntax": "ebnf"},
                        },
                    },
                }
            ]
        ),
        "tools[0].custom.format.grammar.syntax",
        "invalid_value",
    ),
    (body_with(tools=[{"type": "web_search"}]), "tools[0]", "invalid_value"),
    (
        body_with(tools=[SHELL], tool_choice={"type": "custom"}),
        "tool_choice.custom",
        "missing_required_parameter",
    ),
    (
        body_with(tools=[SHELL], tool_choice={"type": "custom", "custom": {"name": 5}}),
        "tool_choice.custom.name",
        "invalid_type",
    ),
    (
        body_with(tools=[SHELL], tool_choice={"type": "shell"}),
        "tool_choice.type",
        "invalid_value",
    ),
    (
        body_with(tools=[SHELL], tool_choice={"custom": {"name": "shell"}}),
        "tool_choice.type",
        "missing_required_parameter",
    ),
    (
        body_with(
            tools=[SHELL],
            tool_choice={
                "type": "allowed_tools",
                "allowed_tools": {"mode": "sometimes", "tools": []},
            },
        ),
        "tool_choice.allowed_tools.mode",
        "invalid_value",
    ),
    (
        body_with(
            tools=[SHELL],
            tool_choice={
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "mcp"}]},
            },
        ),
        "tool_choice.allowed_tools.tools[0].type",
        "invalid_value",
    ),
    (
        {
            "model": "demo",
            "messages": [
                HISTORY[0],
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "shell"}}],
                },
            ],
        },
        "messages[1].tool_calls[0].custom.input",
        "invalid_type",
    ),
    (
        {
            "model": "demo",
            "messages": [
                HISTORY[0],
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom"}]},
            ],
        },
        "messages[1].tool_calls[0].custom",
        "invalid_type",
    ),
]

#: The chat request body's JSON Schema, as `/openapi.json` documents it.
DOCUMENTED = Draft202012Validator(chat_request())


def accepted(body: dict[str, Any]) -> bool:
    try:
        check_chat(copy.deepcopy(body))
    except FieldProblem:
        return False
    return True


@pytest.mark.parametrize("body", ACCEPTED)
def test_custom_tools_calls_and_choices_are_accepted(body: dict[str, Any]) -> None:
    check_chat(copy.deepcopy(body))


@pytest.mark.parametrize(("body", "param", "code"), REFUSED)
def test_malformed_custom_shapes_are_refused_in_openais_words(
    body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(FieldProblem) as refused:
        check_chat(copy.deepcopy(body))
    assert (refused.value.param, refused.value.code) == (param, code)
    assert refused.value.message.startswith(
        {
            "missing_required_parameter": "Missing required parameter: ",
            "invalid_type": f"Invalid type for '{param}': expected ",
            "invalid_value": f"Invalid value for '{param}': ",
        }[code]
    )


@pytest.mark.parametrize("body", [*ACCEPTED, *(body for body, _, _ in REFUSED)])
def test_the_document_and_the_validator_agree_on_custom_shapes(body: dict[str, Any]) -> None:
    assert DOCUMENTED.is_valid(body) == accepted(body), body


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4)
    | st.sampled_from(["custom", "function", "grammar", "text", "lark", "allowed_tools"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
        st.sampled_from(["type", "name", "custom", "function", "input", "format", "grammar"]),
        inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _places(value: Any, where: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        places.append((*where, key))
        if isinstance(inner, (dict, list)):
            places.extend(_places(inner, (*where, key)))
    return places


@settings(
    max_examples=examples(150),
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(st.sampled_from(ACCEPTED), st.data())
def test_they_agree_on_custom_shapes_broken_anywhere(body: dict[str, Any], data: Any) -> None:
    """A valid body with a custom tool, call or choice, one value inside it replaced
    by any JSON value: the document and the validator still agree."""
    body = copy.deepcopy(body)
    *parents, key = data.draw(st.sampled_from(_places(body)))
    container: Any = body
    for step in parents:
        container = container[step]
    container[key] = data.draw(JSON)
    assert DOCUMENTED.is_valid(body) == accepted(body), body


def test_openapi_json_documents_custom_tools(default_gateway: ServerThread) -> None:
    document = httpx.get(default_gateway.url + "/openapi.json").json()
    schema = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    request = schema["application/json"]["schema"]
    tool_kinds = request["properties"]["tools"]["anyOf"][0]["items"]["anyOf"]
    custom = next(kind for kind in tool_kinds if kind["title"] == "Custom tool")
    assert custom["properties"]["type"] == {"const": "custom"}
    assert custom["properties"]["custom"]["required"] == ["name"]
    assert "format" in custom["properties"]["custom"]["properties"]
    call = request["properties"]["messages"]["items"]["properties"]["tool_calls"]["anyOf"][0]
    assert call["items"]["then"]["properties"]["custom"]["required"] == ["name", "input"]
    choices = request["properties"]["tool_choice"]["anyOf"][0]["anyOf"]
    assert {"const": "custom"} in [c.get("properties", {}).get("type") for c in choices]


# -- the embedded mock, through the gateway, with the openai SDK -----------------------------


def test_a_custom_tool_gets_a_custom_call(default_gateway: ServerThread) -> None:
    reply = sdk(default_gateway.url).chat.completions.create(
        model="demo", messages=user("List the files."), tools=[SHELL_WITH_GRAMMAR]
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.type == "custom"
    assert (call.custom.name, call.custom.input) == ("shell", "List the files.")
    assert reply.choices[0].finish_reason == "tool_calls"


def test_a_streamed_custom_call_is_relayed_as_deltas(default_gateway: ServerThread) -> None:
    """The SDK's delta type knows function calls only; the custom part is kept as
    sent (`to_dict`), and the pieces assemble into the input."""
    stream = sdk(default_gateway.url).chat.completions.create(
        model="demo", messages=user("List the files."), tools=[SHELL], stream=True
    )
    head, pieces = None, []
    for chunk in stream:
        delta: Any = chunk.choices[0].delta.to_dict() if chunk.choices else {}
        for raw in delta.get("tool_calls") or []:
            head = head or raw
            pieces.append(raw["custom"]["input"])
    assert head is not None and head["type"] == "custom" and head["custom"]["name"] == "shell"
    assert "".join(pieces) == "List the files."


def test_a_forced_custom_tool_is_called_over_a_function(default_gateway: ServerThread) -> None:
    reply = sdk(default_gateway.url).chat.completions.create(
        model="demo",
        messages=user("Weather in Oslo?"),
        tools=[WEATHER, SHELL],
        tool_choice={"type": "custom", "custom": {"name": "shell"}},
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.type == "custom" and call.custom.name == "shell"


def test_a_chat_tool_loop_runs_to_its_end(default_gateway: ServerThread) -> None:
    client = sdk(default_gateway.url)
    messages: Any = user("List the files.")
    first = client.chat.completions.create(model="demo", messages=messages, tools=[SHELL])
    message = first.choices[0].message
    (call,) = message.tool_calls or []
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "a.txt b.txt"},
    ]
    last = client.chat.completions.create(model="demo", messages=messages, tools=[SHELL])
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].message.content == "The tool returned: a.txt b.txt"


RESPONSES_SHELL: Any = {
    "type": "custom",
    "name": "shell",
    "description": "Runs a command.",
    "format": {"type": "grammar", "syntax": "regex", "definition": "[a-z .]+"},
}


def test_responses_custom_tool_loop_with_the_sdk(default_gateway: ServerThread) -> None:
    client = sdk(default_gateway.url)
    first = client.responses.create(model="demo", input="List the files.", tools=[RESPONSES_SHELL])
    (call,) = first.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("shell", "List the files.")
    assert call.id is not None and call.id.startswith("ctc_")
    assert first.tools[0].model_dump(exclude_none=True) == RESPONSES_SHELL  # echoed as sent
    output: Any = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "a.txt"}
    # Continued from the stored response...
    stored = client.responses.create(
        model="demo", previous_response_id=first.id, input=[output], tools=[RESPONSES_SHELL]
    )
    assert stored.output_text == "The tool returned: a.txt"
    # ...and with the whole conversation sent back, the SDK's output item included.
    items: Any = [
        {"role": "user", "content": "List the files."},
        call.model_dump(exclude_none=True),
        output,
    ]
    again = client.responses.create(model="demo", input=items, tools=[RESPONSES_SHELL])
    assert again.output_text == "The tool returned: a.txt"
    listed = client.responses.input_items.list(stored.id)
    assert [item.type for item in listed.data] == ["custom_tool_call_output"]


def test_responses_custom_tool_stream_with_the_sdk(default_gateway: ServerThread) -> None:
    events = list(
        sdk(default_gateway.url).responses.create(
            model="demo", input="List the files.", tools=[RESPONSES_SHELL], stream=True
        )
    )
    kinds = [event.type for event in events]
    deltas = [e.delta for e in events if e.type == "response.custom_tool_call_input.delta"]
    (done,) = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert len(deltas) > 1 and "".join(deltas) == done.input == "List the files."
    completed: Any = events[-1]
    (item,) = completed.response.output
    assert item.type == "custom_tool_call" and item.input == "List the files."
    assert item.id == done.item_id


def test_custom_tool_responses_conform_to_openais_document(default_gateway: ServerThread) -> None:
    """The Response, its stream events, the stored copy and a second turn's input
    items, against OpenAI's published schemas (tests/openai_schemas.py)."""
    url = default_gateway.url + "/v1/responses"
    body = {"model": "demo", "input": "List the files.", "tools": [RESPONSES_SHELL]}
    created = httpx.post(url, json=body, timeout=30).json()
    check(created, "Response")
    assert created["output"][0]["type"] == "custom_tool_call"
    check(httpx.get(f"{url}/{created['id']}", timeout=30).json(), "Response")
    streamed = httpx.post(url, json={**body, "stream": True}, timeout=30)
    named = {check_event(event) for event in data_payloads(streamed.text)}
    assert {
        "ResponseCustomToolCallInputDeltaEvent",
        "ResponseCustomToolCallInputDoneEvent",
    } <= named
    call_id = created["output"][0]["call_id"]
    output = {"type": "custom_tool_call_output", "call_id": call_id, "output": "a.txt"}
    follow = {**body, "input": [output], "previous_response_id": created["id"]}
    second = httpx.post(url, json=follow, timeout=30).json()
    check(second, "Response")
    check(httpx.get(f"{url}/{second['id']}/input_items", timeout=30).json(), "ResponseItemList")


def test_responses_tool_choice_names_a_custom_tool(default_gateway: ServerThread) -> None:
    tools: Any = [
        {"type": "function", "name": "get_weather", "parameters": WEATHER_INPUT},
        {"type": "custom", "name": "shell"},
    ]
    client = sdk(default_gateway.url)
    forced = client.responses.create(
        model="demo", input="Oslo?", tools=tools, tool_choice={"type": "custom", "name": "shell"}
    )
    assert [item.type for item in forced.output] == ["custom_tool_call"]
    allowed = client.responses.create(
        model="demo",
        input="Oslo?",
        tools=tools,
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "custom", "name": "shell"}],
        },
    )
    assert [item.type for item in allowed.output] == ["custom_tool_call"]


# -- the Responses translation, both ways -----------------------------------------------------


def translate(**body: Any) -> Any:
    return to_chat({"model": "m", "input": "hi", **body})


def refused(**body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate(**body)
    return caught.value


def test_responses_custom_tools_become_chat_custom_tools() -> None:
    tools = [
        RESPONSES_SHELL,
        {"type": "custom", "name": "note", "format": {"type": "text"}},
        {"type": "custom", "name": "free"},
    ]
    translation = translate(tools=tools, tool_choice={"type": "custom", "name": "note"})
    assert translation.chat["tools"] == [
        {
            "type": "custom",
            "custom": {
                "name": "shell",
                "description": "Runs a command.",
                "format": {
                    "type": "grammar",
                    "grammar": {"definition": "[a-z .]+", "syntax": "regex"},
                },
            },
        },
        {"type": "custom", "custom": {"name": "note", "format": {"type": "text"}}},
        {"type": "custom", "custom": {"name": "free"}},
    ]
    assert translation.chat["tool_choice"] == {"type": "custom", "custom": {"name": "note"}}
    check_chat(translation.chat)  # what the chat stages then accept
    assert tool_names(translation.chat) == ("shell", "note", "free")  # what policies read


def test_responses_allowed_tools_may_list_custom_tools() -> None:
    translation = translate(
        tools=[{"type": "function", "name": "f"}, {"type": "custom", "name": "c"}],
        tool_choice={
            "type": "allowed_tools",
            "mode": "auto",
            "tools": [{"type": "custom", "name": "c"}],
        },
    )
    assert translation.chat["tools"] == [{"type": "custom", "custom": {"name": "c"}}]
    assert translation.chat["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"tools": [{"type": "custom"}]}, "tools[0].name", "missing_required_parameter"),
        ({"tools": [{"type": "custom", "name": "c", "parameters": {}}]}, "tools[0].parameters",
         "unknown_parameter"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "json"}}]},
         "tools[0].format.type", "invalid_value"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "grammar",
                     "definition": "x", "syntax": "ebnf"}}]},
         "tools[0].format.syntax", "invalid_value"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "grammar",
                     "syntax": "lark"}}]},
         "tools[0].format.definition", "missing_required_parameter"),
        ({"tools": [{"type": "custom", "name": "c", "format": {"type": "text", "x": 1}}]},
         "tools[0].format.x", "unknown_parameter"),
        ({"tools": [{"type": "custom", "name": "c", "defer_loading": True}]},
         "tools[0].defer_loading", "unsupported_parameter"),
        ({"tools": [{"type": "function", "name": "c"}, {"type": "custom", "name": "c"}]},
         "tools[1].name", "invalid_value"),
        ({"tools": [{"type": "function", "name": "f"}],
          "tool_choice": {"type": "custom", "name": "f"}}, "tool_choice.name", "invalid_value"),
        ({"tools": [{"type": "custom", "name": "c"}],
          "tool_choice": {"type": "function", "name": "c"}}, "tool_choice.name", "invalid_value"),
        ({"tools": [{"type": "custom", "name": "c"}],
          "tool_choice": {"type": "custom", "custom": {"name": "c"}}}, "tool_choice.custom",
         "unknown_parameter"),
    ],
)  # fmt: skip
def test_malformed_responses_custom_tools_are_refused(
    body: dict[str, Any], param: str, code: str
) -> None:
    error = refused(**body)
    assert (error.param, error.code) == (param, code)


def test_custom_call_items_become_chat_calls_and_results() -> None:
    items = [
        {"role": "user", "content": "List the files."},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "shell", "input": "ls"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "a.txt"},
    ]
    translation = translate(input=items, tools=[{"type": "custom", "name": "shell"}])
    assert translation.chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [custom_call("shell", "ls", "call_1")],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
    ]
    call, output = translation.input_items[1:]
    assert call["id"].startswith("ctc_") and call["input"] == "ls"
    assert output["id"].startswith("ctco_") and output["type"] == "custom_tool_call_output"
    check_chat(translation.chat)
    (result,) = tool_results(translation.chat["messages"])
    assert (result.tool, result.arguments) == ("shell", "ls")  # matched to its call


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"type": "custom_tool_call", "call_id": "c", "name": "shell"}, "input[0].input",
         "missing_required_parameter"),
        ({"type": "custom_tool_call", "call_id": "c", "name": "shell", "input": "x",
          "arguments": "{}"}, "input[0].arguments", "unknown_parameter"),
        ({"type": "custom_tool_call_output", "call_id": "c", "output": "x", "name": "shell"},
         "input[0].name", "unknown_parameter"),
        ({"type": "custom_tool_call_output", "call_id": "nobody", "output": "x"},
         "input[0].call_id", "invalid_function_call_output"),
    ],
)  # fmt: skip
def test_malformed_custom_call_items_are_refused(item: Any, param: str, code: str) -> None:
    error = refused(input=[item])
    assert (error.param, error.code) == (param, code)


def test_a_chat_custom_call_becomes_a_custom_tool_call_item() -> None:
    translation = translate(tools=[{"type": "custom", "name": "shell"}])
    response = from_chat(calls_body(custom_call("shell", "ls -la")), translation, "resp_1", 0)
    (item,) = response["output"]
    assert item == {
        "id": item["id"],
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_c",
        "name": "shell",
        "input": "ls -la",
    }
    stream = StreamTranslator(translation, "resp_1", 0)
    sent = b"".join(stream.feed(event) for event in calls_events(custom_call("shell", "ls -la")))
    sent += stream.finish()
    events = [e for e in data_payloads(sent.decode()) if "custom_tool_call_input" in e["type"]]
    assert [e["delta"] for e in events[:-1]] == ["ls", " -", "la"]
    assert events[-1]["input"] == "ls -la"
    assert stream.response is not None
    assert stream.response["output"] == [{**item, "id": stream.response["output"][0]["id"]}]


# -- relay and tool checks, against a scripted model ------------------------------------------

#: What the scripted model answers, by the request's first user message.
ANSWERS: dict[str, Callable[[dict[str, Any]], Answer]] = {}


def answers(case: str) -> Callable[[Callable[[dict[str, Any]], Answer]], Any]:
    def register(script: Callable[[dict[str, Any]], Answer]) -> Any:
        ANSWERS[case] = script
        return script

    return register


def calls(body: dict[str, Any], *made: dict[str, Any]) -> Answer:
    """`made` as a body, or as a stream when the request asks for one."""
    if body.get("stream"):
        return Answer(events=calls_events(*made))
    return Answer(body=calls_body(*made))


def repairing(body: dict[str, Any]) -> bool:
    """Whether the request is the gateway's repair attempt (the invalid call's
    feedback as its last tool result)."""
    last = body["messages"][-1]
    return last["role"] == "tool" and "The gateway did not run this call" in last["content"]


@answers("offered")
def _offered(body: dict[str, Any]) -> Answer:
    return calls(body, custom_call("shell", "ls -la"))


@answers("unoffered")
def _unoffered(body: dict[str, Any]) -> Answer:
    if repairing(body):
        return calls(body, custom_call("shell", "ls", "call_r"))
    return calls(body, custom_call("rm", "-rf /"))


@answers("registered name")
def _registered_name(body: dict[str, Any]) -> Answer:
    return calls(body, custom_call("get_weather", "Oslo"))


@answers("function to custom")
def _function_to_custom(body: dict[str, Any]) -> Answer:
    return calls(body, function_call("shell", '{"command": "ls"}'))


@answers("mixed")
def _mixed(body: dict[str, Any]) -> Answer:
    return calls(
        body,
        function_call("get_weather", '{"city": "Oslo"}', "call_1"),
        custom_call("shell", "ls", "call_2"),
    )


def scripted_model(number: int, body: dict[str, Any]) -> Answer:
    script = ANSWERS.get(body["messages"][0]["content"])
    return script(body) if script else Answer(body=chat_body("done"))


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[ServerThread, ScriptedUpstream]]:
    """A scripted model behind a gateway with the registered `get_weather` (enforce)."""
    upstream = ScriptedUpstream(scripted_model)
    with ServerThread(upstream) as model:
        registered = {"name": "get_weather", "input_schema": WEATHER_INPUT}
        with running_gateway(tool_stack_config(model.url, registered)) as gateway:
            yield gateway, upstream


def post(gateway: ServerThread, case: str, tools: list[Any], **extra: Any) -> httpx.Response:
    body = {"model": "g", "messages": user(case), "tools": tools, **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


def test_a_custom_call_to_an_offered_custom_tool_passes_untouched(scripted: Any) -> None:
    gateway, upstream = scripted
    response = post(gateway, "offered", [SHELL_WITH_GRAMMAR])
    assert response.status_code == 200, response.text
    assert response.json() == calls_body(custom_call("shell", "ls -la"))
    assert "x-seawall-tool-violations" not in response.headers
    assert upstream.requests[-1]["tools"] == [SHELL_WITH_GRAMMAR]  # sent as given


def test_a_streamed_custom_call_is_relayed_intact(scripted: Any) -> None:
    gateway, _ = scripted
    response = post(gateway, "offered", [SHELL], stream=True)
    assert response.status_code == 200
    assert data_payloads(response.text) == calls_events(custom_call("shell", "ls -la"))
    assert response.text.rstrip().endswith("data: [DONE]")
    assert "x-seawall-tool-violations" not in response.headers


@pytest.mark.parametrize("stream", [False, True])
def test_a_custom_call_to_an_unoffered_name_is_a_violation(scripted: Any, stream: bool) -> None:
    """Only unregistered tools offered: `tool_policy.offered_mode` (warn) applies."""
    gateway, _ = scripted
    response = post(gateway, "unoffered", [SHELL], stream=stream)
    assert response.status_code == 200
    assert response.headers["x-seawall-tool-violations"] == "rm:unknown_tool:name"


def test_an_unoffered_custom_call_is_repaired_as_a_custom_call(scripted: Any) -> None:
    """With a registered tool in enforce mode offered, the strictest mode applies:
    the model is asked again, shown its own call as the custom call it was."""
    gateway, upstream = scripted
    response = post(gateway, "unoffered", [BY_REFERENCE, SHELL])
    assert response.status_code == 200, response.text
    assert response.headers["x-seawall-tool-repaired"] == "1"
    assert response.json()["choices"][0]["message"]["tool_calls"] == [
        custom_call("shell", "ls", "call_r")
    ]
    assistant, feedback = upstream.requests[-1]["messages"][-2:]
    assert assistant["tool_calls"] == [custom_call("rm", "-rf /")]
    assert feedback["tool_call_id"] == "call_c" and "'rm'" in feedback["content"]


def test_a_custom_call_with_a_registered_functions_name_is_refused(scripted: Any) -> None:
    gateway, _ = scripted
    with pytest.raises(openai.InternalServerError) as raised:
        sdk(gateway.url).chat.completions.create(
            model="g", messages=user("registered name"), tools=[BY_REFERENCE]
        )
    assert raised.value.code == "tool_call_invalid"
    assert "'get_weather' as a custom tool, but the request offered it as a function" in (
        raised.value.message
    )
    headers = raised.value.response.headers
    assert headers["x-seawall-tool-violations"] == "get_weather:unknown_tool:type"


def test_a_function_call_to_a_custom_tool_is_a_violation(scripted: Any) -> None:
    gateway, _ = scripted
    response = post(gateway, "function to custom", [SHELL])
    assert response.headers["x-seawall-tool-violations"] == "shell:unknown_tool:type"


def test_results_answering_custom_calls_are_matched(scripted: Any) -> None:
    """An unmatched result is refused in the strictest mode (the registered tool's
    enforce): the custom call's result passes because it answers that call."""
    gateway, upstream = scripted
    tools = [BY_REFERENCE, SHELL]
    body: Any = {"model": "g", "messages": [*user("history"), *HISTORY[1:]], "tools": tools}
    answered = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert answered.status_code == 200, answered.text
    assert upstream.requests[-1]["messages"][1]["tool_calls"] == [custom_call("shell", "ls")]
    body["messages"][-1] = {**body["messages"][-1], "tool_call_id": "call_nobody"}
    unmatched = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert unmatched.status_code == 400
    assert unmatched.json()["error"]["code"] == "tool_result_invalid"


def test_tool_results_read_a_custom_calls_name_and_input() -> None:
    (result,) = tool_results(HISTORY)
    assert (result.tool, result.arguments, result.call_id) == ("shell", "ls", "call_c")


@pytest.mark.parametrize("stream", [False, True])
def test_bound_calls_get_minted_ids_beside_custom_calls(scripted: Any, stream: bool) -> None:
    gateway, _ = scripted
    response = post(gateway, "mixed", [BY_REFERENCE, SHELL], stream=stream)
    assert response.status_code == 200, response.text
    if stream:
        ids = [
            call.get("id")
            for event in data_payloads(response.text)
            for choice in event["choices"]
            for call in choice["delta"].get("tool_calls") or ()
        ]
        ids = [i for i in ids if i is not None]
    else:
        ids = [call["id"] for call in response.json()["choices"][0]["message"]["tool_calls"]]
    minted, kept = ids
    assert MINTED.fullmatch(minted) and kept == "call_2"


# -- policies and prompt tokens ----------------------------------------------------------------


def test_a_policy_denies_a_custom_tool_by_name() -> None:
    rule = {
        "id": "no-shell",
        "when": '"shell" in tools',
        "effect": "deny",
        "message": "No shell here.",
    }
    with running_gateway(gateway_config(mock_group(), policies={"rules": [rule]})) as gateway:
        client = sdk(gateway.url)
        with pytest.raises(openai.PermissionDeniedError) as chat_denied:
            client.chat.completions.create(model="demo", messages=user("ls"), tools=[SHELL])
        with pytest.raises(openai.PermissionDeniedError) as responses_denied:
            client.responses.create(
                model="demo", input="ls", tools=[{"type": "custom", "name": "shell"}]
            )
        other: Any = {"type": "custom", "custom": {"name": "notes"}}
        allowed = client.chat.completions.create(model="demo", messages=user("ls"), tools=[other])
    for denied in (chat_denied, responses_denied):
        assert denied.value.code == "policy_denied" and "no-shell" in denied.value.message
    assert (allowed.choices[0].message.tool_calls or [])[0].type == "custom"


def test_custom_tool_definitions_count_as_prompt_tokens() -> None:
    encoding = get_encoding("o200k_base")
    grammar = {"type": "grammar", "grammar": {"definition": "word " * 300, "syntax": "lark"}}
    large: Any = {"type": "custom", "custom": {"name": "shell", "format": grammar}}
    assert count_tools([large], encoding) > count_tools([SHELL], encoding) + 290
    with running_gateway(gateway_config(mock_group(max_prompt_tokens=200))) as gateway:
        client = sdk(gateway.url)
        small = client.chat.completions.create(model="demo", messages=user("ls"), tools=[SHELL])
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="demo", messages=user("ls"), tools=[large])
    assert small.choices[0].message.tool_calls
    assert raised.value.code == "context_length_exceeded"
