"""Continuing a stored conversation in two steps (responses/items.py `join`,
responses/conversation.py), and what input items may carry.

The property: translating a request's own input first and joining the replayed
history afterwards gives exactly the chat messages, and refuses exactly the
conversations, that translating history and input in one pass does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.fields import echoed
from responses import items as items_module
from responses import request as request_module
from responses import tool_params
from responses.conversation import rebuild, release
from responses.errors import InvalidRequest
from responses.items import Conversation, normalize_input
from responses.request import to_chat
from tests.examples import examples

OPENAPI = json.loads((Path(__file__).parent / "data" / "openai_input_items_2.3.0.json").read_text())
SCHEMAS: dict[str, set[str]] = {name: set(fields) for name, fields in OPENAPI["schemas"].items()}


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "ok"}


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Mostly valid agent conversations (turns of messages, calls and their outputs, in
    any order after them), some with faults (a call id used twice; an item dropped,
    repeated, or moved)."""
    items: list[dict[str, Any]] = []
    made = 0
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["user", "assistant", "calls", "bare calls", "reasoning"]))
        if kind in ("user", "assistant"):
            items.append({"role": kind, "content": kind[0]})
        elif kind == "reasoning":
            items.append({"type": "reasoning", "id": "rs_1", "summary": []})
        else:
            if kind == "calls":
                items.append({"role": "assistant", "content": "a"})
            if made and draw(st.integers(0, 9)) == 0:  # a fault: a call id used again
                ids = [f"c{draw(st.integers(0, made - 1))}"]
            else:
                ids = [f"c{made + k}" for k in range(draw(st.integers(1, 3)))]
                made += len(ids)
            items += [call(i) for i in ids]
            items += [output(i) for i in draw(st.permutations(ids))]
    fault = draw(st.sampled_from([None, None, "drop", "repeat", "move"]))
    if fault is not None and items:
        at = draw(st.integers(0, len(items) - 1))
        if fault == "drop":
            del items[at]
        elif fault == "repeat":
            items.insert(draw(st.integers(0, len(items))), items[at])
        else:
            items.insert(draw(st.integers(0, len(items) - 1)), items.pop(at))
    return items


def one_pass(
    history: list[dict[str, Any]], current: list[dict[str, Any]], instructions: str
) -> Any:
    """The chat messages of history and input translated as one conversation, or the
    refusal's code."""
    conversation = Conversation()
    if instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    try:
        for item in history:
            conversation.add(item, None)
        for index, item in enumerate(normalize_input(current)):
            conversation.add(item, index)
        return conversation.finish()
    except InvalidRequest as exc:
        return exc.code


def two_steps(
    history: list[dict[str, Any]], current: list[dict[str, Any]], instructions: str
) -> Any:
    body = {"model": "m", "input": current, "previous_response_id": "resp_1"}
    if instructions:
        body["instructions"] = instructions
    try:
        return to_chat(body, history).chat["messages"]
    except InvalidRequest as exc:
        return exc.code


@settings(max_examples=examples(500), deadline=None)
@given(
    raw=conversations(),
    split=st.integers(0, 30),
    instructions=st.sampled_from(["", "be brief"]),
)
def test_joining_the_history_later_is_translating_it_in_one_pass(
    raw: list[dict[str, Any]], split: int, instructions: str
) -> None:
    history = normalize_input(raw[:split])
    current = raw[split:]
    expected, got = (
        one_pass(history, current, instructions),
        two_steps(history, current, instructions),
    )
    if isinstance(expected, list):
        assert got == expected
    else:
        # Refused either way; the code may name the other half of the same problem
        # (an output without its call is also a call without its output).
        assert isinstance(got, str), (expected, got)


def test_calls_opening_the_input_join_the_assistant_message_ending_the_history() -> None:
    history = normalize_input(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "let me see"}]
    )
    current = [call("a"), output("a")]
    messages = two_steps(history, current, "")
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "let me see" and messages[1]["tool_calls"][0]["id"] == "a"
    assert messages == one_pass(history, current, "")


async def test_rebuild_gives_the_loop_turns_and_release_lets_go_in_slices() -> None:
    history = normalize_input([{"role": "user", "content": f"turn {n}"} for n in range(50)])
    blobs = [json.dumps(history[n : n + 5]).encode() for n in range(0, 50, 5)]
    translation = to_chat({"model": "m", "input": "next", "previous_response_id": "resp_1"})
    turns = 0

    async def other_request() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_request())
    await asyncio.sleep(0)
    before = turns
    messages = await rebuild(translation, list(translation.chat["messages"]), blobs, slice_s=0)
    rebuilt = turns - before
    assert len(messages) == 51 and messages[-1] == {"role": "user", "content": "next"}
    before = turns
    await release(messages, slice_s=0)
    released = turns - before
    other.cancel()
    assert messages == []
    assert rebuilt >= 49 and released >= 50  # a turn after every item, every message


# --- the fields OpenAI defines -------------------------------------------------------------


def test_item_fields_are_openais() -> None:
    """items.py's allowed fields are the OpenAPI document's (tests/data, 2.3.0): plus `id`
    on a message (the API returns input items with ids, and clients send them back)."""
    message = SCHEMAS["EasyInputMessage"] | SCHEMAS["InputMessage"] | SCHEMAS["OutputMessage"]
    assert message == items_module.MESSAGE_FIELDS
    assert SCHEMAS["FunctionToolCall"] == items_module.CALL_FIELDS
    assert SCHEMAS["FunctionCallOutputItemParam"] == items_module.OUTPUT_FIELDS
    assert SCHEMAS["ReasoningItem"] == items_module.REASONING_FIELDS
    parts = items_module.PART_FIELDS
    for kind, schema in (
        ("input_text", "InputTextContent"),
        ("input_image", "InputImageContent"),
        ("input_file", "InputFileContent"),
        ("output_text", "OutputTextContent"),
        ("refusal", "RefusalContent"),
        ("summary_text", "SummaryTextContent"),
        ("reasoning_text", "ReasoningTextContent"),
    ):
        assert parts[kind] == SCHEMAS[schema], kind
    assert set(request_module.REASONING_KEYS) == SCHEMAS["Reasoning"]
    assert tool_params.TOOL_CHOICE_KEYS["function"] == SCHEMAS["ToolChoiceFunction"]
    assert tool_params.TOOL_CHOICE_KEYS["allowed_tools"] == SCHEMAS["ToolChoiceAllowed"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"reasoning": {"effort": "low", "padding": "x"}}, "reasoning.padding"),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "f", "x": 1},
            },
            "tool_choice.x",
        ),
        (
            {"input": [{"role": "user", "content": "hi", "x" * 1000: 1}]},
            echoed("input[0]." + "x" * 1000),  # cut as every echoed name is
        ),
    ],
)
def test_unknown_fields_of_echoed_parameters_are_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat({"model": "m", "input": "hi", **body})
    assert (caught.value.code, caught.value.param) == ("unknown_parameter", param)


def test_a_reasoning_item_keeps_only_its_fields() -> None:
    translation = to_chat(
        {
            "model": "m",
            "input": [
                {"type": "reasoning", "id": "rs_1", "status": "completed",
                 "summary": [{"type": "summary_text", "text": "thought"}],
                 "content": [{"type": "reasoning_text", "text": "step"}],
                 "encrypted_content": "opaque"},
                {"role": "user", "content": "hi"},
            ],
        }
    )  # fmt: skip
    assert translation.input_items[0] == {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "thought"}],
        "content": [{"type": "reasoning_text", "text": "step"}],
        "encrypted_content": "opaque",
        "status": "completed",
    }
    assert translation.chat["messages"] == [{"role": "user", "content": "hi"}]
