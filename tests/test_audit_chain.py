"""The audit chain's pieces: record lines, hashes, keys, checkpoints, segment files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import checkpoint
from audit.chain import GENESIS, line_hash, parse_record_prefix, record_line
from audit.keys import (
    KeyRing,
    Signer,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key_file,
    public_key_pem,
)
from audit.segments import (
    list_segments,
    list_streams,
    parse_segment_name,
    read_chunks,
    segment_name,
    segment_path,
    torn_tail,
)
from tests.examples import examples

# JSON values a record field can hold (orjson: 64-bit integers, finite floats)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
records = st.dictionaries(
    st.text(max_size=12).filter(lambda key: key not in ("seq", "prev")),
    json_values,
    max_size=8,
)


def test_a_record_line_puts_seq_and_prev_first() -> None:
    line = record_line({"kind": "admin", "time": 1.5}, 7, "ab" * 32)
    assert line == b'{"seq":7,"prev":"' + b"ab" * 32 + b'","kind":"admin","time":1.5}'
    assert line_hash(line) == hashlib.sha256(line).hexdigest()
    assert parse_record_prefix(line) == (7, "ab" * 32)
    assert record_line({}, 1, GENESIS) == b'{"seq":1,"prev":"' + GENESIS.encode() + b'"}'
    assert GENESIS == "0" * 64


def test_a_record_may_not_bring_its_own_seq() -> None:
    with pytest.raises(ValueError, match="seq"):
        record_line({"seq": 3}, 1, GENESIS)
    with pytest.raises(ValueError, match="64 hex"):
        record_line({}, 1, "abc")


@pytest.mark.parametrize(
    "line",
    [
        b'{"kind":"checkpoint"}',
        b'{"seq":01,"prev":"' + GENESIS.encode() + b'"}',
        b'{"seq":1,"prev":"' + b"A" * 64 + b'"}',
        b'{"seq":1,"prev":"' + b"0" * 63 + b'"}',
        b'{"seq":-1,"prev":"' + GENESIS.encode() + b'"}',
    ],
)
def test_the_prefix_reader_refuses_other_forms(line: bytes) -> None:
    assert parse_record_prefix(line) is None


@settings(max_examples=examples(200), deadline=None)
@given(record=records, seq=st.integers(min_value=1, max_value=10**12))
def test_record_lines_round_trip(record: dict[str, Any], seq: int) -> None:
    prev = hashlib.sha256(str(seq).encode()).hexdigest()
    line = record_line(record, seq, prev)
    assert b"\n" not in line
    assert orjson.loads(line) == {"seq": seq, "prev": prev, **record}
    assert parse_record_prefix(line) == (seq, prev)


def test_keys_are_made_loaded_and_named(tmp_path: Path) -> None:
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    kid = generate_keypair(private, public)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    signer = Signer.from_pem(private.read_text())
    assert signer.key_id == kid == key_id(load_public_key_file(public))
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert public_key_pem(private.read_text()) == public.read_text()
    with pytest.raises(FileExistsError):
        generate_keypair(private, public)
    assert generate_keypair(private, public, overwrite=True) != kid


def test_bad_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="not an unencrypted PEM") as caught:
        load_private_key("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----")
    assert "c2VjcmV0" not in str(caught.value)


def _checkpoint(signer: Signer, **changes: Any) -> dict[str, Any]:
    fields = checkpoint.build(
        signer, stream="w", first=1, last=5, head="ab" * 32, prev_checkpoint=GENESIS, time=1.25
    )
    fields.update(changes)
    return fields


def test_a_checkpoint_signs_the_canonical_json_of_its_other_fields() -> None:
    signer = Signer.generate()
    signed = _checkpoint(signer)
    assert signed["key_id"] == signer.key_id
    assert list(signed)[-1] == "sig"
    assert checkpoint.payload(signed) == orjson.dumps(
        {k: v for k, v in signed.items() if k != "sig"}, option=orjson.OPT_SORT_KEYS
    )
    assert b" " not in checkpoint.payload(signed)
    ring = KeyRing([signer.public_key])
    assert checkpoint.check_signature(signed, ring) is checkpoint.SignatureCheck.OK
    # the field order on disk does not matter, the values do
    reordered = dict(reversed(list(orjson.loads(checkpoint.to_line(signed)).items())))
    assert checkpoint.check_signature(reordered, ring) is checkpoint.SignatureCheck.OK
    assert checkpoint.malformed(signed) is None


def test_checkpoint_signatures_tell_unknown_keys_from_bad_signatures() -> None:
    signer, other = Signer.generate(), Signer.generate()
    ring = KeyRing([signer.public_key])
    bad = checkpoint.SignatureCheck.BAD_SIGNATURE
    assert checkpoint.check_signature(_checkpoint(signer, last=6), ring) is bad
    assert (
        checkpoint.check_signature(_checkpoint(other), ring)
        is checkpoint.SignatureCheck.UNKNOWN_KEY
    )
    forged = _checkpoint(other, key_id=signer.key_id)
    forged["sig"] = other.sign(checkpoint.payload(forged))
    assert checkpoint.check_signature(forged, ring) is bad
    # another spelling of the same signature bytes (a flipped padding bit) is refused
    signed = _checkpoint(signer)
    sig = signed["sig"]
    assert sig.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + "=="
    assert checkpoint.check_signature({**signed, "sig": twin}, ring) is bad
    assert checkpoint.check_signature({**signed, "sig": "!!"}, ring) is bad


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kind": "admin"}, "kind"),
        ({"first": "1"}, "first"),
        ({"last": True}, "last"),
        ({"sig": None}, "sig"),
    ],
)
def test_malformed_checkpoints_are_named(changes: dict[str, Any], problem: str) -> None:
    malformed = checkpoint.malformed(_checkpoint(Signer.generate(), **changes))
    assert malformed is not None and problem in malformed


def test_segments_are_named_listed_and_read(tmp_path: Path) -> None:
    assert segment_name(42) == "000000000042.jsonl"
    assert segment_path(tmp_path, "w", 1) == tmp_path / "w" / "000000000001.jsonl"
    assert parse_segment_name("000000000042.jsonl") == 42
    assert parse_segment_name("000000000042.jsonl.torn") is None
    stream = tmp_path / "w"
    stream.mkdir()
    (tmp_path / "v").mkdir()
    for first in (11, 1, 101):
        (stream / segment_name(first)).write_bytes(b"")
    (stream / "pruned.json").write_text("{}")
    assert [s.first for s in list_segments(stream)] == [1, 11, 101]
    assert list_streams(tmp_path) == ["v", "w"]
    assert list_segments(tmp_path / "absent") == []

    path = stream / segment_name(1)
    lines = [b'{"a":%d}' % i for i in range(1000)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks = list(read_chunks(path, chunk_bytes=1000))
    assert len(chunks) > 5
    assert [line for chunk in chunks for line in chunk.lines] == lines
    assert all(chunk.complete for chunk in chunks)
    chunk = chunks[3]
    assert path.read_bytes()[chunk.offset_of(2) :].startswith(chunk.lines[2] + b"\n")
    assert torn_tail(path) is None


def test_a_torn_tail_is_bytes_after_the_last_newline_or_a_last_line_that_is_not_json(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    torn = torn_tail(path)
    assert torn is not None and (torn.offset, torn.size) == (16, 5)
    *_, last = read_chunks(path)
    assert not last.complete and last.lines == [b'{"a":']
    path.write_bytes(b'{"a":1}\n{"a":2\n')
    torn = torn_tail(path)
    assert torn is not None and (torn.offset, torn.size) == (8, 7)
    path.write_bytes(b'{"a":')
    torn = torn_tail(path)
    assert torn is not None and (torn.offset, torn.size) == (0, 5)
    path.write_bytes(b"")
    assert torn_tail(path) is None


def test_the_audit_package_does_not_load_the_gateway() -> None:
    import subprocess
    import sys

    code = (
        "import sys, audit.chain, audit.keys, audit.checkpoint, audit.segments, "
        "audit.writer, audit.verify\n"
        "loaded = [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')]\n"
        "assert not loaded, loaded"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_the_not_applicable_values_cover_every_request_field() -> None:
    """A record built from `NOT_APPLICABLE` (an `/mcp` one) has every field of the
    schema, and nothing the schema does not name."""
    from audit.record import NOT_APPLICABLE, RequestRecord

    assert set(NOT_APPLICABLE) == set(RequestRecord.__annotations__) - {"seq", "prev"}
