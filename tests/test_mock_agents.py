"""The mock LLM as agent frameworks meet it: the official openai SDK against
`seawall mock-upstream`'s app on a real socket, one behaviour per test.

Structured output (`response_format`), `tool_choice`, agent loops that end (tool
results as `tool` messages, or written back as user messages), finishing tools,
argument values named by a tool's description or the conversation, the deprecated
`functions`, custom tools and `n` choices, each checked the way a client sees them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import orjson
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from routing.mock.server import MockUpstreamApp
from routing.mock.tool_menu import is_finishing
from tests.support import ServerThread, sdk


class LineItem(BaseModel):
    sku: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")
    quantity: int = Field(ge=1, le=99)
    unit: Literal["piece", "box"]


class Order(BaseModel):
    id: int
    placed: datetime.datetime
    items: list[LineItem] = Field(min_length=2)
    tags: set[str]
    gift_note: str | None
    shipping: Address | None = None


class Address(BaseModel):
    city: str
    postcode: str = Field(min_length=4, max_length=10)


Order.model_rebuild()

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
SHELL = {"type": "custom", "custom": {"name": "shell", "description": "runs a command"}}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with ServerThread(MockUpstreamApp()) as server:
        yield sdk(server.url)


def schema_of(tool: dict[str, Any]) -> dict[str, Any]:
    parameters: dict[str, Any] = tool["function"]["parameters"]
    return parameters


def run_tools(calls: Any) -> list[dict[str, Any]]:
    """The agent's side of a loop: run each call, answer with its result."""
    return [
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": f"{call.function.name} says 4 degrees",
        }
        for call in calls
    ]


# -- response_format -----------------------------------------------------------------


def test_parse_gives_an_instance_of_the_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "Any order?"}], response_format=Order
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Order)
    assert len(choice.message.parsed.items) >= 2
    jsonschema.validate(json.loads(choice.message.content or ""), to_strict_json_schema(Order))


def test_a_streamed_document_arrives_in_deltas_that_concatenate(client: openai.OpenAI) -> None:
    schema = Order.model_json_schema()
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Any order?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "order", "schema": schema, "strict": False},
        },
        stream=True,
    )
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    pieces = [d for d in deltas if d]
    assert len(pieces) > 1
    document = json.loads("".join(pieces))
    jsonschema.validate(document, schema)
    Order.model_validate(document)


def test_the_stream_helper_parses_the_document(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "Any order?"}], response_format=Order
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert "content.delta" in kinds
    assert isinstance(final.choices[0].message.parsed, Order)


def test_json_object_needs_the_word_json(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m", messages=ASK, response_format={"type": "json_object"}
        )
    assert "must contain the word 'json'" in caught.value.message


def test_json_object_follows_a_schema_written_in_the_prompt(client: openai.OpenAI) -> None:
    """How instructor's JSON mode and pydantic-ai's prompted output ask for a shape."""
    schema = Address.model_json_schema()
    system = (
        "Provide the parsed objects in json that match the following json_schema:\n\n"
        f"{json.dumps(schema, indent=2)}\n\nMake sure to return an instance of the JSON."
    )
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": system}, *ASK],
        response_format={"type": "json_object"},
    )
    Address.model_validate_json(completion.choices[0].message.content or "")


def test_json_object_without_a_schema_is_an_object_with_the_answer(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Reply in JSON: hello?"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {
        "answer": "This is a mock reply from mock-gpt to: Reply in JSON: hello?"
    }


def test_a_json_schema_format_needs_its_schema_object(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=ASK,
            response_format={"type": "json_schema"},
        )
    assert caught.value.body["param"] == "response_format.json_schema"


# -- tool_choice ---------------------------------------------------------------------


def first_call(client: openai.OpenAI, **request: Any) -> Any:
    completion = client.chat.completions.create(model="m", messages=ASK, **request)
    return completion.choices[0]


def test_auto_calls_the_first_tool_with_valid_arguments(client: openai.OpenAI) -> None:
    choice = first_call(client, tools=[WEATHER, TIME])
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), schema_of(WEATHER))


def test_none_answers_in_text_though_tools_are_offered(client: openai.OpenAI) -> None:
    choice = first_call(client, tools=[WEATHER], tool_choice="none")
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content.endswith("What is the weather in Oslo?")


def test_a_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    [call] = first_call(client, tools=[WEATHER, TIME], tool_choice=named).message.tool_calls
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), schema_of(TIME))


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_allowed_tools_narrow_the_choice(client: openai.OpenAI, mode: str) -> None:
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": mode,
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    [call] = first_call(client, tools=[WEATHER, TIME], tool_choice=allowed).message.tool_calls
    assert call.function.name == "get_time"


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {"mode": "any", "tools": [WEATHER]},
                },
            },
            "tool_choice.allowed_tools.mode",
        ),
    ],
)
def test_a_choice_the_tools_cannot_meet_is_refused(
    client: openai.OpenAI, request_fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=ASK, **request_fields)
    assert caught.value.body["param"] == param


# -- agent loops ---------------------------------------------------------------------

MAX_TURNS = 5


def agent_loop(client: openai.OpenAI, **request: Any) -> tuple[list[dict[str, Any]], Any]:
    """A minimal agent: ask, run every tool call, send the results, until text."""
    messages: list[dict[str, Any]] = list(ASK)
    for _ in range(MAX_TURNS):
        choice = client.chat.completions.create(model="m", messages=messages, **request).choices[0]
        if not choice.message.tool_calls:
            return messages, choice
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.extend(run_tools(choice.message.tool_calls))
    raise AssertionError(f"no final answer in {MAX_TURNS} turns")


def test_an_agent_loop_ends_with_a_summary_of_the_results(client: openai.OpenAI) -> None:
    messages, final = agent_loop(client, tools=[WEATHER, TIME])
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert final.finish_reason == "stop"
    assert final.message.content == "The tool returned: get_weather says 4 degrees"


def test_a_streamed_agent_loop_ends_too(client: openai.OpenAI) -> None:
    messages: list[Any] = list(ASK)
    for _ in range(MAX_TURNS):
        with client.chat.completions.stream(model="m", messages=messages, tools=[WEATHER]) as s:
            message = s.get_final_completion().choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True, exclude={"parsed"}))
        messages.extend(run_tools(message.tool_calls))
    assert message.content == "The tool returned: get_weather says 4 degrees"
    assert len(messages) == 3


def test_the_loop_ends_in_the_output_tool_when_one_is_offered(client: openai.OpenAI) -> None:
    """pydantic-ai's structured output: `tool_choice: required` and a `final_result`
    tool; its run ends when the model calls that tool."""
    final_result = openai.pydantic_function_tool(Address, name="final_result")
    messages: list[Any] = list(ASK)
    called = []
    for _ in range(MAX_TURNS):
        choice = client.chat.completions.create(
            model="m", messages=messages, tools=[WEATHER, final_result], tool_choice="required"
        ).choices[0]
        [call] = choice.message.tool_calls or []
        called.append(call.function.name)
        if call.function.name == "final_result":
            Address.model_validate_json(call.function.arguments)
            break
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.extend(run_tools([call]))
    assert called == ["get_weather", "final_result"]


def test_a_forced_tool_is_called_again_after_its_result(client: openai.OpenAI) -> None:
    """instructor's tools mode forces its response-model tool, and after a validation
    error sends the error as the tool's result and asks again."""
    tool = openai.pydantic_function_tool(Address)
    forced = {"type": "function", "function": {"name": "Address"}}
    first = client.chat.completions.create(
        model="m", messages=ASK, tools=[tool], tool_choice=forced
    )
    [call] = first.choices[0].message.tool_calls or []
    retry = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Validation error: try again"},
    ]
    again = client.chat.completions.create(
        model="m", messages=retry, tools=[tool], tool_choice=forced
    )
    [second] = again.choices[0].message.tool_calls or []
    assert second.function.name == "Address" and second.id != call.id
    Address.model_validate_json(second.function.arguments)


def test_a_tool_call_left_without_its_result_is_refused(client: openai.OpenAI) -> None:
    choice = first_call(client, tools=[WEATHER, TIME])
    assistant = choice.message.model_dump(exclude_none=True)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            messages=[*ASK, assistant, {"role": "user", "content": "well?"}],
            tools=[WEATHER],
        )
    assert choice.message.tool_calls[0].id in caught.value.message


def test_results_of_parallel_calls_are_all_summarised(client: openai.OpenAI) -> None:
    calls = [
        {"id": f"call_{k}", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        for k in range(2)
    ]
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_0", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_1", "content": "midnight"},
    ]
    completion = client.chat.completions.create(model="m", messages=messages, tools=[TIME])
    assert completion.choices[0].message.content == "The tools returned: noon; midnight"


def test_the_final_answer_follows_the_response_format(client: openai.OpenAI) -> None:
    """An agent with native structured output: tools first, then the document."""
    messages, _ = agent_loop(client, tools=[WEATHER])
    final = client.chat.completions.parse(
        model="m", messages=messages, tools=[WEATHER], response_format=Address
    )
    assert isinstance(final.choices[0].message.parsed, Address)


# -- loops that write their calls as text, finishing tools ---------------------------

#: smolagents' finishing tool, as its ToolCallingAgent offers it.
FINAL_ANSWER = {
    "type": "function",
    "function": {
        "name": "final_answer",
        "description": "Provides a final answer to the given problem.",
        "parameters": {
            "type": "object",
            "properties": {
                "answer": {"type": "string", "description": "The final answer to the problem"}
            },
            "required": ["answer"],
        },
    },
}


def written(call: Any) -> dict[str, Any]:
    """The assistant turn as smolagents keeps it: the call written out as text."""
    spelled = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": json.loads(call.function.arguments)},
    }
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": f"Calling tools:\n[{spelled!r}]"}],
    }


def observed(result: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": f"Observation:\n{result}"}]}


def called(client: openai.OpenAI, messages: list[Any], **request: Any) -> Any:
    [call] = (
        client.chat.completions.create(model="m", messages=messages, **request)
        .choices[0]
        .message.tool_calls
    )
    return call


def test_a_result_sent_as_a_user_message_ends_in_the_finishing_tool(
    client: openai.OpenAI,
) -> None:
    """smolagents' loop: `required`, the result as "Observation: ..." from the user,
    and the run ends only when `final_answer` is called."""
    tools = [WEATHER, FINAL_ANSWER]
    first = called(client, ASK, tools=tools, tool_choice="required")
    assert first.function.name == "get_weather"
    messages = [*ASK, written(first), observed("4 degrees")]
    final = called(client, messages, tools=tools, tool_choice="required")
    assert final.function.name == "final_answer"
    assert json.loads(final.function.arguments) == {"answer": "The tool returned: 4 degrees"}


def test_without_a_finishing_tool_a_written_result_is_summarised(client: openai.OpenAI) -> None:
    first = called(client, ASK, tools=[WEATHER])
    messages = [*ASK, written(first), observed("4 degrees")]
    choice = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER])
    assert choice.choices[0].message.content == "The tool returned: 4 degrees"


def test_a_user_message_after_plain_assistant_text_is_a_new_question(
    client: openai.OpenAI,
) -> None:
    """Only a call the mock made (its own id in the text) turns the next user message
    into a result; an OpenAI-style id or no id leaves it a question."""
    for text in ("Sure, which city?", "Calling tools: [{'id': 'call_AbC9xYz0123456789QwErTyU'}]"):
        messages = [
            *ASK,
            {"role": "assistant", "content": text},
            {"role": "user", "content": "Bergen"},
        ]
        reply = client.chat.completions.create(model="m", messages=messages)
        assert reply.choices[0].message.content == "This is a mock reply from mock-gpt to: Bergen"


def test_after_a_written_final_answer_the_next_task_starts_a_new_loop(
    client: openai.OpenAI,
) -> None:
    """smolagents' second run (`reset=False`): the new task arrives in the same user
    message as the final answer's observation; the mock works on it again."""
    tools = [WEATHER, FINAL_ANSWER]
    first = called(client, ASK, tools=tools, tool_choice="required")
    messages = [*ASK, written(first), observed("4 degrees")]
    final = called(client, messages, tools=tools, tool_choice="required")
    follow_up = observed("The tool returned: 4 degrees\nNew task:\nAnd in Bergen?")
    again = called(
        client, [*messages, written(final), follow_up], tools=tools, tool_choice="required"
    )
    assert again.function.name == "get_weather"


@pytest.mark.parametrize(
    ("name", "description", "finishing"),
    [
        ("final_answer", "", True),
        ("final_result", "", True),
        ("final_result_Forecast", "", True),
        ("finish", "", True),
        ("submit", "", True),
        ("attempt_completion", "", True),
        ("taskComplete", "", True),
        ("wrap_up", "Marks the task as complete. That is, signals that all is known.", True),
        ("respond", "Provides a final answer to the given problem.", True),
        ("get_final_score", "", False),
        ("submit_order", "", False),
        ("think", "Use this to think before you give the final answer.", False),
        ("get_weather", "Current weather for a city.", False),
    ],
)
def test_finishing_tools_are_known_by_name_or_description(
    name: str, description: str, finishing: bool
) -> None:
    assert is_finishing(name, description) is finishing


# -- argument values named by the description or the conversation --------------------


def handoff_tool(listing: str) -> dict[str, Any]:
    """llama-index's handoff: the agents it may hand off to are in its description."""
    return {
        "type": "function",
        "function": {
            "name": "handoff",
            "description": "Useful for handing off to another agent.\n\n"
            f"Currently available agents:\n{listing}\n",
            "parameters": {
                "type": "object",
                "properties": {
                    "to_agent": {"title": "To Agent", "type": "string"},
                    "reason": {"title": "Reason", "type": "string"},
                },
                "required": ["to_agent", "reason"],
                "additionalProperties": False,
            },
        },
    }


AGENTS = "{'forecaster': 'Knows the weather', 'critic': 'Reviews the drafts'}"


@pytest.mark.parametrize(
    ("question", "agent"),
    [("What is the weather in Oslo?", "forecaster"), ("Ask the critic, please.", "critic")],
)
def test_a_handoff_names_an_agent_its_description_lists(
    client: openai.OpenAI, question: str, agent: str
) -> None:
    """The first listed agent, unless the conversation names another one."""
    ask = [{"role": "user", "content": question}]
    arguments = json.loads(called(client, ask, tools=[handoff_tool(AGENTS)]).function.arguments)
    assert arguments["to_agent"] == agent
    assert arguments["reason"] == "example reason"  # not a participant: the example


def test_bulleted_names_are_candidates_too(client: openai.OpenAI) -> None:
    delegate = {
        "type": "function",
        "function": {
            "name": "delegate_work",
            "description": "Delegate a task to a coworker:\n- Senior Researcher: finds facts\n"
            "- Writer: drafts the text",
            "parameters": {
                "type": "object",
                "properties": {"task": {"type": "string"}, "coworker": {"type": "string"}},
                "required": ["task", "coworker"],
            },
        },
    }
    arguments = json.loads(called(client, ASK, tools=[delegate]).function.arguments)
    assert arguments == {"task": "example task", "coworker": "Senior Researcher"}


def unit_tool(unit: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"unit": unit}, "required": ["unit"]}
    return {"type": "function", "function": {"name": "convert", "parameters": schema}}


@pytest.mark.parametrize(
    ("unit", "question", "expected"),
    [
        ({"enum": ["celsius", "fahrenheit"]}, "What is it in Fahrenheit?", "fahrenheit"),
        ({"enum": ["celsius", "fahrenheit"]}, "What is it?", "celsius"),
        (
            {"type": "string", "description": "Either 'celsius' or 'fahrenheit'."},
            "What is it in fahrenheit?",
            "fahrenheit",
        ),
        ({"type": "string", "description": "Either 'celsius' or 'fahrenheit'."}, "Hm?", "celsius"),
        # A value its schema would refuse is not used: the example stays.
        (
            {"type": "string", "maxLength": 4, "description": "Either 'celsius' or 'fahrenheit'."},
            "What is it?",
            "exam",
        ),
        ({"type": "string", "pattern": "^[CF]$", "description": "'celsius'"}, "Hm?", "C"),
    ],
)
def test_enum_like_values_follow_the_conversation(
    client: openai.OpenAI, unit: dict[str, Any], question: str, expected: str
) -> None:
    tool = unit_tool(unit)
    call = called(client, [{"role": "user", "content": question}], tools=[tool])
    arguments = json.loads(call.function.arguments)
    assert arguments == {"unit": expected}
    jsonschema.validate(arguments, schema_of(tool))


def test_a_finishing_tool_with_one_string_carries_the_answer(client: openai.OpenAI) -> None:
    """Before any tool ran, a finishing tool's answer is the mock's text reply."""
    done = {
        "type": "function",
        "function": {
            "name": "finish",
            "parameters": {"type": "object", "properties": {"summary_text": {"type": "string"}}},
        },
    }
    call = called(client, ASK, tools=[done], tool_choice="required")
    assert json.loads(call.function.arguments) == {
        "summary_text": "This is a mock reply from mock-gpt to: What is the weather in Oslo?"
    }


def test_a_structured_output_tool_keeps_its_example(client: openai.OpenAI) -> None:
    """pydantic-ai's `final_result` with several fields is a document, not an answer
    string: its fields stay examples of the schema."""
    final_result = openai.pydantic_function_tool(Address, name="final_result")
    call = called(client, ASK, tools=[final_result], tool_choice="required")
    assert json.loads(call.function.arguments) == {
        "city": "example city",
        "postcode": "example po",  # its maxLength: 10
    }


# -- legacy functions ----------------------------------------------------------------

LEGACY = [WEATHER["function"], TIME["function"]]


def test_functions_are_answered_with_a_function_call(client: openai.OpenAI) -> None:
    choice = first_call(client, functions=LEGACY)
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None and choice.message.content is None
    assert choice.message.function_call.name == "get_weather"
    jsonschema.validate(json.loads(choice.message.function_call.arguments), schema_of(WEATHER))


def test_function_call_none_and_by_name(client: openai.OpenAI) -> None:
    assert first_call(client, functions=LEGACY, function_call="none").finish_reason == "stop"
    named = first_call(client, functions=LEGACY, function_call={"name": "get_time"})
    assert named.message.function_call.name == "get_time"


def test_a_function_result_ends_the_legacy_loop(client: openai.OpenAI) -> None:
    call = first_call(client, functions=LEGACY).message
    messages = [
        *ASK,
        call.model_dump(exclude_none=True),
        {"role": "function", "name": "get_weather", "content": "4 degrees"},
    ]
    completion = client.chat.completions.create(model="m", messages=messages, functions=LEGACY)
    assert completion.choices[0].message.content == "The tool returned: 4 degrees"


def test_a_streamed_function_call_assembles(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="m", messages=ASK, functions=LEGACY) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == "function_call"
    assert final.message.function_call is not None
    assert (
        final.message.function_call.arguments
        == first_call(client, functions=LEGACY).message.function_call.arguments
    )


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"function_call": "auto"}, "function_call"),
        ({"functions": LEGACY, "function_call": {"name": "nope"}}, "function_call"),
        ({"functions": LEGACY, "tools": [WEATHER]}, "functions"),
    ],
)
def test_legacy_misuse_is_refused(
    client: openai.OpenAI, request_fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=ASK, **request_fields)
    assert caught.value.body["param"] == param


# -- custom tools --------------------------------------------------------------------


def test_only_custom_tools_offered_gives_a_custom_call(client: openai.OpenAI) -> None:
    choice = first_call(client, tools=[SHELL])
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "custom" and call.custom.name == "shell"
    assert call.custom.input == "What is the weather in Oslo?"


def test_a_function_is_preferred_unless_the_custom_tool_is_named(client: openai.OpenAI) -> None:
    [auto] = first_call(client, tools=[SHELL, WEATHER]).message.tool_calls
    assert auto.type == "function"
    named = {"type": "custom", "custom": {"name": "shell"}}
    [forced] = first_call(client, tools=[SHELL, WEATHER], tool_choice=named).message.tool_calls
    assert forced.type == "custom"


def test_a_streamed_custom_call_assembles(client: openai.OpenAI) -> None:
    """The SDK's stream helper cannot assemble custom calls (its delta type knows
    only functions), so the raw chunks are put together here."""
    stream = client.chat.completions.create(model="m", messages=ASK, tools=[SHELL], stream=True)
    head: dict[str, Any] = {}
    pieces = []
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or ():
            raw = call.model_dump()
            head = head or raw
            pieces.append(raw["custom"]["input"])
    assert head["type"] == "custom" and head["custom"]["name"] == "shell"
    assert "".join(pieces) == "What is the weather in Oslo?"


# -- n choices -----------------------------------------------------------------------


def test_n_choices_each_answer_with_their_own_call_ids(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER], n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    ids = {c.message.tool_calls[0].id for c in completion.choices}
    assert len(ids) == 3
    one = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER])
    assert completion.usage and one.usage
    assert completion.usage.completion_tokens == 3 * one.usage.completion_tokens


def test_n_streamed_choices_assemble_separately(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="m", messages=ASK, n=2) as stream:
        final = stream.get_final_completion()
    assert [c.index for c in final.choices] == [0, 1]
    assert final.choices[0].message.content == final.choices[1].message.content
    assert final.choices[0].message.content == first_call(client).message.content


def test_n_beyond_the_limit_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=ASK, n=129)
    assert caught.value.body["code"] == "integer_above_max_value"


def test_answers_are_deterministic_over_http(client: openai.OpenAI) -> None:
    def answer() -> bytes:
        completion = client.chat.completions.create(
            model="m", messages=ASK, tools=[WEATHER], n=2, response_format={"type": "text"}
        )
        return orjson.dumps([c.model_dump() for c in completion.choices])

    assert answer() == answer()
