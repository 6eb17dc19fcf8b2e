"""Rolling windows (slo/windows.py) against a brute-force reference, and the tracker's
burn-rate alerts, budgets and reloads (slo/state.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.config import SloConfig
from slo.events import Outcome
from slo.state import SloTracker, counting_identity
from slo.windows import (
    STANDARD_WINDOWS_S,
    RollingWindows,
    scaled_threshold,
    window_label,
)
from tests.examples import examples
from tests.slo_support import make_outcome

T0 = 1_800_000_000.0
BUCKET = 10
PERIOD = 3600
SKEW = 5.0
TRACKED = (60, 300, 1800)


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reference:
    """The same bucketing as RollingWindows, computed from a plain list of events."""

    period_s: int
    budget: float
    head: int | None = None
    events: list[tuple[int, bool]] = field(default_factory=list)

    def _see(self, bucket: int) -> None:
        self.head = bucket if self.head is None else max(self.head, bucket)

    def add(self, t: float, good: bool, now: float) -> bool:
        if t > now + SKEW:
            t = now
        bucket = int(t // BUCKET)
        self._see(max(bucket, int(now // BUCKET)))
        assert self.head is not None
        if bucket <= self.head - self.period_s // BUCKET:
            return False
        self.events.append((bucket, good))
        return True

    def counts(self, window_s: int, now: float) -> tuple[int, int]:
        self._see(int(now // BUCKET))
        assert self.head is not None
        span = min(math.ceil(window_s / BUCKET), self.period_s // BUCKET)
        inside = [g for b, g in self.events if self.head - span < b <= self.head]
        return sum(inside), len(inside) - sum(inside)


# An operation: (clock step, then either an event at an offset from the clock or a query).
steps = st.one_of(
    st.integers(0, 30).map(lambda n: n * 0.5),
    st.integers(0, 400).map(float),
    st.sampled_from([PERIOD - 10.0, PERIOD + 0.0, 2 * PERIOD + 3.5]),
)
offsets = st.one_of(
    st.integers(-20, 20).map(lambda n: n * 0.5),
    st.integers(-PERIOD - 40, 0).map(float),
    st.floats(-2 * PERIOD, 30.0, allow_nan=False),
)
queries = st.sampled_from([10, 55, 60, 125, 300, 1800, 3000, 3600, 7200])
operations = st.lists(
    st.tuples(
        steps,
        st.one_of(
            st.tuples(st.just("add"), offsets, st.booleans()),
            st.tuples(st.just("query"), queries, st.just(True)),
        ),
    ),
    max_size=120,
)


@settings(max_examples=examples(150), deadline=None)
@given(operations)
def test_windows_match_a_brute_force_reference(ops: list) -> None:
    clock = Clock()
    budget = 0.01
    windows = RollingWindows(
        PERIOD, budget, bucket_s=BUCKET, windows=TRACKED, clock=clock, skew_s=SKEW
    )
    reference = Reference(PERIOD, budget)
    for step, (op, arg, good) in ops:
        clock.now += step
        if op == "add":
            t = clock.now + arg
            assert windows.add(t, good) == reference.add(t, good, clock.now)
            continue
        good_n, bad_n = reference.counts(arg, clock.now)
        assert windows.counts(arg) == (good_n, bad_n)
        assert windows.samples(arg) == good_n + bad_n
        ratio = bad_n / (good_n + bad_n) if good_n + bad_n else 0.0
        assert windows.error_ratio(arg) == ratio
        assert windows.burn_rate(arg) == ratio / budget
    for window_s in (*TRACKED, PERIOD):
        assert windows.counts(window_s) == reference.counts(window_s, clock.now)
    good_n, bad_n = reference.counts(PERIOD, clock.now)
    consumed = bad_n / (good_n + bad_n) / budget if good_n + bad_n else 0.0
    assert windows.budget_consumed() == consumed
    assert windows.budget_remaining() == 1 - consumed


def test_window_boundaries_are_bucket_edges() -> None:
    clock = Clock(T0)  # T0 is a multiple of 10: the head bucket starts at T0
    windows = RollingWindows(PERIOD, 0.01, windows=TRACKED, clock=clock)
    windows.add(T0 - 300, False)  # the first bucket outside the 5m window
    windows.add(T0 - 290, False)  # the oldest bucket inside it
    windows.add(T0 + 9.99, True)  # the head bucket's last instant
    assert windows.counts(300) == (1, 1)
    assert windows.counts(310) == (1, 2)
    clock.now = T0 + 10  # one bucket later, the oldest one leaves
    assert windows.counts(300) == (1, 0)


def test_out_of_order_future_and_expired_events() -> None:
    clock = Clock(T0)
    windows = RollingWindows(PERIOD, 0.01, windows=TRACKED, clock=clock)
    assert windows.add(T0 - 30, False)  # late, still in every window
    assert windows.add(T0 + 4, True)  # within the skew: kept where it is
    assert windows.add(T0 + 3600, True)  # far future: counted as now
    assert not windows.add(T0 - PERIOD, True)  # older than the period: dropped
    assert windows.counts(60) == (2, 1)
    clock.now = T0 + 20  # the +4 s event did not move the head past now
    assert windows.counts(60) == (2, 1)
    clock.now = T0 + PERIOD + 1  # everything has left the period
    assert windows.counts(PERIOD) == (0, 0)


def test_a_thirty_day_ring_is_bounded_and_reads_every_window() -> None:
    clock = Clock(T0)
    windows = RollingWindows(30 * 86400, 0.001, clock=clock)
    assert len(windows._good) == len(windows._bad) == 259_200
    windows.add(T0, False)
    windows.add(T0 - 2 * 86400, True)
    assert [windows.samples(w) for w in STANDARD_WINDOWS_S] == [1, 1, 1, 1, 1, 1, 2]
    assert windows.budget_consumed() == pytest.approx(0.5 / 0.001)
    clock.now += 31 * 86400  # a jump longer than the period clears everything
    assert windows.samples(30 * 86400) == 0
    assert windows.budget_consumed() == 0.0
    assert windows.budget_remaining() == 1.0


def test_windows_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="multiple"):
        RollingWindows(3605, 0.01)
    with pytest.raises(ValueError, match="budget"):
        RollingWindows(3600, 0.0)
    with pytest.raises(ValueError, match="positive"):
        RollingWindows(3600, 0.01).counts(0)


def test_thresholds_scale_with_the_period_and_windows_have_labels() -> None:
    assert scaled_threshold(14.4, 30) == 14.4
    assert scaled_threshold(14.4, 7) == pytest.approx(3.36)
    assert [window_label(w) for w in STANDARD_WINDOWS_S] == [
        "5m",
        "30m",
        "1h",
        "2h",
        "6h",
        "1d",
        "3d",
    ]
    assert window_label(45) == "45s"


# -- the tracker ---------------------------------------------------------------------

AVAILABILITY = SloConfig(name="chat-availability", kind="availability", objective=0.999)
LATENCY = SloConfig(
    name="chat-latency", kind="latency", objective=0.99, threshold_ms=2000, model_group="chat"
)


def outcome(t: float, status: int = 200, latency_ms: float = 100.0, **kw: object) -> Outcome:
    return make_outcome(time=t, status=status, latency_ms=latency_ms, **kw)


def steady(tracker: SloTracker, clock: Clock, seconds: int, error_every: int) -> None:
    """One request a second for `seconds`, every `error_every`-th a 502."""
    for i in range(seconds):
        clock.now += 1
        status = 502 if error_every and i % error_every == 0 else 200
        tracker.observe(outcome(clock.now, status))


def firing(tracker: SloTracker, name: str) -> list[tuple[str, float]]:
    status = next(s for s in tracker.snapshot() if s.name == name)
    return [(a.severity, a.threshold) for a in status.firing]


def test_two_percent_errors_at_three_nines_pages() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY], clock=clock)
    steady(tracker, clock, 2 * 3600, error_every=50)  # 2%: burn 20
    status = tracker.snapshot()[0]
    assert status.burn_rates[3600] == pytest.approx(20, rel=0.02)  # a bucket's precision
    assert firing(tracker, "chat-availability") == [
        ("page", 14.4),
        ("page", 6.0),
        ("ticket", 3.0),
        ("ticket", 1.0),
    ]
    assert status.severity == "page"


def test_a_slow_burn_only_tickets() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY], clock=clock)
    steady(tracker, clock, 2 * 3600, error_every=200)  # 0.5%: burn 5
    assert firing(tracker, "chat-availability") == [("ticket", 3.0), ("ticket", 1.0)]
    assert tracker.snapshot()[0].severity == "ticket"


def test_a_short_spike_alone_does_not_page() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY], clock=clock)
    steady(tracker, clock, 3600 - 30, error_every=0)
    for _ in range(30):
        clock.now += 1
        tracker.observe(outcome(clock.now, 503, error="server_shutting_down"))
    status = tracker.snapshot()[0]
    assert status.burn_rates[300] > 14.4  # the short window burns...
    assert status.burn_rates[3600] < 14.4  # ...the long one not enough
    assert not status.alerts[0].firing


def test_a_seven_day_period_scales_the_thresholds() -> None:
    clock = Clock()
    weekly = AVAILABILITY.model_copy(update={"period_days": 7})
    tracker = SloTracker([weekly], clock=clock)
    steady(tracker, clock, 2 * 3600, error_every=200)  # burn 5: above 14.4 * 7/30 = 3.36
    assert ("page", pytest.approx(3.36)) in firing(tracker, "chat-availability")


def test_budget_consumed_and_the_freeze() -> None:
    clock = Clock()
    slo = AVAILABILITY.model_copy(update={"objective": 0.99})
    tracker = SloTracker([slo], clock=clock)
    assert tracker.snapshot()[0].budget_consumed == 0.0
    steady(tracker, clock, 1000, error_every=1000)  # 1 bad of 1000, budget 10 of them
    status = tracker.snapshot()[0]
    assert status.samples == 1000
    assert status.budget_consumed == pytest.approx(0.1)
    assert status.budget_remaining == pytest.approx(0.9)
    assert tracker.over_budget() == []
    steady(tracker, clock, 100, error_every=1)  # 101 bad of 1100: 0.918 > 0.7
    assert [s.name for s in tracker.over_budget()] == [slo.name]
    steady(tracker, clock, 1000, error_every=10)  # overspent: remaining goes negative
    assert tracker.snapshot()[0].budget_remaining < 0


def test_observe_classifies_per_slo() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY, LATENCY], clock=clock)
    tracker.observe(outcome(clock.now, 200, latency_ms=3000))  # available, slow
    tracker.observe(outcome(clock.now, 200, latency_ms=9000, stream=True, ttft_ms=300))
    tracker.observe(outcome(clock.now, 502))  # bad availability, no latency verdict
    tracker.observe(outcome(clock.now, 429, error="rate_limit_exceeded"))  # excluded
    tracker.observe(outcome(clock.now, 200, model_group="embed"))  # not the latency SLO's
    by_name = {s.name: s for s in tracker.snapshot()}
    assert by_name["chat-availability"].windows[0].samples == 4
    assert by_name["chat-availability"].windows[0].bad == 1
    assert by_name["chat-latency"].windows[0].samples == 2
    assert by_name["chat-latency"].windows[0].bad == 1


def test_describe_is_json_ready() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY, LATENCY], clock=clock)
    tracker.observe(outcome(clock.now, 502))
    described = json.loads(json.dumps(tracker.describe()))
    first = described["slos"][0]
    assert first["name"] == "chat-availability"
    assert [w["window"] for w in first["windows"]] == [
        "5m",
        "30m",
        "1h",
        "2h",
        "6h",
        "1d",
        "3d",
        "30d",
    ]
    assert first["alerts"][0] == {
        "severity": "page",
        "threshold": 14.4,
        "long_window": "1h",
        "short_window": "5m",
        "long_burn_rate": pytest.approx(1000.0),
        "short_burn_rate": pytest.approx(1000.0),
        "firing": True,
    }
    assert first["severity"] == "page"


def test_reconfigure_keeps_what_still_counts_the_same() -> None:
    clock = Clock()
    tracker = SloTracker([AVAILABILITY, LATENCY], clock=clock)
    history = [
        outcome(clock.now - i, 502 if i % 10 == 0 else 200, 2500.0 * (i % 2)) for i in range(100)
    ]
    for item in history:
        tracker.observe(item)
    kept_windows = tracker.windows("chat-availability")
    looser = AVAILABILITY.model_copy(update={"objective": 0.99})
    slower = LATENCY.model_copy(update={"threshold_ms": 3000})
    extra = SloConfig(name="acme", kind="availability", objective=0.9, tenant="acme")
    fresh = tracker.reconfigure([looser, slower, extra])
    assert fresh == ["chat-latency", "acme"]
    assert counting_identity(looser) == counting_identity(AVAILABILITY)
    assert tracker.windows("chat-availability") is kept_windows  # objective only: kept
    by_name = {s.name: s for s in tracker.snapshot()}
    assert by_name["chat-availability"].samples == 100
    assert by_name["chat-availability"].budget_consumed == pytest.approx(0.1 / 0.01)
    assert by_name["chat-latency"].samples == 0
    assert by_name["acme"].samples == 0
    tracker.rebuild(history, names=fresh)
    by_name = {s.name: s for s in tracker.snapshot()}
    assert by_name["chat-latency"].samples == 90  # the 502s have no latency verdict
    assert by_name["chat-latency"].windows[-1].bad == 0  # 2500 ms is under 3000 now
    assert by_name["acme"].samples == 100
    assert tracker.windows("chat-availability") is kept_windows
    assert [s.name for s in tracker.slos] == ["chat-availability", "chat-latency", "acme"]
    with pytest.raises(KeyError):
        tracker.windows("gone")
