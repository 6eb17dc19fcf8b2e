"""What each deployment has been doing: sliding-window SLA stats and lifetime counters.

Everything here runs on the event loop thread and costs O(1) per recorded
attempt: one ring advance and one bisect. The window is a ring of one-second
slots whose totals are kept current, so a percentile is one pass over ~60
latency bins, never a pass over samples.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from routing.outcomes import Failure

Clock = Callable[[], float]

#: Latency bins in seconds: 1 ms to ~10 min, each 25% wider than the last, so a
#: percentile is exact to within 25% (what SLA weighting needs, at O(bins) cost).
LATENCY_BOUNDS: tuple[float, ...] = tuple(0.001 * 1.25**i for i in range(61))
BINS = len(LATENCY_BOUNDS) + 1  # the last bin holds everything slower
#: Prometheus buckets: every third bin bound (about x1.95 apart, 1 ms to ~11 min),
#: so the lifetime histogram needs no second bisect.
EXPORT_EVERY = 3
EXPORT_BOUNDS: tuple[float, ...] = LATENCY_BOUNDS[::EXPORT_EVERY]

#: Peak-EWMA decay time: how fast an old latency spike is forgotten.
EWMA_DECAY_SECONDS = 10.0
#: What a failed attempt weighs in the EWMA, at least.
FAILURE_PENALTY_SECONDS = 1.0


def latency_bin(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def quantile(bins: list[int], count: int, q: float) -> float | None:
    """The upper bound of the bin holding the q-quantile; None with no data."""
    if not count:
        return None
    rank = math.ceil(q * count)
    seen = 0
    for index, n in enumerate(bins):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS[min(index, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


class SlidingCounter:
    """A count over the last `window` one-second slots."""

    def __init__(self, window: int, clock: Clock) -> None:
        self._window = window
        self._clock = clock
        self._slots = [0] * window
        self._total = 0
        self._second = int(clock())

    def _advance(self, now: float) -> None:
        second = int(now)
        if second == self._second:
            return
        for step in range(1, min(second - self._second, self._window) + 1):
            index = (self._second + step) % self._window
            self._total -= self._slots[index]
            self._slots[index] = 0
        self._second = second

    def add(self, n: int = 1) -> None:
        self._advance(self._clock())
        self._slots[self._second % self._window] += n
        self._total += n

    def total(self) -> int:
        self._advance(self._clock())
        return self._total


class _Slot:
    __slots__ = ("attempts", "errors", "latency", "ttft")

    def __init__(self) -> None:
        self.attempts = 0
        self.errors = 0
        self.latency = [0] * BINS
        self.ttft = [0] * BINS

    def clear_into(self, totals: _Slot) -> None:
        """Subtract this slot from `totals` and reset it."""
        totals.attempts -= self.attempts
        totals.errors -= self.errors
        for bins, total_bins in ((self.latency, totals.latency), (self.ttft, totals.ttft)):
            for i, n in enumerate(bins):
                if n:
                    total_bins[i] -= n
                    bins[i] = 0
        self.attempts = self.errors = 0


@dataclass(frozen=True)
class WindowSnapshot:
    attempts: int
    errors: int
    p50: float | None
    p99: float | None
    ttft_p99: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.attempts if self.attempts else 0.0


class PeakEWMA:
    """Latency estimate that jumps up at once on a slow sample and decays slowly.

    The classic cost signal for latency-aware balancing (Finagle, Linkerd): a
    deployment that just got slow is avoided immediately, not after an average
    has caught up.
    """

    def __init__(self, now: float, decay: float = EWMA_DECAY_SECONDS) -> None:
        self._decay = decay
        self.value = 0.0
        self._stamp = now

    def add(self, sample: float, now: float) -> None:
        if sample > self.value:
            self.value = sample
        else:
            weight = math.exp(-max(now - self._stamp, 0.0) / self._decay)
            self.value = self.value * weight + sample * (1 - weight)
        self._stamp = now


class DeploymentStats:
    """One deployment's live statistics.

    The sliding window feeds SLA weighting and the admin view; the lifetime
    counters feed /metrics. An attempt is recorded once it has an outcome;
    cancelled attempts (hedge losers, clients that went away) record nothing but
    their end.
    """

    def __init__(self, window_seconds: int = 60, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._window = window_seconds
        self._slots = [_Slot() for _ in range(window_seconds)]
        self._totals = _Slot()
        self._second = int(clock())
        self.ewma = PeakEWMA(clock())
        self.in_flight = 0
        # lifetime counters, for /metrics
        self.outcomes: dict[str, int] = {}
        self.retries = 0
        self.hedges = 0
        self.latency_bins = [0] * BINS
        self.latency_sum = 0.0
        self.ttft_bins = [0] * BINS
        self.ttft_sum = 0.0

    def _slot(self, now: float) -> _Slot:
        second = int(now)
        if second != self._second:
            for step in range(1, min(second - self._second, self._window) + 1):
                self._slots[(self._second + step) % self._window].clear_into(self._totals)
            self._second = second
        return self._slots[second % self._window]

    def started(self) -> float:
        self.in_flight += 1
        return self.clock()

    def ended(self) -> None:
        self.in_flight -= 1

    def record_cancelled(self) -> None:
        """An attempt given up before its outcome (a hedge loser, a client gone): it
        counts as an attempt, but says nothing about the deployment's health."""
        self.outcomes["cancelled"] = self.outcomes.get("cancelled", 0) + 1

    def record(self, seconds: float, failure: Failure | None = None) -> None:
        """One finished attempt, successful when `failure` is None.

        Only successes and timeouts enter the latency statistics: a deployment that
        fails fast (connection refused) must not look fast. Failures feed the EWMA a
        penalty instead, so the latency strategy steers away from them too. Failures
        that are the caller's (a bad parameter) count neither way.
        """
        label = "ok" if failure is None else failure.label
        self.outcomes[label] = self.outcomes.get(label, 0) + 1
        if failure is not None and not failure.policy.counts_for_breaker:
            return
        now = self.clock()
        slot, totals = self._slot(now), self._totals
        slot.attempts += 1
        totals.attempts += 1
        if failure is None or failure is Failure.TIMEOUT:
            index = latency_bin(seconds)
            slot.latency[index] += 1
            totals.latency[index] += 1
            self.latency_bins[index] += 1
            self.latency_sum += seconds
        if failure is None:
            self.ewma.add(seconds, now)
        else:
            slot.errors += 1
            totals.errors += 1
            self.ewma.add(max(seconds, FAILURE_PENALTY_SECONDS), now)

    def record_ttft(self, seconds: float) -> None:
        slot = self._slot(self.clock())
        index = latency_bin(seconds)
        slot.ttft[index] += 1
        self._totals.ttft[index] += 1
        self.ttft_bins[index] += 1
        self.ttft_sum += seconds

    def snapshot(self) -> WindowSnapshot:
        self._slot(self.clock())
        totals = self._totals
        latency_count = sum(totals.latency)
        return WindowSnapshot(
            attempts=totals.attempts,
            errors=totals.errors,
            p50=quantile(totals.latency, latency_count, 0.5),
            p99=quantile(totals.latency, latency_count, 0.99),
            ttft_p99=quantile(totals.ttft, sum(totals.ttft), 0.99),
        )


def export_buckets(bins: list[int]) -> list[tuple[float, int]]:
    """Cumulative (upper bound, count) pairs at EXPORT_BOUNDS, then (+inf, all)."""
    buckets, running, next_bound = [], 0, 0
    for index, n in enumerate(bins[:-1]):
        running += n
        if index == next_bound:
            buckets.append((LATENCY_BOUNDS[index], running))
            next_bound += EXPORT_EVERY
    buckets.append((math.inf, running + bins[-1]))
    return buckets
