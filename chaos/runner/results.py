"""What a run produced: per phase its checks and counts, the timeline, the verdict.

The JSON report is these objects as they are; the markdown report and the chart
are views of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.runner.probes import Check, FaultEffect
from chaos.runner.samples import Sample, cheat_caught
from chaos.runner.schema import MCP_AGENT, RACE_PREFIX, RACE_ROLES, Experiment, is_cheat
from chaos.runner.timeline import Point

PASSED, FAILED, ABORTED = "passed", "failed", "aborted"
FORGE_MODES = ("invalid", "inject", "wrong")


def counts(samples: Sequence[Sample]) -> dict[str, Any]:
    """Plain tallies of a phase's requests, for the report (not for verdicts)."""
    injected: Counter[str] = Counter()
    for sample in samples:
        injected.update(sample.faults)
    found: dict[str, Any] = {}
    agents = [s for s in samples if s.kind == MCP_AGENT]
    if agents:
        # Each result an `mcp_agent` sent, by what it was and how the gateway judged it.
        found["mcp_results"] = {
            "genuine": dict(Counter(v for s in agents for v in s.genuine)),
            "forged": dict(Counter(v for s in agents for v in s.cheats)),
        }
    return {
        "requests": len(samples),
        "ok": sum(s.ok for s in samples),
        "expected_to_fail": sum(not s.expected_ok for s in samples),
        "by_kind": dict(Counter(s.kind for s in samples)),
        "by_status": {str(k): v for k, v in sorted(Counter(s.status for s in samples).items())},
        "by_code": dict(Counter(s.code for s in samples if s.code)),
        "by_deployment": dict(Counter(s.deployment for s in samples if s.ok and s.deployment)),
        "injected": dict(injected),
        "chaos_ignored": sum(s.chaos_ignored for s in samples),
        **found,
    }


@dataclass
class PhaseResult:
    name: str
    steady_state: bool
    planned_s: float
    start_s: float
    end_s: float
    faults: list[str]
    checks: list[Check]
    counts: dict[str, Any]
    effects: list[FaultEffect] = field(default_factory=list)
    #: Seconds spent waiting for recovery before the phase, when it asked to.
    waited_s: float | None = None
    #: Growth of seawall_guard_events_total by kind over the phase (what the
    #: gateway's guards and tool checks found, all of it, not only the first).
    guard_events: dict[str, float] = field(default_factory=dict)
    #: The phase's config rollout as `GET /admin/config/rollout` last showed it:
    #: versions, share, samples, the verdict and every step.
    rollout: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


@dataclass
class ForgeSummary:
    """Forged tool rounds of one forge mode, and what caught them."""

    mode: str
    rounds: int
    caught: int
    caught_by: dict[str, int]

    @property
    def rate(self) -> float | None:
        return None if self.rounds == 0 else self.caught / self.rounds


def forge_summaries(samples: Sequence[Sample]) -> list[ForgeSummary]:
    forged = [s for s in samples if s.forged]
    modes = sorted({s.forge_mode or "?" for s in forged}, key=_mode_order)
    found = []
    for mode in modes:
        rounds = [s for s in forged if (s.forge_mode or "?") == mode]
        by = Counter(s.caught_by for s in rounds if s.caught_by)
        found.append(ForgeSummary(mode, len(rounds), sum(by.values()), dict(by)))
    return found


def _mode_order(mode: str) -> int:
    return FORGE_MODES.index(mode) if mode in FORGE_MODES else len(FORGE_MODES)


#: A `tool_race` conversation that ended before it sent its cheat, in `outcomes`.
NOT_SENT = "not sent"


@dataclass
class RaceSummary:
    """Tool-race conversations of one kind (`tool_race:<role>`), and how they fared.

    A genuine conversation is judged whole (served cleanly to the end, or not); a
    cheat by each result it sent that it should not have (a swap's two
    conversations send one each)."""

    kind: str
    conversations: int
    #: Conversations served cleanly to the end (every step 2xx, nothing flagged).
    succeeded: int
    #: Cheating results sent, and how many of them were refused or flagged.
    cheats: int
    caught: int
    #: Genuine: the final code of each conversation ("ok" when it succeeded).
    #: Cheats: the verdict of each cheating result (`refused:<code>`,
    #: `flagged:<kinds>`, `passed`, `failed:<code>`), and `not sent:<code>` for each
    #: one a conversation never got to send.
    outcomes: dict[str, int]

    @property
    def rate(self) -> float | None:
        return None if self.cheats == 0 else self.caught / self.cheats


def race_summaries(samples: Sequence[Sample]) -> list[RaceSummary]:
    found = []
    for role in RACE_ROLES:
        kind = RACE_PREFIX + role
        runs = [s for s in samples if s.kind == kind]
        if not runs:
            continue
        size = 2 if role == "swap" else 1  # conversations per sample
        outcomes: Counter[str] = Counter()
        for run in runs:
            if not is_cheat(kind):
                outcomes[run.code or "ok"] += 1
                continue
            outcomes.update(run.cheats)
            if len(run.cheats) < size:
                outcomes[f"{NOT_SENT}:{run.code}"] += size - len(run.cheats)
        verdicts = [v for run in runs for v in run.cheats]
        found.append(
            RaceSummary(
                kind=kind,
                conversations=size * len(runs),
                succeeded=0 if is_cheat(kind) else sum(run.ok for run in runs),
                cheats=len(verdicts),
                caught=sum(cheat_caught(v) for v in verdicts),
                outcomes=dict(sorted(outcomes.items())),
            )
        )
    return found


@dataclass
class RunResult:
    experiment: Experiment
    source: str
    url: str
    scale: float
    started_at: str
    phases: list[PhaseResult] = field(default_factory=list)
    timeline: list[Point] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    aborted: str | None = None
    rollback: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.aborted is not None:
            return ABORTED
        return PASSED if self.phases and all(p.ok for p in self.phases) else FAILED

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == PASSED else 1

    @property
    def forged(self) -> list[ForgeSummary]:
        return forge_summaries(self.samples)

    @property
    def race(self) -> list[RaceSummary]:
        return race_summaries(self.samples)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _check(check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "probe": check.probe,
        "value": _round(check.value, 4),
        "tolerance": {"min": check.min, "max": check.max},
        "ok": check.ok,
        **({"note": check.note} if check.note else {}),
    }


def _point(point: Point) -> dict[str, Any]:
    return {
        "t": point.t,
        "phase": point.phase,
        "requests": point.requests,
        "success_ratio": _round(point.success_ratio, 4),
        "p50_ms": _round(point.p50_ms),
        "p99_ms": _round(point.p99_ms),
        "injected": dict(point.injected),
        "breakers": None if point.breakers is None else dict(point.breakers),
        "in_flight": point.in_flight,
    }


def to_json(result: RunResult) -> dict[str, Any]:
    experiment = result.experiment
    return {
        "experiment": {
            "name": experiment.name,
            "title": experiment.title,
            "source": result.source,
        },
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "aborted": result.aborted,
        "url": result.url,
        "scale": result.scale,
        "started_at": result.started_at,
        "rollback": result.rollback,
        "notes": result.notes,
        "phases": [
            {
                "name": phase.name,
                "steady_state": phase.steady_state,
                "planned_s": phase.planned_s,
                "start_s": round(phase.start_s, 3),
                "end_s": round(phase.end_s, 3),
                "waited_s": phase.waited_s,
                "faults": phase.faults,
                "ok": phase.ok,
                "checks": [_check(c) for c in phase.checks],
                "fault_effects": [
                    {
                        "fault": e.fault,
                        "observed": e.observed,
                        "counted": e.counted,
                        "where": e.by_where,
                    }
                    for e in phase.effects
                ],
                "counts": phase.counts,
                "guard_events": phase.guard_events,
                "rollout": phase.rollout,
            }
            for phase in result.phases
        ],
        "forged_tool_rounds": [
            {
                "mode": f.mode,
                "rounds": f.rounds,
                "caught": f.caught,
                "rate": f.rate,
                "caught_by": f.caught_by,
            }
            for f in result.forged
        ],
        "tool_race": [
            {
                "kind": r.kind,
                "conversations": r.conversations,
                "succeeded": r.succeeded,
                "cheating_results": r.cheats,
                "caught": r.caught,
                "detection_rate": r.rate,
                "outcomes": r.outcomes,
            }
            for r in result.race
        ],
        "timeline": [_point(p) for p in result.timeline],
    }
