"""Isolation at the router: what a request may reach, and what it may teach.

Two properties over random fleets, restrictions and failures (hypothesis):

- a restriction only narrows: whatever fails, falls back (`fallbacks`,
  `context_window_fallbacks`), is retried or hedged, no deployment outside the
  request's `only` is ever called (a policy pin is never widened by a later
  routing choice; DESIGN.md 10b);
- a request that is not `observed` (faults injected for one tenant) leaves the
  shared health exactly as it found it: no statistics, breaker verdict, retry
  budget, hedge or fallback count moved, so no other tenant's routing can.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.call import Reply, UpstreamRequest
from routing.config import ModelGroupConfig, RoutingSettings
from routing.health import HealthRegistry
from routing.outcomes import Failure, UpstreamError
from routing.router import Router, RoutingError, build_router
from tests.examples import examples

GROUPS = {"main": ["m1", "m2", "m3"], "spill": ["s1", "s2"], "long": ["l1"]}
DEPLOYMENTS = [d for ids in GROUPS.values() for d in ids]
#: What a deployment answers: success, or a failure of each routing kind.
OUTCOMES = [None, Failure.CONNECT, Failure.SERVER, Failure.TIMEOUT, Failure.CONTEXT_LENGTH]
HEDGE_AFTER_MS = 1


class Scripted:
    """A provider that answers every attempt the same way and records the calls."""

    def __init__(
        self, deployment_id: str, outcome: Failure | None, calls: list[str], delay: float
    ) -> None:
        self.deployment_id = deployment_id
        self.outcome = outcome
        self.calls = calls
        self.delay = delay

    async def send(self, request: UpstreamRequest, deadline: float | None = None) -> Reply:
        self.calls.append(self.deployment_id)
        await asyncio.sleep(self.delay)  # past `hedge_after_ms`: a hedge starts
        if self.outcome is not None:
            raise UpstreamError(self.outcome, self.deployment_id, "scripted failure")
        return Reply(self.deployment_id, data={"choices": []})

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def fleet(
    outcomes: dict[str, Failure | None], hedge: bool, attempts: int, calls: list[str]
) -> tuple[Router, HealthRegistry]:
    retry = {"attempts": attempts, "backoff_ms": 0, "max_backoff_ms": 0}
    breaker = {"consecutive_failures": 2, "open_seconds": 30}
    configs = [
        ModelGroupConfig.model_validate(
            {
                "name": name,
                "deployments": [
                    {"id": d, "provider": "mock", "model": "m", "retry": retry, "breaker": breaker}
                    for d in ids
                ],
                **(
                    {
                        "fallbacks": ["spill"],
                        "context_window_fallbacks": ["long"],
                        "hedge_after_ms": HEDGE_AFTER_MS if hedge else None,
                    }
                    if name == "main"
                    else {}
                ),
            }
        )
        for name, ids in GROUPS.items()
    ]
    delay = 2 * HEDGE_AFTER_MS / 1000 if hedge else 0.0
    providers = {d: Scripted(d, outcomes[d], calls, delay) for d in DEPLOYMENTS}
    clock = lambda: 1000.0  # noqa: E731 (time stands still: windows never roll)
    health = HealthRegistry(clock)
    router = build_router(configs, providers, RoutingSettings(), clock, health=health)
    return router, health


def health_of(router: Router) -> dict[str, Any]:
    """Everything other requests' routing reads, as plain values."""
    return {
        "deployments": {
            d.id: (
                dict(d.stats.outcomes),
                d.stats.retries,
                d.stats.hedges,
                d.stats.in_flight,
                d.breaker.state,
                d.breaker.total_openings,
                d.stats.snapshot().attempts,
                round(d.effective_weight(), 9),
            )
            for _, d in router.deployments()
        },
        "budget": router.budget.state(),
        "fallbacks": dict(router.fallbacks),
        "hedges": dict(router.hedges),
    }


async def route(router: Router, only: frozenset[str] | None, observed: bool) -> None:
    request = UpstreamRequest("chat", {}, only=only, observed=observed)
    group = router.group("main")
    assert group is not None
    with contextlib.suppress(RoutingError):
        await router.send(group, request)


outcome_maps = st.fixed_dictionaries({d: st.sampled_from(OUTCOMES) for d in DEPLOYMENTS})
restrictions = st.none() | st.frozensets(st.sampled_from(DEPLOYMENTS))


def fleets(test: Callable[..., None]) -> Callable[..., None]:
    """Runs `test` over random fleets: what each deployment answers, the request's
    restriction, hedging, retries, and how many requests in a row (breakers open
    between them)."""
    drawn = given(
        outcomes=outcome_maps,
        only=restrictions,
        hedge=st.booleans(),
        attempts=st.integers(1, 2),
        repeats=st.integers(1, 4),
    )(test)
    slow = [HealthCheck.too_slow]
    return settings(max_examples=examples(150), deadline=None, suppress_health_check=slow)(drawn)


@fleets
def test_no_routing_choice_widens_a_restriction(
    outcomes: dict[str, Failure | None],
    only: frozenset[str] | None,
    hedge: bool,
    attempts: int,
    repeats: int,
) -> None:
    calls: list[str] = []
    router, _ = fleet(outcomes, hedge, attempts, calls)

    async def run() -> None:
        for _ in range(repeats):  # breakers open between requests and change choices
            await route(router, only, observed=True)

    asyncio.run(run())
    if only is not None:
        assert set(calls) <= only


@fleets
def test_an_unobserved_request_leaves_the_shared_health_as_it_found_it(
    outcomes: dict[str, Failure | None],
    only: frozenset[str] | None,
    hedge: bool,
    attempts: int,
    repeats: int,
) -> None:
    calls: list[str] = []
    router, _ = fleet(outcomes, hedge, attempts, calls)
    before = health_of(router)

    async def run() -> None:
        for _ in range(repeats):
            await route(router, only, observed=False)

    asyncio.run(run())
    assert health_of(router) == before
    # It was routed for real all the same: it reached deployments and failed over.
    if only is None or only & set(GROUPS["main"]):
        assert calls


def test_an_observed_request_does_teach_the_shared_health() -> None:
    """The properties above must be able to fail: the same failure, observed."""
    calls: list[str] = []
    outcomes = dict.fromkeys(DEPLOYMENTS, Failure.SERVER)
    router, _ = fleet(outcomes, hedge=False, attempts=1, calls=calls)
    before = health_of(router)
    asyncio.run(route(router, None, observed=True))
    assert health_of(router) != before
