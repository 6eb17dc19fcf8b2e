"""The admin API: live routing state and scheduled chaos faults.

Every admin endpoint needs a key with the `admin` role; with no keys configured
(loopback only) the local caller has it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from chaos.engine import ChaosEngine
from chaos.faults import FaultError, build
from chaos.plan import apply_caps
from chaos.targets import UnknownTarget
from gateway.errors import GatewayError
from gateway.stages.body import json_object
from routing.deployment import Deployment
from routing.router import Router


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def deployment_state(deployment: Deployment, now: float) -> dict[str, Any]:
    window = deployment.stats.snapshot()
    breaker = deployment.breaker
    open_until = breaker.open_until
    return {
        "id": deployment.id,
        "provider": deployment.config.provider,
        "model": deployment.config.model,
        "weight": deployment.config.weight,
        "sla_factor": round(deployment.sla_factor(), 4),
        "effective_weight": round(deployment.effective_weight(), 4),
        "in_flight": deployment.stats.in_flight,
        "breaker": {
            "state": breaker.state,
            "openings": breaker.total_openings,
            "open_multiplier": breaker.openings,
            "reopens_in_ms": None if open_until is None else max(0.0, _ms(open_until - now) or 0),
        },
        "window": {
            "attempts": window.attempts,
            "errors": window.errors,
            "error_rate": round(window.error_rate, 4),
            "p50_ms": _ms(window.p50),
            "p99_ms": _ms(window.p99),
            "ttft_p99_ms": _ms(window.ttft_p99),
            "ewma_ms": _ms(deployment.stats.ewma.value),
        },
        "totals": {
            "outcomes": dict(deployment.stats.outcomes),
            "retries": deployment.stats.retries,
        },
    }


def routing_state(router: Router) -> dict[str, Any]:
    now = router.clock()
    return {
        "groups": [
            {
                "name": group.name,
                "strategy": group.config.strategy,
                "fallbacks": list(group.config.fallbacks),
                "hedge_after_ms": group.config.hedge_after_ms,
                "hedges": group.hedges,
                "deployments": [deployment_state(d, now) for d in group.deployments],
            }
            for group in router.groups.values()
        ],
        "retry_budget": router.budget.state(),
        "fallbacks": [
            {"from": source, "to": target, "count": count}
            for (source, target), count in sorted(router.fallbacks.items())
        ],
    }


#: Admin request bodies are small; anything bigger is refused unread.
MAX_ADMIN_BODY = 64 * 1024


async def read_json_object(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_ADMIN_BODY:
        raise GatewayError(413, f"Admin requests are limited to {MAX_ADMIN_BODY} bytes.")
    raw = await request.body()
    if len(raw) > MAX_ADMIN_BODY:
        raise GatewayError(413, f"Admin requests are limited to {MAX_ADMIN_BODY} bytes.")
    return json_object(raw)


def schedule_fault(engine: ChaosEngine, body: dict[str, Any]) -> dict[str, Any]:
    """`POST /admin/chaos`: `{"fault", "duration_s", "target", ...fault keys}`."""
    if not engine.enabled:
        raise GatewayError(409, "Chaos mode is disabled (chaos.enabled).", code="chaos_disabled")
    fault = body.get("fault")
    duration = body.get("duration_s")
    if not isinstance(fault, str):
        raise GatewayError(
            400, "'fault' must be a fault name.", code="invalid_fault", param="fault"
        )
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        raise GatewayError(
            400,
            "'duration_s' must be a number of seconds.",
            code="invalid_fault",
            param="duration_s",
        )
    values = {}
    for key, value in body.items():
        if key in ("fault", "duration_s"):
            continue
        if value is None:
            # Leave the key out for its default; `str(None)` would be read as the text 'None'.
            raise GatewayError(
                400,
                f"Invalid fault: {fault}: {key} is null; give a value or leave the key out.",
                code="invalid_fault",
                param=key,
            )
        values[key] = _text(value)
    try:
        spec = apply_caps(engine.targets.check(build(fault, values)), engine.config)
        scheduled = engine.schedule.add(spec, float(duration))
    except FaultError as exc:
        param = "target" if isinstance(exc, UnknownTarget) else None
        raise GatewayError(
            400, f"Invalid fault: {exc}.", code="invalid_fault", param=param
        ) from None
    return scheduled.describe(engine.schedule_clock())


def _text(value: Any) -> str:
    """Admin JSON values, read like header values (one parser for both)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def chaos_state(engine: ChaosEngine) -> dict[str, Any]:
    return {
        "enabled": engine.enabled,
        "faults": engine.schedule.describe(),
        "injected": [
            {"fault": fault, "where": where, "count": count}
            for (fault, where), count in sorted(engine.injected.items())
        ],
    }
