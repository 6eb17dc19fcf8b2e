"""Checking the tool results an agent sends back (`role: tool` messages, and the
legacy `role: function` ones).

Each result is matched to the assistant tool call it answers (by
`tool_call_id`, a function's call or a custom tool's; a legacy `function` result by
its `name`, to the assistant's `function_call` before it), then checked: its
receipt, when it carries one or the tool requires one; its content against the
registered `output_schema`; and its text for prompt-injection markers (a flag
only, see `tools.injection`). Legacy results have no call id, so no receipt can be
tied to one: a legacy result of a tool that requires a receipt, or that carries one,
is refused as forged.

A result must answer a call, once. One that answers no earlier call cannot be
tied to a tool, so no tool's mode, schema or receipt rule would apply to it:
it is a violation of its own (`unmatched`), judged in the strictest mode of all
(every registered tool's and `offered_mode`), or any result could dodge its
tool's checks with a made-up id. A second result for a call that was already
answered is a violation too (`duplicate`), in the tool's mode: the model would
read both, and only the first was the one to vouch for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from common.chat import tool_call_parts
from routing.tokens import content_text
from tools.binding import NONE, Bindings
from tools.config import Mode, ToolPolicy
from tools.injection import scan
from tools.receipts import Content, Receipts
from tools.registry import ToolRegistry
from tools.schemas import problems
from tools.shapes import as_list
from tools.violations import SEVERITY, Violation

RECEIPT_FIELD = "seawall_receipt"


@dataclass(slots=True)
class ToolResult:
    index: int  # the message's position in `messages`
    call_id: str
    tool: str | None  # None when no assistant call has this id
    arguments: str | None
    content: str  # the text: a string content, or the text parts joined
    receipt: Any  # the message's `seawall_receipt`, None when absent
    #: An earlier `role: tool` message already answered the same call.
    duplicate: bool = False
    #: The content as sent when it is a list of parts: a receipt covers all of it.
    parts: list[Any] | None = None

    @property
    def signed(self) -> Content:
        """What a receipt for this result must cover."""
        return self.content if self.parts is None else self.parts


#: The key legacy `function_call`s are kept under among the calls by id: no
#: `tool_call_id` can equal it (a legacy result has none to send).
_LEGACY = "\x00function_call:"


def tool_results(messages: list[Any]) -> list[ToolResult]:
    # call id -> (tool, arguments, answered). An assistant message that names an
    # id again opens a new call (models reuse ids across turns); until then a
    # second result for the id is a duplicate. A legacy `function_call` is kept
    # under its tool's name, and answered by the next `function` result of that name.
    calls: dict[str, tuple[str, str, bool]] = {}
    found = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            for call in as_list(message.get("tool_calls")):
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    # A custom tool's call: its free-text `input` is what a receipt
                    # binds, as a function's `arguments` are.
                    name, text, _ = tool_call_parts(call)
                    calls[call["id"]] = (str(name or ""), str(text or ""), False)
            legacy = message.get("function_call")
            if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
                arguments = legacy.get("arguments")
                calls[_LEGACY + legacy["name"]] = (
                    legacy["name"],
                    arguments if isinstance(arguments, str) else "",
                    False,
                )
        elif role in ("tool", "function"):
            if role == "tool":
                call_id = message.get("tool_call_id")
                call_id = call_id if isinstance(call_id, str) else ""
                key = call_id
            else:
                name = message.get("name")
                call_id, key = "", _LEGACY + (name if isinstance(name, str) else "")
            content = message.get("content")
            tool = arguments = None
            duplicate = False
            if key in calls:
                tool, arguments, duplicate = calls[key]
                calls[key] = (tool, arguments, True)
            found.append(
                ToolResult(
                    index,
                    call_id,
                    tool,
                    arguments,
                    content_text(content),
                    message.get(RECEIPT_FIELD),
                    duplicate,
                    content if isinstance(content, list) else None,
                )
            )
    return found


class ResultChecker:
    def __init__(self, registry: ToolRegistry, receipts: Receipts, policy: ToolPolicy) -> None:
        self._registry = registry
        self._receipts = receipts
        self._policy = policy
        # Fixed at start-up: plain chats never pay for it.
        modes = [policy.offered_mode, *(t.config.mode for t in registry)]
        self._unmatched_mode: Mode = max(modes, key=SEVERITY.__getitem__)

    @property
    def registry(self) -> ToolRegistry:
        return self._registry

    @property
    def unmatched_mode(self) -> Mode:
        """The mode for a result that answers no call: the strictest there is."""
        return self._unmatched_mode

    def check(self, result: ToolResult, bindings: Bindings = NONE) -> list[Violation]:
        """The findings for one result; a registered tool's contract (its mode, output
        schema and receipt rule) applies only when `bindings` bind it."""
        if result.tool is None:
            return self._check_unmatched(result)
        registered = self._registry.get(result.tool) if bindings.binds(result.tool) else None
        mode: Mode = registered.config.mode if registered else self._policy.offered_mode
        if mode == "off":
            return []
        name = result.tool or "?"
        found = []
        if result.duplicate:
            found.append(
                Violation(
                    name,
                    "duplicate",
                    "tool_call_id",
                    f"an earlier tool message already answered tool_call_id "
                    f"'{_short(result.call_id)}'",
                    mode,
                    result.call_id,
                )
            )
        required = registered is not None and registered.config.receipt == "required"
        if result.receipt is not None or required:
            reason = self._receipt_problem(result)
            if reason is not None:
                found.append(Violation(name, "forged", "receipt", reason, mode, result.call_id))
        if registered is not None and registered.output is not None:
            found += self._schema_problems(name, result, registered.output, mode)
        return found + self._injection_flags(name, result)

    def _check_unmatched(self, result: ToolResult) -> list[Violation]:
        """A result for no call: no tool to judge it by, so it is judged strictly.
        Its receipt and schema are not checked (there is no call to bind a receipt
        to, nor a tool to name a schema): answering no call is the finding."""
        mode = self._unmatched_mode
        if mode == "off":
            return []
        reason = (
            f"no assistant tool call earlier in the conversation has tool_call_id "
            f"'{_short(result.call_id)}'"
            if result.call_id
            else "no assistant function_call earlier in the conversation names this function"
        )
        unmatched = Violation("?", "unmatched", "tool_call_id", reason, mode, result.call_id)
        return [unmatched, *self._injection_flags("?", result)]

    def injection_flags(self, name: str, result: ToolResult) -> list[Violation]:
        """Prompt-injection flags of a result whose other checks are done elsewhere
        (an MCP tool's result: gateway/stages/tools.py)."""
        return self._injection_flags(name, result)

    def _injection_flags(self, name: str, result: ToolResult) -> list[Violation]:
        found = []
        if self._policy.scan_injection:
            for kind in scan(result.content):
                found.append(
                    Violation(
                        name,
                        "injection",
                        kind,
                        f"possible prompt injection ({kind})",
                        "warn",
                        result.call_id,
                    )
                )
        return found

    def _receipt_problem(self, result: ToolResult) -> str | None:
        if result.receipt is None:
            return "the tool requires a receipt and the result has none"
        if not result.call_id:
            return "a legacy function result has no tool_call_id for a receipt to vouch for"
        if not self._receipts.enabled:
            return "the result carries a receipt but this gateway has no receipt keys"
        if result.tool is None or result.arguments is None:
            return "no assistant tool call has this tool_call_id"
        return self._receipts.verify(
            result.receipt, result.tool, result.call_id, result.arguments, result.signed
        )

    @staticmethod
    def _schema_problems(
        name: str, result: ToolResult, validator: Any, mode: Mode
    ) -> list[Violation]:
        try:
            value = orjson.loads(result.content)
        except orjson.JSONDecodeError:
            return [
                Violation(
                    name,
                    "invalid_json",
                    "content",
                    "the result is not valid JSON",
                    mode,
                    result.call_id,
                )
            ]
        return [
            Violation(
                name, "schema", p.path, f"result at {p.path}: {p.message}", mode, result.call_id
            )
            for p in problems(validator, value)
        ]


def _short(call_id: str) -> str:
    """A client's id, cut short for an error message."""
    return call_id if len(call_id) <= 64 else call_id[:64] + "..."
