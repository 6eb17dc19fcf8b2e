"""Probes: the measurements a hypothesis is made of, and their tolerances.

Each probe reads one kind of evidence: the requests the load sent (as the client
saw them), the delta of a gateway counter over the phase (a `/metrics` scrape at
each end), the routing state polled at the phase's end, or the phase's config
rollout as `GET /admin/config/rollout` last showed it. `PROBES` is the
catalogue: which parameters each probe takes, and how it is computed. A probe
without data (no matching requests) fails: "nothing happened" never proves a
hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from chaos.runner.promtext import MetricSnapshot, delta
from chaos.runner.rollout import RolloutView
from chaos.runner.samples import (
    SERVED,
    Sample,
    cheat_caught,
    fault_of,
    hop_parts,
    route_hops,
)
from chaos.runner.schema import ProbeParams, ProbeSpec, RolloutStep
from chaos.runner.stats import percentile, ratio

Source = Literal["requests", "metrics", "routing", "rollout"]


@dataclass(frozen=True)
class Evidence:
    """What one phase (or one abort window) left behind."""

    model: str
    samples: Sequence[Sample]
    before: MetricSnapshot | None = None
    after: MetricSnapshot | None = None
    #: deployment -> breaker state ("closed", "half-open", "open") at the end.
    breakers: Mapping[str, str] | None = None
    #: The phase's config rollout as last seen, when it started one.
    rollout: RolloutView | None = None


@dataclass(frozen=True)
class Check:
    """A probe's verdict: its value against its tolerance."""

    name: str
    probe: str
    value: float | None
    min: float | None
    max: float | None
    ok: bool
    note: str = ""

    @property
    def shown(self) -> str:
        return "no data" if self.value is None else f"{self.value:.4g}"


def tolerance_text(low: float | None, high: float | None, ascii: bool = True) -> str:
    """`>= 0.99 and <= 1`, or with ≥ and ≤ for the markdown report."""
    at_least, at_most = (">=", "<=") if ascii else ("≥", "≤")
    parts = [] if low is None else [f"{at_least} {low:g}"]
    parts += [] if high is None else [f"{at_most} {high:g}"]
    return " and ".join(parts)


Measure = Callable[[ProbeParams, Evidence], float | None]


@dataclass(frozen=True)
class ProbeKind:
    measure: Measure
    source: Source
    unit: Literal["ratio", "ms", "count", "s"]
    doc: str
    #: Parameters it accepts besides kinds and fault (request probes) or labels.
    params: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    #: Kinds looked at when the probe names none.
    default_kinds: tuple[str, ...] = ()


def selected(
    params: ProbeParams, samples: Sequence[Sample], rollout: RolloutView | None = None
) -> list[Sample]:
    kinds = set(params.kinds or PROBES[params.probe].default_kinds)
    return [
        s
        for s in samples
        if (not kinds or s.kind in kinds)
        and (params.fault is None or params.fault in s.faults)
        and (params.version is None or served_by(s, params.version, rollout))
    ]


def _chosen(params: ProbeParams, ev: Evidence) -> list[Sample]:
    return selected(params, ev.samples, ev.rollout)


def served_by(sample: Sample, version: str, rollout: RolloutView | None) -> bool:
    """`baseline`: every answer the request got came from the version serving when
    the rollout began (so a failure it saw is the baseline's); `candidate`: the
    candidate gave at least one. Without a rollout, or without an answer (shed, timed
    out), neither."""
    if rollout is None or not sample.config_versions:
        return False
    if version == "candidate":
        return rollout.candidate in sample.config_versions
    return all(v == rollout.baseline for v in sample.config_versions)


def _is_error(params: ProbeParams, sample: Sample) -> bool:
    if sample.ok:
        return False
    if params.status is not None and sample.status != params.status:
        return False
    return params.code is None or sample.code == params.code


def _retried_after_429(route: str) -> bool:
    """Did this route retry the deployment that had just answered 429?"""
    hops = [hop_parts(hop) for hop in route_hops(route)]
    return any(a[1] == "429" and a[0] == b[0] for a, b in pairwise(hops))


# -- request probes -----------------------------------------------------------------


def _requests(params: ProbeParams, ev: Evidence) -> float:
    return len(_chosen(params, ev))


def _success_ratio(params: ProbeParams, ev: Evidence) -> float | None:
    expected = [s for s in _chosen(params, ev) if s.expected_ok]
    return ratio(sum(s.ok for s in expected), len(expected))


def _latency(q: float) -> Measure:
    def measure(params: ProbeParams, ev: Evidence) -> float | None:
        return percentile([s.latency_ms for s in _chosen(params, ev) if s.ok], q)

    return measure


def _error_count(params: ProbeParams, ev: Evidence) -> float:
    return sum(_is_error(params, s) for s in _chosen(params, ev))


def _error_ratio(params: ProbeParams, ev: Evidence) -> float | None:
    chosen = _chosen(params, ev)
    return ratio(sum(_is_error(params, s) for s in chosen), len(chosen))


def _fallback_rate(params: ProbeParams, ev: Evidence) -> float | None:
    routed = [s for s in _chosen(params, ev) if s.routes]
    hopped = sum(any(len(route_hops(r)) > 1 for r in s.routes) for s in routed)
    return ratio(hopped, len(routed))


def _injected(params: ProbeParams, ev: Evidence) -> float:
    return sum(bool(s.injected) for s in _chosen(params, ev))


def _stream_errors(params: ProbeParams, ev: Evidence) -> float:
    return sum(s.stream_error for s in _chosen(params, ev))


def _stream_error_ratio(params: ProbeParams, ev: Evidence) -> float | None:
    streams = _chosen(params, ev)
    return ratio(sum(s.stream_error for s in streams), len(streams))


def _silent_stream_failures(params: ProbeParams, ev: Evidence) -> float:
    return sum(s.stream_silent_failure for s in _chosen(params, ev))


def _forged_detection_rate(params: ProbeParams, ev: Evidence) -> float | None:
    forged = [
        s
        for s in _chosen(params, ev)
        if s.forged and (params.mode is None or s.forge_mode == params.mode)
    ]
    return ratio(sum(s.caught_by is not None for s in forged), len(forged))


def _cheat_detection_rate(params: ProbeParams, ev: Evidence) -> float | None:
    """Every cheating result sent counts (a swap sends two); one the gateway did not
    judge (a timeout, a 5xx) counts as not caught: only a refusal or a flag is."""
    verdicts = [v for s in _chosen(params, ev) for v in s.cheats]
    return ratio(sum(cheat_caught(v) for v in verdicts), len(verdicts))


def _genuine_served_rate(params: ProbeParams, ev: Evidence) -> float | None:
    """Every genuine result an `mcp_agent` sent counts: served cleanly (2xx, nothing
    flagged) or not (refused, flagged, failed: a false positive or an outage)."""
    verdicts = [v for s in _chosen(params, ev) for v in s.genuine]
    return ratio(sum(v == SERVED for v in verdicts), len(verdicts))


def _attempts_for_rejected(params: ProbeParams, ev: Evidence) -> float | None:
    rejected = [s for s in _chosen(params, ev) if 400 <= s.status < 500]
    return sum(s.hops for s in rejected) if rejected else None


def _share(params: ProbeParams, ev: Evidence) -> float | None:
    served = [s for s in _chosen(params, ev) if s.ok and s.deployment]
    return ratio(sum(s.deployment == params.deployment for s in served), len(served))


def _retry_after_honoured(params: ProbeParams, ev: Evidence) -> float | None:
    assert params.ms is not None
    retried = [s for s in _chosen(params, ev) if any(_retried_after_429(r) for r in s.routes)]
    return ratio(sum(s.latency_ms >= params.ms for s in retried), len(retried))


# -- metric probes ------------------------------------------------------------------


def _labels(params: ProbeParams, ev: Evidence, group_label: str | None) -> dict[str, str]:
    labels = dict(params.labels)
    if group_label is not None:
        labels[group_label] = ev.model
    if params.deployment is not None:
        labels["deployment"] = params.deployment
    if params.fault is not None:
        labels["fault"] = params.fault
    return labels


def _counter(name: str, group_label: str | None = "group") -> Measure:
    def measure(params: ProbeParams, ev: Evidence) -> float | None:
        if ev.before is None or ev.after is None:
            return None
        return delta(ev.before, ev.after, name, _labels(params, ev, group_label))

    return measure


def _amplification(params: ProbeParams, ev: Evidence) -> float | None:
    """Upstream attempts per model call that entered the router, counted from the
    route headers of the phase's own requests (every attempt is a hop; calls refused
    before routing have no route). A counter delta between two scrapes would count
    attempts of requests that straddle the phase's edges (a retry waiting out a
    `retry-after` across the end), which in a short phase moved the ratio by 10%."""
    calls = sum(len(s.routes) for s in ev.samples)
    return ratio(sum(s.hops for s in ev.samples), calls)


def _rollout_decided_s(params: ProbeParams, ev: Evidence) -> float | None:
    return None if ev.rollout is None else ev.rollout.decided_s


def _breakers_open(params: ProbeParams, ev: Evidence) -> float | None:
    if ev.breakers is None:
        return None
    states = {d: s for d, s in ev.breakers.items() if params.deployment in (None, d)}
    return sum(state == "open" for state in states.values())


REQUEST = frozenset({"kinds", "fault", "version"})
METRIC = frozenset({"labels", "deployment"})

PROBES: Mapping[str, ProbeKind] = {
    "requests": ProbeKind(_requests, "requests", "count", "requests sent", REQUEST),
    "success_ratio": ProbeKind(
        _success_ratio,
        "requests",
        "ratio",
        "share answered 2xx (streams: to [DONE]) among requests that should succeed",
        REQUEST,
    ),
    "p50_ms": ProbeKind(_latency(0.5), "requests", "ms", "median latency of successes", REQUEST),
    "p99_ms": ProbeKind(_latency(0.99), "requests", "ms", "p99 latency of successes", REQUEST),
    "error_count": ProbeKind(
        _error_count,
        "requests",
        "count",
        "failed requests (by status/code)",
        REQUEST | {"status", "code"},
    ),
    "error_ratio": ProbeKind(
        _error_ratio,
        "requests",
        "ratio",
        "share of failed requests (by status/code)",
        REQUEST | {"status", "code"},
    ),
    "fallback_rate": ProbeKind(
        _fallback_rate,
        "requests",
        "ratio",
        "share of routed requests with more than one hop",
        REQUEST,
    ),
    "injected": ProbeKind(
        _injected, "requests", "count", "responses with x-seawall-chaos-injected", REQUEST
    ),
    "stream_error_events": ProbeKind(
        _stream_errors,
        "requests",
        "count",
        "streams that ended with an SSE error event",
        REQUEST,
        default_kinds=("stream",),
    ),
    "stream_error_ratio": ProbeKind(
        _stream_error_ratio,
        "requests",
        "ratio",
        "share of streams ending with an error event",
        REQUEST,
        default_kinds=("stream",),
    ),
    "silent_stream_failures": ProbeKind(
        _silent_stream_failures,
        "requests",
        "count",
        "streams that ended without [DONE] or an error event, or mixed two answers",
        REQUEST,
        default_kinds=("stream",),
    ),
    "forged_detection_rate": ProbeKind(
        _forged_detection_rate,
        "requests",
        "ratio",
        "share of forged tool rounds refused or flagged",
        REQUEST | {"mode"},
        default_kinds=("tool",),
    ),
    "cheat_detection_rate": ProbeKind(
        _cheat_detection_rate,
        "requests",
        "ratio",
        "share of cheating tool results (tool_race cheats, forged mcp_agent results) "
        "refused or flagged",
        REQUEST,
    ),
    "genuine_served_rate": ProbeKind(
        _genuine_served_rate,
        "requests",
        "ratio",
        "share of genuine MCP results (mcp_agent) the model was shown cleanly",
        REQUEST,
        default_kinds=("mcp_agent",),
    ),
    "provider_attempts_for_rejected": ProbeKind(
        _attempts_for_rejected,
        "requests",
        "count",
        "upstream hops made by requests the gateway refused (4xx)",
        REQUEST,
        default_kinds=("huge_prompt",),
    ),
    "share": ProbeKind(
        _share,
        "requests",
        "ratio",
        "share of successes served by `deployment`",
        REQUEST | {"deployment"},
        frozenset({"deployment"}),
    ),
    "retry_after_honoured": ProbeKind(
        _retry_after_honoured,
        "requests",
        "ratio",
        "share of retries after a 429 that waited at least `ms`",
        REQUEST | {"ms"},
        frozenset({"ms"}),
    ),
    "upstream_attempts": ProbeKind(
        _counter("seawall_upstream_attempts_total"), "metrics", "count", "upstream attempts", METRIC
    ),
    "amplification": ProbeKind(
        _amplification, "requests", "ratio", "upstream attempts per routed model call", REQUEST
    ),
    "breaker_openings": ProbeKind(
        _counter("seawall_breaker_openings_total"), "metrics", "count", "breaker openings", METRIC
    ),
    "retries": ProbeKind(_counter("seawall_retries_total"), "metrics", "count", "retries", METRIC),
    "retries_denied": ProbeKind(
        _counter("seawall_retry_budget_denied_total", None),
        "metrics",
        "count",
        "retries the retry budget refused",
        frozenset(),
    ),
    "fallbacks": ProbeKind(
        _counter("seawall_fallbacks_total", None),
        "metrics",
        "count",
        "group fallbacks",
        frozenset({"labels"}),
    ),
    "guard_events": ProbeKind(
        _counter("seawall_guard_events_total", None),
        "metrics",
        "count",
        "guard events",
        frozenset({"labels"}),
    ),
    "faults_injected": ProbeKind(
        _counter("seawall_faults_injected_total", None),
        "metrics",
        "count",
        "faults the gateway injected (its own count)",
        frozenset({"labels", "fault"}),
    ),
    "breakers_open": ProbeKind(
        _breakers_open,
        "routing",
        "count",
        "breakers open at the phase's end",
        frozenset({"deployment"}),
    ),
    "rollout_decided_s": ProbeKind(
        _rollout_decided_s,
        "rollout",
        "s",
        "seconds from the phase's rollout's start to its final step (none while it runs)",
    ),
}


def describe(params: ProbeParams) -> str:
    """A readable name: the label, or the probe with its parameters."""
    if params.label:
        return params.label
    parts = [f"kinds={'+'.join(params.kinds)}"] if params.kinds else []
    for key in ("version", "deployment", "fault", "status", "code", "mode", "ms"):
        value = getattr(params, key)
        if value is not None:
            parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    parts += [f"{k}={v}" for k, v in sorted(params.labels.items())]
    return f"{params.probe}({', '.join(parts)})" if parts else params.probe


def within(value: float | None, low: float | None, high: float | None) -> bool:
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def evaluate(spec: ProbeSpec, evidence: Evidence) -> Check:
    value = PROBES[spec.probe].measure(spec, evidence)
    note = "no data" if value is None else ""
    return Check(
        describe(spec),
        spec.probe,
        value,
        spec.min,
        spec.max,
        within(value, spec.min, spec.max),
        note,
    )


@dataclass(frozen=True)
class FaultEffect:
    """How often a declared fault took effect in a phase: seen by the client in
    `x-seawall-chaos-injected`, and counted by the gateway itself."""

    fault: str
    observed: int
    counted: float | None
    by_where: dict[str, int] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return max(float(self.observed), self.counted or 0.0)


def fault_effect(fault: str, evidence: Evidence) -> FaultEffect:
    by_where: dict[str, int] = {}
    observed = 0
    for sample in evidence.samples:
        entries = [e for e in sample.injected if fault_of(e) == fault]
        observed += bool(entries)
        for entry in entries:
            where = entry.partition("@")[2]
            by_where[where] = by_where.get(where, 0) + 1
    counted = None
    if evidence.before is not None and evidence.after is not None:
        counted = delta(
            evidence.before, evidence.after, "seawall_faults_injected_total", {"fault": fault}
        )
    return FaultEffect(fault, observed, counted, by_where)


def fault_check(effect: FaultEffect) -> Check:
    """Every declared fault must have taken effect: an experiment whose faults never
    fired proves nothing, so it cannot pass by accident (chaos disabled, a typo'd
    target, a gateway that ignores the header)."""
    counted = "?" if effect.counted is None else f"{effect.counted:g}"
    note = f"client saw {effect.observed}, gateway counted {counted}"
    return Check(
        f"fault {effect.fault} took effect",
        "injected",
        effect.value,
        1,
        None,
        effect.value >= 1,
        note,
    )


def rollout_checks(step: RolloutStep, view: RolloutView | None) -> list[Check]:
    """A rollout step's own checks, like a fault's "took effect": it ended as the
    step expects, and within its bound (`rollout_decided_s`)."""
    state = "not seen" if view is None else view.state
    reached = view is not None and view.state == step.expect
    decided = None if view is None else view.decided_s
    note = state if view is None else view.summary
    return [
        Check(
            f"rollout ended {step.expect}",
            "rollout_state",
            float(reached),
            1,
            None,
            reached,
            note,
        ),
        Check(
            f"rollout decided within {step.within_s:g} s",
            "rollout_decided_s",
            None if decided is None else round(decided, 3),
            None,
            step.within_s,
            within(decided, None, step.within_s),
            "" if decided is not None else f"no final step ({state})",
        ),
    ]
