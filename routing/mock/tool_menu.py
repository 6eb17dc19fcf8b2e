"""Which tools the mock may call this turn, and whether it must: `tools` with
`tool_choice`, or the deprecated `functions` with `function_call`.

`tool_choice` narrows and forces the way OpenAI documents it:
- absent or `auto`: any offered tool, or a text answer;
- `none`: a text answer even though tools are offered;
- `required`: some tool, never text;
- `{type: function, function: {name}}` / `{type: custom, custom: {name}}`: that
  tool, never text;
- `{type: allowed_tools, allowed_tools: {mode: auto|required, tools: [...]}}`: only
  the listed tools, with the mode above.
The legacy pair works the same way: `function_call` is `none`, `auto` or `{name}`.

Refused like OpenAI refuses them: a choice with no tools to choose from, a choice
naming a tool that was not offered, an unknown mode, and `tools` together with
`functions` (the second is the deprecated spelling of the first). Malformed tool
definitions themselves are the gateway's to refuse; the mock skips what it cannot
read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from routing.mock.errors import MockError, invalid_value, missing

Json = dict[str, Any]
Mode = Literal["none", "auto", "required"]
Kind = Literal["function", "custom"]

#: Names of the tools structured-output frameworks offer for their final answer:
#: pydantic-ai's output tool (`final_result`, or `final_result_<Type>` when it
#: offers several). Calling it ends the framework's agent loop.
OUTPUT_TOOL_NAME = "final_result"
#: Other frameworks end their loop with a tool too (smolagents' `final_answer`, DSPy's
#: `finish`, SWE-agent's `submit`, Cline's `attempt_completion`): a tool is one of
#: those when every word of its name is in FINISHING_WORDS and one is in FINISHING_VERBS...
FINISHING_WORDS = frozenset(
    {"final", "answer", "result", "results", "response", "output", "finish", "done"}
    | {"complete", "completion", "submit", "task", "attempt", "give", "provide"}
)
FINISHING_VERBS = frozenset({"final", "finish", "done", "complete", "completion", "submit"})
#: ...or when its description starts by saying it gives the final answer or ends the task
#: ("Provides a final answer to the given problem.", "Marks the task as complete.").
_FINISHING_DESCRIPTION = re.compile(
    r"(?:(?:use|call) this(?: tool)? to |this tool )?"
    r"(?:(?:provide|give|return|submit|deliver|report)s? (?:a |the |your )?final "
    r"(?:answer|result|response|output)"
    r"|(?:mark|signal)s? (?:that )?the task (?:as |is )?(?:complete|done|finished))",
    re.IGNORECASE,
)
_WORD_BOUNDARY = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def is_finishing(name: str, description: str) -> bool:
    """Whether a tool ends the agent loop that offers it, by its name or description."""
    if name == OUTPUT_TOOL_NAME or name.startswith(OUTPUT_TOOL_NAME + "_"):
        return True
    words = {word.lower() for word in _WORD_BOUNDARY.split(name) if word}
    if words and words <= FINISHING_WORDS and words & FINISHING_VERBS:
        return True
    return _FINISHING_DESCRIPTION.match(description.lstrip()) is not None


@dataclass(frozen=True, slots=True)
class OfferedTool:
    name: str
    kind: Kind
    #: A function's JSON Schema (None for custom tools: they take free text).
    parameters: Json | None
    #: What the tool says it does ("" when it says nothing).
    description: str = ""

    @property
    def is_output(self) -> bool:
        """A framework's final-answer tool rather than one that fetches something."""
        return is_finishing(self.name, self.description)


@dataclass(frozen=True, slots=True)
class ToolMenu:
    #: The tools the model may call this turn, in the order offered.
    tools: tuple[OfferedTool, ...]
    mode: Mode
    #: Offered as `functions`: a call is answered as a legacy `function_call`.
    legacy: bool


def read_menu(body: Json) -> ToolMenu | None:
    """The request's tool menu, or None when it offers no tools at all."""
    tools, functions = body.get("tools"), body.get("functions")
    choice, function_call = body.get("tool_choice"), body.get("function_call")
    if tools and functions:
        raise MockError(
            400,
            "'functions' and 'tools' cannot both be given: 'functions' is the deprecated "
            "form of 'tools'.",
            "functions",
        )
    if functions:
        if choice is not None:
            raise invalid_value(
                "tool_choice", "'tool_choice' is only allowed when 'tools' are specified."
            )
        return _legacy_menu(functions, function_call)
    if function_call is not None:
        raise invalid_value(
            "function_call", "'function_call' is only allowed when 'functions' are specified."
        )
    offered = _offered(tools) if isinstance(tools, list) else ()
    if not offered:
        if choice is not None:
            raise invalid_value(
                "tool_choice", "'tool_choice' is only allowed when 'tools' are specified."
            )
        return None
    return _narrowed(offered, choice)


def _offered(tools: list[Any]) -> tuple[OfferedTool, ...]:
    found = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type", "function")
        spec = tool.get(kind) if kind in ("function", "custom") else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            continue
        parameters = spec.get("parameters") if kind == "function" else None
        if kind == "function" and not isinstance(parameters, dict):
            parameters = {"type": "object", "properties": {}}
        found.append(OfferedTool(spec["name"], kind, parameters, _description(spec)))
    return tuple(found)


def _description(spec: Json) -> str:
    description = spec.get("description")
    return description if isinstance(description, str) else ""


def _narrowed(offered: tuple[OfferedTool, ...], choice: Any) -> ToolMenu:
    if choice is None or choice == "auto":
        return ToolMenu(offered, "auto", legacy=False)
    if choice in ("none", "required"):
        return ToolMenu(offered, choice, legacy=False)
    if isinstance(choice, str):
        raise invalid_value(
            "tool_choice",
            f"'{choice}'. Supported values are: 'none', 'auto', 'required', or an object.",
        )
    if not isinstance(choice, dict):
        raise invalid_value("tool_choice", "expected a string or an object.", "invalid_type")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = _chosen_name(choice, kind, "tool_choice")
        return ToolMenu((_find(offered, kind, name, "tool_choice"),), "required", legacy=False)
    if kind == "allowed_tools":
        return _allowed(offered, choice.get("allowed_tools"))
    if kind is None:
        raise missing("tool_choice.type")
    raise invalid_value(
        "tool_choice.type",
        f"'{kind}'. Supported values are: 'function', 'custom' and 'allowed_tools'.",
    )


def _allowed(offered: tuple[OfferedTool, ...], allowed: Any) -> ToolMenu:
    where = "tool_choice.allowed_tools"
    if not isinstance(allowed, dict):
        raise missing(where)
    mode = allowed.get("mode")
    if mode not in ("auto", "required"):
        raise invalid_value(
            f"{where}.mode", f"'{mode}'. Supported values are: 'auto' and 'required'."
        )
    listed = allowed.get("tools")
    if not isinstance(listed, list) or not listed:
        raise invalid_value(f"{where}.tools", "expected a non-empty array of tools.")
    chosen: list[OfferedTool] = []
    for index, entry in enumerate(listed):
        at = f"{where}.tools[{index}]"
        kind = entry.get("type", "function") if isinstance(entry, dict) else None
        if kind not in ("function", "custom"):
            raise invalid_value(
                f"{at}.type", f"'{kind}'. Supported values are: 'function' and 'custom'."
            )
        assert isinstance(entry, dict)
        tool = _find(offered, kind, _chosen_name(entry, kind, at), at)
        if tool not in chosen:
            chosen.append(tool)
    narrowed = tuple(tool for tool in offered if tool in chosen)
    return ToolMenu(narrowed, "auto" if mode == "auto" else "required", legacy=False)


def _chosen_name(choice: Json, kind: str, where: str) -> str:
    spec = choice.get(kind)
    name = spec.get("name") if isinstance(spec, dict) else choice.get("name")
    if not isinstance(name, str):
        raise missing(f"{where}.{kind}.name")
    return name


def _find(offered: tuple[OfferedTool, ...], kind: str, name: str, where: str) -> OfferedTool:
    for tool in offered:
        if tool.kind == kind and tool.name == name:
            return tool
    raise invalid_value(
        where, f"no {kind} tool named '{name}' was specified in the 'tools' parameter."
    )


def _legacy_menu(functions: Any, function_call: Any) -> ToolMenu:
    offered = tuple(
        OfferedTool(
            spec["name"],
            "function",
            spec["parameters"]
            if isinstance(spec.get("parameters"), dict)
            else {"type": "object", "properties": {}},
            _description(spec),
        )
        for spec in (functions if isinstance(functions, list) else [])
        if isinstance(spec, dict) and isinstance(spec.get("name"), str)
    )
    if function_call is None or function_call == "auto":
        return ToolMenu(offered, "auto", legacy=True)
    if function_call == "none":
        return ToolMenu(offered, "none", legacy=True)
    if isinstance(function_call, dict) and isinstance(function_call.get("name"), str):
        name = function_call["name"]
        for tool in offered:
            if tool.name == name:
                return ToolMenu((tool,), "required", legacy=True)
        raise invalid_value(
            "function_call",
            f"no function named '{name}' was specified in the 'functions' parameter.",
        )
    raise invalid_value(
        "function_call", "expected 'none', 'auto' or an object with the name of a function."
    )
