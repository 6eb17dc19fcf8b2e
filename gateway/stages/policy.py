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
from typing import Any

from common.headers import POLICY_HEADER
from gateway.errors import GatewayError
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from policies import Attributes, CompiledPolicies, Decision, policy_headers, utc_hour_weekday
from routing.router import Router

log = logging.getLogger("seawall")

#: Bytes per token for the estimate the rules see.
BYTES_PER_TOKEN = 4
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")


def tool_names(tools: Any) -> tuple[str, ...]:
    names = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        part = tool.get("custom") if tool.get("type") == "custom" else tool.get("function")
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            names.append(part["name"])
    return tuple(names)


class PolicyGate:
    def __init__(self, policies: CompiledPolicies, router: Router, events: Events) -> None:
        self.policies = policies
        self.router = router
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        identity = exchange.identity
        policies = self.policies
        if identity is None or (
            policies.candidate is None and not policies.rules_for(identity.tenant_id)
        ):
            return
        decision = policies.decide(self._attributes(exchange), exchange.request_id)
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
        body = exchange.body
        max_tokens = next((body[f] for f in MAX_TOKEN_FIELDS if isinstance(body.get(f), int)), 0)
        messages = body.get("messages")
        hour, weekday = utc_hour_weekday(time.time())
        request = exchange.request
        client = request.client
        return Attributes(
            tenant=identity.tenant_id,
            tenants=identity.chain,
            key=identity.key_id,
            roles=tuple(sorted(identity.roles)),
            model=exchange.group.name,
            endpoint=exchange.endpoint,
            prompt_tokens=len(exchange.raw) // BYTES_PER_TOKEN,
            max_tokens=max_tokens,
            stream=exchange.stream,
            tools=tool_names(body.get("tools")),
            tool_results=isinstance(messages, list)
            and any(isinstance(m, dict) and m.get("role") == "tool" for m in messages),
            headers=policy_headers(request.headers.items(), self.policies.headers),
            hour=hour,
            weekday=weekday,
            client_ip=client.host if client is not None else "",
        )

    def _route(self, exchange: Exchange, decision: Decision) -> None:
        assert exchange.group is not None
        allowed = frozenset(d.id for _, d in self.router.deployments() if decision.allows(d.id))
        only = exchange.upstream_only
        exchange.upstream_only = allowed if only is None else only & allowed

    def _report(self, exchange: Exchange, decision: Decision) -> None:
        identity = exchange.identity
        assert identity is not None
        if decision.matched or decision.canary:
            canary = "; canary" if decision.canary else ""
            matched = ", ".join(decision.matched) or "-"
            exchange.headers[POLICY_HEADER] = f"{matched}; version={decision.version}{canary}"
        group = exchange.group.name if exchange.group else None
        effects = [("deny", decision.deny.rule)] if decision.deny is not None else []
        effects += [("flag", f"tag:{flag}") for flag in decision.flags]
        effects += [("route", rule) for rule in decision.route_rules]
        effects += [("error", error.rule) for error in decision.errors]
        for effect, rule in effects:
            self.events.emit(
                GuardEvent(
                    "policy",
                    effect,
                    group,
                    tenant=identity.tenant_id,
                    key=identity.key_id,
                    rule=rule,
                    version=decision.version,
                )
            )
        shadow = decision.shadow
        if shadow is not None and not decision.agrees_with(shadow):
            self.events.emit(
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
