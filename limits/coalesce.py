"""Coalescing: calls that arrive while one is in flight go out together in the next.

A round trip per admission would cap a worker at a few thousand admissions a second
(measured here: ~3.4k EVALSHA/s one at a time from Python, 20-30k/s batched). So
the Redis store sends one call at a time per kind of operation, and whatever
queued meanwhile (at most `max_batch`) forms the next call, in arrival order. Under
light load a call carries one item and costs one round trip, as before; under heavy
load a call carries many, and the round trip is shared.

Every caller waits at most its own timeout, queueing included. What happens to an
item whose caller stopped waiting is decided by its outcome, not guessed:

- still queued: it is never sent (unless `drop_unsent` is off: then it is sent,
  and handled as below);
- sent, and answered: the answer goes to `orphaned` (the Redis store voids an
  admission nobody will settle);
- sent, and the call failed (a timeout, a dropped connection: it may or may not
  have run): it goes to `lost`, as does every item of a failed call.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

#: How early asyncio may run a timer (it runs those due within the clock's resolution).
CLOCK_RESOLUTION_S = time.get_clock_info("monotonic").resolution

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(slots=True, eq=False)
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    abandoned: bool = False


def _time_out(pending: _Pending[Any, Any]) -> None:
    """The caller's timeout passed: it stops waiting (an answer that is already in
    stands; one that comes later goes to `orphaned`)."""
    if not pending.future.done():
        pending.abandoned = True
        pending.future.set_exception(TimeoutError())


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        call: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        max_batch: int,
        enabled: bool = True,
        drop_unsent: bool = True,
        orphaned: Callable[[Item, Result], None] = lambda item, result: None,
        lost: Callable[[Item], None] = lambda item: None,
    ) -> None:
        """`call` takes items and returns one result each, in order, or raises.
        `enabled=False` sends every item in a call of its own, concurrently (for
        comparison: the same semantics without the batching). `drop_unsent=False`
        sends an item even when its caller stopped waiting before it went out (a
        settlement must be applied whether or not anyone waits for it)."""
        self._call = call
        self.max_batch = max_batch
        self.enabled = enabled
        self.drop_unsent = drop_unsent
        self._orphaned = orphaned
        self._lost = lost
        self._queue: list[_Pending[Item, Result]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        #: (deadline, caller) in arrival order, and the timer at the first unanswered.
        self._waiting: deque[tuple[float, _Pending[Item, Result]]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        #: Calls made and items they carried: items / calls is the batching achieved.
        self.calls = 0
        self.items = 0

    async def submit(self, item: Item, timeout_s: float) -> Result:
        """`item`'s result; raises what the call raised, or `TimeoutError` when it
        took longer than `timeout_s` (queueing included)."""
        pending: _Pending[Item, Result] = _Pending(item)
        if not self.enabled:
            self._spawn(self._run([pending]))
        else:
            self._queue.append(pending)
            if not self._draining:
                self._draining = True
                self._spawn(self._drain())
        self._watch(pending, timeout_s)
        future = pending.future
        # The caller awaits the future itself (no `wait_for(shield(...))`: a waiter,
        # a shield's outer future and their callbacks per call): when the caller is
        # cancelled, so is the future, and `abandoned` (set below, before anything
        # else can run) routes a late answer to `orphaned` as a shield would have.
        try:
            return await future
        except TimeoutError:
            raise
        except BaseException:  # the caller was cancelled
            pending.abandoned = True
            if future.done() and not future.cancelled() and future.exception() is None:
                self._orphaned(pending.item, future.result())
            raise

    # -- deadlines -------------------------------------------------------------------
    # Callers that pass the same timeout have deadlines in arrival order, so one
    # timer, at the oldest unanswered deadline, times them all out: not a timer per
    # item (a heap push, a cancel and a pop: two items per limited request). A
    # deadline earlier than one before it gets a timer of its own.

    def _watch(self, pending: _Pending[Item, Result], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiting = self._drop_answered()
        if waiting and deadline < waiting[-1][0]:
            loop.call_at(deadline, _time_out, pending)
            return
        waiting.append((deadline, pending))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Time out every caller whose deadline passed; wait for the next one."""
        self._watchdog = None
        loop = asyncio.get_running_loop()
        # As asyncio runs a timer: due within the clock's resolution.
        now = loop.time() + CLOCK_RESOLUTION_S
        waiting = self._waiting
        while waiting:
            deadline, pending = waiting[0]
            if not pending.future.done():
                if deadline > now:
                    self._watchdog = loop.call_at(deadline, self._expire)
                    return
                _time_out(pending)
            waiting.popleft()

    def _drop_answered(self) -> deque[tuple[float, _Pending[Item, Result]]]:
        """The deadlines without the answered callers at their head."""
        waiting = self._waiting
        while waiting and waiting[0][1].future.done():
            waiting.popleft()
        return waiting

    def _forget_answered(self) -> None:
        """After a call: drop the answered callers; with none left unanswered, no
        timer stays behind."""
        if not self._drop_answered() and self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._run(batch)
        finally:
            self._draining = False

    async def _run(self, batch: list[_Pending[Item, Result]]) -> None:
        live = [p for p in batch if not (p.abandoned and self.drop_unsent)]
        if not live:
            return
        self.calls += 1
        self.items += len(live)
        try:
            results = await self._call([p.item for p in live])
        except Exception as exc:
            for pending in live:
                self._lost(pending.item)
                if not (pending.abandoned or pending.future.done()):
                    pending.future.set_exception(exc)
            self._forget_answered()
            return
        for pending, result in zip(live, results, strict=True):
            if pending.abandoned:
                self._orphaned(pending.item, result)
            elif not pending.future.done():
                pending.future.set_result(result)
        self._forget_answered()

    async def idle(self) -> None:
        """Returns once nothing is queued or in flight (what was submitted has been
        answered, or has failed): for a caller that must see it applied."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop: calls in flight are cancelled (their items are lost), queued ones
        are never sent."""
        self._queue.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
