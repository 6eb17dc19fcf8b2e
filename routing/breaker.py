"""A circuit breaker per deployment: pybreaker's state machine, driven from async code.

pybreaker's own async paths do not fit an asyncio gateway: its decorator counts an
`async def` call as a success before the coroutine runs, `calling()` counts a
cancelled call (a hedge loser, a client that went away) as a success, and in
half-open it lets every call through. So pybreaker keeps the states and the
counting (consecutive failures, half-open successes, transitions), and this layer
adds what it lacks:

- permits: an attempt asks before it starts; half-open admits at most
  `half_open_probes` attempts at once; a cancelled attempt returns its permit with
  no verdict;
- the clock: this layer decides when an open breaker may probe again (pybreaker
  would read the wall clock), so tests can move time instead of sleeping;
- growing open time, as Envoy's outlier detection does: `open_seconds` times the
  number of recent openings, capped at `max_open_seconds`; the multiplier shrinks
  by one for every `open_seconds` the deployment then stays healthy;
- the log: an opening is an episode, logged once when it starts (WARNING: the
  deployment, the failures that tripped it) and once when the breaker closes again
  (INFO: how long, how many failed probes reopened it, how many attempts it kept
  away); the reopenings in between are DEBUG lines.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from common.imports import without
from routing.config import BreakerSettings
from routing.stats import Clock

# pybreaker imports redis-py (and tornado) when installed, for storages and decorators
# this layer never uses: ~100 modules and ~6 MB per worker (common/imports.py).
with without("redis", "tornado"):
    import pybreaker

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN

log = logging.getLogger("seawall.routing")


@dataclass(frozen=True, slots=True)
class Permit:
    probe: bool = False  # a half-open trial: holds one of the probe slots
    forced: bool = False  # every deployment was open; this one was tried anyway


NORMAL = Permit()
FORCED = Permit(forced=True)


class _Failed(Exception):
    """Carries a failure into pybreaker's bookkeeping."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Failed


class Breaker:
    def __init__(self, name: str, settings: BreakerSettings, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.consecutive_failures,
            reset_timeout=settings.open_seconds,
            success_threshold=settings.half_open_probes,
            throw_new_error_on_trip=False,
            listeners=[_Transitions(self)],
            name=name,
        )
        self.opened_at: float | None = None
        self.open_for = 0.0
        self.openings = 0  # the open-time multiplier
        self.total_openings = 0
        self._healthy_since: float | None = None
        self._probes = 0
        # Mirrors of pybreaker's state, kept by the transition listener and the
        # outcome calls: read on every request, where pybreaker's storage
        # properties would cost a few calls each.
        self.state: str = CLOSED
        self._clean = True  # closed with no failure counted since the last success
        #: The open episode under way (None: closed): when it began, the reopenings
        #: (failed probes), and the routing decisions and attempts it kept away since.
        self._episode_since: float | None = None
        self._reopenings = 0
        self.kept_away = 0

    def reconfigure(self, settings: BreakerSettings) -> None:
        """New thresholds from a config reload; the state (open, its open time, the
        failures counted so far) carries over, so a reload during an outage does
        not let traffic back in early."""
        self.settings = settings
        self._cb.fail_max = settings.consecutive_failures
        self._cb.reset_timeout = settings.open_seconds
        self._cb.success_threshold = settings.half_open_probes

    @property
    def open_until(self) -> float | None:
        return None if self.opened_at is None else self.opened_at + self.open_for

    def available(self) -> bool:
        """Would `allow` grant a permit now? (No side effect but `kept_away`: a
        routing decision that passes this deployment by is counted.)"""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN and self._clock() < self.opened_at + self.open_for:  # type: ignore[operator]
            self.kept_away += 1
            return False
        # Half-open, or about to be: probe slots may still be held by probes that
        # outlived a reopening.
        if self._probes < self.settings.half_open_probes:
            return True
        self.kept_away += 1
        return False

    def allow(self) -> Permit | None:
        """A permit for one attempt, or None while the breaker keeps traffic away."""
        state = self.state
        if state == CLOSED:
            return NORMAL
        if state == OPEN:
            if self._clock() < self.opened_at + self.open_for:  # type: ignore[operator]
                self.kept_away += 1
                return None
            self._cb.half_open()
        if self._probes >= self.settings.half_open_probes:
            self.kept_away += 1
            return None
        self._probes += 1
        return Permit(probe=True)

    def success(self, permit: Permit) -> None:
        if permit.probe:
            self._probes -= 1
        state = self.state
        if state == CLOSED and self._clean:
            return  # nothing to reset: skip pybreaker on the hot path
        if state == OPEN:
            if not permit.forced:
                return  # the late answer of an attempt from before the trip
            self._cb.half_open()
        elif state == HALF_OPEN and not (permit.probe or permit.forced):
            return  # only the half-open trials decide (resilience4j's rule)
        self._cb.call(_succeed)
        self._clean = True

    def failure(self, permit: Permit) -> None:
        self._release(permit)
        state = self.state
        if state == OPEN:
            return  # already open: a late or forced failure must not extend it
        if state == HALF_OPEN and not (permit.probe or permit.forced):
            return  # only the half-open trials decide (resilience4j's rule)
        self._clean = False
        try:
            self._cb.call(_fail)
        except (_Failed, pybreaker.CircuitBreakerError) as exc:
            # pybreaker's frames keep the exception they handled, and its traceback
            # keeps those frames: dropped here, so no reference cycle is left behind.
            exc.__traceback__ = None

    def cancelled(self, permit: Permit) -> None:
        """The attempt was abandoned: no verdict, but its probe slot is free again."""
        self._release(permit)

    def _release(self, permit: Permit) -> None:
        if permit.probe:
            self._probes -= 1

    def _on_open(self) -> None:
        now = self._clock()
        base = self.settings.open_seconds
        if self._healthy_since is not None:
            self.openings = max(0, self.openings - int((now - self._healthy_since) / base))
        self.openings += 1
        self.total_openings += 1
        self.open_for = min(base * self.openings, self.settings.max_open_seconds)
        self.opened_at = now
        self._healthy_since = None
        if self._episode_since is None:
            self._episode_since = now
            self._reopenings = 0
            self.kept_away = 0
            log.warning(
                "deployment %s: circuit breaker opened after %d consecutive failures; "
                "no traffic for %g s, then probes (logged again when it closes)",
                self.name,
                self._cb.fail_counter,
                self.open_for,
                extra={"deployment": self.name, "episode": "breaker_open"},
            )
        else:
            self._reopenings += 1
            log.debug(
                "deployment %s: a probe failed; circuit breaker open again for %g s",
                self.name,
                self.open_for,
                extra={"deployment": self.name},
            )

    def _on_close(self) -> None:
        now = self._clock()
        self.opened_at = None
        self._healthy_since = now
        if self._episode_since is not None:
            log.info(
                "deployment %s: circuit breaker closed after %.1f s open: %d failed "
                "probes reopened it, %d attempts were kept away",
                self.name,
                now - self._episode_since,
                self._reopenings,
                self.kept_away,
                extra={
                    "deployment": self.name,
                    "episode": "breaker_open",
                    "reopenings": self._reopenings,
                    "kept_away": self.kept_away,
                },
            )
            self._episode_since = None


class _Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self._breaker.state = new_state.name
        if new_state.name == OPEN:
            self._breaker._on_open()
        elif new_state.name == CLOSED:
            self._breaker._on_close()
