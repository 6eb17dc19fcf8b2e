"""Responses `tools` and `tool_choice` in their Chat Completions form.

Function tools translate one to one: Responses' flat `{type, name, description,
parameters, strict}` is chat's nested `{type: function, function: {...}}`. Built-in
tools (web search, file search, computer use, code interpreter, MCP, ...) run
inside OpenAI's platform; a chat upstream has nothing that runs them, so they are
refused by name rather than dropped (a model told it may search, and given no
search tool, answers differently).

`strict`: when a function tool leaves it out, Responses on OpenAI makes the schema
strict (it rewrites it: every property required, no additional properties) while
chat's default is non-strict. Translation keeps the schema as written and sends no
`strict`: optional fields stay optional, and a client that wants strict says so.

`allowed_tools` (a subset of the tools the model may use this turn) becomes the
subset itself: only the allowed functions are sent, with the mode as `tool_choice`.
Same behaviour for the model, and it works on chat servers that never heard of
`allowed_tools`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from responses.errors import (
    InvalidRequest,
    invalid_type,
    invalid_value,
    missing,
    unknown_parameter,
    unsupported,
)

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
TOOL_CHOICE_MODES = ("auto", "none", "required")
#: The fields of the `tool_choice` objects translation takes (openai-openapi 2.3.0:
#: ToolChoiceFunction, ToolChoiceAllowed).
TOOL_CHOICE_KEYS = {
    "function": frozenset({"type", "name"}),
    "allowed_tools": frozenset({"type", "mode", "tools"}),
}
ALLOWED_TOOLS_MODES = ("auto", "required")


def chat_tools(tools: Any) -> list[Json]:
    """`tools` as chat tools; refuses built-in tools and duplicate names."""
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    translated: list[Json] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        function = _chat_function(tool, where)
        name = function["name"]
        if name in seen:
            raise invalid_value(f"{where}.name", f"duplicate tool name '{name}'.")
        seen.add(name)
        translated.append({"type": "function", "function": function})
    return translated


def _chat_function(tool: Any, where: str) -> Json:
    if not isinstance(tool, dict):
        raise invalid_type(where, "an object", tool)
    kind = tool.get("type")
    if kind != "function":
        if kind in BUILT_IN_TOOLS:
            raise unsupported(f"{where}.type", f"The built-in tool '{kind}'")
        if kind in ("custom", "namespace"):
            raise unsupported(f"{where}.type", f"A tool of type '{kind}'")
        if kind is None:
            raise missing(f"{where}.type")
        raise invalid_value(f"{where}.type", f"'{kind}' is not a known tool type.")
    for key in tool:
        if key not in FUNCTION_TOOL_KEYS:
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
    if tool.get("output_schema") is not None:
        raise unsupported(f"{where}.output_schema", "A function output schema")
    function: Json = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise invalid_type(f"{where}.description", "a string", description)
        function["description"] = description
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


def chat_tool_choice(choice: Any, tools: list[Json]) -> tuple[Any, list[Json]]:
    """(chat `tool_choice` or None to send none, the tools to send)."""
    names = {tool["function"]["name"] for tool in tools}
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
    if kind == "function":
        name = choice.get("name")
        if not isinstance(name, str):
            raise invalid_type("tool_choice.name", "a string", name)
        if name not in names:
            raise invalid_value("tool_choice.name", f"no function named '{name}' is in 'tools'.")
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        return _allowed_tools(choice, tools, names)
    if isinstance(kind, str):
        raise unsupported("tool_choice.type", f"A tool choice of type '{kind}'")
    raise missing("tool_choice.type")


def _allowed_tools(
    choice: Mapping[str, Any], tools: list[Json], names: set[str]
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
        if entry.get("type") != "function":
            raise unsupported(f"{where}.type", f"Allowing a tool of type '{entry.get('type')}'")
        name = entry.get("name")
        if name not in names:
            raise invalid_value(f"{where}.name", f"no function named '{name}' is in 'tools'.")
        wanted.add(name)
    return mode, [tool for tool in tools if tool["function"]["name"] in wanted]
