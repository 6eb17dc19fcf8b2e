"""Chaos mode for one gateway: its config, its schedule, and what it injected.

The config (caps, colors, what a fault may target) belongs to one config version;
the schedule of admin faults and the injection counts outlive versions, so they are
passed in by whoever keeps them (the gateway's State): a reload neither cancels a
scheduled outage nor resets the counts /metrics reports.

Every fault, however it arrives (the request header, a traffic color, an admin's
schedule), passes the same check (`authorize`): a target the gateway has, within the
caller's `chaos_targets`, and never a gateway-wide fault (the config source) below
the root scope. Injections are counted by scope, so each tenant's views show its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Mapping

from chaos.config import ChaosConfig, ColorConfig
from chaos.faults import FaultError, FaultSpec
from chaos.grammar import parse
from chaos.plan import ROOT_SCOPE, ActiveFault, ChaosPlan, apply_caps
from chaos.scheduled import Schedule
from chaos.targets import CONFIG_TARGET, Targets

#: Whether a caller may aim a fault at a target (None: an untargeted fault).
MayTarget = Callable[[str | None], bool]


class TargetNotAllowed(FaultError):
    """A fault aimed at something the caller's tenant may not target."""

    def __init__(self, target: str | None, reason: str | None = None) -> None:
        what = f"target {target!r}" if target else "every target (give a target)"
        super().__init__(reason or f"{what} is not among your tenant's chaos targets")
        self.target = target


class ChaosEngine:
    def __init__(
        self,
        config: ChaosConfig,
        groups: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        tools: Iterable[str] = (),
        schedule: Schedule | None = None,
        injected: dict[tuple[str, str, str], int] | None = None,
        namespaces: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.groups = groups  # deployment id -> group name
        #: What a fault may aim at: deployments, `group:NAME`, `tool:NAME`, and for
        #: MCP servers (`namespaces`) `mcp:SERVER` and `tool:SERVER__TOOL`.
        self.targets = Targets(groups, tools, namespaces)
        if schedule is None:
            schedule = Schedule(config.max_active_faults, clock)
        schedule.max_active = config.max_active_faults
        schedule.max_per_scope = config.max_faults_per_tenant
        self.schedule = schedule
        self.schedule_clock = clock
        #: Injections since start, by (scope, fault, where): /metrics and the admin
        #: view read these, each caller its own scopes'.
        self.injected: dict[tuple[str, str, str], int] = injected if injected is not None else {}

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def capped(self, specs: Iterable[FaultSpec]) -> list[FaultSpec]:
        specs = list(specs)
        if len(specs) > self.config.max_active_faults:
            raise FaultError(
                f"{len(specs)} faults requested; at most {self.config.max_active_faults} "
                "(max_active_faults)"
            )
        return [apply_caps(spec, self.config) for spec in specs]

    def color(self, name: str) -> ColorConfig:
        color = self.config.colors.get(name)
        if color is None:
            known = ", ".join(sorted(self.config.colors)) or "none configured"
            error = FaultError(f"unknown traffic color {name!r} (known: {known})")
            error.source = "color"
            raise error
        return color

    def authorize(
        self, spec: FaultSpec, scope: str = ROOT_SCOPE, may_target: MayTarget | None = None
    ) -> FaultSpec:
        """`spec` if the caller of `scope` may inject it: a target this gateway has
        (`UnknownTarget`), one the caller may aim at, and no gateway-wide fault below
        the root scope (`TargetNotAllowed`)."""
        spec = self.targets.check(spec)
        if spec.kind.gateway_wide and scope != ROOT_SCOPE:
            raise TargetNotAllowed(
                spec.target,
                f"{spec.name} acts on the whole gateway: only a root-scoped admin may inject it",
            )
        if may_target is not None and not may_target(spec.target):
            raise TargetNotAllowed(spec.target)
        return spec

    def plan(
        self,
        header: str | None,
        color: ColorConfig | None,
        chain: tuple[str, ...] = (ROOT_SCOPE,),
        may_target: MayTarget | None = None,
    ) -> ChaosPlan | None:
        """The plan for one request of a tenant whose chain (root first) is `chain`;
        None when no fault is in force. Header and color faults are the caller's,
        scoped to its tenant, and pass `authorize` alike; a color's deployments must
        be targets the caller may aim at too."""
        scope = chain[-1]
        faults = [s.fault for s in self.schedule.for_chain(chain)]
        if color is not None and may_target is not None:
            for deployment in color.deployments:
                if not may_target(deployment):
                    error = TargetNotAllowed(deployment)
                    error.source = "color"
                    raise error
        specs: list[FaultSpec] = []
        for source, text in (("header", header), ("color", color and color.faults)):
            if not text:
                continue
            try:
                specs += [self.authorize(spec, scope, may_target) for spec in parse(text)]
            except FaultError as exc:
                exc.source = source
                raise
        if specs:
            faults += [ActiveFault(spec, scope) for spec in self.capped(specs)]
        if not faults:
            return None
        return ChaosPlan(faults, self.groups)

    def config_event_allowed(self) -> bool:
        """The config source's event filter: False (drop the change notification) while
        a scheduled `config_watch_drop` fires; each drop is counted as an injection."""
        for scheduled in self.schedule.active():
            fault = scheduled.fault
            if fault.spec.name == "config_watch_drop" and fault.fires():
                key = (scheduled.scope, "config_watch_drop", CONFIG_TARGET)
                self.injected[key] = self.injected.get(key, 0) + 1
                return False
        return True

    def count(self, plan: ChaosPlan) -> None:
        for key, times in plan.counts.items():
            self.injected[key] = self.injected.get(key, 0) + times

    def injections(self, scopes: Container[str] | None = None) -> dict[tuple[str, str], int]:
        """Injections by (fault, where), of `scopes` only when given."""
        totals: dict[tuple[str, str], int] = {}
        for (scope, fault, where), count in self.injected.items():
            if scopes is None or scope in scopes:
                totals[fault, where] = totals.get((fault, where), 0) + count
        return totals
