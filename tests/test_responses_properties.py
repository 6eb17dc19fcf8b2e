"""Properties of the Responses translation, checked with hypothesis.

- however a text or a tool call's arguments are split into deltas, the stream ends
  in the same Response as the non-streamed translation, and every event validates;
- any valid list of input items becomes messages that keep the items' order and text;
- whatever JSON a client sends, `to_chat` either translates it or raises
  `InvalidRequest`; whatever an upstream sends, `from_chat` and the stream either
  produce SDK-valid objects or raise `BadUpstreamReply`. Nothing else escapes.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from common.fields import FieldProblem, check_fields
from responses.errors import BadUpstreamReply, InvalidRequest
from responses.listing import input_items_page
from responses.request import PARAMETERS, RESPONSES_FIELDS, _check_types, to_chat
from responses.response import from_chat, message_item, output_text_part
from responses.stream import StreamTranslator
from tests.examples import examples

EVENT = TypeAdapter(ResponseStreamEvent)
TOOLS = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}]
FAST = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def splits(text: str) -> st.SearchStrategy[list[str]]:
    """`text` cut at arbitrary points (pieces may be empty)."""
    return st.lists(st.integers(0, len(text)), max_size=12).map(
        lambda cuts: [
            text[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)], strict=True)
        ]
    )


def stream_events(
    chunks: list[dict[str, Any]], stream: bool = True
) -> tuple[list[dict], StreamTranslator]:
    translation = to_chat({"model": "m", "input": "q", "stream": stream, "tools": TOOLS})
    translator = StreamTranslator(translation, "resp_p", 1.0)
    data = translator.start() + b"".join(translator.feed(c) for c in chunks) + translator.finish()
    evs = [orjson.loads(block.split(b"\n", 1)[1][6:]) for block in data[:-2].split(b"\n\n")]
    for e in evs:
        EVENT.validate_python(e)
    return evs, translator


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def without_ids(response: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(response)
    for item in copied["output"]:
        item.pop("id")
    return copied


@st.composite
def split_answers(draw: st.DrawFn) -> tuple[str, list[str], str, list[str]]:
    text = draw(st.text(max_size=60))
    arguments = draw(st.text(max_size=40))
    return text, draw(splits(text)), arguments, draw(splits(arguments))


@FAST
@given(split_answers())
def test_any_split_reassembles_to_the_same_response(
    answer: tuple[str, list[str], str, list[str]],
) -> None:
    text, pieces, arguments, argument_pieces = answer
    head = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    chunks = [chunk({"role": "assistant", "content": piece}) for piece in pieces]
    chunks.append(chunk({"tool_calls": [head]}))
    chunks += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in argument_pieces
    ]
    chunks.append(chunk({}, "tool_calls"))
    evs, translator = stream_events(chunks)
    assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == text
    message = {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }
    translation = to_chat({"model": "m", "input": "q", "stream": True, "tools": TOOLS})
    direct = from_chat(
        {
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        },
        translation,
        "resp_p",
        1.0,
    )
    assert translator.response is not None
    assert without_ids(translator.response) == without_ids(direct)
    final = Response.model_validate(translator.response)
    assert final.output_text == text


# --- item order ------------------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid item lists: messages of any role, and groups of calls each answered later."""
    items: list[dict[str, Any]] = []
    pending: list[str] = []
    counter = 0
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(
            st.sampled_from(["message", "calls", "outputs"] if pending else ["message", "calls"])
        )
        if kind == "message" and not pending:
            role = draw(st.sampled_from(["user", "system", "developer", "assistant"]))
            items.append({"role": role, "content": draw(st.text(max_size=10))})
        elif kind == "calls" and not pending:
            for _ in range(draw(st.integers(1, 3))):
                counter += 1
                call_id = f"call_{counter}"
                pending.append(call_id)
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": "f",
                        "arguments": f"[{counter}]",
                    }
                )
        else:
            for call_id in draw(st.permutations(pending)):
                items.append(
                    {"type": "function_call_output", "call_id": call_id, "output": f"out {call_id}"}
                )
            pending = []
    for call_id in pending:
        items.append(
            {"type": "function_call_output", "call_id": call_id, "output": f"out {call_id}"}
        )
    return items


def carried(message: dict[str, Any]) -> list[tuple[str, str]]:
    """What a chat message carries, in order: its text, then its calls or its result."""
    found: list[tuple[str, str]] = []
    if message["role"] == "tool":
        return [("output", message["tool_call_id"])]
    if message.get("content") is not None:  # None: an assistant turn made of calls only
        found.append((message["role"], message["content"]))
    found += [("call", call["id"]) for call in message.get("tool_calls", ())]
    return found


def expected(item: dict[str, Any]) -> tuple[str, str]:
    if item.get("type") == "function_call":
        return ("call", item["call_id"])
    if item.get("type") == "function_call_output":
        return ("output", item["call_id"])
    role = "system" if item["role"] == "developer" else item["role"]
    return (role, item["content"])


@FAST
@given(conversations())
def test_messages_keep_the_items_order(items: list[dict[str, Any]]) -> None:
    translation = to_chat({"model": "m", "input": items})
    flattened = [entry for message in translation.chat["messages"] for entry in carried(message)]
    assert flattened == [expected(item) for item in items]
    assert [item["type"] for item in translation.input_items] == [
        item.get("type", "message") for item in items
    ]


# --- robustness -----------------------------------------------------------------------------------

item_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["message", "function_call", "function_call_output", "reasoning", "item_reference"]
        )
        | st.text(max_size=5),
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | json_values,
        "content": json_values
        | st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(
                        ["input_text", "output_text", "input_image", "input_file", "refusal"]
                    )
                },
                optional={
                    "text": json_values,
                    "image_url": json_values,
                    "file_data": json_values,
                    "refusal": json_values,
                },
            ),
            max_size=3,
        ),
        "call_id": json_values | st.sampled_from(["c1", "c2"]),
        "name": json_values,
        "arguments": json_values,
        "output": json_values,
        "id": json_values,
        "summary": json_values,
        "status": json_values,
    },
)
#: A plausible value per parameter; each is also tried with arbitrary JSON.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "instructions": st.text(max_size=5),
    "tools": st.just(TOOLS),
    "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "name": "f"}]),
    "text": st.sampled_from(
        [
            {"format": {"type": "text"}},
            {"format": {"type": "json_object"}},
            {"format": {"type": "json_schema", "name": "n", "schema": {}}},
            {"verbosity": "low"},
        ]
    ),
    "max_output_tokens": st.integers(1, 100),
    "max_tool_calls": st.integers(1, 5),
    "top_logprobs": st.just(0),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "parallel_tool_calls": st.booleans(),
    "stream": st.booleans(),
    "store": st.booleans(),
    "background": st.just(False),
    "stream_options": st.just({"include_usage": True}),
    "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    "reasoning": st.sampled_from([{"effort": "low"}, {"summary": "auto"}]),
    "include": st.lists(
        st.sampled_from(["reasoning.encrypted_content", "file_search_call.results"])
    ),
    "truncation": st.sampled_from(["auto", "disabled"]),
}
bodies = st.fixed_dictionaries(
    {
        "model": st.just("m") | json_values,
        "input": st.text(max_size=5)
        | conversations()
        | st.lists(item_like, max_size=5)
        | json_values,
    },
    optional={
        key: PLAUSIBLE.get(key, st.text(max_size=5)) | json_values
        for key in sorted(PARAMETERS - {"model", "input", "previous_response_id"})
    },
)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_body_translates_or_is_refused(body: dict[str, Any]) -> None:
    refused: InvalidRequest | None = None
    try:
        translation = to_chat(body)
    except InvalidRequest as error:
        refused = error
    if refused is not None:
        assert refused.message and refused.status == 400
        assert refused.param is None or isinstance(refused.param, str)
        return
    orjson.dumps(translation.chat)
    assert translation.chat["messages"]


@FAST
@given(bodies, st.randoms(use_true_random=False))
def test_types_are_checked_as_a_check_of_every_field_would(body: dict[str, Any], rng: Any) -> None:
    """`to_chat` checks the types of the fields a body has only, in `RESPONSES_FIELDS`
    order: whatever order a client sends them in, the same field is refused with the
    same problem, and the same values are kept, as checking every field did."""
    keys = list(body)
    rng.shuffle(keys)
    every, present = ({key: body[key] for key in keys} for _ in range(2))

    def problem(check: Any, checked: dict[str, Any]) -> tuple[str, str | None, str] | None:
        try:
            check(checked)
        except FieldProblem as found:
            return found.message, found.param, found.code
        return None

    assert problem(lambda b: check_fields(b, RESPONSES_FIELDS), every) == problem(
        _check_types, present
    )
    assert repr(every) == repr(present)  # integral numbers kept as integers alike


@FAST
@given(
    st.text(max_size=8),
    st.none() | st.text(max_size=4),
    st.none() | st.just("resp_prev"),
    st.sampled_from([None, [], [message_item("msg_h", [output_text_part("a")], "completed")]]),
)
def test_a_string_input_translates_as_the_message_it_stands_for(
    text: str, instructions: str | None, previous: str | None, history: list[Any] | None
) -> None:
    """`to_chat` translates a string input without a `Conversation` (`_text_input`):
    the same chat messages, continuation and stored items (ids aside) as the user
    message of one text part it stands for, continued or not, with a history or not."""
    if previous is None:
        history = None
    body: dict[str, Any] = {"model": "m", "instructions": instructions}
    if previous is not None:
        body["previous_response_id"] = previous
    message = {"role": "user", "content": [{"type": "input_text", "text": text}]}
    as_text = to_chat({**body, "input": text}, copy.deepcopy(history))
    as_message = to_chat({**body, "input": [message]}, copy.deepcopy(history))
    assert as_text.chat == as_message.chat
    assert as_text.continuation == as_message.continuation
    assert [{**item, "id": None} for item in as_text.input_items] == [
        {**item, "id": None} for item in as_message.input_items
    ]


upstream_messages = st.fixed_dictionaries(
    {},
    optional={
        "role": json_values,
        "content": json_values,
        "refusal": json_values,
        "tool_calls": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values,
                    "function": json_values
                    | st.fixed_dictionaries(
                        {}, optional={"name": json_values, "arguments": json_values}
                    ),
                },
            ),
            max_size=3,
        ),
    },
)


@FAST
@given(upstream_messages, json_values, json_values)
def test_any_upstream_reply_is_translated_or_refused(message: Any, finish: Any, usage: Any) -> None:
    reply = {
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }
    translation = to_chat({"model": "m", "input": "q", "tools": TOOLS})
    try:
        data = from_chat(reply, translation, "resp_p", 1.0)
    except BadUpstreamReply:
        return
    Response.model_validate(data)


def maybe(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually (three times in four) a plausible value, else any JSON at all."""
    return st.one_of(plausible, plausible, plausible, json_values)


chunk_calls = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.sampled_from([0, 1, "x"]),
            "id": maybe(st.sampled_from(["call_1", "call_2"])),
            "function": maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": maybe(st.sampled_from(["f", "g"])),
                        "arguments": maybe(st.text(max_size=5)),
                    },
                )
            ),
        },
    ),
    max_size=2,
)
chunk_deltas = st.fixed_dictionaries(
    {},
    optional={
        "content": maybe(st.text(max_size=5)),
        "refusal": maybe(st.text(max_size=5)),
        "tool_calls": maybe(chunk_calls),
    },
)
chunk_choices = st.fixed_dictionaries(
    {"delta": maybe(chunk_deltas)},
    optional={
        "index": st.sampled_from([0, 0, 0, 1, None]),
        "finish_reason": maybe(st.sampled_from(["stop", "length", "tool_calls", "content_filter"])),
    },
)
chunks_strategy = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"choices": maybe(st.lists(chunk_choices, min_size=1, max_size=2))},
            optional={
                "model": maybe(st.just("m2")),
                "usage": maybe(st.just({"prompt_tokens": 1, "completion_tokens": 2})),
            },
        )
    ),
    max_size=12,
)
#: Streams of well-formed chunks only: text, refusals, tool calls (sometimes
#: interleaved, which is refused), finish reasons and usage.
plausible_chunks = st.lists(
    st.fixed_dictionaries(
        {
            "choices": st.lists(
                st.fixed_dictionaries(
                    {
                        "delta": st.fixed_dictionaries(
                            {},
                            optional={
                                "content": st.text(max_size=5),
                                "refusal": st.text(max_size=3),
                                "tool_calls": st.lists(
                                    st.fixed_dictionaries(
                                        {"index": st.sampled_from([0, 1])},
                                        optional={
                                            "id": st.sampled_from(["call_1", "call_2"]),
                                            "function": st.fixed_dictionaries(
                                                {"arguments": st.text(max_size=5)},
                                                optional={"name": st.sampled_from(["f", "g"])},
                                            ),
                                        },
                                    ),
                                    max_size=2,
                                ),
                            },
                        )
                    },
                    optional={"finish_reason": st.sampled_from(["stop", "length", "tool_calls"])},
                ),
                max_size=1,
            )
        },
        optional={"usage": st.just({"prompt_tokens": 1, "completion_tokens": 2})},
    ),
    max_size=12,
)


@FAST
@given(plausible_chunks | chunks_strategy)
def test_any_upstream_stream_is_translated_or_refused(chunks: list[dict[str, Any]]) -> None:
    try:
        evs, translator = stream_events(chunks)
    except BadUpstreamReply:
        return
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[-1]["type"] in ("response.completed", "response.incomplete")
    assert translator.response is not None
    Response.model_validate(translator.response)


@FAST
@given(st.integers(0, 30), st.integers(1, 100), st.sampled_from(["asc", "desc"]))
def test_pages_partition_the_items(count: int, limit: int, order: str) -> None:
    items = [{"id": f"msg_{k}"} for k in range(count)]
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = input_items_page(items, limit=limit, order=order, after=after)
        assert len(page["data"]) <= limit
        seen += page["data"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == (items if order == "asc" else items[::-1])
