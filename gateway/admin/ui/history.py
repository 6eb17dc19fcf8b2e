"""The admin page's sparklines: a short, bounded history of every SLO's burn.

The SLO windows (slo/windows.py) answer "how much now", not "how it went": the page
wants a line. This ring keeps, per configured SLO, at most `POINTS` samples of its
shortest window's burn rate and its budget consumed, at most one every
`SAMPLE_EVERY_S` seconds, taken when the page's state is read (so it covers the time
someone was looking, up to `POINTS * SAMPLE_EVERY_S` seconds: 5 minutes). SLOs no
longer configured are dropped at the next sample, so the memory is bounded by the
config: 60 points of 3 floats per SLO.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from slo.state import SloStatus

#: Samples kept per SLO.
POINTS = 60
#: Seconds between two samples, at least.
SAMPLE_EVERY_S = 5.0

#: (unix seconds, shortest window's burn rate, budget consumed).
Point = tuple[float, float, float]


class BurnHistory:
    def __init__(self, points: int = POINTS, every_s: float = SAMPLE_EVERY_S) -> None:
        self.points = points
        self.every_s = every_s
        self._last: float | None = None
        self._rings: dict[str, deque[Point]] = {}

    def sample(self, statuses: Sequence[SloStatus], now: float) -> None:
        """Add a point per SLO, unless the last sample is younger than `every_s`."""
        if self._last is not None and 0 <= now - self._last < self.every_s:
            return
        self._last = now
        rings: dict[str, deque[Point]] = {}
        for status in statuses:
            ring = self._rings.get(status.name) or deque(maxlen=self.points)
            burn = status.windows[0].burn_rate if status.windows else 0.0
            ring.append((round(now, 3), round(burn, 4), round(status.budget_consumed, 4)))
            rings[status.name] = ring
        self._rings = rings

    def of(self, name: str) -> list[Point]:
        """The SLO's points, oldest first."""
        ring = self._rings.get(name)
        return list(ring) if ring is not None else []
