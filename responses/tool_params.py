"""Responses tools in their Chat Completions form, both ways: `tools` and
`tool_choice` in the request, custom tool calls and their outputs in the items.

Function tools translate one to one: Responses' flat `{type, name, description,
parameters, strict}` is chat's nested `{type: function, function: {...}}`. Custom
tools (free-text input, optionally under a grammar) too: `{type: custom, name,
description, format}` is chat's `{type: custom, custom: {...}}`, a grammar format's
flat `{type: grammar, syntax, definition}` chat's `{type: grammar, grammar:
{definition, syntax}}`; a `custom_tool_call` item is chat's `{type: custom, custom:
{name, input}}` tool call and back, a `custom_tool_call_output` a `role: tool`
message, as for functions (responses/items.py, response.py and stream.py use the
shapes here). Built-in tools (web search, file search, computer use, code
interpreter, MCP, ...) run inside OpenAI's platform; a chat upstream has nothing that
runs them, so they are refused by name rather than dropped (a model told it may
search, and given no search tool, answers differently).

`strict`: when a function tool leaves it out, Responses on OpenAI makes the schema
strict (it rewrites it: every property required, no additional properties) while
chat's default is non-strict. Translation keeps the schema as written and sends no
`strict`: optional fields stay optional, and a client that wants strict says so.

`allowed_tools` (a subset of the tools the model may use this turn) becomes the
subset itself: only the allowed tools are sent, with the mode as `tool_choice`.
Same behaviour for the model, and it works on chat servers that never heard of
`allowed_tools`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.chat import tool_call_parts
from responses.errors import (
    BadUpstreamReply,
    InvalidRequest,
    invalid_type,
    invalid_value,
    missing,
    unknown_parameter,
    unsupported,
)
from responses.ids import new_id

Json = dict[str, Any]

#: Built-in (hosted) tool types, each refused by name.
BUILT_IN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "computer",
        "computer_use",
        "computer_use_preview",
        "code_interpreter",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
        "programmatic_tool_calling",
    }
)
#: Keys a function tool may carry; any other key is refused, as OpenAI refuses it.
FUNCTION_TOOL_KEYS = frozenset(
    {
        "type",
        "name",
        "description",
        "parameters",
        "strict",
        "defer_loading",
        "allowed_callers",
        "output_schema",
    }
)
#: Keys a custom tool may carry (openai-openapi 2.3.0: CustomToolParam), and its
#: `format`'s (CustomTextFormatParam, CustomGrammarFormatParam).
CUSTOM_TOOL_KEYS = frozenset(
    {"type", "name", "description", "format", "defer_loading", "allowed_callers"}
)
CUSTOM_FORMAT_KEYS = {
    "text": frozenset({"type"}),
    "grammar": frozenset({"type", "syntax", "definition"}),
}
GRAMMAR_SYNTAXES = ("lark", "regex")
#: The tool types translation sends to chat, by chat's name for each.
TRANSLATED_TOOLS = ("function", "custom")
TOOL_CHOICE_MODES = ("auto", "none", "required")
#: The fields of the `tool_choice` objects translation takes (openai-openapi 2.3.0:
#: ToolChoiceFunction, ToolChoiceCustom, ToolChoiceAllowed).
TOOL_CHOICE_KEYS = {
    "function": frozenset({"type", "name"}),
    "custom": frozenset({"type", "name"}),
    "allowed_tools": frozenset({"type", "mode", "tools"}),
}
ALLOWED_TOOLS_MODES = ("auto", "required")
#: What each tool type is called in an error ("no custom tool named 'x' ...").
KIND_WORDS = {"function": "function", "custom": "custom tool"}

#: Custom tool call items and their outputs (openai-openapi 2.3.0: CustomToolCall,
#: CustomToolCallOutput), and the fields each may carry: `status` too, which the
#: API returns on output items and clients send back.
CUSTOM_CALL = "custom_tool_call"
CUSTOM_CALL_OUTPUT = "custom_tool_call_output"
CUSTOM_CALL_FIELDS = frozenset(
    {"type", "id", "call_id", "name", "input", "status", "namespace", "caller"}
)
CUSTOM_OUTPUT_FIELDS = frozenset({"type", "id", "call_id", "output", "status", "caller"})
#: Item id prefixes, as OpenAI's (`ctc_...`).
CUSTOM_CALL_PREFIX = "ctc"
CUSTOM_OUTPUT_PREFIX = "ctco"


def chat_tools(tools: Any) -> list[Json]:
    """`tools` as chat tools; refuses built-in tools and duplicate names."""
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    translated: list[Json] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = _tool_kind(tool, where)
        spec = _chat_custom(tool, where) if kind == "custom" else _chat_function(tool, where)
        name = spec["name"]
        if name in seen:
            raise invalid_value(f"{where}.name", f"duplicate tool name '{name}'.")
        seen.add(name)
        translated.append({"type": kind, kind: spec})
    return translated


def tool_name(tool: Json) -> str:
    """The name of a translated (chat) tool, a function or a custom tool."""
    return str(tool[tool["type"]]["name"])


def _tool_kind(tool: Any, where: str) -> str:
    """The tool's type when translation sends it (`function` or `custom`)."""
    if not isinstance(tool, dict):
        raise invalid_type(where, "an object", tool)
    kind = tool.get("type")
    if kind in TRANSLATED_TOOLS:
        return str(kind)
    if kind in BUILT_IN_TOOLS:
        raise unsupported(f"{where}.type", f"The built-in tool '{kind}'")
    if kind == "namespace":
        raise unsupported(f"{where}.type", f"A tool of type '{kind}'")
    if kind is None:
        raise missing(f"{where}.type")
    raise invalid_value(f"{where}.type", f"'{kind}' is not a known tool type.")


def _common_fields(tool: Json, keys: frozenset[str], where: str) -> Json:
    """What function and custom tools share: only their own keys, a non-empty name,
    a direct caller, no deferred loading, an optional description."""
    for key in tool:
        if key not in keys:
            raise InvalidRequest(
                f"Unknown parameter: '{where}.{key}'.",
                param=f"{where}.{key}",
                code="unknown_parameter",
            )
    name = tool.get("name")
    if name is None:
        raise missing(f"{where}.name")
    if not isinstance(name, str) or not name:
        raise invalid_type(f"{where}.name", "a non-empty string", name)
    if tool.get("defer_loading"):
        raise unsupported(f"{where}.defer_loading", "Deferred tool loading (tool search)")
    callers = tool.get("allowed_callers")
    if callers is not None and "direct" not in callers:
        raise unsupported(f"{where}.allowed_callers", "A tool only a program may call")
    spec: Json = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise invalid_type(f"{where}.description", "a string", description)
        spec["description"] = description
    return spec


def _chat_custom(tool: Json, where: str) -> Json:
    """A custom tool's chat `custom`: name, description, and its format, a grammar's
    flat `syntax` and `definition` nested under chat's `grammar`."""
    custom = _common_fields(tool, CUSTOM_TOOL_KEYS, where)
    fmt = tool.get("format")
    if fmt is None:
        return custom
    where = f"{where}.format"
    if not isinstance(fmt, dict):
        raise invalid_type(where, "an object", fmt)
    kind = fmt.get("type")
    keys = CUSTOM_FORMAT_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        if kind is None:
            raise missing(f"{where}.type")
        raise invalid_value(f"{where}.type", f"'{kind}' is not one of {list(CUSTOM_FORMAT_KEYS)}.")
    for key in fmt:
        if key not in keys:  # echoed and stored with the response: only defined fields
            raise unknown_parameter(f"{where}.{key}")
    if kind == "text":
        custom["format"] = {"type": "text"}
        return custom
    syntax = fmt.get("syntax")
    if syntax is None:
        raise missing(f"{where}.syntax")
    if syntax not in GRAMMAR_SYNTAXES:
        raise invalid_value(
            f"{where}.syntax", f"'{syntax}' is not one of {list(GRAMMAR_SYNTAXES)}."
        )
    definition = fmt.get("definition")
    if definition is None:
        raise missing(f"{where}.definition")
    if not isinstance(definition, str):
        raise invalid_type(f"{where}.definition", "a string", definition)
    custom["format"] = {"type": "grammar", "grammar": {"definition": definition, "syntax": syntax}}
    return custom


def _chat_function(tool: Json, where: str) -> Json:
    function = _common_fields(tool, FUNCTION_TOOL_KEYS, where)
    if tool.get("output_schema") is not None:
        raise unsupported(f"{where}.output_schema", "A function output schema")
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise invalid_type(f"{where}.parameters", "an object", parameters)
        function["parameters"] = parameters
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise invalid_type(f"{where}.strict", "a boolean", strict)
        function["strict"] = strict
    return function


def echoed_tools(tools: list[Json]) -> list[Json]:
    """`tools` (already checked by `chat_tools`) as a Response repeats them: each
    function tool whole, as OpenAI's document (openai-openapi 2.3.0, `FunctionTool`)
    requires it, `description` and `parameters` null when not given, and `strict` as
    translation sent it: `false` when the client left it out (chat's default, so the
    upstream did not enforce the schema; OpenAI echoes `true` there because it
    does). A custom tool is repeated as sent."""
    echoed = []
    for tool in tools:
        if tool.get("type") == "custom":
            echoed.append(dict(tool))
            continue
        echoed.append(
            {
                **tool,
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": tool.get("strict") is True,
            }
        )
    return echoed


def chat_tool_choice(choice: Any, tools: list[Json]) -> tuple[Any, list[Json]]:
    """(chat `tool_choice` or None to send none, the tools to send)."""
    names = {tool_name(tool): tool["type"] for tool in tools}
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise invalid_value(
                "tool_choice", f"'{choice}' is not one of {list(TOOL_CHOICE_MODES)}."
            )
        if choice == "required" and not tools:
            raise invalid_value("tool_choice", "'required' needs at least one tool in 'tools'.")
        return (choice if tools else None), tools
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", "a string or an object", choice)
    kind = choice.get("type")
    keys = TOOL_CHOICE_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is not None:
        for key in choice:
            if key not in keys:  # echoed and stored with the response: only defined fields
                raise unknown_parameter(f"tool_choice.{key}")
    if kind in TRANSLATED_TOOLS:
        name = choice.get("name")
        if not isinstance(name, str):
            raise invalid_type("tool_choice.name", "a string", name)
        _check_named(name, kind, names, "tool_choice.name")
        return {"type": kind, kind: {"name": name}}, tools
    if kind == "allowed_tools":
        return _allowed_tools(choice, tools, names)
    if isinstance(kind, str):
        raise unsupported("tool_choice.type", f"A tool choice of type '{kind}'")
    raise missing("tool_choice.type")


def _check_named(name: str, kind: str, names: Mapping[str, str], where: str) -> None:
    """`name` is a tool of type `kind` in `tools`."""
    if names.get(name) != kind:
        raise invalid_value(where, f"no {KIND_WORDS[kind]} named '{name}' is in 'tools'.")


def _allowed_tools(
    choice: Mapping[str, Any], tools: list[Json], names: Mapping[str, str]
) -> tuple[Any, list[Json]]:
    mode = choice.get("mode")
    if mode not in ALLOWED_TOOLS_MODES:
        raise invalid_value(
            "tool_choice.mode", f"'{mode}' is not one of {list(ALLOWED_TOOLS_MODES)}."
        )
    allowed = choice.get("tools")
    if not isinstance(allowed, list) or not allowed:
        raise invalid_type("tool_choice.tools", "a non-empty array", allowed)
    wanted: set[str] = set()
    for k, entry in enumerate(allowed):
        where = f"tool_choice.tools[{k}]"
        if not isinstance(entry, dict):
            raise invalid_type(where, "an object", entry)
        kind = entry.get("type")
        if kind not in TRANSLATED_TOOLS:
            raise unsupported(f"{where}.type", f"Allowing a tool of type '{kind}'")
        name = entry.get("name")
        _check_named(name if isinstance(name, str) else "", str(kind), names, f"{where}.name")
        wanted.add(str(name))
    return mode, [tool for tool in tools if tool_name(tool) in wanted]


# -- custom tool calls and their outputs, as items ---------------------------------------


def chat_tool_call(item: Json) -> Json:
    """A canonical call item (`function_call` or `custom_tool_call`) as the chat tool
    call of an assistant message."""
    if item["type"] == CUSTOM_CALL:
        custom = {"name": item["name"], "input": item["input"]}
        return {"id": item["call_id"], "type": "custom", "custom": custom}
    function = {"name": item["name"], "arguments": item["arguments"]}
    return {"id": item["call_id"], "type": "function", "function": function}


def custom_call_item(item_id: str, call_id: str, name: str, text: str, status: str) -> Json:
    """A `custom_tool_call` output item (the shape a stream's items share)."""
    return {
        "id": item_id,
        "type": CUSTOM_CALL,
        "status": status,
        "call_id": call_id,
        "name": name,
        "input": text,
    }


def is_custom_call(call: Any) -> bool:
    """Whether a chat tool call (or a streamed fragment of one) is a custom tool's."""
    return isinstance(call, dict) and tool_call_parts(call)[2]


def custom_call_from_chat(call: Json, k: int) -> Json:
    """Chat's custom tool call `k` of a reply as a `custom_tool_call` output item."""
    name, text, _ = tool_call_parts(call)
    if not isinstance(name, str) or not name:
        raise BadUpstreamReply(
            f"Tool call {k} of the upstream reply has no custom tool name.",
            code="bad_upstream_reply",
        )
    call_id = call.get("id")
    return custom_call_item(
        new_id(CUSTOM_CALL_PREFIX),
        call_id if isinstance(call_id, str) and call_id else new_id("call"),
        name,
        text if isinstance(text, str) else "",
        "completed",
    )
