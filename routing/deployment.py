"""A deployment at run time: its config and provider (of one config version), and its
statistics and breaker (which outlive config versions: routing/health.py)."""

from __future__ import annotations

from routing.breaker import Breaker
from routing.config import DeploymentConfig
from routing.health import Health
from routing.providers.base import Provider
from routing.sla import sla_factor
from routing.stats import Clock, DeploymentStats

#: Effective weights are recomputed at most this often (seconds): often enough to
#: follow an SLA breach within a second, rarely enough to keep selection cheap.
WEIGHT_REFRESH_SECONDS = 0.25


class Deployment:
    def __init__(
        self,
        config: DeploymentConfig,
        provider: Provider,
        clock: Clock,
        window_seconds: int = 60,
        sla_min_samples: int = 20,
        health: Health | None = None,
    ) -> None:
        self.config = config
        self.id = config.id
        self.provider = provider
        self.clock = clock
        if health is None:  # no registry (a test, a one-off router): health of its own
            health = Health(
                DeploymentStats(window_seconds, clock), Breaker(config.id, config.breaker, clock)
            )
        self.health = health
        self.stats = health.stats
        self.breaker = health.breaker
        self._sla_min_samples = sla_min_samples
        self._factor = 1.0
        self._factor_at = float("-inf")

    def sla_factor(self) -> float:
        now = self.clock()
        if now - self._factor_at >= WEIGHT_REFRESH_SECONDS:
            self._factor = sla_factor(self.config.sla, self.stats.snapshot(), self._sla_min_samples)
            self._factor_at = now
        return self._factor

    def effective_weight(self) -> float:
        return self.config.weight * self.sla_factor()

    def latency_cost(self) -> float:
        """Peak-EWMA latency scaled by load; lower is better. Untried deployments
        cost nothing, so each gets measured first."""
        return self.stats.ewma.value * (self.stats.in_flight + 1) / self.sla_factor()
