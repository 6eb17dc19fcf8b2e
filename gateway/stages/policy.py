"""The policy gate: the tenant's CEL rules decide about the request.

After authentication and model resolution, before chaos and the guards: the rules
see who is calling (tenant chain, key, roles), what is asked (model, endpoint,
estimated prompt tokens, max_tokens, stream, tools offered, tool results present,
allow-listed headers), when (UTC hour and weekday) and from where (client IP), and
decide (policies/): a `deny` is a 403 `policy_denied` naming the rule; `route` pins
or excludes deployments; `flag` tags the request; `limit_class` selects limit
classes for the limits stage. Every rule that matched is named in
`x-seawall-policy` (`rule-a, rule-b; version=v3`, the version of the rule set that
decided), and goes through `Events.emit` like every guard decision (metrics now, the
audit log later).

The prompt size is an estimate (a quarter of the body's bytes): counting tokens
exactly belongs to the prompt guard, which runs later and only near a limit.

Reads `exchange.identity`, `exchange.body`, `exchange.group`. Writes
`exchange.upstream_only` (route), `exchange.policy`, `exchange.headers`.
"""

from __future__ import annotations

import logging
import time

from common.chat import estimated_tokens
from common.headers import POLICY_HEADER
from gateway.errors import GatewayError
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from policies import (
    Attributes,
    CompiledPolicies,
    Decision,
    RepeatedHeader,
    raw_policy_headers,
    utc_hour_weekday,
)
from routing.router import Router
from tenants.identity import Identity

log = logging.getLogger("seawall")


#: What a decision reports to one group and caller: (the decision, kept so its id is
#: never reused while its entry stands; the header value or None; the events).
_Report = tuple[Decision, str | None, tuple[GuardEvent, ...]]
#: A report's key: the decision's id, the group, the caller. Two keys of one tenant
#: often share a decision object (the decision cache keys on what rules read), so
#: the caller is part of the key, not a check that would make them evict each other.
_ReportKey = tuple[int, str | None, Identity]

#: Reports remembered per Runtime, at most (emptied when full: one is rebuilt in
#: microseconds). The decision cache's entries and their live variants are the
#: decisions that recur.
MAX_REPORTS = 4096


class PolicyGate:
    def __init__(self, policies: CompiledPolicies, router: Router, events: Events) -> None:
        self.policies = policies
        self.router = router
        self.events = events
        self._reports: dict[_ReportKey, _Report] = {}

    async def __call__(self, exchange: Exchange) -> None:
        identity = exchange.identity
        policies = self.policies
        if identity is None or (
            policies.candidate is None and not policies.rules_for(identity.tenant_id)
        ):
            return
        try:
            attributes = self._attributes(exchange)
        except RepeatedHeader as exc:
            raise GatewayError(
                400,
                f"Header '{exc.name}' is sent more than once; policy rules read it, so it "
                "must be sent once.",
                code="repeated_header",
                param=exc.name,
            ) from None
        decision = policies.decide(attributes, exchange.request_id)
        exchange.policy = decision
        self._report(exchange, decision)
        if decision.deny is not None:
            denial = decision.deny
            raise GatewayError(
                403,
                f"Denied by policy rule '{denial.rule}': {denial.message}",
                code="policy_denied",
                param=None,
            )
        if decision.pin is not None or decision.exclude:
            self._route(exchange, decision)

    def _attributes(self, exchange: Exchange) -> Attributes:
        identity = exchange.identity
        assert identity is not None and exchange.group is not None
        body, shape = exchange.body, exchange.shape
        hour, weekday = utc_hour_weekday(time.time())
        scope = exchange.request.scope
        client = scope.get("client")  # (host, port), without Starlette's Address
        return Attributes(
            tenant=identity.tenant_id,
            tenants=identity.chain,
            key=identity.key_id,
            roles=tuple(sorted(identity.roles)),
            model=exchange.group.name,
            endpoint=exchange.endpoint,
            prompt_tokens=estimated_tokens(len(exchange.raw) + exchange.history_bytes),
            max_tokens=shape.max_tokens_asked(body) or 0,
            stream=exchange.stream,
            tools=shape.tool_names(body),
            tool_results=shape.has_tool_results(body),
            headers=raw_policy_headers(scope["headers"], self.policies.headers),
            hour=hour,
            weekday=weekday,
            client_ip=client[0] if client is not None else "",
            server="",
            tool="",
            argument_names=(),
            annotations=(),
        )

    def _route(self, exchange: Exchange, decision: Decision) -> None:
        """Narrows routing to what the rules allow; a 403 when that leaves no
        deployment this request could reach (its group or the groups it may fall
        back to, among those the caller may use)."""
        group, identity = exchange.group, exchange.identity
        assert group is not None and identity is not None
        exchange.restrict(d.id for _, d in self.router.deployments() if decision.allows(d.id))
        only = exchange.upstream_only
        assert only is not None
        reachable = (
            d
            for g in self.router.reachable(group)
            if identity.may_use_model(g.name)
            for d in g.deployments
            if d.id in only and identity.may_use_deployment(d.id)
        )
        if next(reachable, None) is None:
            rules = ", ".join(f"'{rule}'" for rule in decision.route_rules)
            raise GatewayError(
                403,
                f"Request refused: policy rules {rules} leave no deployment of model "
                f"'{group.name}' to route to.",
                code="policy_denied",
                param=None,
            )

    def _report(self, exchange: Exchange, decision: Decision) -> None:
        identity = exchange.identity
        assert identity is not None
        key = (id(decision), exchange.group.name if exchange.group else None, identity)
        report = self._reports.get(key)
        if report is None:
            report = self._remember(decision, key)
        header = report[1]
        if header is not None:
            exchange.headers[POLICY_HEADER] = header
        emit = self.events.emit
        for event in report[2]:
            emit(event)

    def _remember(self, decision: Decision, key: _ReportKey) -> _Report:
        """What `decision` reports for this group and caller: its header and events,
        worked out once. A decision-cache hit returns the same decision object, so
        the next request like this one only emits them (events are never changed
        once made: sinks and audit trails may share one)."""
        _, group, identity = key
        header = None
        if decision.matched or decision.canary:
            canary = "; canary" if decision.canary else ""
            matched = ", ".join(decision.matched) or "-"
            header = f"{matched}; version={decision.version}{canary}"
        events = [
            GuardEvent(
                "policy",
                effect,
                group,
                tenant=identity.tenant_id,
                key=identity.key_id,
                rule=rule,
                version=decision.version,
            )
            for effect, rule in decision.effects()
        ]
        shadow = decision.shadow
        if shadow is not None and not decision.agrees_with(shadow):
            events.append(
                GuardEvent(
                    "policy",
                    "shadow_disagrees",
                    group,
                    detail=f"shadow {shadow.version} would have "
                    + ("denied" if shadow.deny else "allowed"),
                    tenant=identity.tenant_id,
                    key=identity.key_id,
                    rule=shadow.deny.rule if shadow.deny else None,
                    version=shadow.version,
                )
            )
        report = (decision, header, tuple(events))
        if shadow is None and not decision.canary:  # else a new object per request
            if len(self._reports) >= MAX_REPORTS:
                self._reports.clear()
            self._reports[key] = report
        return report
