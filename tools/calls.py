"""Checking the tool calls a model makes against the tools the request offered.

A call is checked against the schema the request itself offered for that tool
(`tools[].function.parameters`, or a legacy `functions[].parameters`) and, when the
request binds the registered tool of that name (tools/binding.py), against the
registry's `input_schema` too. A call to a tool the request did not offer is a
violation whatever its arguments. A legacy `function_call` in a reply is a call like
any other (with no id). Streamed calls arrive as argument fragments;
`ToolCallAssembler` puts them back together first.

Custom tools (`{"type": "custom", "custom": {"name", "format"}}`) take free text,
optionally under a grammar: what can be checked is that the name was offered as a
custom tool. Their input and any grammar or format are not checked. The kind counts
as much as the name: a custom call to a name offered as a function (or a function
call to a custom tool) calls a tool the request did not offer, since the agent would
run it with the wrong kind of input (free text as arguments, or JSON as text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from common.chat import OfferedTool, tool_call_parts
from tools.binding import NONE, Bindings
from tools.config import Mode, ToolPolicy
from tools.registry import ToolRegistry
from tools.schemas import SchemaCache, problems
from tools.shapes import as_dict, as_index, as_list
from tools.violations import SEVERITY, Violation

if TYPE_CHECKING:
    from jsonschema.protocols import Validator


@dataclass(slots=True)
class ToolCall:
    id: str | None
    name: str
    #: Function arguments (JSON text), or a custom tool's free-text input.
    arguments: str
    custom: bool = False


#: A streamed legacy `function_call` is assembled under this call index.
_LEGACY_INDEX = -1


def calls_in_reply(data: dict[str, Any]) -> list[ToolCall]:
    """The tool calls of every choice of a chat.completion body, legacy
    `function_call`s included."""
    found = []
    for choice in as_list(data.get("choices")):
        message = as_dict(as_dict(choice).get("message"))
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            found.append(
                ToolCall(None, str(legacy.get("name") or ""), str(legacy.get("arguments") or ""))
            )
        for call in as_list(message.get("tool_calls")):
            if not isinstance(call, dict):
                continue
            name, text, custom = tool_call_parts(call)
            found.append(ToolCall(call.get("id"), str(name or ""), str(text or ""), custom))
    return found


@dataclass
class _Partial:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    custom: bool = False


class ToolCallAssembler:
    """Rebuilds streamed tool calls from `chat.completion.chunk` deltas."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, int], _Partial] = {}

    def feed(self, chunk: dict[str, Any]) -> None:
        for choice in as_list(chunk.get("choices")):
            choice = as_dict(choice)
            delta = as_dict(choice.get("delta"))
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                key = (as_index(choice.get("index")), _LEGACY_INDEX)
                self._feed_part(key, {"function": legacy})
            for call in as_list(delta.get("tool_calls")):
                if not isinstance(call, dict):
                    continue
                key = (as_index(choice.get("index")), as_index(call.get("index")))
                self._feed_part(key, call)

    def _feed_part(self, key: tuple[int, int], call: dict[str, Any]) -> None:
        """One fragment of the call at `key` (choice index, call index)."""
        partial = self._calls.setdefault(key, _Partial())
        if isinstance(call.get("id"), str):
            partial.id = call["id"]
        name, text, custom = tool_call_parts(call)
        partial.custom = partial.custom or custom
        if isinstance(name, str):
            partial.name += name
        if isinstance(text, str):
            partial.arguments.append(text)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(p.id, p.name, "".join(p.arguments), p.custom)
            for _, p in sorted(self._calls.items())
        ]


class OfferedTools:
    """The tools one request offered, and how calls to them are checked."""

    def __init__(
        self,
        offered: Iterable[OfferedTool],
        registry: ToolRegistry,
        cache: SchemaCache,
        policy: ToolPolicy,
        bindings: Bindings = NONE,
    ) -> None:
        self._registry = registry
        self._policy = policy
        self._validators: dict[str, list[Validator]] = {}
        self._modes: dict[str, Mode] = {}
        self._custom: set[str] = set()
        for tool in offered:
            name = tool.name
            if tool.kind == "custom":
                self._custom.add(name)
                self._modes[name] = policy.offered_mode
                continue
            validators = []
            checked = cache.get(tool.parameters or {"type": "object"})
            if checked is not None:
                validators.append(checked)
            registered = registry.get(name) if bindings.binds(name) else None
            if registered is not None:
                validators.append(registered.input)
            self._validators[name] = validators
            self._modes[name] = registered.config.mode if registered else policy.offered_mode

    @property
    def names(self) -> set[str]:
        return set(self._validators) | self._custom

    @property
    def mode(self) -> Mode:
        """The mode for calls to tools that were not offered: the strictest among the
        offered tools, or `offered_mode` when the request offered none."""
        if not self._modes:
            return self._policy.offered_mode
        return max(self._modes.values(), key=SEVERITY.__getitem__)

    def check(self, call: ToolCall) -> list[Violation]:
        if call.custom and call.name in self._custom:
            return []  # free text: the name is all that can be checked
        if call.custom or call.name not in self._validators:
            offered_as = _kind_offered(call, self._custom, self._validators)
            if offered_as is not None:
                return [
                    Violation(
                        call.name,
                        "unknown_tool",
                        "type",
                        f"the model called '{call.name}' as a {_kind(call.custom)}, but the "
                        f"request offered it as a {offered_as}",
                        self.mode,
                        call.id,
                    )
                ]
            return [
                Violation(
                    call.name or "?",
                    "unknown_tool",
                    "name",
                    f"the model called '{call.name}', which the request did not offer",
                    self.mode,
                    call.id,
                )
            ]
        mode = self._modes[call.name]
        if mode == "off":
            return []
        try:
            arguments = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError as exc:
            return [
                Violation(
                    call.name,
                    "invalid_json",
                    "arguments",
                    f"arguments are not valid JSON ({exc})",
                    mode,
                    call.id,
                )
            ]
        found = []
        for validator in self._validators[call.name]:
            for problem in problems(validator, arguments):
                found.append(
                    Violation(
                        call.name,
                        "schema",
                        problem.path,
                        f"arguments at {problem.path}: {problem.message}",
                        mode,
                        call.id,
                    )
                )
        return _unique(found)

    def check_all(self, calls: Iterable[ToolCall]) -> list[Violation]:
        return [violation for call in calls for violation in self.check(call)]


def _kind(custom: bool) -> str:
    return "custom tool" if custom else "function"


def _kind_offered(call: ToolCall, custom: set[str], functions: Mapping[str, Any]) -> str | None:
    """What the request offered the called name as, when that is not what was
    called (None: the name was not offered at all)."""
    if call.custom and call.name in functions:
        return _kind(False)
    if not call.custom and call.name in custom:
        return _kind(True)
    return None


def _unique(violations: list[Violation]) -> list[Violation]:
    """The offered and the registered schema often agree: report each problem once."""
    seen, unique = set(), []
    for violation in violations:
        key = (violation.where, violation.message)
        if key not in seen:
            seen.add(key)
            unique.append(violation)
    return unique
