"""Configuration of chaos mode: whether it is on, the server caps, traffic colors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from chaos.faults import FaultError
from chaos.grammar import parse
from common.config import Frozen


class ColorConfig(Frozen):
    """A traffic partition: requests with `x-traffic-color: <name>` are routed only
    to `deployments` (when set) and get `faults` (header grammar) on top."""

    deployments: tuple[str, ...] = ()
    faults: str | None = None

    @field_validator("faults")
    @classmethod
    def _valid_grammar(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value)
            except FaultError as exc:
                raise ValueError(str(exc)) from None
        return value


class ChaosConfig(Frozen):
    enabled: bool = False
    #: Probabilities above this are brought down to it.
    max_probability: float = Field(1.0, ge=0, le=1)
    #: Injected delays (ms, jitter_ms, retry-after) above this are clamped or refused.
    max_latency_ms: int = Field(30_000, ge=0)
    #: Header faults per request, and scheduled faults at once (all tenants).
    max_active_faults: int = Field(100, ge=1)
    #: Scheduled faults one tenant scope may hold at once, within `max_active_faults`:
    #: one team's drills never use up the room of another's. The root scope has only
    #: the overall cap.
    max_faults_per_tenant: int = Field(10, ge=1)
    #: `clamp`: a fault over a cap is brought within it; `refuse`: it is a 400.
    over_cap: Literal["clamp", "refuse"] = "clamp"
    colors: dict[str, ColorConfig] = Field(default_factory=dict)
