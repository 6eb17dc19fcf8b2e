"""The writer's synchronous side: one stream's files, in a worker thread.

`Disk` opens, locks, recovers, appends to, rolls, checkpoints and prunes one
stream's segments; everything here blocks on the file system, so `audit.writer.Writer`
calls it through `asyncio.to_thread`, one call at a time. The recovery and pruning
rules are in audit/writer.py's docstring.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
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


class Disk:
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
