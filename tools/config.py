"""Configuration schema for the tool registry, receipts and the tool-check policy."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from common.config import Frozen, Identifier, Secret
from common.secrets import SecretUrl, unresolved
from routing.config import RetrySettings
from tools.endpoints import MOCK_TOOLS
from tools.schemas import check_schema

Mode = Literal["enforce", "warn", "off"]
#: OpenAI's rule for function names.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _tool_name(value: str) -> str:
    if not TOOL_NAME.fullmatch(value):
        raise ValueError("must be 1-64 letters, digits, '_' or '-' (OpenAI's function names)")
    return value


ToolName = Annotated[str, AfterValidator(_tool_name)]


class ToolConfig(Frozen):
    name: ToolName
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    #: Where `POST /v1/tools/{name}/invoke` sends the arguments (POST, JSON), or
    #: `mock://weather` for the built-in mock tool.
    endpoint: SecretUrl | None = None
    mode: Mode = "enforce"
    timeout_ms: int = Field(10_000, gt=0)
    retry: RetrySettings = RetrySettings()
    #: `required`: a result for this tool without a valid receipt is a forgery.
    receipt: Literal["required", "optional"] = "optional"
    #: When this contract applies to a request (tools/binding.py): `matching`, when
    #: the request offers the tool by reference (no `parameters`) or with exactly this
    #: input schema; `always`, whenever the name appears in a request.
    bind: Literal["matching", "always"] = "matching"

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_schema(value)

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: SecretUrl | None) -> SecretUrl | None:
        if value is None or unresolved(value):
            return value
        if value.startswith("mock://"):
            if value[len("mock://") :] not in MOCK_TOOLS:
                raise ValueError(f"unknown mock tool; known: {', '.join(sorted(MOCK_TOOLS))}")
        elif not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http:// or https:// URL, or mock://NAME")
        return value


class ReceiptKey(Frozen):
    id: Identifier
    secret: Secret

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: Any) -> Any:
        if len(value.get_secret_value()) < 16:
            raise ValueError("receipt secrets must be at least 16 characters")
        return value


class ReceiptsConfig(Frozen):
    """HMAC keys for tool receipts: the first signs, all verify (so keys can rotate)."""

    keys: tuple[ReceiptKey, ...] = ()
    max_age_seconds: int = Field(86_400, gt=0)


class ToolPolicy(Frozen):
    """How tools that are offered in a request but not registered are checked, and
    the gateway-wide switches of the tool checks."""

    offered_mode: Mode = "warn"
    repair_attempts: int = Field(1, ge=0, le=3)
    scan_injection: bool = True
