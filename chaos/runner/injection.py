"""Putting a phase's faults in place, and taking them away again.

Header faults ride on the phase's requests (`x-seawall-chaos`), chosen per kind and,
for tool rounds, per step. Admin faults are scheduled through `POST /admin/chaos`
with the phase's length as their duration, so even a runner killed outright leaves
nothing behind for long; they are deleted at the phase's end all the same, and the
rollback clears them whatever happened.
"""

from __future__ import annotations

from collections.abc import Mapping

from chaos.runner.gateway_api import GatewayAPI
from chaos.runner.schema import CHAOS_HEADER, STEP_KINDS, TOOL_STEPS, FaultEntry, Phase
from chaos.runner.traffic import StepHeaders


class HeaderFaults:
    """The request headers of one phase, per kind and step."""

    def __init__(self, phase: Phase) -> None:
        self.base: Mapping[str, str] = dict(phase.headers)
        self.faults = [f for f in phase.faults if f.via == "header"]
        self._by_kind: dict[str, StepHeaders] = {}

    def _applies(self, fault: FaultEntry, kind: str, step: str) -> bool:
        if fault.kinds and kind not in fault.kinds:
            return False
        return kind not in STEP_KINDS or not fault.steps or step in fault.steps

    def chaos(self, kind: str, step: str) -> str | None:
        parts = [f.header_text() for f in self.faults if self._applies(f, kind, step)]
        return ", ".join(parts) or None

    def for_kind(self, kind: str) -> StepHeaders:
        if kind not in self._by_kind:
            self._by_kind[kind] = self._build(kind)
        return self._by_kind[kind]

    def _build(self, kind: str) -> StepHeaders:
        by_step: dict[str, dict[str, str]] = {}
        for step in TOOL_STEPS:
            headers = dict(self.base)
            value = self.chaos(kind, step)
            if value is not None:
                headers[CHAOS_HEADER] = value
            by_step[step] = headers
        return by_step.__getitem__

    def forge_mode(self, kind: str) -> str | None:
        """The forge mode this kind's requests ask for (first forge fault that applies)."""
        for fault in self.faults:
            mode = fault.forge_mode()
            if mode is not None and any(self._applies(fault, kind, s) for s in TOOL_STEPS):
                return mode
        return None


class AdminFaults:
    """A phase's admin faults: scheduled together, removed together."""

    def __init__(self, api: GatewayAPI, phase: Phase) -> None:
        self.api = api
        self.faults = [f for f in phase.faults if f.via == "admin"]
        self.ids: list[str] = []

    async def schedule(self, duration_s: float) -> list[str]:
        for fault in self.faults:
            self.ids.append(await self.api.schedule(fault.admin_body(duration_s)))
        return self.ids

    async def remove(self) -> None:
        ids, self.ids = self.ids, []
        for fault_id in ids:
            await self.api.remove(fault_id)
