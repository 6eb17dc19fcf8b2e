"""Retrying one deployment, with tenacity.

What is retried comes from the outcome table (`Policy.retry_same_deployment`).
The wait is the provider's `retry-after` when it sent one, exponential backoff
with full jitter otherwise. Retries stop at `attempts`, before a sleep that would
pass the request deadline, and when the gateway-wide retry budget is spent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_random_exponential

from routing.budget import RetryBudget
from routing.config import RetrySettings
from routing.outcomes import UpstreamError


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.failure.policy.retry_same_deployment


class WaitRetryAfterOrBackoff(wait_base):
    def __init__(self, settings: RetrySettings) -> None:
        self._backoff = wait_random_exponential(
            multiplier=settings.backoff_ms / 1000, max=settings.max_backoff_ms / 1000
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        assert retry_state.outcome is not None
        error = retry_state.outcome.exception()
        if isinstance(error, UpstreamError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(retry_state))


class StopRetrying(stop_base):
    """Attempts used up, the next sleep would pass the deadline, the deployment's
    breaker keeps traffic away, or no budget left.

    Checked in that order, so the budget is only spent on a retry that can happen,
    and a retry the breaker would refuse neither waits nor counts: the caller gets
    the deployment's real failure at once.
    """

    def __init__(
        self,
        attempts: int,
        deadline: float | None,
        budget: RetryBudget,
        admitted: Callable[[], bool] = lambda: True,
    ) -> None:
        self._attempts = attempts
        self._deadline = deadline  # a time.monotonic() instant
        self._budget = budget
        self._admitted = admitted
        self.reason = ""

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number >= self._attempts:
            self.reason = "attempts"
            return True
        next_start = time.monotonic() + retry_state.upcoming_sleep
        if self._deadline is not None and next_start >= self._deadline:
            self.reason = "deadline"
            return True
        if not self._admitted():
            self.reason = "breaker"
            return True
        if not self._budget.try_spend():
            self.reason = "budget"
            return True
        return False


def retrying(
    settings: RetrySettings,
    deadline: float | None,
    budget: RetryBudget,
    before_sleep: Any = None,
    admitted: Callable[[], bool] = lambda: True,
) -> AsyncRetrying:
    """`admitted`: whether the deployment's breaker would let a retry through now."""
    return AsyncRetrying(
        stop=StopRetrying(settings.attempts, deadline, budget, admitted),
        wait=WaitRetryAfterOrBackoff(settings),
        retry=retry_if_exception(is_retryable),
        before_sleep=before_sleep,
        reraise=True,
        sleep=asyncio.sleep,
    )
