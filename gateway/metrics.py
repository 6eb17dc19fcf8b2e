"""Prometheus metrics, read from the live routing state at scrape time.

The hot path only bumps plain integers on the deployments' own statistics; this
collector turns them into metric families when Prometheus asks. No metric lock is
taken per request. Metrics are per worker process: with `--workers N`, scrape
each worker or run one worker per pod.

What a scrape shows depends on who asks (`Viewer`), like every admin view: a
root-scoped key (or the local caller when no keys are configured) sees everything; a
key scoped to a tenant sees the series of the model groups and deployments its tenant
may use (what `/admin/routing` shows it), its subtree's responses and injected
faults, and the config version. Gateway-wide counters that mix every tenant's
traffic (front door refusals, the retry budget, guard events, policy and limit
decisions, reloads) are the root's only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.exchange import Exchange
from routing.breaker import CLOSED, HALF_OPEN, OPEN
from routing.stats import export_buckets
from tenants.config import ROOT
from tenants.identity import Identity

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.state import State

BREAKER_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(
    family: HistogramMetricFamily, labels: list[str], bins: list[int], total: float
) -> None:
    buckets = [
        ("+Inf" if bound == math.inf else f"{bound:.6g}", count)
        for bound, count in export_buckets(bins)
    ]
    family.add_metric(labels, buckets, total)


class RoutingCollector(Collector):
    """Reads the State (counters that outlive config versions) and the runtime that
    is current at scrape time (its groups and deployments), as `viewer` may see them
    (None: everything)."""

    def __init__(
        self, state: State, current: Callable[[], Runtime], viewer: Identity | None = None
    ) -> None:
        self.state = state
        self.current = current
        self.viewer = viewer

    def collect(self) -> Iterator[Metric]:
        viewer = self.viewer
        if viewer is None or viewer.root_scoped:
            yield from self._routing(None)
            yield from self._gateway_wide()
            yield from policy_metrics(self.current())
            yield from limit_metrics(self.state)
            yield from response_store_metrics(self.state)
        else:
            yield from self._routing(viewer)

    def _routing(self, viewer: Identity | None) -> Iterator[Metric]:
        """What every viewer may see, each within its scope."""
        runtime, state = self.current(), self.state
        router = runtime.router
        labels = ["group", "deployment"]
        attempts = CounterMetricFamily(
            "seawall_upstream_attempts",
            "Upstream attempts by outcome (ok, or the failure class).",
            labels=[*labels, "outcome"],
        )
        latency = HistogramMetricFamily(
            "seawall_upstream_latency_seconds",
            "Attempt latency (successes and timeouts; whole stream for streams).",
            labels=labels,
        )
        ttft = HistogramMetricFamily(
            "seawall_upstream_ttft_seconds", "Time to the first streamed event.", labels=labels
        )
        breaker = GaugeMetricFamily(
            "seawall_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=labels,
        )
        openings = CounterMetricFamily(
            "seawall_breaker_openings", "Times the breaker opened.", labels=labels
        )
        weight = GaugeMetricFamily(
            "seawall_effective_weight", "Configured weight times the SLA factor.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "seawall_upstream_in_flight", "Attempts (and streams) in progress.", labels=labels
        )
        retries = CounterMetricFamily(
            "seawall_retries", "Retries on the same deployment.", labels=labels
        )
        hedges = CounterMetricFamily(
            "seawall_hedges",
            "Hedged second attempts started, by the deployment hedged to.",
            labels=labels,
        )
        for group, deployment in router.deployments():
            if viewer is not None and not (
                viewer.may_use_model(group.name) and viewer.may_use_deployment(deployment.id)
            ):
                continue
            names = [group.name, deployment.id]
            stats = deployment.stats
            for outcome, count in sorted(stats.outcomes.items()):
                attempts.add_metric([*names, outcome], count)
            _histogram(latency, names, stats.latency_bins, stats.latency_sum)
            _histogram(ttft, names, stats.ttft_bins, stats.ttft_sum)
            breaker.add_metric(names, BREAKER_STATES.get(deployment.breaker.state, 0))
            openings.add_metric(names, deployment.breaker.total_openings)
            weight.add_metric(names, deployment.effective_weight())
            in_flight.add_metric(names, stats.in_flight)
            retries.add_metric(names, stats.retries)
            hedges.add_metric(names, stats.hedges)
        yield from (attempts, latency, ttft, breaker, openings, weight, in_flight, retries, hedges)
        fallbacks = CounterMetricFamily(
            "seawall_fallbacks", "Requests passed to a fallback group.", labels=["from", "to"]
        )
        for (source, target), count in sorted(router.fallbacks.items()):
            if viewer is None or viewer.may_use_model(source):
                fallbacks.add_metric([source, target], count)
        responses = CounterMetricFamily(
            "seawall_responses",
            "Client responses by the caller's tenant, endpoint, status sent, and the error "
            "code the client got (empty for a success; a stream that fails after its start "
            "is status 200 with code stream_interrupted; client_closed when the client left "
            "first).",
            labels=["tenant", "endpoint", "status", "code"],
        )
        for (tenant, endpoint, status, code), count in sorted(state.responses.items()):
            if viewer is None or viewer.within_scope(tenant):
                responses.add_metric([tenant, endpoint, str(status), code], count)
        faults = CounterMetricFamily(
            "seawall_faults_injected",
            "Chaos faults injected, by the tenant they were injected for (root: the whole "
            "gateway), fault and target (deployment or tool:NAME).",
            labels=["scope", "fault", "target"],
        )
        for (scope, fault, where), count in sorted(state.chaos_injected.items()):
            if viewer is None or viewer.within_scope(scope):
                faults.add_metric([scope, fault, where], count)
        version = GaugeMetricFamily(
            "seawall_config_version_info",
            "The serving config version: its content id and its number in this process.",
            labels=["id", "number"],
        )
        version.add_metric([runtime.version.id, str(runtime.version.number)], 1)
        yield from (fallbacks, responses, faults, version)

    def _gateway_wide(self) -> Iterator[Metric]:
        """Counters that mix every tenant's traffic: the root's view only."""
        state = self.state
        denied = CounterMetricFamily(
            "seawall_retry_budget_denied", "Retries refused because the retry budget was spent."
        )
        denied.add_metric([], self.current().router.budget.denied)
        refusals = CounterMetricFamily(
            "seawall_front_door_refusals",
            "Connections and requests refused before the app saw them, by reason.",
            labels=["reason"],
        )
        for reason, count in state.front_door.refusals.items():
            refusals.add_metric([reason], count)
        guards = CounterMetricFamily(
            "seawall_guard_events",
            "Guard decisions and tool-check findings, by kind and action.",
            labels=["kind", "action"],
        )
        for (kind, action), count in sorted(state.events.counts.items()):
            guards.add_metric([kind, action], count)
        reloads = CounterMetricFamily(
            "seawall_config_reloads",
            "Config versions offered, by result: applied, refused (invalid, or a restart-only "
            "change), unchanged (same content as the serving one).",
            labels=["result"],
        )
        for result, count in sorted(state.reloads.items()):
            reloads.add_metric([result], count)
        yield from (denied, refusals, guards, reloads)


def limit_metrics(state: State) -> Iterator[Metric]:
    limiter = state.limiter
    decisions = CounterMetricFamily(
        "seawall_limit_decisions",
        "Limit decisions by limit, level kind (tenant, key, class) and result: allowed, "
        "refused, store_failure_open (admitted, the store down), store_failure_closed.",
        labels=["limit", "level", "result"],
    )
    for (limit, level, result), count in sorted(limiter.decisions.items()):
        decisions.add_metric([limit, level, result], count)
    errors = CounterMetricFamily(
        "seawall_limit_store_errors", "Limit store calls that failed or timed out."
    )
    errors.add_metric([], limiter.store_errors)
    yield from (decisions, errors)


def response_store_metrics(state: State) -> Iterator[Metric]:
    """Gateway-wide (root only): what became of the responses the gateway tried to
    store, and the store calls that failed (Redis down or slow)."""
    puts = CounterMetricFamily(
        "seawall_response_store_puts",
        "Responses the gateway tried to store, by result: stored, not_requested (store: "
        "false), too_large (over max_record_bytes), store_full (at responses.total: "
        "served, not stored), conflict, failed (the store did not answer).",
        labels=["result"],
    )
    for result, count in sorted(state.response_puts.counts.items()):
        puts.add_metric([result], count)
    errors = CounterMetricFamily(
        "seawall_response_store_errors", "Response store calls that failed or timed out."
    )
    errors.add_metric([], getattr(state.responses_store, "failures", 0))
    yield from (puts, errors)


def policy_metrics(runtime: Runtime) -> Iterator[Metric]:
    """The serving version's policy sets: decisions, cache, evaluations, errors, and
    what shadow and canary sets did."""
    stats = runtime.policies.stats()
    labels = ["version", "set"]
    decisions = CounterMetricFamily(
        "seawall_policy_decisions", "Policy decisions made, by rule set.", labels=labels
    )
    cache = CounterMetricFamily(
        "seawall_policy_cache", "Decision cache lookups by result.", labels=[*labels, "result"]
    )
    evaluations = CounterMetricFamily(
        "seawall_policy_evaluations", "Rule evaluations run (cache hits run none).", labels=labels
    )
    errors = CounterMetricFamily(
        "seawall_policy_errors",
        "Rule outcomes that were errors: all of them (error), those over the time budget "
        "(budget), and those not run because the rule was cut off after one (cutoff).",
        labels=[*labels, "kind"],
    )
    sets = [("active", stats.active)]
    if stats.candidate is not None:
        sets.append(("candidate", stats.candidate))
    for name, one in sets:
        names = [one.version, name]
        decisions.add_metric(names, one.decisions)
        cache.add_metric([*names, "hit"], one.cache_hits)
        cache.add_metric([*names, "miss"], one.cache_misses)
        evaluations.add_metric(names, one.evaluations)
        errors.add_metric([*names, "error"], one.errors)
        errors.add_metric([*names, "budget"], one.budget_overruns)
        errors.add_metric([*names, "cutoff"], one.budget_cutoffs)
    shadow = CounterMetricFamily(
        "seawall_policy_shadow",
        "Decisions of a shadow set, and how many differed from the enforced one.",
        labels=["result"],
    )
    shadow.add_metric(["decided"], stats.shadow_decisions)
    shadow.add_metric(["disagreed"], stats.shadow_disagreements)
    canary = CounterMetricFamily(
        "seawall_policy_canary", "Requests decided by a canary set instead of the active one."
    )
    canary.add_metric([], stats.canary_decisions)
    yield from (decisions, cache, evaluations, errors, shadow, canary)


class Metrics:
    def __init__(self, state: State, current: Callable[[], Runtime]) -> None:
        self.state = state
        self.current = current
        self.responses = state.responses
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RoutingCollector(state, current))

    async def on_complete(self, exchange: Exchange) -> None:
        """The completion hook: counted after the last byte, so a stream's real ending
        (interrupted, or abandoned by its client) is what is counted."""
        identity = exchange.identity
        tenant = identity.tenant_id if identity is not None else ROOT
        key = (tenant, exchange.endpoint, exchange.status, exchange.error_code or "")
        self.responses[key] = self.responses.get(key, 0) + 1

    def render(self, viewer: Identity | None = None) -> bytes:
        """The exposition for `viewer` (None or root-scoped: everything)."""
        if viewer is None or viewer.root_scoped:
            return generate_latest(self.registry)
        scoped = CollectorRegistry(auto_describe=False)
        scoped.register(RoutingCollector(self.state, self.current, viewer))
        return generate_latest(scoped)
