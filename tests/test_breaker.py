"""The per-deployment circuit breaker (routing/breaker.py), on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from routing.breaker import CLOSED, FORCED, HALF_OPEN, NORMAL, OPEN, Breaker, Permit
from routing.config import BreakerSettings
from tests.examples import examples

PROBE = Permit(probe=True)
DEFAULTS = {
    "consecutive_failures": 3,
    "open_seconds": 10.0,
    "max_open_seconds": 35.0,
    "half_open_probes": 2,
}


class Rig:
    """A breaker on a fake clock, with the steps the tests keep repeating.

    Every step checks that the breaker's mirrored state is pybreaker's own.
    """

    def __init__(self, **overrides: Any) -> None:
        self.now = 1000.0
        self.settings = BreakerSettings(**{**DEFAULTS, **overrides})
        self.breaker = Breaker("d", self.settings, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def synced(self) -> str:
        state = self.breaker.state
        assert state == self.breaker._cb.current_state
        return state

    def allow(self) -> Permit | None:
        permit = self.breaker.allow()
        self.synced()
        return permit

    def fail(self, times: int = 1) -> None:
        for _ in range(times):
            permit = self.allow()
            assert permit is not None
            self.breaker.failure(permit)
            self.synced()

    def succeed(self) -> None:
        permit = self.allow()
        assert permit is not None
        self.breaker.success(permit)
        self.synced()

    def trip(self) -> None:
        assert self.synced() == CLOSED
        self.fail(self.settings.consecutive_failures)
        assert self.synced() == OPEN

    def wait_out(self) -> None:
        """Move the clock to the instant the open breaker may probe again."""
        until = self.breaker.open_until
        assert until is not None
        self.now = until

    def probes(self) -> list[Permit]:
        """Wait out the open time and take every probe permit half-open admits."""
        self.wait_out()
        permits = [self.allow() for _ in range(self.settings.half_open_probes)]
        assert permits == [PROBE] * self.settings.half_open_probes
        assert self.synced() == HALF_OPEN
        return [p for p in permits if p is not None]

    def reopen(self) -> None:
        """A failed probe after waiting out the open time."""
        self.wait_out()
        self.fail()
        assert self.synced() == OPEN

    def close(self) -> None:
        """Successful probes after waiting out the open time."""
        for permit in self.probes():
            self.breaker.success(permit)
        assert self.synced() == CLOSED

    def frozen_open(self) -> tuple[Any, ...]:
        b = self.breaker
        return (self.synced(), b.opened_at, b.open_for, b.openings, b.total_openings)


# -- closed -> open -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1, 3, 7])
def test_opens_after_exactly_the_configured_consecutive_failures(threshold: int) -> None:
    rig = Rig(consecutive_failures=threshold)
    rig.fail(threshold - 1)
    assert rig.synced() == CLOSED
    assert rig.breaker.opened_at is None
    rig.fail()
    assert rig.synced() == OPEN
    assert rig.breaker.opened_at == 1000.0
    assert rig.breaker.open_for == 10.0
    assert rig.breaker.open_until == 1010.0
    assert (rig.breaker.openings, rig.breaker.total_openings) == (1, 1)


def test_a_success_in_between_resets_the_failure_count() -> None:
    rig = Rig(consecutive_failures=3)
    for _ in range(4):
        rig.fail(2)
        rig.succeed()
    assert rig.synced() == CLOSED
    rig.fail(2)
    assert rig.synced() == CLOSED
    rig.fail()
    assert rig.synced() == OPEN


def test_a_cancelled_attempt_neither_resets_nor_adds_to_the_count() -> None:
    rig = Rig(consecutive_failures=3)
    rig.fail(2)
    for _ in range(5):
        rig.breaker.cancelled(NORMAL)
    assert rig.synced() == CLOSED
    rig.fail()
    assert rig.synced() == OPEN


def test_closed_hands_out_normal_permits() -> None:
    rig = Rig()
    assert rig.breaker.available() is True
    assert [rig.allow() for _ in range(10)] == [NORMAL] * 10
    rig.succeed()
    assert rig.synced() == CLOSED


# -- open -----------------------------------------------------------------------------


def test_open_refuses_until_the_open_time_has_passed() -> None:
    rig = Rig(open_seconds=10.0)
    rig.trip()
    for _ in range(3):
        assert rig.breaker.available() is False
        assert rig.allow() is None
        rig.advance(3.0)
    rig.advance(0.999)  # 9.999 s after opening
    assert rig.breaker.available() is False
    assert rig.allow() is None
    assert rig.synced() == OPEN
    rig.advance(0.001)
    assert rig.breaker.available() is True
    assert rig.synced() == OPEN  # available() has no side effect
    assert rig.allow() == PROBE
    assert rig.synced() == HALF_OPEN


# -- half-open ------------------------------------------------------------------------


@pytest.mark.parametrize("probes", [1, 2, 4])
def test_half_open_admits_at_most_the_configured_probes(probes: int) -> None:
    rig = Rig(half_open_probes=probes)
    rig.trip()
    held = rig.probes()
    assert rig.breaker._probes == probes
    assert rig.breaker.available() is False
    assert rig.allow() is None
    rig.breaker.cancelled(held.pop())
    assert rig.breaker.available() is True
    assert rig.allow() == PROBE
    assert rig.allow() is None
    assert rig.synced() == HALF_OPEN


@pytest.mark.parametrize("probes", [1, 2, 4])
def test_consecutive_probe_successes_close_it(probes: int) -> None:
    rig = Rig(half_open_probes=probes)
    rig.trip()
    held = rig.probes()
    for permit in held[:-1]:
        rig.breaker.success(permit)
        assert rig.synced() == HALF_OPEN
    rig.breaker.success(held[-1])
    assert rig.synced() == CLOSED
    assert rig.breaker.opened_at is None
    assert rig.breaker.open_until is None
    assert rig.breaker._probes == 0
    assert rig.allow() == NORMAL


def test_a_probe_failure_reopens_it() -> None:
    rig = Rig(half_open_probes=2, open_seconds=10.0)
    rig.trip()
    first, second = rig.probes()
    rig.breaker.success(first)
    rig.breaker.failure(second)
    assert rig.synced() == OPEN
    assert rig.breaker.opened_at == 1010.0
    assert rig.breaker.open_for == 20.0
    assert rig.breaker._probes == 0
    assert rig.allow() is None


def test_the_success_count_restarts_with_every_half_open_period() -> None:
    rig = Rig(half_open_probes=2)
    rig.trip()
    first, second = rig.probes()
    rig.breaker.success(first)
    rig.breaker.failure(second)
    first, second = rig.probes()
    rig.breaker.success(first)
    assert rig.synced() == HALF_OPEN  # the success before the reopening does not count
    rig.breaker.success(second)
    assert rig.synced() == CLOSED


def test_cancelling_a_probe_frees_its_slot_and_gives_no_verdict() -> None:
    rig = Rig(half_open_probes=2)
    rig.trip()
    for permit in rig.probes():
        rig.breaker.cancelled(permit)
    assert rig.synced() == HALF_OPEN
    assert rig.breaker._probes == 0
    assert rig.breaker._cb.success_counter == 0
    first, second = rig.allow(), rig.allow()
    assert first == second == PROBE
    rig.breaker.success(first)
    assert rig.synced() == HALF_OPEN
    rig.breaker.success(second)
    assert rig.synced() == CLOSED


def test_available_agrees_with_allow_while_a_stale_probe_holds_the_slot() -> None:
    """`available()` promises to say whether `allow()` would grant a permit. A breaker
    that reopened while its probe was still in flight (here: the router forced an
    attempt on it, which failed) has no free probe slot once the open time is over,
    so `allow()` refuses; `available()` must say so too, or `ModelGroup.select`
    picks it over a healthy deployment and then finds no permit."""
    rig = Rig(half_open_probes=1)
    rig.trip()
    rig.probes()  # the probe is still in flight
    rig.breaker.failure(FORCED)
    assert rig.synced() == OPEN
    rig.wait_out()
    assert rig.breaker._probes == 1
    assert rig.breaker.available() == (rig.allow() is not None)


# -- growing open time ----------------------------------------------------------------


def test_open_time_grows_with_each_reopening_and_is_capped() -> None:
    rig = Rig(open_seconds=10.0, max_open_seconds=35.0)
    rig.trip()
    open_for = [rig.breaker.open_for]
    for _ in range(4):
        rig.reopen()
        open_for.append(rig.breaker.open_for)
    assert open_for == [10.0, 20.0, 30.0, 35.0, 35.0]
    assert rig.breaker.total_openings == 5


def test_tripping_again_right_after_closing_keeps_growing() -> None:
    rig = Rig(open_seconds=10.0, max_open_seconds=1000.0)
    rig.trip()
    rig.close()
    rig.trip()
    assert rig.breaker.open_for == 20.0
    assert rig.breaker.opened_at == rig.now


@pytest.mark.parametrize(
    ("healthy_seconds", "multiplier"),
    [(0.0, 4), (9.9, 4), (10.0, 3), (19.9, 3), (25.0, 2), (30.0, 1), (500.0, 1)],
)
def test_the_multiplier_decays_by_one_per_open_period_of_health(
    healthy_seconds: float, multiplier: int
) -> None:
    rig = Rig(open_seconds=10.0, max_open_seconds=1000.0, half_open_probes=1)
    rig.trip()
    rig.reopen()
    rig.reopen()
    assert rig.breaker.open_for == 30.0
    rig.close()
    rig.advance(healthy_seconds)
    rig.trip()
    assert rig.breaker.openings == multiplier
    assert rig.breaker.open_for == 10.0 * multiplier
    assert rig.breaker.total_openings == 4


def test_the_cap_applies_to_a_max_shorter_than_the_base() -> None:
    rig = Rig(open_seconds=10.0, max_open_seconds=4.0)
    rig.trip()
    assert rig.breaker.open_for == 4.0
    rig.advance(4.0)
    assert rig.allow() == PROBE


# -- late and forced outcomes ---------------------------------------------------------


def test_late_outcomes_of_normal_permits_do_not_touch_an_open_breaker() -> None:
    rig = Rig(consecutive_failures=2)
    in_flight = [rig.allow() for _ in range(4)]
    assert in_flight == [NORMAL] * 4
    rig.trip()
    before = rig.frozen_open()
    rig.advance(5.0)
    rig.breaker.success(NORMAL)
    rig.breaker.failure(NORMAL)
    rig.breaker.failure(NORMAL)
    rig.breaker.success(NORMAL)
    assert rig.frozen_open() == before
    assert rig.breaker.available() is False
    rig.wait_out()
    assert rig.breaker.available() is True


@pytest.mark.parametrize("verdict", ["success", "failure"])
def test_late_normal_outcomes_do_not_decide_a_half_open_breaker(verdict: str) -> None:
    rig = Rig(half_open_probes=2)
    rig.trip()
    first, _ = rig.probes()
    getattr(rig.breaker, verdict)(NORMAL)  # started while closed, ended half-open
    assert rig.synced() == HALF_OPEN
    assert rig.breaker._cb.success_counter == 0
    rig.breaker.success(first)
    assert rig.breaker._cb.success_counter == 1


def test_a_late_probe_outcome_after_a_reopening_changes_nothing() -> None:
    rig = Rig(half_open_probes=2)
    rig.trip()
    first, second = rig.probes()
    rig.breaker.failure(first)
    before = rig.frozen_open()
    rig.breaker.success(second)
    assert rig.frozen_open() == before
    assert rig.breaker._probes == 0


@pytest.mark.parametrize("probes", [1, 3])
def test_a_forced_success_while_open_moves_towards_closing(probes: int) -> None:
    rig = Rig(half_open_probes=probes)
    rig.trip()
    rig.breaker.success(FORCED)
    assert rig.breaker._probes == 0
    if probes == 1:
        assert rig.synced() == CLOSED
        return
    assert rig.synced() == HALF_OPEN
    assert rig.breaker._cb.success_counter == 1
    for _ in range(probes - 2):
        rig.succeed()
        assert rig.synced() == HALF_OPEN
    rig.succeed()
    assert rig.synced() == CLOSED


def test_a_forced_failure_while_open_does_not_extend_it() -> None:
    rig = Rig()
    rig.trip()
    before = rig.frozen_open()
    for _ in range(3):
        rig.advance(2.0)
        rig.breaker.failure(FORCED)
    assert rig.frozen_open() == before
    rig.wait_out()
    assert rig.allow() == PROBE


def test_the_fake_clock_not_the_wall_clock_decides_when_it_may_probe() -> None:
    """pybreaker's own timeout (wall clock) is long over here; the breaker's clock
    has not moved, so it stays open and late or forced failures change nothing."""
    rig = Rig(open_seconds=1e-6)
    rig.trip()
    before = rig.frozen_open()
    for permit in (NORMAL, FORCED, NORMAL):
        rig.breaker.failure(permit)
    rig.breaker.success(NORMAL)
    assert rig.frozen_open() == before
    assert rig.allow() is None


def test_forced_outcomes_while_closed_change_nothing() -> None:
    rig = Rig(consecutive_failures=2)
    rig.breaker.success(FORCED)
    assert rig.synced() == CLOSED
    rig.fail()
    rig.breaker.success(FORCED)  # a success resets the count, forced or not
    rig.fail()
    assert rig.synced() == CLOSED


# -- random sequences against a reference model ---------------------------------------


@dataclass
class Model:
    """What the breaker should do, written out plainly."""

    threshold: int
    base: float
    cap: float
    max_probes: int
    state: str = CLOSED
    failures: int = 0
    successes: int = 0
    probes: int = 0
    openings: int = 0
    opened_at: float | None = None
    open_for: float = 0.0
    healthy_since: float | None = None

    def waiting(self, now: float) -> bool:
        return self.opened_at is not None and now < self.opened_at + self.open_for

    def available(self, now: float) -> bool:
        """Whether `allow` would grant a permit now."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self.waiting(now):
            return False
        return self.probes < self.max_probes

    def allow(self, now: float) -> Permit | None:
        if self.state == CLOSED:
            return NORMAL
        if self.state == OPEN:
            if self.waiting(now):
                return None
            self.state, self.successes = HALF_OPEN, 0
        if self.probes >= self.max_probes:
            return None
        self.probes += 1
        return PROBE

    def success(self, permit: Permit, now: float) -> None:
        self.probes -= permit.probe
        if self.state == CLOSED:
            self.failures = 0
            return
        if self.state == OPEN:
            if not permit.forced:
                return
            self.state, self.successes = HALF_OPEN, 0
        elif not (permit.probe or permit.forced):
            return  # half-open: only trial calls decide
        self.successes += 1
        if self.successes >= self.max_probes:
            self.state, self.failures, self.successes = CLOSED, 0, 0
            self.opened_at, self.healthy_since = None, now

    def failure(self, permit: Permit, now: float) -> None:
        self.probes -= permit.probe
        if self.state == OPEN:
            return
        if self.state == HALF_OPEN and not (permit.probe or permit.forced):
            return  # only trial calls decide
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.threshold:
            if self.healthy_since is not None:
                decay = int((now - self.healthy_since) / self.base)
                self.openings = max(0, self.openings - decay)
            self.openings += 1
            self.open_for = min(self.base * self.openings, self.cap)
            self.state, self.opened_at, self.healthy_since = OPEN, now, None
            self.successes = 0

    def cancelled(self, permit: Permit) -> None:
        self.probes -= permit.probe


class BreakerMachine(RuleBasedStateMachine):
    """Random allow/success/failure/cancel/late/forced/clock steps: the breaker
    never raises, never counts a negative number of probes, keeps its state in
    step with pybreaker's, and does what the model says."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.held: list[Permit] = []

    @initialize(
        threshold=st.integers(1, 4),
        base=st.sampled_from([0.5, 2.5, 10.0]),
        cap_ratio=st.sampled_from([0.5, 1.0, 2.5, 4.0]),
        max_probes=st.integers(1, 3),
    )
    def build(self, threshold: int, base: float, cap_ratio: float, max_probes: int) -> None:
        config = BreakerSettings(
            consecutive_failures=threshold,
            open_seconds=base,
            max_open_seconds=base * cap_ratio,
            half_open_probes=max_probes,
        )
        self.breaker = Breaker("d", config, clock=lambda: self.now)
        self.model = Model(threshold, base, base * cap_ratio, max_probes)

    @rule()
    def allow(self) -> None:
        expected = self.model.allow(self.now)
        assert self.breaker.allow() == expected
        if expected is not None:
            self.held.append(expected)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 50), verdict=st.sampled_from(["success", "failure", "cancelled"]))
    def finish(self, pick: int, verdict: str) -> None:
        permit = self.held.pop(pick % len(self.held))
        self._outcome(permit, verdict)

    @rule(permit=st.sampled_from([NORMAL, FORCED]), verdict=st.sampled_from(["success", "failure"]))
    def late_or_forced(self, permit: Permit, verdict: str) -> None:
        self._outcome(permit, verdict)

    @rule(quarters=st.integers(0, 24))
    def advance(self, quarters: int) -> None:
        self.now += quarters * self.model.base / 4

    def _outcome(self, permit: Permit, verdict: str) -> None:
        getattr(self.breaker, verdict)(permit)
        if verdict == "cancelled":
            self.model.cancelled(permit)
        else:
            getattr(self.model, verdict)(permit, self.now)

    @invariant()
    def state_is_pybreakers(self) -> None:
        assert self.breaker.state == self.breaker._cb.current_state

    @invariant()
    def probes_match_the_probe_permits_held(self) -> None:
        assert self.breaker._probes >= 0
        assert self.breaker._probes == sum(p.probe for p in self.held)

    @invariant()
    def matches_the_model(self) -> None:
        b, m = self.breaker, self.model
        assert (b.state, b.opened_at, b.openings) == (m.state, m.opened_at, m.openings)
        assert b.available() == m.available(self.now)
        if m.state != CLOSED:
            assert b.open_for == m.open_for
        if m.state == CLOSED:
            assert b._cb.fail_counter == m.failures
        if m.state == HALF_OPEN:
            assert b._cb.success_counter == m.successes


BreakerMachine.TestCase.settings = settings(
    max_examples=examples(300), stateful_step_count=60, deadline=None
)
TestBreakerMachine = BreakerMachine.TestCase
