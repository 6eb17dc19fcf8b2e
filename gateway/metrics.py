"""Prometheus metrics, read from the live routing state at scrape time.

The hot path only bumps plain integers on the deployments' own statistics; this
collector turns them into metric families when Prometheus asks. No metric lock is
taken per request. Metrics are per worker process: with `--workers N`, scrape
each worker or run one worker per pod.
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
    is current at scrape time (its groups and deployments)."""

    def __init__(self, state: State, current: Callable[[], Runtime]) -> None:
        self.state = state
        self.current = current

    def collect(self) -> Iterator[Metric]:
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
        fallbacks = CounterMetricFamily(
            "seawall_fallbacks", "Requests passed to a fallback group.", labels=["from", "to"]
        )
        for (source, target), count in sorted(router.fallbacks.items()):
            fallbacks.add_metric([source, target], count)
        denied = CounterMetricFamily(
            "seawall_retry_budget_denied", "Retries refused because the retry budget was spent."
        )
        denied.add_metric([], router.budget.denied)
        responses = CounterMetricFamily(
            "seawall_responses",
            "Client responses by endpoint, status sent, and the error code the client got "
            "(empty for a success; a stream that fails after its start is status 200 with "
            "code stream_interrupted; client_closed when the client left first).",
            labels=["endpoint", "status", "code"],
        )
        for (endpoint, status, code), count in sorted(state.responses.items()):
            responses.add_metric([endpoint, str(status), code], count)
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
        yield from (attempts, latency, ttft, breaker, openings, weight, in_flight, retries, hedges)
        faults = CounterMetricFamily(
            "seawall_faults_injected",
            "Chaos faults injected, by fault and target (deployment or tool:NAME).",
            labels=["fault", "target"],
        )
        for (fault, where), count in sorted(state.chaos_injected.items()):
            faults.add_metric([fault, where], count)
        reloads = CounterMetricFamily(
            "seawall_config_reloads",
            "Config versions offered, by result: applied, refused (invalid, or a restart-only "
            "change), unchanged (same content as the serving one).",
            labels=["result"],
        )
        for result, count in sorted(state.reloads.items()):
            reloads.add_metric([result], count)
        version = GaugeMetricFamily(
            "seawall_config_version_info",
            "The serving config version: its content id and its number in this process.",
            labels=["id", "number"],
        )
        version.add_metric([runtime.version.id, str(runtime.version.number)], 1)
        yield from (fallbacks, denied, responses, refusals, guards, faults, reloads, version)
        yield from policy_metrics(runtime)
        yield from limit_metrics(state)


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
        "Rule evaluations that failed, by kind (error, or over the time budget).",
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
        self.responses = state.responses
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RoutingCollector(state, current))

    async def on_complete(self, exchange: Exchange) -> None:
        """The completion hook: counted after the last byte, so a stream's real ending
        (interrupted, or abandoned by its client) is what is counted."""
        key = (exchange.endpoint, exchange.status, exchange.error_code or "")
        self.responses[key] = self.responses.get(key, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)
