"""Chaos mode in the request path: who may ask for faults, and forged tool results.

`Chaos` builds the request's plan (see `chaos.plan`) from the `x-seawall-chaos`
header and the `x-traffic-color` partition, honoured only when chaos mode is on
and the caller's key has the `chaos` role (otherwise the response says
`x-seawall-chaos: ignored`), plus any faults scheduled through the admin API. Header
and color faults pass the same target checks (`ChaosEngine.authorize`); a color's
deployments narrow the request's routing, never widen what a policy allowed. The
plan rides to the chaos transport in the upstream request's extensions; what it
injected is reported in `x-seawall-chaos-injected`. A plan with faults injected for
one tenant makes the request unobserved: its outcomes teach no shared health.

Reads `exchange.identity`, the request's chaos headers. Writes `exchange.chaos`,
`exchange.upstream_extensions`, `exchange.upstream_only`, `exchange.observed`,
`exchange.finalizers`, `exchange.headers`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from chaos.config import ColorConfig
from chaos.engine import ChaosEngine, TargetNotAllowed
from chaos.faults import FaultError
from chaos.forge import forge_result
from chaos.plan import ChaosPlan
from common.headers import CHAOS_HEADER, COLOR_HEADER, INJECTED_HEADER, PLAN_EXTENSION
from gateway.errors import GatewayError, echoed
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from tenants.identity import Identity
from tools.registry import ToolRegistry
from tools.results import tool_results


def requested_plan(
    engine: ChaosEngine,
    request_headers: Mapping[str, str],
    identity: Identity | None,
    answer_headers: dict[str, str],
) -> tuple[ChaosPlan | None, ColorConfig | None]:
    """The chaos plan a request asks for (its chaos header, its traffic colour, and the
    admin schedule) and the colour, as its caller may have them: the header and the
    colour are ignored, and `answer_headers` says so, unless chaos mode is on and the
    key has the `chaos` role; a fault the caller may not target is 403, a malformed
    one 400. Every endpoint that honours chaos asks here (the pipeline's `Chaos`
    stage, `/mcp`)."""
    header, color_name = request_headers.get(CHAOS_HEADER), request_headers.get(COLOR_HEADER)
    if header is None and color_name is None and not engine.schedule:
        return None, None
    allowed = engine.enabled and identity is not None and identity.has_role("chaos")
    if (header is not None or color_name is not None) and not allowed:
        answer_headers[CHAOS_HEADER] = "ignored"
        header = color_name = None
    try:
        color = None if color_name is None else engine.color(color_name)
        if identity is None:
            return engine.plan(header, color), color
        return engine.plan(header, color, identity.chain, identity.may_target), color
    except FaultError as exc:
        param = COLOR_HEADER if exc.source == "color" else CHAOS_HEADER
        refused = isinstance(exc, TargetNotAllowed)
        raise GatewayError(
            403 if refused else 400,
            f"Invalid {param} header: {echoed(str(exc))}.",
            code="chaos_target_not_allowed" if refused else "invalid_chaos_header",
            param=param,
        ) from None


class Chaos:
    def __init__(self, engine: ChaosEngine, events: Events) -> None:
        self.engine = engine
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        plan, color = requested_plan(
            self.engine, exchange.request_headers, exchange.identity, exchange.headers
        )
        if color is not None and color.deployments:
            exchange.restrict(color.deployments)
        if plan is None:
            return
        exchange.chaos = plan
        exchange.observed = plan.observed
        exchange.upstream_extensions = {PLAN_EXTENSION: plan}
        exchange.finalizers = [*(exchange.finalizers or []), self._report]

    def _report(self, exchange: Exchange, response: Response) -> None:
        plan = exchange.chaos
        if not plan.injected:
            return
        response.headers[INJECTED_HEADER] = ", ".join(plan.injected)
        self.engine.count(plan)
        for _, fault, where in plan.counts:
            self.events.emit(GuardEvent("fault_injected", fault, detail=where))


class ForgeToolResults:
    """`forge_tool`: rewrites `role: tool` results before the gateway's own tool
    checks and the model see them, as an attacker between tool and agent would."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry

    async def __call__(self, exchange: Exchange) -> None:
        plan = exchange.chaos
        if plan is None:
            return
        messages = exchange.body["messages"]
        for result in tool_results(messages):
            if result.tool is None:
                continue
            for spec in plan.tool_faults(result.tool):
                registered = self.registry.get(result.tool)
                schema = registered.config.output_schema if registered else None
                forged = forge_result(result.content, spec.param("mode"), schema)
                messages[result.index] = {**messages[result.index], "content": forged}
