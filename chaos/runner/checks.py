"""Problems pydantic cannot see field by field: probe parameters, kinds that are
never sent, phase order. Each one comes back as `path: reason`, like a bad config.

The phase-order rule is the experiment's method: the steady state must be shown to
hold before the first fault (or there is nothing to compare with) and again after
the last one (or recovery was never proven). A config rollout is a change like a
fault, and follows the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator

from chaos.runner.probes import PROBES, REQUEST
from chaos.runner.schema import STEP_KINDS, Experiment, Phase, ProbeParams

#: Parameters as they appear in a file, for "does not take" messages.
_PARAMS = ("kinds", "fault", "version", "deployment", "status", "code", "mode", "ms", "labels")


def experiment_problems(experiment: Experiment) -> list[str]:
    sent = set(experiment.load.mix)
    for phase in experiment.phases:
        if phase.load is not None and phase.load.mix is not None:
            sent |= set(phase.load.mix)
    problems = list(_probe_problems(experiment, sent))
    problems += _phase_problems(experiment)
    problems += _fault_problems(experiment, sent)
    problems += _rollout_problems(experiment)
    return problems


def _probes(experiment: Experiment) -> Iterator[tuple[str, ProbeParams]]:
    for i, probe in enumerate(experiment.hypothesis):
        yield f"hypothesis[{i}]", probe
    for p, phase in enumerate(experiment.phases):
        for i, probe in enumerate(phase.hypothesis):
            yield f"phases[{p}].hypothesis[{i}]", probe
    for i, rule in enumerate(experiment.safety.abort):
        yield f"safety.abort[{i}]", rule


def _probe_problems(experiment: Experiment, sent: set[str]) -> Iterator[str]:
    for path, params in _probes(experiment):
        kind = PROBES.get(params.probe)
        if kind is None:
            yield f"{path}.probe: unknown probe {params.probe!r} (known: {', '.join(PROBES)})"
            continue
        if path.startswith("safety") and kind.source != "requests":
            yield f"{path}.probe: abort rules take request probes only, not {params.probe!r}"
        given = {name for name in _PARAMS if getattr(params, name) not in (None, (), {})}
        for name in sorted(given - kind.params):
            yield f"{path}.{name}: probe {params.probe!r} does not take {name!r}"
        for name in sorted(kind.required - given):
            yield f"{path}: probe {params.probe!r} needs {name!r}"
        if kind.params & REQUEST:
            for kind_name in params.kinds or kind.default_kinds:
                if kind_name not in sent:
                    yield f"{path}.kinds: {kind_name!r} is never sent (not in any load mix)"


def _phase_problems(experiment: Experiment) -> Iterator[str]:
    phases = experiment.phases
    names = [phase.name for phase in phases]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield f"phases: duplicate phase name {name!r}"
    for i, phase in enumerate(phases):
        if phase.steady_state and phase.faults:
            yield f"phases[{i}]: a steady_state phase cannot inject faults"
        if phase.steady_state and phase.rollout is not None:
            yield f"phases[{i}]: a steady_state phase cannot start a rollout"
        if phase.faults and phase.rollout is not None:
            yield (
                f"phases[{i}]: a phase injects faults or starts a rollout, not both "
                "(the rollout's verdict would judge the faults)"
            )
    faulted = [i for i, phase in enumerate(phases) if phase.disturbs]
    steady = [i for i, phase in enumerate(phases) if phase.steady_state]
    if not steady:
        yield "phases: no phase has steady_state: true (the hypothesis would never be checked)"
    elif faulted:
        if steady[0] > faulted[0]:
            # A rollout phase counts as a fault phase here (`Phase.disturbs`).
            yield "phases: the steady state must be checked before the first fault phase"
        if steady[-1] < faulted[-1]:
            yield "phases: the steady state must be checked after the last fault phase"
    total = sum(phase.seconds for phase in phases)
    if experiment.safety.max_seconds < total:
        yield (
            f"safety.max_seconds: {experiment.safety.max_seconds:g} is less than the phases' "
            f"{total:g} s: the run would always abort"
        )


def _fault_problems(experiment: Experiment, sent: set[str]) -> Iterator[str]:
    for p, phase in enumerate(experiment.phases):
        for f, fault in enumerate(phase.faults):
            path = f"phases[{p}].faults[{f}]"
            for kind in fault.kinds:
                if kind not in sent:
                    yield f"{path}.kinds: {kind!r} is never sent (not in any load mix)"
            if fault.steps and not set(STEP_KINDS) & set(fault.kinds or sent):
                yield (
                    f"{path}.steps: steps apply to tool rounds and mcp_agent conversations, "
                    "and none gets it"
                )


def _rollout_problems(experiment: Experiment) -> Iterator[str]:
    """`version` and the rollout probes read a phase's rollout: only a phase with a
    rollout has one (the experiment's hypothesis is checked in steady-state phases,
    which have none, and an abort rule watches every phase)."""
    for path, params in _probes(experiment):
        kind = PROBES.get(params.probe)
        needs = params.version is not None or (kind is not None and kind.source == "rollout")
        if not needs:
            continue
        phase = _phase_of(experiment, path)
        if phase is None or phase.rollout is None:
            what = f"{path}.version" if params.version is not None else f"{path}.probe"
            yield f"{what}: only a phase with a rollout has a baseline and a candidate"


def _phase_of(experiment: Experiment, path: str) -> Phase | None:
    if not path.startswith("phases["):
        return None
    return experiment.phases[int(path[len("phases[") : path.index("]")])]
