"""The gateway's governance of MCP tool calls: policies, limits and chaos per call.

toolservers/protocol.py asks `admit(ToolCall)` after it resolved the tool for the
caller (its tenant's `allow.tools` already applied: a hidden tool never gets here)
and checked the arguments, before it calls the server. In order:

1. **Policies**: the caller's tenant chain's CEL rules, with the engine every
   model request uses (compiled once per Runtime, decision cache included). The
   attribute table belongs to policies/, so an MCP call is presented in the
   attributes that exist (docs/mcp.md, "Policies"): `endpoint` is `"mcp"`,
   `model` the server's name, and `tools` the exposed tool name followed by
   `arg:<name>` for each argument name and `hint:<annotation>` for each annotation
   that is true (`hint:destructiveHint`). Exposed names never contain `:`, so the
   three kinds cannot be confused. `deny` refuses the call (a JSON-RPC error
   naming the rule), `flag` tags it, `limit_class` adds the class's
   `requests_per_minute` / `max_concurrent` as tool-call limits; `route` has
   nothing to route here.
2. **Limits**: `mcp.limits` (per tenant of the chain, per key, per tool and
   tenant) and the selected classes, through the gateway's `Limiter` (memory or
   Redis, exactly as for model requests) in buckets of their own (`mcp-tenant:`,
   `mcp-key:`, `mcp-tool:`, `mcp-class:`). A refusal is a JSON-RPC error with
   the limit's message; a concurrency slot is released when the call ends.
3. **Chaos**: the request's plan's faults that hit this call (gateway/mcp/faults.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chaos.plan import ChaosPlan
from gateway.events import Events, GuardEvent
from gateway.mcp.faults import call_faults
from limits.claims import NO_DEMAND, Level, Plan
from limits.config import LimitsConfig, LimitSettings
from limits.limiter import Limiter
from policies import (
    Attributes,
    CompiledPolicies,
    Decision,
    RepeatedHeader,
    policy_headers,
    utc_hour_weekday,
)
from tenants.identity import Identity
from toolservers.config import CallLimits, McpLimits
from toolservers.jsonrpc import INVALID_REQUEST
from toolservers.protocol import POLICY_DENIED, RATE_LIMITED, Admission, ToolCall

#: Plans kept per (key, tool, classes); past it the cache starts over (plans are
#: cheap to rebuild, an unbounded dict is not cheap to keep).
MAX_PLANS = 4096


def policy_tools(call: ToolCall) -> tuple[str, ...]:
    """The `tools` attribute of an MCP call (see the module docstring)."""
    hints = (f"hint:{name}" for name, value in sorted(call.annotations.items()) if value is True)
    return (call.tool, *(f"arg:{name}" for name in call.argument_names), *hints)


def _as_limits(limits: CallLimits, on_failure: Any) -> LimitsConfig | None:
    if limits.calls_per_minute is None and limits.max_concurrent is None:
        return None
    return LimitsConfig(
        requests_per_minute=limits.calls_per_minute,
        max_concurrent=limits.max_concurrent,
        on_store_failure=on_failure,
    )


class GatewayGovernance:
    """`toolservers.protocol.Governance` over one Runtime's policies and limits.

    The caller's context (gateway/mcp_endpoint.py) carries what a call needs from
    its HTTP request: `identity`, `plan` (the chaos plan, or None), `headers`
    (the request's), `client_ip`, `request_id`."""

    def __init__(
        self,
        policies: CompiledPolicies,
        limiter: Limiter,
        limits: McpLimits,
        settings: LimitSettings,
        events: Events,
    ) -> None:
        self.policies = policies
        self.limiter = limiter
        self.events = events
        failure = limits.on_store_failure
        self._tenant = _as_limits(limits.tenant, failure)
        self._key = _as_limits(limits.key, failure)
        self._tool = _as_limits(limits.tool, failure)
        self._classes = {
            name: LimitsConfig(
                requests_per_minute=config.requests_per_minute,
                max_concurrent=config.max_concurrent,
                on_store_failure=config.on_store_failure,
            )
            for name, config in settings.classes.items()
            if config.requests_per_minute is not None or config.max_concurrent is not None
        }
        self._plans: dict[tuple[Identity, str, tuple[str, ...]], Plan] = {}

    async def admit(self, call: ToolCall) -> Admission:
        context = call.caller.context
        identity: Identity | None = context.get("identity")
        plan: ChaosPlan | None = context.get("plan")
        decision = None
        if identity is not None:
            try:
                decision = self._decide(call, identity, context)
            except RepeatedHeader as exc:
                return Admission(
                    error=(INVALID_REQUEST, f"Header '{exc.name}' is sent more than once")
                )
            if decision is not None and decision.deny is not None:
                denial = decision.deny
                return Admission(
                    error=(
                        POLICY_DENIED,
                        f"Denied by policy rule '{denial.rule}': {denial.message}",
                    )
                )
        done: Callable[[bool], Awaitable[None]] | None = None
        if identity is not None:
            classes = decision.limit_classes if decision is not None else ()
            limits_plan = self._plan(identity, call.tool, classes)
            if limits_plan is not None:
                admitted = await self.limiter.admit(limits_plan, NO_DEMAND)
                if admitted.refusal is not None:
                    refusal = admitted.refusal
                    self.events.emit(
                        GuardEvent(
                            "rate_limited",
                            refusal.limit,
                            tool=call.tool,
                            detail=refusal.level,
                            tenant=identity.tenant_id,
                        )
                    )
                    return Admission(error=(RATE_LIMITED, refusal.message))
                reservation = admitted.reservation
                if reservation is not None:
                    limiter = self.limiter

                    async def done(ok: bool) -> None:
                        await limiter.release(reservation)

        flags = decision.flags if decision is not None else ()
        return Admission(faults=call_faults(plan, call.server, call.tool), done=done, flags=flags)

    def _decide(
        self, call: ToolCall, identity: Identity, context: Mapping[str, Any]
    ) -> Decision | None:
        policies = self.policies
        if policies.candidate is None and not policies.rules_for(identity.tenant_id):
            return None
        hour, weekday = utc_hour_weekday(time.time())
        headers = context.get("headers")
        attributes = Attributes(
            tenant=identity.tenant_id,
            tenants=identity.chain,
            key=identity.key_id,
            roles=tuple(sorted(identity.roles)),
            model=call.server,
            endpoint="mcp",
            prompt_tokens=0,
            max_tokens=0,
            stream=False,
            tools=policy_tools(call),
            tool_results=False,
            headers=policy_headers(headers.items() if headers else (), policies.headers),
            hour=hour,
            weekday=weekday,
            client_ip=context.get("client_ip", ""),
            server=call.server,
            tool=call.tool,
            argument_names=call.argument_names,
            annotations=tuple(sorted(k for k, v in call.annotations.items() if v is True)),
        )
        decision = policies.decide(attributes, context.get("request_id", ""))
        for effect, rule in decision.effects():
            if effect == "route":
                continue  # routing rules steer model calls; an MCP call has no route
            self.events.emit(
                GuardEvent(
                    "policy",
                    effect,
                    tool=call.tool,
                    tenant=identity.tenant_id,
                    key=identity.key_id,
                    rule=rule,
                    version=decision.version,
                )
            )
        return decision

    def _plan(self, identity: Identity, tool: str, classes: tuple[str, ...]) -> Plan | None:
        """The limits plan of a call of `tool` by `identity`, None when none applies."""
        key = (identity, tool, classes)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        levels: list[Level] = []
        if self._tenant is not None:
            # Every tenant below the root: the root's level would be one gateway-wide
            # bucket, which `mcp.limits` does not mean.
            levels += [Level(f"mcp-tenant:{t}", self._tenant) for t in identity.chain[1:]]
        if self._key is not None:
            levels.append(Level(f"mcp-key:{identity.key_id}", self._key))
        if self._tool is not None:
            levels.append(Level(f"mcp-tool:{identity.tenant_id}:{tool}", self._tool))
        levels += [Level(f"mcp-class:{c}", self._classes[c]) for c in classes if c in self._classes]
        if not levels:
            return None
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        plan = self._plans[key] = self.limiter.plan(levels)
        return plan
