"""Sliding-window deployment statistics (routing/stats.py), on a fake clock."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.outcomes import Failure
from routing.stats import (
    EXPORT_BOUNDS,
    FAILURE_PENALTY_SECONDS,
    LATENCY_BOUNDS,
    DeploymentStats,
    PeakEWMA,
    export_buckets,
    latency_bin,
    quantile,
)
from tests.examples import examples

WINDOW = 10
START = 1000.0
#: Failures the caller caused: they say nothing about the deployment.
NOT_COUNTED = [f for f in Failure if not f.policy.counts_for_breaker]
#: Failures that count against the deployment but carry no usable latency.
FAST_FAILURES = [f for f in Failure if f.policy.counts_for_breaker and f is not Failure.TIMEOUT]

latencies = st.floats(min_value=0.001, max_value=600.0, allow_nan=False)
outcomes = st.sampled_from([None, *Failure])


class Rig:
    """DeploymentStats on a fake clock."""

    def __init__(self, window: int = WINDOW) -> None:
        self.now = START
        self.stats = DeploymentStats(window, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def record(self, seconds: float, failure: Failure | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.stats.record(seconds, failure)

    def counts(self) -> tuple[int, int]:
        snap = self.stats.snapshot()
        return snap.attempts, snap.errors


def bound(seconds: float) -> float:
    """What a percentile reports for a sample: the upper bound of its bin."""
    return LATENCY_BOUNDS[latency_bin(seconds)]


def nearest_rank(samples: list[float], q: float) -> float:
    """The q-quantile by brute force: the ceil(q*n)-th smallest sample."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- the window -----------------------------------------------------------------------


def test_an_empty_window_has_no_percentiles() -> None:
    snap = Rig().stats.snapshot()
    assert (snap.attempts, snap.errors, snap.p50, snap.p99, snap.ttft_p99) == (
        0,
        0,
        None,
        None,
        None,
    )
    assert snap.error_rate == 0.0


def test_a_sample_leaves_the_window_after_window_seconds() -> None:
    rig = Rig()
    rig.advance(0.5)
    rig.record(0.2)
    rig.record(0.2, Failure.SERVER)
    rig.advance(WINDOW - 1)  # the sample's second is still the oldest in the window
    snap = rig.stats.snapshot()
    assert (snap.attempts, snap.errors, snap.p50, snap.error_rate) == (2, 1, bound(0.2), 0.5)
    rig.advance(1.0)
    snap = rig.stats.snapshot()
    assert (snap.attempts, snap.errors, snap.p50, snap.p99) == (0, 0, None, None)
    # the lifetime counters keep everything
    assert rig.stats.outcomes == {"ok": 1, "server": 1}
    assert sum(rig.stats.latency_bins) == 1


def test_samples_age_out_one_second_at_a_time() -> None:
    rig = Rig()
    for seconds in (0.01, 0.1, 1.0):
        rig.record(seconds)
        rig.advance(3.0)
    seen = []
    for _ in range(4):
        snap = rig.stats.snapshot()
        seen.append((snap.attempts, snap.p50, snap.p99))
        rig.advance(3.0)
    assert seen == [
        (3, bound(0.1), bound(1.0)),
        (2, bound(0.1), bound(1.0)),
        (1, bound(1.0), bound(1.0)),
        (0, None, None),
    ]


def test_a_long_idle_gap_empties_the_window_without_negative_totals() -> None:
    rig = Rig()
    rig.record(0.5, times=5)
    rig.record(0.5, Failure.TIMEOUT, times=2)
    rig.advance(10_000.0)
    assert rig.counts() == (0, 0)
    assert min(rig.stats._totals.latency) == 0
    rig.record(0.5)
    assert rig.counts() == (1, 0)
    assert rig.stats.snapshot().p99 == bound(0.5)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.3, 1.0, 2.5, 7.0, 25.0]), latencies, outcomes),
        max_size=60,
    )
)
def test_the_window_matches_a_brute_force_count(
    steps: list[tuple[float, float, Failure | None]],
) -> None:
    rig = Rig()
    log: list[tuple[int, float, Failure | None]] = []
    for gap, seconds, failure in steps:
        rig.advance(gap)
        rig.record(seconds, failure)
        log.append((int(rig.now), seconds, failure))
        current = [
            (s, f)
            for second, s, f in log
            if second > int(rig.now) - WINDOW and (f is None or f.policy.counts_for_breaker)
        ]
        timed = [s for s, f in current if f is None or f is Failure.TIMEOUT]
        snap = rig.stats.snapshot()
        assert snap.attempts == len(current)
        assert snap.errors == sum(f is not None for _, f in current)
        assert snap.p50 == (bound(nearest_rank(timed, 0.5)) if timed else None)
        assert snap.p99 == (bound(nearest_rank(timed, 0.99)) if timed else None)
        totals = rig.stats._totals
        assert min(totals.attempts, totals.errors, *totals.latency) >= 0


# -- percentiles ----------------------------------------------------------------------


@settings(max_examples=examples(300))
@given(st.lists(latencies, min_size=1, max_size=300))
def test_percentiles_are_the_upper_bound_of_the_true_quantiles_bin(samples: list[float]) -> None:
    rig = Rig()
    for seconds in samples:
        rig.record(seconds)
    snap = rig.stats.snapshot()
    for q, returned in ((0.5, snap.p50), (0.99, snap.p99)):
        true = nearest_rank(samples, q)
        assert returned == bound(true)
        assert returned is not None
        assert true <= returned <= true * 1.25 * (1 + 1e-12)


@pytest.mark.parametrize("index", [0, 1, 10, 40, 60])
def test_a_sample_on_a_bin_bound_belongs_to_that_bin(index: int) -> None:
    on = LATENCY_BOUNDS[index]
    assert latency_bin(on) == index
    assert latency_bin(math.nextafter(on, math.inf)) == index + 1
    assert latency_bin(math.nextafter(on, 0.0)) == index


def test_the_bins_span_1ms_to_ten_minutes_25_percent_apart() -> None:
    assert LATENCY_BOUNDS[0] == 0.001
    assert 600 < LATENCY_BOUNDS[-1] < 700
    ratios = [b / a for a, b in itertools.pairwise(LATENCY_BOUNDS)]
    assert ratios == pytest.approx([1.25] * (len(LATENCY_BOUNDS) - 1))


def test_quantile_edges() -> None:
    bins = [0] * (len(LATENCY_BOUNDS) + 1)
    assert quantile(bins, 0, 0.99) is None
    bins[-1] = 3  # slower than the last bound: reported as the last bound
    assert quantile(bins, 3, 0.5) == LATENCY_BOUNDS[-1]
    bins[2] = 97
    assert quantile(bins, 100, 0.97) == LATENCY_BOUNDS[2]
    assert quantile(bins, 100, 0.98) == LATENCY_BOUNDS[-1]


# -- what each outcome feeds ----------------------------------------------------------


@pytest.mark.parametrize("failure", NOT_COUNTED, ids=lambda f: f.label)
def test_failures_that_are_the_callers_count_neither_way(failure: Failure) -> None:
    rig = Rig()
    rig.record(0.05, failure, times=3)
    assert rig.counts() == (0, 0)
    assert rig.stats.snapshot().p99 is None
    assert rig.stats.ewma.value == 0.0
    assert sum(rig.stats.latency_bins) == 0
    assert rig.stats.outcomes == {failure.label: 3}


@pytest.mark.parametrize("failure", FAST_FAILURES, ids=lambda f: f.label)
def test_fast_failures_are_errors_without_latency(failure: Failure) -> None:
    rig = Rig()
    rig.record(0.002, failure)
    snap = rig.stats.snapshot()
    assert (snap.attempts, snap.errors, snap.error_rate) == (1, 1, 1.0)
    assert (snap.p50, snap.p99) == (None, None)
    assert (sum(rig.stats.latency_bins), rig.stats.latency_sum) == (0, 0.0)
    assert rig.stats.ewma.value == FAILURE_PENALTY_SECONDS  # a fast failure must not look fast
    assert rig.stats.outcomes == {failure.label: 1}


def test_a_slow_failure_weighs_its_own_time_in_the_ewma() -> None:
    rig = Rig()
    rig.record(3.0, Failure.CONNECT)
    assert rig.stats.ewma.value == 3.0


def test_a_connect_failure_does_not_hide_the_latency_of_successes() -> None:
    rig = Rig()
    rig.record(2.0, times=10)
    rig.record(0.001, Failure.CONNECT, times=90)
    snap = rig.stats.snapshot()
    assert (snap.attempts, snap.errors) == (100, 90)
    assert snap.p50 == snap.p99 == bound(2.0)


def test_a_timeout_enters_the_latency_statistics() -> None:
    rig = Rig()
    rig.record(30.0, Failure.TIMEOUT)
    snap = rig.stats.snapshot()
    assert (snap.attempts, snap.errors, snap.p99) == (1, 1, bound(30.0))
    assert rig.stats.latency_sum == 30.0
    assert rig.stats.latency_bins[latency_bin(30.0)] == 1
    assert rig.stats.ewma.value == 30.0


def test_successes_feed_latency_and_lifetime_histogram() -> None:
    rig = Rig()
    rig.record(0.25)
    rig.record(0.75)
    assert rig.stats.outcomes == {"ok": 2}
    assert rig.stats.latency_sum == 1.0
    assert rig.stats.latency_bins[latency_bin(0.25)] == 1
    assert rig.stats.latency_bins[latency_bin(0.75)] == 1
    assert rig.counts() == (2, 0)


def test_ttft_has_its_own_percentile_and_window() -> None:
    rig = Rig()
    rig.stats.record_ttft(0.4)
    rig.stats.record_ttft(0.04)
    snap = rig.stats.snapshot()
    assert (snap.ttft_p99, snap.attempts, snap.p99) == (bound(0.4), 0, None)
    assert (sum(rig.stats.ttft_bins), rig.stats.ttft_sum) == (2, pytest.approx(0.44))
    rig.advance(WINDOW)
    assert rig.stats.snapshot().ttft_p99 is None
    assert sum(rig.stats.ttft_bins) == 2


def test_in_flight_counts_started_attempts_until_they_end() -> None:
    rig = Rig()
    assert rig.stats.started() == START
    rig.advance(1.5)
    assert rig.stats.started() == START + 1.5
    assert rig.stats.in_flight == 2
    rig.stats.ended()
    assert rig.stats.in_flight == 1
    rig.stats.ended()
    assert rig.stats.in_flight == 0


# -- peak EWMA ------------------------------------------------------------------------


def test_peak_ewma_jumps_up_at_once() -> None:
    ewma = PeakEWMA(now=0.0)
    ewma.add(0.1, now=0.0)
    ewma.add(5.0, now=0.001)
    assert ewma.value == 5.0


def test_peak_ewma_decays_towards_lower_samples() -> None:
    ewma = PeakEWMA(now=0.0, decay=10.0)
    ewma.add(4.0, now=0.0)
    ewma.add(1.0, now=10.0)
    assert ewma.value == pytest.approx(4.0 * math.exp(-1) + 1.0 * (1 - math.exp(-1)))
    history = [ewma.value]
    for step in range(2, 12):
        ewma.add(1.0, now=10.0 * step)
        history.append(ewma.value)
    assert history == sorted(history, reverse=True)
    assert len(set(history)) == len(history)
    assert 1.0 < history[-1] < 1.0001


def test_peak_ewma_forgets_slower_the_less_time_passed() -> None:
    quick, slow = PeakEWMA(0.0), PeakEWMA(0.0)
    for ewma, later in ((quick, 1.0), (slow, 30.0)):
        ewma.add(2.0, now=0.0)
        ewma.add(0.5, now=later)
    assert 0.5 < slow.value < quick.value < 2.0


@given(st.lists(st.tuples(latencies, st.floats(0.0, 100.0)), min_size=1, max_size=50))
def test_peak_ewma_never_reads_below_the_last_sample_or_above_the_peak(
    steps: list[tuple[float, float]],
) -> None:
    ewma, now, peak = PeakEWMA(0.0), 0.0, max(s for s, _ in steps)
    for sample, gap in steps:
        now += gap
        ewma.add(sample, now)
        assert ewma.value == pytest.approx(max(ewma.value, sample), rel=1e-12)
        assert ewma.value == pytest.approx(min(ewma.value, peak), rel=1e-12)


# -- Prometheus export ----------------------------------------------------------------


@given(st.lists(st.one_of(latencies, st.floats(700.0, 10_000.0)), max_size=200))
def test_export_buckets_are_cumulative_le_counts(samples: list[float]) -> None:
    rig = Rig()
    for seconds in samples:
        rig.record(seconds)
    buckets = export_buckets(rig.stats.latency_bins)
    assert [b for b, _ in buckets] == [*EXPORT_BOUNDS, math.inf]
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)
    assert buckets[-1] == (math.inf, len(samples))
    for le, n in buckets:
        assert n == sum(s <= le for s in samples)


def test_export_buckets_of_nothing() -> None:
    buckets = export_buckets([0] * (len(LATENCY_BOUNDS) + 1))
    assert len(buckets) == len(EXPORT_BOUNDS) + 1
    assert {n for _, n in buckets} == {0}
