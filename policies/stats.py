"""Counters and per-rule evaluation times, for metrics and benchmark reports.

Each rule keeps its last `SAMPLES` evaluation times (a ring, so memory is fixed
whatever the traffic); the median and p99 are computed when read, not per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Evaluation times kept per rule.
SAMPLES = 1024


class RuleTimes:
    """One rule's counters and recent evaluation times (nanoseconds)."""

    __slots__ = ("_next", "_samples", "cutoffs", "errors", "evaluations", "matches", "overruns")

    def __init__(self) -> None:
        self.evaluations = 0
        self.matches = 0
        self.errors = 0
        self.overruns = 0
        #: Times it was not run because it was cut off after an overrun.
        self.cutoffs = 0
        self._samples: list[int] = []
        self._next = 0

    def record(self, nanoseconds: int) -> None:
        self.evaluations += 1
        if len(self._samples) < SAMPLES:
            self._samples.append(nanoseconds)
        else:
            self._samples[self._next] = nanoseconds
            self._next = (self._next + 1) % SAMPLES

    def percentile_us(self, fraction: float) -> float | None:
        """The `fraction` quantile (nearest rank) of the kept times, in microseconds."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[rank] / 1000


@dataclass(frozen=True, slots=True)
class RuleStats:
    rule: str
    evaluations: int
    matches: int
    errors: int
    overruns: int
    cutoffs: int
    median_us: float | None
    p99_us: float | None


@dataclass(frozen=True, slots=True)
class SetStats:
    """One rule set's counters."""

    version: str
    decisions: int
    cache_hits: int
    cache_misses: int
    cache_entries: int
    #: Rule evaluations run (cache hits run none).
    evaluations: int
    errors: int
    budget_overruns: int
    #: Evaluations over the budget by the wall clock that used less CPU time than the
    #: budget when repeated (the thread was preempted): not errors.
    budget_rechecks: int
    #: Rule outcomes decided without running the rule: it was cut off for the
    #: caller's tenant after an overrun (`ruleset.COOL_DOWN_SECONDS`). Counted in
    #: `errors` too.
    budget_cutoffs: int
    rules: tuple[RuleStats, ...]
    #: Calls of a program combining several rules (`policies.ruleset`), and those
    #: whose rules were then evaluated one by one (a rule failed, or the call ran
    #: over the budget on the CPU clock).
    combined_calls: int = 0
    combined_fallbacks: int = 0


@dataclass(frozen=True, slots=True)
class PolicyStats:
    active: SetStats
    candidate: SetStats | None
    #: Candidate decisions made in shadow, and how many differed from the enforced one.
    shadow_decisions: int
    shadow_disagreements: int
    #: Requests decided by the candidate (canary).
    canary_decisions: int
