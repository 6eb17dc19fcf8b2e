"""The audit stage and the audit completion hook: one record per request.

`AuditTrail`, right after authentication, opens the request's trail (every guard
event a later stage emits lands in it: `gateway.events.REQUEST_TRAIL`) and refuses
the request with 503 `audit_unavailable` when its tenant requires audit
(`audit: {required: true, on_full: refuse}`) and the writer's queue is full: such
a tenant is never served without a record.

`RecordRequest`, a completion hook, runs after the last byte went out (so a stream's
real ending is what is recorded), builds the record (gateway/audit_record.py) and
hands it to the process's `AuditLog`, which never waits for disk. With telemetry
on, the decision also goes out as a span event on the request's current span.

Reads `exchange.identity`, and in the hook everything the record names. Writes
`exchange.trail`.
"""

from __future__ import annotations

from collections.abc import Mapping

from audit.chain import serialise
from audit.config import DEFAULT_POLICY, AuditPolicy
from common.redact import Redactor
from gateway.audit_log import AuditLog
from gateway.audit_record import RecordBuilder
from gateway.errors import GatewayError
from gateway.events import REQUEST_TRAIL
from gateway.exchange import Exchange
from limits.prices import TokenPrice


def audit_unavailable() -> GatewayError:
    return GatewayError(
        503,
        "The audit log cannot take this request's record right now, and this "
        "tenant's requests are served only with one; retry shortly.",
        code="audit_unavailable",
    )


class AuditTrail:
    def __init__(self, log: AuditLog, policies: Mapping[str, AuditPolicy]) -> None:
        self.log = log
        self.policies = policies

    async def __call__(self, exchange: Exchange) -> None:
        identity = exchange.identity
        if identity is not None and not self.log.admits(
            self.policies.get(identity.tenant_id, DEFAULT_POLICY)
        ):
            raise audit_unavailable()
        trail = exchange.trail = []
        REQUEST_TRAIL.set(trail)


class RecordRequest:
    """The completion hook: the finished request's record, queued."""

    def __init__(
        self,
        log: AuditLog,
        policies: Mapping[str, AuditPolicy],
        version: str,
        prices: Mapping[str, TokenPrice | None],
        redactor: Redactor,
        telemetry: bool = False,
    ) -> None:
        self.log = log
        self.policies = policies
        self.records = RecordBuilder(version, prices, redactor)
        self.telemetry = telemetry

    async def __call__(self, exchange: Exchange) -> None:
        REQUEST_TRAIL.set(None)
        identity = exchange.identity
        policy = (
            self.policies.get(identity.tenant_id, DEFAULT_POLICY)
            if identity is not None
            else DEFAULT_POLICY
        )
        span = _current_span() if self.telemetry else None
        trace_id = (
            format(span.get_span_context().trace_id, "032x")
            if span is not None and span.get_span_context().is_valid
            else None
        )
        record = self.records.request(exchange, policy.content, trace_id)
        if span is not None and span.is_recording():
            span.add_event("seawall.audit", _span_attributes(record))
        # As bytes: nothing of it waits in the queue for the cyclic GC to walk.
        await self.log.write(serialise(record), policy)


def _current_span():  # type: ignore[no-untyped-def]
    from opentelemetry import trace

    return trace.get_current_span()


def _span_attributes(record: Mapping[str, object]) -> dict[str, str | int | float | bool]:
    """The decision as span attributes (scalars only: OpenTelemetry's rule)."""
    policy = record.get("policy") or {}
    assert isinstance(policy, dict)
    limits = record.get("limits") or []
    assert isinstance(limits, list)
    attributes: dict[str, str | int | float | bool] = {
        "seawall.tenant": str(record.get("tenant")),
        "seawall.key": str(record.get("key")),
        "seawall.status": int(record["status"]),  # type: ignore[call-overload]
        "seawall.error": str(record.get("error") or ""),
        "seawall.policy.matched": ",".join(policy.get("matched", ())),
        "seawall.policy.denied": str(policy.get("denied") or ""),
        "seawall.policy.flags": ",".join(policy.get("flags", ())),
        "seawall.limits.refused": ",".join(
            str(v["level"]) for v in limits if v.get("decision") == "refused"
        ),
    }
    return attributes
