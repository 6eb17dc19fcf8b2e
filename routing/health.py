"""What the gateway has learned about each upstream: it outlives any one config version.

A deployment's statistics and circuit breaker are knowledge about an *upstream*, not
about a config: rebuilding them on every reload would close every open breaker in
the middle of an outage, and forget every latency percentile. So they live here,
keyed by the deployment's `Identity`: its id *and* where it sends traffic. A reload
that changes a deployment's weight, timeouts or breaker thresholds keeps its health
(the breaker takes the new thresholds, keeping its state); a reload that points the
same id at another `api_base`, provider or model starts it fresh, because what was
learned was about something else.

Entries no config version uses any more are dropped by `retain` once the versions
that used them have finished their last request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from routing.breaker import Breaker
from routing.config import DeploymentConfig
from routing.stats import Clock, DeploymentStats


@dataclass(frozen=True, slots=True)
class Identity:
    """A deployment as far as its health is concerned."""

    id: str
    provider: str
    api_base: str
    model: str
    #: The statistics window: a new length starts new statistics.
    window_seconds: int

    @classmethod
    def of(cls, config: DeploymentConfig, window_seconds: int) -> Identity:
        return cls(config.id, config.provider, config.api_base or "", config.model, window_seconds)


@dataclass(slots=True)
class Health:
    stats: DeploymentStats
    breaker: Breaker


class HealthRegistry:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[Identity, Health] = {}

    def for_deployment(self, config: DeploymentConfig, window_seconds: int) -> Health:
        """The deployment's health, created on first sight; an existing breaker takes
        the config's current thresholds and keeps its state."""
        identity = Identity.of(config, window_seconds)
        health = self._entries.get(identity)
        if health is None:
            health = Health(
                DeploymentStats(window_seconds, self.clock),
                Breaker(config.id, config.breaker, self.clock),
            )
            self._entries[identity] = health
        elif health.breaker.settings != config.breaker:
            health.breaker.reconfigure(config.breaker)
        return health

    def retain(self, identities: set[Identity]) -> int:
        """Forget every entry not in `identities`; how many were forgotten."""
        gone = [identity for identity in self._entries if identity not in identities]
        for identity in gone:
            del self._entries[identity]
        return len(gone)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identity: object) -> bool:
        return identity in self._entries
