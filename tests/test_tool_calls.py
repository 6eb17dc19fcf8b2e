"""Tool calls a model makes: extraction, stream reassembly and checks (`tools.calls`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.chat import offered_tools
from tests.examples import examples
from tools.binding import Bindings
from tools.calls import OfferedTools, ToolCall, ToolCallAssembler, calls_in_reply
from tools.config import Mode, ToolConfig, ToolPolicy
from tools.registry import ToolRegistry
from tools.schemas import SchemaCache
from tools.violations import Violation

WEATHER_PARAMETERS = {
    "type": "object",
    "required": ["city"],
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
}


def offered(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


def reply_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def make_offered(
    tools: list[Any], registered: tuple[ToolConfig, ...] = (), policy: ToolPolicy | None = None
) -> OfferedTools:
    """Offered tools where every registered tool binds (when a contract binds is
    tests/test_tool_binding.py's subject)."""
    bound = Bindings(frozenset(tool.name for tool in registered))
    registry = ToolRegistry(registered)
    listed = offered_tools({"tools": tools})
    return OfferedTools(listed, registry, SchemaCache(), policy or ToolPolicy(), bound)


def summary(violations: list[Violation]) -> list[tuple[str, str, str, str]]:
    return [(v.kind, v.where, v.message, v.mode) for v in violations]


# --- calls_in_reply ----------------------------------------------------------------


def test_calls_in_reply_reads_every_choice_in_order() -> None:
    body = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        reply_call("a", "get_weather", '{"city":"Oslo"}'),
                        reply_call("b", "search", "{}"),
                    ],
                },
            },
            {"index": 1, "message": {"role": "assistant", "content": "no tools here"}},
            {"index": 2, "message": {"tool_calls": [reply_call("c", "get_weather", "")]}},
        ],
    }
    assert calls_in_reply(body) == [
        ToolCall("a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("b", "search", "{}"),
        ToolCall("c", "get_weather", ""),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"choices": None},
        {"choices": []},
        {"choices": [{}]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"tool_calls": None}}]},
        {"choices": [{"message": {"tool_calls": []}}]},
    ],
)
def test_calls_in_reply_without_calls(body: dict[str, Any]) -> None:
    assert calls_in_reply(body) == []


def test_calls_in_reply_missing_fields_become_empty() -> None:
    body = {"choices": [{"message": {"tool_calls": [{}, {"id": "x", "function": None}]}}]}
    assert calls_in_reply(body) == [ToolCall(None, "", ""), ToolCall("x", "", "")]


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param({"choices": ["junk", 5, None, []]}, id="choice"),
        pytest.param({"choices": [{"message": "junk"}]}, id="message"),
        pytest.param({"choices": [{"message": {"tool_calls": 5}}]}, id="tool_calls"),
        pytest.param({"choices": [{"message": {"tool_calls": ["junk", 5, None]}}]}, id="call"),
    ],
)
def test_calls_in_reply_ignores_non_dict_junk(junk: dict[str, Any]) -> None:
    good = {"message": {"tool_calls": [reply_call("ok", "f", "{}")]}}
    body = {"choices": [*junk["choices"], good]}
    assert calls_in_reply(body) == [ToolCall("ok", "f", "{}")]


def test_a_call_with_a_junk_function_is_kept_as_a_nameless_call() -> None:
    # A broken call is still a call: kept (nameless) so the checks flag it, never
    # dropped silently.
    junk = {"message": {"tool_calls": [{"id": "x", "function": "junk"}]}}
    good = {"message": {"tool_calls": [reply_call("ok", "f", "{}")]}}
    assert calls_in_reply({"choices": [junk, good]}) == [
        ToolCall("x", "", ""),
        ToolCall("ok", "f", "{}"),
    ]


# --- ToolCallAssembler -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
argument_texts = st.one_of(
    st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(
        lambda v: orjson.dumps(v).decode()
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(
        lambda v: json.dumps(v, indent=1, ensure_ascii=False)
    ),
    st.text(max_size=30),  # models do stream invalid JSON sometimes
)
generated_calls = st.lists(
    st.tuples(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12),
        st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
        argument_texts,
    ),
    min_size=1,
    max_size=3,
)


def split_text(data: st.DataObject, text: str) -> list[str]:
    """`text` cut at random places (pieces may be empty, as providers send them)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def call_deltas(data: st.DataObject, index: int, call: tuple[str, str, str]) -> list[dict]:
    call_id, name, arguments = call
    pieces = split_text(data, arguments)
    first = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": pieces[0]},
    }
    return [first] + [{"index": index, "function": {"arguments": p}} for p in pieces[1:]]


def interleave(data: st.DataObject, queues: list[list[dict]]) -> list[dict]:
    """One random merge of `queues`, each queue's own order kept."""
    pending = [list(q) for q in queues]
    merged = []
    while any(pending):
        choice = data.draw(st.sampled_from([i for i, q in enumerate(pending) if q]))
        merged.append(pending[choice].pop(0))
    return merged


def into_chunks(data: st.DataObject, deltas: list[dict]) -> list[dict[str, Any]]:
    """Deltas grouped into `chat.completion.chunk`s at random boundaries."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}
    ]
    position = 0
    while position < len(deltas):
        size = data.draw(st.integers(1, 3))
        part = deltas[position : position + size]
        position += size
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": part}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return chunks


@settings(max_examples=examples(200))
@given(calls=generated_calls, data=st.data())
def test_assembler_rebuilds_streamed_calls(
    calls: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    queues = [call_deltas(data, index, call) for index, call in enumerate(calls)]
    assembler = ToolCallAssembler()
    for chunk in into_chunks(data, interleave(data, queues)):
        assembler.feed(chunk)
    assert assembler.calls() == [ToolCall(*call) for call in calls]


def test_assembler_keeps_choices_apart_in_choice_order() -> None:
    assembler = ToolCallAssembler()
    for choice, call_id in ((1, "second"), (0, "first")):
        delta = {"tool_calls": [{"index": 0, "id": call_id, "function": {"name": "f"}}]}
        assembler.feed({"choices": [{"index": choice, "delta": delta}]})
    assembler.feed(
        {"choices": [{"index": 1, "delta": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]}
    )
    assert assembler.calls() == [ToolCall("first", "f", ""), ToolCall("second", "f", "{}")]


def test_assembler_without_tool_calls_is_empty() -> None:
    assembler = ToolCallAssembler()
    assembler.feed({"choices": [{"index": 0, "delta": {"content": "hello"}}]})
    assembler.feed({"choices": ["junk", {"delta": None}], "usage": {}})
    assembler.feed({})
    assert assembler.calls() == []


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param({"index": 0, "delta": "junk"}, id="delta"),
        pytest.param({"index": 0, "delta": {"tool_calls": ["junk", None]}}, id="call"),
        pytest.param(
            {"index": 0, "delta": {"tool_calls": [{"index": 1, "function": "junk"}]}},
            id="function",
        ),
    ],
)
def test_assembler_ignores_non_dict_junk(junk: dict[str, Any]) -> None:
    assembler = ToolCallAssembler()
    delta = {"tool_calls": [{"index": 0, "id": "ok", "function": {"name": "f", "arguments": "{}"}}]}
    assembler.feed({"choices": [{"index": 0, "delta": delta}]})
    assembler.feed({"choices": [junk]})
    assert assembler.calls()[0] == ToolCall("ok", "f", "{}")


# --- OfferedTools ------------------------------------------------------------------


def test_call_to_unoffered_tool_uses_strictest_offered_mode() -> None:
    registered = (ToolConfig(name="book", mode="enforce"),)
    tools = make_offered([offered("get_weather"), offered("book")], registered)
    assert tools.names == {"get_weather", "book"}
    assert tools.mode == "enforce"
    assert tools.check(ToolCall("c1", "delete_all", "{}")) == [
        Violation(
            "delete_all",
            "unknown_tool",
            "name",
            "the model called 'delete_all', which the request did not offer",
            "enforce",
            "c1",
        )
    ]


def test_unknown_tool_with_only_unregistered_offers_gets_policy_mode() -> None:
    tools = make_offered([offered("get_weather")])
    assert summary(tools.check(ToolCall(None, "", "{}"))) == [
        ("unknown_tool", "name", "the model called '', which the request did not offer", "warn")
    ]
    assert tools.check(ToolCall(None, "", "{}"))[0].tool == "?"


@pytest.mark.parametrize("mode", ["enforce", "warn", "off"])
def test_with_nothing_offered_every_call_is_unknown_in_offered_mode(mode: Mode) -> None:
    # "Calls to tools the request did not offer are violations too", offered or not.
    tools = make_offered(
        ["junk", {"function": "x"}, {"function": {"name": 5}}], policy=ToolPolicy(offered_mode=mode)
    )
    assert tools.names == set()
    assert tools.mode == mode
    assert summary(tools.check(ToolCall("c1", "get_weather", "{}"))) == [
        (
            "unknown_tool",
            "name",
            "the model called 'get_weather', which the request did not offer",
            mode,
        )
    ]


@pytest.mark.parametrize("arguments", ["{", "{'city': 'Oslo'}", "not json", '{"city":"Oslo"} x'])
def test_invalid_json_arguments(arguments: str) -> None:
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS)])
    [violation] = tools.check(ToolCall("c1", "get_weather", arguments))
    assert (violation.kind, violation.where, violation.mode) == (
        "invalid_json",
        "arguments",
        "warn",
    )
    assert violation.message.startswith("arguments are not valid JSON (")
    assert (violation.tool, violation.call_id) == ("get_weather", "c1")


def test_schema_violation_reports_json_path() -> None:
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS)])
    found = tools.check(ToolCall("c1", "get_weather", '{"city": "Oslo", "days": 9}'))
    assert found == [
        Violation(
            "get_weather",
            "schema",
            "$.days",
            "arguments at $.days: 9 is greater than the maximum of 7",
            "warn",
            "c1",
        )
    ]


def test_empty_arguments_are_an_empty_object() -> None:
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS)])
    assert summary(tools.check(ToolCall("c1", "get_weather", ""))) == [
        ("schema", "$", "arguments at $: 'city' is a required property", "warn")
    ]


def test_valid_call_has_no_violations() -> None:
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS), offered("ping")])
    calls = [ToolCall("a", "get_weather", '{"city":"Oslo","days":3}'), ToolCall("b", "ping", "")]
    assert tools.check_all(calls) == []


def test_registered_tool_checks_offered_and_registry_schemas_once_each() -> None:
    registry_schema = {
        "type": "object",
        "required": ["city", "units"],
        "properties": {"city": {"type": "string"}, "units": {"enum": ["metric", "imperial"]}},
    }
    registered = (ToolConfig(name="get_weather", input_schema=registry_schema, mode="enforce"),)
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS)], registered)
    found = tools.check(ToolCall("c1", "get_weather", '{"days": 30}'))
    assert summary(found) == [
        ("schema", "$", "arguments at $: 'city' is a required property", "enforce"),
        ("schema", "$.days", "arguments at $.days: 30 is greater than the maximum of 7", "enforce"),
        ("schema", "$", "arguments at $: 'units' is a required property", "enforce"),
    ]
    only_registry = tools.check(ToolCall("c2", "get_weather", '{"city": "Oslo", "units": "K"}'))
    assert summary(only_registry) == [
        (
            "schema",
            "$.units",
            "arguments at $.units: 'K' is not one of ['metric', 'imperial']",
            "enforce",
        )
    ]


def test_registered_tool_in_mode_off_is_not_checked() -> None:
    registered = (ToolConfig(name="get_weather", mode="off"),)
    tools = make_offered([offered("get_weather", WEATHER_PARAMETERS)], registered)
    assert tools.check(ToolCall("c1", "get_weather", "{not json")) == []
    assert tools.check(ToolCall("c1", "get_weather", '{"days": 99}')) == []
    assert tools.mode == "off"


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_unregistered_offered_tool_gets_policy_offered_mode(mode: Mode) -> None:
    tools = make_offered(
        [offered("get_weather", WEATHER_PARAMETERS)], policy=ToolPolicy(offered_mode=mode)
    )
    assert tools.mode == mode
    [violation] = tools.check(ToolCall("c1", "get_weather", "{}"))
    assert violation.mode == mode


def test_invalid_offered_schema_is_skipped_but_registry_schema_still_applies() -> None:
    registered = (ToolConfig(name="get_weather", input_schema=WEATHER_PARAMETERS),)
    tools = make_offered([offered("get_weather", {"type": 12})], registered)
    assert summary(tools.check(ToolCall("c1", "get_weather", "{}"))) == [
        ("schema", "$", "arguments at $: 'city' is a required property", "enforce")
    ]


def test_dangling_ref_in_offered_schema_does_not_crash_the_check() -> None:
    # The offered schema comes from the client's request: a $ref to nowhere must not
    # raise out of the check (it would be a 500 for the whole request).
    tools = make_offered([offered("f", {"$ref": "#/$defs/missing"})])
    assert isinstance(tools.check(ToolCall("c1", "f", "{}")), list)


def test_remote_ref_in_offered_schema_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    # jsonschema's deprecated fallback resolves unknown remote $refs with a blocking
    # urllib.request.urlopen: a client could make the gateway fetch any URL.
    fetched: list[str] = []

    def record(request: Any, *args: Any, **kwargs: Any) -> Any:
        fetched.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    url = "http://169.254.169.254/latest/meta-data/schema.json"
    parameters = {"type": "object", "properties": {"a": {"$ref": url}}}
    tools = make_offered([offered("f", parameters)])
    with contextlib.suppress(Exception):
        tools.check(ToolCall("c1", "f", '{"a": 1}'))
    assert fetched == []
