"""Verifying a log directory with public keys only, and saying where it is wrong.

For every stream: every line is JSON; record sequence numbers are gapless and
increasing; every `prev` is the hash of the previous record's line; every checkpoint
is signed by a known key, covers the range after the previous checkpoint, names the
hash of its `last` record as `head`, and chains to the previous checkpoint line;
segments are named by their first record's seq, none is missing, and each closed one
ends with a checkpoint. Verification of a stream stops at its first problem: the
report names the first bad sequence number and why, one of `Reason`.

Which sequence number is reported, by tamper:

- a record's content edited: that record (the next record's `prev`, or the covering
  checkpoint's `head`, no longer matches it);
- a record deleted: its seq (the gap); a whole segment deleted: its first seq
  (`segment missing`); records deleted before a checkpoint that still claims them:
  the first of them (`deleted`);
- a record inserted: the position it took (`n` when inserted between n-1 and n,
  whatever seq it claims; `n` as well when it reuses `n`);
- two records swapped: the first position out of order (`reordered`);
- a checkpoint edited or forged: `bad signature` (or `unknown key` for a key id not
  in the ring) at the record the checkpoint follows (its `last`); a checkpoint
  removed or replaced by another validly signed one: `checkpoint mismatch` at the
  first record after the last good checkpoint;
- the tail cut mid-line: `torn tail` at the seq after the last whole record.

Records after the last checkpoint are the *residual*: chained but unsigned, so their
deletion is undetectable (the documented residual risk, bounded by the checkpoint
interval); counted, and a problem only with `strict`. Cutting a stream back to an
earlier checkpoint (whole tail segments with it) is equally undetectable from the
files alone: anchoring the latest checkpoint elsewhere is what detects that.

Speed: a segment is read in big chunks; a record line in order costs one prefix
check, one validating parse (simdjson: no Python objects built) and one SHA-256;
only checkpoints, tombstones and problems are decoded with orjson.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NoReturn

import orjson
import simdjson

from audit import checkpoint
from audit.chain import GENESIS, line_hash, parse_record_prefix
from audit.keys import KeyRing
from audit.segments import (
    PRUNED_FILE,
    Chunk,
    Segment,
    line_parses,
    list_segments,
    list_streams,
    read_chunks,
    read_pruned,
)

_TOMBSTONE: Final = b'"kind":"tombstone"'
_PREV_KEY: Final = b',"prev":"'


class Reason(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    BAD_SIGNATURE = "bad signature"
    UNKNOWN_KEY = "unknown key"
    TORN_TAIL = "torn tail"
    SEGMENT_MISSING = "segment missing"
    CHECKPOINT_MISMATCH = "checkpoint mismatch"
    #: Records after the last checkpoint (a problem only with `strict`).
    UNSIGNED = "unsigned tail"


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int
    reason: Reason
    detail: str
    segment: str | None = None
    offset: int | None = None


@dataclass(slots=True)
class StreamReport:
    stream: str
    segments: int = 0
    #: Records and checkpoints verified (up to the first problem).
    records: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problem: Problem | None = None
    #: Records after the last checkpoint: chained, not yet signed.
    residual: int = 0
    residual_first: int | None = None
    residual_last: int | None = None
    #: Records 1..pruned_last were pruned (pruned.json, matched by a tombstone).
    pruned_last: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> dict[str, Any]:
        """The stream's result as JSON-ready data (`seawall audit verify --json`)."""
        problem = self.problem
        return {
            "stream": self.stream,
            "ok": self.ok,
            "segments": self.segments,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "residual": {
                "records": self.residual,
                "first": self.residual_first,
                "last": self.residual_last,
            },
            "pruned_last": self.pruned_last,
            "problem": None
            if problem is None
            else {
                "seq": problem.seq,
                "reason": str(problem.reason),
                "detail": problem.detail,
                "segment": problem.segment,
                "offset": problem.offset,
            },
            "notes": list(self.notes),
        }


@dataclass(slots=True)
class Report:
    directory: str
    strict: bool
    streams: list[StreamReport]

    @property
    def ok(self) -> bool:
        return all(stream.ok for stream in self.streams)

    @property
    def exit_code(self) -> int:
        """0 when every stream verifies, 1 otherwise."""
        return 0 if self.ok else 1

    @property
    def records(self) -> int:
        return sum(stream.records for stream in self.streams)

    def describe(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "directory": self.directory,
            "ok": self.ok,
            "strict": self.strict,
            "records": self.records,
            "streams": [stream.describe() for stream in self.streams],
        }


def verify(
    directory: str | os.PathLike[str],
    keyring: KeyRing,
    strict: bool = False,
    streams: list[str] | None = None,
) -> Report:
    """Verify every stream of a log directory (or the ones named)."""
    names = list_streams(directory) if streams is None else streams
    reports = [_StreamCheck(Path(directory), name, keyring, strict).run() for name in names]
    return Report(str(directory), strict, reports)


@dataclass(frozen=True, slots=True)
class _Item:
    """A line seen ahead of a problem, to tell edits from insertions and swaps."""

    kind: str  # "record", "checkpoint", "other"
    seq: int = 0
    prev: str = ""
    hash: str = ""
    head: str = ""


def _item(line: bytes) -> _Item:
    prefix = parse_record_prefix(line)
    if prefix is not None:
        return _Item("record", prefix[0], prefix[1], line_hash(line))
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _Item("other")
    if isinstance(obj, dict) and isinstance(obj.get("head"), str):
        return _Item("checkpoint", head=obj["head"])
    return _Item("other")


def _checkpoint_like(line: bytes) -> bool:
    """Whether a line that is not JSON was meant as a checkpoint."""
    return not line.startswith(b'{"seq":') and (
        line.startswith(b'{"kind":"checkpoint"') or b'"sig":"' in line
    )


class _Stop(Exception):
    """The stream's first problem was found."""


class _StreamCheck:
    def __init__(self, directory: Path, stream: str, keyring: KeyRing, strict: bool):
        self.dir = directory / stream
        self.stream = stream
        self.keyring = keyring
        self.strict = strict
        self.report = StreamReport(stream)
        self.parser = simdjson.Parser()
        # the chain: the next seq, and the hash the next record's `prev` must be
        self.seq = 1
        self.prev = GENESIS
        self.start = 1  # the stream's first seq (after pruning)
        # the checkpoint chain
        self.checkpoint_first = 1
        self.checkpoint_prev = GENESIS
        self.checkpointed = 0  # the last seq a verified checkpoint covers
        self.tombstones: list[tuple[int, object]] = []
        self.segment: Segment | None = None
        self.pruned: dict[str, Any] | None = None

    # ---- driving

    def run(self) -> StreamReport:
        with contextlib.suppress(_Stop):
            self._run()
        report = self.report
        report.records = self.seq - self.start
        if report.records:
            report.first_seq = self.start
            report.last_seq = self.seq - 1
        if report.problem is None and self.seq - 1 > self.checkpointed:
            report.residual = self.seq - 1 - self.checkpointed
            report.residual_first = self.checkpointed + 1
            report.residual_last = self.seq - 1
            if self.strict:
                report.problem = Problem(
                    self.checkpointed + 1,
                    Reason.UNSIGNED,
                    f"records {self.checkpointed + 1}..{self.seq - 1} are not covered "
                    "by a checkpoint",
                )
        return report

    def _run(self) -> None:
        segments = list_segments(self.dir)
        try:
            self.pruned = read_pruned(self.dir)
        except ValueError:
            self._fail(1, Reason.SEGMENT_MISSING, f"{PRUNED_FILE} is not JSON")
        if self.pruned is not None:
            self._start_after_pruning()
            kept = [s for s in segments if s.first > self.start - 1]
            if len(kept) < len(segments):
                self.report.notes.append(
                    f"{len(segments) - len(kept)} segments below the pruned range ignored"
                )
            segments = kept
        self.report.segments = len(segments)
        for index, segment in enumerate(segments):
            self._segment(segment, segments, index)
        if self.pruned is not None:
            self._match_tombstone()

    def _fail(
        self,
        seq: int,
        reason: Reason,
        detail: str,
        offset: int | None = None,
    ) -> NoReturn:
        segment = self.segment.name if self.segment is not None else None
        self.report.problem = Problem(seq, reason, detail, segment, offset)
        raise _Stop

    # ---- pruning

    def _start_after_pruning(self) -> None:
        assert self.pruned is not None
        try:
            line = str(self.pruned["checkpoint_line"]).encode()
            pruned_first = int(self.pruned["pruned_first"])
            pruned_last = int(self.pruned["pruned_last"])
            covered = orjson.loads(line)
        except (KeyError, TypeError, ValueError):
            self._fail(1, Reason.SEGMENT_MISSING, f"{PRUNED_FILE} is not readable")
        problem = checkpoint.malformed(covered)
        if problem is not None:
            self._fail(pruned_first, Reason.BAD_SIGNATURE, f"{PRUNED_FILE}: {problem}")
        signed = checkpoint.check_signature(covered, self.keyring)
        if signed is not checkpoint.SignatureCheck.OK:
            self._fail(
                pruned_last,
                Reason(signed.value),
                f"{PRUNED_FILE}: the checkpoint covering the pruned range "
                f"(key {covered['key_id']}) does not verify",
            )
        if covered["last"] != pruned_last or covered["stream"] != self.stream:
            self._fail(
                pruned_first,
                Reason.CHECKPOINT_MISMATCH,
                f"{PRUNED_FILE}: its checkpoint does not cover records ..{pruned_last} "
                f"of {self.stream}",
            )
        self.seq = self.start = self.checkpoint_first = pruned_last + 1
        self.prev = covered["head"]
        self.checkpoint_prev = line_hash(line)
        self.checkpointed = pruned_last
        self.report.pruned_last = pruned_last

    def _match_tombstone(self) -> None:
        assert self.pruned is not None
        pruned_last = int(self.pruned["pruned_last"])
        covered = orjson.loads(str(self.pruned["checkpoint_line"]))
        for last, signed in self.tombstones:
            if last == pruned_last and signed == covered:
                return
        earlier = [last for last, _ in self.tombstones if last < pruned_last]
        first_missing = max(earlier) + 1 if earlier else int(self.pruned["pruned_first"])
        self.segment = None
        self._fail(
            first_missing,
            Reason.SEGMENT_MISSING,
            f"records {first_missing}..{pruned_last} are gone and no tombstone record "
            f"in the chain prunes them ({PRUNED_FILE} claims so)",
        )

    # ---- segments

    def _segment(self, segment: Segment, segments: list[Segment], index: int) -> None:
        self.segment = segment
        last_segment = index == len(segments) - 1
        chunks = read_chunks(segment.path)
        first = True
        sha = hashlib.sha256
        parse = self.parser.parse
        seq = self.seq
        prev = self.prev.encode()
        for chunk in chunks:
            lines = chunk.lines
            if not chunk.complete:
                self.seq, self.prev = seq, prev.decode()
                self._torn(segment, chunk, last_segment)
            for i, line in enumerate(lines):
                if first:
                    first = False
                    self.seq, self.prev = seq, prev.decode()
                    self._segment_start(segment, index, line, lines, i, chunks, segments)
                # the fast path: the next record, in order, chained
                if line[:7] == b'{"seq":':
                    comma = line.find(_PREV_KEY, 8, 40)
                    if (
                        comma > 0
                        and line[comma + 9 : comma + 73] == prev
                        and line[7:comma].isdigit()
                        and int(line[7:comma]) == seq
                    ):
                        try:
                            parse(line)
                            valid = True
                        except (ValueError, RuntimeError):
                            valid = False
                        if valid:
                            prev = sha(line).hexdigest().encode()
                            seq += 1
                            if _TOMBSTONE in line:
                                self._tombstone(line)
                            continue
                self.seq, self.prev = seq, prev.decode()
                self._slow(line, chunk, i, chunks, segments, index, last_segment)
                seq, prev = self.seq, self.prev.encode()
        self.seq, self.prev = seq, prev.decode()
        if first and not last_segment:
            self.report.notes.append(f"segment {segment.name} is empty")

    def _segment_start(
        self,
        segment: Segment,
        index: int,
        line: bytes,
        lines: list[bytes],
        i: int,
        chunks: Iterator[Chunk],
        segments: list[Segment],
    ) -> None:
        """A segment's name must be the seq its first record should have; the one
        before it must end with a checkpoint."""
        # the previous segment ended with a checkpoint of its last record (or there
        # is none: the first segment, or the first after the pruned range)
        closed = index == 0 or self.checkpointed == self.seq - 1
        if segment.first == self.seq:
            if not closed:
                self._fail(
                    self.checkpoint_first,
                    Reason.CHECKPOINT_MISMATCH,
                    f"the segment before {segment.name} does not end with a checkpoint",
                    offset=0,
                )
            return
        prefix = parse_record_prefix(line)
        if prefix is not None and prefix == (self.seq, self.prev):
            self._fail(
                self.seq,
                Reason.EDITED,
                f"segment {segment.name} is misnamed: it starts with record {self.seq}",
                offset=0,
            )
        if segment.first > self.seq:
            if closed:
                self._fail(
                    self.seq,
                    Reason.SEGMENT_MISSING,
                    f"records {self.seq}..{segment.first - 1} are missing: "
                    f"no segment starts at {self.seq}",
                    offset=0,
                )
            self._fail(
                self.seq,
                Reason.DELETED,
                f"records {self.seq}..{segment.first - 1} are missing "
                "(the previous segment ends without its checkpoint)",
                offset=0,
            )
        self._fail(
            segment.first,
            Reason.INSERTED,
            f"segment {segment.name} starts at {segment.first}, records up to "
            f"{self.seq - 1} were already read",
            offset=0,
        )

    def _torn(self, segment: Segment, chunk: Chunk, last_segment: bool) -> None:
        if last_segment:
            self._fail(
                self.seq,
                Reason.TORN_TAIL,
                f"{len(chunk.lines[0])} bytes after the last whole line of {segment.name}",
                offset=chunk.offset,
            )
        if chunk.lines[0].startswith(b'{"seq":'):
            self._fail(
                self.seq,
                Reason.DELETED,
                f"closed segment {segment.name} ends in a cut record",
                offset=chunk.offset,
            )
        self._fail(
            self._after(),
            Reason.BAD_SIGNATURE,
            f"closed segment {segment.name} ends in a cut line, not a whole checkpoint",
            offset=chunk.offset,
        )

    def _tombstone(self, line: bytes) -> None:
        obj = orjson.loads(line)
        if obj.get("kind") == "tombstone" and isinstance(obj.get("pruned_last"), int):
            self.tombstones.append((obj["pruned_last"], obj.get("checkpoint")))

    # ---- what is not the next record in order

    def _ahead(
        self,
        lines: list[bytes],
        i: int,
        chunks: Iterator[Chunk],
        segments: list[Segment],
        index: int,
        n: int = 3,
    ) -> list[_Item]:
        """The next `n` lines after `lines[i]`, across chunks and segments."""

        def following() -> Iterator[bytes]:
            yield from lines[i + 1 :]
            for chunk in chunks:
                if chunk.complete:
                    yield from chunk.lines
            for segment in segments[index + 1 :]:
                for chunk in read_chunks(segment.path):
                    if chunk.complete:
                        yield from chunk.lines

        items = []
        for line in following():
            items.append(_item(line))
            if len(items) == n:
                break
        return items

    def _slow(
        self,
        line: bytes,
        chunk: Chunk,
        i: int,
        chunks: Iterator[Chunk],
        segments: list[Segment],
        index: int,
        last_segment: bool,
    ) -> None:
        offset = chunk.offset_of(i)
        last_line = last_segment and i == len(chunk.lines) - 1
        obj: object = None
        valid = True
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            valid = False
        if not valid or not isinstance(obj, dict):
            if last_line and self._is_last_chunk(chunks):
                self._fail(self.seq, Reason.TORN_TAIL, "the last line is not JSON", offset)
            lines = chunk.lines
            following = lines[i + 1] if i + 1 < len(lines) else b""
            if _checkpoint_like(line) or (
                not line.startswith(b'{"seq":')
                and not line_parses(following)
                and _checkpoint_like(following)
            ):
                # a damaged checkpoint (or one split in two by a newline)
                self._fail(
                    self._after(), Reason.BAD_SIGNATURE, "a checkpoint line is not JSON", offset
                )
            self._fail(self.seq, Reason.EDITED, "a line is not a JSON object", offset)
        assert isinstance(obj, dict)
        prefix = parse_record_prefix(line)
        if prefix is not None:
            ahead = self._ahead(chunk.lines, i, chunks, segments, index)
            self._record(prefix[0], prefix[1], line_hash(line), ahead, offset)
            # a record in order whose only fault was its form was caught above;
            # _record returns only for a record that verifies
            self.prev = line_hash(line)
            self.seq += 1
            if _TOMBSTONE in line:
                self._tombstone(line)
            return
        if obj.get("kind") == checkpoint.KIND or "sig" in obj:
            self._checkpoint(obj, line, offset)
            return
        self._fail(
            self.seq,
            Reason.EDITED,
            f"a line that is neither a record nor a checkpoint (kind {obj.get('kind')!r})",
            offset,
        )

    @staticmethod
    def _is_last_chunk(chunks: Iterator[Chunk]) -> bool:
        rest = next(chunks, None)
        return rest is None or not rest.complete

    def _after(self) -> int:
        """The record a checkpoint line follows (its `last` where the writer put it)."""
        return self.seq - 1 if self.seq - 1 >= self.start else self.seq

    def _record(self, seq: int, prev: str, digest: str, ahead: list[_Item], offset: int) -> None:
        """Classify a record that is not the next one in order (module doc)."""
        expected, chained = self.seq, self.prev
        if seq == expected and prev == chained:
            return  # in order: its line failed the fast path's form check only
        records = [item for item in ahead if item.kind == "record"]
        following = records[0] if records else None
        if seq == expected:
            if following is not None and following.seq == expected:
                self._fail(
                    expected,
                    Reason.INSERTED,
                    f"two records claim seq {expected}: the first does not chain",
                    offset,
                )
            successor = ahead[0] if ahead else None
            vouched = successor is not None and (
                (successor.kind == "record" and successor.prev == digest)
                or (successor.kind == "checkpoint" and successor.head == digest)
            )
            # record expected-1 is vouched for by a checkpoint right after it (or
            # there is none): then this record's `prev` is what changed
            signed = self.checkpointed == expected - 1
            if signed or (ahead and not vouched):
                self._fail(
                    expected,
                    Reason.EDITED,
                    f"record {expected}'s `prev` is not the previous record's hash",
                    offset,
                )
            self._fail(
                expected - 1,
                Reason.EDITED,
                f"record {expected - 1} does not hash to record {expected}'s `prev`",
                offset,
            )
        if following is not None and following.seq == expected and following.prev == chained:
            # the record that belongs here comes next: this one was put before it
            second = records[1] if len(records) > 1 else None
            if seq == expected + 1 and (second is None or second.seq != expected + 1):
                self._fail(
                    expected,
                    Reason.REORDERED,
                    f"record {seq} comes before record {expected}",
                    offset,
                )
            self._fail(
                expected,
                Reason.INSERTED,
                f"a record claiming seq {seq} was inserted before record {expected}",
                offset,
            )
        if prev == chained:
            self._fail(
                expected,
                Reason.EDITED,
                f"record {expected} claims seq {seq} but chains where {expected} belongs",
                offset,
            )
        if seq > expected:
            self._fail(
                expected,
                Reason.DELETED,
                f"records {expected}..{seq - 1} are missing",
                offset,
            )
        if seq == expected - 1:
            self._fail(
                seq,
                Reason.INSERTED,
                f"two records claim seq {seq}",
                offset,
            )
        self._fail(
            expected,
            Reason.INSERTED,
            f"a record claiming seq {seq} follows record {expected - 1}",
            offset,
        )

    def _checkpoint(self, obj: dict[str, Any], line: bytes, offset: int) -> None:
        after = self._after()
        problem = checkpoint.malformed(obj)
        if problem is not None:
            self._fail(after, Reason.BAD_SIGNATURE, f"a damaged checkpoint: {problem}", offset)
        signed = checkpoint.check_signature(obj, self.keyring)
        if signed is checkpoint.SignatureCheck.UNKNOWN_KEY:
            self._fail(
                after,
                Reason.UNKNOWN_KEY,
                f"the checkpoint after record {after} is signed by unknown key {obj['key_id']}",
                offset,
            )
        if signed is checkpoint.SignatureCheck.BAD_SIGNATURE:
            self._fail(
                after,
                Reason.BAD_SIGNATURE,
                f"the checkpoint after record {after} does not verify with key {obj['key_id']}",
                offset,
            )
        last = obj["last"]
        if obj["stream"] != self.stream:
            self._fail(
                after,
                Reason.CHECKPOINT_MISMATCH,
                f"a checkpoint of stream {obj['stream']!r} in stream {self.stream!r}",
                offset,
            )
        # a checkpoint removed, or replaced by another validly signed one (replayed)
        if obj["first"] != self.checkpoint_first or obj["prev_checkpoint"] != self.checkpoint_prev:
            self._fail(
                self.checkpoint_first,
                Reason.CHECKPOINT_MISMATCH,
                f"the checkpoint for {obj['first']}..{last} does not follow the previous "
                f"checkpoint (which ended at {self.checkpoint_first - 1})",
                offset,
            )
        if last > self.seq - 1:
            self._fail(
                self.seq,
                Reason.DELETED,
                f"the checkpoint signs records up to {last}, the chain stops at {self.seq - 1}",
                offset,
            )
        if last < self.seq - 1:
            self._fail(
                max(last + 1, self.start),
                Reason.INSERTED,
                f"records {last + 1}..{self.seq - 1} precede a checkpoint that ends at {last}",
                offset,
            )
        if obj["head"] != self.prev:
            self._fail(
                last,
                Reason.EDITED,
                f"record {last} is not the record the checkpoint signed (head differs)",
                offset,
            )
        self.checkpoint_first = last + 1
        self.checkpoint_prev = line_hash(line)
        self.checkpointed = last
        self.report.checkpoints += 1


def render_report(report: Report) -> str:
    """The report as text for a terminal: one paragraph per stream."""
    out = [f"audit log {report.directory}: {'OK' if report.ok else 'PROBLEMS FOUND'}"]
    if not report.streams:
        out.append("  (no streams)")
    for stream in report.streams:
        span = (
            f"records {stream.first_seq}..{stream.last_seq}"
            if stream.first_seq is not None
            else "no records"
        )
        out.append(
            f"- {stream.stream}: {'ok' if stream.ok else 'FAILED'}; {span}; "
            f"{stream.records} records and {stream.checkpoints} checkpoints verified "
            f"in {stream.segments} segments"
        )
        if stream.pruned_last is not None:
            out.append(f"  records 1..{stream.pruned_last} pruned (signed tombstone)")
        if stream.residual:
            out.append(
                f"  {stream.residual} records after the last checkpoint "
                f"({stream.residual_first}..{stream.residual_last}) are not signed yet"
            )
        problem = stream.problem
        if problem is not None:
            where = ""
            if problem.segment is not None:
                where = f" in {problem.segment}"
                if problem.offset is not None:
                    where += f" at byte {problem.offset}"
            out.append(f"  first bad seq {problem.seq}: {problem.reason}{where}: {problem.detail}")
        out.extend(f"  note: {note}" for note in stream.notes)
    return "\n".join(out) + "\n"
