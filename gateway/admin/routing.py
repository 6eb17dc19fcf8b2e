"""`GET /admin/routing`: the live routing state of the serving config version."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.base import AdminResource
from routing.deployment import Deployment
from routing.router import Router
from tenants.identity import Identity


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


def routing_state(router: Router, identity: Identity | None = None) -> dict[str, Any]:
    """The routing state; for a tenant's admin, only the groups and deployments its
    tenant may use (a root-scoped admin sees everything)."""
    now = router.clock()
    groups = [
        g for g in router.groups.values() if identity is None or identity.may_use_model(g.name)
    ]
    return {
        "groups": [
            {
                "name": group.name,
                "strategy": group.config.strategy,
                "fallbacks": list(group.config.fallbacks),
                "hedge_after_ms": group.config.hedge_after_ms,
                "hedges": router.hedges.get(group.name, 0),
                "deployments": [
                    deployment_state(d, now)
                    for d in group.deployments
                    if identity is None or identity.may_use_deployment(d.id)
                ],
            }
            for group in groups
        ],
        "retry_budget": router.budget.state(),
        "fallbacks": [
            {"from": source, "to": target, "count": count}
            for (source, target), count in sorted(router.fallbacks.items())
            if identity is None or identity.may_use_model(source)
        ],
    }


class RoutingAdmin(AdminResource):
    async def get(self, request: Request) -> Response:
        identity = self.authorize(request)
        return self.respond(routing_state(self.gateway.runtime.router, identity))
