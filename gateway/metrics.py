"""Prometheus metrics, read from the live routing state at scrape time.

The hot path only bumps plain integers on the deployments' own statistics; this
collector turns them into metric families when Prometheus asks. No metric lock is
taken per request. The GenAI series (OpenTelemetry's GenAI semantic conventions,
`GenAiMetrics`) are kept the same way: plain histogram bins bumped by the completion
hook.

With `--workers N` one scrape shows the whole gateway: the supervisor gives the
workers a shared directory (`SEAWALL_METRICS_DIR`, gateway/server/workers.py), each
worker writes its root view there every `PUBLISH_S` seconds, and the worker that
answers a scrape adds the others' files to its own live values (`merge`): counters
and histograms summed (a dead worker's kept, so they never go backwards), gauges
summed or maxed (`SUMMED_GAUGES`) over the live workers only. The supervisor writes
its `seawall_worker_restarts_total` there too, in the same format (a file not named
`live-`, so counted like a dead worker's: gateway/server/restarts.py).

What a scrape shows depends on who asks (`Viewer`), like every admin view: a
root-scoped key (or the local caller when no keys are configured) sees everything; a
key scoped to a tenant sees the series of the model groups and deployments its tenant
may use (what `/admin/routing` shows it), its subtree's responses and injected
faults, and the config version. Gateway-wide counters that mix every tenant's
traffic (front door refusals, the retry budget, guard events, policy and limit
decisions, reloads) are the root's only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway.exchange import Exchange
from gateway.server.workers import METRICS_DIR_ENV, dead_file, live_file, worker_pid
from gateway.telemetry import OPERATIONS
from routing.breaker import CLOSED, HALF_OPEN, OPEN
from routing.stats import export_buckets
from slo.windows import window_label
from tenants.config import ROOT
from tenants.identity import Identity

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.state import State

log = logging.getLogger("seawall")

BREAKER_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: `gen_ai.provider.name` by seawall provider, where the conventions name it.
PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
}
#: The conventions' explicit bucket boundaries.
TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
GENAI_LABELS = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
]

#: How often a worker writes its metrics for the others (with `--workers N`).
PUBLISH_S = 1.0
#: Gauges that add up across workers (what is in progress, queued); every other
#: gauge is the largest worker's value (a breaker open in one worker shows open).
SUMMED_GAUGES = frozenset({"seawall_upstream_in_flight", "seawall_audit_queue"})


class Bins:
    """One histogram series: counts per bucket (not cumulative; the last is +Inf)."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * (size + 1)
        self.total = 0.0


def _observe(table: dict[tuple[str, ...], Bins], key: tuple[str, ...], bounds: tuple[float, ...],
             value: float) -> None:  # fmt: skip
    bins = table.get(key)
    if bins is None:
        bins = table[key] = Bins(len(bounds))
    bins.counts[bisect_left(bounds, value)] += 1
    bins.total += value


def _bins_family(
    name: str, doc: str, labels: list[str], table: dict[tuple[str, ...], Bins],
    bounds: tuple[float, ...],
) -> HistogramMetricFamily:  # fmt: skip
    family = HistogramMetricFamily(name, doc, labels=labels)
    edges = [floatToGoString(b) for b in bounds] + ["+Inf"]
    for key, bins in sorted(table.items()):
        running, buckets = 0, []
        for edge, count in zip(edges, bins.counts, strict=True):
            running += count
            buckets.append((edge, running))
        family.add_metric(list(key), buckets, bins.total)
    return family


class GenAiMetrics:
    """Per OpenTelemetry's GenAI semantic conventions, for every inference request
    that named a model group (chat, Responses, embeddings), counted on completion:
    token usage (input and output, as the provider reported it), the operation's
    duration (arrival to last byte; `error_type` is the error code sent, empty on
    success), and for streams the time to the first token and per output token after
    it. `gen_ai_request_model` is the model group asked for, `gen_ai_response_model`
    and `gen_ai_provider_name` the deployment that answered (the group's first one when
    none did). Root-only: the series mix every tenant's traffic."""

    def __init__(self) -> None:
        self.tokens: dict[tuple[str, ...], Bins] = {}
        self.duration: dict[tuple[str, ...], Bins] = {}
        self.ttft: dict[tuple[str, ...], Bins] = {}
        self.tpot: dict[tuple[str, ...], Bins] = {}
        self._runtime: object = None
        #: deployment id (or `group:NAME`) -> (provider name, model), of `_runtime`.
        self._served: dict[str, tuple[str, str]] = {}

    def _refresh(self, runtime: Runtime) -> None:
        served: dict[str, tuple[str, str]] = {}
        for group, deployment in runtime.router.deployments():
            config = deployment.config
            names = (PROVIDER_NAMES.get(config.provider, config.provider), config.model)
            served[deployment.id] = names
            served.setdefault("group:" + group.name, (names[0], ""))
        self._served, self._runtime = served, runtime

    def observe(self, exchange: Exchange, group: str, operation: str, runtime: Runtime) -> None:
        if runtime is not self._runtime:
            self._refresh(runtime)
        deployment = exchange.deployment
        served = self._served.get(deployment) if deployment is not None else None
        if served is None:
            served = self._served.get("group:" + group, ("", ""))
        series = (operation, served[0], group, served[1])
        error = exchange.error_code or ("" if exchange.status < 400 else str(exchange.status))
        duration = exchange.completed - exchange.started
        _observe(self.duration, (*series, error), DURATION_BUCKETS, duration)
        usage = exchange.usage
        output = 0
        if usage is not None:
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            if isinstance(prompt, int):
                _observe(self.tokens, (*series, "input"), TOKEN_BUCKETS, prompt)
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(completion, int):
                output = completion
                _observe(self.tokens, (*series, "output"), TOKEN_BUCKETS, completion)
        first = exchange.first_byte
        if first and not error:
            _observe(self.ttft, series, TTFT_BUCKETS, first - exchange.started)
            if output > 1:
                per_token = (exchange.completed - first) / (output - 1)
                _observe(self.tpot, series, TPOT_BUCKETS, per_token)

    def families(self) -> Iterator[Metric]:
        yield _bins_family(
            "gen_ai_client_token_usage",
            "gen_ai.client.token.usage: input and output tokens per request, as reported "
            "by the provider.",
            [*GENAI_LABELS, "gen_ai_token_type"],
            self.tokens,
            TOKEN_BUCKETS,
        )
        yield _bins_family(
            "gen_ai_client_operation_duration_seconds",
            "gen_ai.client.operation.duration: request arrival to its last byte.",
            [*GENAI_LABELS, "error_type"],
            self.duration,
            DURATION_BUCKETS,
        )
        yield _bins_family(
            "gen_ai_server_time_to_first_token_seconds",
            "gen_ai.server.time_to_first_token: request arrival to a stream's first event "
            "(successful streams).",
            GENAI_LABELS,
            self.ttft,
            TTFT_BUCKETS,
        )
        yield _bins_family(
            "gen_ai_server_time_per_output_token_seconds",
            "gen_ai.server.time_per_output_token: a stream's time after its first event "
            "per output token after the first (successful streams).",
            GENAI_LABELS,
            self.tpot,
            TPOT_BUCKETS,
        )


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
        self,
        state: State,
        current: Callable[[], Runtime],
        viewer: Identity | None = None,
        genai: GenAiMetrics | None = None,
    ) -> None:
        self.state = state
        self.current = current
        self.viewer = viewer
        self.genai = genai

    def collect(self) -> Iterator[Metric]:
        viewer = self.viewer
        if viewer is None or viewer.root_scoped:
            yield from self._routing(None)
            yield from self._gateway_wide()
            yield from policy_metrics(self.current())
            yield from limit_metrics(self.state)
            yield from response_store_metrics(self.state)
            yield from mcp_ledger_metrics(self.state)
            yield from audit_metrics(self.state)
            yield from slo_metrics(self.state)
            if self.genai is not None:
                yield from self.genai.families()
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
        waiting_closed = CounterMetricFamily(
            "seawall_front_door_waiting_closed",
            "Connections waiting for a request (idle kept alive, or new and silent), "
            "closed at the connection cap to admit a new one.",
        )
        waiting_closed.add_metric([], state.front_door.waiting_closed)
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
        rollouts = CounterMetricFamily(
            "seawall_config_rollout_steps",
            "Guarded rollouts of config versions, by step: started, promoted, rolled_back, "
            "aborted (started minus the others: a canary is serving).",
            labels=["step"],
        )
        for step in ROLLOUT_STEPS:
            rollouts.add_metric([step], state.rollout_steps.get(step, 0))
        yield from (denied, refusals, waiting_closed, guards, reloads, rollouts)


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


def audit_metrics(state: State) -> Iterator[Metric]:
    """Gateway-wide (root only): what the audit log took, dropped or refused, and
    its writer's progress. Nothing when the log is off."""
    log = state.audit
    if log is None:
        return
    records = CounterMetricFamily(
        "seawall_audit_records",
        "Records handed to the audit log, by result: queued, dropped (a full queue, "
        "on_full: drop), blocked (waited for room, on_full: block), refused (requests "
        "answered 503 audit_unavailable: on_full: refuse for a tenant that requires audit).",
        labels=["result"],
    )
    for result, count in sorted(log.counts.items()):
        records.add_metric([result], count)
    stats = log.writer.stats()
    written = CounterMetricFamily(
        "seawall_audit_writer",
        "The writer's work: records appended, batches (group commits), fsyncs, signed "
        "checkpoints, segments opened, bytes written.",
        labels=["what"],
    )
    for what in ("appended", "batches", "fsyncs", "checkpoints", "segments", "bytes_written"):
        written.add_metric([what], getattr(stats, what))
    queue = GaugeMetricFamily(
        "seawall_audit_queue", "Records waiting for the writer, and the queue's capacity.",
        labels=["what"],
    )  # fmt: skip
    queue.add_metric(["depth"], stats.queue_depth)
    queue.add_metric(["capacity"], log.config.queue_records)
    failed = GaugeMetricFamily(
        "seawall_audit_writer_failed",
        "1 when a write failed and the writer stopped (the log says why): every record "
        "since is dropped or refused.",
    )
    failed.add_metric([], 1 if stats.failed else 0)
    yield from (records, written, queue, failed)


def slo_metrics(state: State) -> Iterator[Metric]:
    """Gateway-wide (root only): requests counted per SLO (what the rules of `seawall
    slo rules` read), and the in-process burn rates, budget and alerts."""
    slos = state.slos
    if not slos.counts:
        return
    events = CounterMetricFamily(
        "seawall_slo_events",
        "Requests counted toward each SLO: good or bad (excluded and ineligible ones are "
        "not counted; docs/observability.md).",
        labels=["slo", "result"],
    )
    for (name, result), count in sorted(slos.counts.items()):
        events.add_metric([name, result], count)
    burn = GaugeMetricFamily(
        "seawall_slo_burn_rate",
        "Error ratio over the window divided by the error budget (1 - objective).",
        labels=["slo", "window"],
    )
    remaining = GaugeMetricFamily(
        "seawall_slo_error_budget_remaining",
        "1 - the share of the period's error budget spent (below 0: overspent).",
        labels=["slo"],
    )
    alerts = GaugeMetricFamily(
        "seawall_slo_alert",
        "1 while a multi-window burn-rate alert fires (both windows over the threshold).",
        labels=["slo", "severity", "long_window", "short_window"],
    )
    for status in slos.tracker.snapshot():
        for window in status.windows:
            burn.add_metric([status.name, window_label(window.window_s)], window.burn_rate)
        remaining.add_metric([status.name], status.budget_remaining)
        for alert in status.alerts:
            labels = [status.name, alert.severity, window_label(alert.long_window_s)]
            alerts.add_metric(
                [*labels, window_label(alert.short_window_s)], 1 if alert.firing else 0
            )
    yield from (events, burn, remaining, alerts)


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


def mcp_ledger_metrics(state: State) -> Iterator[Metric]:
    """Gateway-wide (root only): MCP results the ledger no longer (or never) knows,
    each a false `tool_result_forged` if its agent shows it to a model without its
    receipt, and the ledger store's failed calls (Redis down or slow)."""
    ledger = state.mcp_ledger
    lost = CounterMetricFamily(
        "seawall_mcp_ledger_lost",
        "MCP results the result ledger lost, by reason: evicted (a bound made room), "
        "unrecorded (the ledger was full, or its store did not answer).",
        labels=["reason"],
    )
    lost.add_metric(["evicted"], ledger.evicted)
    lost.add_metric(["unrecorded"], ledger.unrecorded)
    errors = CounterMetricFamily(
        "seawall_mcp_ledger_errors", "MCP result ledger store calls that failed or timed out."
    )
    errors.add_metric([], ledger.failures)
    yield from (lost, errors)


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


def _snapshot(families: Iterable[Metric]) -> list[dict[str, Any]]:
    return [
        {
            "name": family.name,
            "type": family.type,
            "doc": family.documentation,
            "samples": [[sample.name, sample.labels, sample.value] for sample in family.samples],
        }
        for family in families
    ]


def _visible(viewer: Identity, labels: dict[str, str]) -> bool:
    """Whether a scoped viewer may see a series of another worker: the rules of
    `RoutingCollector._routing`, read from the labels."""
    group = labels.get("group", labels.get("from"))
    if group is not None and not viewer.may_use_model(group):
        return False
    deployment = labels.get("deployment")
    if deployment is not None and not viewer.may_use_deployment(deployment):
        return False
    tenant = labels.get("tenant", labels.get("scope"))
    return tenant is None or viewer.within_scope(tenant)


Snapshot = tuple[bool, list[dict[str, Any]]]
Sample = tuple[dict[str, str], float]


def merge(
    local: Iterable[Metric], others: Iterable[Snapshot], viewer: Identity | None
) -> list[Metric]:
    """This worker's families (as `viewer` may see them; None: everything) plus the
    other workers' snapshots (`(live, families)`, each a root view): counters and
    histograms summed, gauges of live workers summed (`SUMMED_GAUGES`) or maxed. A
    scoped viewer gets only the families and series its own view has."""
    families: dict[str, Metric] = {}
    values: dict[
        str, dict[tuple[str, tuple[tuple[str, str], ...]], tuple[dict[str, str], float]]
    ] = {}
    for family in local:
        families[family.name] = family
        values[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): (s.labels, s.value) for s in family.samples
        }
    for live, snapshot in others:
        for data in snapshot:
            name, kind = data["name"], data["type"]
            if kind == "gauge" and not live:
                continue
            table = values.get(name)
            if table is None:
                if viewer is not None:
                    continue
                families[name] = Metric(name, data["doc"], kind)
                table = values[name] = {}
            summed = kind != "gauge" or name in SUMMED_GAUGES
            for sample_name, labels, value in data["samples"]:
                if viewer is not None and not _visible(viewer, labels):
                    continue
                key = (sample_name, tuple(sorted(labels.items())))
                old = table.get(key)
                if old is not None:
                    value = old[1] + value if summed else max(old[1], value)
                table[key] = (labels, value)
    merged = []
    for name, family in families.items():
        out = Metric(name, family.documentation, family.type)
        for (sample_name, _), (labels, value) in values[name].items():
            out.add_sample(sample_name, labels, value)
        merged.append(out)
    return merged


class Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


#: Every rollout step, each a series from the start (rate() misses a series born at 1).
ROLLOUT_STEPS = ("started", "promoted", "rolled_back", "aborted")


class Metrics:
    def __init__(self, state: State, current: Callable[[], Runtime]) -> None:
        self.state = state
        self.current = current
        self.responses = state.responses
        self.genai = GenAiMetrics()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RoutingCollector(state, current, genai=self.genai))
        #: The directory the workers share (`--workers N`); None: a single process.
        directory = os.environ.get(METRICS_DIR_ENV)
        self.shared = Path(directory) if directory else None
        self._publisher: asyncio.TimerHandle | None = None

    async def on_complete(self, exchange: Exchange) -> None:
        """The completion hook: counted after the last byte, so a stream's real ending
        (interrupted, or abandoned by its client) is what is counted."""
        identity = exchange.identity
        tenant = identity.tenant_id if identity is not None else ROOT
        key = (tenant, exchange.endpoint, exchange.status, exchange.error_code or "")
        self.responses[key] = self.responses.get(key, 0) + 1
        group = exchange.group
        if group is not None:
            operation = OPERATIONS.get(exchange.endpoint)
            if operation is not None:
                self.genai.observe(exchange, group.name, operation, self.current())
        if self.shared is not None and self._publisher is None:
            self._schedule()

    def render(self, viewer: Identity | None = None) -> bytes:
        """The exposition for `viewer` (None or root-scoped: everything)."""
        root = viewer is None or viewer.root_scoped
        if self.shared is None:
            if root:
                return generate_latest(self.registry)
            scoped = CollectorRegistry(auto_describe=False)
            scoped.register(RoutingCollector(self.state, self.current, viewer))
            return generate_latest(scoped)
        if self._publisher is None:
            self._schedule()
        if root:
            local = list(self.registry.collect())
        else:
            local = list(RoutingCollector(self.state, self.current, viewer).collect())
        merged = CollectorRegistry(auto_describe=False)
        merged.register(Fixed(merge(local, self._others(), None if root else viewer)))
        return generate_latest(merged)

    # -- `--workers N`: one scrape, every worker ------------------------------------

    def _schedule(self) -> None:
        self._publisher = asyncio.get_running_loop().call_later(PUBLISH_S, self._tick)

    def _tick(self) -> None:
        try:
            self.publish()
        except Exception:
            log.exception("could not write this worker's metrics for the others")
        self._schedule()

    def publish(self) -> None:
        """Writes this worker's root view where the other workers read it."""
        assert self.shared is not None
        path = live_file(self.shared, os.getpid())
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(_snapshot(self.registry.collect())))
        os.replace(temporary, path)

    def _others(self) -> Iterator[Snapshot]:
        assert self.shared is not None
        mine = live_file(self.shared, os.getpid())
        for path in self.shared.glob("*.json"):
            if path == mine:
                continue
            live = path.name.startswith("live-")
            try:
                snapshot = json.loads(path.read_bytes())
            except OSError:  # marked dead just now: its counters are still counted
                if not live:
                    continue
                try:
                    snapshot = json.loads(dead_file(self.shared, worker_pid(path)).read_bytes())
                except (OSError, ValueError):
                    continue
                live = False
            except ValueError:
                continue
            yield live, snapshot
