"""Configuration schema for model groups and deployments.

The gateway composes these models into its top-level config; they live here so that
`routing` can be used (and tested) without `gateway`. Every model is frozen: a loaded
config never changes under a running request.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from common.config import Frozen, Identifier, Secret, identifier, non_empty
from common.secrets import SecretUrl, unresolved


class Timeouts(Frozen):
    """Per-attempt time limits. `ttft_ms` bounds the wait for the first body byte."""

    connect_ms: int = Field(2000, gt=0)
    ttft_ms: int = Field(10000, gt=0)
    total_ms: int = Field(60000, gt=0)


class SLA(Frozen):
    """Targets a deployment is expected to meet; breaking them lowers its weight."""

    p99_latency_ms: float | None = Field(None, gt=0)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    ttft_ms: float | None = Field(None, gt=0)


class BreakerSettings(Frozen):
    consecutive_failures: int = Field(5, ge=1)
    open_seconds: float = Field(30, gt=0)
    max_open_seconds: float = Field(300, gt=0)
    half_open_probes: int = Field(1, ge=1)


class RetrySettings(Frozen):
    """`attempts` counts every try on one deployment, the first included."""

    attempts: int = Field(2, ge=1, le=10)
    backoff_ms: int = Field(200, ge=0)
    max_backoff_ms: int = Field(5000, ge=0)


class MockSettings(Frozen):
    """Behaviour of the built-in fake LLM (provider `mock`)."""

    latency_ms: float = Field(0, ge=0, description="delay before the first byte")
    chunk_delay_ms: float = Field(0, ge=0, description="delay between streamed chunks")
    stream_chunks: int = Field(8, ge=1, le=100_000)
    error_rate: float = Field(0, ge=0, le=1)
    embedding_dim: int = Field(256, ge=1, le=8192)
    seed: int = 0
    #: Prompts longer than this get a 400 context_length_exceeded, as from a real model.
    context_window: int = Field(16_384, ge=16)


Provider = Annotated[str, AfterValidator(identifier)]
OPENAI_COMPATIBLE = frozenset({"openai", "mock"})
OPENAI_API_BASE = "https://api.openai.com/v1"
#: A header name as HTTP/1.1 defines it (a token).
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What no header value may hold: it would end the header (or the head) early.
_LINE_BREAKS = re.compile(r"[\r\n\0]")


class Price(Frozen):
    """US dollars per million tokens, overriding litellm's price table (spend limits)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class DeploymentConfig(Frozen):
    id: Identifier
    provider: Provider = "openai"
    model: str = Field(min_length=1)
    #: May carry credentials (`https://user:pass@host/v1`): masked wherever shown.
    api_base: SecretUrl | None = None
    api_key: Secret | None = None
    weight: float = Field(1.0, gt=0)
    #: Prompt tokens the upstream model accepts; default: litellm's model table, or
    #: for `mock` deployments their `mock.context_window`.
    context_window: int | None = Field(None, gt=0)
    #: Extra headers sent upstream. Each value is a secret (`x-api-key` is one for some
    #: providers, and the gateway cannot tell which are): `env:` accepted, masked in
    #: views, redacted from relayed errors and logs.
    headers: dict[str, Secret] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    sla: SLA = SLA()
    breaker: BreakerSettings = BreakerSettings()
    retry: RetrySettings = RetrySettings()
    mock: MockSettings = MockSettings()
    #: What this deployment's tokens cost (spend limits); default: litellm's table.
    price: Price | None = None
    #: The API its upstream speaks for model calls. `chat`: Chat Completions (a
    #: Responses API request is translated to it). `responses`: the Responses API
    #: (OpenAI, Azure OpenAI, vLLM, the mock in Responses mode): `/v1/responses`
    #: requests are passed through as sent, so built-in tools, reasoning items and
    #: encrypted content survive (docs/responses.md, "Pass-through"). OpenAI-compatible
    #: providers only; every deployment of a group speaks the same one.
    api: Literal["chat", "responses"] = "chat"

    @model_validator(mode="before")
    @classmethod
    def _default_api_base(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("provider", "openai") == "openai":
            data.setdefault("api_base", OPENAI_API_BASE)
        return data

    @model_validator(mode="after")
    def _check_api(self) -> DeploymentConfig:
        if self.api == "responses" and self.provider not in OPENAI_COMPATIBLE:
            raise ValueError(
                f"api: responses needs an OpenAI-compatible provider "
                f"({', '.join(sorted(OPENAI_COMPATIBLE))}), not {self.provider!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_headers(self) -> DeploymentConfig:
        """Names and values go into the request head as they are: a line break in
        one (an `env:` key file ending in a newline) would split it."""
        for name, value in self.headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"headers: {name[:64]!r} is not a valid header name")
            if _LINE_BREAKS.search(value.get_secret_value()):
                raise ValueError(f"headers: the value of {name!r} holds a line break or NUL")
        if self.api_key is not None and _LINE_BREAKS.search(self.api_key.get_secret_value()):
            raise ValueError("api_key holds a line break or NUL (a key file's last newline?)")
        return self

    @model_validator(mode="after")
    def _check_api_base(self) -> DeploymentConfig:
        if unresolved(self.api_base):
            return self
        if self.api_base is not None and not self.api_base.startswith(("http://", "https://")):
            raise ValueError("api_base must be an http:// or https:// URL")
        return self

    @property
    def uses_litellm(self) -> bool:
        return self.provider not in OPENAI_COMPATIBLE


Strategy = Literal["weighted", "latency", "priority", "least-busy"]


class ModelGroupConfig(Frozen):
    name: Identifier
    strategy: Strategy = "weighted"
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()
    #: Groups to try when a provider refuses on content policy; none by default,
    #: because another model answering what one refused is a policy decision.
    content_policy_fallbacks: tuple[str, ...] = ()
    #: Default: the smallest context window among the group's deployments.
    max_prompt_tokens: int | None = Field(None, gt=0)
    max_messages: int = Field(1000, gt=0)
    max_tool_message_bytes: int = Field(256 * 1024, gt=0)
    #: What an over-long prompt gets: a 400, the context_window_fallbacks, or its
    #: oldest turns dropped.
    on_overflow: Literal["reject", "fallback", "truncate"] = "reject"
    hedge_after_ms: int | None = Field(None, gt=0)
    deployments: Annotated[tuple[DeploymentConfig, ...], AfterValidator(non_empty)]

    @model_validator(mode="after")
    def _one_api(self) -> ModelGroupConfig:
        """A request is shaped for its group before a deployment is chosen (translated
        for Chat Completions, or passed through), so every deployment of a group must
        take the same shape."""
        apis = {d.api for d in self.deployments}
        if len(apis) > 1:
            raise ValueError(
                "deployments of one model group must all speak one api (chat or responses); "
                "put the responses deployments in a group of their own"
            )
        return self

    @property
    def api(self) -> Literal["chat", "responses"]:
        return self.deployments[0].api


class RetryBudgetSettings(Frozen):
    """Retries allowed gateway-wide: `ratio` of the requests seen in the last
    `window_seconds`, plus `min_per_second` so a quiet gateway can still retry."""

    ratio: float = Field(0.2, ge=0, le=1)
    min_per_second: float = Field(1.0, ge=0)
    window_seconds: float = Field(10, gt=0, le=300)


class RoutingSettings(Frozen):
    #: Overall limit for one client request, all attempts, retries and fallbacks
    #: included; a client may lower it with the `x-seawall-timeout-ms` header.
    request_timeout_ms: int = Field(300_000, gt=0)
    retry_budget: RetryBudgetSettings = RetryBudgetSettings()
    #: Sliding window for the SLA statistics (latency percentiles, error rate).
    stats_window_seconds: int = Field(60, ge=5, le=3600)
    #: Fewest attempts in the window before SLA targets change a deployment's weight.
    sla_min_samples: int = Field(20, ge=1)
