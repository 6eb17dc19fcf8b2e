"""The gateway-wide retry budget (routing/budget.py), on a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.budget import RetryBudget
from routing.config import RetryBudgetSettings
from routing.stats import SlidingCounter
from tests.examples import examples


class Rig:
    """A retry budget on a fake clock."""

    def __init__(self, ratio: float = 0.2, min_per_second: float = 1.0, window: float = 10) -> None:
        self.now = 500.0
        config = RetryBudgetSettings(
            ratio=ratio, min_per_second=min_per_second, window_seconds=window
        )
        self.budget = RetryBudget(config, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def requests(self, n: int) -> None:
        for _ in range(n):
            self.budget.record_request()

    def spend(self, n: int) -> list[bool]:
        return [self.budget.try_spend() for _ in range(n)]


@pytest.mark.parametrize(
    ("ratio", "floor", "window", "requests", "expected"),
    [
        (0.2, 1.0, 10, 0, 10.0),
        (0.2, 1.0, 10, 50, 20.0),
        (0.5, 0.0, 10, 7, 3.5),
        (0.0, 2.0, 5, 1000, 10.0),
        (1.0, 0.5, 4, 3, 5.0),
        (0.2, 1.0, 2.5, 0, 3.0),  # the window is whole seconds, rounded up
    ],
)
def test_allowance_is_floor_plus_ratio_of_requests(
    ratio: float, floor: float, window: float, requests: int, expected: float
) -> None:
    rig = Rig(ratio, floor, window)
    rig.requests(requests)
    assert rig.budget.allowance() == pytest.approx(expected)


def test_spending_stops_at_the_allowance_and_counts_denials() -> None:
    rig = Rig(ratio=0.5, min_per_second=0.0)
    rig.requests(6)
    assert rig.spend(5) == [True, True, True, False, False]
    assert rig.budget.denied == 2
    rig.requests(2)  # allowance 4: one more
    assert rig.spend(2) == [True, False]
    assert rig.budget.state() == {
        "requests_in_window": 8,
        "retries_in_window": 4,
        "allowance": 4.0,
        "denied_total": 3,
    }


def test_a_fractional_allowance_rounds_down() -> None:
    rig = Rig(ratio=0.2, min_per_second=0.0)
    rig.requests(9)  # allowance 1.8
    assert rig.spend(2) == [True, False]


def test_a_quiet_gateway_can_still_retry_from_the_floor() -> None:
    rig = Rig(ratio=0.2, min_per_second=0.5, window=4)
    assert rig.spend(3) == [True, True, False]


def test_zero_budget_denies_everything() -> None:
    rig = Rig(ratio=0.0, min_per_second=0.0)
    rig.requests(100)
    assert rig.spend(3) == [False] * 3
    assert rig.budget.denied == 3


def test_requests_and_retries_expire_with_the_window() -> None:
    rig = Rig(ratio=1.0, min_per_second=0.0, window=10)
    rig.requests(4)
    rig.advance(5.0)
    rig.requests(2)
    assert rig.spend(6) == [True] * 6
    assert rig.spend(1) == [False]
    rig.advance(5.0)  # the first four requests are gone, the six retries are not
    assert rig.budget.state()["requests_in_window"] == 2
    assert rig.budget.state()["retries_in_window"] == 6
    assert rig.spend(1) == [False]
    rig.advance(5.0)  # everything is gone
    assert rig.budget.state() == {
        "requests_in_window": 0,
        "retries_in_window": 0,
        "allowance": 0.0,
        "denied_total": 2,
    }
    rig.requests(1)
    assert rig.spend(2) == [True, False]


def test_the_denied_counter_never_resets() -> None:
    rig = Rig(ratio=0.0, min_per_second=0.0)
    rig.spend(2)
    rig.advance(1000.0)
    rig.spend(1)
    assert rig.budget.denied == 3


@pytest.mark.parametrize("window", [2, 3, 60])
def test_sliding_counter_counts_the_last_window_seconds(window: int) -> None:
    now = [100.25]
    counter = SlidingCounter(window, lambda: now[0])
    counter.add()
    counter.add(2)
    now[0] += window - 1
    counter.add()
    assert counter.total() == 4
    now[0] += 1.0
    assert counter.total() == 1
    now[0] += 10 * window
    assert counter.total() == 0


# -- random interleavings against a brute-force count ---------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(1, 5)),
        st.tuples(st.just("retry"), st.integers(1, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.7, 9.0, 40.0])),
    ),
    max_size=80,
)


@settings(max_examples=examples(200), deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    floor=st.sampled_from([0.0, 0.25, 1.0]),
    window=st.sampled_from([1, 2.5, 10]),
    steps=steps,
)
def test_retries_in_the_window_never_exceed_the_allowance(
    ratio: float, floor: float, window: float, steps: list[tuple[str, float]]
) -> None:
    rig = Rig(ratio, floor, window)
    span = math.ceil(window)
    requests: list[int] = []  # the second of each event: what a brute force counts
    retries: list[int] = []
    denied = 0

    def in_window(seconds: list[int]) -> int:
        return sum(s > int(rig.now) - span for s in seconds)

    for kind, amount in steps:
        if kind == "advance":
            rig.advance(amount)
            continue
        for _ in range(int(amount)):
            if kind == "request":
                rig.budget.record_request()
                requests.append(int(rig.now))
                continue
            allowance = floor * span + ratio * in_window(requests)
            assert rig.budget.allowance() == pytest.approx(allowance)
            granted = rig.budget.try_spend()
            assert granted == (in_window(retries) + 1 <= allowance + 1e-9)
            if granted:
                retries.append(int(rig.now))
                assert in_window(retries) <= allowance + 1e-9
            else:
                denied += 1
    assert rig.budget.denied == denied
    assert rig.budget.state()["retries_in_window"] == in_window(retries)
    assert rig.budget.state()["requests_in_window"] == in_window(requests)
