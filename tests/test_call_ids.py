"""Minted call ids (tools/callids.py): calls to a bound registered tool leave the
gateway under an id of their own, in bodies, streams and the Responses API, and a
receipt issued for one such call verifies for no other. Over loopback, with a
scripted model that gives every call the id `call_1`, as models that number their
calls do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.stages.callids import _rename_chunk
from tests.servers.scripted import (
    Answer,
    ScriptedUpstream,
    chat_body,
    tool_call_body,
    tool_call_events,
)
from tests.support import ServerThread, running_gateway, tool_stack_config
from tools.binding import Bindings
from tools.callids import StreamCallIds, rename_reply_calls

MINTED = re.compile(r"call_[0-9a-f]{24}")
SCHEMA = {
    "type": "object",
    "properties": {"meter": {"type": "string"}},
    "required": ["meter"],
    "additionalProperties": False,
}
BY_REFERENCE = [{"type": "function", "function": {"name": "meter"}}]
#: A client-side tool of the same name with a schema of its own: not bound.
CLIENT_TOOL = [
    {
        "type": "function",
        "function": {"name": "meter", "parameters": {"type": "object", "properties": {}}},
    }
]
ARGUMENTS = '{"meter": "m1"}'


def model(number: int, body: dict[str, Any]) -> Answer:
    if body["messages"][-1]["role"] == "tool":
        return Answer(body=chat_body("noted"))
    if body.get("stream"):
        return Answer(events=tool_call_events("meter", ARGUMENTS, "call_1", pieces=4))
    return Answer(body=tool_call_body("meter", ARGUMENTS, "call_1"))


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    tool = ScriptedUpstream(lambda n, body: Answer(body={"reading": n}))
    with ServerThread(ScriptedUpstream(model)) as upstream, ServerThread(tool) as tool_server:
        meter = {"name": "meter", "input_schema": SCHEMA, "endpoint": tool_server.url + "/meter"}
        config = tool_stack_config(upstream.url, {**meter, "mode": "enforce"})
        with running_gateway(config) as gateway:
            yield openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-any", max_retries=0)


def ask(client: openai.OpenAI, tools: list[Any], **options: Any) -> Any:
    messages: Any = [{"role": "user", "content": "Read the meter."}]
    return client.chat.completions.create(model="g", messages=messages, tools=tools, **options)


def test_every_call_to_a_bound_tool_gets_an_id_of_its_own(client: openai.OpenAI) -> None:
    ids = {ask(client, BY_REFERENCE).choices[0].message.tool_calls[0].id for _ in range(5)}
    assert len(ids) == 5 and all(MINTED.fullmatch(i) for i in ids)


def test_a_client_side_tool_of_the_same_name_keeps_the_upstream_id(
    client: openai.OpenAI,
) -> None:
    (call,) = ask(client, CLIENT_TOOL).choices[0].message.tool_calls
    assert call.id == "call_1"


def test_a_streamed_call_has_one_minted_id_in_every_delta(client: openai.OpenAI) -> None:
    ids, arguments = [], ""
    for chunk in ask(client, BY_REFERENCE, stream=True):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                ids.append(call.id)
                arguments += call.function.arguments or ""
    assert arguments == ARGUMENTS
    named = [i for i in ids if i is not None]
    assert len(named) == 1 and MINTED.fullmatch(named[0])


def test_the_responses_api_carries_the_minted_id(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "name": "meter", "parameters": SCHEMA}]
    response = client.responses.create(model="g", input="Read the meter.", tools=tools)
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert MINTED.fullmatch(call.call_id)


def test_a_receipt_verifies_only_for_the_call_it_was_issued_for(client: openai.OpenAI) -> None:
    calls = [ask(client, BY_REFERENCE).choices[0].message.tool_calls[0] for _ in range(2)]
    http = client._client
    receipts = []
    for call in calls:
        answer = http.post(
            str(client.base_url) + "tools/meter/invoke",
            json={"tool_call_id": call.id, "arguments": {"meter": "m1"}},
        )
        assert answer.status_code == 200, answer.text
        receipts.append(answer.json())

    def conversation(result: dict[str, Any]) -> Any:
        assistant = {"role": "assistant", "tool_calls": [calls[0].model_dump()]}
        tool = {
            "role": "tool",
            "tool_call_id": calls[0].id,
            "content": result["content"],
            "seawall_receipt": result["receipt"],
        }
        return [{"role": "user", "content": "Read the meter."}, assistant, tool]

    tools: Any = BY_REFERENCE  # an agent loop offers its tools on every turn
    own = client.chat.completions.create(model="g", messages=conversation(receipts[0]), tools=tools)
    assert own.choices[0].message.content == "noted"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="g", messages=conversation(receipts[1]), tools=tools)
    assert refused.value.code == "tool_result_forged"


# -- the renaming itself ---------------------------------------------------------------

BOUND = Bindings(frozenset({"meter"}))


def test_a_body_with_no_bound_call_is_left_alone() -> None:
    body = tool_call_body("other", "{}", "call_1")
    assert not rename_reply_calls(body, BOUND)
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"


@given(
    pieces=st.integers(1, 6),
    repeat_id=st.booleans(),
    per_write=st.integers(1, 4),
)
def test_stream_renaming_keeps_every_event_and_gives_one_id(
    pieces: int, repeat_id: bool, per_write: int
) -> None:
    """Whatever the grouping of events into writes, and whether the server repeats
    the id in every delta, every event survives and the call has one minted id."""
    events = tool_call_events("meter", ARGUMENTS, "call_1", pieces)
    if repeat_id:
        for event in events:
            for call in event["choices"][0]["delta"].get("tool_calls", ()):
                call["id"] = "call_1"
    raw = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    writes = [b"".join(raw[i : i + per_write]) for i in range(0, len(raw), per_write)]
    ids = StreamCallIds(BOUND)
    out = b"".join(_rename_chunk(w, ids) for w in writes)
    back = [e for e in out.split(b"\n\n") if e]
    assert len(back) == len(raw) and back[-1] == b"data: [DONE]"
    seen = {
        call["id"]
        for event in back[:-1]
        for call in orjson.loads(event[6:])["choices"][0]["delta"].get("tool_calls", ())
        if "id" in call
    }
    assert len(seen) == 1 and MINTED.fullmatch(seen.pop())
