"""The coalescer (limits/coalesce.py): batching, and what becomes of an item whose
caller stopped waiting: never sent while queued, `orphaned` when answered after,
`lost` when its call failed. The call is a stand-in gated by events, so every
interleaving is driven, not waited for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from limits.coalesce import Coalescer


class Gate:
    """A call that records its batches and answers when the test opens it."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.fail = fail

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(batch)
        self.entered.set()
        await self.open.wait()
        if self.fail:
            raise ConnectionError("down")
        return [item * 10 for item in batch]


def coalescer(gate: Gate, **options: Any) -> tuple[Coalescer[int, int], dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {"orphaned": [], "lost": []}
    made: Coalescer[int, int] = Coalescer(
        gate,
        max_batch=options.pop("max_batch", 8),
        orphaned=lambda item, result: seen["orphaned"].append((item, result)),
        lost=lambda item: seen["lost"].append(item),
        **options,
    )
    return made, seen


def test_items_queued_during_a_call_go_out_together_in_the_next() -> None:
    async def run() -> None:
        gate = Gate()
        made, seen = coalescer(gate, max_batch=3)
        first = asyncio.ensure_future(made.submit(1, 5))
        await gate.entered.wait()
        rest = [asyncio.ensure_future(made.submit(n, 5)) for n in (2, 3, 4, 5)]
        gate.open.set()
        assert await first == 10
        assert await asyncio.gather(*rest) == [20, 30, 40, 50]
        assert gate.batches == [[1], [2, 3, 4], [5]]
        assert (made.calls, made.items) == (3, 5)
        assert seen == {"orphaned": [], "lost": []}

    asyncio.run(run())


def test_a_caller_that_times_out_while_queued_is_never_sent() -> None:
    async def run() -> None:
        gate = Gate()
        made, seen = coalescer(gate)
        first = asyncio.ensure_future(made.submit(1, 5))
        await gate.entered.wait()
        with pytest.raises(TimeoutError):
            await made.submit(2, 0.01)  # queued behind the call in flight
        gate.open.set()
        assert await first == 10
        await made.aclose()
        assert gate.batches == [[1]]
        assert seen == {"orphaned": [], "lost": []}

    asyncio.run(run())


def test_an_unsent_item_still_goes_out_when_told_to() -> None:
    async def run() -> None:
        gate = Gate()
        made, _ = coalescer(gate, drop_unsent=False)
        first = asyncio.ensure_future(made.submit(1, 5))
        await gate.entered.wait()
        with pytest.raises(TimeoutError):
            await made.submit(2, 0.01)
        gate.entered.clear()
        gate.open.set()
        await first
        await gate.entered.wait()
        assert gate.batches == [[1], [2]]

    asyncio.run(run())


def test_an_answer_after_the_timeout_is_orphaned() -> None:
    async def run() -> None:
        gate = Gate()
        made, seen = coalescer(gate)
        with pytest.raises(TimeoutError):
            await made.submit(7, 0.01)  # sent, and the call is still in flight
        gate.open.set()
        await made.idle()
        assert seen == {"orphaned": [(7, 70)], "lost": []}

    asyncio.run(run())


def test_an_answer_for_a_cancelled_caller_is_orphaned() -> None:
    async def run() -> None:
        gate = Gate()
        made, seen = coalescer(gate)
        caller = asyncio.ensure_future(made.submit(3, 5))
        await gate.entered.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        gate.open.set()
        await made.idle()
        assert seen == {"orphaned": [(3, 30)], "lost": []}

    asyncio.run(run())


def test_a_failed_call_loses_every_item_and_raises_to_who_waits() -> None:
    async def run() -> None:
        gate = Gate(fail=True)
        made, seen = coalescer(gate)
        first = asyncio.ensure_future(made.submit(1, 5))
        await gate.entered.wait()
        waiting = asyncio.ensure_future(made.submit(2, 5))
        with pytest.raises(TimeoutError):
            await made.submit(3, 0.01)  # times out queued: dropped, never lost
        gate.open.set()
        for caller in (first, waiting):
            with pytest.raises(ConnectionError):
                await caller
        assert seen == {"orphaned": [], "lost": [1, 2]}
        assert gate.batches == [[1], [2]]

    asyncio.run(run())


def test_no_timer_outlives_its_call() -> None:
    """An answered call cancels its timer: the loop holds no timer afterwards (a
    timer per request left behind would grow with the rate)."""

    async def run() -> None:
        gate = Gate()
        gate.open.set()
        made, _ = coalescer(gate)
        assert await asyncio.gather(*(made.submit(n, 30) for n in range(50))) == [
            n * 10 for n in range(50)
        ]
        loop = asyncio.get_running_loop()
        assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]

    asyncio.run(run())


def test_callers_with_one_timeout_share_one_timer_and_none_times_out_early() -> None:
    """Deadlines of one timeout come in arrival order: one timer serves them all
    (not one per caller), each caller still times out at its own deadline, never
    before, and once none is left waiting no timer is."""

    async def run() -> None:
        gate = Gate()
        made, _ = coalescer(gate)
        loop = asyncio.get_running_loop()

        async def caller(n: int) -> float:
            started = loop.time()
            with pytest.raises(TimeoutError):
                await made.submit(n, 0.05)
            return loop.time() - started

        callers = []
        for n in range(40):
            callers.append(asyncio.ensure_future(caller(n)))
            await asyncio.sleep(0)  # arrivals spread over loop iterations
        await gate.entered.wait()
        assert len([h for h in loop._scheduled if not h.cancelled()]) == 1  # type: ignore[attr-defined]
        waited = await asyncio.gather(*callers)
        assert min(waited) >= 0.05 - 1e-6, waited
        assert not [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        gate.open.set()
        await made.aclose()

    asyncio.run(run())
