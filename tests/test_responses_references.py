"""Item references (`{"type": "item_reference", "id": ...}`): an input item that stands
for an item of an earlier stored response of the same key, as the Vercel AI SDK's
`openai(model)` provider sends earlier assistant output on later turns.

- The translation: both of OpenAI's forms are references; the input is translated
  provisionally until the items are read, then again whole, and (a property) the two
  steps accept exactly the conversations, and give exactly the chat messages, that
  sending the items themselves does.
- The gateway: second and third turns that refer to a first turn's message, function
  call, a client's reasoning item and a stored call output, streamed and not; an
  unknown id and another key's id get the same 404 (OpenAI's words); the bounds; a
  conversation continued by id that also refers to its own items; and, with the Redis
  store, turns that go on after the gateway restarted.

The store's index itself (both stores, one model) is tests/test_responses_quotas.py's;
the wall between tenants, tests/test_isolation_responses.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responses.errors import InvalidRequest
from responses.items import normalize_input
from responses.request import resolve_references, to_chat
from responses.store import Owner, StoredResponse, encode
from tests.examples import examples
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, text_events
from tests.services import RedisServer
from tests.support import ServerThread, one_deployment, running_gateway, sdk

# --- the translation ------------------------------------------------------------------------


def test_both_of_openais_forms_are_references() -> None:
    items = normalize_input(
        [
            {"type": "item_reference", "id": "msg_1"},
            {"id": "fc_1"},
            {"role": "user", "content": "x"},
        ]
    )
    assert items[:2] == [
        {"type": "item_reference", "id": "msg_1"},
        {"type": "item_reference", "id": "fc_1"},
    ]


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"type": "item_reference"}, "input[0].id", "missing_required_parameter"),
        ({"type": "item_reference", "id": ""}, "input[0].id", "invalid_type"),
        ({"id": 7}, "input[0].id", "invalid_type"),
        ({"type": "item_reference", "id": "m", "role": "user"}, "input[0].role",
         "unknown_parameter"),
        ({"id": "m", "content": "x"}, "input[0].type", "missing_required_parameter"),
    ],
)  # fmt: skip
def test_malformed_references_are_refused(item: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        to_chat({"model": "m", "input": [item]})
    assert (refused.value.param, refused.value.code) == (param, code)


@pytest.mark.parametrize(
    "input",
    [
        [{"id": "msg_1"}, {"id": "msg_1"}],
        [{"id": "msg_1"}, {"type": "message", "id": "msg_1", "role": "user", "content": "x"}],
    ],
    ids=["referred_twice", "referred_and_sent"],
)
def test_an_item_appears_once(input: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        to_chat({"model": "m", "input": input})
    assert refused.value.message == (
        "Duplicate item found with id msg_1. Remove duplicate items from your input and try again."
    )
    assert (refused.value.param, refused.value.code) == ("input", None)


def test_a_translation_is_provisional_until_its_references_are_read() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    body = {
        "model": "m",
        "instructions": "Be brief.",
        # A call a referenced output answers: open until the reference is read.
        "input": [{"role": "user", "content": "hi"}, call, {"id": "fco_1"}],
    }
    translation = to_chat(body)
    assert translation.references == ("fco_1",)
    assert [m["role"] for m in translation.chat["messages"]] == ["system", "user", "assistant"]
    output = {"id": "fco_1", "type": "function_call_output", "call_id": "c1", "output": "ok",
              "status": "completed"}  # fmt: skip
    resolved, messages = resolve_references(translation, {"fco_1": output})
    assert resolved.references == () and resolved.input_items[2] == output
    assert messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    # Resolved, it is checked whole: an output that answers nothing is refused.
    stray = {**output, "call_id": "c9"}
    with pytest.raises(InvalidRequest) as refused:
        resolve_references(translation, {"fco_1": stray})
    assert refused.value.code == "invalid_function_call_output"


@st.composite
def inputs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Agent inputs (messages, calls and their outputs, reasoning), some faulty (an
    output for no call, a call left open, outputs out of order)."""
    items: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["user", "assistant", "call", "output", "reasoning"]))
        if kind in ("user", "assistant"):
            items.append({"role": kind, "content": f"{kind} {n}"})
        elif kind == "reasoning":
            items.append({"type": "reasoning", "id": f"rs_{n}", "summary": []})
        else:
            call_id = f"c{draw(st.integers(0, 3))}"
            if kind == "call":
                items.append({"type": "function_call", "call_id": call_id, "name": "f",
                              "arguments": "{}"})  # fmt: skip
            else:
                items.append({"type": "function_call_output", "call_id": call_id, "output": "ok"})
    return items


def outcome(run: Any) -> Any:
    try:
        return run()
    except InvalidRequest:
        return "refused"


@given(items=inputs(), chosen=st.sets(st.integers(0, 6)))
@settings(max_examples=examples(150), deadline=None)
def test_references_translate_exactly_as_the_items_they_name(
    items: list[dict[str, Any]], chosen: set[int]
) -> None:
    """Referring to stored items, then reading them, accepts exactly the inputs, and
    sends exactly the chat messages, that sending the items does."""
    canonical = outcome(lambda: normalize_input(items))
    assert canonical != "refused"
    direct = outcome(lambda: to_chat({"model": "m", "input": canonical}).chat["messages"])
    found = {canonical[i]["id"]: canonical[i] for i in chosen if i < len(canonical)}
    referred = [{"id": item["id"]} if item["id"] in found else item for item in canonical]

    def two_steps() -> Any:
        return resolve_references(to_chat({"model": "m", "input": referred}), found)[1]

    assert outcome(two_steps) == direct


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "é", "d\n"]), JSON), max_size=8))
@settings(max_examples=examples(100), deadline=None)
def test_each_indexed_item_is_cut_from_its_record_exactly(pairs: list[tuple[str, Any]]) -> None:
    """The index's places cut each item's own JSON out of the record's items blob,
    whatever the items hold; an id used twice is the later item's."""
    items = [{"id": item_id, "type": "message", "value": value} for item_id, value in pairs]
    encoded = encode(StoredResponse({"id": "resp_1", "output": []}, items, Owner("t", "k")))
    assert orjson.loads(encoded.items) == items
    last = {item["id"]: item for item in items}
    assert set(encoded.index) == set(last)
    for item_id, place in encoded.index.items():
        assert orjson.loads(encoded.item(place)) == last[item_id]


# --- the gateway ------------------------------------------------------------------------------

KEYS = [
    {"id": name, "key_sha256": hashlib.sha256(name.encode()).hexdigest(), "roles": ["user"]}
    for name in ("alice", "bob")
]
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
LET_ME_CHECK = chat_body("Let me check.")
LET_ME_CHECK["choices"][0]["message"]["tool_calls"] = [CALL]
LET_ME_CHECK["choices"][0]["finish_reason"] = "tool_calls"


def config(url: str, **responses: Any) -> dict[str, Any]:
    deployment = {"api_base": url + "/v1", "api_key": "sk-x", "retry": {"attempts": 1}}
    return {
        **one_deployment("g", id="scripted", provider="openai", model="m", **deployment),
        "keys": KEYS,
        "responses": {"max_item_references": 6, "max_chain_bytes": 40_000, **responses},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    scripted = ScriptedUpstream()
    with ServerThread(scripted) as server:
        yield scripted, server


@pytest.fixture(scope="module")
def gateway(upstream: tuple[ScriptedUpstream, ServerThread]) -> Iterator[ServerThread]:
    with running_gateway(config(upstream[1].url)) as gateway:
        yield gateway


def client(gateway: ServerThread, key: str = "alice") -> openai.OpenAI:
    return sdk(gateway.url).with_options(api_key=key)


def create(gateway: ServerThread, key: str = "alice", **body: Any) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/responses",
        json={"model": "g", **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def first_turn(gateway: ServerThread, scripted: ScriptedUpstream) -> dict[str, Any]:
    """Alice asks; the model answers with a message and a function call."""
    scripted.script = lambda n, body: Answer(body=LET_ME_CHECK)
    reply = create(gateway, input="Weather in Oslo?", tools=TOOLS)
    assert reply.status_code == 200, reply.text
    first: dict[str, Any] = reply.json()
    return first


def test_later_turns_refer_to_earlier_items_as_the_vercel_ai_sdk_sends_them(
    gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    scripted, _ = upstream
    first = first_turn(gateway, scripted)
    message, call = first["output"]
    # Second turn, as the AI SDK's default provider sends it (streamed): the earlier
    # assistant text by reference, the function call and its output in full.
    scripted.script = lambda n, body: Answer(events=text_events(["It is ", "21 C."]))
    with client(gateway).responses.stream(
        model="g",
        tools=TOOLS,
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "item_reference", "id": message["id"]},
            {
                "type": "function_call",
                "call_id": call["call_id"],
                "name": "get_weather",
                "arguments": call["arguments"],
            },
            {"type": "function_call_output", "call_id": call["call_id"], "output": "21 C"},
        ],
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "It is 21 C."
    assert scripted.requests[-1]["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
    ]
    # The second response stored the items themselves, not the reference: listing
    # its input shows the message, ids and all.
    listed = client(gateway).responses.input_items.list(second.id, order="asc").data
    assert [item.id for item in listed][1] == message["id"]
    output_id = listed[3].id
    # Third turn: everything earlier by reference (the first turn's call, and the
    # call output stored as the second turn's input), then a new question.
    scripted.script = lambda n, body: Answer(body=chat_body("Sunny."))
    third = client(gateway).responses.create(
        model="g",
        tools=TOOLS,
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "item_reference", "id": message["id"]},
            {"type": "item_reference", "id": call["id"]},
            {"id": output_id},
            {"type": "item_reference", "id": second.output[0].id},
            {"role": "user", "content": "And tomorrow?"},
        ],
    )
    assert third.output_text == "Sunny."
    assert scripted.requests[-1]["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "assistant", "content": "It is 21 C."},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_any_stored_item_type_resolves(
    gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    """A reasoning item a client sent (from another model) is stored with its
    request, and a later turn may refer to it: stored, listed, nothing sent."""
    scripted, _ = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("ok"))
    reasoning = {"type": "reasoning", "id": "rs_from_elsewhere",
                 "summary": [{"type": "summary_text", "text": "Thought about it."}]}  # fmt: skip
    assert create(gateway, input=[reasoning, {"role": "user", "content": "hi"}]).status_code == 200
    later = create(
        gateway, input=[{"id": "rs_from_elsewhere"}, {"role": "user", "content": "and?"}]
    )
    assert later.status_code == 200, later.text
    assert scripted.requests[-1]["messages"] == [{"role": "user", "content": "and?"}]
    listed = client(gateway).responses.input_items.list(later.json()["id"], order="asc")
    assert listed.data[0].to_dict() == reasoning


def test_another_keys_item_is_exactly_an_unknown_one(
    gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    scripted, _ = upstream
    first = first_turn(gateway, scripted)
    calls = scripted.calls
    for alices in (first["output"][0]["id"], first["output"][1]["id"]):
        fake = "msg_" + "0" * 48
        theirs = create(gateway, "bob", input=[{"id": alices}, {"role": "user", "content": "?"}])
        unknown = create(gateway, "bob", input=[{"id": fake}, {"role": "user", "content": "?"}])
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.text.replace(alices, "ID") == unknown.text.replace(fake, "ID")
    assert unknown.json() == {
        "error": {
            "message": f"Item with id '{fake}' not found. Items are not persisted when `store` "
            "is set to false. Try again with `store` set to true, or remove this item from "
            "your input.",
            "type": "invalid_request_error",
            "param": "input",
            "code": None,
        }
    }
    with pytest.raises(openai.NotFoundError):
        client(gateway, "bob").responses.create(model="g", input=[{"id": first["id"]}])
    assert scripted.calls == calls  # nothing reached the model
    # Alice's are hers (and not stored with `store: false`: not found either).
    scripted.script = lambda n, body: Answer(body=chat_body("ok"))
    mine = create(
        gateway, input=[{"id": first["output"][0]["id"]}, {"role": "user", "content": "?"}]
    )
    assert mine.status_code == 200
    unstored = create(gateway, input="not kept", store=False).json()["output"][0]["id"]
    assert create(gateway, input=[{"id": unstored}]).status_code == 404


def test_the_bounds(gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]) -> None:
    """At most `max_item_references` (6 here) references; their items' bytes, with the
    conversation a request continues, at most `max_chain_bytes` (40,000 here)."""
    scripted, _ = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("x" * 15_000))
    big = [create(gateway, input=f"long answer {n}").json() for n in range(3)]
    ids = [response["output"][0]["id"] for response in big]
    seven = [{"id": f"msg_{n}"} for n in range(7)]
    refused = create(gateway, input=seven).json()["error"]
    assert (refused["code"], refused["param"]) == ("too_many_item_references", "input")
    assert "responses.max_item_references" in refused["message"]
    two = create(gateway, input=[{"id": ids[0]}, {"id": ids[1]}, {"role": "user", "content": "?"}])
    assert two.status_code == 200
    three = create(gateway, input=[{"id": i} for i in ids]).json()["error"]
    assert (three["code"], three["param"]) == ("conversation_too_large", "input")
    # With the conversation it continues: 2 x 15 KB referred to, on top of 15 KB.
    chained = create(
        gateway, previous_response_id=big[2]["id"], input=[{"id": ids[0]}, {"id": ids[1]}]
    ).json()["error"]
    assert chained["code"] == "conversation_too_large"
    assert "and the conversation it continues" in chained["message"]


def test_a_conversation_continued_by_id_may_refer_to_items_outside_it(
    gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    """With both: the conversation `previous_response_id` names first, then the input
    with its references resolved in place; an item already in that conversation is
    refused as a duplicate, as OpenAI refuses it."""
    scripted, _ = upstream
    scripted.script = lambda n, body: Answer(body=chat_body("The code is 42."))
    elsewhere = create(gateway, input="Remember the code.").json()
    scripted.script = lambda n, body: Answer(body=chat_body("Sure."))
    head = create(gateway, input="Let's talk.").json()
    scripted.script = lambda n, body: Answer(body=chat_body("42."))
    both = create(
        gateway,
        previous_response_id=head["id"],
        input=[{"id": elsewhere["output"][0]["id"]}, {"role": "user", "content": "The code?"}],
    )
    assert both.status_code == 200, both.text
    assert scripted.requests[-1]["messages"] == [
        {"role": "user", "content": "Let's talk."},
        {"role": "assistant", "content": "Sure."},
        {"role": "assistant", "content": "The code is 42."},
        {"role": "user", "content": "The code?"},
    ]
    twice = create(
        gateway, previous_response_id=head["id"], input=[{"id": head["output"][0]["id"]}]
    )
    assert twice.status_code == 400
    assert twice.json()["error"]["message"].startswith(
        f"Duplicate item found with id {head['output'][0]['id']}."
    )


def test_references_resolve_after_a_restart_with_the_redis_store(
    redis: RedisServer, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    scripted, server = upstream
    settings = config(server.url, store=redis.url)
    with running_gateway(settings) as before:
        first = first_turn(before, scripted)
    message, call = first["output"]
    with running_gateway(settings) as after:  # a new process's view: only Redis is shared
        scripted.script = lambda n, body: Answer(body=chat_body("It is 21 C."))
        reply = create(
            after,
            tools=TOOLS,
            input=[
                {"role": "user", "content": "Weather in Oslo?"},
                {"type": "item_reference", "id": message["id"]},
                {"type": "item_reference", "id": call["id"]},
                {"type": "function_call_output", "call_id": call["call_id"], "output": "21 C"},
            ],
        )
        assert reply.status_code == 200, reply.text
        assert scripted.requests[-1]["messages"][1] == {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [CALL],
        }
        foreign = create(after, "bob", input=[{"id": message["id"]}])
        assert foreign.status_code == 404
