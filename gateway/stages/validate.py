"""Type checks for the request fields, with OpenAI's error wording.

Only the shape is checked here (types, required fields, the message structure
the gateway itself reads). Value ranges (a temperature of 7) are left to the
provider, which knows its own limits; unknown fields pass through untouched so a
new OpenAI parameter never needs a gateway release.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import GatewayError, invalid_type, invalid_value, missing_parameter
from gateway.exchange import Exchange

Check = Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_str_or_str_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))


STRING = ("a string", lambda v: isinstance(v, str))
BOOLEAN = ("a boolean", lambda v: isinstance(v, bool))
INTEGER = ("an integer", _is_int)
NUMBER = ("a number", _is_number)
OBJECT = ("an object", lambda v: isinstance(v, dict))
ARRAY = ("an array", lambda v: isinstance(v, list))
STRING_OR_OBJECT = ("a string or an object", lambda v: isinstance(v, (str, dict)))
STRING_OR_ARRAY = ("a string or an array of strings", _is_str_or_str_list)

#: Optional chat fields and their types; null is accepted for every one of them.
CHAT_FIELDS: Mapping[str, tuple[str, Check]] = {
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

EMBEDDING_FIELDS: Mapping[str, tuple[str, Check]] = {
    "encoding_format": STRING,
    "dimensions": INTEGER,
    "user": STRING,
}

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_fields(body: Mapping[str, Any], fields: Mapping[str, tuple[str, Check]]) -> None:
    for name, (expected, check) in fields.items():
        value = body.get(name)
        if value is not None and not check(value):
            raise invalid_type(name, expected, value)


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
            raise invalid_value(f"{where}.role", f"'{role}' is not one of {sorted(ROLES)}.")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise invalid_type(f"{where}.content", "a string or an array", content)
            check_content_parts(content, f"{where}.content")
        for field in ("name", "tool_call_id"):
            value = message.get(field)
            if value is not None and not isinstance(value, str):
                raise invalid_type(f"{where}.{field}", "a string", value)
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


def check_stream_options(options: Mapping[str, Any]) -> None:
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise invalid_type("stream_options.include_usage", "a boolean", include_usage)


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
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_type(f"{where}.function.parameters", "an object", parameters)


class ValidateChat:
    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        check_model(body)
        check_messages(body.get("messages"))
        check_fields(body, CHAT_FIELDS)
        if body.get("stream_options"):
            check_stream_options(body["stream_options"])
        if body.get("tools"):
            check_tools(body["tools"])
        exchange.stream = body.get("stream") is True


class ValidateEmbeddings:
    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        check_model(body)
        check_fields(body, EMBEDDING_FIELDS)
        value = body.get("input")
        if value is None:
            raise missing_parameter("input")
        if isinstance(value, str):
            return
        if not isinstance(value, list):
            raise invalid_type("input", "a string or an array", value)
        if not value:
            raise invalid_value("input", "must not be an empty array.")
        if not (
            all(isinstance(v, str) for v in value)
            or all(_is_int(v) for v in value)
            or all(isinstance(v, list) and all(_is_int(t) for t in v) for v in value)
        ):
            raise invalid_value(
                "input",
                "expected a string, an array of strings, an array of token ids, "
                "or an array of token-id arrays.",
            )
