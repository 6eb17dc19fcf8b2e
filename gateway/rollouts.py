"""Guarded rollouts in the gateway: a candidate runtime serving beside the current one,
judged continuously, promoted or rolled back by the gateway itself.

A rollout begins when a new version arrives as a canary (`PUT /admin/config?rollout=
canary`, or from the config source with `reload.rollout.mode: canary`). Its runtime
is built and started like any version's, but not adopted (the audit signing key, the
tracked SLOs and `/mcp` stay the serving version's) and not swapped in: requests pick
a runtime in `choose` (rollouts/split.py decides), each keeps the one it picked to
its last byte, and each response names its version (`x-seawall-config-version`).

Every finished request of either version is an `Outcome` (`observe`, a completion
hook); every `check_interval_s` the judge (rollouts/judge.py) compares the two, and
the machine (rollouts/machine.py) decides. On a decision, with the reloader's lock:

- **promoted**: a candidate that a person sent is first written to the config source
  (so every worker and replica follows; a write that fails rolls it back instead),
  then adopted and swapped in; the replaced version retires after its last request;
- **rolled back** or **aborted**: new requests go to the serving version at once; the
  candidate retires after its last request; its id is remembered so the source does
  not start it again; a candidate that came from a writable source has the serving
  version's documents written back over it (a restart then serves what served).

Each step is an audit record (`config.rollout.<step>`) and a log line; the state is
`GET /admin/config/rollout` and part of the admin page.

A restart ends a rollout. A canary a person started was never written to the source,
so the restarted gateway serves the version that was serving; one from the source is
what the source holds, so it comes back as the serving version (docs/reloading.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

from gateway.exchange import Exchange
from gateway.reload import Reloader
from gateway.runtime import Runtime
from gateway.sources import Source, SourceError
from gateway.stages.slo import outcome
from gateway.versions import ConfigVersion
from rollouts.config import RolloutSettings
from rollouts.judge import Evidence, Judgement, judge
from rollouts.machine import NotRunning, Rollout, Step, VersionRef
from rollouts.split import Split
from tenants.identity import Identity
from tenants.keys import Unauthenticated

log = logging.getLogger("seawall.rollout")

#: Candidate versions rolled back or aborted that the source may not start again, at
#: most (the oldest forgotten first).
MAX_REJECTED = 32

__all__ = ["NotRunning", "Rollouts"]


class Rollouts:
    def __init__(
        self,
        source: Callable[[], Source | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: Set by the reloader that applies versions (`Reloader(rollouts=...)`): its
        #: lock, its swap and its retirements are the rollout's too.
        self.reloader: Reloader
        self._source = source
        self.clock = clock
        #: The canary's runtime while a rollout runs, else None: read per request.
        self.candidate: Runtime | None = None
        #: The running rollout, or the last one (its final state), or None.
        self.rollout: Rollout | None = None
        self._split: Split | None = None
        self._from_source = False
        #: What the running rollout's requests showed, counted as they finish.
        self.evidence: Evidence | None = None
        #: Candidate ids ended without promotion (ordered, bounded: MAX_REJECTED).
        self.rejected: OrderedDict[str, None] = OrderedDict()
        self._judge: asyncio.Task[None] | None = None
        #: Time the judge spent on the event loop, seconds, and how many looks.
        self.judge_seconds = 0.0
        self.judgements = 0

    @property
    def running(self) -> bool:
        return self.candidate is not None

    # -- per request ---------------------------------------------------------------

    def choose(self, scope: Scope, serving: Runtime) -> Runtime:
        """The runtime that serves this request: the candidate for its share and its
        tenants, else `serving`."""
        candidate, split = self.candidate, self._split
        if candidate is None or split is None:
            return serving
        chain = _chain(serving, scope) if split.tenants else None
        return candidate if split.candidate_serves(chain) else serving

    async def observe(self, exchange: Exchange) -> None:
        """The completion hook: while a rollout runs, every finished request of either
        version is evidence."""
        evidence = self.evidence
        if evidence is not None and self.candidate is not None:
            evidence.add(outcome(exchange, exchange.config_version))

    # -- what the reloader asks ------------------------------------------------------

    def keeps(self, incoming: str, from_source: bool) -> ConfigVersion | None:
        """The version to answer with instead of applying `incoming`: the running
        candidate's (it is that version), or, for the source, the serving one when
        `incoming` was rolled back (held until the source holds something else)."""
        candidate = self.candidate
        if candidate is not None and candidate.version.id == incoming:
            return candidate.version
        if from_source and incoming in self.rejected:
            return self.reloader.current().version
        return None

    async def begin(
        self,
        serving: Runtime,
        candidate: Runtime,
        settings: RolloutSettings,
        actor: Identity | None,
        from_source: bool,
    ) -> None:
        """Start judging `candidate` (started, not adopted) against `serving`; the
        reloader's lock is held. The settings are the serving version's, with what the
        person asked for (share, tenants) over them."""
        version = candidate.version
        self.rollout = Rollout(
            VersionRef(serving.version.id, serving.version.number),
            VersionRef(version.id, version.number),
            settings,
            self.clock(),
            version.origin,
            actor.key_id if actor is not None else None,
        )
        # The serving version's SLOs judge too (a candidate cannot change its judges).
        self.evidence = Evidence(serving.version.id, version.id, serving.config.slos, settings)
        self._from_source = from_source
        self._split = Split(settings.share, settings.tenants, version.id)
        self.candidate = candidate
        self._record(self.rollout.steps[0], actor, share=settings.share)
        log.warning(
            "config version %s (#%d, from %s) is a canary: %s of requests%s; judged "
            "against %s every %g s",
            version.id,
            version.number,
            version.origin,
            f"{settings.share:.0%}",
            f" and tenants {', '.join(settings.tenants)}" if settings.tenants else "",
            serving.version.id,
            settings.check_interval_s,
        )
        self._judge = asyncio.create_task(self._judge_loop(self.rollout))

    async def supersede(self, origin: str, actor: Identity | None) -> None:
        """A new version arrived while a rollout runs: it ends (aborted), nothing is
        written to the source (the new version is what it holds or will hold)."""
        rollout = self.rollout
        if rollout is None or not rollout.running:
            return
        step = rollout.abort(
            self.clock(), actor.key_id if actor else None, f"superseded by {origin}"
        )
        await self._end(rollout, step, actor, restore_source=False)

    # -- what people ask ---------------------------------------------------------------

    async def promote(self, actor: Identity, reason: str = "") -> Step:
        async with self.reloader.lock:
            rollout = self._running()
            problem = await self._publish(rollout)
            now = self.clock()
            step = (
                rollout.roll_back(now, problem, actor.key_id)
                if problem
                else rollout.promote(
                    now, actor.key_id, reason or f"promoted by key '{actor.key_id}'"
                )
            )
            await self._end(rollout, step, actor)
            return step

    async def abort(self, actor: Identity, reason: str = "") -> Step:
        async with self.reloader.lock:
            rollout = self._running()
            step = rollout.abort(
                self.clock(), actor.key_id, reason or f"aborted by key '{actor.key_id}'"
            )
            await self._end(rollout, step, actor)
            return step

    def _running(self) -> Rollout:
        rollout = self.rollout
        if rollout is None or not rollout.running:
            raise NotRunning(rollout.state if rollout is not None else "none")
        return rollout

    # -- the judge -------------------------------------------------------------------------

    def verdict(self, evidence: Evidence) -> Judgement:
        started = time.perf_counter()
        try:
            return judge(evidence)
        finally:
            self.judge_seconds += time.perf_counter() - started
            self.judgements += 1

    async def _judge_loop(self, rollout: Rollout) -> None:
        interval = rollout.settings.check_interval_s
        evidence = self.evidence
        assert evidence is not None
        while rollout.running:
            await asyncio.sleep(interval)
            try:
                verdict: Judgement | None = self.verdict(evidence)
            except Exception:  # a bug must not leave a canary serving unjudged
                log.exception("rollout of %s: the judge failed", rollout.candidate.id)
                verdict = None
            async with self.reloader.lock:
                if not rollout.running or self.rollout is not rollout:
                    return
                now = self.clock()
                if verdict is None:
                    step: Step | None = rollout.roll_back(now, "the judge failed (see the log)")
                elif rollout.ready_to_promote(verdict, now):
                    problem = await self._publish(rollout)
                    step = (
                        rollout.roll_back(now, problem) if problem else rollout.judge(verdict, now)
                    )
                else:
                    step = rollout.judge(verdict, now)
                if step is not None:
                    await self._end(rollout, step, None)

    async def _publish(self, rollout: Rollout) -> str | None:
        """Before a person's candidate is promoted: write it to the config source (every
        worker and replica follows, and a restart serves it). The problem, if the
        source cannot be written."""
        source, candidate = self._source(), self.candidate
        if self._from_source or source is None or candidate is None:
            return None
        try:
            await source.write(candidate.version.documents)
        except SourceError as exc:
            log.error("config source %s: write failed: %s", source.origin, exc)
            return f"the config source {source.origin} could not be written, so not promoted"
        return None

    async def _end(
        self, rollout: Rollout, step: Step, actor: Identity | None, restore_source: bool = True
    ) -> None:
        """Act on a final step (the reloader's lock held): swap the candidate in, or
        send every new request back to the serving version."""
        candidate = self.candidate
        self.candidate = None
        self._split = None
        self.evidence = None
        assert candidate is not None
        judge = self._judge
        if judge is not None and judge is not asyncio.current_task():
            judge.cancel()
        if step.action == "promoted":
            await candidate.adopt()
            self._count(step)  # the swap's audit record is the step's
            self.reloader.serve(candidate, "config.rollout.promoted", actor, reason=step.reason)
            log.warning("rollout of %s promoted: %s", candidate.version.id, step.reason)
            return
        if restore_source:  # judged or refused by a person, not superseded
            self.rejected[candidate.version.id] = None
            while len(self.rejected) > MAX_REJECTED:
                self.rejected.popitem(last=False)
        self.reloader.retire_later(candidate)
        restored = await self._restore_source() if restore_source and self._from_source else None
        self._record(step, actor, source_restored=restored)
        log.warning(
            "rollout of %s %s: %s", candidate.version.id, step.action.replace("_", " "), step.reason
        )

    async def _restore_source(self) -> bool:
        """A candidate from a writable source, ended: the serving version's documents
        go back over it. False when the source is read-only or the write failed (it
        then still holds the candidate; `rejected` keeps it from starting again)."""
        source = self._source()
        if source is None or not source.writable:
            return False
        try:
            await source.write(self.reloader.current().version.documents)
        except SourceError as exc:
            log.error("config source %s: write failed: %s", source.origin, exc)
            return False
        return True

    def _count(self, step: Step) -> None:
        """`seawall_config_rollout_steps_total`."""
        steps = self.reloader.state.rollout_steps
        steps[step.action] = steps.get(step.action, 0) + 1

    def _record(self, step: Step, actor: Identity | None, **detail: object) -> None:
        """Counted and audited."""
        self._count(step)
        audit = self.reloader.state.audit
        if audit is not None:
            audit.admin(
                f"config.rollout.{step.action}",
                actor,
                step.version,
                {"reason": step.reason, "origin": self.rollout.origin if self.rollout else None,
                 **detail},
            )  # fmt: skip

    # -- views ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """`GET /admin/config/rollout`: the running rollout or the last one."""
        rollout = self.rollout
        if rollout is None:
            serving = self.reloader.current().version
            return {
                "state": "idle",
                "baseline": {"id": serving.id, "number": serving.number},
                "candidate": None,
                "steps": [],
            }
        return {
            **rollout.describe(),
            "judge": {"looks": self.judgements, "seconds": round(self.judge_seconds, 6)},
        }

    async def aclose(self) -> None:
        """At shutdown: the judge stops; a canary's runtime closes after its requests."""
        judge = self._judge
        if judge is not None:
            judge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await judge
        candidate = self.candidate
        self.candidate = None
        if candidate is not None:
            await candidate.retire()


def _chain(serving: Runtime, scope: Scope) -> tuple[str, ...] | None:
    """The caller's tenant chain by the serving version's keys, None for no valid key
    (the runtime that serves it answers 401)."""
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    try:
        return serving.tenants.authenticate(authorization).chain
    except Unauthenticated:
        return None
