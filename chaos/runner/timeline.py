"""The run second by second: what the progress line prints and the chart draws.

Requests are counted in the second they completed (what an observer saw live),
while probes count them in the phase they were sent in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chaos.runner.samples import Sample
from chaos.runner.stats import percentile, ratio


@dataclass(frozen=True)
class Point:
    #: Seconds since the run started, at the end of this second.
    t: float
    phase: str
    requests: int
    success_ratio: float | None
    p50_ms: float | None
    p99_ms: float | None
    #: fault -> responses that said it was injected, in this second.
    injected: Mapping[str, int] = field(default_factory=dict)
    #: deployment -> breaker state, polled from /admin/routing; None if unavailable.
    breakers: Mapping[str, str] | None = None
    in_flight: int = 0

    @property
    def open_breakers(self) -> list[str]:
        return sorted(d for d, state in (self.breakers or {}).items() if state == "open")


def summarise(
    t: float,
    phase: str,
    samples: Sequence[Sample],
    breakers: Mapping[str, str] | None,
    in_flight: int,
) -> Point:
    expected = [s for s in samples if s.expected_ok]
    latencies = [s.latency_ms for s in samples if s.ok]
    injected: Counter[str] = Counter()
    for sample in samples:
        injected.update(sample.faults)
    return Point(
        t=round(t, 3),
        phase=phase,
        requests=len(samples),
        success_ratio=ratio(sum(s.ok for s in expected), len(expected)),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        injected=dict(injected),
        breakers=breakers,
        in_flight=in_flight,
    )


class Timeline:
    """Cuts the stream of completed samples into one Point per tick."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self._seen = 0

    def tick(
        self,
        t: float,
        phase: str,
        completed: Sequence[Sample],
        breakers: Mapping[str, str] | None,
        in_flight: int,
    ) -> Point:
        fresh = completed[self._seen :]
        self._seen = len(completed)
        point = summarise(t, phase, fresh, breakers, in_flight)
        self.points.append(point)
        return point
