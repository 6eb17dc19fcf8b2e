"""Ways to choose one deployment among the available ones.

Each strategy looks at every candidate once (O(deployments)) and shares no state
between requests beyond the deployments' own statistics: no locks, nothing to
contend on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from routing.deployment import Deployment

Choose = Callable[[Sequence[Deployment], random.Random], Deployment]


def weighted(candidates: Sequence[Deployment], rng: random.Random) -> Deployment:
    """Random in proportion to effective weight (configured weight x SLA factor)."""
    weights = [d.effective_weight() for d in candidates]
    point = rng.random() * sum(weights)
    for deployment, weight in zip(candidates, weights, strict=True):
        point -= weight
        if point < 0:
            return deployment
    return candidates[-1]


def latency(candidates: Sequence[Deployment], rng: random.Random) -> Deployment:
    """Power of two choices on peak-EWMA cost: the better of two random picks.

    Two random picks instead of the global minimum keep a herd of concurrent
    requests from all piling onto the one deployment that looked fastest.
    """
    if len(candidates) == 1:
        return candidates[0]
    first, second = rng.sample(list(candidates), 2)
    return first if first.latency_cost() <= second.latency_cost() else second


def priority(candidates: Sequence[Deployment], rng: random.Random) -> Deployment:
    """The first available deployment in config order; the rest are standbys."""
    return candidates[0]


def least_busy(candidates: Sequence[Deployment], rng: random.Random) -> Deployment:
    """Fewest attempts in flight; ties broken at random."""
    fewest = min(d.stats.in_flight for d in candidates)
    idle = [d for d in candidates if d.stats.in_flight == fewest]
    return idle[0] if len(idle) == 1 else rng.choice(idle)


STRATEGIES: dict[str, Choose] = {
    "weighted": weighted,
    "latency": latency,
    "priority": priority,
    "least-busy": least_busy,
}
