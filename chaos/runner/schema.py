"""The experiment file: the load to send, the faults to inject when, and what must hold.

Frozen pydantic models that refuse unknown keys, like the gateway's config: a typo in
a tolerance must not silently turn a check off. This module checks shapes and the
fault grammar; what spans several fields (a probe's parameters, kinds a probe filters
on but the load never sends, phase order) is checked in `chaos.runner.checks`, so a
bad file gets every one of its problems listed at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from chaos.faults import FaultError, FaultSpec, build
from chaos.grammar import parse
from chaos.runner.merge_patch import json_problem
from common.config import Frozen, Identifier, non_empty
from common.headers import CHAOS_HEADER

#: Request kinds the load can send; `colored:<color>` is a chat with `x-traffic-color`.
BASIC_KINDS = ("chat", "stream", "tool", "huge_prompt", "mcp_agent")
COLORED_PREFIX = "colored:"
_COLOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: `tool_race:<role>`: a two-turn agent conversation with the target tool, honest
#: (`genuine`) or cheating on its last turn in one way (chaos/runner/race.py).
RACE_PREFIX = "tool_race:"
RACE_GENUINE = "genuine"
RACE_CHEATS = ("replay", "duplicate", "swap", "earlier_turn")
RACE_ROLES = (RACE_GENUINE, *RACE_CHEATS)
#: An agent whose tool is behind `/mcp` (chaos/runner/mcp_agent.py).
MCP_AGENT = "mcp_agent"
#: The three requests of a tool round, which a header fault may pick among: the
#: model's call, the tool (`/v1/tools/{tool}/invoke`; for `mcp_agent`, `/mcp`),
#: the result back to the model.
TOOL_STEPS = ("call", "invoke", "reply")
#: Kinds whose header faults may pick steps.
STEP_KINDS = ("tool", MCP_AGENT)


def race_role(kind: str) -> str | None:
    """The role of a `tool_race:<role>` kind; None for any other kind."""
    role = kind.removeprefix(RACE_PREFIX)
    return role if role != kind and role in RACE_ROLES else None


def is_cheat(kind: str) -> bool:
    """A conversation that sends a result it should not (judged by its own probe)."""
    return race_role(kind) in RACE_CHEATS


def _kind(value: str) -> str:
    color = value.removeprefix(COLORED_PREFIX)
    if value in BASIC_KINDS or (color != value and _COLOR.fullmatch(color)):
        return value
    if race_role(value) is not None:
        return value
    raise ValueError(
        f"unknown request kind; use one of {', '.join(BASIC_KINDS)}, colored:<color>, "
        f"{RACE_PREFIX}<{'|'.join(RACE_ROLES)}>"
    )


Kind = Annotated[str, AfterValidator(_kind)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


def _one_line(value: str) -> str:
    if "\n" in value.strip():
        raise ValueError("must be one line")
    return value.strip()


class Target(Frozen):
    """What the experiment talks to: a model group, and the tool used by tool rounds."""

    model: str = Field("demo", min_length=1)
    tool: Identifier = "seawall_demo_weather"
    #: JSON Schema offered to the model for `tool` (the model's call must fit it).
    #: None: the tool is offered by reference (no `parameters`), which binds the
    #: gateway's registered contract for it (tools/binding.py).
    tool_parameters: dict[str, Any] | None = None


def _mix(value: dict[str, float]) -> dict[str, float]:
    if not value or sum(value.values()) <= 0:
        raise ValueError("needs at least one kind with a weight above 0")
    return value


Mix = Annotated[dict[Kind, Annotated[float, Field(ge=0)]], AfterValidator(_mix)]


class Load(Frozen):
    """Open-loop traffic: `rate` arrivals per second whatever the gateway does, at most
    `concurrency` in flight (an arrival over it is shed and counts as a failure)."""

    rate: float = Field(gt=0, le=5000)
    concurrency: int = Field(32, ge=1, le=4096)
    mix: Mix = Field(default_factory=lambda: {"chat": 1.0})
    seed: int = 0
    #: Client-side limit per request (a tool round: per step).
    timeout_s: float = Field(30, gt=0, le=600)
    #: Size of a `huge_prompt` request, in tokens (about one per word).
    huge_prompt_tokens: int = Field(40_000, ge=1000, le=1_000_000)


class LoadOverride(Frozen):
    """A phase's changes to the experiment's load; unset fields keep it."""

    rate: float | None = Field(None, gt=0, le=5000)
    concurrency: int | None = Field(None, ge=1, le=4096)
    mix: Mix | None = None

    def apply(self, load: Load) -> Load:
        changes = {k: v for k, v in self.model_dump(exclude_none=True).items()}
        return load.model_copy(update=changes)


#: The two config versions of a phase's rollout: the one serving when it began, and
#: the candidate it put beside it.
RolloutVersion = Literal["baseline", "candidate"]


class Selection(Frozen):
    """Which requests a probe looks at: by kind, by a fault injected on them, and (in
    a phase with a `rollout`) by the config version that served them."""

    kinds: tuple[Kind, ...] = ()
    #: Only requests whose `x-seawall-chaos-injected` names this fault.
    fault: str | None = None
    #: `baseline`: requests every answer of which the serving version gave;
    #: `candidate`: requests the candidate answered at least once
    #: (`x-seawall-config-version`).
    version: RolloutVersion | None = None


class ProbeParams(Selection):
    """A probe and its parameters; which parameters each probe takes is in
    `chaos.runner.probes.PROBES` (checked in `chaos.runner.checks`)."""

    probe: str
    deployment: str | None = None
    status: int | None = Field(None, ge=0, le=599)
    code: str | None = None
    mode: str | None = None
    ms: float | None = Field(None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    #: A name for reports, when the probe and its parameters do not say enough.
    label: str | None = None


class ProbeSpec(ProbeParams):
    """A probe with its tolerance: it holds when `min <= value <= max`."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _tolerance(self) -> ProbeSpec:
        if self.min is None and self.max is None:
            raise ValueError("a probe needs a tolerance: min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class AbortRule(ProbeParams):
    """Stop the experiment (faults rolled back) when a live probe crosses a limit,
    computed every second over the requests that completed in the last `window_s`."""

    below: float | None = None
    above: float | None = None
    window_s: float = Field(5, gt=0, le=600)
    #: Fewer requests than this in the window: too little to judge, no abort.
    min_requests: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_limit(self) -> AbortRule:
        if (self.below is None) == (self.above is None):
            raise ValueError("set exactly one of below or above")
        return self


def _fault_text(value: object) -> str:
    """A YAML value as the header grammar's text (the grammar then checks it)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"fault settings are strings or numbers, not {type(value).__name__}")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class FaultEntry(Frozen):
    """One fault, written as a header `spec` or as `fault` plus its keys.

    `via: admin` schedules it through `POST /admin/chaos` for the phase (it expires by
    itself at the phase's end, and is deleted then); `via: header` sends it in
    `x-seawall-chaos` on the phase's requests of `kinds` (all when empty) and, for
    tool rounds, on the `steps` given (all three when empty).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    via: Literal["admin", "header"]
    spec: str | None = None
    fault: str | None = None
    kinds: tuple[Kind, ...] = ()
    steps: tuple[Literal["call", "invoke", "reply"], ...] = ()

    @property
    def keys(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _grammar(self) -> FaultEntry:
        if (self.spec is None) == (self.fault is None):
            raise ValueError("write the fault as `spec` (header grammar) or as `fault` and keys")
        if self.spec is not None and self.keys:
            raise ValueError(f"unknown keys next to `spec`: {', '.join(sorted(self.keys))}")
        if self.via == "admin" and (self.kinds or self.steps):
            raise ValueError("kinds and steps apply to header faults only")
        try:
            specs = self.parsed()
        except (FaultError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if self.via == "admin" and len(specs) != 1:
            raise ValueError("an admin fault is one fault (one POST /admin/chaos)")
        return self

    def parsed(self) -> list[FaultSpec]:
        """The fault(s), checked by the gateway's own grammar (`chaos.grammar`)."""
        if self.spec is not None:
            return parse(self.spec)
        assert self.fault is not None
        return [build(self.fault, {k: _fault_text(v) for k, v in self.keys.items()})]

    def header_text(self) -> str:
        if self.spec is not None:
            return ", ".join(part.strip() for part in self.spec.split(","))
        pairs = [f"{k}={_fault_text(v)}" for k, v in self.keys.items()]
        return ";".join([str(self.fault), *pairs])

    def admin_body(self, duration_s: float) -> dict[str, Any]:
        """The `POST /admin/chaos` body: the fault's settings as typed JSON values."""
        (spec,) = self.parsed()
        body: dict[str, Any] = {"fault": spec.name}
        optional = {"target": spec.target, "seed": spec.seed, "count": spec.count}
        body.update({key: value for key, value in optional.items() if value is not None})
        if spec.p != 1.0:
            body["p"] = spec.p
        if spec.after:
            body["after"] = spec.after
        body.update(spec.params)
        body["duration_s"] = round(duration_s, 3)
        return body

    def names(self) -> list[str]:
        return [spec.name for spec in self.parsed()]

    def forge_mode(self) -> str | None:
        for spec in self.parsed():
            if spec.name == "forge_tool":
                return str(spec.param("mode"))
        return None


def _patch(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        raise ValueError("an empty patch changes nothing: say what the candidate changes")
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(f"not a JSON merge patch: {problem}")
    return value


class RolloutStep(Frozen):
    """A config version started as a canary at the phase's start (`PUT /admin/config?
    rollout=canary`): `candidate` is a JSON merge patch (RFC 7386) over the serving
    config as `GET /admin/config` returns it. The gateway judges it; the phase checks
    it ended `expect`ed within `within_s` of its start, and keeps the load on past
    `seconds` until it ended or `within_s` passed (the judge needs traffic)."""

    candidate: Annotated[dict[str, Any], AfterValidator(_patch)]
    #: Of requests the candidate serves, each drawn alone (0-1).
    share: float = Field(0.5, ge=0, le=1)
    #: Tenants whose requests the candidate always serves.
    tenants: tuple[Identifier, ...] = ()
    expect: Literal["promoted", "rolled_back"]
    #: The bound: seconds from the rollout's start to its final step, at most.
    within_s: Seconds

    @model_validator(mode="after")
    def _serves_someone(self) -> RolloutStep:
        if self.share == 0 and not self.tenants:
            raise ValueError("a canary needs a share above 0 or some tenants")
        return self


class Phase(Frozen):
    """A stretch of time under one set of faults (or one config rollout), with what
    must hold during it."""

    name: Identifier
    seconds: Seconds
    description: str = ""
    #: Check the experiment's steady-state hypothesis over this phase.
    steady_state: bool = False
    #: Probes of this phase only ("during").
    hypothesis: tuple[ProbeSpec, ...] = ()
    faults: tuple[FaultEntry, ...] = ()
    #: A config version started as a canary at the phase's start, judged by the gateway.
    rollout: RolloutStep | None = None
    #: Extra request headers for the phase (faults go in `faults`, not here).
    headers: dict[str, str] = Field(default_factory=dict)
    load: LoadOverride | None = None
    #: Before measuring, keep the load running until every breaker of the model
    #: group is closed (the system recovered), at most `wait_timeout_s`.
    wait_for: Literal["breakers_closed"] | None = None
    wait_timeout_s: float = Field(60, gt=0, le=3600)

    @property
    def disturbs(self) -> bool:
        """Does the phase change the system (faults, a rollout)? The steady state is
        checked around such phases, never during one."""
        return bool(self.faults) or self.rollout is not None

    @field_validator("headers")
    @classmethod
    def _no_chaos_header(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == CHAOS_HEADER for name in value):
            raise ValueError(f"put faults in `faults` (via: header), not in {CHAOS_HEADER}")
        return value


class AbortOn(Frozen):
    """Stop the experiment on the gateway's own signals, checked every second:

    - `burn_rate`: an SLO of the gateway (`slo`, or any) burns its error budget faster
      than this over `burn_window` (`GET /admin/slo`: the key needs the `auditor`,
      `metrics` or `admin` role);
    - `baseline_deviation`: the p95 latency of the successful requests of the last
      `window_s` is more than this share above the baseline: the p95 of the
      `baseline_phase` (default: the first `steady_state` phase), measured in this
      run before the faults (docs/chaos-experiments.md)."""

    burn_rate: float | None = Field(None, gt=0)
    slo: Identifier | None = None
    burn_window: Literal["5m", "30m", "1h", "2h", "6h", "1d", "3d"] = "5m"
    baseline_deviation: float | None = Field(None, gt=0, le=10)
    baseline_phase: Identifier | None = None
    window_s: float = Field(10, gt=0, le=600)
    #: Fewer successful requests in the window: too few to judge, no abort.
    min_requests: int = Field(20, ge=1)


class Safety(Frozen):
    """When to stop early: past `max_seconds`, when an abort rule fires, or on the
    gateway's burn rate or a deviation from the baseline (`abort_on`)."""

    max_seconds: Seconds = 600
    abort: tuple[AbortRule, ...] = ()
    abort_on: AbortOn = AbortOn()


class Rollback(Frozen):
    """What is undone at the end, whatever happens: the experiment's own admin faults
    always; with `clear_all` (the default) every scheduled fault (`DELETE /admin/chaos`).
    A rollout the run started and that still runs is always aborted, and a config
    version one of its rollouts promoted is always rolled back to the version the run
    found (chaos/runner/rollout.py)."""

    clear_all: bool = True


class Experiment(Frozen):
    name: Identifier
    title: Annotated[str, AfterValidator(_one_line)] = Field(min_length=1)
    description: str = ""
    target: Target = Target()
    load: Load
    #: The steady state: checked over every `steady_state: true` phase.
    hypothesis: Annotated[tuple[ProbeSpec, ...], AfterValidator(non_empty)]
    phases: Annotated[tuple[Phase, ...], AfterValidator(non_empty)]
    safety: Safety = Safety()
    rollback: Rollback = Rollback()
    #: Config sections the embedded gateway gets on top of its default, when the
    #: runner starts its own (no `--url`): whole top-level sections the default does
    #: not set, such as `mcp:`. A stdio server's `command: "{python}"` is the Python
    #: seawall runs on. Against `--url` they are not applied: that gateway must
    #: already have them.
    gateway: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _baseline_is_a_phase(self) -> Experiment:
        wanted = self.safety.abort_on.baseline_phase
        if wanted is not None and wanted not in {p.name for p in self.phases}:
            raise ValueError(f"safety.abort_on.baseline_phase: no phase named {wanted!r}")
        if self.safety.abort_on.baseline_deviation is not None and self.baseline_phase is None:
            raise ValueError(
                "safety.abort_on.baseline_deviation needs a baseline: a steady_state phase "
                "or safety.abort_on.baseline_phase"
            )
        return self

    @property
    def baseline_phase(self) -> str | None:
        """The phase whose p95 is `abort_on.baseline_deviation`'s baseline: the named
        one, else the first steady-state phase."""
        named = self.safety.abort_on.baseline_phase
        if named is not None:
            return named
        return next((p.name for p in self.phases if p.steady_state), None)

    def scaled(self, factor: float) -> Experiment:
        """Every duration of the experiment's own clock times `factor`: phases and the
        safety limit. Tolerances in time (abort windows, recovery waits, timeouts)
        are properties of the system under test and stay as written."""
        phases = tuple(p.model_copy(update={"seconds": p.seconds * factor}) for p in self.phases)
        safety = self.safety.model_copy(update={"max_seconds": self.safety.max_seconds * factor})
        return self.model_copy(update={"phases": phases, "safety": safety})

    def phase_load(self, phase: Phase) -> Load:
        return self.load if phase.load is None else phase.load.apply(self.load)
