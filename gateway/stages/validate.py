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
#: Optional members of an offered custom tool's `custom` besides `format` (null
#: accepted).
TOOL_CUSTOM_FIELDS: Fields = {"description": STRING}

# Custom tools (OpenAI's `CustomToolChatCompletions`, openai-openapi 2.3.0): free-text
# input, unconstrained or under a grammar. The gateway reads their names (policies,
# tool checks); the rest is checked so a malformed one is refused here, in OpenAI's
# words, rather than by an upstream after admission.
#: The kinds of tool a request may offer (`tools[].type`; absent is `function`).
TOOL_KINDS = ("function", "custom")
#: A custom tool's `format.type`, and a grammar's `syntax`.
CUSTOM_FORMATS = ("text", "grammar")
GRAMMAR_SYNTAXES = ("lark", "regex")
#: `tool_choice` objects: a named function or custom tool, or a subset of the tools.
TOOL_CHOICE_TYPES = ("function", "custom", "allowed_tools")
ALLOWED_TOOLS_MODES = ("auto", "required")

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
    results to their calls, so their shape is checked like OpenAI checks it. A custom
    tool's call (`type: custom`) carries `custom.name` and its free-text
    `custom.input`; any other is a function's, with `function.name` and
    `function.arguments`."""
    if not isinstance(calls, list):
        raise invalid_type(where, "an array", calls)
    for j, call in enumerate(calls):
        if not isinstance(call, dict):
            raise invalid_type(f"{where}[{j}]", "an object", call)
        kind, text = (
            ("custom", "input") if call.get("type") == "custom" else ("function", "arguments")
        )
        part = call.get(kind)
        if not isinstance(part, dict):
            raise invalid_type(f"{where}[{j}].{kind}", "an object", part)
        for field in ("name", text):
            if not isinstance(part.get(field), str):
                raise invalid_type(f"{where}[{j}].{kind}.{field}", "a string", part.get(field))


def check_tools(tools: list[Any]) -> None:
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        kind = tool.get("type", "function")
        if kind == "custom":
            check_custom_tool(tool.get("custom"), f"{where}.custom")
            continue
        function = tool.get("function")
        if kind != "function" or not isinstance(function, dict):
            raise invalid_value(
                where,
                "expected {'type': 'function', 'function': {...}} or "
                "{'type': 'custom', 'custom': {...}}.",
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_type(f"{where}.function.name", "a non-empty string", name)
        check_fields(function, TOOL_FUNCTION_FIELDS, f"{where}.function.")


def check_custom_tool(custom: Any, where: str) -> None:
    """A custom tool's `custom`: a non-empty `name`, an optional `description` and
    `format` (`{"type": "text"}`, or `{"type": "grammar", "grammar": {"definition",
    "syntax": "lark" | "regex"}}`)."""
    if custom is None:
        raise missing_parameter(where)
    if not isinstance(custom, dict):
        raise invalid_type(where, "an object", custom)
    name = custom.get("name")
    if not isinstance(name, str) or not name:
        raise invalid_type(f"{where}.name", "a non-empty string", name)
    check_fields(custom, TOOL_CUSTOM_FIELDS, f"{where}.")
    fmt = custom.get("format")
    if fmt is None:
        return
    where = f"{where}.format"
    if not isinstance(fmt, dict):
        raise invalid_type(where, "an object", fmt)
    check_one_of(fmt, "type", CUSTOM_FORMATS, where)
    if fmt["type"] == "grammar":
        grammar = fmt.get("grammar")
        if grammar is None:
            raise missing_parameter(f"{where}.grammar")
        if not isinstance(grammar, dict):
            raise invalid_type(f"{where}.grammar", "an object", grammar)
        definition = grammar.get("definition")
        if definition is None:
            raise missing_parameter(f"{where}.grammar.definition")
        if not isinstance(definition, str):
            raise invalid_type(f"{where}.grammar.definition", "a string", definition)
        check_one_of(grammar, "syntax", GRAMMAR_SYNTAXES, f"{where}.grammar")


def check_one_of(
    value: Mapping[str, Any], field: str, allowed: tuple[str, ...], where: str
) -> None:
    """`value[field]` is present and one of `allowed` (all strings)."""
    found = value.get(field)
    if found is None:
        raise missing_parameter(f"{where}.{field}")
    if not isinstance(found, str):
        raise invalid_type(f"{where}.{field}", "a string", found)
    if found not in allowed:
        raise invalid_value(f"{where}.{field}", f"'{echoed(found)}' is not one of {list(allowed)}.")


def check_tool_choice(choice: Any) -> None:
    """A `tool_choice` object: a named tool (`{"type": "function", "function":
    {"name"}}`, `{"type": "custom", "custom": {"name"}}`) or `{"type":
    "allowed_tools", "allowed_tools": {"mode": "auto" | "required", "tools": [...]}}`,
    each listed tool named the same way (its `type` defaulting to `function`, as in
    `tools`). A string (`none`, `auto`, `required`) is the provider's to judge.
    Whether a named tool is among `tools` is too: OpenAI refuses it when it is not."""
    if not isinstance(choice, dict):
        return
    check_one_of(choice, "type", TOOL_CHOICE_TYPES, "tool_choice")
    kind = choice["type"]
    if kind != "allowed_tools":
        check_named_tool(choice, kind, "tool_choice")
        return
    where = "tool_choice.allowed_tools"
    allowed = choice.get("allowed_tools")
    if allowed is None:
        raise missing_parameter(where)
    if not isinstance(allowed, dict):
        raise invalid_type(where, "an object", allowed)
    check_one_of(allowed, "mode", ALLOWED_TOOLS_MODES, where)
    listed = allowed.get("tools")
    if listed is None:
        raise missing_parameter(f"{where}.tools")
    if not isinstance(listed, list):
        raise invalid_type(f"{where}.tools", "an array", listed)
    for k, entry in enumerate(listed):
        at = f"{where}.tools[{k}]"
        if not isinstance(entry, dict):
            raise invalid_type(at, "an object", entry)
        entry_kind = entry.get("type", "function")
        if entry_kind not in TOOL_KINDS:
            if not isinstance(entry_kind, str):
                raise invalid_type(f"{at}.type", "a string", entry_kind)
            raise invalid_value(
                f"{at}.type", f"'{echoed(entry_kind)}' is not one of {list(TOOL_KINDS)}."
            )
        check_named_tool(entry, entry_kind, at)


def check_named_tool(value: Mapping[str, Any], kind: str, where: str) -> None:
    """`value[kind]` is an object with a string `name`."""
    spec = value.get(kind)
    if spec is None:
        raise missing_parameter(f"{where}.{kind}")
    if not isinstance(spec, dict):
        raise invalid_type(f"{where}.{kind}", "an object", spec)
    name = spec.get("name")
    if name is None:
        raise missing_parameter(f"{where}.{kind}.name")
    if not isinstance(name, str):
        raise invalid_type(f"{where}.{kind}.name", "a string", name)


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
    if body.get("tool_choice") is not None:
        check_tool_choice(body["tool_choice"])
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
