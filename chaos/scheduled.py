"""Faults scheduled through the admin API: they apply to every request until they
expire by themselves (`duration_s`) or are cleared."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaos.faults import FaultError, FaultSpec
from chaos.plan import ActiveFault

#: A scheduled fault lasts at most this long.
MAX_DURATION_SECONDS = 24 * 3600


@dataclass
class Scheduled:
    id: str
    fault: ActiveFault
    expires_at: float

    def describe(self, now: float) -> dict[str, Any]:
        spec = self.fault.spec
        return {
            "id": self.id,
            "fault": spec.name,
            "target": spec.target,
            "spec": spec.describe(),
            "expires_in_s": round(max(0.0, self.expires_at - now), 3),
            "seen": self.fault.seen,
            "injected": self.fault.hits,
        }


class Schedule:
    def __init__(self, max_active: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_active = max_active
        self._clock = clock
        self._faults: dict[str, Scheduled] = {}
        self._ids = itertools.count(1)

    def add(self, spec: FaultSpec, duration_s: float) -> Scheduled:
        if not 0 < duration_s <= MAX_DURATION_SECONDS:
            raise FaultError(
                f"duration_s must be more than 0 and at most {MAX_DURATION_SECONDS} seconds"
            )
        if len(self.active()) >= self.max_active:
            raise FaultError(f"{self.max_active} faults are already scheduled (max_active_faults)")
        scheduled = Scheduled(f"f{next(self._ids)}", ActiveFault(spec), self._clock() + duration_s)
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

    def remove(self, fault_id: str) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> int:
        count = len(self._faults)
        self._faults.clear()
        return count

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [s.describe(now) for s in self.active()]
