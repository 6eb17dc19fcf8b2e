"""`GET /admin/slo` (every SLO's burn rates, budget and alerts) and
`GET /admin/slo/evaluate` (the release gate: what a CD system's webhook calls).

Both need the `auditor`, `metrics` or `admin` role. A key of a tenant sees only the
SLOs scoped to a tenant of its subtree (`slos[].tenant`); SLOs over every tenant's
traffic are the root's to read, like the gateway-wide metrics.

`evaluate` takes `slo`, `candidate` (a selector: `config_version=ID`,
`policy_version=ID`, `deployment=ID`, `tenant=ID`, `colour=NAME`), optionally
`baseline`, `min_samples` (default 100) and `max_deviation` (default 0.15), and
answers the gate's report (slo/gate.py) with its `verdict`: pass, fail or
inconclusive. It judges the gateway's recent outcomes (the newest 20,000 requests
of this process: gateway/slos.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.base import AdminResource
from gateway.errors import GatewayError, echoed
from gateway.stages.authenticate import require
from slo.config import SloConfig
from slo.gate import DEFAULT_MAX_DEVIATION, DEFAULT_MIN_SAMPLES, Selector, decide
from tenants.identity import Identity

ROLES = ("auditor", "metrics", "admin")


def visible_slos(slos: Sequence[SloConfig], identity: Identity) -> list[SloConfig]:
    """The SLOs `identity` may read (also the admin page's, gateway/admin/ui/)."""
    if identity.root_scoped:
        return list(slos)
    return [s for s in slos if s.tenant is not None and identity.within_scope(s.tenant)]


class SloAdmin(AdminResource):
    def _reader(self, request: Request) -> Identity:
        return require(self.gateway.runtime.tenants, request.headers.get("authorization"), *ROLES)

    def _visible(self, identity: Identity) -> list[SloConfig]:
        return visible_slos(self.gateway.runtime.config.slos, identity)

    async def get(self, request: Request) -> Response:
        identity = self._reader(request)
        names = {slo.name for slo in self._visible(identity)}
        state = self.gateway.state.slos.tracker.describe()
        return self.respond({"slos": [s for s in state["slos"] if s["name"] in names]})

    async def evaluate(self, request: Request) -> Response:
        identity = self._reader(request)
        params = request.query_params
        name = params.get("slo")
        slo = next((s for s in self._visible(identity) if s.name == name), None)
        if slo is None:
            raise GatewayError(
                404, f"No SLO {echoed(str(name))!r} (GET /admin/slo lists them).", code="not_found"
            )
        try:
            candidate = Selector.parse(_required(params.get("candidate"), "candidate"))
            baseline_text = params.get("baseline")
            baseline = Selector.parse(baseline_text) if baseline_text else None
            min_samples = _number(
                params.get("min_samples"), DEFAULT_MIN_SAMPLES, int, "min_samples"
            )
            max_deviation = _number(
                params.get("max_deviation"), DEFAULT_MAX_DEVIATION, float, "max_deviation"
            )
        except ValueError as exc:
            raise GatewayError(400, f"Bad gate query: {exc}", code="invalid_value") from None
        for selector in (candidate, baseline):
            if (
                selector is not None
                and selector.kind == "tenant"
                and not identity.within_scope(selector.value)
            ):
                raise GatewayError(
                    403, "A selector names a tenant outside your scope.", code="permission_denied"
                )
        report = decide(
            slo,
            candidate,
            list(self.gateway.state.slos.recent),
            baseline=baseline,
            min_samples=min_samples,
            max_deviation=max_deviation,
        )
        payload: dict[str, Any] = report.to_dict()
        payload["markdown"] = report.to_markdown()
        return self.respond(payload)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise ValueError(f"{name} is required (e.g. config_version=abc123)")
    return value


def _number(value: str | None, default: Any, kind: type, name: str) -> Any:
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number
