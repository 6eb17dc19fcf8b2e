"""`/admin/chaos`: faults scheduled for a while, on every request they match."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chaos.engine import ChaosEngine, TargetNotAllowed
from chaos.faults import FaultError, build
from chaos.plan import ROOT_SCOPE, apply_caps
from chaos.scheduled import QuotaExceeded
from chaos.targets import UnknownTarget
from gateway.admin.base import AdminResource
from gateway.admin.body import read_json_object
from gateway.errors import GatewayError, echoed
from tenants.identity import Identity


def schedule_fault(
    engine: ChaosEngine, body: dict[str, Any], identity: Identity | None = None
) -> dict[str, Any]:
    """`POST /admin/chaos`: `{"fault", "duration_s", "target", ...fault keys}`. The
    fault's scope is the admin's tenant: it touches only that tenant's subtree, may
    aim only at what the tenant may target, counts against the tenant's quota
    (`chaos.max_faults_per_tenant`), and is never a gateway-wide fault unless the
    admin is root-scoped (`ChaosEngine.authorize`)."""
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
    scope = identity.tenant_id if identity is not None else ROOT_SCOPE
    may_target = identity.may_target if identity is not None else None
    try:
        spec = engine.authorize(build(fault, values), scope, may_target)
        scheduled = engine.schedule.add(apply_caps(spec, engine.config), float(duration), scope)
    except TargetNotAllowed as exc:
        raise GatewayError(
            403, f"Invalid fault: {exc}.", code="chaos_target_not_allowed", param="target"
        ) from None
    except QuotaExceeded as exc:
        raise GatewayError(
            409, f"Fault not scheduled: {exc}.", code="chaos_quota_exceeded"
        ) from None
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


def chaos_state(engine: ChaosEngine, scopes: Container[str] | None = None) -> dict[str, Any]:
    """What an admin of `scopes` may see: its own faults and its own injections."""
    return {
        "enabled": engine.enabled,
        "faults": engine.schedule.describe(scopes),
        "injected": [
            {"fault": fault, "where": where, "count": count}
            for (fault, where), count in sorted(engine.injections(scopes).items())
        ],
    }


class ChaosAdmin(AdminResource):
    """`POST /admin/chaos` schedules, `GET` lists, `DELETE [/{id}]` clears; each within
    the admin's scope (a team admin never sees nor clears a sibling team's faults)."""

    async def get(self, request: Request) -> Response:
        identity = self.authorize(request)
        return self.respond(chaos_state(self.gateway.runtime.chaos, identity.scope))

    async def post(self, request: Request) -> Response:
        identity = self.authorize(request)
        body = await read_json_object(request)
        scheduled = schedule_fault(self.gateway.runtime.chaos, body, identity)
        self.audit("chaos.scheduled", identity, str(scheduled.get("id")), scheduled)
        return self.respond(scheduled, status=201)

    async def delete(self, request: Request) -> Response:
        identity = self.authorize(request)
        schedule = self.gateway.runtime.chaos.schedule
        fault_id = request.path_params.get("fault_id")
        if fault_id is None:
            cleared = schedule.clear(identity.scope)
            self.audit("chaos.cleared", identity, None, {"cleared": cleared})
            return self.respond({"cleared": cleared})
        if not schedule.remove(fault_id, identity.scope):
            raise GatewayError(404, f"No scheduled fault {echoed(fault_id)!r}.", code="not_found")
        self.audit("chaos.cleared", identity, fault_id, {"cleared": 1})
        return self.respond({"cleared": 1})
