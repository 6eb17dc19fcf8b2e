"""JSON Schema validation of tool arguments and results (`tools.schemas`, `tools.config`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.examples import examples
from tools.config import ToolConfig, check_schema
from tools.schemas import (
    MAX_DEPTH,
    MAX_ERRORS,
    Problem,
    SchemaCache,
    compile_schema,
    depth_exceeds,
    problems,
)

UUID = "123e4567-e89b-12d3-a456-426614174000"

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "items"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"enum": ["open", "closed"]},
        "email": {"type": "string", "format": "email"},
        "created": {"type": "string", "format": "date-time"},
        "site": {"type": "string", "format": "uri"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}},
        "contact": {
            "anyOf": [{"type": "string", "format": "email"}, {"type": "integer", "minimum": 0}]
        },
    },
    "$defs": {
        "item": {
            "type": "object",
            "required": ["sku", "qty"],
            "properties": {
                "sku": {"type": "string"},
                "qty": {"type": "integer", "minimum": 1, "maximum": 99},
            },
        }
    },
}
VALID_ORDER: dict[str, Any] = {
    "id": UUID,
    "status": "open",
    "email": "bob@example.com",
    "created": "2024-05-01T12:30:00Z",
    "site": "https://example.com/orders?id=1",
    "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 99}],
    "contact": 7,
}
ORDER = compile_schema(ORDER_SCHEMA)


def order_problems(**changes: Any) -> list[Problem]:
    return problems(ORDER, {**VALID_ORDER, **changes})


def item(qty: int) -> dict[str, Any]:
    return {"sku": "x", "qty": qty}


def nested(depth: int, container: str) -> Any:
    """A value `depth` containers deep, built without recursion."""
    value: Any = [] if container == "list" else {}
    for _ in range(depth - 1):
        value = [value] if container == "list" else {"a": value}
    return value


# --- problems(): what is reported, and where ---------------------------------------


def test_valid_value_has_no_problems() -> None:
    assert problems(ORDER, VALID_ORDER) == []
    assert order_problems(contact="carol@example.com") == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"id": "nope"}, Problem("$.id", "'nope' is not a 'uuid'"), id="uuid"),
        pytest.param(
            {"status": "x"}, Problem("$.status", "'x' is not one of ['open', 'closed']"), id="enum"
        ),
        pytest.param({"email": "bob"}, Problem("$.email", "'bob' is not a 'email'"), id="email"),
        pytest.param(
            {"extra": 1},
            Problem("$", "Additional properties are not allowed ('extra' was unexpected)"),
            id="additionalProperties",
        ),
        pytest.param({"items": []}, Problem("$.items", "[] should be non-empty"), id="minItems"),
        pytest.param(
            {"items": [item(1), item(2), item(0)]},
            Problem("$.items[2].qty", "0 is less than the minimum of 1"),
            id="minimum-nested-ref",
        ),
        pytest.param(
            {"items": [item(100)]},
            Problem("$.items[0].qty", "100 is greater than the maximum of 99"),
            id="maximum",
        ),
        pytest.param(
            {"items": [{"sku": "a"}]},
            Problem("$.items[0]", "'qty' is a required property"),
            id="required-nested",
        ),
        pytest.param(
            {"contact": -1},
            Problem("$.contact", "-1 is not valid under any of the given schemas"),
            id="anyOf",
        ),
    ],
)
def test_each_keyword_reports_its_path(changes: dict[str, Any], expected: Problem) -> None:
    assert order_problems(**changes) == [expected]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"created": "yesterday"},
            Problem("$.created", "'yesterday' is not a 'date-time'"),
            id="date-time",
        ),
        pytest.param(
            {"site": "not a uri"}, Problem("$.site", "'not a uri' is not a 'uri'"), id="uri"
        ),
    ],
)
def test_date_time_and_uri_formats_are_checked(changes: dict[str, Any], expected: Problem) -> None:
    # jsonschema only checks these formats when its optional format dependencies
    # (rfc3339-validator, rfc3987 / rfc3986-validator) are installed.
    assert order_problems(**changes) == [expected]


#: Every format docs/guards-and-tools.md says is checked, each with a value that breaks it.
DOCUMENTED_FORMATS = {
    "date": "2024-13-45",
    "date-time": "yesterday",
    "time": "25:99",
    "duration": "P1Xyz",
    "email": "nope",
    "hostname": "-bad-.com",
    "ipv4": "999.1.1.1",
    "ipv6": "zz::",
    "uri": "not a uri",
    "uri-reference": "\\\\ bad",
    "uri-template": "{bad",
    "json-pointer": "no-slash",
    "uuid": "1234",
    "regex": "(",
}


@pytest.mark.parametrize(("name", "bad"), DOCUMENTED_FORMATS.items(), ids=list(DOCUMENTED_FORMATS))
def test_each_documented_format_is_checked(name: str, bad: str) -> None:
    # A checker whose optional dependency is missing passes everything silently; this
    # fails instead when a fresh install lacks one.
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": name}}}
    found = problems(compile_schema(schema), {"v": bad})
    assert found == [Problem("$.v", f"{bad!r} is not a {name!r}")]


def test_missing_required_property_at_root() -> None:
    value = {key: v for key, v in VALID_ORDER.items() if key != "id"}
    assert problems(ORDER, value) == [Problem("$", "'id' is a required property")]


def test_problems_are_sorted_shallow_first() -> None:
    # The schema lists `items` before the extra key, so jsonschema finds the deep
    # problem first; the report still starts with the shallow ones.
    found = order_problems(items=[item(0)], status="x", extra=1)
    assert [p.path for p in found] == ["$", "$.status", "$.items[0].qty"]


def test_at_most_max_errors_and_shallow_ones_survive_the_cut() -> None:
    found = order_problems(items=[item(0)] * (MAX_ERRORS * 3), extra=1)
    assert len(found) == MAX_ERRORS
    assert found[0] == Problem(
        "$", "Additional properties are not allowed ('extra' was unexpected)"
    )
    assert all(p.path.endswith("].qty") for p in found[1:])
    assert len({p.path for p in found}) == MAX_ERRORS


def test_problem_str_names_path_and_message() -> None:
    assert str(Problem("$.a", "bad")) == "$.a: bad"


# --- depth -------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["list", "dict"])
def test_very_deep_value_gives_one_depth_problem(container: str) -> None:
    value = nested(10_000, container)
    assert depth_exceeds(value)
    expected = [Problem("$", f"nested deeper than {MAX_DEPTH} levels")]
    assert problems(ORDER, value) == expected
    assert problems(compile_schema({}), value) == expected


@pytest.mark.parametrize("container", ["list", "dict"])
def test_depth_limit_is_exact(container: str) -> None:
    anything = compile_schema({})
    assert problems(anything, nested(MAX_DEPTH, container)) == []
    assert problems(anything, nested(MAX_DEPTH + 1, container)) == [
        Problem("$", f"nested deeper than {MAX_DEPTH} levels")
    ]


def test_recursive_schema_at_the_depth_limit_validates_without_recursion_error() -> None:
    schema = {
        "$defs": {"node": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "$ref": "#/$defs/node",
    }
    validator = compile_schema(schema)
    value = nested(MAX_DEPTH, "list")
    assert problems(validator, value) == []
    value[0] = "leaf"
    assert problems(validator, value) == [Problem("$[0]", "'leaf' is not of type 'array'")]


def reference_depth(value: Any) -> int:
    """Container nesting depth, recursively; a scalar root counts as depth 1."""
    children: list[Any] = []
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    return 1 + max((reference_depth(c) for c in children if isinstance(c, (dict, list))), default=0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=examples(300))
@given(value=json_values, limit=st.integers(1, 20))
def test_depth_exceeds_matches_a_recursive_reference(value: Any, limit: int) -> None:
    assert depth_exceeds(value, limit) == (reference_depth(value) > limit)


# --- SchemaCache -------------------------------------------------------------------


def test_cache_returns_same_validator_for_equal_schemas_in_any_key_order() -> None:
    cache = SchemaCache()
    first = cache.get({"type": "object", "properties": {"a": {"type": "string", "minLength": 1}}})
    second = cache.get({"properties": {"a": {"minLength": 1, "type": "string"}}, "type": "object"})
    assert first is not None
    assert second is first
    assert problems(first, {"a": ""}) == [Problem("$.a", "'' should be non-empty")]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": 12},
        {"type": "object", "properties": {"a": {"minimum": "one"}}},
        {"type": "string", "pattern": "("},
        [],
    ],
)
def test_cache_returns_none_for_invalid_schema(schema: Any) -> None:
    cache = SchemaCache()
    assert cache.get(schema) is None
    assert cache.get(schema) is None


def test_cache_evicts_least_recently_used() -> None:
    cache = SchemaCache(size=2)
    a, b, c = ({"type": "string", "maxLength": n} for n in (1, 2, 3))
    validator_a, validator_b = cache.get(a), cache.get(b)
    assert cache.get(a) is validator_a  # a is now the most recently used
    validator_c = cache.get(c)  # evicts b
    assert cache.get(a) is validator_a
    assert cache.get(c) is validator_c
    again_b = cache.get(b)  # recompiled, evicts a
    assert again_b is not None and again_b is not validator_b
    assert cache.get(c) is validator_c
    assert cache.get(a) is not validator_a


# --- ToolConfig / check_schema -----------------------------------------------------


def test_check_schema_passes_valid_schema_and_none() -> None:
    assert check_schema(ORDER_SCHEMA) is ORDER_SCHEMA
    assert check_schema(None) is None


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": 12}, "at type:"),
        ({"properties": {"a": {"type": 12}}}, "at properties/a/type:"),
        ({"type": "array", "minItems": -1}, "at minItems: -1 is less than the minimum of 0"),
    ],
)
@pytest.mark.parametrize("field", ["input_schema", "output_schema"])
def test_tool_config_rejects_invalid_schema_naming_the_location(
    schema: dict[str, Any], where: str, field: str
) -> None:
    with pytest.raises(ValidationError, match=f"invalid JSON Schema {where}") as info:
        ToolConfig(name="t", **{field: schema})
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("name", ["a", "get_weather", "x-1", "A" * 64, "0_9"])
def test_tool_config_accepts_openai_function_names(name: str) -> None:
    assert ToolConfig(name=name).name == name


@pytest.mark.parametrize(
    "name", ["", "A" * 65, "has space", "dot.name", "ünï", "a/b", "abc\n", "\nabc"]
)
def test_tool_config_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValidationError, match="OpenAI's function names"):
        ToolConfig(name=name)


@pytest.mark.parametrize("endpoint", ["http://tools:8000/weather", "https://x.example/run"])
def test_tool_config_accepts_http_endpoints(endpoint: str) -> None:
    assert ToolConfig(name="t", endpoint=endpoint).endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint", ["ftp://x.example/run", "file:///etc/passwd", "localhost:8080", "", "//x"]
)
def test_tool_config_rejects_non_http_endpoints(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="endpoint must be an http"):
        ToolConfig(name="t", endpoint=endpoint)


def test_tool_config_defaults() -> None:
    config = ToolConfig(name="t")
    assert config.input_schema == {"type": "object"}
    assert config.output_schema is None
    assert (config.mode, config.receipt, config.endpoint) == ("enforce", "optional", None)


@pytest.mark.parametrize("ref", ["http://169.254.169.254/schema.json", "other.json#/x"])
def test_registered_schemas_may_not_reference_remote_documents(ref: str) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    with pytest.raises(ValueError, match="points outside the schema"):
        ToolConfig(name="t", input_schema=schema)
