"""Checking the tool results an agent sends back (`role: tool` messages).

Each result is matched to the assistant tool call it answers (by
`tool_call_id`), then checked: its receipt, when it carries one or the tool
requires one; its content against the registered `output_schema`; and its text
for prompt-injection markers (a flag only, see `tools.injection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from routing.tokens import content_text
from tools.config import Mode, ToolPolicy
from tools.injection import scan
from tools.receipts import Receipts
from tools.registry import ToolRegistry
from tools.schemas import problems
from tools.shapes import as_dict, as_list
from tools.violations import Violation

RECEIPT_FIELD = "seawall_receipt"


@dataclass(slots=True)
class ToolResult:
    index: int  # the message's position in `messages`
    call_id: str
    tool: str | None  # None when no assistant call has this id
    arguments: str | None
    content: str
    receipt: Any  # the message's `seawall_receipt`, None when absent


def tool_results(messages: list[Any]) -> list[ToolResult]:
    calls: dict[str, tuple[str, str]] = {}
    found = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            for call in as_list(message.get("tool_calls")):
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    function = as_dict(call.get("function"))
                    calls[call["id"]] = (
                        str(function.get("name") or ""),
                        str(function.get("arguments") or ""),
                    )
        elif role == "tool":
            call_id = message.get("tool_call_id")
            call_id = call_id if isinstance(call_id, str) else ""
            tool, arguments = calls.get(call_id, (None, None))
            found.append(
                ToolResult(
                    index,
                    call_id,
                    tool,
                    arguments,
                    content_text(message.get("content")),
                    message.get(RECEIPT_FIELD),
                )
            )
    return found


class ResultChecker:
    def __init__(self, registry: ToolRegistry, receipts: Receipts, policy: ToolPolicy) -> None:
        self._registry = registry
        self._receipts = receipts
        self._policy = policy

    @property
    def registry(self) -> ToolRegistry:
        return self._registry

    def check(self, result: ToolResult) -> list[Violation]:
        registered = self._registry.get(result.tool) if result.tool else None
        mode: Mode = registered.config.mode if registered else self._policy.offered_mode
        if mode == "off":
            return []
        name = result.tool or "?"
        found = []
        required = registered is not None and registered.config.receipt == "required"
        if result.receipt is not None or required:
            reason = self._receipt_problem(result)
            if reason is not None:
                found.append(Violation(name, "forged", "receipt", reason, mode, result.call_id))
        if registered is not None and registered.output is not None:
            found += self._schema_problems(name, result, registered.output, mode)
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
        if not self._receipts.enabled:
            return "the result carries a receipt but this gateway has no receipt keys"
        if result.tool is None or result.arguments is None:
            return "no assistant tool call has this tool_call_id"
        return self._receipts.verify(
            result.receipt, result.tool, result.call_id, result.arguments, result.content
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
