"""File-system notifications as a wake-up, and the read loop the file sources share.

Notifications only say "look again": whatever they report, the source re-reads
its documents and compares digests. So a notification can be coalesced, duplicated
or dropped without harm, and the reader needs no model of what each event means
(a Kubernetes ConfigMap update is five events for one change; an editor's save is
two or three).

Notifications come from `watchfiles` (inotify on Linux) on the directory that
holds the documents, not on the files: an editor or the kubelet replaces a file
by renaming another over it, and a watch on the old file would see nothing
after the first save. The watch is not recursive: a config directory's own
entries are what counts, and Kubernetes' `..data` swap happens at the top.

A burst of events is read once it has been quiet for `debounce_s` (or after
`MAX_BURST_S` of non-stop events); the wake-up flag is cleared before each read,
so a change that lands during a read is always followed by another read: the
last write is never missed. When notifications are lost altogether (dropped on
purpose by chaos, an inotify queue overflow, a network file system that sends
none), the resync every `resync_s` still finds the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType

from watchfiles import Change, awatch

from gateway.sources.base import Documents, EventFilter, SourceStats, allow_event

log = logging.getLogger("seawall.sources")

#: Quiet time that ends a burst of file-system events (a save, a ConfigMap swap).
DEFAULT_DEBOUNCE_S = 0.05
#: Events that never pause for `debounce_s` are still acted on this often.
MAX_BURST_S = 1.0
#: How long the notifier thread may take to see a stop request.
STOP_POLL_MS = 200


class DirectoryEvents:
    """Change notifications for names in some directories, as one wake-up flag.

    Entering starts the notifier and returns once it is armed: events from then on
    are caught. (`awatch` creates its inotify watches synchronously, in the first
    step of the task that iterates it; yielding to the loop once runs that step.)
    """

    def __init__(
        self,
        directories: Sequence[str],
        relevant: Callable[[str], bool],
        stats: SourceStats,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        event_filter: EventFilter | None = None,
    ) -> None:
        self.directories = list(dict.fromkeys(directories))
        self.relevant = relevant
        self.stats = stats
        self.debounce_ms = max(1, round(debounce_s * 1000))
        self.event_filter = event_filter
        self.closed = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DirectoryEvents:
        if not self.directories:
            return self  # nothing to watch (yet): resyncs only
        self._task = asyncio.create_task(self._run(), name="seawall-config-fswatch")
        await asyncio.sleep(0)  # let the task arm its watches (see the class docstring)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self.closed = True
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            # The notifier thread sees the stop event within STOP_POLL_MS.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, STOP_POLL_MS / 1000 * 5)

    def clear(self) -> None:
        """Forget notifications so far (call before reading)."""
        self._wake.clear()

    async def wait(self, within_s: float) -> bool:
        """True when a relevant change (or close) came within `within_s` seconds."""
        try:
            await asyncio.wait_for(self._wake.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def _filter(self, change: Change, path: str) -> bool:
        return self.relevant(path.rsplit("/", 1)[-1])

    async def _run(self) -> None:
        try:
            async for _changes in awatch(
                *self.directories,
                watch_filter=self._filter,
                step=self.debounce_ms,
                debounce=max(round(MAX_BURST_S * 1000), self.debounce_ms * 2),
                recursive=False,
                stop_event=self._stop,
                rust_timeout=STOP_POLL_MS,
            ):
                if not await allow_event(self.event_filter):
                    self.stats.dropped_events += 1
                    continue
                self.stats.events += 1
                self._wake.set()
        except Exception as exc:
            # inotify limits reached, a directory removed: carry on with resyncs.
            self.stats.failed(f"file-system notifications stopped: {exc}")
            log.warning(
                "config watch on %s stopped (%s); changes are now found by the periodic "
                "resync only",
                ", ".join(self.directories),
                exc,
            )


async def follow(
    read: Callable[[], Awaitable[Documents]],
    events: DirectoryEvents,
    resync_s: float,
    stats: SourceStats,
) -> AsyncIterator[Documents]:
    """Yield the documents now, then whenever a read finds a new digest; read after
    every notification and every `resync_s`, until `events` is closed."""
    last: str | None = None
    reason = "start"
    async with events:
        while not events.closed:
            events.clear()
            try:
                documents = await read()
            except Exception as exc:  # reads report problems; this is a bug, not a file
                stats.failed(f"{type(exc).__name__}: {exc}")
                log.exception("reading the config failed; trying again on the next change")
                reason = "event" if await events.wait(resync_s) else "resync"
                continue
            stats.relisted(reason)
            if documents.digest != last:
                if reason == "resync" and last is not None:
                    stats.repaired += 1
                last = documents.digest
                stats.yields += 1
                yield documents
            reason = "event" if await events.wait(resync_s) else "resync"


class Watches:
    """The watches a source has open, so that closing the source ends every one."""

    def __init__(self) -> None:
        self._open: set[DirectoryEvents] = set()

    async def follow(
        self,
        read: Callable[[], Awaitable[Documents]],
        events: DirectoryEvents,
        resync_s: float,
        stats: SourceStats,
    ) -> AsyncIterator[Documents]:
        """`follow`, with `events` held open here until the iteration ends."""
        self._open.add(events)
        try:
            async for documents in follow(read, events, resync_s, stats):
                yield documents
        finally:
            self._open.discard(events)

    async def close(self) -> None:
        for events in list(self._open):
            await events.close()
