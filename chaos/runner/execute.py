"""Running an experiment: its phases in order, a tick every second, rollback always.

For each phase: wait for recovery if asked, scrape `/metrics`, schedule the admin
faults or start the config rollout, send the open-loop load for the phase's length
(a rollout's phase keeps it on until the rollout is decided or its bound passed),
let the requests in flight finish, scrape again, remove the faults, then judge the
phase's probes. Every second a ticker polls `/admin/routing`, prints a progress line
and checks the safety rules. Whatever ends the run (the last phase, an abort,
Ctrl-C, a gateway that went away), the faults are rolled back before it returns,
and so are the run's config rollouts (chaos/runner/rollout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime
from typing import TextIO

import httpx

from chaos.runner.gateway_api import GatewayAPI, GatewayProblem
from chaos.runner.injection import AdminFaults, HeaderFaults
from chaos.runner.load import OpenLoop
from chaos.runner.probes import (
    Check,
    Evidence,
    evaluate,
    fault_check,
    fault_effect,
    rollout_checks,
)
from chaos.runner.progress import phase_lines, progress_line, verdict_lines
from chaos.runner.promtext import deltas_by_label
from chaos.runner.results import PhaseResult, RunResult, counts
from chaos.runner.rollout import PhaseRollout, undo
from chaos.runner.safety import BaselineWatch, SafetyMonitor, burn_fires
from chaos.runner.samples import Sample
from chaos.runner.schema import Experiment, Load, Phase
from chaos.runner.timeline import Timeline
from chaos.runner.traffic import Traffic, send

READY_TIMEOUT_S = 30
GUARD_EVENTS = "seawall_guard_events_total"
RECOVERY_POLL_S = 0.5
#: In-flight requests get this long after the phase before they count as timeouts
#: (on top of the client timeout; a tool round makes three calls).
DRAIN_STEPS = 3


class Run:
    """One execution of one experiment against one gateway."""

    def __init__(
        self,
        experiment: Experiment,
        url: str,
        out: TextIO,
        source: str,
        scale: float,
        api_key: str | None = None,
    ) -> None:
        self.experiment = experiment
        #: Sent as a bearer token on every request when the gateway has keys; the
        #: key needs the `chaos` role (and `admin` for admin faults and routing state).
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = experiment.target.model
        self.out = out
        self.result = RunResult(
            experiment, source, url, scale, datetime.now(UTC).isoformat(timespec="seconds")
        )
        self.completed: list[Sample] = []
        self.by_phase: dict[str, list[Sample]] = {}
        self.timeline = Timeline()
        self.stop = asyncio.Event()
        self.phase = "starting"
        self.phase_started = 0.0
        self.loops: list[OpenLoop] = []
        self.admin: list[AdminFaults] = []
        self.rollouts: list[PhaseRollout] = []
        waits = sum(p.wait_timeout_s for p in experiment.phases if p.wait_for)
        # A rollout's phase may outlast `seconds`, up to its bound (`within_s`).
        waits += sum(p.rollout.within_s for p in experiment.phases if p.rollout)
        self.safety = SafetyMonitor(
            experiment.safety, self.model, experiment.safety.max_seconds + waits
        )
        abort_on = experiment.safety.abort_on
        self.baseline = BaselineWatch(abort_on, experiment.baseline_phase)
        self._t0 = time.monotonic()

    # -- bookkeeping ------------------------------------------------------------------

    def clock(self) -> float:
        return time.monotonic() - self._t0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def record(self, sample: Sample) -> None:
        self.completed.append(sample)
        self.by_phase.setdefault(sample.phase, []).append(sample)

    def abort(self, reason: str) -> None:
        if self.result.aborted is None:
            self.result.aborted = reason
            self.say(f"ABORT: {reason}")
        self.stop.set()

    # -- the run --------------------------------------------------------------------

    async def execute(self) -> RunResult:
        url = self.result.url
        load = self.experiment.load
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._t0 = time.monotonic()
        async with (
            httpx.AsyncClient(
                base_url=url, timeout=load.timeout_s, limits=limits, headers=self.headers
            ) as client,
            httpx.AsyncClient(base_url=url, timeout=10, headers=self.headers) as control,
        ):
            api = GatewayAPI(control)
            traffic = Traffic(client, self.experiment.target, load)
            ticker: asyncio.Task[None] | None = None
            try:
                await api.wait_ready(READY_TIMEOUT_S)
                await api.check_model(self.model)
                leftover = await api.active_faults()
                if leftover:
                    self.result.notes.append(
                        f"{len(leftover)} fault(s) were already scheduled when the run started"
                    )
                ticker = asyncio.create_task(self._ticker(api))
                for phase in self.experiment.phases:
                    await self._phase(phase, api, traffic)
                    if self.stop.is_set():
                        break
            except (GatewayProblem, httpx.HTTPError) as exc:
                self.abort(f"gateway: {exc}")
            except asyncio.CancelledError:
                # Ctrl-C: finish as an aborted run, faults rolled back, report written.
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                self.abort("interrupted")
            finally:
                self.stop.set()
                self.result.rollback = await self._rollback(api)
                for loop in self.loops:
                    await loop.drain(0)
                if ticker is not None:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
        self._finish()
        return self.result

    def _finish(self) -> None:
        self.result.timeline = self.timeline.points
        self.result.samples = self.completed
        ignored = sum(s.chaos_ignored for s in self.completed)
        if ignored:
            self.result.notes.append(
                f"the gateway answered `x-seawall-chaos: ignored` on {ignored} request(s): "
                "this caller may not use chaos (chaos disabled, or a key without the chaos role)"
            )
        for line in verdict_lines(self.result):
            self.say(line)

    async def _rollback(self, api: GatewayAPI) -> str:
        """Remove this run's faults, then (by default) every scheduled fault; then
        undo the run's config rollouts."""
        faults = await self._rollback_faults(api)
        try:
            undone = await undo(
                api, self.rollouts, f"chaos experiment {self.experiment.name} ended"
            )
        except (GatewayProblem, httpx.HTTPError) as exc:
            undone = [f"config rollouts: FAILED ({exc})"]
        return "; ".join([faults, *undone])

    async def _rollback_faults(self, api: GatewayAPI) -> str:
        try:
            for admin in self.admin:
                await admin.remove()
            if not self.experiment.rollback.clear_all:
                return "removed this run's scheduled faults"
            cleared = await api.clear()
        except (GatewayProblem, httpx.HTTPError) as exc:
            return (
                f"FAILED ({exc}); scheduled faults still expire by themselves at the end "
                "of their phase's duration"
            )
        if cleared is None:
            return "nothing to roll back (the gateway has no admin chaos API)"
        return f"cleared {cleared} scheduled fault(s) (DELETE /admin/chaos)"

    async def _ticker(self, api: GatewayAPI) -> None:
        second = 1
        while True:
            await asyncio.sleep(max(0.0, second - self.clock()))
            second += 1
            breakers = await api.breakers(self.model)
            now = self.clock()
            in_flight = sum(loop.in_flight for loop in self.loops)
            point = self.timeline.tick(now, self.phase, self.completed, breakers, in_flight)
            samples = self.by_phase.get(self.phase, [])
            self.say(
                progress_line(self.phase, now - self.phase_started, samples, point.open_breakers)
            )
            reason = self.safety.check(now, self.completed)
            if reason is None:
                reason = await self._gateway_signals(api, now)
            if reason is not None:
                self.abort(reason)

    async def _gateway_signals(self, api: GatewayAPI, now: float) -> str | None:
        """`safety.abort_on`: the baseline deviation, then the gateway's burn rate; the
        reason says when, in the run's seconds and its phase."""
        abort_on = self.experiment.safety.abort_on
        reason = self.baseline.check(now, self.completed)
        if reason is None and abort_on.burn_rate is not None:
            burns = await api.burn_rates(abort_on.burn_window)
            reason = burn_fires(abort_on, burns or ())
        if reason is None:
            return None
        return f"{reason}, at {now:.1f} s (phase {self.phase})"

    def _loop(
        self, load: Load, label: str, seed_label: str, phase: Phase, traffic: Traffic
    ) -> OpenLoop:
        headers = HeaderFaults(phase)

        async def issue(kind: str) -> Sample:
            return await send(
                traffic, kind, label, headers.for_kind(kind), self.clock, headers.forge_mode(kind)
            )

        rng = random.Random(f"{load.seed}/{seed_label}")
        loop = OpenLoop(load, label, rng, issue, self.record, self.clock)
        self.loops.append(loop)
        return loop

    def _enter(self, label: str) -> None:
        self.phase, self.phase_started = label, self.clock()

    async def _phase(self, phase: Phase, api: GatewayAPI, traffic: Traffic) -> None:
        load = self.experiment.phase_load(phase)
        waited = None
        if phase.wait_for is not None:
            waited = await self._recover(phase, load, api, traffic)
        if self.stop.is_set():
            return
        before = await api.metrics()
        admin = AdminFaults(api, phase)
        self.admin.append(admin)
        rollout = None
        if phase.rollout is not None:
            rollout = PhaseRollout(api, phase.rollout, self.clock)
            self.rollouts.append(rollout)
        self._enter(phase.name)
        start = self.clock()
        loop = self._loop(load, phase.name, phase.name, phase, traffic)
        drain = self.experiment.load.timeout_s * DRAIN_STEPS
        watcher: asyncio.Task[None] | None = None
        try:
            await admin.schedule(phase.seconds)
            if rollout is not None:
                await rollout.start()
                watcher = asyncio.create_task(rollout.watch(self.stop))
            await loop.run(phase.seconds, self.stop)
            if rollout is not None:
                await self._until_decided(rollout, loop)
            await loop.drain(1.0 if self.stop.is_set() else drain)
        finally:
            await admin.remove()
            await loop.drain(0)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        after = await api.metrics()
        breakers = await api.breakers(self.model)
        view = None if rollout is None else await rollout.refresh()
        samples = self.by_phase.get(phase.name, [])
        evidence = Evidence(self.model, samples, before, after, breakers, view)
        self.baseline.phase_ended(phase.name, self.by_phase.get(phase.name, []))
        self._judge(phase, start, evidence, waited)

    async def _until_decided(self, rollout: PhaseRollout, loop: OpenLoop) -> None:
        """Past the phase's `seconds`, keep the load on (the judge needs traffic)
        until the rollout is decided, or its bound passed, or the run stops."""
        remaining = rollout.deadline - self.clock()
        if remaining > 0 and not rollout.over.is_set() and not self.stop.is_set():
            await loop.run(remaining, rollout.over)

    def _judge(
        self, phase: Phase, start: float, evidence: Evidence, waited: tuple[float, bool] | None
    ) -> None:
        checks: list[Check] = []
        if waited is not None:
            seconds, recovered = waited
            checks.append(
                Check(
                    f"recovered ({phase.wait_for}) before the phase",
                    "wait_for",
                    round(seconds, 3),
                    None,
                    phase.wait_timeout_s,
                    recovered,
                    "" if recovered else "timed out",
                )
            )
        probes = [*(self.experiment.hypothesis if phase.steady_state else ()), *phase.hypothesis]
        checks += [evaluate(spec, evidence) for spec in probes]
        names = dict.fromkeys(name for fault in phase.faults for name in fault.names())
        effects = [fault_effect(name, evidence) for name in names]
        checks += [fault_check(effect) for effect in effects]
        if phase.rollout is not None:
            checks += rollout_checks(phase.rollout, evidence.rollout)
        result = PhaseResult(
            name=phase.name,
            steady_state=phase.steady_state,
            planned_s=phase.seconds,
            start_s=start,
            end_s=self.clock(),
            faults=[f"{f.via}: {f.header_text()}" for f in phase.faults],
            checks=checks,
            counts=counts(evidence.samples),
            effects=effects,
            waited_s=None if waited is None else round(waited[0], 3),
            guard_events=_guard_events(evidence),
            rollout=None if evidence.rollout is None else evidence.rollout.answer,
        )
        self.result.phases.append(result)
        for line in phase_lines(result):
            self.say(line)

    async def _recover(
        self, phase: Phase, load: Load, api: GatewayAPI, traffic: Traffic
    ) -> tuple[float, bool]:
        """Keep the load on until every breaker of the group is closed (recovery
        needs traffic: a half-open breaker closes on successful probes)."""
        label = f"{phase.name}:recovery"
        self._enter(label)
        start = self.clock()
        done = asyncio.Event()
        loop = self._loop(load, label, label, phase, traffic)
        sender = asyncio.create_task(loop.run(phase.wait_timeout_s, done))
        recovered = False
        while not sender.done() and not self.stop.is_set():
            breakers = await api.breakers(self.model)
            if breakers is not None and all(s == "closed" for s in breakers.values()):
                recovered = True
                break
            await _first(sender, RECOVERY_POLL_S)
        done.set()
        await sender
        await loop.drain(self.experiment.load.timeout_s * DRAIN_STEPS)
        return self.clock() - start, recovered


def _guard_events(evidence: Evidence) -> dict[str, float]:
    if evidence.before is None or evidence.after is None:
        return {}
    return deltas_by_label(evidence.before, evidence.after, GUARD_EVENTS, "kind")


async def _first(task: asyncio.Task[None], timeout_s: float) -> None:
    """Wait until `task` ends or `timeout_s` passes, whichever is first."""
    await asyncio.wait({task}, timeout=timeout_s)


async def run_experiment(
    experiment: Experiment,
    url: str,
    out: TextIO,
    source: str = "",
    scale: float = 1.0,
    api_key: str | None = None,
) -> RunResult:
    return await Run(experiment, url, out, source, scale, api_key).execute()
