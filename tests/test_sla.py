"""SLA record -> weight factor (routing/sla.py), per the formula in its docstring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.config import SLA
from routing.sla import MIN_FACTOR, error_factor, latency_factor, sla_factor
from routing.stats import LATENCY_BOUNDS, WindowSnapshot

MIN_SAMPLES = 20
EVERY_TARGET = SLA(p99_latency_ms=500, max_error_rate=0.05, ttft_ms=200)


def window(
    attempts: int = 100,
    errors: int = 0,
    p99: float | None = None,
    ttft_p99: float | None = None,
) -> WindowSnapshot:
    return WindowSnapshot(attempts=attempts, errors=errors, p50=p99, p99=p99, ttft_p99=ttft_p99)


def factor(sla: SLA, snap: WindowSnapshot, min_samples: int = MIN_SAMPLES) -> float:
    return sla_factor(sla, snap, min_samples)


# -- the formula ----------------------------------------------------------------------


def test_no_targets_means_full_weight() -> None:
    assert factor(SLA(), window(errors=100, p99=600.0, ttft_p99=600.0)) == 1.0


def test_targets_met_means_full_weight() -> None:
    met = window(errors=5, p99=0.5, ttft_p99=0.2)
    assert factor(EVERY_TARGET, met) == 1.0
    assert factor(EVERY_TARGET, window(errors=0, p99=0.001, ttft_p99=None)) == 1.0


@pytest.mark.parametrize(("attempts", "expected"), [(0, 1.0), (19, 1.0), (20, 0.25), (21, 0.25)])
def test_factors_apply_only_from_min_samples_attempts(attempts: int, expected: float) -> None:
    assert factor(SLA(p99_latency_ms=100), window(attempts=attempts, p99=0.2)) == expected


@pytest.mark.parametrize(
    ("target_ms", "observed", "expected"),
    [
        (100, 0.2, 0.25),  # twice the target quarters the weight
        (100, 0.4, 0.0625),
        (300, 0.5, 0.36),
        (100, 0.1, 1.0),
        (100, 0.05, 1.0),  # faster than the target is not a bonus
        (100, None, 1.0),  # nothing measured
        (100, 0.0, 1.0),
    ],
)
def test_latency_factor(target_ms: float, observed: float | None, expected: float) -> None:
    assert latency_factor(target_ms, observed) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("max_rate", "observed", "expected"),
    [
        (0.05, 0.0, 1.0),
        (0.05, 0.05, 1.0),
        (0.05, 0.11, 0.5),
        (0.05, 0.5, 0.06 / 0.51),  # ten times the allowed rate: about an eighth
        (0.0, 0.01, 0.5),  # a 0% target still means something
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 1.0),
    ],
)
def test_error_factor(max_rate: float, observed: float, expected: float) -> None:
    assert error_factor(max_rate, observed) == pytest.approx(expected)


def test_ten_times_the_error_target_divides_by_about_eight() -> None:
    assert 7.5 < 1 / error_factor(0.05, 0.5) < 9.0


def test_ttft_uses_the_ttft_percentile() -> None:
    sla = SLA(ttft_ms=200)
    assert factor(sla, window(p99=10.0, ttft_p99=0.4)) == pytest.approx(0.25)
    assert factor(sla, window(p99=10.0, ttft_p99=None)) == 1.0


def test_the_factors_multiply() -> None:
    # latency 0.25 x ttft 0.25 x errors 0.5
    snap = window(attempts=100, errors=11, p99=1.0, ttft_p99=0.4)
    assert factor(EVERY_TARGET, snap) == pytest.approx(0.25 * 0.25 * (0.06 / 0.12))


def test_each_factor_and_the_product_floor_at_min_factor() -> None:
    assert factor(SLA(p99_latency_ms=1), window(p99=600.0)) == MIN_FACTOR
    assert factor(SLA(max_error_rate=0.0), window(errors=100)) == MIN_FACTOR
    assert factor(EVERY_TARGET, window(errors=100, p99=600.0, ttft_p99=600.0)) == MIN_FACTOR
    # two factors just above the floor multiply below it: the product floors too
    assert factor(EVERY_TARGET, window(p99=3.3, ttft_p99=1.3)) == MIN_FACTOR


# -- properties -----------------------------------------------------------------------

#: Percentiles as the stats report them: None, or 1 ms and up (a bin's upper bound).
seconds = st.one_of(st.none(), st.sampled_from(LATENCY_BOUNDS), st.floats(0.001, 1000.0))
targets = st.builds(
    SLA,
    p99_latency_ms=st.one_of(st.none(), st.floats(1.0, 60_000.0)),
    max_error_rate=st.one_of(st.none(), st.floats(0.0, 1.0)),
    ttft_ms=st.one_of(st.none(), st.floats(1.0, 60_000.0)),
)


@st.composite
def windows(draw: st.DrawFn) -> WindowSnapshot:
    attempts = draw(st.integers(0, 10_000))
    return window(attempts, draw(st.integers(0, attempts)), draw(seconds), draw(seconds))


@given(targets, windows(), st.integers(1, 100))
def test_the_factor_stays_within_min_factor_and_one(
    sla: SLA, snap: WindowSnapshot, min_samples: int
) -> None:
    assert MIN_FACTOR <= factor(sla, snap, min_samples) <= 1.0


def overshoot(target: float | None, observed: float | None) -> float:
    """How far `observed` exceeds `target`: 0 when met or when either is unknown."""
    if target is None or observed is None:
        return 0.0
    return max(0.0, observed - target)


@given(targets, windows())
def test_full_weight_exactly_when_every_target_is_met(sla: SLA, snap: WindowSnapshot) -> None:
    ms = [None if t is None else t / 1000 for t in (sla.p99_latency_ms, sla.ttft_ms)]
    missed_by = max(
        overshoot(ms[0], snap.p99),
        overshoot(ms[1], snap.ttft_p99),
        overshoot(sla.max_error_rate, snap.error_rate),
    )
    if missed_by == 0.0 or snap.attempts < MIN_SAMPLES:
        assert factor(sla, snap) == 1.0
    elif missed_by > 1e-9:
        assert factor(sla, snap) < 1.0


@given(targets, windows(), st.floats(0.001, 1000.0), st.floats(0.001, 1000.0))
def test_a_slower_p99_never_raises_the_factor(
    sla: SLA, snap: WindowSnapshot, a: float, b: float
) -> None:
    faster, slower = sorted((a, b))
    for field in ("p99", "ttft_p99"):
        fast = WindowSnapshot(**{**snap.__dict__, field: faster})
        slow = WindowSnapshot(**{**snap.__dict__, field: slower})
        assert factor(sla, slow) <= factor(sla, fast)


@given(targets, st.integers(1, 10_000), st.data())
def test_more_errors_never_raise_the_factor(sla: SLA, attempts: int, data: st.DataObject) -> None:
    fewer, more = sorted(data.draw(st.lists(st.integers(0, attempts), min_size=2, max_size=2)))
    p99 = data.draw(seconds)
    assert factor(sla, window(attempts, more, p99)) <= factor(sla, window(attempts, fewer, p99))


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_error_factor_is_non_increasing_in_the_observed_rate(
    max_rate: float, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    assert 0.0 < error_factor(max_rate, high) <= error_factor(max_rate, low) <= 1.0
