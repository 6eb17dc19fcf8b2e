"""Rolling good/bad counts of one SLO over its period, and the burn rates read from them.

Counts live in fixed time buckets (10 s by default) in a ring that holds exactly one
period: 30 days of 10 s buckets is 259,200 buckets, two `array('q')` of 2 MB each,
whatever the traffic. Each tracked window (the alert windows and the period) keeps a
running (good, bad) sum, updated as events land and as buckets leave it, so reading
every burn rate is O(windows), never O(buckets).

Time is bucketed: bucket `b` holds events with `b * bucket_s <= t < (b + 1) * bucket_s`.
The newest bucket (the *head*) is the latest of the clock and the newest event seen.
A window of `w` seconds is the head bucket and the `ceil(w / bucket_s) - 1` before it,
so it covers between `w - bucket_s` and `w` seconds of the past: the precision the
5-minute window needs. A window longer than the period is read over the period
(nothing older is kept).

Events may arrive a little out of order (several workers, a slow request finishing
after a fast one): they are counted in their own bucket and in every window that
still covers it. Events older than the period are dropped; events further in the
future than `skew_s` (a clock that disagrees) are counted as now.

The error budget is per request: over a window, the error ratio is bad / (good + bad)
and the burn rate is that ratio over the budget (1 - objective), so a burn rate of 1
spends the budget exactly over the period. `budget_consumed` is the period's burn
rate: the bad requests seen as a share of those the budget allows for the eligible
requests seen, bad / (error_budget * (good + bad)); 0 with no events.

The workbook's alert thresholds assume a 30-day period: 14.4x over 1 h spends 2% of a
30-day budget (14.4 * 1 h / 720 h). For another period the same share of budget per
window needs `threshold * period_days / 30` (`scaled_threshold`): a 7-day SLO pages at
3.36x over 1 h.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Iterable

from slo.config import STANDARD_ALERTS

DEFAULT_BUCKET_S = 10
#: How far in the future an event may be before it is counted as now instead.
DEFAULT_SKEW_S = 5.0
#: The period the workbook's thresholds (STANDARD_ALERTS) are written for.
WORKBOOK_PERIOD_DAYS = 30
#: Every window an alert reads (5m, 30m, 1h, 2h, 6h, 1d, 3d), shortest first.
STANDARD_WINDOWS_S: tuple[int, ...] = tuple(
    sorted({w for _, _, long_s, short_s in STANDARD_ALERTS for w in (long_s, short_s)})
)

Clock = Callable[[], float]


def scaled_threshold(threshold: float, period_days: int) -> float:
    """A workbook burn-rate threshold for a period other than 30 days: keeps the share
    of the period's budget that an alert's long window represents."""
    return threshold * period_days / WORKBOOK_PERIOD_DAYS


def window_label(window_s: int) -> str:
    """`300` -> "5m", `86400` -> "1d": the names the API and metrics use."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if window_s % size == 0:
            return f"{window_s // size}{unit}"
    return f"{window_s}s"


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


class RollingWindows:
    """(good, bad) counts of one SLO in buckets over its period, with running sums for
    the tracked windows (module docstring: the bucketing and every definition)."""

    def __init__(
        self,
        period_s: int,
        error_budget: float,
        *,
        bucket_s: int = DEFAULT_BUCKET_S,
        windows: Iterable[int] = STANDARD_WINDOWS_S,
        clock: Clock = time.time,
        skew_s: float = DEFAULT_SKEW_S,
    ) -> None:
        if bucket_s <= 0 or period_s <= 0 or period_s % bucket_s:
            raise ValueError("the period must be a positive multiple of the bucket size")
        if not 0 < error_budget <= 1:
            raise ValueError("the error budget must be in (0, 1]")
        self.period_s = period_s
        #: 1 - objective; mutable: an objective change keeps the counts (slo/state.py).
        self.error_budget = error_budget
        self.bucket_s = bucket_s
        self.skew_s = skew_s
        self._clock = clock
        self._n = period_s // bucket_s
        self._good = _zeros(self._n)
        self._bad = _zeros(self._n)
        self._head: int | None = None
        tracked = sorted({*windows, period_s})
        #: window seconds -> index into the span and sum lists
        self._index = {w: i for i, w in enumerate(tracked)}
        self._spans = [self._span(w) for w in tracked]
        self._sum_good = [0] * len(tracked)
        self._sum_bad = [0] * len(tracked)

    # -- writing -----------------------------------------------------------------

    def add(self, outcome_time: float, good: bool, *, now: float | None = None) -> bool:
        """Count one event; False when it was older than the period and dropped.
        `now` saves a clock read when the caller has one."""
        if now is None:
            now = self._clock()
        if outcome_time > now + self.skew_s:
            outcome_time = now
        bucket = int(outcome_time // self.bucket_s)
        self._advance(max(bucket, int(now // self.bucket_s)))
        head = self._head
        assert head is not None
        if bucket <= head - self._n:
            return False
        (self._good if good else self._bad)[bucket % self._n] += 1
        if bucket == head:
            # The common case, one increment: the head bucket is in every window, and
            # its counts join the running sums when the head moves on (`_advance`).
            return True
        sums = self._sum_good if good else self._sum_bad
        for i, span in enumerate(self._spans):
            if bucket > head - span:
                sums[i] += 1
        return True

    def _advance(self, bucket: int) -> None:
        """Move the head to `bucket`: buckets leaving each window leave its sums, and
        the ring slots of buckets now older than the period are cleared for reuse."""
        head = self._head
        if head is None or bucket - head >= self._n:
            if head is not None:
                self._good = _zeros(self._n)
                self._bad = _zeros(self._n)
                self._sum_good = [0] * len(self._spans)
                self._sum_bad = [0] * len(self._spans)
            self._head = bucket
            return
        delta = bucket - head
        if delta <= 0:
            return
        slot = head % self._n
        head_good, head_bad = self._good[slot], self._bad[slot]
        for i in range(len(self._spans)):  # the old head's counts join the sums
            self._sum_good[i] += head_good
            self._sum_bad[i] += head_bad
        for i, span in enumerate(self._spans):
            if delta >= span:
                self._sum_good[i] = self._sum_bad[i] = 0
            else:
                start = head - span + 1
                self._sum_good[i] -= self._range_sum(self._good, start, start + delta)
                self._sum_bad[i] -= self._range_sum(self._bad, start, start + delta)
        self._clear(head + 1, bucket + 1)
        self._head = bucket

    def _slices(self, start: int, end: int) -> list[tuple[int, int]]:
        """Ring slot ranges of absolute buckets [start, end), at most one period long."""
        first = start % self._n
        last = first + (end - start)
        if last <= self._n:
            return [(first, last)]
        return [(first, self._n), (0, last - self._n)]

    def _range_sum(self, counts: array[int], start: int, end: int) -> int:
        return sum(sum(counts[a:b]) for a, b in self._slices(start, end))

    def _clear(self, start: int, end: int) -> None:
        for a, b in self._slices(start, end):
            self._good[a:b] = _zeros(b - a)
            self._bad[a:b] = _zeros(b - a)

    # -- reading -----------------------------------------------------------------

    def _span(self, window_s: float) -> int:
        if window_s <= 0:
            raise ValueError("a window must be positive")
        return min(math.ceil(window_s / self.bucket_s), self._n)

    def counts(self, window_s: int, *, now: float | None = None) -> tuple[int, int]:
        """(good, bad) over the window ending at `now` (default: the clock)."""
        self._advance(int((self._clock() if now is None else now) // self.bucket_s))
        i = self._index.get(window_s)
        head = self._head
        if i is not None:
            if head is None:
                return 0, 0
            slot = head % self._n  # the running sums leave out the head bucket
            return self._sum_good[i] + self._good[slot], self._sum_bad[i] + self._bad[slot]
        assert head is not None
        start = head - self._span(window_s) + 1
        return (
            self._range_sum(self._good, start, head + 1),
            self._range_sum(self._bad, start, head + 1),
        )

    def samples(self, window_s: int, *, now: float | None = None) -> int:
        """Eligible requests with a verdict (good + bad) over the window."""
        good, bad = self.counts(window_s, now=now)
        return good + bad

    def error_ratio(self, window_s: int, *, now: float | None = None) -> float:
        """bad / (good + bad) over the window; 0 with no samples (nothing is burning)."""
        good, bad = self.counts(window_s, now=now)
        return bad / (good + bad) if good + bad else 0.0

    def burn_rate(self, window_s: int, *, now: float | None = None) -> float:
        """How many times faster than sustainable the budget burns over the window."""
        return self.error_ratio(window_s, now=now) / self.error_budget

    def budget_consumed(self, *, now: float | None = None) -> float:
        """bad / (error_budget * (good + bad)) over the period; can exceed 1."""
        return self.burn_rate(self.period_s, now=now)

    def budget_remaining(self, *, now: float | None = None) -> float:
        """1 - budget_consumed: negative once the budget is overspent."""
        return 1.0 - self.budget_consumed(now=now)
