"""Open-loop load: arrivals on a fixed schedule, whatever the gateway does.

A closed loop (send, wait for the answer, send again) sends less exactly when the
gateway struggles, and so hides what a fault does to latency (coordinated
omission). Here the n-th request is due at `start + n / rate`. Requests in flight
are capped at `concurrency`; an arrival over the cap is shed and recorded as a
failure, so a gateway that hangs shows up as failures, never as a quiet phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from chaos.runner.samples import SHED, TIMEOUT, Sample
from chaos.runner.schema import Load

Issue = Callable[[str], Awaitable[Sample]]
Record = Callable[[Sample], None]


class OpenLoop:
    def __init__(
        self,
        load: Load,
        phase: str,
        rng: random.Random,
        issue: Issue,
        record: Record,
        clock: Callable[[], float],
    ) -> None:
        self.load = load
        self.phase = phase
        self._kinds = list(load.mix)
        self._weights = [load.mix[k] for k in self._kinds]
        self._rng = rng
        self._issue = issue
        self._record = record
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, seconds: float, stop: asyncio.Event) -> None:
        """Issue arrivals for `seconds` (or until `stop` is set)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while n / self.load.rate < seconds:
            delay = start + n / self.load.rate - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            self._arrive(self._rng.choices(self._kinds, self._weights)[0])
            n += 1

    def _arrive(self, kind: str) -> None:
        self.sent += 1
        if len(self._tasks) >= self.load.concurrency:
            now = self._clock()
            self._record(Sample(kind, self.phase, now, now, code=SHED))
            return
        task = asyncio.create_task(self._one(kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, kind: str) -> None:
        sent = self._clock()
        try:
            sample = await self._issue(kind)
        except asyncio.CancelledError:
            self._record(Sample(kind, self.phase, sent, self._clock(), code=TIMEOUT))
            raise
        self._record(sample)

    async def drain(self, timeout_s: float) -> None:
        """Wait for the requests in flight; past `timeout_s`, cancel them (recorded as
        client timeouts)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
