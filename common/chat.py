"""What the gateway reads of a chat request, in one place.

A request can offer a tool in three ways and return a tool's result in two. If one
check read `tools` and another also `functions`, a rule that denies a tool offered
under `tools` could be walked around by offering it under `functions` (it was). So
every reader of the request's tools, results and output budget goes through here:
policy attributes, tool bindings and checks, guards, limits and caps alike
(DESIGN.md 10b, "one request model for rules and checks").

- Tools offered: `tools[]` of type `function` (`function.name`, `function.parameters`)
  and `custom` (`custom.name`), and the legacy `functions[]` (`name`, `parameters`).
  The Responses API's tools arrive here translated into `tools`.
- Tool calls (in a reply, a stream delta, or an assistant message of the history):
  a function's (`function.name`, `function.arguments`) or a custom tool's
  (`custom.name`, `custom.input`), read by `tool_call_parts`.
- Tool results: `role: tool` messages and legacy `role: function` messages.
- Completion tokens asked for: `max_completion_tokens` or `max_tokens`. OpenAI refuses
  a request that sets both, and so does the gateway's validation, so exactly one field
  is ever the one the upstream honours.
- Tokens estimated from bytes, where nothing is counted: `estimated_tokens`.

Readers here never raise on odd shapes (validation has refused what it must by the
time they run); an entry they cannot read is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: The chat fields that ask for completion tokens, newest first.
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
#: Bytes of request text per token, for the estimates made without counting: what
#: policies see as `prompt_tokens`, an embedding's reservation, a continued
#: conversation's stored part. English text averages ~4 bytes a token with OpenAI's
#: encodings; exact counting (tiktoken) is the prompt guard's and the limits'.
BYTES_PER_TOKEN = 4
#: Message roles that carry a tool's result back to the model.
RESULT_ROLES = frozenset({"tool", "function"})


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """One tool a request offers the model."""

    name: str
    kind: Literal["function", "custom"]
    #: The object that describes it as the client sent it (`tools[i].function`,
    #: `tools[i].custom` or `functions[i]`): binding may fill in a registered schema.
    spec: dict[str, Any]
    #: Where it was offered, for error params: `tools[3].function`, `functions[0]`.
    where: str

    @property
    def parameters(self) -> Any:
        """The JSON Schema offered for a function's arguments (None: none offered)."""
        return self.spec.get("parameters") if self.kind == "function" else None


def offered_tools(body: Mapping[str, Any]) -> Iterator[OfferedTool]:
    """Every tool the request offers: `tools` first, then legacy `functions`."""
    tools = body.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict):
            continue
        kind: Literal["function", "custom"] = (
            "custom" if tool.get("type") == "custom" else "function"
        )
        spec = tool.get(kind)
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            yield OfferedTool(spec["name"], kind, spec, f"tools[{index}].{kind}")
    functions = body.get("functions")
    for index, spec in enumerate(functions if isinstance(functions, list) else ()):
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            yield OfferedTool(spec["name"], "function", spec, f"functions[{index}]")


def offers_tools(body: Mapping[str, Any]) -> bool:
    """Whether the request offers any tool (cheap: no entry is read)."""
    return bool(body.get("tools")) or bool(body.get("functions"))


def tool_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of every tool the request offers, in order."""
    return tuple(tool.name for tool in offered_tools(body))


def tool_call_parts(call: Mapping[str, Any]) -> tuple[Any, Any, bool]:
    """(name, text, custom) of one tool call: a function call's `function.name` and
    `function.arguments` (JSON text), or a custom tool call's `custom.name` and
    `custom.input` (free text). The same reader for a reply's calls, a stream's
    deltas (a fragment after the first names no `type`: its key says which it is)
    and the history's calls, so a custom call is never read as a function with no
    name. The values are as sent (None when absent): callers check their type."""
    kind = call.get("type")
    custom = kind == "custom" or (kind is None and "custom" in call)
    part = call.get("custom" if custom else "function")
    if not isinstance(part, Mapping):
        return None, None, custom
    return part.get("name"), part.get("input" if custom else "arguments"), custom


def has_tool_results(messages: Any) -> bool:
    """Whether the conversation returns any tool result (`tool` or `function` role)."""
    return isinstance(messages, list) and any(
        isinstance(m, dict) and m.get("role") in RESULT_ROLES for m in messages
    )


def max_tokens_asked(body: Mapping[str, Any]) -> int | None:
    """The completion tokens the request asks for, or None when it sets no limit."""
    for field in MAX_TOKEN_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimated_tokens(text_bytes: int) -> int:
    """Tokens in `text_bytes` bytes of request text, estimated (`BYTES_PER_TOKEN`)."""
    return text_bytes // BYTES_PER_TOKEN


# -- the Responses API's shape, for a request passed through as sent --------------------

#: Responses input items that carry a tool's result back to the model.
RESULT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})


def responses_tool_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The tools a Responses request offers: a function's or a custom tool's name, and
    a built-in tool by its type (`web_search`, `file_search`, `code_interpreter`,
    `mcp`...), so a rule can allow or deny a built-in tool like any other."""
    tools = body.get("tools")
    names = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        name = tool.get("name") if kind in ("function", "custom") else kind
        if isinstance(name, str):
            names.append(name)
    return tuple(names)


def responses_tool_results(body: Mapping[str, Any]) -> bool:
    """Whether a Responses request's input returns a tool's result."""
    items = body.get("input")
    return isinstance(items, list) and any(
        isinstance(item, dict) and item.get("type") in RESULT_ITEMS for item in items
    )


def responses_max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Shape:
    """How the stages read a request body of one API. A request is read through its
    exchange's shape (`Exchange.shape`): a Chat Completions body (what the Responses
    API becomes when it is translated), or a Responses body passed through as sent,
    so caps, policies and limits govern both alike."""

    name: str
    tool_names: Callable[[Mapping[str, Any]], tuple[str, ...]]
    has_tool_results: Callable[[Mapping[str, Any]], bool]
    max_tokens_asked: Callable[[Mapping[str, Any]], int | None]
    #: The fields that ask for output tokens; the first is where a tenant's cap is
    #: written when a request asks for no limit.
    max_tokens_fields: tuple[str, ...]


CHAT = Shape(
    "chat",
    tool_names,
    lambda body: has_tool_results(body.get("messages")),
    max_tokens_asked,
    MAX_TOKEN_FIELDS,
)
RESPONSES = Shape(
    "responses",
    responses_tool_names,
    responses_tool_results,
    responses_max_tokens,
    ("max_output_tokens",),
)
