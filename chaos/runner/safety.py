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
from chaos.runner.schema import AbortRule, Safety


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
