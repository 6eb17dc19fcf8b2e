"""The release gate: is a candidate (a config or policy version, a deployment, a
tenant, a rollout colour) healthy enough to promote, judged by one SLO over recent
outcomes, alone or against a baseline? `seawall gate` and guarded rollouts use it.

The rules, in order (`decide`):

1. **inconclusive** (exit 3) when the candidate has fewer than `min_samples` requests
   with a verdict for the SLO (good + bad, slo/events.py), or a baseline is given and
   it has fewer. Too little evidence either way: wait for more traffic.
2. **fail** (exit 1) when the candidate's burn rate over its samples (error ratio /
   error budget) is above `max_burn_rate`, by default the fast page threshold (14.4x,
   scaled to the SLO's period as the alerts are, slo/windows.py): promoting it would
   page.
3. With a baseline, **fail** when the candidate is worse than the baseline by more than
   `max_deviation` (default 0.15):
   - availability: the *deviation* is the difference of burn rates,
     `(candidate error ratio - baseline error ratio) / error budget`, i.e. the extra
     share of the budget the candidate spends per unit of time relative to a
     sustainable burn. It fails when the deviation exceeds `max_deviation` **and** the
     difference is statistically significant: the one-sided two-proportion z-test
     (pooled) gives `z >= significance_z` (default 1.96). Without the test one error
     in a hundred requests against none would fail a 99.9% SLO by chance alone;
     `significance_z=0` turns it off.
   - latency: the deviation is `candidate p95 / baseline p95 - 1`; it fails when the
     candidate p95 is above `baseline p95 * (1 + max_deviation)`. Percentiles are
     nearest-rank over the latency measure (TTFT for streams) of eligible successful
     requests.
4. **pass** (exit 0) otherwise.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from slo.config import STANDARD_ALERTS, SloConfig
from slo.events import Outcome, classify, eligible, latency_measure, succeeded
from slo.windows import scaled_threshold

SelectorKind = Literal["config_version", "policy_version", "deployment", "tenant", "colour"]
SELECTOR_KINDS: tuple[str, ...] = get_args(SelectorKind)
#: Other spellings accepted on the command line (the config says `colors:`).
SELECTOR_ALIASES = {"color": "colour"}
GateVerdict = Literal["pass", "fail", "inconclusive"]
EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "inconclusive": 3}
DEFAULT_MIN_SAMPLES = 100
DEFAULT_MAX_DEVIATION = 0.15
DEFAULT_SIGNIFICANCE_Z = 1.96
#: The fast page alert's threshold (for a 30-day period): the default burn-rate limit.
PAGE_THRESHOLD = STANDARD_ALERTS[0][1]


@dataclass(frozen=True, slots=True)
class Selector:
    """Which outcomes belong to a candidate or baseline: `kind=value`."""

    kind: SelectorKind
    value: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        """`config_version=v42`, `deployment=gpt-east`, `colour=canary`..."""
        kind, sep, value = text.partition("=")
        kind = SELECTOR_ALIASES.get(kind.strip(), kind.strip())
        value = value.strip()
        if not sep or not value or kind not in SELECTOR_KINDS:
            raise ValueError(
                f"invalid selector {text!r}: expected KIND=VALUE with KIND one of "
                + ", ".join(SELECTOR_KINDS)
            )
        return cls(kind, value)  # type: ignore[arg-type]  # checked against SELECTOR_KINDS

    def matches(self, outcome: Outcome) -> bool:
        if self.kind == "tenant":
            return self.value in outcome.tenants
        return bool(getattr(outcome, self.kind) == self.value)

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One side of the comparison, measured for one SLO."""

    selector: str
    #: good + bad: the requests with a verdict for the SLO.
    samples: int
    good: int
    bad: int
    excluded: int
    error_ratio: float
    burn_rate: float
    #: Eligible successful requests, the ones the latency percentiles are over.
    latency_samples: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def describe(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "samples": self.samples,
            "good": self.good,
            "bad": self.bad,
            "excluded": self.excluded,
            "error_ratio": self.error_ratio,
            "burn_rate": self.burn_rate,
            "latency_samples": self.latency_samples,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


class Tally:
    """One side's counts for one SLO, kept up to date an outcome at a time: what
    `measure` computes over a list, for a judge that looks every second (a guarded
    rollout, rollouts/judge.py) without scanning everything again. The latencies kept
    for the percentiles are the newest `keep_latencies` (None: all)."""

    def __init__(
        self, slo: SloConfig, selector: Selector, keep_latencies: int | None = None
    ) -> None:
        self.slo = slo
        self.selector = selector
        self.good = self.bad = self.excluded = 0
        self.latencies: deque[float] = deque(maxlen=keep_latencies)

    def add(self, outcome: Outcome) -> None:
        """Count `outcome` (the caller has matched it to the selector)."""
        slo = self.slo
        if not eligible(slo, outcome):
            return
        verdict = classify(slo, outcome)
        if verdict == "good":
            self.good += 1
        elif verdict == "bad":
            self.bad += 1
        else:
            self.excluded += 1
        if succeeded(outcome):
            self.latencies.append(latency_measure(outcome))

    def stats(self) -> GroupStats:
        good, bad = self.good, self.bad
        samples = good + bad
        ratio = bad / samples if samples else 0.0
        ordered = sorted(self.latencies)
        p50, p95, p99 = (
            (_rank(ordered, 50), _rank(ordered, 95), _rank(ordered, 99))
            if ordered
            else (None, None, None)
        )
        return GroupStats(
            str(self.selector),
            samples,
            good,
            bad,
            self.excluded,
            ratio,
            ratio / self.slo.error_budget,
            len(ordered),
            p50,
            p95,
            p99,
        )


def _rank(ordered: list[float], q: float) -> float:
    """`nearest_rank` of values already sorted."""
    return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]


def measure(slo: SloConfig, selector: Selector, outcomes: Iterable[Outcome]) -> GroupStats:
    """The selector's outcomes counted for the SLO."""
    tally = Tally(slo, selector)
    for outcome in outcomes:
        if selector.matches(outcome):
            tally.add(outcome)
    return tally.stats()


def two_proportion_z(bad_a: int, n_a: int, bad_b: int, n_b: int) -> float:
    """z of the pooled two-proportion test that a's ratio is above b's (0 when the
    pooled ratio is 0 or 1: no variance, no evidence)."""
    pooled = (bad_a + bad_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return (bad_a / n_a - bad_b / n_b) / se if se else 0.0


@dataclass(frozen=True, slots=True)
class GateReport:
    verdict: GateVerdict
    slo: SloConfig
    candidate: GroupStats
    baseline: GroupStats | None
    min_samples: int
    max_burn_rate: float
    max_deviation: float
    #: Availability: burn-rate difference; latency: p95 ratio - 1; None without a
    #: baseline or when undefined (a baseline p95 of 0).
    deviation: float | None
    #: Availability with a baseline: the z of the difference in error ratios.
    significance: float | None
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        slo = self.slo
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "slo": {
                "name": slo.name,
                "kind": slo.kind,
                "objective": slo.objective,
                "error_budget": slo.error_budget,
                "period_days": slo.period_days,
                "threshold_ms": slo.threshold_ms,
            },
            "min_samples": self.min_samples,
            "max_burn_rate": self.max_burn_rate,
            "max_deviation": self.max_deviation,
            "candidate": self.candidate.describe(),
            "baseline": self.baseline.describe() if self.baseline else None,
            "deviation": self.deviation,
            "significance_z": self.significance,
            "reasons": list(self.reasons),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        slo = self.slo
        sides = [self.candidate] + ([self.baseline] if self.baseline else [])
        what = f"objective {slo.objective:g}, {slo.period_days} days"
        if slo.threshold_ms is not None:
            what += f", threshold {slo.threshold_ms:g} ms"
        against = f" against baseline `{self.baseline.selector}`" if self.baseline else ""
        lines = [
            f"## Release gate: {self.verdict.upper()} (exit {self.exit_code})",
            "",
            f"SLO `{slo.name}` ({slo.kind}, {what}); candidate "
            f"`{self.candidate.selector}`{against}.",
            "",
            "| | " + " | ".join(("candidate", "baseline")[: len(sides)]) + " |",
            "|---|" + "---|" * len(sides),
        ]
        rows: list[tuple[str, list[str]]] = [
            ("samples (good + bad)", [str(s.samples) for s in sides]),
            ("bad", [str(s.bad) for s in sides]),
            ("excluded", [str(s.excluded) for s in sides]),
            ("error ratio", [f"{s.error_ratio:.4%}" for s in sides]),
            ("burn rate", [f"{s.burn_rate:.2f}x" for s in sides]),
            ("p50 latency", [_ms(s.p50_ms) for s in sides]),
            ("p95 latency", [_ms(s.p95_ms) for s in sides]),
            ("p99 latency", [_ms(s.p99_ms) for s in sides]),
        ]
        lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
        lines += [
            "",
            f"Limits: at least {self.min_samples} samples; burn rate at most "
            f"{self.max_burn_rate:g}x"
            + (
                f"; deviation from the baseline at most {self.max_deviation:g}"
                if self.baseline
                else ""
            )
            + (f" (measured {self.deviation:.4g})" if self.deviation is not None else "")
            + ".",
            "",
            "Reasons:",
            *[f"- {reason}" for reason in self.reasons],
        ]
        return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def decide(
    slo: SloConfig,
    candidate: Selector,
    outcomes: Iterable[Outcome],
    *,
    baseline: Selector | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    max_deviation: float = DEFAULT_MAX_DEVIATION,
    max_burn_rate: float | None = None,
    significance_z: float = DEFAULT_SIGNIFICANCE_Z,
) -> GateReport:
    """The gate's verdict for the candidate (module docstring: the rules)."""
    outcomes = list(outcomes)
    cand = measure(slo, candidate, outcomes)
    base = measure(slo, baseline, outcomes) if baseline is not None else None
    return compare(
        slo,
        cand,
        base,
        min_samples=min_samples,
        max_deviation=max_deviation,
        max_burn_rate=max_burn_rate,
        significance_z=significance_z,
    )


def compare(
    slo: SloConfig,
    cand: GroupStats,
    base: GroupStats | None,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    max_deviation: float = DEFAULT_MAX_DEVIATION,
    max_burn_rate: float | None = None,
    significance_z: float = DEFAULT_SIGNIFICANCE_Z,
) -> GateReport:
    """The gate's verdict from the two sides' counts (`decide` measures them first)."""
    if max_burn_rate is None:
        max_burn_rate = scaled_threshold(PAGE_THRESHOLD, slo.period_days)
    deviation = significance = None
    if base is not None and cand.samples and base.samples:
        if slo.kind == "availability":
            deviation = (cand.error_ratio - base.error_ratio) / slo.error_budget
            significance = two_proportion_z(cand.bad, cand.samples, base.bad, base.samples)
        elif cand.p95_ms is not None and base.p95_ms:
            deviation = cand.p95_ms / base.p95_ms - 1

    def report(verdict: GateVerdict, reasons: list[str]) -> GateReport:
        return GateReport(
            verdict,
            slo,
            cand,
            base,
            min_samples,
            max_burn_rate,
            max_deviation,
            deviation,
            significance,
            tuple(reasons),
        )

    short = [
        f"{side} {stats.selector} has {stats.samples} samples, fewer than {min_samples}"
        for side, stats in (("candidate", cand), ("baseline", base))
        if stats is not None and stats.samples < min_samples
    ]
    if short:
        return report("inconclusive", short)
    failures: list[str] = []
    if cand.burn_rate > max_burn_rate:
        failures.append(
            f"candidate burn rate {cand.burn_rate:.2f}x is above {max_burn_rate:g}x "
            f"(error ratio {cand.error_ratio:.4%}, error budget {slo.error_budget:.4%})"
        )
    if base is not None:
        failures += _against_baseline(
            slo, cand, base, deviation, significance, max_deviation, significance_z
        )
    if failures:
        return report("fail", failures)
    reasons = [f"candidate burn rate {cand.burn_rate:.2f}x is within {max_burn_rate:g}x"]
    if base is not None:
        reasons.append(f"within {max_deviation:g} of baseline {base.selector}")
    return report("pass", reasons)


def _against_baseline(
    slo: SloConfig,
    cand: GroupStats,
    base: GroupStats,
    deviation: float | None,
    significance: float | None,
    max_deviation: float,
    significance_z: float,
) -> list[str]:
    if slo.kind == "availability":
        if deviation is None or significance is None:  # a side without samples
            return []
        if deviation > max_deviation and significance >= significance_z:
            return [
                f"candidate error ratio {cand.error_ratio:.4%} exceeds baseline's "
                f"{base.error_ratio:.4%} by {deviation:.3g} error budgets (a burn-rate "
                f"difference above {max_deviation:g}; z = {significance:.2f} >= {significance_z:g})"
            ]
        return []
    if cand.p95_ms is None or base.p95_ms is None:
        return []
    limit = base.p95_ms * (1 + max_deviation)
    if cand.p95_ms > limit:
        return [
            f"candidate p95 {cand.p95_ms:.1f} ms is above baseline p95 {base.p95_ms:.1f} ms "
            f"x {1 + max_deviation:g} = {limit:.1f} ms"
        ]
    return []
