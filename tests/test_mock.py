"""The mock LLM: deterministic, schema-satisfying, and faithful to its settings."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.config import MockSettings
from routing.mock.llm import MockLLM
from routing.mock.schema_example import example_for
from tests.support import ServerThread, one_deployment, running_gateway


def test_same_request_same_answer() -> None:
    llm = MockLLM("mock-gpt", MockSettings())
    body = {"model": "x", "messages": [{"role": "user", "content": "repeat me"}]}
    first, second = llm.chat(body), llm.chat(body)
    first.pop("created"), second.pop("created")
    assert first == second


def test_embeddings_are_deterministic_unit_vectors() -> None:
    llm = MockLLM("mock-gpt", MockSettings(embedding_dim=16))
    a = llm.embeddings({"input": "same"})["data"][0]["embedding"]
    b = llm.embeddings({"input": ["same", "other"]})["data"]
    assert a == b[0]["embedding"] and a != b[1]["embedding"]
    assert abs(sum(x * x for x in a) - 1) < 1e-9


SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"q": {"type": "string", "minLength": 20, "maxLength": 25}},
        "required": ["q"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 10, "maximum": 12},
            "x": {"type": "number", "exclusiveMinimum": 5, "multipleOf": 0.5},
        },
    },
    {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "enum": ["a", "b"]},
                "minItems": 3,
                "maxItems": 3,
            }
        },
        "required": ["tags"],
    },
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
        },
    },
    {
        "type": "object",
        "$defs": {
            "pt": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            }
        },
        "properties": {"path": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 2}},
        "required": ["path"],
    },
    {
        "type": "object",
        "properties": {
            "v": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "c": {"const": 42},
            "opt": {"type": ["null", "string"]},
        },
    },
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]},
        ]
    },
    {
        "type": "object",
        "properties": {
            "nested": {
                "type": "object",
                "properties": {
                    "deep": {
                        "type": "object",
                        "properties": {"leaf": {"type": "boolean"}},
                        "required": ["leaf"],
                    }
                },
                "required": ["deep"],
            }
        },
        "required": ["nested"],
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_examples_satisfy_their_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        example_for(schema)
    )


scalar_schemas = st.one_of(
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-(10**6), 10**6),
        st.integers(0, 100),
    ),
    st.builds(
        lambda lo, span: {"type": "number", "minimum": lo, "maximum": lo + span},
        st.floats(-1e6, 1e6),
        st.floats(0, 100),
    ),
    st.builds(
        lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    st.builds(
        lambda values: {"enum": values}, st.lists(st.text(max_size=5), min_size=1, max_size=4)
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
)
object_schemas = st.recursive(
    scalar_schemas,
    lambda children: st.one_of(
        st.builds(
            lambda props: {
                "type": "object",
                "properties": props,
                "required": sorted(props),
                "additionalProperties": False,
            },
            st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
        ),
        st.builds(
            lambda item, lo: {"type": "array", "items": item, "minItems": lo},
            children,
            st.integers(0, 3),
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(object_schemas)
def test_generated_examples_validate(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(example_for(schema))


def ask_mock(**deployment: Any) -> httpx.Response:
    config = one_deployment("g", id="mock-under-test", provider="mock", model="m", **deployment)
    with running_gateway(config) as gateway:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "g", "messages": [{"role": "user", "content": "x"}]},
        )


def test_error_rate_surfaces_as_503_naming_the_deployment() -> None:
    response = ask_mock(mock={"error_rate": 1.0})
    assert response.status_code == 503
    assert "'mock-under-test'" in response.json()["error"]["message"]


def test_mock_latency_beyond_timeout_is_504() -> None:
    response = ask_mock(mock={"latency_ms": 5000}, timeouts={"total_ms": 100})
    assert response.status_code == 504


def test_mock_upstream_app_over_http(mock_upstream: ServerThread) -> None:
    client = openai.OpenAI(base_url=mock_upstream.url + "/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}]
    ).usage
    assert client.embeddings.create(model="m", input="q").data[0].embedding
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
