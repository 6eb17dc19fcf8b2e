"""One request's audit record, built from its finished exchange (audit/record.py
is the schema; docs/audit.md renders it).

Built after the last byte went out, from what the stages wrote on the exchange: who
(identity), what (endpoint, model, route), what was decided (policy, limits, guard
events, faults) and how it ended (status, error code, usage, latency, stream cut).
Nothing in it is a secret: keys appear by id, and every free-text field an upstream
or a client could fill (a guard event's detail, opted-in content) goes through the
config's redactor first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from audit.record import NOT_APPLICABLE
from common.redact import Redactor
from gateway.errors import STREAM_INTERRUPTED
from gateway.events import GuardEvent
from gateway.exchange import CLIENT_CLOSED, Exchange
from limits.claims import Plan
from limits.limiter import Admission
from limits.prices import TokenPrice
from policies import Decision
from tenants.identity import Identity
from toolservers.protocol import Outcome as McpOutcome

#: Opted-in content is capped per field: a record is one line of a segment, and the
#: log is not a second copy of every conversation's full history.
CONTENT_MAX_CHARS = 32_768
#: Guard event details are capped too (they can quote a tool's output).
DETAIL_MAX_CHARS = 512


class RecordBuilder:
    """Builds the records of one config version's requests.

    Kept per Runtime: what is the same for many requests is worked out once (the
    limit verdicts of an admitted plan). Sequences go in as tuples (orjson writes
    them as arrays) rather than list copies: the record is serialised at once.
    """

    def __init__(
        self, version: str, prices: Mapping[str, TokenPrice | None], redactor: Redactor
    ) -> None:
        self.version = version
        self.prices = prices
        self.redactor = redactor
        #: The verdicts of an admitted plan, by plan: one per level.
        self._admitted: dict[Plan, tuple[dict[str, Any], ...]] = {}

    def request(
        self, exchange: Exchange, content: bool, trace_id: str | None = None
    ) -> dict[str, Any]:
        identity = exchange.identity
        hops = exchange.hops
        deployment = exchange.deployment
        usage = _usage(exchange.usage)
        price = self.prices.get(deployment) if deployment is not None else None
        trail: list[GuardEvent] | None = exchange.trail
        group = exchange.group
        model = group.name if group is not None else exchange.body.get("model")
        return {
            "kind": "request",
            "time": time.time(),
            "request_id": exchange.request_id,
            "trace_id": trace_id,
            "tenant": identity.tenant_id if identity is not None else None,
            "tenants": identity.chain if identity is not None else (),
            "key": identity.key_id if identity is not None else None,
            "endpoint": exchange.endpoint,
            "model": model if isinstance(model, str) else None,
            "deployment": deployment,
            "route": [{"deployment": h.deployment, "outcome": h.outcome or "ok"} for h in hops],
            "status": exchange.status,
            "error": exchange.error_code,
            "usage": usage,
            "cost": (
                price.cost(usage["prompt_tokens"], usage["completion_tokens"])
                if price is not None and usage is not None
                else None
            ),
            "latency_ms": round((exchange.completed - exchange.started) * 1000, 3),
            "ttft_ms": (
                round((exchange.first_byte - exchange.started) * 1000, 3)
                if exchange.first_byte
                else None
            ),
            "stream": exchange.stream,
            "cut": exchange.stream
            and (
                exchange.error_code in (STREAM_INTERRUPTED, CLIENT_CLOSED) or exchange.client_left
            ),
            "config_version": self.version,
            "policy": _policy(exchange.policy),
            "limits": self._limits(exchange.limits),
            "guards": self._guards(trail) if trail else (),
            "chaos": _chaos(exchange, trail) if trail or exchange.chaos is not None else None,
            "content": _content(exchange, self.redactor) if content else None,
        }

    def _guards(self, trail: list[GuardEvent]) -> list[dict[str, Any]]:
        secrets = self.redactor.secrets
        return [
            {
                "kind": e.kind,
                "action": e.action,
                "tool": e.tool,
                "detail": secrets(e.detail[:DETAIL_MAX_CHARS]),
            }
            for e in trail
            if e.kind not in ("policy", "fault_injected")
        ]

    def _limits(self, admission: Admission | None) -> Sequence[dict[str, Any]]:
        if admission is None:
            return ()
        refusal = admission.refusal
        if refusal is not None:
            return ({"level": refusal.level, "decision": "refused", "limit": refusal.limit},)
        reservation = admission.reservation
        if reservation is None:
            return ()
        plan = reservation.plan
        if admission.unchecked:
            return _verdicts(plan, "unchecked")
        verdicts = self._admitted.get(plan)
        if verdicts is None:
            verdicts = self._admitted[plan] = _verdicts(plan, "admitted")
        return verdicts


def _verdicts(plan: Plan, decision: str) -> tuple[dict[str, Any], ...]:
    levels = dict.fromkeys(claim.level for claim in plan.claims)
    return tuple({"level": level, "decision": decision, "limit": None} for level in levels)


def _usage(usage: Mapping[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    total = _int(usage.get("total_tokens")) or prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _policy(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "version": decision.version,
        "matched": decision.matched,
        "flags": decision.flags,
        "denied": decision.deny.rule if decision.deny is not None else None,
        "errors": [f"{e.rule}: {e.kind}" for e in decision.errors],
    }


def _chaos(exchange: Exchange, trail: list[GuardEvent] | None) -> dict[str, Any] | None:
    faults = [e.action for e in trail or () if e.kind == "fault_injected"]
    colour = exchange.colour
    if not faults and colour is None:
        return None
    return {"faults": faults, "colour": colour}


def _content(exchange: Exchange, redactor: Redactor) -> dict[str, str | None]:
    body = exchange.body
    prompt = body.get("messages", body.get("input"))
    return {
        "prompt": _capped(orjson.dumps(prompt).decode(), redactor) if prompt is not None else None,
        "completion": _completion(exchange, redactor),
    }


def _completion(exchange: Exchange, redactor: Redactor) -> str | None:
    """The answer's text of a non-stream success (streams: not kept; docs/audit.md)."""
    response = exchange.response
    if exchange.stream or response is None or exchange.status >= 400:
        return None
    try:
        payload = orjson.loads(response.body)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    texts: list[str] = []
    for choice in payload.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            texts.append(message["content"])
    for item in payload.get("output") or ():
        for part in item.get("content") or () if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return _capped("\n".join(texts), redactor) if texts else None


def _capped(text: str, redactor: Redactor) -> str:
    return redactor.secrets(text[:CONTENT_MAX_CHARS])


def mcp_record(
    identity: Identity,
    request_id: str,
    method: str,
    status: int,
    latency_ms: float,
    version: str,
    outcomes: Sequence[McpOutcome],
    injected: Sequence[str],
    redactor: Redactor,
) -> dict[str, Any]:
    """One `/mcp` HTTP request's record: the request record's fields (no model,
    route or usage), and `mcp`: each JSON-RPC message handled (`method`, and for
    `tools/call` the `server` and `tool`), the JSON-RPC error code it got, and the
    verification findings (`guards`, as for chat: `tool_result_forged`...)."""
    guards = [
        {
            "kind": f.kind,
            "action": "reject" if f.mode == "enforce" else "warn",
            "tool": f.tool,
            "detail": redactor.secrets(f.message[:DETAIL_MAX_CHARS]),
        }
        for outcome in outcomes
        for f in outcome.findings
    ]
    errors = [o.error for o in outcomes if o.error is not None]
    return {
        **NOT_APPLICABLE,
        "time": time.time(),
        "request_id": request_id,
        "tenant": identity.tenant_id,
        "tenants": identity.chain,
        "key": identity.key_id,
        "endpoint": "mcp",
        "status": status,
        "error": f"jsonrpc_{errors[0]}" if errors and status < 400 else None,
        "latency_ms": round(latency_ms, 3),
        "config_version": version,
        "guards": guards,
        "chaos": {"faults": list(injected), "colour": None} if injected else None,
        "mcp": [
            {"method": o.method, "server": o.server, "tool": o.tool, "error": o.error}
            for o in outcomes
        ],
    }
