"""The verdict on a running canary, from the outcomes seen since it began.

The release gate's rules (slo/gate.py), applied continuously, with the candidate as
`config_version=<candidate>` and the baseline as `config_version=<serving>`:

1. The rollout's own availability objective (`reload.rollout.objective`) over all its
   traffic is always a judge, so a config without SLOs is still judged:
   - **fail** as soon as the candidate has `min_samples` and its burn rate is over
     `max_burn_rate` (the page threshold by default);
   - **fail** when it is worse than the baseline by more than `max_deviation`
     (significantly, the gate's z-test), once both sides have `min_samples`;
   - **pass** when neither, the candidate has `min_samples`, and the baseline has
     them too or had no traffic to compare with (a canary serving every request);
   - **inconclusive** otherwise.
2. Each SLO of the serving config judges the same way where it has `min_samples` on
   the candidate: it can **fail** the rollout (burn or deviation); with fewer it
   neither blocks nor passes it (an SLO of a model group the canary never saw must
   not hold a rollout forever), and says so in the reasons.

The result is the worst of them: any fail fails; pass needs the rollout objective's
pass.

The evidence is counted as requests finish (`Evidence.add`: a classification per
SLO), so a look costs the same whatever the traffic: counts since the rollout began,
and the newest `keep_latencies` latencies per side for the percentiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollouts.config import RolloutSettings
from slo.config import SloConfig
from slo.events import Outcome
from slo.gate import GateReport, GateVerdict, GroupStats, Selector, Tally, compare

#: The name of the rollout's own availability objective in verdicts and reports.
ROLLOUT_SLO = "rollout-availability"


@dataclass(frozen=True, slots=True)
class Judgement:
    result: GateVerdict
    reasons: tuple[str, ...]
    #: Requests with a verdict under the rollout objective, per side.
    candidate_samples: int
    baseline_samples: int


def rollout_objective(settings: RolloutSettings) -> SloConfig:
    return SloConfig(name=ROLLOUT_SLO, kind="availability", objective=settings.objective)


class Evidence:
    """What both versions' finished requests showed, per SLO judged, per side."""

    def __init__(
        self,
        baseline: str,
        candidate: str,
        slos: Sequence[SloConfig],
        settings: RolloutSettings,
    ) -> None:
        self.baseline = baseline
        self.candidate = candidate
        self.settings = settings
        keep = settings.keep_latencies
        cand, base = Selector("config_version", candidate), Selector("config_version", baseline)
        #: (candidate tally, baseline tally) per SLO, the rollout objective first.
        self.tallies = [
            (Tally(slo, cand, keep), Tally(slo, base, keep))
            for slo in (rollout_objective(settings), *slos)
        ]

    def add(self, outcome: Outcome) -> None:
        version = outcome.config_version
        if version == self.candidate:
            side = 0
        elif version == self.baseline:
            side = 1
        else:
            return  # a version retiring from before the rollout
        for pair in self.tallies:
            pair[side].add(outcome)


def judge(evidence: Evidence) -> Judgement:
    """The verdict on the candidate against the baseline (the module's rules)."""
    settings = evidence.settings
    reports = [
        (cand.slo, _gate(cand.slo, cand.stats(), base.stats(), settings))
        for cand, base in evidence.tallies
    ]
    reasons: list[str] = []
    failed = False
    for slo, (alone, against) in reports:
        for report in (alone, against):
            if report is not None and report.verdict == "fail":
                failed = True
                reasons += [f"{slo.name}: {reason}" for reason in report.reasons]
    own_alone, own_against = reports[0][1]
    if failed:
        result: GateVerdict = "fail"
    elif own_alone.verdict == "pass" and (own_against is None or own_against.verdict == "pass"):
        result = "pass"
        reasons.append(f"{ROLLOUT_SLO}: " + "; ".join(own_alone.reasons))
        if own_against is None:
            reasons.append(f"{ROLLOUT_SLO}: the baseline served no traffic to compare with")
    else:
        result = "inconclusive"
        for report in (own_alone, own_against):
            if report is not None and report.verdict == "inconclusive":
                reasons += [f"{ROLLOUT_SLO}: {reason}" for reason in report.reasons]
    for slo, (alone, _) in reports[1:]:
        if alone.verdict == "inconclusive":
            reasons.append(
                f"{slo.name}: {alone.candidate.samples} candidate samples, too few to judge"
            )
    baseline = own_against.baseline if own_against is not None else None
    return Judgement(
        result,
        tuple(dict.fromkeys(reasons)),
        own_alone.candidate.samples,
        baseline.samples if baseline is not None else 0,
    )


def _gate(
    slo: SloConfig, cand: GroupStats, base: GroupStats, settings: RolloutSettings
) -> tuple[GateReport, GateReport | None]:
    """The candidate judged alone (its burn rate), and against the baseline when the
    baseline has requests with a verdict for the SLO (None when it has none)."""
    alone = _compare(slo, cand, None, settings)
    if base.samples == 0:
        return alone, None
    return alone, _compare(slo, cand, base, settings)


def _compare(
    slo: SloConfig, cand: GroupStats, base: GroupStats | None, settings: RolloutSettings
) -> GateReport:
    return compare(
        slo,
        cand,
        base,
        min_samples=settings.min_samples,
        max_deviation=settings.max_deviation,
        max_burn_rate=settings.max_burn_rate,
        significance_z=settings.significance_z,
    )
