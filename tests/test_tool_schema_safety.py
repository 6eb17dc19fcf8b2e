"""Schemas that could make validation run forever or for ages: `$ref` cycles that
never consume input (refused when compiled, a RecursionError backstop when
validating) and backtracking `pattern`s (matched under a time limit)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.examples import examples
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, tool_call_body
from tests.support import SeawallProcess, ServerThread, running_gateway
from tools import patterns
from tools.config import ToolConfig
from tools.refcycles import reference_cycle
from tools.schemas import SchemaCache, UnsafeSchema, check_schema, compile_schema, problems

# -- $ref cycles ------------------------------------------------------------------------------

CYCLES = [
    ({"$ref": "#"}, ["#", "#"]),
    (
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        ["#/$defs/a", "#/$defs/b", "#/$defs/a"],
    ),
    ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, ["#", "#/anyOf/1", "#"]),
    (
        {"$defs": {"x": {"$anchor": "x", "not": {"$ref": "#x"}}}},
        ["#/$defs/x", "#/$defs/x/not", "#x"],
    ),
    ({"if": {"$ref": "#/then"}, "then": {"$ref": "#/if"}}, ["#/if", "#/then", "#/if"]),
    ({"properties": {"a/b": {"$ref": "#/properties/a~1b"}}}, ["#/properties/a~1b"] * 2),
    ({"$dynamicAnchor": "m", "allOf": [{"$dynamicRef": "#m"}]}, ["#", "#/allOf/0", "#m"]),
    # A `$ref` inside an embedded resource is relative to that resource.
    (
        {"$defs": {"r": {"$id": "urn:r", "oneOf": [{"$ref": "#"}]}}},
        ["#/$defs/r", "#/$defs/r/oneOf/0", "#"],
    ),
]

FINE = [
    {"type": "object", "properties": {"child": {"$ref": "#"}}},  # a tree: consumes input
    {
        "$defs": {"node": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "$ref": "#/$defs/node",
    },
    {"$defs": {"a": {"type": "string"}}, "allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}]},
    {"$ref": "#/$defs/missing"},  # dangling, reported when validating
    {"enum": [{"$ref": "#"}]},  # data, not a schema
]


@pytest.mark.parametrize(("schema", "cycle"), CYCLES)
def test_same_value_reference_cycles_are_found(schema: dict[str, Any], cycle: list[str]) -> None:
    assert reference_cycle(schema) == cycle


@pytest.mark.parametrize("schema", FINE)
def test_references_that_consume_input_are_no_cycle(schema: dict[str, Any]) -> None:
    assert reference_cycle(schema) is None
    assert check_schema(schema) is schema


def test_a_deeply_nested_schema_does_not_overflow_the_cycle_search() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        schema = {"allOf": [schema]}
    assert reference_cycle(schema) is None


@pytest.mark.parametrize(("schema", "cycle"), CYCLES)
@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
def test_registered_cyclic_schemas_are_a_config_error(
    schema: dict[str, Any], cycle: Any, field: str
) -> None:
    with pytest.raises(ValidationError, match="applies the schema to the same value forever"):
        ToolConfig(name="t", **{field: schema})


def test_check_config_refuses_a_cyclic_output_schema(tmp_path: Path) -> None:
    config = {
        "models": [{"name": "g", "deployments": [{"id": "d", "provider": "mock", "model": "m"}]}],
        "tools": [{"name": "t", "output_schema": {"$ref": "#"}}],
    }
    path = tmp_path / "cyclic.yaml"
    path.write_text(yaml.safe_dump(config))
    code, output = SeawallProcess(["check-config", str(path)]).run_to_exit()
    assert code == 2
    assert "tools[0].output_schema" in output and "$ref cycle # -> #" in output
    assert "Traceback" not in output


def test_the_cache_reports_an_unsafe_schema_and_remembers_it() -> None:
    cache = SchemaCache()
    for _ in range(2):
        with pytest.raises(UnsafeSchema, match=r"\$ref cycle # -> #"):
            cache.lookup({"$ref": "#"})
    assert cache.get({"$ref": "#"}) is None  # callers that only skip bad schemas


@pytest.mark.parametrize("schema", [{"$ref": "#"}, {"anyOf": [{"$ref": "#"}]}])
def test_a_recursion_error_while_validating_is_a_problem_not_a_crash(
    schema: dict[str, Any],
) -> None:
    # A backstop for cycles the compile-time check might miss: compile around it.
    validator = compile_schema(schema)
    assert [p.message for p in problems(validator, {"a": 1})] == [
        "the schema recurses too deeply to validate this value"
    ]


def model_stack(answer: Answer, **config: Any) -> tuple[ScriptedUpstream, dict[str, Any]]:
    upstream = ScriptedUpstream(answer)
    deployment = {"id": "m", "provider": "openai", "model": "m", "api_key": "sk-x"}
    return upstream, {"models": [{"name": "g", "deployments": [deployment]}], **config}


def post(gateway: ServerThread, **body: Any) -> httpx.Response:
    payload = {"model": "g", "messages": [{"role": "user", "content": "x"}], **body}
    return httpx.post(gateway.url + "/v1/chat/completions", json=payload, timeout=30)


@pytest.mark.parametrize(("schema", "cycle"), CYCLES[:3])
def test_an_offered_cyclic_schema_is_a_400_naming_the_tool_before_any_model_call(
    schema: dict[str, Any], cycle: Any
) -> None:
    upstream, config = model_stack(Answer(body=tool_call_body("f", "{}")))
    tools = [
        {"type": "function", "function": {"name": "ok", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "loop", "parameters": schema}},
    ]
    with ServerThread(upstream) as server:
        config["models"][0]["deployments"][0]["api_base"] = server.url + "/v1"
        with running_gateway(config) as gateway:
            response = post(gateway, tools=tools)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_function_parameters"
    assert error["param"] == "tools[1].function.parameters"
    assert error["message"].startswith("Invalid schema for function 'loop': $ref cycle")
    assert upstream.calls == 0


# -- patterns under a time limit --------------------------------------------------------------

EVIL = "^(a|a)+$"  # backtracks exponentially in `regex` as in `re`
NEAR_MISS = "a" * 26 + "!"  # `re` takes seconds (and bounded: without the fix this fails)


def test_a_backtracking_pattern_times_out_as_a_violation() -> None:
    validator = compile_schema({"type": "string", "pattern": EVIL})
    started = time.monotonic()
    found = problems(validator, NEAR_MISS)
    assert time.monotonic() - started < 1
    assert [p.message for p in found] == [f"pattern {EVIL!r} took longer than 50 ms to match"]


def test_the_audit_pattern_answers_quickly() -> None:
    validator = compile_schema({"type": "string", "pattern": "^(a+)+$"})
    started = time.monotonic()
    assert problems(validator, "a" * 26 + "!")[0].message.endswith("does not match '^(a+)+$'")
    assert time.monotonic() - started < 1


def test_many_slow_strings_share_one_budget_per_value() -> None:
    validator = compile_schema({"type": "array", "items": {"type": "string", "pattern": EVIL}})
    started = time.monotonic()
    # Each string alone takes longer than the per-match limit (and ~80 ms in `re`).
    found = problems(validator, ["a" * 20 + "!"] * 20)
    elapsed = time.monotonic() - started
    assert elapsed < patterns.VALUE_BUDGET + 0.5  # not 20 x 50 ms
    assert len(found) == 10 and all("pattern" in p.message for p in found)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {EVIL: {"type": "integer"}}},
        {"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False},
        {"type": "object", "propertyNames": {"pattern": EVIL}},
    ],
)
def test_patterns_on_property_names_are_timed_too(schema: dict[str, Any]) -> None:
    validator = compile_schema(schema)
    started = time.monotonic()
    found = problems(validator, {NEAR_MISS: 1})
    assert time.monotonic() - started < 1
    assert any("took longer than 50 ms" in p.message for p in found)


# Patterns built from pieces both engines read the same way.
ATOMS = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", r"\d", r"\w", r"\s", "(a|b)", "(ab)"])
QUANTIFIERS = st.sampled_from(["", "*", "+", "?", "{1,2}", "*?", "+?"])
PATTERNS = st.builds(
    lambda anchor_start, pieces, anchor_end: anchor_start + "".join(pieces) + anchor_end,
    st.sampled_from(["", "^"]),
    st.lists(st.builds(str.__add__, ATOMS, QUANTIFIERS), min_size=1, max_size=5),
    st.sampled_from(["", "$"]),
)
TEXTS = st.text(alphabet="ab1 \n!é", max_size=12)


@settings(max_examples=examples(300), deadline=None)
@given(PATTERNS, TEXTS)
def test_timed_search_agrees_with_re_search(pattern: str, text: str) -> None:
    assert patterns.search(pattern, text) == (re.search(pattern, text) is not None)


@settings(max_examples=examples(200), deadline=None)
@given(
    PATTERNS,
    st.one_of(TEXTS, st.integers()),
    st.dictionaries(TEXTS, st.integers(), max_size=3),
    st.booleans(),
)
def test_timed_keywords_judge_like_jsonschema_itself(
    pattern: str, value: Any, names: dict[str, int], additional: bool
) -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"pattern": pattern}},
        "patternProperties": {pattern: {"type": "integer", "maximum": 5}},
        "additionalProperties": additional,
    }
    instance = {**names, "v": value}
    stock = jsonschema.Draft202012Validator(schema)
    expected = sorted((e.json_path, e.message) for e in stock.iter_errors(instance))
    assert sorted((p.path, p.message) for p in problems(compile_schema(schema), instance)) == (
        sorted(expected)
    )


def test_a_tool_call_against_an_offered_backtracking_pattern_is_judged_quickly() -> None:
    arguments = json.dumps({"code": NEAR_MISS})
    upstream, config = model_stack(Answer(body=tool_call_body("f", arguments)))
    parameters = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    with ServerThread(upstream) as server:
        config["models"][0]["deployments"][0]["api_base"] = server.url + "/v1"
        with running_gateway(config) as gateway:
            started = time.monotonic()
            response = post(gateway, tools=tools)
            elapsed = time.monotonic() - started
            # The gateway's loop is free again: a plain request is served.
            upstream.script = lambda n, body: Answer(body=chat_body())
            assert post(gateway).status_code == 200
    assert elapsed < 2
    assert response.status_code == 200  # offered tools are in `warn` mode by default
    assert response.headers["x-seawall-tool-violations"] == "f:schema:$.code"
