"""A gateway-wide retry budget, so retries cannot turn an outage into a storm.

Per-request retry limits multiply under load: with 2 retries each, a provider
that fails everything gets three times the traffic exactly when it is least able
to take it. The budget caps retries at `ratio` of the requests seen recently
(Finagle's and Envoy's approach), plus a small floor so a quiet gateway can
still retry its occasional failure.
"""

from __future__ import annotations

import math
import time

from routing.config import RetryBudgetSettings
from routing.stats import Clock, SlidingCounter


class RetryBudget:
    def __init__(self, settings: RetryBudgetSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        window = max(1, math.ceil(settings.window_seconds))
        self._requests = SlidingCounter(window, clock)
        self._retries = SlidingCounter(window, clock)
        self._floor = settings.min_per_second * window
        self.denied = 0

    def with_settings(self, settings: RetryBudgetSettings) -> RetryBudget:
        """This budget under new settings (a config reload), without changing this
        one: the same window's counts carry over (what was spent stays spent); a new
        window length starts from zero."""
        if settings == self.settings:
            return self
        carried = RetryBudget(settings, self._clock)
        carried.denied = self.denied
        if settings.window_seconds == self.settings.window_seconds:
            carried._requests, carried._retries = self._requests, self._retries
        return carried

    def record_request(self) -> None:
        self._requests.add()

    def allowance(self) -> float:
        return self._floor + self.settings.ratio * self._requests.total()

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and counted) when it is spent."""
        if self._retries.total() + 1 > self.allowance():
            self.denied += 1
            return False
        self._retries.add()
        return True

    def state(self) -> dict[str, float]:
        return {
            "requests_in_window": self._requests.total(),
            "retries_in_window": self._retries.total(),
            "allowance": self.allowance(),
            "denied_total": self.denied,
        }


class Unmetered(RetryBudget):
    """The budget of a request that is not observed (`UpstreamRequest.observed`): its
    retries are bounded by the deployment's `retry.attempts` only, and neither spend
    nor count against the budget every other request shares."""

    def __init__(self) -> None:
        super().__init__(RetryBudgetSettings())

    def try_spend(self) -> bool:
        return True


UNMETERED = Unmetered()
