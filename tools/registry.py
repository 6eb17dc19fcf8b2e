"""The configured tools, with their schemas compiled once at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tools.config import ToolConfig
from tools.schemas import TenantSchemaCaches, compile_schema

if TYPE_CHECKING:
    from jsonschema.protocols import Validator


def canonical(value: Any) -> bytes:
    """JSON with sorted keys: equal values, equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class RegisteredTool:
    config: ToolConfig
    input: Validator
    output: Validator | None
    #: The input schema as canonical JSON: an offered schema equal to it binds.
    canonical_input: bytes

    @property
    def name(self) -> str:
        return self.config.name


class ToolRegistry:
    def __init__(self, tools: Iterable[ToolConfig] = ()) -> None:
        self._tools = {
            tool.name: RegisteredTool(
                tool,
                compile_schema(tool.input_schema),
                None if tool.output_schema is None else compile_schema(tool.output_schema),
                canonical(tool.input_schema),
            )
            for tool in tools
        }
        #: Tools whose contract applies whenever their name appears (`bind: always`).
        self.always_bound = frozenset(
            name for name, tool in self._tools.items() if tool.config.bind == "always"
        )
        #: Validators for schemas offered in requests, shared by the stage that
        #: refuses unsafe ones before routing and the one that checks calls after.
        self.offered = TenantSchemaCaches()

    def get(self, name: str) -> RegisteredTool | None:
        return self._tools.get(name)

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[RegisteredTool]:
        return iter(self._tools.values())
