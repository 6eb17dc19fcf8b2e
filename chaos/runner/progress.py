"""What the runner prints while it runs: one line a second, and each phase's checks.

The line is about the current phase so far (requests, success, p99, faults seen)
plus the breakers open right now, which is what an operator watching a fault
wants to see move.
"""

from __future__ import annotations

from collections.abc import Sequence

from chaos.runner.probes import Check, tolerance_text
from chaos.runner.results import PhaseResult, RunResult
from chaos.runner.samples import Sample
from chaos.runner.timeline import summarise


def _percent(value: float | None) -> str:
    return "   -  " if value is None else f"{value * 100:5.1f}%"


def _ms(value: float | None) -> str:
    return "    -  " if value is None else f"{value:5.0f}ms"


def progress_line(
    phase: str, t: float, samples: Sequence[Sample], open_breakers: Sequence[str]
) -> str:
    """The phase so far (`samples`: its completed requests), and the breakers open now."""
    so_far = summarise(t, phase, samples, None, 0)
    injected = sum(so_far.injected.values())
    breakers = ",".join(open_breakers) or "-"
    return (
        f"[{phase:<14.14}] t={t:5.1f}s req={so_far.requests:5d} "
        f"ok={_percent(so_far.success_ratio)} p99={_ms(so_far.p99_ms)} "
        f"injected={injected:4d} open={breakers}"
    )


def check_line(check: Check) -> str:
    mark = "ok  " if check.ok else "FAIL"
    return f"    {mark} {check.name} = {check.shown} (want {tolerance_text(check.min, check.max)})"


def phase_lines(phase: PhaseResult) -> list[str]:
    head = f"  phase {phase.name}: {'held' if phase.ok else 'DID NOT HOLD'}"
    return [head, *(check_line(c) for c in phase.checks)]


def verdict_lines(result: RunResult) -> list[str]:
    lines = [f"{result.experiment.name}: {result.verdict.upper()}"]
    if result.aborted:
        lines.append(f"  aborted: {result.aborted}")
    lines.append(f"  rollback: {result.rollback}")
    lines += [f"  note: {note}" for note in result.notes]
    return lines
