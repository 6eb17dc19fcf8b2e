"""Stopping an experiment that is doing real harm, or running too long.

Abort rules are request probes over a rolling window of the requests that
completed in the last `window_s` seconds, checked every second on live data. An
abort ends the run at once; the faults are rolled back and the verdict is failed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from chaos.runner.probes import PROBES, Evidence, describe, selected
from chaos.runner.samples import Sample
from chaos.runner.schema import AbortOn, AbortRule, Safety


def window(completed: Sequence[Sample], now: float, seconds: float) -> Sequence[Sample]:
    """The samples that completed in (now - seconds, now]; `completed` is in
    completion order, so this is a bisection, not a scan."""
    return completed[bisect_left(completed, now - seconds, key=lambda s: s.done) :]


def rule_fires(rule: AbortRule, model: str, recent: Sequence[Sample]) -> str | None:
    if len(selected(rule, recent)) < rule.min_requests:
        return None
    value = PROBES[rule.probe].measure(rule, Evidence(model, recent))
    if value is None:
        return None
    if rule.below is not None and value < rule.below:
        return f"{describe(rule)} = {value:.4g} < {rule.below:g} over the last {rule.window_s:g} s"
    if rule.above is not None and value > rule.above:
        return f"{describe(rule)} = {value:.4g} > {rule.above:g} over the last {rule.window_s:g} s"
    return None


class SafetyMonitor:
    def __init__(self, safety: Safety, model: str, time_limit_s: float) -> None:
        self.rules = safety.abort
        self.model = model
        self.time_limit_s = time_limit_s

    def check(self, now: float, completed: Sequence[Sample]) -> str | None:
        """Why the run must stop now, or None."""
        if now > self.time_limit_s:
            return f"safety.max_seconds: the run passed {self.time_limit_s:g} s"
        for rule in self.rules:
            reason = rule_fires(rule, self.model, window(completed, now, rule.window_s))
            if reason is not None:
                return f"safety.abort: {reason}"
        return None


def p95(latencies: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile, None of nothing."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


class BaselineWatch:
    """`abort_on.baseline_deviation`: the baseline is the p95 latency of the successful
    requests of the baseline phase, taken when that phase ends; from then on, every
    tick compares the p95 of the last `window_s` with it."""

    def __init__(self, rule: AbortOn, baseline_phase: str | None) -> None:
        self.rule = rule
        self.phase = baseline_phase
        self.baseline: float | None = None

    def phase_ended(self, name: str, samples: Sequence[Sample]) -> None:
        if name == self.phase and self.baseline is None:
            self.baseline = p95([s.done - s.sent for s in samples if s.ok])

    def check(self, now: float, completed: Sequence[Sample]) -> str | None:
        deviation, base = self.rule.baseline_deviation, self.baseline
        if deviation is None or not base:
            return None
        recent = [s.done - s.sent for s in window(completed, now, self.rule.window_s) if s.ok]
        if len(recent) < self.rule.min_requests:
            return None
        current = p95(recent)
        if current is not None and current > base * (1 + deviation):
            return (
                f"abort_on.baseline_deviation: p95 {current * 1000:.1f} ms over the last "
                f"{self.rule.window_s:g} s is {current / base - 1:.0%} above the baseline's "
                f"{base * 1000:.1f} ms (phase {self.phase}; at most {deviation:.0%})"
            )
        return None


def burn_fires(rule: AbortOn, burns: Sequence[tuple[str, float]]) -> str | None:
    """`abort_on.burn_rate` against the gateway's burn rates ((SLO, rate) pairs)."""
    if rule.burn_rate is None:
        return None
    for name, rate in burns:
        if (rule.slo is None or name == rule.slo) and rate > rule.burn_rate:
            return (
                f"abort_on.burn_rate: SLO {name} burns its error budget at {rate:.1f}x over "
                f"{rule.burn_window} (at most {rule.burn_rate:g}x)"
            )
    return None
