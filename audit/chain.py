"""The hash chain: how a record becomes a line, and what a line's hash is.

A record line is the record's JSON with `seq` and `prev` put first
(`{"seq":7,"prev":"<64 hex>",...the record's fields...}`), compact, UTF-8, no
newline inside. Putting them first is what lets the verifier read both from a fixed
prefix of the line instead of decoding every record into Python objects (the
verifier still checks that the whole line is JSON). The hash of a record is the
SHA-256 of its line bytes exactly as written (without the newline), so verifying
never re-serialises anything: a verifier in any language hashes bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

#: `prev` of a stream's first record: there is no previous record.
GENESIS: Final = "0" * 64

#: Every record line starts with this (the writer puts `seq` first).
RECORD_PREFIX: Final = b'{"seq":'
_PREV_KEY: Final = b',"prev":"'
_HEX_DIGITS: Final = frozenset(b"0123456789abcdef")


def line_hash(line: bytes) -> str:
    """The lowercase hex SHA-256 of a line's bytes (without its newline)."""
    return hashlib.sha256(line).hexdigest()


#: How a record already serialised by its maker must start (`Record` below).
SERIALISED_START: Final = b'{"kind":"'

#: A record as handed to the writer: its fields (audit/record.py) without `seq` and
#: `prev`, as a mapping, or already serialised as a JSON object that starts with its
#: `kind` (`SERIALISED_START`). The gateway hands bytes: a record's dicts and lists
#: would otherwise wait in the queue for the writer, and the cyclic GC would walk them
#: (measured: 5-10 µs a request of extra collections at ~3,000 requests/s).
Record = Mapping[str, Any] | bytes


def serialise(record: Mapping[str, Any]) -> bytes:
    """A record's fields as the JSON object the writer takes (its `kind` first, as
    audit/record.py orders the fields)."""
    if "seq" in record or "prev" in record:
        raise ValueError("a record must not carry `seq` or `prev`: the writer assigns them")
    return orjson.dumps(record)


def record_line(record: Record, seq: int, prev: str) -> bytes:
    """The line for `record` as record `seq` of its stream, chained to `prev`.

    `record` holds the record's own fields (audit/record.py) without `seq` and
    `prev`: those are the writer's to assign, and a record that brings its own would
    make two `seq` keys in one object.
    """
    if len(prev) != 64:
        raise ValueError(f"prev must be 64 hex digits, not {prev!r}")
    if isinstance(record, bytes):
        if not record.startswith(SERIALISED_START) or not record.endswith(b"}"):
            raise ValueError('a serialised record must be a JSON object starting {"kind":')
        body = record
    else:
        body = serialise(record)
    head = b'{"seq":%d,"prev":"%s"' % (seq, prev.encode("ascii"))
    if body == b"{}":
        return head + b"}"
    return head + b"," + body[1:]


def parse_record_prefix(line: bytes) -> tuple[int, str] | None:
    """`(seq, prev)` read from the fixed prefix a writer puts on every record line,
    or None when the line does not start that way (a checkpoint, or damage).

    This reads form, not validity: the caller still checks that the line is JSON.
    """
    if not line.startswith(RECORD_PREFIX):
        return None
    comma = line.find(_PREV_KEY, 7, 40)
    if comma < 8:
        return None
    digits = line[7:comma]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
        return None
    start = comma + len(_PREV_KEY)
    prev = line[start : start + 64]
    if line[start + 64 : start + 65] != b'"' or not _HEX_DIGITS.issuperset(prev):
        return None
    if len(prev) != 64 or line[start + 65 : start + 66] not in (b",", b"}"):
        return None
    return int(digits), prev.decode("ascii")
