"""Request fields: their types, how each is checked, and how a refusal is worded.

One kernel for both request validators: the gateway's (Chat Completions,
embeddings; gateway/stages/validate.py) and the Responses API's (responses/request.py).
A field type is the words an error uses, the check, and the JSON Schema of exactly
the values the check accepts, so `/openapi.json` (gateway/openapi.py) documents both
bodies from the same tables the validators run, and the two validators cannot
disagree about what an integer is (an integral `2247.0` is one, as OpenAI and JSON
Schema say) or how a refusal reads.

A refusal is a `FieldProblem`: OpenAI's message, its `param` and `code`. It knows
nothing of HTTP; each caller turns it into its own error (the gateway's
`GatewayError`, the Responses layer's `InvalidRequest`), always a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]
Schema = dict[str, Any]

#: Integer fields hold what a signed 64-bit integer holds (OpenAI's own limit for
#: `seed`, the widest of them); a wider number could not be sent upstream exactly.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: How many characters of a client-sent value (a model name, a field value, a header)
#: an error message repeats. Enough to recognise it; never the whole of a megabyte
#: `model`, which would make the error as large as the request and be stored again
#: by every log and dashboard that keeps error messages.
MAX_ECHO_CHARS = 256


class FieldProblem(ValueError):
    """A request field refused: OpenAI's wording, the field's path, the error code."""

    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def echoed(value: str) -> str:
    """`value` as an error message may repeat it: whole up to `MAX_ECHO_CHARS`
    characters; beyond that its first `MAX_ECHO_CHARS`, an ellipsis and its length
    (`abc...[truncated, 1048576 characters]`), so the reader knows it was cut.

    Every error constructor that repeats client input passes it through here."""
    if len(value) <= MAX_ECHO_CHARS:
        return value
    return f"{value[:MAX_ECHO_CHARS]}...[truncated, {len(value)} characters]"


def json_type(value: object) -> str:
    """What a JSON value is, in OpenAI's words ("but got a decimal instead")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def invalid_type(param: str, expected: str, value: object) -> FieldProblem:
    param = echoed(param)
    return FieldProblem(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param,
        "invalid_type",
    )


def invalid_value(param: str, message: str) -> FieldProblem:
    """`message` says what is wrong; a client value quoted in it must already be
    `echoed` (the message is the caller's sentence, only the caller knows its parts)."""
    param = echoed(param)
    return FieldProblem(f"Invalid value for '{param}': {message}", param, "invalid_value")


def missing_parameter(param: str) -> FieldProblem:
    param = echoed(param)
    return FieldProblem(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def unknown_parameter(param: str) -> FieldProblem:
    """A field OpenAI's API does not define, refused as OpenAI refuses it."""
    param = echoed(param)
    return FieldProblem(f"Unknown parameter: '{param}'.", param, "unknown_parameter")


# -- types ---------------------------------------------------------------------------


class FieldType:
    """One JSON type as the gateway checks it and as `/openapi.json` documents it."""

    def __init__(self, expected: str, check: Check, schema: Schema) -> None:
        #: How an error names the type: "Invalid type for 'n': expected {expected}...".
        self.expected = expected
        self.check = check
        #: The JSON Schema (2020-12) of exactly the values `check` accepts.
        self.schema = schema

    def read(self, param: str, value: Any) -> Any:
        """`value` as the gateway keeps it, or the problem that says why it is refused."""
        if not self.check(value):
            raise invalid_type(param, self.expected, value)
        return value


class IntegerType(FieldType):
    """An integer, also when written as an integral number (`2247.0`), as OpenAI
    accepts it (and as JSON Schema's `integer` defines it); it is kept, and sent
    upstream, as the integer. `2247.5` is refused with `invalid_type`, an integer
    beyond 64 bits with `invalid_value`."""

    def __init__(self) -> None:
        schema = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
        super().__init__("an integer", is_integral, schema)

    def read(self, param: str, value: Any) -> Any:
        if not is_integral(value):
            raise invalid_type(param, self.expected, value)
        if not INT_MIN <= value <= INT_MAX:
            raise invalid_value(param, f"must be between {INT_MIN} and {INT_MAX}.")
        return int(value)


def is_integral(value: Any) -> bool:
    """A JSON integer: an int (not a bool), or a float with no fractional part."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_or_str_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


STRING = FieldType("a string", lambda v: isinstance(v, str), {"type": "string"})
BOOLEAN = FieldType("a boolean", lambda v: isinstance(v, bool), {"type": "boolean"})
INTEGER = IntegerType()
NUMBER = FieldType("a number", _is_number, {"type": "number"})
OBJECT = FieldType("an object", lambda v: isinstance(v, dict), {"type": "object"})
ARRAY = FieldType("an array", lambda v: isinstance(v, list), {"type": "array"})
STRING_OR_OBJECT = FieldType(
    "a string or an object",
    lambda v: isinstance(v, (str, dict)),
    {"type": ["string", "object"]},
)
STRING_OR_ARRAY = FieldType(
    "a string or an array of strings",
    _is_str_or_str_list,
    {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
)

Fields = Mapping[str, FieldType]


def check_fields(body: dict[str, Any], fields: Fields, where: str = "") -> None:
    """Checks the optional `fields` of `body` (null is absent), keeping each value as
    its type reads it (an integral `2247.0` becomes `2247`); `FieldProblem` if one is
    refused: the first in `fields`' order, whatever the body's.

    A body usually sets a few of the two dozen fields a chat request may: its own
    keys are walked, and only a refusal walks `fields` in order, to name the
    first one refused."""
    if len(body) < len(fields):
        try:
            for name, value in body.items():
                kind = fields.get(name)
                if kind is not None and value is not None:
                    kept = kind.read(where + name, value)
                    if kept is not value:
                        body[name] = kept  # an existing key: the walk goes on
            return
        except FieldProblem:
            pass  # found in the body's order; named below in the fields' order
    for name, kind in fields.items():
        value = body.get(name)
        if value is not None:
            kept = kind.read(where + name, value)
            if kept is not value:
                body[name] = kept


def nullable(schema: Schema) -> Schema:
    """`schema`, or null: every optional field accepts null as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def optional_fields(fields: Fields) -> dict[str, Schema]:
    """The JSON Schema properties of optional `fields`."""
    return {name: nullable(dict(kind.schema)) for name, kind in fields.items()}
