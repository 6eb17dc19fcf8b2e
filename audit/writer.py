"""The background writer of one stream: a bounded queue, group commit, checkpoints,
segment rolls, recovery after a crash, and pruning.

Why it is shaped so
-------------------
The request path must never wait on the disk. `submit` appends the record to a
bounded deque and returns (False when full: the caller's policy decides, block with
`submit_wait`, drop and count, or fail the request). One background task drains the
queue: it wakes when records arrive, waits at most `batch_window` for more, then
serialises, writes and fsyncs the whole batch in a worker thread
(`asyncio.to_thread`), one batch in flight at a time. One fsync covers every record of
a batch (group commit), so a record is durable at most about one batch window plus
one fsync after it was submitted, and `kill -9` loses at most what was queued or in
flight: the records of one batch window.

Checkpoints are written after a batch once `checkpoint_interval` has passed since the
last one (and on a timer when records stop flowing, so the unsigned tail is at most one
interval old), at every segment roll (a checkpoint is the last line of every closed
segment; the next segment starts with the next record), and on `close`.

All disk state lives in `_Disk`, touched only by the one worker thread in flight (or
by `start` before the task runs): no locks. A stream directory is locked (`flock` on
`.lock`) while a writer holds it: two writers on one chain would fork it.

Recovery (`start`)
------------------
The last segment is read from its end. A torn tail (bytes after the last newline, or a
last line that is not JSON: a write cut short) is copied to `<segment>.torn`, the
segment is truncated to its last whole line, and the writer's first record is an
admin record `audit.recovered` naming the segment, the offset and the bytes moved
aside, so the repair is itself in the chain. `seq` and `prev` continue from the last
whole record; records past the last checkpoint are signed by a checkpoint written
at once. Only the tail is examined: damage inside a segment is the verifier's to find.

Pruning
-------
`prune(before_seq)` removes whole closed segments whose records all precede
`before_seq`, oldest first. Each closed segment ends with a signed checkpoint, so the
last removed segment's closing checkpoint signs the head of the removed range. Steps,
each safe to be interrupted:

1. a `tombstone` record is appended to the chain and made durable, naming the range
   removed (`pruned_first`..`pruned_last`, cumulative from the stream's first record)
   and that checkpoint (parsed);
2. `pruned.json` is written atomically in the stream directory: the range and the
   checkpoint's exact line (`checkpoint_line`), so a verifier can check its signature
   and start the chain from its `head` (and the checkpoint chain from its line hash);
3. the segment files are deleted (a later `start` finishes an interrupted deletion;
   a verifier ignores leftovers below the range).

A verifier trusts `pruned.json` only when its checkpoint's signature is good and a
tombstone record in the verified chain names the same range and checkpoint: deleting
more segments and pointing `pruned.json` at a later checkpoint is reported as a
missing segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from audit.chain import Record
from audit.disk import (
    Disk,
    PrunePlan,
    Recovery,
    StreamLocked,
    WriterSettings,
    WriterStats,
)
from audit.keys import Signer

__all__ = [
    "PrunePlan",
    "PruneResult",
    "Recovery",
    "StreamLocked",
    "Writer",
    "WriterSettings",
    "WriterStats",
    "prune",
]

log = logging.getLogger("seawall.audit")


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[str, ...] = ()
    pruned_first: int | None = None
    pruned_last: int | None = None


class Writer:
    """The background writer of one stream (module doc). Use from one event loop:
    `submit` is not thread-safe."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        stream: str,
        signer: Signer,
        settings: WriterSettings | None = None,
    ) -> None:
        if not stream or "/" in stream or stream.startswith("."):
            raise ValueError(f"bad audit stream name {stream!r}")
        self.directory = Path(directory)
        self.stream = stream
        self.settings = settings or WriterSettings()
        self._disk = Disk(self.directory, stream, signer, self.settings)
        self._queue: deque[Record] = deque()
        self._capacity = self.settings.capacity
        self._wake = asyncio.Event()  # records arrived (or close)
        self._hurry = asyncio.Event()  # do not wait out the batch window
        self._room = asyncio.Event()  # the queue has room again
        self._progress = asyncio.Condition()  # a batch became durable
        self._io = asyncio.Lock()  # one disk operation in flight (the task's or ours)
        self._released = asyncio.Event()  # cleared while `held()`
        self._released.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitted = 0
        self._written = 0  # records taken from the queue and durable (or rejected)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.recovery: Recovery | None = None

    # ---- lifecycle

    async def start(self) -> Recovery:
        """Lock and recover the stream (module doc), then start draining."""
        if self._task is not None:
            raise RuntimeError("writer already started")
        await asyncio.to_thread(self._disk.lock)
        try:
            recovery = await asyncio.to_thread(self._disk.recover)
            if recovery.torn_segment is not None:
                notice = {
                    "kind": "admin",
                    "time": time.time(),
                    "request_id": None,
                    "action": "audit.recovered",
                    "actor": None,
                    "scope": None,
                    "tenants": [],
                    "target": f"{self.stream}/{recovery.torn_segment}",
                    "detail": {
                        "segment": recovery.torn_segment,
                        "offset": recovery.torn_offset,
                        "torn_bytes": recovery.torn_bytes,
                        "torn_file": recovery.torn_file,
                    },
                }
                await asyncio.to_thread(self._disk.write_batch, [notice], True)
            elif recovery.unsigned:
                await asyncio.to_thread(self._disk.write_checkpoint)
        except BaseException:
            await asyncio.to_thread(self._disk.close)
            raise
        self.recovery = recovery
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"audit-writer-{self.stream}")
        return recovery

    async def close(self) -> None:
        """Write what is queued, sign it with a final checkpoint, fsync, unlock. (A
        writer never started writes nothing: its queue is dropped.)"""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._hurry.set()
        self._released.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await asyncio.to_thread(self._disk.close)
        self._closed = True
        self._room.set()
        async with self._progress:
            self._progress.notify_all()

    async def __aenter__(self) -> Writer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the request path

    def submit(self, record: Record) -> bool:
        """Queue a record (without `seq`/`prev`; not to be mutated afterwards).
        O(1), never touches the disk; False when the queue is full or the writer is
        closing or failed."""
        queue = self._queue
        if len(queue) >= self._capacity or self._closing or self._disk.stats.failed:
            return False
        queue.append(record)
        self._submitted += 1
        self._wake.set()
        if len(queue) >= self._capacity:
            self._hurry.set()
        return True

    async def submit_wait(self, record: Record) -> None:
        """Queue a record, waiting for room (the `block` policy). Raises
        RuntimeError when the writer is closing or failed."""
        while not self.submit(record):
            if self._closing or self._disk.stats.failed:
                raise RuntimeError(f"audit writer {self.stream!r} is not accepting records")
            self._room.clear()
            await self._room.wait()

    async def flush(self) -> None:
        """Wait until every record submitted so far is durable."""
        target = self._submitted
        self._hurry.set()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._written >= target or self._closed or self._failed()
            )
        if self._written < target:
            raise RuntimeError(f"audit writer {self.stream!r}: {self._failed() or 'closed'}")

    async def checkpoint(self) -> None:
        """Make everything submitted so far durable and signed now (an operator's
        "seal", tests); the writer does this by itself every interval."""
        await self.flush()
        async with self._io:
            await asyncio.to_thread(self._disk.write_checkpoint)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Stop draining the queue until the block ends, so it fills (tests of the
        full-queue policies). Usable from another thread than the writer's loop."""
        self._released.clear()
        try:
            yield
        finally:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._released.set)
            else:
                self._released.set()

    @property
    def full(self) -> bool:
        """Whether `submit` would refuse now (a tenant's `refuse` policy asks first):
        the queue is full, or the writer is closing or failed."""
        return (
            len(self._queue) >= self._capacity
            or self._closing
            or self._disk.stats.failed is not None
        )

    @property
    def signer(self) -> Signer:
        return self._disk.signer

    @signer.setter
    def signer(self, signer: Signer) -> None:
        """Key rotation: the next checkpoint is signed by (and names) the new key;
        the verifier is given every public key."""
        self._disk.signer = signer

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._disk.stats, queue_depth=len(self._queue))

    def _failed(self) -> str | None:
        return self._disk.stats.failed

    # ---- the background task

    async def _run(self) -> None:
        disk = self._disk
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    due = disk.checkpoint_due_in()
                    if due is not None and due <= 0:
                        async with self._io:
                            await asyncio.to_thread(disk.write_checkpoint)
                        continue
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), due)
                    continue
                if not self._hurry.is_set() and self.settings.batch_window > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), self.settings.batch_window)
                if not self._closing:
                    self._hurry.clear()
                if not self._released.is_set():
                    await self._released.wait()  # held (tests); close releases
                batch = list(self._queue)
                self._queue.clear()
                self._room.set()
                async with self._io:
                    await asyncio.to_thread(disk.write_batch, batch)
                self._written += len(batch)
                async with self._progress:
                    self._progress.notify_all()
        except Exception as exc:
            disk.stats.failed = f"{type(exc).__name__}: {exc}"
            log.exception("audit stream %s: writer stopped", self.stream)
            self._queue.clear()
            self._room.set()
            async with self._progress:
                self._progress.notify_all()
            raise

    # ---- pruning

    async def prune(self, before_seq: int) -> PruneResult:
        """Remove whole closed segments whose records all precede `before_seq`,
        leaving a tombstone record and `pruned.json` (module doc)."""
        if self._task is None:
            raise RuntimeError("start the writer before pruning")
        await self.flush()  # the segments to consider are on disk
        async with self._io:  # the active segment does not roll meanwhile
            plan = await asyncio.to_thread(
                self._disk.plan_prune, before_seq, self._disk.segment_first
            )
        if plan is None:
            return PruneResult()
        tombstone = {
            "kind": "tombstone",
            "time": time.time(),
            "pruned_first": plan.pruned_first,
            "pruned_last": plan.pruned_last,
            "checkpoint": orjson.loads(plan.checkpoint_line),
        }
        await self.submit_wait(tombstone)
        await self.flush()
        await asyncio.to_thread(self._disk.apply_prune, plan)
        log.info(
            "audit stream %s: pruned records %d..%d (%d segments)",
            self.stream,
            plan.pruned_first,
            plan.pruned_last,
            len(plan.segments),
        )
        return PruneResult(
            removed=tuple(segment.name for segment in plan.segments),
            pruned_first=plan.pruned_first,
            pruned_last=plan.pruned_last,
        )


async def prune(
    directory: str | os.PathLike[str],
    stream: str,
    before_seq: int,
    signer: Signer,
    settings: WriterSettings | None = None,
) -> PruneResult:
    """Prune a stream no writer holds (it takes the stream's lock: raises
    StreamLocked while a gateway writes it; the gateway calls `Writer.prune`)."""
    writer = Writer(directory, stream, signer, settings)
    await writer.start()
    try:
        return await writer.prune(before_seq)
    finally:
        await writer.close()
