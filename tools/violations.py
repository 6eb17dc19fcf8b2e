"""What the tool checks report: one finding per problem, with the mode that applies."""

from __future__ import annotations

from dataclasses import dataclass

from tools.config import Mode

SEVERITY = {"off": 0, "warn": 1, "enforce": 2}


@dataclass(frozen=True, slots=True)
class Violation:
    """A tool call or result that broke its contract.

    `kind`: unknown_tool, invalid_json, schema, forged, too_deep, injection, unmatched
    (a tool result answering no call), duplicate (a second result for one call).
    `where`: a JSON path for schema problems, otherwise a short reason.
    """

    tool: str
    kind: str
    where: str
    message: str
    mode: Mode
    call_id: str | None = None

    def header_entry(self) -> str:
        """`tool:kind:where`, safe for an HTTP header."""
        text = f"{self.tool}:{self.kind}:{self.where}"
        return text.encode("ascii", "replace").decode()[:200].replace(",", ";")

    def __str__(self) -> str:
        return f"tool '{self.tool}': {self.message}"


def strictest(violations: list[Violation]) -> str:
    """The mode that decides what happens: enforce beats warn beats off."""
    return max((v.mode for v in violations), key=SEVERITY.__getitem__, default="off")


def header_value(violations: list[Violation], limit: int = 1024) -> str:
    return ", ".join(v.header_entry() for v in violations)[:limit]
