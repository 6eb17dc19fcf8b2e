"""Every Responses shape the gateway emits, against OpenAI's published OpenAPI document
(openai-openapi 2.3.0, the schemas vendored in tests/data: tests/openai_schemas.py).

Two levels. The translation itself, as properties (hypothesis): whatever chat reply or
chat stream an upstream sends (text, refusals, function and custom tool calls, every
finish reason, with or without usage) and whatever the request echoes (tools with and
without `strict`, formats, metadata...), the Response, every stream event (a broken
stream's too), the stored copy and the `input_items` page validate. Then the gateway
on loopback (the embedded default: two mocks, chaos on), through raw HTTP and the
official openai SDK: objects, streams, stored copies, listed items, errors, and
streams broken by injected faults.

One deliberate exception, asserted as such: an empty `input_items` page (`after` the
last item) has `first_id`/`last_id` null, which the document types as strings: OpenAI's
own list endpoints answer null there (docs/responses.md, "Conformance").
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responses.errors import InvalidRequest
from responses.listing import input_items_page
from responses.memory import MemoryResponseStore
from responses.request import to_chat
from responses.response import from_chat
from responses.store import Owner, StoredResponse
from responses.stream import StreamTranslator
from tests.examples import examples
from tests.openai_schemas import check, check_event, problems
from tests.support import ServerThread, sdk

PROPERTY_SETTINGS = settings(
    max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def sse_events(body: str) -> list[dict[str, Any]]:
    """The events of an SSE body, each checked to name its own type."""
    events = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        event = orjson.loads(fields["data"])
        assert fields["event"] == event["type"]
        events.append(event)
    return events


def check_stream(events: list[dict[str, Any]]) -> list[str]:
    """Every event against its schema, sequence numbers from 0; the types, in order."""
    for number, event in enumerate(events):
        assert event["sequence_number"] == number
        check_event(event)
    return [event["type"] for event in events]


# --- the translation, as properties -------------------------------------------------------

functions = st.fixed_dictionaries(
    {"type": st.just("function"), "name": st.sampled_from(["get_weather", "lookup"])},
    optional={
        "description": st.text(max_size=20),
        "parameters": st.just(WEATHER),
        "strict": st.sampled_from([True, False, None]),
    },
)
customs = st.fixed_dictionaries(
    {"type": st.just("custom"), "name": st.sampled_from(["run_sql", "patch"])},
    optional={"description": st.text(max_size=20)},
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A Responses create body: what the Response echoes varies."""
    body: dict[str, Any] = {"model": "gpt-4o", "input": draw(st.text(min_size=1, max_size=20))}
    tools = draw(st.lists(st.one_of(functions, customs), max_size=3, unique_by=lambda t: t["name"]))
    if tools:
        body["tools"] = tools
    for name, values in (
        ("instructions", st.text(max_size=20)),
        ("user", st.text(max_size=10)),
        ("temperature", st.floats(0, 2)),
        ("top_p", st.floats(0, 1)),
        ("max_output_tokens", st.sampled_from([16, 2247.0])),  # an integral float: an integer
        ("metadata", st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
        ("parallel_tool_calls", st.booleans()),
        ("store", st.booleans()),
        ("truncation", st.sampled_from(["auto", "disabled"])),
        ("reasoning", st.just({"effort": "low", "summary": "auto"})),
        ("service_tier", st.sampled_from(["auto", "default", "flex"])),
        ("safety_identifier", st.text(max_size=10)),
        ("prompt_cache_key", st.text(max_size=10)),
        (
            "text",
            st.sampled_from(
                [
                    {"format": {"type": "text"}},
                    {"format": {"type": "json_object"}},
                    {"format": {"type": "json_schema", "name": "w", "schema": WEATHER}},
                    {"verbosity": "low"},
                ]
            ),
        ),
    ):
        if draw(st.booleans()):
            body[name] = draw(values)
    return body


calls = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["get_weather", "run_sql"]), st.text(max_size=12)),
    max_size=3,
)
usages = st.one_of(
    st.none(),
    st.just({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}),
    st.just({"prompt_tokens": 3, "completion_tokens": 1}),
)


def chat_call(k: int, custom: bool, name: str, text: str) -> dict[str, Any]:
    if custom:
        return {"id": f"call_{k}", "type": "custom", "custom": {"name": name, "input": text}}
    return {"id": f"call_{k}", "type": "function", "function": {"name": name, "arguments": text}}


@given(
    body=requests(),
    content=st.one_of(st.none(), st.text(max_size=30)),
    refusal=st.one_of(st.none(), st.text(min_size=1, max_size=10)),
    tool_calls=calls,
    finish=st.sampled_from(["stop", "length", "content_filter", "tool_calls", None]),
    usage=usages,
)
@PROPERTY_SETTINGS
def test_every_response_object_validates(
    body: dict[str, Any],
    content: str | None,
    refusal: str | None,
    tool_calls: list[tuple[bool, str, str]],
    finish: str | None,
    usage: dict[str, Any] | None,
) -> None:
    translation = to_chat(copy.deepcopy(body))
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    if tool_calls:
        message["tool_calls"] = [chat_call(k, *call) for k, call in enumerate(tool_calls)]
    reply: dict[str, Any] = {
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        reply["usage"] = usage
    response = from_chat(reply, translation, "resp_1", 1700000000)
    check(response, "Response")
    assert ("usage" in response) == (usage is not None)  # omitted, never null
    if "max_output_tokens" in body:
        assert response["max_output_tokens"] == int(body["max_output_tokens"])
    # The stored copy, and the page of its input items.
    store = MemoryResponseStore()
    owner = Owner("t", "k")
    stored = StoredResponse(response, translation.input_items, owner)
    loop_run(store.put(stored))
    kept = loop_run(store.get("resp_1", owner))
    if body.get("store") is not False:
        assert kept is not None and kept.response == response
        check(kept.response, "Response")
        check(input_items_page(kept.input_items), "ResponseItemList")


def loop_run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@st.composite
def chat_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chat completion chunks as servers send them: text and refusal deltas, tool
    calls by index with their arguments in pieces, a finish chunk, maybe usage."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    for piece in draw(st.lists(st.text(min_size=1, max_size=6), max_size=4)):
        out.append(chunk({"content": piece}))
    for piece in draw(st.lists(st.text(min_size=1, max_size=6), max_size=2)):
        out.append(chunk({"refusal": piece}))
    for index, (custom, name, text) in enumerate(draw(calls)):
        kind = "custom" if custom else "function"
        field = "input" if custom else "arguments"
        head = {"index": index, "id": f"call_{index}", "type": kind, kind: {"name": name}}
        head[kind][field] = ""
        out.append(chunk({"tool_calls": [head]}))
        for start in range(0, len(text), 4):
            piece = {"index": index, kind: {field: text[start : start + 4]}}
            out.append(chunk({"tool_calls": [piece]}))
    finish = draw(st.sampled_from(["stop", "length", "content_filter", "tool_calls"]))
    out.append(chunk({}, finish))
    usage = draw(usages)
    if usage is not None:
        out.append({**base, "choices": [], "usage": usage})
    return out


@given(body=requests(), chunks=chat_streams(), broken_at=st.one_of(st.none(), st.integers(0, 12)))
@PROPERTY_SETTINGS
def test_every_stream_event_validates(
    body: dict[str, Any], chunks: list[dict[str, Any]], broken_at: int | None
) -> None:
    translator = StreamTranslator(to_chat({**body, "stream": True}), "resp_1", 1700000000)
    out = [translator.start()]
    for n, chunk in enumerate(chunks):
        if broken_at == n:
            out.append(translator.failed("stream_interrupted", "The upstream stream broke off."))
            break
        out.append(translator.feed(chunk))
    else:
        out.append(translator.finish())
    kinds = check_stream(sse_events(b"".join(out).decode()))
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete", "response.failed")
    assert translator.response is not None
    check(translator.response, "Response")


def test_an_integral_float_is_an_integer_on_the_responses_api() -> None:
    """As on /v1/chat/completions (the field kernel both validators use): `2247.0` is
    the integer 2247, sent upstream and echoed as one; `2247.5` is refused."""
    body = {"model": "m", "input": "x", "max_output_tokens": 2247.0, "max_tool_calls": 3.0}
    translation = to_chat(body)
    for value in (
        translation.chat["max_completion_tokens"],
        translation.echo["max_output_tokens"],
    ):
        assert value == 2247 and type(value) is int
    assert type(translation.echo["max_tool_calls"]) is int
    with pytest.raises(InvalidRequest) as refused:
        to_chat({"model": "m", "input": "x", "max_output_tokens": 2247.5})
    assert (refused.value.code, refused.value.param) == ("invalid_type", "max_output_tokens")


# --- the gateway on loopback ----------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(default_gateway: ServerThread) -> ServerThread:
    return default_gateway


def post(gateway: ServerThread, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", json=body, headers=headers, timeout=30)


def get(gateway: ServerThread, path: str) -> httpx.Response:
    return httpx.get(gateway.url + path, timeout=30)


TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER},  # no `strict`
    {"type": "function", "name": "get_time", "description": "Now.", "strict": True,
     "parameters": {"type": "object", "properties": {}, "additionalProperties": False}},
]  # fmt: skip


@pytest.fixture(scope="module")
def created(gateway: ServerThread) -> dict[str, Any]:
    """A non-streamed Response with tools: a function call, echoed tools, a float
    that is an integer, metadata and a user."""
    reply = post(
        gateway,
        {
            "model": "demo",
            "input": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Weather in Oslo?"},
            ],
            "instructions": "You are a weather bot.",
            "tools": TOOLS,
            "max_output_tokens": 2247.0,
            "metadata": {"app": "conformance"},
            "user": "u-1",
        },
    )
    assert reply.status_code == 200, reply.text
    response: dict[str, Any] = reply.json()
    return response


def test_a_response_object_validates(created: dict[str, Any]) -> None:
    check(created, "Response")
    assert created["max_output_tokens"] == 2247 and isinstance(created["max_output_tokens"], int)
    # Every function tool is echoed whole: `strict` is what translation sent (false
    # when the client left it out: chat's default), never missing.
    assert [(t["name"], t["strict"]) for t in created["tools"]] == [
        ("get_weather", False),
        ("get_time", True),
    ]
    assert created["tools"][0]["description"] is None
    assert any(item["type"] == "function_call" for item in created["output"])


def test_the_stored_copy_and_its_input_items_validate(
    gateway: ServerThread, created: dict[str, Any]
) -> None:
    stored = get(gateway, f"/v1/responses/{created['id']}")
    assert stored.status_code == 200
    check(stored.json(), "Response")
    assert stored.json() == created
    pages = [
        get(gateway, f"/v1/responses/{created['id']}/input_items{query}").json()
        for query in ("", "?order=asc", "?order=asc&limit=1")
    ]
    for page in pages:
        check(page, "ResponseItemList")
    assert pages[2]["has_more"] is True
    after = pages[2]["last_id"]
    rest = get(gateway, f"/v1/responses/{created['id']}/input_items?order=asc&after={after}")
    check(rest.json(), "ResponseItemList")
    # The one page OpenAI answers with nulls although its document types them as
    # strings: an empty one (after the last item).
    empty = get(gateway, f"/v1/responses/{created['id']}/input_items?after={pages[0]['last_id']}")
    assert empty.json()["data"] == []
    assert set(problems(empty.json(), "ResponseItemList")) == {
        "ResponseItemList at first_id: None is not of type 'string'",
        "ResponseItemList at last_id: None is not of type 'string'",
    }


def test_a_continued_conversation_and_an_assistant_history_validate(
    gateway: ServerThread, created: dict[str, Any]
) -> None:
    (call,) = [item for item in created["output"] if item["type"] == "function_call"]
    follow = post(
        gateway,
        {
            "model": "demo",
            "previous_response_id": created["id"],
            "tools": TOOLS,
            "input": [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "21 C"},
                {"role": "assistant", "content": "Earlier I said hello."},
                {"type": "reasoning", "id": "rs_client", "summary": [{"type": "summary_text",
                                                                      "text": "thought"}]},
                {"role": "user", "content": [{"type": "input_text", "text": "And now?"},
                                             {"type": "input_image",
                                              "image_url": "data:image/png;base64,AAAA"}]},
            ],
        },
    )  # fmt: skip
    assert follow.status_code == 200, follow.text
    check(follow.json(), "Response")
    listed = get(gateway, f"/v1/responses/{follow.json()['id']}/input_items?order=asc").json()
    check(listed, "ResponseItemList")
    # A stored assistant message's text carries `logprobs`, as OpenAI's requires.
    assert listed["data"][1]["content"][0]["logprobs"] == []


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tools"])
def test_a_stream_validates_event_by_event(gateway: ServerThread, tools: bool) -> None:
    body: dict[str, Any] = {"model": "demo", "input": "Weather in Oslo?", "stream": True}
    if tools:
        body["tools"] = TOOLS
    reply = post(gateway, body)
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    kinds = check_stream(events)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    final = events[-1]["response"]
    stored = get(gateway, f"/v1/responses/{final['id']}").json()
    check(stored, "Response")
    assert stored == final


#: Injected faults, and how the stream they break ends.
STREAM_FAULTS = [
    ("stream_cut;after_events=3", "response.failed"),
    ("truncated", "response.failed"),
    ("invalid_json", "response.failed"),
    ("sse_truncated", "response.failed"),
    ("sse_duplicate", "response.completed"),
    ("finish_length", "response.incomplete"),
    ("finish_content_filter", "response.incomplete"),
    ("empty_content", "response.completed"),
]


@pytest.mark.parametrize(("fault", "end"), STREAM_FAULTS, ids=[f for f, _ in STREAM_FAULTS])
def test_a_fault_injected_stream_validates(gateway: ServerThread, fault: str, end: str) -> None:
    reply = post(
        gateway,
        {"model": "demo", "input": "Tell me a story", "stream": True},
        **{"x-seawall-chaos": f"{fault};target=group:demo"},
    )
    assert reply.status_code == 200
    assert reply.headers["x-seawall-chaos-injected"].startswith(fault.split(";")[0])
    events = sse_events(reply.text)
    kinds = check_stream(events)
    assert kinds[-1] == end
    if end == "response.failed":
        assert kinds[-2] == "error"
    stored = get(gateway, f"/v1/responses/{events[-1]['response']['id']}").json()
    check(stored, "Response")  # what broke is stored as it ended


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"model": "demo", "input": "x", "frobnicate": 1}, {}, 400),
        ({"model": "demo", "input": "x", "previous_response_id": "resp_nope"}, {}, 400),
        ({"model": "demo", "input": [{"type": "item_reference", "id": "msg_nope"}]}, {}, 404),
        ({"model": "nope", "input": "x"}, {}, 404),
        ({"model": "demo", "input": "x"}, {"x-seawall-chaos": "http_error;status=503"}, 503),
        ({"model": "demo", "input": "x", "stream": True},
         {"x-seawall-chaos": "context_length"}, 400),
    ],
    ids=["unknown_parameter", "previous", "item_reference", "model", "upstream", "stream"],
)  # fmt: skip
def test_errors_validate(
    gateway: ServerThread, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    reply = post(gateway, body, **headers)
    assert reply.status_code == status
    check(reply.json(), "ErrorResponse")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/responses/resp_nope",
        "/v1/responses/resp_nope/input_items",
        "/v1/responses/x?stream=true",
    ],
)
def test_stored_response_errors_validate(gateway: ServerThread, path: str) -> None:
    missing = get(gateway, path)
    assert missing.status_code in (400, 404)
    check(missing.json(), "ErrorResponse")


# --- through the official SDK -----------------------------------------------------------------


@pytest.fixture(scope="module")
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with sdk(gateway.url) as client:
        yield client


def test_the_sdk_reads_what_validates(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input="Hello", tools=TOOLS)
    check(response.to_dict(), "Response")
    events = [event.to_dict() for event in client.responses.create(
        model="demo", input="Weather in Oslo?", tools=TOOLS, stream=True
    )]  # fmt: skip
    assert check_stream(events)[-1] == "response.completed"
    final = events[-1]["response"]
    check(client.responses.retrieve(final["id"]).to_dict(), "Response")
    page = client.responses.input_items.with_raw_response.list(final["id"])
    check(page.http_response.json(), "ResponseItemList")
    assert [item.id for item in page.parse()] == [
        item["id"] for item in page.http_response.json()["data"]
    ]
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="demo", input=[{"type": "item_reference", "id": "msg_x"}])
    check(missing.value.response.json(), "ErrorResponse")


def test_the_sdk_raises_from_a_broken_stream_it_validated(gateway: ServerThread) -> None:
    chaos = {"x-seawall-chaos": "stream_cut;after_events=3;target=group:demo"}
    events: list[dict[str, Any]] = []

    def read(client: openai.OpenAI) -> None:
        for event in client.responses.create(model="demo", input="A story", stream=True):
            events.append(event.to_dict())

    with (
        sdk(gateway.url).with_options(default_headers=chaos) as client,
        pytest.raises(openai.APIError),
    ):
        read(client)
    kinds = check_stream(events)
    assert kinds[0] == "response.created" and "error" not in kinds  # the SDK raised on it
