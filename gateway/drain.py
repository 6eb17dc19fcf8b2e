"""Graceful shutdown, as the app sees it: draining, then interrupting what is left.

On SIGTERM (see gateway/server/serve.py) the gateway goes through three steps:

1. `begin()`: `/readyz` answers 503 at once, so a load balancer stops sending new
   traffic, but new requests are still served for `server.drain_s` seconds (the
   balancer needs that long to notice; refusing them would fail requests for
   nothing).
2. The listener closes; requests in flight may finish within
   `server.shutdown_timeout_s`.
3. `interrupt()`: whatever is still running is ended on purpose, never cut: an open
   stream gets the documented `stream_interrupted` error event and a clean end, a
   request still waiting for its upstream gets a 503 `server_shutting_down` (with
   `x-should-retry: true`: another replica can serve it). Nothing is left for the
   server to cancel, so no CancelledError traceback reaches the log.

Interrupting means cancelling the task that waits (registered with `enter`); the
code that registered it catches that one cancellation and `claim`s it, which
`uncancel()`s only a cancellation `interrupt()` made, so one from anywhere else (a
client that left) still propagates as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: The message of the cancellation `interrupt()` delivers.
SHUTDOWN_MESSAGE = "seawall is shutting down"


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.interrupted = False
        self._running: set[asyncio.Task[Any]] = set()
        self._cancelled: set[asyncio.Task[Any]] = set()

    def begin(self) -> None:
        """Stop looking ready; keep serving. Safe to call from a signal handler."""
        self.draining = True

    def interrupt(self) -> None:
        self.draining = True
        self.interrupted = True
        for task in list(self._running):
            if task not in self._cancelled and not task.done():
                self._cancelled.add(task)
                task.cancel(SHUTDOWN_MESSAGE)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def enter(self) -> asyncio.Task[Any] | None:
        """Registers the current task until `leave`: a plain pair rather than a
        context manager (and the task itself rather than a wrapper), because every
        request pays for it."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._running.discard(task)

    def claim(self, task: asyncio.Task[Any] | None) -> bool:
        """In an `except CancelledError`: True when the cancellation was `interrupt()`'s,
        which is then withdrawn so the handler can finish its answer."""
        if task is None or task not in self._cancelled:
            return False
        self._cancelled.discard(task)
        task.uncancel()
        return True
