"""Chaos mode for one gateway: its config, its schedule, and what it injected.

The config (caps, colors, what a fault may target) belongs to one config version;
the schedule of admin faults and the injection counts outlive versions, so they are
passed in by whoever keeps them (the gateway's State): a reload neither cancels a
scheduled outage nor resets the counts /metrics reports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from chaos.config import ChaosConfig, ColorConfig
from chaos.faults import FaultError, FaultSpec
from chaos.grammar import parse
from chaos.plan import ActiveFault, ChaosPlan, apply_caps
from chaos.scheduled import ROOT_SCOPE, Schedule
from chaos.targets import CONFIG_TARGET, Targets


class TargetNotAllowed(FaultError):
    """A fault aimed at something the caller's tenant may not target."""

    def __init__(self, target: str | None) -> None:
        what = f"target {target!r}" if target else "every target (give a target)"
        super().__init__(f"{what} is not among your tenant's chaos targets")
        self.target = target


class ChaosEngine:
    def __init__(
        self,
        config: ChaosConfig,
        groups: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        tools: Iterable[str] = (),
        schedule: Schedule | None = None,
        injected: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.config = config
        self.groups = groups  # deployment id -> group name
        #: What a fault may aim at: deployments, `group:NAME`, `tool:NAME`.
        self.targets = Targets(groups, tools)
        if schedule is None:
            schedule = Schedule(config.max_active_faults, clock)
        schedule.max_active = config.max_active_faults
        self.schedule = schedule
        self.schedule_clock = clock
        #: Injections since start, by (fault, where): /metrics reads these.
        self.injected: dict[tuple[str, str], int] = injected if injected is not None else {}

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
            raise FaultError(f"unknown traffic color {name!r} (known: {known})")
        return color

    def plan(
        self,
        header: str | None,
        color: ColorConfig | None,
        chain: tuple[str, ...] = (ROOT_SCOPE,),
        may_target: Callable[[str | None], bool] | None = None,
    ) -> ChaosPlan | None:
        """The plan for one request of a tenant whose chain (root first) is `chain`;
        None when no fault is in force. `may_target` refuses header faults aimed at
        what the caller's tenant may not target (`TargetNotAllowed`)."""
        faults = [s.fault for s in self.schedule.for_chain(chain)]
        if header:
            specs = [self.targets.check(spec) for spec in parse(header)]
            if may_target is not None:
                for spec in specs:
                    if not may_target(spec.target):
                        raise TargetNotAllowed(spec.target)
            faults += [ActiveFault(spec) for spec in self.capped(specs)]
        if color is not None and color.faults:
            faults += [ActiveFault(spec) for spec in self.capped(parse(color.faults))]
        if not faults:
            return None
        return ChaosPlan(faults, self.groups)

    def config_event_allowed(self) -> bool:
        """The config source's event filter: False (drop the change notification) while
        a scheduled `config_watch_drop` fires; each drop is counted as an injection."""
        for scheduled in self.schedule.active():
            fault = scheduled.fault
            if fault.spec.name == "config_watch_drop" and fault.fires():
                key = ("config_watch_drop", CONFIG_TARGET)
                self.injected[key] = self.injected.get(key, 0) + 1
                return False
        return True

    def count(self, plan: ChaosPlan) -> None:
        for key, times in plan.counts.items():
            self.injected[key] = self.injected.get(key, 0) + times
