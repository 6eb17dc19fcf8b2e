"""Type checks for the Chat Completions and embeddings request fields, with OpenAI's
error wording.

Only the shape is checked here (types, required fields, the message structure
the gateway itself reads). Value ranges (a temperature of 7) are left to the
provider, which knows its own limits; unknown fields pass through untouched so a
new OpenAI parameter never needs a gateway release.

Field types come from the kernel both validators share (common/fields.py: the words
an error uses, the check, and the JSON Schema of the same set of values).
`gateway.openapi` documents the request bodies from these tables (`CHAT_FIELDS`,
`EMBEDDING_FIELDS`, `MESSAGE_FIELDS`, ...), so what `/openapi.json` says is accepted
and what is accepted cannot drift apart (tests/test_validation_schema.py checks they
agree on generated bodies). The checks raise `FieldProblem`; the stages answer it
as a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.fields import (
    ARRAY,
    BOOLEAN,
    INT_MAX,
    INT_MIN,
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    STRING_OR_ARRAY,
    STRING_OR_OBJECT,
    FieldProblem,
    Fields,
    check_fields,
    echoed,
    invalid_type,
    invalid_value,
    is_integral,
    missing_parameter,
)
from gateway.errors import bad_request
from gateway.exchange import Exchange

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
    # The legacy function-calling parameters: still accepted by OpenAI and sent by
    # older clients; their tools and results reach every check (common/chat.py).
    "functions": ARRAY,
    "function_call": STRING_OR_OBJECT,
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
        raise FieldProblem(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
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


def check_functions(functions: list[Any]) -> None:
    """The legacy `functions`: each an object with a non-empty `name`."""
    for i, function in enumerate(functions):
        where = f"functions[{i}]"
        if not isinstance(function, dict):
            raise invalid_type(where, "an object", function)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_type(f"{where}.name", "a non-empty string", name)
        check_fields(function, TOOL_FUNCTION_FIELDS, f"{where}.")


def check_one_max_tokens(body: Mapping[str, Any]) -> None:
    """`max_tokens` and `max_completion_tokens` together are refused, as OpenAI
    refuses them: with both, a check reading one and an upstream honouring the other
    would disagree about what the request may cost."""
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise FieldProblem(
            "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
            "max_tokens",
            "invalid_parameter_combination",
        )


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


def check_chat(body: dict[str, Any]) -> None:
    check_model(body)
    check_messages(body.get("messages"))
    check_fields(body, CHAT_FIELDS)
    if body.get("stream_options"):
        check_fields(body["stream_options"], STREAM_OPTIONS_FIELDS, "stream_options.")
    if body.get("tools"):
        check_tools(body["tools"])
    if body.get("functions"):
        check_functions(body["functions"])
    check_one_max_tokens(body)


def check_embeddings(body: dict[str, Any]) -> None:
    check_model(body)
    check_fields(body, EMBEDDING_FIELDS)
    check_embedding_input(body)


class ValidateChat:
    """Reads `exchange.body`; writes `exchange.stream` (and integral numbers as ints)."""

    async def __call__(self, exchange: Exchange) -> None:
        try:
            check_chat(exchange.body)
        except FieldProblem as problem:
            raise bad_request(problem) from None
        exchange.stream = exchange.body.get("stream") is True


class ValidateEmbeddings:
    """Reads `exchange.body` (and writes integral numbers and token ids as ints)."""

    async def __call__(self, exchange: Exchange) -> None:
        try:
            check_embeddings(exchange.body)
        except FieldProblem as problem:
            raise bad_request(problem) from None


def check_invocation(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """`POST /v1/tools/{name}/invoke`'s body: `tool_call_id`, a non-empty string, and
    `arguments`, an object; returns them (`FieldProblem` if they are not)."""
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
