"""Faults scheduled through the admin API: they apply to every request of their scope
until they expire by themselves (`duration_s`) or are cleared.

A fault's `scope` is the tenant whose admin scheduled it: it touches only requests of
that tenant and the tenants below it (a team admin's outage drill never reaches a
sibling team's traffic), and only admins whose scope covers it see or clear it. The
root scope covers every request.

Room is shared fairly: at most `max_active` faults at once in all, and at most
`max_per_scope` for any one tenant scope, so one team's admin filling its quota
leaves room for every other team's (the root scope has only the overall cap)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from chaos.faults import FaultError, FaultSpec
from chaos.plan import ROOT_SCOPE, ActiveFault

#: A scheduled fault lasts at most this long.
MAX_DURATION_SECONDS = 24 * 3600

__all__ = ["MAX_DURATION_SECONDS", "ROOT_SCOPE", "QuotaExceeded", "Schedule", "Scheduled"]


class QuotaExceeded(FaultError):
    """No room for another scheduled fault: the caller's tenant quota, or the
    gateway's overall cap."""


@dataclass
class Scheduled:
    id: str
    fault: ActiveFault
    expires_at: float
    scope: str = ROOT_SCOPE

    def describe(self, now: float) -> dict[str, Any]:
        spec = self.fault.spec
        return {
            "id": self.id,
            "fault": spec.name,
            "target": spec.target,
            "spec": spec.describe(),
            "expires_in_s": round(max(0.0, self.expires_at - now), 3),
            "scope": self.scope,
            "seen": self.fault.seen,
            "injected": self.fault.hits,
        }


class Schedule:
    def __init__(
        self,
        max_active: int,
        clock: Callable[[], float] = time.monotonic,
        max_per_scope: int | None = None,
    ) -> None:
        self.max_active = max_active
        #: Faults one tenant scope may hold at once (None: only `max_active`).
        self.max_per_scope = max_per_scope
        self._clock = clock
        self._faults: dict[str, Scheduled] = {}
        self._ids = itertools.count(1)

    def add(self, spec: FaultSpec, duration_s: float, scope: str = ROOT_SCOPE) -> Scheduled:
        if not 0 < duration_s <= MAX_DURATION_SECONDS:
            raise FaultError(
                f"duration_s must be more than 0 and at most {MAX_DURATION_SECONDS} seconds"
            )
        active = self.active()
        quota = self.max_per_scope
        if scope != ROOT_SCOPE and quota is not None:
            held = sum(1 for s in active if s.scope == scope)
            if held >= quota:
                raise QuotaExceeded(
                    f"tenant {scope!r} already has {held} faults scheduled "
                    f"(max_faults_per_tenant: {quota})"
                )
        if len(active) >= self.max_active:
            raise QuotaExceeded(
                f"{self.max_active} faults are already scheduled (max_active_faults)"
            )
        scheduled = Scheduled(
            f"f{next(self._ids)}", ActiveFault(spec, scope), self._clock() + duration_s, scope
        )
        self._faults[scheduled.id] = scheduled
        return scheduled

    def __bool__(self) -> bool:
        """Whether anything is scheduled (expired entries included): a cheap
        first test on every request."""
        return bool(self._faults)

    def active(self) -> list[Scheduled]:
        if not self._faults:
            return []
        now = self._clock()
        for key in [k for k, s in self._faults.items() if s.expires_at <= now]:
            del self._faults[key]
        return list(self._faults.values())

    def for_chain(self, chain: tuple[str, ...]) -> list[Scheduled]:
        """The active faults that touch a request whose tenant chain is `chain`
        (root first): those scheduled for one of its tenants."""
        return [s for s in self.active() if s.scope in chain]

    def remove(self, fault_id: str, scopes: Container[str] | None = None) -> bool:
        """Clears one fault; with `scopes`, only a fault of one of them."""
        fault = self._faults.get(fault_id)
        if fault is None or (scopes is not None and fault.scope not in scopes):
            return False
        del self._faults[fault_id]
        return True

    def clear(self, scopes: Container[str] | None = None) -> int:
        """Clears every fault (of `scopes`, when given); how many were cleared."""
        gone = [k for k, s in self._faults.items() if scopes is None or s.scope in scopes]
        for key in gone:
            del self._faults[key]
        return len(gone)

    def describe(self, scopes: Container[str] | None = None) -> list[dict[str, Any]]:
        now = self._clock()
        return [s.describe(now) for s in self.active() if scopes is None or s.scope in scopes]
