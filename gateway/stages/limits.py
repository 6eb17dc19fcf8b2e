"""Rate limits and quotas: reserve at admission, settle when the response has ended.

`AdmitLimits` runs after the guards (a request they refuse costs no quota) and before
the request goes upstream. Every level applies and all must pass: each tenant of the
caller's chain, the key, and any limit class a policy selected. The reservation is
1 request, 1 concurrency slot, the prompt's tokens (counted) plus `max_tokens` (or
`limits.default_completion_tokens` when the request sets none), and that priced at the
group's dearest deployment. A refusal is 429 `rate_limit_exceeded` (or
`insufficient_quota` for spend) naming the limit and the level, with `retry-after`
(which the openai SDK honours) and `x-seawall-limit`, so a gateway 429 is never
mistaken for a provider's. Every response of a limited caller carries OpenAI's
`x-ratelimit-*` headers for the tightest request and token limits.

`settle_limits` (a completion hook, after the last byte) replaces the estimates with
the provider's reported usage and frees the concurrency slot, on success, error,
client disconnect and stream cut alike; usage never reported leaves the estimate
charged. For a stream, `stream_options.include_usage` is forced upstream so usage is
reported, and the usage chunk is kept from a client that did not ask for it.

What a request's levels claim is worked out once per caller and set of limit
classes (a `Plan`, limits/claims.py), not per request: a request fills in its tokens
and cost. The prompt is counted once per request: when the prompt guard counted it
(near its limit, right before this stage), its count is the one reserved. The
messages before the last (the conversation so far) and the tool definitions are
counted once per caller: their counts are remembered (routing/turn_counts.py).

Reads `exchange.identity`, `exchange.policy`, `exchange.group`, `exchange.body`,
`exchange.history_bytes`, `exchange.prompt_count`.
Writes `exchange.limits`, `exchange.headers`, the body's `stream_options`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from common.chat import RESPONSES, estimated_tokens
from common.headers import LIMIT_HEADER
from gateway.errors import STREAM_INTERRUPTED, GatewayError
from gateway.exchange import Exchange
from gateway.stages.guards import (
    OFFLOAD_BYTES,
    PromptCount,
    count_prompt_off_loop,
    remembered_counts,
)
from limits.claims import NO_DEMAND, Demand, Level, Plan
from limits.config import LimitSettings
from limits.limiter import Admission, Limiter
from limits.prices import TokenPrice
from routing.turn_counts import TurnCounts
from tenants.identity import Identity

#: Plans kept per Runtime, at most (one per key and set of limit classes; the cache
#: is emptied when full, and a plan is rebuilt in microseconds).
MAX_PLANS = 10_000


class AdmitLimits:
    def __init__(
        self,
        limiter: Limiter,
        settings: LimitSettings,
        group_prices: Mapping[str, TokenPrice],
        turns: TurnCounts | None = None,
    ) -> None:
        self.limiter = limiter
        #: Earlier turns' counts per caller, shared with the prompt guard.
        self.turns = turns
        self.settings = settings
        self.classes = settings.classes
        self.group_prices = group_prices
        self._plans: dict[tuple[Identity | None, tuple[str, ...]], Plan | None] = {}

    def planned(self, exchange: Exchange) -> Plan | None:
        """This caller's plan for these limit classes, made on its first request."""
        decision = exchange.policy
        key = (exchange.identity, () if decision is None else decision.limit_classes)
        try:
            return self._plans[key]
        except KeyError:
            pass
        levels = self.levels(exchange)
        planned = self.limiter.plan(levels) if levels else None
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = planned
        return planned

    def levels(self, exchange: Exchange) -> list[Level]:
        identity = exchange.identity
        levels = [Level(name, config) for name, config in identity.limit_levels] if identity else []
        decision = exchange.policy
        if decision is not None:
            for name in decision.limit_classes:
                levels.append(Level(f"class:{name}", self.classes[name]))
        return levels

    async def __call__(self, exchange: Exchange) -> None:
        plan = self.planned(exchange)
        if plan is None:
            return
        demand = NO_DEMAND
        if plan.counts_tokens:
            demand = await self._demand(exchange)
            if exchange.stream and exchange.endpoint != "embeddings":
                self._force_usage(exchange)
        admission = await self.limiter.admit(plan, demand)
        # Refused or not: the audit record names the levels and what was decided.
        exchange.limits = admission
        if admission.headers:
            exchange.headers.update(admission.headers)
        refusal = admission.refusal
        if refusal is not None:
            retry = max(1, math.ceil(refusal.retry_after_s))
            raise GatewayError(
                refusal.status,
                refusal.message,
                code=refusal.code,
                type="rate_limit_error" if refusal.status == 429 else "server_error",
                headers={
                    "retry-after": str(retry),
                    "retry-after-ms": str(int(refusal.retry_after_s * 1000)),
                    LIMIT_HEADER: f"{refusal.limit}; level={refusal.level}",
                },
            )

    async def _demand(self, exchange: Exchange) -> Demand:
        assert exchange.group is not None
        body = exchange.body
        price = self.group_prices.get(exchange.group.name)
        if exchange.endpoint == "embeddings":
            # Input only, estimated from the body's size (JSON and all: more than
            # the text); settled with the reported usage.
            prompt = estimated_tokens(len(exchange.raw))
            return Demand(prompt, price.cost(prompt, 0) if price is not None else 0.0)
        if exchange.shape is RESPONSES:
            # Passed through as sent: its items are the upstream's to count; the
            # estimate from bytes is settled with the reported usage.
            prompt = estimated_tokens(len(exchange.raw) + exchange.history_bytes)
            return self._with_completion(prompt, body, exchange, price)
        model = exchange.group.deployments[0].config.model
        shared: PromptCount | None = exchange.prompt_count
        counted = None if shared is None else shared.tokens_of(body, model)
        if counted is None:
            remembered = remembered_counts(self.turns, exchange)
            costs, fixed = await count_prompt_off_loop(
                body, model, remembered, big=len(exchange.raw) > OFFLOAD_BYTES
            )
            counted = fixed + sum(costs)
        # A continued conversation (Responses' `previous_response_id`) is not in the
        # body yet: its stored bytes are counted at the policies' rate.
        prompt = counted + estimated_tokens(exchange.history_bytes)
        return self._with_completion(prompt, body, exchange, price)

    def _with_completion(
        self, prompt: int, body: dict[str, Any], exchange: Exchange, price: TokenPrice | None
    ) -> Demand:
        asked = exchange.shape.max_tokens_asked(body)
        completion = asked if asked is not None else self.settings.default_completion_tokens
        cost = price.cost(prompt, completion) if price is not None else 0.0
        return Demand(prompt + completion, cost)

    @staticmethod
    def _force_usage(exchange: Exchange) -> None:
        options = exchange.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return
        exchange.body["stream_options"] = {**(options or {}), "include_usage": True}
        exchange.strip_usage = True


class SettleLimits:
    """The completion hook: actual usage replaces the reservation's estimates."""

    def __init__(self, limiter: Limiter, prices: Mapping[str, TokenPrice | None]) -> None:
        self.limiter = limiter
        self.prices = prices

    async def __call__(self, exchange: Exchange) -> None:
        admission: Admission | None = exchange.limits
        if admission is None or admission.reservation is None:
            return
        reservation = admission.reservation
        if exchange.routed is None:
            # It never reached a provider (refused, or failed on the way): refund.
            await self.limiter.release(reservation)
            return
        usage = exchange.usage
        tokens = cost = None
        if usage is not None:
            prompt = _int(usage.get("prompt_tokens"))
            completion = _int(usage.get("completion_tokens"))
            tokens = _int(usage.get("total_tokens")) or prompt + completion
            price = self.prices.get(exchange.routed.reply.deployment)
            cost = price.cost(prompt, completion) if price is not None else 0.0
        elif exchange.status >= 400 and exchange.error_code != STREAM_INTERRUPTED:
            tokens, cost = 0, 0.0  # the provider refused before generating: nothing used
        # Not shielded, though a completion hook may run while its task is being
        # cancelled (a server shutdown): the in-process store settles without
        # yielding to the loop, and the Redis store queues the settlement before its
        # first suspension and sends it whether or not anyone still waits
        # (limits/coalesce.py, `drop_unsent=False`). A shield's task would cost
        # ~10 µs a request.
        await self.limiter.settle(reservation, tokens, cost)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def without_usage(events: bytes) -> bytes:
    """Events without the usage-only chunk (`"choices":[]` with `usage`), for a client
    that did not ask for usage: the gateway asked for it, for settlement."""
    if b'"usage"' not in events or b'"choices":[]' not in events:
        return events
    kept = [
        event
        for event in events.split(b"\n\n")
        if event and not (b'"usage"' in event and b'"choices":[]' in event)
    ]
    return b"".join(event + b"\n\n" for event in kept)
