"""Routes one request through a model group, its deployments and its fallbacks.

For each request:

1. Group chain. The requested group first. When it cannot serve, the next group
   comes from the list the failure calls for: `fallbacks` for failures that fail
   over, `context_window_fallbacks` for a context-length error,
   `content_policy_fallbacks` for a content-policy refusal. Only the requested
   group's lists are used (no transitive fallbacks), and no group is tried twice.
2. Within a group, a deployment is chosen by the group's strategy among those whose
   breaker admits traffic; after a failure that fails over, another one not yet
   tried. If every breaker of the group is open, the request fails over while a
   group of `fallbacks` is left to try; when none is, the deployment whose breaker
   opened first is tried anyway (a request is never refused for open breakers
   alone) and the route says `(all-open)`.
3. On a deployment, the attempt is retried per its `retry` settings (see
   `routing.retry`), asking its breaker again before every retry.
4. With `hedge_after_ms`, a second deployment is started when the first has not
   answered in time; the first success wins and the other is cancelled.

A request that is not `observed` (`UpstreamRequest.observed`: faults were injected
for one caller) is routed the same way, but what it meets is recorded nowhere that
other requests read: no statistics, no breaker verdicts (a permit it took is handed
back without one), no retry budget, no hedge or fallback counts.

Every attempt is a hop in the route (`group/deployment`, `!<status or failure>`
when it failed), which the gateway returns as `x-seawall-route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from routing.breaker import FORCED, Breaker, Permit
from routing.budget import UNMETERED, RetryBudget
from routing.call import Reply, UpstreamRequest
from routing.config import DeploymentConfig, ModelGroupConfig, RoutingSettings
from routing.deployment import Deployment
from routing.health import HealthRegistry
from routing.outcomes import Failure, UpstreamError
from routing.providers.base import Provider
from routing.retry import is_retryable, retrying
from routing.stats import Clock
from routing.strategies import STRATEGIES

log = logging.getLogger("seawall.routing")

FALLBACK_LISTS = {
    Failure.CONTEXT_LENGTH: "context_window_fallbacks",
    Failure.CONTENT_POLICY: "content_policy_fallbacks",
}


class ModelGroup:
    """Deployments that serve one client-facing model name."""

    def __init__(self, config: ModelGroupConfig, deployments: Iterable[Deployment]) -> None:
        self.config = config
        self.name = config.name
        self.deployments = tuple(deployments)
        self.choose = STRATEGIES[config.strategy]
        self.hedge_after = None if config.hedge_after_ms is None else config.hedge_after_ms / 1000

    def select(
        self,
        tried: set[str],
        rng: random.Random,
        only: frozenset[str] | None = None,
        force: bool = True,
    ) -> tuple[Deployment, Permit] | None:
        """The next deployment to try and its breaker permit; None when none is left.

        `only` restricts the choice to a subset of the group (a traffic partition).
        `force`: when every breaker is open, try the one that opened first anyway
        (else None, and the request fails over).
        """
        deployments = self.deployments
        if only is not None:
            deployments = tuple(d for d in deployments if d.id in only)
            if not deployments:
                return None
        if len(deployments) == 1:
            sole = deployments[0]
            if sole.id in tried:
                return None
            permit = sole.breaker.allow()
            if permit is None:
                return (sole, FORCED) if force else None
            return sole, permit
        available = [d for d in deployments if d.breaker.available()]
        if available:
            untried = [d for d in available if d.id not in tried]
            if not untried:
                return None
            deployment = untried[0] if len(untried) == 1 else self.choose(untried, rng)
            permit = deployment.breaker.allow()
            return None if permit is None else (deployment, permit)
        oldest = min(deployments, key=_opened_at)
        return None if oldest.id in tried or not force else (oldest, FORCED)


def _opened_at(deployment: Deployment) -> float:
    opened_at = deployment.breaker.opened_at
    return float("inf") if opened_at is None else opened_at


@dataclass(slots=True)
class Hop:
    group: str
    deployment: str
    outcome: str = ""  # "" for success, else the upstream status or failure label
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.group}/{self.deployment}{self.note}"
        return f"{text}!{self.outcome}" if self.outcome else text


@dataclass(slots=True)
class Journey:
    """One request's way through groups and deployments: what it carries, and the
    hops made so far (its route)."""

    request: UpstreamRequest
    deadline: float | None
    route: list[Hop] = field(default_factory=list)

    def hop(self, group: str, deployment: str, outcome: str = "", note: str = "") -> None:
        self.route.append(Hop(group, deployment, outcome, note))


@dataclass(slots=True)
class Attempt:
    """One request on one deployment: what each step of trying it (the attempt, its
    retries, a hedge) works with. A retry is the same attempt with a new permit."""

    journey: Journey
    group: ModelGroup
    deployment: Deployment
    #: The breaker's admission for this try.
    permit: Permit
    #: Added to the hop in the route: `(hedge)`, `(all-open)`.
    note: str = ""

    @property
    def observed(self) -> bool:
        return self.journey.request.observed

    def hop(self, outcome: str = "") -> None:
        self.journey.hop(self.group.name, self.deployment.id, outcome, self.note)


@dataclass
class Routed:
    reply: Reply
    route: list[Hop] = field(default_factory=list)


class RoutingError(Exception):
    """No deployment could serve the request; `error` is the last failure."""

    def __init__(self, error: UpstreamError, route: list[Hop]) -> None:
        super().__init__(error.message)
        self.error = error
        self.route = route


def render_route(route: Iterable[Hop]) -> str:
    return " > ".join(str(hop) for hop in route)


class Router:
    """One config version's routing. The retry budget and the fallback counts are
    passed in by whoever keeps them across versions (the gateway's State); a router
    made without them keeps its own."""

    def __init__(
        self,
        groups: Iterable[ModelGroup],
        settings: RoutingSettings | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        fallbacks: dict[tuple[str, str], int] | None = None,
        hedges: dict[str, int] | None = None,
    ) -> None:
        self.groups: Mapping[str, ModelGroup] = {g.name: g for g in groups}
        self.settings = settings or RoutingSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.budget = (
            budget if budget is not None else RetryBudget(self.settings.retry_budget, clock)
        )
        #: Requests passed from one group to another, by (from, to).
        self.fallbacks: dict[tuple[str, str], int] = fallbacks if fallbacks is not None else {}
        #: Hedged second attempts started, by group.
        self.hedges: dict[str, int] = hedges if hedges is not None else {}

    def group(self, name: str) -> ModelGroup | None:
        return self.groups.get(name)

    def deployments(self) -> Iterator[tuple[ModelGroup, Deployment]]:
        for group in self.groups.values():
            for deployment in group.deployments:
                yield group, deployment

    def reachable(self, group: ModelGroup) -> list[ModelGroup]:
        """The groups a request for `group` may be served by: itself, then those its
        fallback lists name (`fallbacks`, `context_window_fallbacks`,
        `content_policy_fallbacks`), each once, in that order."""
        names = [group.name]
        for listed in ("fallbacks", *FALLBACK_LISTS.values()):
            names += [n for n in getattr(group.config, listed) if n not in names]
        return [self.groups[n] for n in names if n in self.groups]

    def deadline_for(self, timeout_ms: float | None = None) -> float:
        """The `time.monotonic()` instant a request must finish by. Deadlines are real
        time even when `clock` (which drives health bookkeeping) is a test's clock."""
        limit: float = self.settings.request_timeout_ms
        if timeout_ms is not None:
            limit = min(limit, timeout_ms)
        return time.monotonic() + limit / 1000

    # -- the group chain ----------------------------------------------------------

    async def send(
        self, group: ModelGroup, request: UpstreamRequest, deadline: float | None = None
    ) -> Routed:
        journey = Journey(request, deadline)
        if request.observed:
            self.budget.record_request()
        allowed = request.groups
        # Groups the caller may not use count as tried from the start.
        seen = {group.name}
        if allowed is not None:
            seen.update(name for name in self.groups if name not in allowed)
        current, active = group, ""
        chain: Iterator[str] = iter(())
        while True:
            # Open breakers are overridden only where no fallback group is left.
            force = all(name in seen for name in group.config.fallbacks)
            try:
                return Routed(await self._serve_group(current, journey, force), journey.route)
            except UpstreamError as exc:
                listed = FALLBACK_LISTS.get(exc.failure)
                if listed is None:
                    if not exc.failure.policy.fails_over:
                        raise RoutingError(exc, journey.route) from exc
                    listed = "fallbacks"
                if listed != active:
                    chain, active = iter(getattr(group.config, listed)), listed
                following = next((self.groups[n] for n in chain if n not in seen), None)
                if following is None:
                    raise RoutingError(exc, journey.route) from exc
                if request.observed:
                    key = (current.name, following.name)
                    self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
                seen.add(following.name)
                current = following

    # -- within a group -------------------------------------------------------------

    async def _serve_group(self, group: ModelGroup, journey: Journey, force: bool) -> Reply:
        tried: set[str] = set()
        last: UpstreamError | None = None
        while True:
            pick = group.select(tried, self.rng, journey.request.only, force)
            if pick is None:
                if last is not None:
                    try:
                        raise last
                    finally:
                        # The traceback holds this frame: a frame that still held
                        # its own exception would be a reference cycle, dozens of objects
                        # left to the cyclic collector per failed request.
                        last = None
                raise UpstreamError(
                    Failure.UNAVAILABLE,
                    "",
                    f"no deployment of model group '{group.name}' is available",
                )
            deployment, permit = pick
            tried.add(deployment.id)
            attempt = Attempt(journey, group, deployment, permit)
            try:
                if group.hedge_after is not None:
                    return await self._hedged(attempt, tried)
                return await self._on_deployment(attempt)
            except UpstreamError as exc:
                last = exc
                if not exc.failure.policy.fails_over:
                    raise

    async def _hedged(self, attempt: Attempt, tried: set[str]) -> Reply:
        group, journey = attempt.group, attempt.journey
        assert group.hedge_after is not None
        first = asyncio.ensure_future(self._on_deployment(attempt))
        tasks: set[asyncio.Future[Reply]] = {first}
        winner: asyncio.Future[Reply] | None = None
        try:
            done, _ = await asyncio.wait(tasks, timeout=group.hedge_after)
            if not done:
                pick = group.select(tried, self.rng, journey.request.only, force=False)
                if pick is not None:
                    second, second_permit = pick
                    tried.add(second.id)
                    if journey.request.observed:
                        self.hedges[group.name] = self.hedges.get(group.name, 0) + 1
                        second.stats.hedges += 1
                    hedge = Attempt(journey, group, second, second_permit, "(hedge)")
                    tasks.add(asyncio.ensure_future(self._on_deployment(hedge)))
            failures: list[BaseException] = []
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is None:
                        winner = task
                        return task.result()
                    failures.append(error)
            raise failures[-1]
        finally:
            await _cancel_losers(tasks, winner)

    # -- on one deployment ------------------------------------------------------------

    async def _on_deployment(self, attempt: Attempt) -> Reply:
        """One deployment: the attempt, then retries if its failure allows them.

        Tenacity takes over only after a failure: the failed attempt is replayed into
        it as its attempt 1, so the attempt count, the wait (retry-after) and the stop
        rules all see it, while the success path never builds the retry machinery.
        """
        deployment = attempt.deployment
        try:
            return await self._attempt(attempt)
        except UpstreamError as exc:
            if deployment.config.retry.attempts < 2 or not is_retryable(exc):
                raise
            first_failure = exc

        observed = attempt.observed

        def count_retry(_: object) -> None:
            if observed:
                deployment.stats.retries += 1

        replayed = False
        last = first_failure
        settings = deployment.config.retry
        budget = self.budget if observed else UNMETERED
        retries = retrying(
            settings, attempt.journey.deadline, budget, count_retry, deployment.breaker.available
        )
        async for retry in retries:
            with retry:
                if not replayed:
                    replayed = True
                    raise first_failure
                retry_permit = deployment.breaker.allow()
                if retry_permit is None:
                    # The breaker tripped during the wait (other requests' failures):
                    # the stop rule sees it now; the caller gets the real failure.
                    raise last
                try:
                    return await self._attempt(replace(attempt, permit=retry_permit))
                except UpstreamError as exc:
                    last = exc
                    raise
        raise AssertionError("tenacity stopped without an outcome")  # pragma: no cover

    async def _attempt(self, attempt: Attempt) -> Reply:
        journey, deployment, permit = attempt.journey, attempt.deployment, attempt.permit
        if permit.forced:
            attempt = replace(attempt, note=attempt.note + "(all-open)")
        if journey.deadline is not None and time.monotonic() >= journey.deadline:
            deployment.breaker.cancelled(permit)
            raise UpstreamError(Failure.DEADLINE, deployment.id, "request deadline exceeded")
        stats, breaker = deployment.stats, deployment.breaker
        observed = attempt.observed
        started = stats.started()
        try:
            reply = await deployment.provider.send(journey.request, journey.deadline)
        except UpstreamError as exc:
            stats.ended()
            if observed:
                stats.record(self.clock() - started, exc.failure)
                judge(breaker, permit, exc.failure)
            else:
                breaker.cancelled(permit)
            if exc.status in (401, 403):
                log.error(
                    "deployment %s rejected the gateway's credentials (HTTP %s)",
                    deployment.id,
                    exc.status,
                )
            attempt.hop(str(exc.status or exc.failure.label))
            raise
        except BaseException:
            # Cancelled (a hedge loser, a client that left) or a provider bug:
            # no verdict on the deployment.
            stats.ended()
            if observed:
                stats.record_cancelled()
            breaker.cancelled(permit)
            attempt.hop("cancelled")
            raise
        attempt.hop()
        elapsed = self.clock() - started
        if reply.events is None:
            stats.ended()
            if observed:
                stats.record(elapsed)
                breaker.success(permit)
            else:
                breaker.cancelled(permit)
            return reply
        # A stream: the first event is in. Its breaker verdict waits for the end: a
        # success now would reset the failure count, and a deployment that breaks
        # every stream half-way would never trip its breaker.
        if observed:
            stats.record_ttft(elapsed)
        tracked = _TrackedStream(reply, attempt, started)
        return replace(reply, events=tracked.events(), close=tracked.close)


def judge(breaker: Breaker, permit: Permit, failure: Failure | None) -> None:
    """The breaker's verdict on a finished attempt (or stream)."""
    if failure is None:
        breaker.success(permit)
    elif failure.policy.counts_for_breaker:
        breaker.failure(permit)
    elif failure is Failure.DEADLINE:
        breaker.cancelled(permit)  # the request's own time ran out: no verdict
    else:
        breaker.success(permit)  # it answered; the request was the problem


class _TrackedStream:
    """Records a stream's outcome when it ends: finished, broken, or abandoned.

    `close` finalizes too, so a stream that is never iterated (a hedge loser, a
    client gone before the first write) still leaves the in-flight count right and
    returns its breaker permit (a half-open probe slot) without a verdict.
    """

    def __init__(self, reply: Reply, attempt: Attempt, started: float) -> None:
        assert reply.events is not None
        self._reply = reply
        self._upstream = reply.events
        self._deployment = attempt.deployment
        self._permit = attempt.permit
        self._started = started
        self._observed = attempt.observed
        self._finalized = False

    async def events(self) -> AsyncIterator[bytes]:
        failure: Failure | None = None
        finished = False
        try:
            async for chunk in self._upstream:
                yield chunk
            finished = True
        except UpstreamError as exc:
            failure, finished = exc.failure, True
            raise
        finally:
            self._finalize(finished, failure)

    def _finalize(self, finished: bool, failure: Failure | None) -> None:
        if self._finalized:
            return
        self._finalized = True
        deployment, breaker = self._deployment, self._deployment.breaker
        deployment.stats.ended()
        if not self._observed:
            breaker.cancelled(self._permit)
            return
        if not finished:  # a client that went away says nothing about the deployment
            deployment.stats.record_cancelled()
            breaker.cancelled(self._permit)
            return
        deployment.stats.record(deployment.clock() - self._started, failure)
        judge(breaker, self._permit, failure)

    async def close(self) -> None:
        self._finalize(False, None)
        await self._reply.close()


async def _cancel_losers(
    tasks: set[asyncio.Future[Reply]], winner: asyncio.Future[Reply] | None
) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
    # A loser that answered in the same instant as the winner holds a live stream.
    for task in tasks:
        if task is not winner and not task.cancelled() and task.exception() is None:
            await task.result().close()


def build_router(
    groups: Iterable[ModelGroupConfig],
    providers: Mapping[str, Provider],
    settings: RoutingSettings | None = None,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    health: HealthRegistry | None = None,
    budget: RetryBudget | None = None,
    fallbacks: dict[tuple[str, str], int] | None = None,
    hedges: dict[str, int] | None = None,
) -> Router:
    """A router over `groups`. With `health` (and `budget`, `fallbacks`, `hedges`),
    what it learns is kept there, beyond this router: a reload builds a new router on
    the same health."""
    settings = settings or RoutingSettings()
    window = settings.stats_window_seconds

    def deployment(config: DeploymentConfig) -> Deployment:
        kept = None if health is None else health.for_deployment(config, window)
        return Deployment(
            config, providers[config.id], clock, window, settings.sla_min_samples, kept
        )

    return Router(
        (ModelGroup(g, [deployment(d) for d in g.deployments]) for g in groups),
        settings,
        clock,
        rng,
        budget,
        fallbacks,
        hedges,
    )
