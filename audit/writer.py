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
import fcntl
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from audit import checkpoint
from audit.chain import GENESIS, Record, line_hash, parse_record_prefix, record_line
from audit.keys import Signer
from audit.segments import (
    PRUNED_FILE,
    TORN_SUFFIX,
    Segment,
    last_line_end,
    list_segments,
    read_chunks,
    read_pruned,
    segment_name,
    torn_tail,
)

log = logging.getLogger("seawall.audit")

LOCK_FILE: Final = ".lock"


class StreamLocked(RuntimeError):
    """Another writer holds this stream."""


@dataclass(frozen=True, slots=True)
class WriterSettings:
    #: Records the queue holds before `submit` says no.
    capacity: int = 10_000
    #: How long the writer waits for more records before writing a batch: the bound
    #: on what `kill -9` loses, and the group-commit window.
    batch_window: float = 0.05
    #: A segment is closed (with a checkpoint) before a record would take it past
    #: this size; a segment holds at least one record whatever its size.
    segment_max_bytes: int = 64 * 1024 * 1024
    #: At least this often a checkpoint signs the chain while records flow.
    checkpoint_interval: float = 1.0
    #: fsync each batch (off only for tests and benchmarks of the rest).
    fsync: bool = True


@dataclass(slots=True)
class WriterStats:
    """Counters of one writer (records refused by a full queue are the caller's to
    count: `submit` returned False)."""

    appended: int = 0
    batches: int = 0
    fsyncs: int = 0
    checkpoints: int = 0
    segments: int = 0
    bytes_written: int = 0
    #: Records the writer could not serialise (not JSON): logged and skipped.
    rejected: int = 0
    queue_depth: int = 0
    capacity: int = 0
    #: The last sequence number written, and the last one fsynced (durable).
    last_seq: int = 0
    durable_seq: int = 0
    last_checkpoint_seq: int = 0
    #: Set when a write failed: the writer stopped and accepts nothing more.
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `start` found at the end of the stream."""

    last_seq: int
    torn_segment: str | None = None
    torn_offset: int = 0
    torn_bytes: int = 0
    torn_file: str | None = None
    unsigned: int = 0


@dataclass(frozen=True, slots=True)
class PrunePlan:
    segments: tuple[Segment, ...]
    pruned_first: int
    pruned_last: int
    checkpoint_line: bytes


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[str, ...] = ()
    pruned_first: int | None = None
    pruned_last: int | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Disk:
    """The stream's files and chain state; used by one thread at a time."""

    def __init__(self, directory: Path, stream: str, signer: Signer, settings: WriterSettings):
        self.dir = directory / stream
        self.stream = stream
        self.signer = signer
        self.settings = settings
        self.stats = WriterStats(capacity=settings.capacity)
        self.seq = 0
        self.head = GENESIS
        self.checkpoint_hash = GENESIS
        self.checkpoint_last = 0
        self.checkpoint_at = time.monotonic()
        self.segment_first = 0
        self.segment_size = 0
        self.fd: int | None = None
        self.lock_fd: int | None = None

    # ---- start

    def lock(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StreamLocked(f"another writer holds audit stream {self.stream!r}") from exc
        self.lock_fd = fd

    def recover(self) -> Recovery:
        """Continue the stream where its last whole record left it (module doc)."""
        pruned = read_pruned(self.dir)
        if pruned is not None:
            self._finish_prune(int(pruned["pruned_last"]))
        segments = list_segments(self.dir)
        torn: dict[str, Any] = {}
        if segments:
            torn = self._cut_torn_tail(segments[-1])
        # an empty last segment (created, then the process died) is dropped
        while segments and segments[-1].path.stat().st_size == 0:
            segments.pop().path.unlink()
        self._start_state(pruned)
        last_record: tuple[int, str] | None = None
        found_checkpoint = False
        for index in range(len(segments) - 1, -1, -1):
            seg_last, seg_checkpoint = self._scan(segments[index], want_record=last_record is None)
            if last_record is None:
                last_record = seg_last
            if seg_checkpoint is not None:
                self.checkpoint_hash, self.checkpoint_last = seg_checkpoint
                found_checkpoint = True
                break
        if last_record is not None:
            self.seq, self.head = last_record
        if not found_checkpoint and pruned is None:
            self.checkpoint_last = segments[0].first - 1 if segments else 0
        if segments:
            last = segments[-1]
            self.segment_first = last.first
            self.segment_size = last.path.stat().st_size
            self.fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        self.stats.last_seq = self.stats.durable_seq = self.seq
        self.stats.last_checkpoint_seq = self.checkpoint_last
        return Recovery(last_seq=self.seq, unsigned=self.seq - self.checkpoint_last, **torn)

    def _start_state(self, pruned: dict[str, Any] | None) -> None:
        if pruned is None:
            return
        line = str(pruned["checkpoint_line"]).encode()
        covered = orjson.loads(line)
        self.seq = self.checkpoint_last = int(covered["last"])
        self.head = str(covered["head"])
        self.checkpoint_hash = line_hash(line)

    def _cut_torn_tail(self, segment: Segment) -> dict[str, Any]:
        torn = torn_tail(segment.path)
        if torn is None:
            return {}
        aside = Path(str(segment.path) + TORN_SUFFIX)
        n = 0
        while aside.exists():
            n += 1
            aside = Path(f"{segment.path}{TORN_SUFFIX}.{n}")
        with open(segment.path, "r+b") as file:
            file.seek(torn.offset)
            with open(aside, "wb") as out:
                shutil.copyfileobj(file, out)
                out.flush()
                os.fsync(out.fileno())
            file.truncate(torn.offset)
            file.flush()
            os.fsync(file.fileno())
        _fsync_dir(self.dir)
        log.warning(
            "audit stream %s: moved %d torn bytes at the end of %s to %s",
            self.stream,
            torn.size,
            segment.name,
            aside.name,
        )
        return {
            "torn_segment": segment.name,
            "torn_offset": torn.offset,
            "torn_bytes": torn.size,
            "torn_file": aside.name,
        }

    def _scan(
        self, segment: Segment, *, want_record: bool
    ) -> tuple[tuple[int, str] | None, tuple[str, int] | None]:
        """The last record `(seq, hash)` and the last checkpoint `(hash, last)` of a
        segment. The last line alone answers for a closed segment (it is a
        checkpoint); otherwise the whole segment is read."""
        if not want_record:
            _, line = last_line_end(segment.path, segment.path.stat().st_size)
            found = self._as_checkpoint(line) if line is not None else None
            if found is not None:
                return None, found
        last_record: tuple[int, str] | None = None
        last_checkpoint: tuple[str, int] | None = None
        for chunk in read_chunks(segment.path):
            for line in chunk.lines:
                prefix = parse_record_prefix(line)
                if prefix is not None:
                    last_record = (prefix[0], line_hash(line))
                    continue
                found = self._as_checkpoint(line)
                if found is not None:
                    last_checkpoint = found
        return last_record, last_checkpoint

    @staticmethod
    def _as_checkpoint(line: bytes) -> tuple[str, int] | None:
        if parse_record_prefix(line) is not None:
            return None
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if checkpoint.malformed(obj) is not None:
            return None
        return line_hash(line), int(obj["last"])

    # ---- writing (in the worker thread)

    def write_batch(self, records: list[Record], force_checkpoint: bool = False) -> None:
        """Append records (and a checkpoint when due), then fsync once."""
        out: list[bytes] = []
        pending = 0
        first_seq = self.seq
        limit = self.settings.segment_max_bytes
        for record in records:
            try:
                line = record_line(record, self.seq + 1, self.head)
            except (TypeError, ValueError) as exc:
                self.stats.rejected += 1
                log.error("audit stream %s: record not written: %s", self.stream, exc)
                continue
            size = len(line) + 1
            if self.fd is None:
                self._open_segment(self.seq + 1)
            elif self.segment_size + pending + size > limit and self.segment_size + pending > 0:
                self._roll(out)
                out, pending = [], 0
            out.append(line)
            pending += size
            self.seq += 1
            self.head = line_hash(line)
        if self.seq > self.checkpoint_last and (
            force_checkpoint
            or time.monotonic() - self.checkpoint_at >= self.settings.checkpoint_interval
        ):
            out.append(self._checkpoint_line())
        self._write(out)
        self._sync()
        self.stats.appended += self.seq - first_seq
        self.stats.last_seq = self.stats.durable_seq = self.seq
        self.stats.batches += 1

    def checkpoint_due_in(self) -> float | None:
        """Seconds until a checkpoint is due, or None with nothing unsigned."""
        if self.seq <= self.checkpoint_last:
            return None
        return self.settings.checkpoint_interval - (time.monotonic() - self.checkpoint_at)

    def write_checkpoint(self) -> None:
        """Sign whatever is unsigned (the timer's and `close`'s checkpoint)."""
        if self.seq <= self.checkpoint_last or self.fd is None:
            return
        self._write([self._checkpoint_line()])
        self._sync()

    def _checkpoint_line(self) -> bytes:
        fields = checkpoint.build(
            self.signer,
            stream=self.stream,
            first=self.checkpoint_last + 1,
            last=self.seq,
            head=self.head,
            prev_checkpoint=self.checkpoint_hash,
            time=time.time(),
        )
        line = checkpoint.to_line(fields)
        self.checkpoint_hash = line_hash(line)
        self.checkpoint_last = self.seq
        self.checkpoint_at = time.monotonic()
        self.stats.checkpoints += 1
        self.stats.last_checkpoint_seq = self.seq
        return line

    def _roll(self, out: list[bytes]) -> None:
        """Close the segment with a checkpoint (unless its last line already is one)
        and open the next, named by the next record's sequence number."""
        if self.seq > self.checkpoint_last:
            out.append(self._checkpoint_line())
        self._write(out)
        self._sync()
        self.stats.last_seq = self.stats.durable_seq = self.seq
        assert self.fd is not None
        os.close(self.fd)
        self.fd = None
        self._open_segment(self.seq + 1)

    def _open_segment(self, first: int) -> None:
        path = self.dir / segment_name(first)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.segment_first = first
        self.segment_size = os.fstat(self.fd).st_size
        if self.settings.fsync:
            _fsync_dir(self.dir)
        self.stats.segments += 1

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self.fd is not None
        data = b"\n".join(lines) + b"\n"
        _write_all(self.fd, data)
        self.segment_size += len(data)
        self.stats.bytes_written += len(data)

    def _sync(self) -> None:
        if self.settings.fsync and self.fd is not None:
            os.fsync(self.fd)
            self.stats.fsyncs += 1

    def close(self) -> None:
        if self.fd is not None:
            self.write_checkpoint()
            os.close(self.fd)
            self.fd = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    # ---- pruning

    def plan_prune(self, before_seq: int, active_first: int) -> PrunePlan | None:
        """Which closed segments can go: all their records precede `before_seq`,
        and each ends with the checkpoint that signs its last record."""
        segments = [s for s in list_segments(self.dir) if s.first < active_first]
        if not segments:
            return None
        pruned = read_pruned(self.dir)
        first = int(pruned["pruned_first"]) if pruned else segments[0].first
        chosen: list[Segment] = []
        line: bytes | None = None
        nexts = [*(s.first for s in segments[1:]), active_first]
        for segment, next_first in zip(segments, nexts, strict=True):
            if next_first > before_seq:
                break
            _, last = last_line_end(segment.path, segment.path.stat().st_size)
            closing = self._as_checkpoint(last) if last is not None else None
            if closing is None or closing[1] != next_first - 1:
                break
            chosen.append(segment)
            line = last
        if not chosen or line is None:
            return None
        return PrunePlan(tuple(chosen), first, nexts[len(chosen) - 1] - 1, line)

    def apply_prune(self, plan: PrunePlan) -> None:
        record = {
            "stream": self.stream,
            "pruned_first": plan.pruned_first,
            "pruned_last": plan.pruned_last,
            "checkpoint_line": plan.checkpoint_line.decode(),
        }
        temporary = self.dir / (PRUNED_FILE + ".tmp")
        with open(temporary, "wb") as file:
            file.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.dir / PRUNED_FILE)
        _fsync_dir(self.dir)
        self._finish_prune(plan.pruned_last)

    def _finish_prune(self, pruned_last: int) -> None:
        removed = False
        for segment in list_segments(self.dir):
            if segment.first <= pruned_last:
                segment.path.unlink()
                removed = True
        if removed:
            _fsync_dir(self.dir)


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
        self._disk = _Disk(self.directory, stream, signer, self.settings)
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
