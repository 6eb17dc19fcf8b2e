"""`--dry-run`: the plan of an experiment in words, without sending anything."""

from __future__ import annotations

from chaos.runner.probes import describe, tolerance_text
from chaos.runner.schema import Experiment, FaultEntry, Load, Phase, ProbeSpec, RolloutStep


def _mix(load: Load) -> str:
    return ", ".join(f"{kind} {weight:g}" for kind, weight in load.mix.items())


def _load(load: Load) -> str:
    return f"{load.rate:g} req/s open loop, at most {load.concurrency} in flight, mix: {_mix(load)}"


def _probe(spec: ProbeSpec) -> str:
    return f"{describe(spec)} {tolerance_text(spec.min, spec.max)}"


def _fault(fault: FaultEntry, seconds: float) -> str:
    if fault.via == "admin":
        return f"admin: {fault.header_text()} (POST /admin/chaos, for {seconds:g} s)"
    where = "+".join(fault.kinds) or "every kind"
    steps = f", tool steps {'+'.join(fault.steps)}" if fault.steps else ""
    return f"header: {fault.header_text()} (on {where}{steps})"


def _rollout(step: RolloutStep) -> list[str]:
    tenants = f" and tenants {', '.join(step.tenants)}" if step.tenants else ""
    return [
        f"       rollout: PUT /admin/config?rollout=canary, {step.share:g} of requests"
        f"{tenants}; the serving config patched at {', '.join(sorted(step.candidate))}",
        f"       check the rollout ended {step.expect} within {step.within_s:g} s "
        "(the load stays on until then)",
    ]


def _phase(number: int, phase: Phase, experiment: Experiment) -> list[str]:
    traits = ["steady state"] if phase.steady_state else []
    if phase.wait_for:
        traits.append(f"first waits up to {phase.wait_timeout_s:g} s for {phase.wait_for}")
    lines = [
        f"  {number}. {phase.name}: {phase.seconds:g} s"
        + (f" ({'; '.join(traits)})" if traits else "")
    ]
    if phase.load is not None:
        lines.append(f"       load: {_load(experiment.phase_load(phase))}")
    lines += [f"       fault {_fault(f, phase.seconds)}" for f in phase.faults]
    if phase.rollout is not None:
        lines += _rollout(phase.rollout)
    lines += [f"       probe {_probe(p)}" for p in phase.hypothesis]
    for name in dict.fromkeys(n for f in phase.faults for n in f.names()):
        lines.append(f"       check fault {name} took effect (injected >= 1)")
    return lines


def plan_text(experiment: Experiment, scale: float) -> str:
    total = sum(p.seconds for p in experiment.phases)
    lines = [
        f"experiment {experiment.name}: {experiment.title}",
        f"target: model group {experiment.target.model} (tool rounds: {experiment.target.tool})",
        f"load: {_load(experiment.load)}",
        *(
            [f"gateway sections (embedded gateway only): {', '.join(sorted(experiment.gateway))}"]
            if experiment.gateway
            else []
        ),
        "steady-state hypothesis (checked in steady_state phases):",
        *(f"  - {_probe(p)}" for p in experiment.hypothesis),
        f"phases ({total:g} s at scale {scale:g}; safety limit "
        f"{experiment.safety.max_seconds:g} s):",
    ]
    for number, phase in enumerate(experiment.phases, start=1):
        lines += _phase(number, phase, experiment)
    for rule in experiment.safety.abort:
        limit = f"below {rule.below:g}" if rule.below is not None else f"above {rule.above:g}"
        lines.append(f"abort when {describe(rule)} is {limit} over {rule.window_s:g} s")
    clear = "DELETE /admin/chaos" if experiment.rollback.clear_all else "this run's faults"
    if any(phase.rollout for phase in experiment.phases):
        clear += (
            "; abort a rollout of the run still running, and serve the config version "
            "the run found again if one of its rollouts promoted another"
        )
    lines.append(f"rollback, always: {clear}")
    return "\n".join(lines)
