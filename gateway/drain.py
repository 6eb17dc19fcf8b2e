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

Interrupting means cancelling the task that waits (`Ticket.task`); the code that
registered the ticket catches that one cancellation, checks `ticket.interrupted`, and
`uncancel()`s, so a cancellation from anywhere else (a client that left) still
propagates as usual.
"""

from __future__ import annotations

import asyncio

#: The message of the cancellation `interrupt()` delivers.
SHUTDOWN_MESSAGE = "seawall is shutting down"


class Ticket:
    """One interruptible piece of work: the task to cancel, and whether it was us."""

    __slots__ = ("interrupted", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.interrupted = False

    def claim(self) -> bool:
        """In an `except CancelledError`: True when the cancellation was `interrupt()`'s,
        which is then withdrawn so the handler can finish its answer."""
        if not self.interrupted or self.task is None:
            return False
        self.task.uncancel()
        return True


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.interrupted = False
        self._tickets: set[Ticket] = set()

    def begin(self) -> None:
        """Stop looking ready; keep serving. Safe to call from a signal handler."""
        self.draining = True

    def interrupt(self) -> None:
        self.draining = True
        self.interrupted = True
        for ticket in list(self._tickets):
            if not ticket.interrupted and ticket.task is not None and not ticket.task.done():
                ticket.interrupted = True
                ticket.task.cancel(SHUTDOWN_MESSAGE)

    @property
    def in_flight(self) -> int:
        return len(self._tickets)

    def enter(self) -> Ticket:
        """Registers the current task until `leave`: a plain pair rather than a
        context manager, because every request pays for it."""
        ticket = Ticket(asyncio.current_task())
        self._tickets.add(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        self._tickets.discard(ticket)
