"""Type checks for the request fields, with OpenAI's error wording.

Only the shape is checked here (types, required fields, the message structure
the gateway itself reads). Value ranges (a temperature of 7) are left to the
provider, which knows its own limits; unknown fields pass through untouched so a
new OpenAI parameter never needs a gateway release.

Every field type is a `FieldType`: the words an error uses, the check, and the JSON
Schema of the same set of values. `gateway.openapi` documents the request bodies
from these tables (`CHAT_FIELDS`, `EMBEDDING_FIELDS`, `MESSAGE_FIELDS`, ...), so
what `/openapi.json` says is accepted and what is accepted cannot drift apart
(tests/test_validation_schema.py checks they agree on generated bodies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import (
    GatewayError,
    echoed,
    invalid_type,
    invalid_value,
    missing_parameter,
)
from gateway.exchange import Exchange

Check = Callable[[Any], bool]
Schema = dict[str, Any]

#: Integer fields hold what a signed 64-bit integer holds (OpenAI's own limit for
#: `seed`, the widest of them); a wider number could not be sent upstream exactly.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


class FieldType:
    """One JSON type as the gateway checks it and as `/openapi.json` documents it."""

    def __init__(self, expected: str, check: Check, schema: Schema) -> None:
        #: How an error names the type: "Invalid type for 'n': expected {expected}...".
        self.expected = expected
        self.check = check
        #: The JSON Schema (2020-12) of exactly the values `check` accepts.
        self.schema = schema

    def read(self, param: str, value: Any) -> Any:
        """`value` as the gateway keeps it, or the 400 that says why it is refused."""
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

#: Optional chat fields and their types; null is accepted for every one of them.
CHAT_FIELDS: Fields = {
    "stream": BOOLEAN,
    "stream_options": OBJECT,
    "tools": ARRAY,
    "tool_choice": STRING_OR_OBJECT,
    "parallel_tool_calls": BOOLEAN,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "n": INTEGER,
    "max_tokens": INTEGER,
    "max_completion_tokens": INTEGER,
    "presence_penalty": NUMBER,
    "frequency_penalty": NUMBER,
    "seed": INTEGER,
    "stop": STRING_OR_ARRAY,
    "user": STRING,
    "logprobs": BOOLEAN,
    "top_logprobs": INTEGER,
    "logit_bias": OBJECT,
    "response_format": OBJECT,
    "metadata": OBJECT,
    "store": BOOLEAN,
    "reasoning_effort": STRING,
    "service_tier": STRING,
}

#: Optional `stream_options` members (null accepted).
STREAM_OPTIONS_FIELDS: Fields = {"include_usage": BOOLEAN}

#: Optional message members besides `role` and `content` (null accepted).
MESSAGE_FIELDS: Fields = {"name": STRING, "tool_call_id": STRING}

#: Optional members of an offered tool's `function` (null accepted).
TOOL_FUNCTION_FIELDS: Fields = {"parameters": OBJECT}

EMBEDDING_FIELDS: Fields = {
    "encoding_format": STRING,
    "dimensions": INTEGER,
    "user": STRING,
}

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_fields(body: dict[str, Any], fields: Fields, where: str = "") -> None:
    """Checks the optional `fields` of `body` (null is absent), keeping each value as
    its type reads it (an integral `2247.0` becomes `2247`)."""
    for name, kind in fields.items():
        value = body.get(name)
        if value is not None:
            kept = kind.read(where + name, value)
            if kept is not value:
                body[name] = kept


def check_model(body: Mapping[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise missing_parameter("model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if not model:
        raise invalid_value("model", "must not be empty.")


def check_messages(messages: Any) -> None:
    if messages is None:
        raise missing_parameter("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise GatewayError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            code="empty_array",
            param="messages",
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing_parameter(f"{where}.role")
        if not isinstance(role, str):
            raise invalid_type(f"{where}.role", "a string", role)
        if role not in ROLES:
            raise invalid_value(f"{where}.role", f"'{echoed(role)}' is not one of {sorted(ROLES)}.")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise invalid_type(f"{where}.content", "a string or an array", content)
            check_content_parts(content, f"{where}.content")
        check_fields(message, MESSAGE_FIELDS, f"{where}.")
        if message.get("tool_calls") is not None:
            check_message_tool_calls(message["tool_calls"], f"{where}.tool_calls")


def check_content_parts(parts: list[Any], where: str) -> None:
    """Content parts the gateway reads (token counting, tool-result checks, receipts):
    each an object with a string `type`; a text part's `text` a string."""
    for k, part in enumerate(parts):
        if not isinstance(part, dict):
            raise invalid_type(f"{where}[{k}]", "an object", part)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise invalid_type(f"{where}[{k}].type", "a string", kind)
        if kind == "text" and not isinstance(part.get("text"), str):
            raise invalid_type(f"{where}[{k}].text", "a string", part.get("text"))


def check_message_tool_calls(calls: Any, where: str) -> None:
    """An assistant message's earlier tool calls: the gateway reads them to match tool
    results to their calls, so their shape is checked like OpenAI checks it."""
    if not isinstance(calls, list):
        raise invalid_type(where, "an array", calls)
    for j, call in enumerate(calls):
        if not isinstance(call, dict):
            raise invalid_type(f"{where}[{j}]", "an object", call)
        function = call.get("function")
        if not isinstance(function, dict):
            raise invalid_type(f"{where}[{j}].function", "an object", function)
        for field in ("name", "arguments"):
            if not isinstance(function.get(field), str):
                raise invalid_type(
                    f"{where}[{j}].function.{field}", "a string", function.get(field)
                )


def check_tools(tools: list[Any]) -> None:
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise invalid_value(where, "expected {'type': 'function', 'function': {...}}.")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_type(f"{where}.function.name", "a non-empty string", name)
        check_fields(function, TOOL_FUNCTION_FIELDS, f"{where}.function.")


def check_embedding_input(body: dict[str, Any]) -> None:
    """`input`: a string, or a non-empty array of strings, of token ids, or of
    token-id arrays (token ids are integers, integral numbers included)."""
    value = body.get("input")
    if value is None:
        raise missing_parameter("input")
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array", value)
    if not value:
        raise invalid_value("input", "must not be an empty array.")
    if all(isinstance(v, str) for v in value):
        return
    if all(is_integral(v) for v in value):
        body["input"] = _token_ids(value)
        return
    if all(isinstance(v, list) and all(is_integral(t) for t in v) for v in value):
        body["input"] = [_token_ids(v) for v in value]
        return
    raise invalid_value(
        "input",
        "expected a string, an array of strings, an array of token ids, "
        "or an array of token-id arrays.",
    )


def _token_ids(tokens: list[Any]) -> list[Any]:
    """Token ids as integers: the list itself when it holds only ints (the usual case,
    no copy), else a copy with integral numbers made ints; 400 past 64 bits."""
    if all(type(t) is int and INT_MIN <= t <= INT_MAX for t in tokens):
        return tokens
    if not all(INT_MIN <= t <= INT_MAX for t in tokens):
        raise invalid_value("input", f"token ids must be between {INT_MIN} and {INT_MAX}.")
    return [int(t) for t in tokens]


class ValidateChat:
    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        check_model(body)
        check_messages(body.get("messages"))
        check_fields(body, CHAT_FIELDS)
        if body.get("stream_options"):
            check_fields(body["stream_options"], STREAM_OPTIONS_FIELDS, "stream_options.")
        if body.get("tools"):
            check_tools(body["tools"])
        exchange.stream = body.get("stream") is True


class ValidateEmbeddings:
    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        check_model(body)
        check_fields(body, EMBEDDING_FIELDS)
        check_embedding_input(body)


def check_invocation(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """`POST /v1/tools/{name}/invoke`'s body: `tool_call_id`, a non-empty string, and
    `arguments`, an object; returns them."""
    call_id = body.get("tool_call_id")
    if call_id is None:
        raise missing_parameter("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_type("tool_call_id", "a non-empty string", call_id)
    if "arguments" not in body:
        raise missing_parameter("arguments")
    arguments = body["arguments"]
    if not isinstance(arguments, dict):
        raise invalid_type("arguments", "an object", arguments)
    return call_id, arguments
