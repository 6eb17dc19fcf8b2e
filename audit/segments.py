"""Segment files on disk: their names, their order, and reading their lines.

`DIR/<stream>/<first_seq:012d>.jsonl`: a segment is named by the sequence number of
its first record, so listing a directory orders a stream, and a verifier can tell a
missing segment (a name that skips ahead) from a missing record inside one.
Reading is in big chunks cut at line ends: the verifier's cost per record must stay
near one SHA-256 and one validating parse, with no per-line system calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

SUFFIX: Final = ".jsonl"
TORN_SUFFIX: Final = ".torn"
#: In a stream directory: what was pruned (audit/writer.py explains).
PRUNED_FILE: Final = "pruned.json"
#: Read this much of a segment at a time.
CHUNK_BYTES: Final = 4 * 1024 * 1024
_NAME = re.compile(r"^(\d{12})\.jsonl$")


@dataclass(frozen=True, slots=True)
class Segment:
    first: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(slots=True)
class Chunk:
    """Whole lines of a segment (without their newlines) from byte `offset` on."""

    offset: int
    lines: list[bytes]
    #: False for the bytes after a file's last newline (a torn line).
    complete: bool = True

    def offset_of(self, index: int) -> int:
        """The byte offset of `lines[index]` in the file (computed when needed, which
        is only when something is wrong)."""
        return self.offset + sum(len(line) + 1 for line in self.lines[:index])


def segment_name(first_seq: int) -> str:
    return f"{first_seq:012d}{SUFFIX}"


def segment_path(directory: str | os.PathLike[str], stream: str, first_seq: int) -> Path:
    return Path(directory) / stream / segment_name(first_seq)


def parse_segment_name(name: str) -> int | None:
    """The first sequence number a segment file's name claims, or None if the name is
    not a segment's (`.torn` files, `pruned.json`, temporary files)."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def list_segments(stream_dir: str | os.PathLike[str]) -> list[Segment]:
    """A stream's segments in order."""
    found = []
    try:
        entries = list(os.scandir(stream_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        first = parse_segment_name(entry.name)
        if first is not None and entry.is_file():
            found.append(Segment(first, Path(entry.path)))
    found.sort(key=lambda segment: segment.first)
    return found


def list_streams(directory: str | os.PathLike[str]) -> list[str]:
    """The streams of a log directory: its sub-directories, sorted."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(entry.name for entry in entries if entry.is_dir() and entry.name[0] != ".")


def read_chunks(path: str | os.PathLike[str], chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """The whole lines of a file, a chunk at a time. Bytes after the last newline (a
    torn last line) come last, as an incomplete chunk of one line."""
    offset = 0
    rest = b""
    with open(path, "rb") as file:
        while True:
            data = file.read(chunk_bytes)
            if not data:
                break
            if rest:
                data = rest + data
            end = data.rfind(b"\n")
            if end < 0:
                rest = data
                continue
            lines = data[:end].split(b"\n")
            rest = data[end + 1 :]
            yield Chunk(offset, lines)
            offset += end + 1
    if rest:
        yield Chunk(offset, [rest], complete=False)


def line_parses(line: bytes) -> bool:
    """Whether a line is one JSON object (the slow, exact check; for one line)."""
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


@dataclass(frozen=True, slots=True)
class TornTail:
    """Where the whole lines of a segment end, and how many bytes follow."""

    offset: int
    size: int


def last_line_end(path: str | os.PathLike[str], size: int) -> tuple[int, bytes | None]:
    """`(end, line)`: the offset just past the last newline, and the last whole line
    before it (None for a file without one). Reads backwards a block at a time."""
    block = 64 * 1024
    with open(path, "rb") as file:
        end = -1
        position = size
        tail = b""
        while position > 0 and end < 0:
            start = max(0, position - block)
            file.seek(start)
            tail = file.read(position - start) + tail
            position = start
            newline = tail.rfind(b"\n")
            if newline >= 0:
                end = position + newline + 1
        if end < 0:
            return 0, None
        # the line before that newline
        while True:
            body = tail[: end - position - 1]
            previous = body.rfind(b"\n")
            if previous >= 0 or position == 0:
                return end, body[previous + 1 :]
            start = max(0, position - block)
            file.seek(start)
            tail = file.read(position - start) + tail
            position = start


def torn_tail(path: str | os.PathLike[str]) -> TornTail | None:
    """The torn end of a segment, if it has one: bytes after the last newline (a
    write cut short), or a last line that is not JSON (a block the file system lost).
    Only the end is looked at: damage inside is the verifier's to find."""
    size = os.path.getsize(path)
    if size == 0:
        return None
    end, last = last_line_end(path, size)
    if last is not None and not line_parses(last):
        start = end - len(last) - 1
        return TornTail(start, size - start)
    if end < size:
        return TornTail(end, size - end)
    return None


def read_pruned(stream_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A stream's `pruned.json`, or None when nothing was ever pruned. Raises
    ValueError when it is not a JSON object."""
    try:
        data = orjson.loads((Path(stream_dir) / PRUNED_FILE).read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{PRUNED_FILE} is not a JSON object")
    return data
