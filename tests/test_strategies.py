"""Choosing a deployment: the strategies (routing/strategies.py) and
`ModelGroup.select` (routing/router.py), on a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from routing.breaker import FORCED, NORMAL, Permit
from routing.config import ModelGroupConfig
from routing.deployment import WEIGHT_REFRESH_SECONDS, Deployment
from routing.outcomes import Failure
from routing.router import ModelGroup
from routing.sla import MIN_FACTOR
from routing.stats import LATENCY_BOUNDS
from routing.strategies import Choose, latency, least_busy, priority, weighted

PICKS = 20_000
TOLERANCE = 0.02
PROBE = Permit(probe=True)
OPEN_SECONDS = 10.0
#: A latency exactly on a bin bound, and a p99 target of half of it: the SLA
#: latency factor of a deployment that always takes SLOW is (1/2)^2.
SLOW = LATENCY_BOUNDS[20]
HALF_OF_SLOW_MS = SLOW * 500


class NeverCalled:
    """A provider for deployments that are only ever chosen, never sent to."""

    deployment_id = "unused"

    async def send(self, request: Any, deadline: float | None = None) -> Any:
        raise AssertionError("selection must not call the provider")

    async def start(self) -> None:
        raise AssertionError("selection must not start the provider")

    async def aclose(self) -> None:
        raise AssertionError("selection must not close the provider")


class Fleet:
    """Model groups whose deployments share one fake clock."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def group(self, *specs: dict[str, Any] | str, strategy: str = "weighted") -> ModelGroup:
        """A group of deployments, each given by its id or its config fields."""
        deployments: list[dict[str, Any]] = [{"id": s} if isinstance(s, str) else s for s in specs]
        for spec in deployments:
            spec.setdefault("model", "m")
            spec.setdefault("provider", "mock")
            spec.setdefault("breaker", {"consecutive_failures": 1, "open_seconds": OPEN_SECONDS})
        config = ModelGroupConfig.model_validate(
            {"name": "g", "strategy": strategy, "deployments": deployments}
        )
        return ModelGroup(
            config, [Deployment(d, NeverCalled(), lambda: self.now) for d in config.deployments]
        )


def by_id(group: ModelGroup) -> dict[str, Deployment]:
    return {d.id: d for d in group.deployments}


def shares(choose: Choose, candidates: Sequence[Deployment], seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    counts = Counter(choose(candidates, rng).id for _ in range(PICKS))
    return {d.id: counts[d.id] / PICKS for d in candidates}


def assert_shares(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, share in expected.items():
        assert abs(actual[key] - share) <= TOLERANCE, (key, actual)


def trip(deployment: Deployment) -> None:
    permit = deployment.breaker.allow()
    assert permit is not None
    deployment.breaker.failure(permit)
    assert not deployment.breaker.available()


def select(group: ModelGroup, *tried: str, seed: int = 1) -> tuple[str, Permit] | None:
    pick = group.select(set(tried), random.Random(seed))
    return None if pick is None else (pick[0].id, pick[1])


def selected_ids(group: ModelGroup, *tried: str, seeds: int = 50) -> set[str | None]:
    """Every deployment `select` picks over `seeds` differently seeded selections."""
    return {
        None if pick is None else pick[0]
        for pick in (select(group, *tried, seed=s) for s in range(seeds))
    }


# -- weighted -------------------------------------------------------------------------


def test_weighted_splits_by_configured_weight() -> None:
    group = Fleet().group(
        {"id": "a", "weight": 1}, {"id": "b", "weight": 3}, {"id": "c", "weight": 6}
    )
    assert_shares(shares(weighted, group.deployments), {"a": 0.1, "b": 0.3, "c": 0.6})


def test_weighted_gives_an_sla_breaking_deployment_proportionally_less() -> None:
    fleet = Fleet()
    group = fleet.group("a", {"id": "b", "sla": {"p99_latency_ms": HALF_OF_SLOW_MS}})
    a, b = group.deployments
    assert b.effective_weight() == 1.0
    for _ in range(20):
        b.stats.record(SLOW)
    fleet.advance(WEIGHT_REFRESH_SECONDS / 2)
    assert b.effective_weight() == 1.0  # the weight is refreshed every 0.25 s only
    fleet.advance(WEIGHT_REFRESH_SECONDS / 2)
    assert b.effective_weight() == pytest.approx(0.25)
    assert a.effective_weight() == 1.0
    assert_shares(shares(weighted, group.deployments), {"a": 0.8, "b": 0.2})


def test_a_degraded_weight_recovers_as_the_slow_samples_age_out() -> None:
    fleet = Fleet()
    (slow,) = fleet.group({"id": "b", "sla": {"p99_latency_ms": HALF_OF_SLOW_MS}}).deployments
    for _ in range(20):
        slow.stats.record(SLOW)
    assert slow.effective_weight() == pytest.approx(0.25)
    fleet.advance(60.0)
    assert slow.effective_weight() == 1.0


def test_too_few_samples_do_not_degrade_the_weight() -> None:
    (slow,) = Fleet().group({"id": "b", "sla": {"p99_latency_ms": 1}}).deployments
    for _ in range(19):
        slow.stats.record(SLOW)
    assert slow.effective_weight() == 1.0


def test_an_error_rate_far_over_target_leaves_a_trickle() -> None:
    group = Fleet().group("a", {"id": "b", "weight": 2, "sla": {"max_error_rate": 0.0}})
    b = by_id(group)["b"]
    for failure in [None, Failure.SERVER] * 10:
        b.stats.record(0.1, failure)
    assert b.effective_weight() == 2 * MIN_FACTOR
    assert_shares(shares(weighted, group.deployments), {"a": 1 / 1.04, "b": 0.04 / 1.04})


# -- latency: power of two choices ----------------------------------------------------


def fleet_with_latencies(*ewmas: float) -> list[Deployment]:
    names = "abcdefgh"[: len(ewmas)]
    deployments = list(Fleet().group(*names, strategy="latency").deployments)
    for deployment, seconds in zip(deployments, ewmas, strict=True):
        if seconds:
            deployment.stats.record(seconds)
    return deployments


def test_latency_between_two_always_takes_the_cheaper() -> None:
    slow, fast = fleet_with_latencies(0.5, 0.1)
    for seed in range(50):
        assert latency([slow, fast], random.Random(seed)) is fast
        assert latency([fast, slow], random.Random(seed)) is fast


def test_latency_cost_scales_with_load() -> None:
    slow, fast = fleet_with_latencies(0.5, 0.1)
    for _ in range(9):
        fast.stats.started()
    assert fast.latency_cost() == pytest.approx(1.0)
    assert slow.latency_cost() == pytest.approx(0.5)
    assert latency([slow, fast], random.Random(0)) is slow


def test_latency_measures_an_untried_deployment_first() -> None:
    tried, untried = fleet_with_latencies(0.001, 0.0)
    assert untried.latency_cost() == 0.0
    assert latency([tried, untried], random.Random(0)) is untried


def test_latency_of_three_never_takes_the_worst() -> None:
    candidates = fleet_with_latencies(0.1, 0.2, 0.4)
    assert_shares(shares(latency, candidates), {"a": 2 / 3, "b": 1 / 3, "c": 0.0})


def test_latency_with_one_candidate_needs_no_randomness() -> None:
    (only,) = fleet_with_latencies(3.0)
    assert latency([only], random.Random(0)) is only


# -- priority and least-busy ----------------------------------------------------------


def test_priority_takes_config_order() -> None:
    group = Fleet().group("a", "b", "c", strategy="priority")
    assert priority(group.deployments, random.Random(0)).id == "a"
    assert [select(group, seed=seed) for seed in range(5)] == [("a", NORMAL)] * 5
    assert select(group, "a") == ("b", NORMAL)
    trip(by_id(group)["a"])
    assert select(group) == ("b", NORMAL)
    trip(by_id(group)["b"])
    assert select(group) == ("c", NORMAL)


def test_least_busy_takes_the_fewest_in_flight() -> None:
    group = Fleet().group("a", "b", "c", strategy="least-busy")
    a, b, c = group.deployments
    for deployment, busy in ((a, 2), (b, 1), (c, 3)):
        for _ in range(busy):
            deployment.stats.started()
    assert least_busy(group.deployments, random.Random(0)) is b
    b.stats.started()
    b.stats.started()
    a.stats.ended()
    assert least_busy(group.deployments, random.Random(0)) is a


def test_least_busy_breaks_ties_at_random() -> None:
    group = Fleet().group("a", "b", "c", strategy="least-busy")
    group.deployments[2].stats.started()
    assert_shares(shares(least_busy, group.deployments), {"a": 0.5, "b": 0.5, "c": 0.0})


# -- ModelGroup.select ----------------------------------------------------------------


def test_select_skips_tried_deployments() -> None:
    group = Fleet().group("a", "b", "c")
    assert {select(group, "a", "b", seed=seed) for seed in range(20)} == {("c", NORMAL)}
    assert selected_ids(group, "a") == {"b", "c"}
    assert select(group, "a", "b", "c") is None


def test_select_skips_deployments_whose_breaker_is_open() -> None:
    group = Fleet().group("a", "b", "c")
    trip(by_id(group)["b"])
    assert selected_ids(group) == {"a", "c"}
    # the open one is not offered even when the others were tried
    assert select(group, "a", "c") is None


def test_select_probes_an_open_breaker_once_its_time_is_over() -> None:
    fleet = Fleet()
    group = fleet.group("a", "b", strategy="priority")
    trip(by_id(group)["a"])
    assert select(group) == ("b", NORMAL)
    fleet.advance(OPEN_SECONDS)
    assert select(group) == ("a", PROBE)
    assert select(group) == ("b", NORMAL)  # the one probe slot is taken


def test_when_every_breaker_is_open_the_first_opened_is_forced() -> None:
    fleet = Fleet()
    group = fleet.group("a", "b", "c")
    for name in ("b", "c", "a"):
        trip(by_id(group)[name])
        fleet.advance(1.0)
    assert select(group) == ("b", FORCED)
    assert select(group, "a", "c") == ("b", FORCED)
    assert select(group, "b") is None


def test_a_half_open_breaker_with_no_probe_slot_left_counts_as_open() -> None:
    fleet = Fleet()
    group = fleet.group("a", "b")
    a, b = group.deployments
    trip(a)
    fleet.advance(1.0)
    trip(b)
    fleet.advance(OPEN_SECONDS)
    assert a.breaker.allow() == PROBE
    assert b.breaker.allow() == PROBE
    assert select(group) == ("a", FORCED)


def test_a_single_deployment_is_always_tried_once() -> None:
    fleet = Fleet()
    group = fleet.group("only")
    assert select(group) == ("only", NORMAL)
    assert select(group, "only") is None
    trip(group.deployments[0])
    assert select(group) == ("only", FORCED)
    assert select(group, "only") is None
    fleet.advance(OPEN_SECONDS)
    assert select(group) == ("only", PROBE)


def test_the_first_opened_is_forced_even_at_clock_zero() -> None:
    """A breaker that opened at t=0.0 opened first; `opened_at or inf` reads it as
    never opened."""
    fleet = Fleet(start=0.0)
    group = fleet.group("a", "b")
    a, b = group.deployments
    trip(a)
    fleet.advance(1.0)
    trip(b)
    assert a.breaker.opened_at == 0.0
    assert select(group) == ("a", FORCED)


def test_select_passes_over_a_reopened_breaker_whose_probe_is_still_out() -> None:
    """a's probe is in flight and b is still open, so selection forces a; the forced
    attempt fails and reopens a. Once a's open time is over its probe slot is still
    taken, so a cannot be tried: selection must fall to b, whose open time is over
    too, instead of coming back empty-handed."""
    fleet = Fleet()
    group = fleet.group("a", "b", strategy="priority")
    a, b = group.deployments
    trip(a)
    fleet.advance(OPEN_SECONDS / 2)
    trip(b)
    fleet.advance(OPEN_SECONDS / 2)
    assert select(group) == ("a", PROBE)  # stays in flight
    assert select(group) == ("a", FORCED)
    a.breaker.failure(FORCED)
    fleet.advance(2 * OPEN_SECONDS)
    assert b.breaker.available()
    assert select(group) == ("b", PROBE)
