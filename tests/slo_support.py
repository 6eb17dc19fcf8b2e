"""What the SLO tests share: a completed request as the SLO machinery sees it."""

from __future__ import annotations

from typing import Any

from slo.events import Outcome


def make_outcome(**fields: Any) -> Outcome:
    """An `Outcome` of a successful chat request by tenant acme at time 0 under
    config v1, with `fields` changed."""
    defaults: dict[str, Any] = {
        "time": 0.0,
        "model_group": "chat",
        "tenants": ("root", "acme"),
        "status": 200,
        "latency_ms": 100.0,
        "config_version": "v1",
    }
    return Outcome(**{**defaults, **fields})
