"""The mock's example generator against what structured-output clients really send:
schemas pydantic generates for random models (as is, and after the OpenAI SDK's
strict rewrite), random JSON Schema shapes, and regex patterns."""

from __future__ import annotations

import datetime
import enum
import itertools
import re
import uuid
from typing import Annotated, Any, Literal

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, create_model

from routing.mock.pattern_example import pattern_example
from routing.mock.schema_example import example_for
from tests.examples import examples

_names = itertools.count()


def check(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(value)


class Node(BaseModel):
    """A recursive model: the generator must stop expanding it."""

    label: str
    children: list[Node] = []
    parent: Node | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: Annotated[int, Field(ge=1, le=9)]


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


PATTERNS = [r"^[a-z]{3,8}$", r"^\d{3}-\d{4}$", r"^[A-Z][a-z]+(-[A-Z][a-z]+)*$", r"^v\d+\.\d+$"]

leaf_types = st.one_of(
    st.sampled_from(
        [
            int,
            float,
            str,
            bool,
            datetime.datetime,
            datetime.date,
            datetime.timedelta,
            uuid.UUID,
            Node,
            Annotated[Cat | Dog, Field(discriminator="kind")],
        ]
    ),
    st.builds(
        lambda lo, span: Annotated[int, Field(ge=lo, le=lo + span)],
        st.integers(-1000, 1000),
        st.integers(0, 50),
    ),
    st.builds(
        lambda lo, span: Annotated[float, Field(gt=lo, lt=lo + span)],
        st.floats(-1e4, 1e4),
        st.floats(0.5, 100),
    ),
    st.builds(lambda step: Annotated[int, Field(multiple_of=step, ge=7)], st.integers(1, 12)),
    st.builds(
        lambda lo, extra: Annotated[str, Field(min_length=lo, max_length=lo + extra)],
        st.integers(0, 30),
        st.integers(0, 30),
    ),
    st.builds(lambda p: Annotated[str, Field(pattern=p)], st.sampled_from(PATTERNS)),
    st.builds(
        lambda values: Literal[tuple(values)],
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True),
    ),
    st.builds(
        lambda values: enum.Enum(f"E{next(_names)}", {f"m{i}": v for i, v in enumerate(values)}),
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True),
    ),
)


def model_of(fields: dict[str, Any]) -> Any:
    definitions: dict[str, Any] = {f"f_{name}": (kind, ...) for name, kind in fields.items()}
    return create_model(f"M{next(_names)}", **definitions)


field_types = st.recursive(
    leaf_types,
    lambda inner: st.one_of(
        st.builds(lambda t: t | None, inner),
        st.builds(lambda t: list[t], inner),
        st.builds(
            lambda t, lo: Annotated[list[t], Field(min_length=lo)],
            inner,
            st.integers(0, 4),
        ),
        st.builds(lambda t: dict[str, t], inner),
        st.builds(lambda a, b: tuple[a, b], inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(
            model_of,
            st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=4),
        ),
    ),
    max_leaves=8,
)
unique_leaves = st.sampled_from([int, str, datetime.date, uuid.UUID]).map(
    lambda t: Annotated[set[t], Field(min_length=3)]
)
models = st.dictionaries(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.one_of(field_types, unique_leaves),
    min_size=1,
    max_size=6,
).map(model_of)


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models)
def test_examples_of_pydantic_models_validate_as_json_and_as_the_model(model: Any) -> None:
    schema = model.model_json_schema()
    value = example_for(schema)
    check(schema, value)
    model.model_validate_json(orjson.dumps(value))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models)
def test_examples_of_strict_schemas_validate(model: Any) -> None:
    """What `client.chat.completions.parse(response_format=Model)` sends."""
    schema = to_strict_json_schema(model)
    value = example_for(schema)
    check(schema, value)
    model.model_validate_json(orjson.dumps(value))


def depth_of(node: dict[str, Any]) -> int:
    below = [*node.get("children", []), *([node["parent"]] if node.get("parent") else [])]
    return 1 + max((depth_of(child) for child in below), default=0)


@pytest.mark.parametrize("schema", [Node.model_json_schema(), to_strict_json_schema(Node)])
def test_recursive_models_end_soon(schema: dict[str, Any]) -> None:
    value = example_for(schema)
    Node.model_validate(value)
    check(schema, value)
    assert 2 <= depth_of(value) <= 3  # expanded once, then minimal


def test_unique_items_are_distinct() -> None:
    schema = {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 2}
    assert sorted(example_for(schema)) == [False, True]
    tags = {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}
    tags["minItems"] = 3
    assert sorted(example_for(tags)) == ["a", "b", "c"]


# -- JSON Schema shapes written by hand, beyond what pydantic emits ------------------

scalar_schemas = st.one_of(
    st.builds(
        lambda lo, span, open_lo, open_hi: {
            "type": "integer",
            ("exclusiveMinimum" if open_lo else "minimum"): lo,
            ("exclusiveMaximum" if open_hi else "maximum"): lo + span + 2,
        },
        st.integers(-(10**6), 10**6),
        st.integers(0, 100),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda lo, span, open_lo: {
            "type": "number",
            ("exclusiveMinimum" if open_lo else "minimum"): lo,
            "maximum": lo + span,
        },
        st.floats(-1e6, 1e6),
        st.floats(0.001, 100),
        st.booleans(),
    ),
    st.builds(
        lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    st.builds(
        lambda fmt: {"type": "string", "format": fmt},
        st.sampled_from(["date-time", "date", "time", "email", "uuid", "ipv4", "ipv6", "uri"]),
    ),
    st.builds(lambda p: {"type": "string", "pattern": p}, st.sampled_from(PATTERNS)),
    st.builds(
        lambda values: {"enum": values}, st.lists(st.text(max_size=5), min_size=1, max_size=4)
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({"type": ["string", "null"]}),
)
#: Item schemas with at least four values the generator's variants reach, for
#: `uniqueItems` arrays (a pair of booleans has four values, but variants move both
#: leaves together and reach two: see schema_example's docstring).
distinguishable = st.sampled_from(
    [
        {"type": "string", "maxLength": 12},
        {"type": "integer", "minimum": 0, "maximum": 3},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": r"^[a-c]{2}$"},
        {"enum": ["a", "b", "c", "d"]},
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
    ]
)
shapes = st.recursive(
    scalar_schemas,
    lambda children: st.one_of(
        st.builds(
            lambda props, strict: {
                "type": "object",
                "properties": props,
                "required": sorted(props) if strict else sorted(props)[:1],
                "additionalProperties": False,
            },
            st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
            st.booleans(),
        ),
        st.builds(
            lambda item, lo: {"type": "array", "items": item, "minItems": lo},
            children,
            st.integers(0, 3),
        ),
        st.builds(
            lambda item, lo: {"type": "array", "items": item, "minItems": lo, "uniqueItems": True},
            distinguishable,
            st.integers(0, 4),
        ),
        st.builds(lambda a, b: {"anyOf": [a, b]}, children, children),
        st.builds(
            lambda value: {"type": "object", "additionalProperties": value, "minProperties": 2},
            children,
        ),
    ),
    max_leaves=12,
)


referring = st.builds(
    lambda item: {
        "$defs": {"d": item},
        "type": "object",
        "properties": {
            "one": {"$ref": "#/$defs/d"},
            "many": {"type": "array", "items": {"$ref": "#/$defs/d"}, "minItems": 2},
        },
        "required": ["one", "many"],
    },
    shapes,
)


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(shapes, referring))
def test_examples_of_schema_shapes_validate(schema: dict[str, Any]) -> None:
    check(schema, example_for(schema))


@pytest.mark.parametrize(
    "pattern",
    [
        *PATTERNS,
        r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$",  # pydantic's Decimal
        r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
        r"^(GET|POST|PUT)\s/\S*$",
        r"\bword\b",
        r"^#[0-9a-fA-F]{6}$",
        r"^(ab)+\1$",
    ],
)
def test_pattern_examples_match(pattern: str) -> None:
    examples = {pattern_example(pattern, variant) for variant in range(3)}
    assert None not in examples
    assert all(re.search(pattern, text) for text in examples if text is not None)


def test_pattern_examples_meet_lengths_or_give_up() -> None:
    assert len(pattern_example(r"^[a-z]+$", min_length=12) or "") >= 12
    assert pattern_example(r"^\d{5}$", max_length=4) is None
    assert pattern_example(r"\p{L}") is None  # ECMA-only: the caller falls back
    assert pattern_example("x" * 5000) is None
