"""A rollout's life: one state machine, pure, driven by verdicts, people and time.

    running --judge: fail, or no pass within max_s--> rolled_back
    running --judge: pass, after bake_s-------------> promoted
    running --promote (a person)--------------------> promoted
    running --abort (a person, or superseded)-------> aborted

`rolled_back`, `promoted` and `aborted` are final: nothing moves a finished rollout
again (a late verdict, a second promote, an abort after the fact are refused or
ignored), so the gateway acts on each decision exactly once. What the gateway does on
each (swap, retire, write the source, record) is gateway/rollouts.py's business.

A restart ends every rollout: the state lives in the process (docs/reloading.md says
which version a restarted gateway serves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rollouts.config import RolloutSettings
from rollouts.judge import Judgement

RolloutState = Literal["running", "promoted", "rolled_back", "aborted"]
FINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})


class NotRunning(Exception):
    """A person asked to promote or abort a rollout that is not running."""

    def __init__(self, state: str) -> None:
        super().__init__(f"no rollout is running (the last one was {state})")
        self.state = state


@dataclass(frozen=True, slots=True)
class VersionRef:
    id: str
    number: int

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "number": self.number}


@dataclass(frozen=True, slots=True)
class Step:
    """One move of the rollout, as the audit log and the admin page show it."""

    at: float
    #: `started`, `promoted`, `rolled_back`, `aborted`.
    action: str
    #: The candidate's version id.
    version: str
    reason: str
    #: The key that moved it; None: the gateway itself.
    actor: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "version": self.version,
            "reason": self.reason,
            "actor": self.actor,
        }


@dataclass(slots=True)
class Rollout:
    baseline: VersionRef
    candidate: VersionRef
    settings: RolloutSettings
    #: Unix seconds.
    started_at: float
    #: Where the candidate came from (`admin PUT by key 'ops'`, a source).
    origin: str
    actor: str | None = None
    state: RolloutState = "running"
    #: The latest verdict, None before the first look.
    verdict: Judgement | None = None
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps.append(
            Step(self.started_at, "started", self.candidate.id, f"from {self.origin}", self.actor)
        )

    @property
    def running(self) -> bool:
        return self.state == "running"

    def ready_to_promote(self, verdict: Judgement, now: float) -> bool:
        """Would `verdict` at `now` promote the candidate (healthy, and baked)?"""
        return (
            self.running
            and verdict.result == "pass"
            and now - self.started_at >= self.settings.bake_s
        )

    def judge(self, verdict: Judgement, now: float) -> Step | None:
        """The judge's latest verdict at `now`: the step it causes, if any."""
        if not self.running:
            return None
        self.verdict = verdict
        elapsed = now - self.started_at
        if verdict.result == "fail":
            return self._end("rolled_back", now, "; ".join(verdict.reasons))
        if self.ready_to_promote(verdict, now):
            return self._end(
                "promoted",
                now,
                f"healthy for {elapsed:.0f} s over {verdict.candidate_samples} requests",
            )
        if elapsed >= self.settings.max_s:
            return self._end(
                "rolled_back",
                now,
                f"no verdict within {self.settings.max_s:g} s ({verdict.result})",
            )
        return None

    def promote(self, now: float, actor: str | None, reason: str = "") -> Step:
        self._require_running()
        return self._end("promoted", now, reason or "promoted by hand", actor)

    def abort(self, now: float, actor: str | None, reason: str = "") -> Step:
        self._require_running()
        return self._end("aborted", now, reason or "aborted by hand", actor)

    def roll_back(self, now: float, reason: str, actor: str | None = None) -> Step:
        """Rolled back for a reason found outside the verdict (the candidate could
        not be made the serving version)."""
        self._require_running()
        return self._end("rolled_back", now, reason, actor)

    def _require_running(self) -> None:
        if not self.running:
            raise NotRunning(self.state)

    def _end(self, state: RolloutState, now: float, reason: str, actor: str | None = None) -> Step:
        self.state = state
        step = Step(now, state, self.candidate.id, reason, actor)
        self.steps.append(step)
        return step

    def describe(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "state": self.state,
            "baseline": self.baseline.describe(),
            "candidate": self.candidate.describe(),
            "share": self.settings.share,
            "tenants": list(self.settings.tenants),
            "started_at": self.started_at,
            "origin": self.origin,
            "bake_s": self.settings.bake_s,
            "max_s": self.settings.max_s,
            "min_samples": self.settings.min_samples,
            "samples": {
                "baseline": verdict.baseline_samples if verdict else 0,
                "candidate": verdict.candidate_samples if verdict else 0,
            },
            "verdict": {
                "result": verdict.result if verdict else None,
                "reasons": list(verdict.reasons) if verdict else [],
            },
            "steps": [step.describe() for step in self.steps],
        }
