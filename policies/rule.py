"""One compiled rule: its condition, its effect, and what it does on an error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from policies.config import Effect, OnError
from policies.decision import ErrorKind

if TYPE_CHECKING:
    from policies.expression import Expression

#: A rule's outcome for one request: whether its condition held, or how it failed.
Outcome = bool | tuple[ErrorKind, str]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    id: str
    #: The tenant it is attached to.
    tenant: str
    effect: Effect
    expression: Expression
    on_error: OnError
    message: str | None = None
    pin: frozenset[str] | None = None
    exclude: frozenset[str] | None = None
    flag: str | None = None
    limit_class: str | None = None

    @property
    def reads(self) -> tuple[str, ...]:
        return self.expression.reads
