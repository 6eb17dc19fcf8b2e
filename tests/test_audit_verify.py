"""The verifier: the tamper matrix, each tamper found at the right sequence number
with the right reason; key rotation; pruning; the residual; random edits."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit import checkpoint
from audit.chain import GENESIS, line_hash, record_line
from audit.keys import KeyRing, Signer
from audit.segments import segment_name
from audit.verify import Reason, Report, render_report, verify
from tests.examples import examples
from tests.test_audit_chain import records

STREAM = "w"
#: The log every tamper starts from: three segments (1-10, 11-20, 21-32), a
#: checkpoint after every fifth record, 31 and 32 unsigned (the residual).
LAYOUT = ((1, 10), (11, 20), (21, 32))

KEY = Signer.generate()
OTHER_KEY = Signer.generate()


def request(seq: int) -> dict[str, Any]:
    return {
        "kind": "request",
        "time": 1765000000.0 + seq,
        "request_id": f"req-{seq:04d}",
        "tenant": "acme",
        "status": 200,
        "latency_ms": 12.5,
    }


def build(
    directory: Path,
    layout: tuple[tuple[int, int], ...] = LAYOUT,
    every: int = 5,
    signers: Callable[[int], Signer] = lambda seq: KEY,
) -> Path:
    """Write a stream by hand, the way the writer lays it out."""
    stream = directory / STREAM
    stream.mkdir(parents=True)
    head, checkpoint_hash, checkpointed = GENESIS, GENESIS, 0
    for first, last in layout:
        lines = []
        for seq in range(first, last + 1):
            line = record_line(request(seq), seq, head)
            head = line_hash(line)
            lines.append(line)
            if seq % every == 0:
                fields = checkpoint.build(
                    signers(seq),
                    stream=STREAM,
                    first=checkpointed + 1,
                    last=seq,
                    head=head,
                    prev_checkpoint=checkpoint_hash,
                    time=1765000000.0 + seq,
                )
                line = checkpoint.to_line(fields)
                checkpoint_hash, checkpointed = line_hash(line), seq
                lines.append(line)
        (stream / segment_name(first)).write_bytes(b"\n".join(lines) + b"\n")
    return stream


def segment(stream: Path, first: int) -> Path:
    return stream / segment_name(first)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def find(lines: list[bytes], seq: int, kind: str = "record") -> int:
    """The index of record `seq` (or of the checkpoint whose `last` is `seq`)."""
    for index, line in enumerate(lines):
        obj = orjson.loads(line)
        if kind == "record" and obj.get("seq") == seq:
            return index
        if kind == "checkpoint" and obj.get("kind") == "checkpoint" and obj["last"] == seq:
            return index
    raise LookupError(seq)


def edit(stream: Path, first: int, change: Callable[[list[bytes]], object]) -> None:
    path = segment(stream, first)
    lines = lines_of(path)
    change(lines)
    write_lines(path, lines)


def only_problem(report: Report) -> tuple[int, Reason]:
    assert not report.ok, render_report(report)
    assert report.exit_code == 1
    (stream,) = report.streams
    assert stream.problem is not None
    return stream.problem.seq, stream.problem.reason


@pytest.fixture
def stream(tmp_path: Path) -> Path:
    return build(tmp_path)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([KEY.public_key])


def test_an_untouched_log_verifies(stream: Path, ring: KeyRing) -> None:
    report = verify(stream.parent, ring)
    assert report.ok and report.exit_code == 0, render_report(report)
    (result,) = report.streams
    assert (result.records, result.checkpoints, result.segments) == (32, 6, 3)
    assert (result.first_seq, result.last_seq) == (1, 32)
    assert (result.residual, result.residual_first, result.residual_last) == (2, 31, 32)
    described = orjson.loads(orjson.dumps(report.describe()))
    assert described["ok"] and described["streams"][0]["residual"] == {
        "records": 2,
        "first": 31,
        "last": 32,
    }
    text = render_report(report)
    assert "w: ok" in text and "(31..32) are not signed yet" in text


def test_strict_makes_the_residual_a_problem(stream: Path, ring: KeyRing) -> None:
    assert only_problem(verify(stream.parent, ring, strict=True)) == (31, Reason.UNSIGNED)


# ---- the tamper matrix


def _set_in_record(lines: list[bytes], seq: int, old: bytes, new: bytes) -> None:
    index = find(lines, seq)
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new)


@pytest.mark.parametrize(
    ("seq", "first"),
    [(7, 1), (5, 1), (10, 1), (11, 11), (1, 1), (21, 21), (31, 21)],
)
def test_an_edited_record_is_found_at_its_seq(
    stream: Path, ring: KeyRing, seq: int, first: int
) -> None:
    edit(stream, first, lambda lines: _set_in_record(lines, seq, b'"status":200', b'"status":201'))
    assert only_problem(verify(stream.parent, ring)) == (seq, Reason.EDITED)


def test_an_edit_of_the_last_unsigned_record_is_the_residual_risk(
    stream: Path, ring: KeyRing
) -> None:
    edit(stream, 21, lambda lines: _set_in_record(lines, 32, b'"status":200', b'"status":201'))
    report = verify(stream.parent, ring)
    assert report.ok and report.streams[0].residual == 2


def test_an_edited_prev_is_found_at_its_record(stream: Path, ring: KeyRing) -> None:
    def change(lines: list[bytes]) -> None:
        index = find(lines, 7)
        lines[index] = lines[index][:20] + b"f" + lines[index][21:]

    edit(stream, 1, change)
    assert only_problem(verify(stream.parent, ring)) == (7, Reason.EDITED)


@pytest.mark.parametrize(("seq", "first"), [(7, 1), (11, 11), (12, 11), (26, 21), (1, 1)])
def test_a_deleted_record_is_found_at_the_gap(
    stream: Path, ring: KeyRing, seq: int, first: int
) -> None:
    edit(stream, first, lambda lines: lines.pop(find(lines, seq)))
    assert only_problem(verify(stream.parent, ring)) == (seq, Reason.DELETED)


def test_records_deleted_under_a_checkpoint_are_found(stream: Path, ring: KeyRing) -> None:
    # the last records before a checkpoint go, the checkpoint that signed them stays
    def change(lines: list[bytes]) -> None:
        for seq in (30, 29, 28):
            lines.pop(find(lines, seq))

    edit(stream, 21, change)
    assert only_problem(verify(stream.parent, ring)) == (28, Reason.DELETED)
    # the same at the end of a closed segment
    edit(stream, 1, lambda lines: lines.pop(find(lines, 10)))
    assert only_problem(verify(stream.parent, ring)) == (10, Reason.DELETED)


def _forged(seq: int, prev: str, **fields: Any) -> bytes:
    return record_line({**request(seq), "status": 500, **fields}, seq, prev)


@pytest.mark.parametrize("claimed", ["reuse", "chained", "other", "next", "lower"])
def test_an_inserted_record_is_found_at_its_position(
    stream: Path, ring: KeyRing, claimed: str
) -> None:
    def change(lines: list[bytes]) -> None:
        index = find(lines, 7)
        prev_hash = line_hash(lines[index - 1])
        forged = {
            "reuse": _forged(7, "ab" * 32),  # seq 7, a prev that does not chain
            "chained": _forged(7, prev_hash),  # seq 7, chained to record 6
            "other": _forged(999, prev_hash),
            "next": _forged(8, prev_hash),
            "lower": _forged(3, prev_hash),
        }[claimed]
        lines.insert(index, forged)

    edit(stream, 1, change)
    assert only_problem(verify(stream.parent, ring)) == (7, Reason.INSERTED)


def test_a_record_appended_after_a_checkpoint_it_precedes_is_found(
    stream: Path, ring: KeyRing
) -> None:
    def change(lines: list[bytes]) -> None:
        at = find(lines, 10, "checkpoint")
        lines.insert(at, record_line(request(11), 11, line_hash(lines[at - 1])))

    edit(stream, 1, change)
    assert only_problem(verify(stream.parent, ring)) == (11, Reason.INSERTED)


@pytest.mark.parametrize(("seq", "first"), [(7, 1), (1, 1), (11, 11), (23, 21)])
def test_swapped_records_are_found_at_the_first(
    stream: Path, ring: KeyRing, seq: int, first: int
) -> None:
    def change(lines: list[bytes]) -> None:
        index = find(lines, seq)
        lines[index], lines[index + 1] = lines[index + 1], lines[index]

    edit(stream, first, change)
    assert only_problem(verify(stream.parent, ring)) == (seq, Reason.REORDERED)


@pytest.mark.parametrize(("dropped", "missing"), [(11, 11), (1, 1)])
def test_a_dropped_segment_is_found_at_its_first_seq(
    stream: Path, ring: KeyRing, dropped: int, missing: int
) -> None:
    segment(stream, dropped).unlink()
    problem = verify(stream.parent, ring).streams[0].problem
    assert problem is not None and (problem.seq, problem.reason) == (
        missing,
        Reason.SEGMENT_MISSING,
    )
    assert problem.segment is not None


def test_a_renamed_segment_is_found(stream: Path, ring: KeyRing) -> None:
    segment(stream, 11).rename(segment(stream, 12))
    assert only_problem(verify(stream.parent, ring)) == (11, Reason.EDITED)


def _resign(lines: list[bytes], last: int, signer: Signer, **changes: Any) -> None:
    index = find(lines, last, "checkpoint")
    fields = {**orjson.loads(lines[index]), **changes}
    fields["sig"] = signer.sign(checkpoint.payload(fields))
    lines[index] = checkpoint.to_line(fields)


@pytest.mark.parametrize(
    "changes",
    [{"head": "cd" * 32}, {"last": 16}, {"first": 12}, {"time": 1.0}, {"stream": "v"}],
)
def test_a_forged_checkpoint_is_a_bad_signature_at_its_last(
    stream: Path, ring: KeyRing, changes: dict[str, Any]
) -> None:
    def change(lines: list[bytes]) -> None:
        index = find(lines, 15, "checkpoint")
        lines[index] = checkpoint.to_line({**orjson.loads(lines[index]), **changes})

    edit(stream, 11, change)
    assert only_problem(verify(stream.parent, ring)) == (15, Reason.BAD_SIGNATURE)


def test_a_checkpoint_re_signed_with_another_key_is_an_unknown_key(
    stream: Path, ring: KeyRing
) -> None:
    edit(stream, 11, lambda lines: _resign(lines, 15, OTHER_KEY, key_id=OTHER_KEY.key_id))
    assert only_problem(verify(stream.parent, ring)) == (15, Reason.UNKNOWN_KEY)


def test_a_checkpoint_re_signed_claiming_the_real_key_is_a_bad_signature(
    stream: Path, ring: KeyRing
) -> None:
    edit(stream, 11, lambda lines: _resign(lines, 15, OTHER_KEY, head="cd" * 32))
    assert only_problem(verify(stream.parent, ring)) == (15, Reason.BAD_SIGNATURE)


def test_a_deleted_checkpoint_breaks_the_checkpoint_chain(stream: Path, ring: KeyRing) -> None:
    edit(stream, 11, lambda lines: lines.pop(find(lines, 15, "checkpoint")))
    assert only_problem(verify(stream.parent, ring)) == (11, Reason.CHECKPOINT_MISMATCH)


def test_a_segment_without_its_closing_checkpoint_is_found(stream: Path, ring: KeyRing) -> None:
    edit(stream, 1, lambda lines: lines.pop(find(lines, 10, "checkpoint")))
    assert only_problem(verify(stream.parent, ring)) == (6, Reason.CHECKPOINT_MISMATCH)


def test_a_checkpoint_replaced_by_another_valid_one_is_found(stream: Path, ring: KeyRing) -> None:
    # a validly signed checkpoint from elsewhere in the stream, moved
    other = lines_of(segment(stream, 1))[find(lines_of(segment(stream, 1)), 5, "checkpoint")]

    def change(lines: list[bytes]) -> None:
        lines[find(lines, 15, "checkpoint")] = other

    edit(stream, 11, change)
    assert only_problem(verify(stream.parent, ring)) == (11, Reason.CHECKPOINT_MISMATCH)


@pytest.mark.parametrize("cut", [1, 30, -2])
def test_a_tail_cut_mid_line_is_a_torn_tail(stream: Path, ring: KeyRing, cut: int) -> None:
    path = segment(stream, 21)
    data = path.read_bytes()
    last_line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_line_start + cut] if cut > 0 else data[:cut])
    problem = verify(stream.parent, ring).streams[0].problem
    assert problem is not None
    assert (problem.seq, problem.reason) == (32, Reason.TORN_TAIL)
    assert problem.segment == segment_name(21) and problem.offset == last_line_start


def test_a_last_line_that_is_not_json_is_a_torn_tail(stream: Path, ring: KeyRing) -> None:
    path = segment(stream, 21)
    path.write_bytes(path.read_bytes() + b"\x00\x00\x00\n")
    assert only_problem(verify(stream.parent, ring)) == (33, Reason.TORN_TAIL)


def test_a_closed_segment_cut_in_its_checkpoint_is_found(stream: Path, ring: KeyRing) -> None:
    path = segment(stream, 11)
    path.write_bytes(path.read_bytes()[:-40])
    assert only_problem(verify(stream.parent, ring)) == (20, Reason.BAD_SIGNATURE)


def test_a_line_that_is_not_a_record_is_found(stream: Path, ring: KeyRing) -> None:
    edit(stream, 1, lambda lines: lines.insert(find(lines, 7), b'{"hello":"world"}'))
    assert only_problem(verify(stream.parent, ring)) == (7, Reason.EDITED)
    edit(stream, 11, lambda lines: lines.insert(find(lines, 13), b"not json"))
    assert only_problem(verify(stream.parent, ring)) == (7, Reason.EDITED)


def test_streams_are_verified_independently(stream: Path, ring: KeyRing) -> None:
    shutil.copytree(stream, stream.parent / "v")
    (stream.parent / "empty").mkdir()
    edit(stream.parent / "v", 1, lambda lines: lines.pop(find(lines, 3)))
    report = verify(stream.parent, ring)
    assert [(s.stream, s.ok) for s in report.streams] == [
        ("empty", True),
        ("v", False),
        ("w", True),
    ]
    assert report.exit_code == 1
    assert "first bad seq 3: deleted" in render_report(report)
    problem = report.describe()["streams"][1]["problem"]
    assert (problem["seq"], problem["reason"]) == (3, "deleted")
    assert verify(stream.parent, ring, streams=["w"]).ok


@pytest.mark.parametrize("content", [b"[]", b"{", b'{"pruned_last": 10}'])
def test_a_damaged_pruned_file_is_found(stream: Path, ring: KeyRing, content: bytes) -> None:
    (stream / "pruned.json").write_bytes(content)
    assert only_problem(verify(stream.parent, ring)) == (1, Reason.SEGMENT_MISSING)


# ---- keys


def test_key_rotation_verifies_with_both_keys(tmp_path: Path) -> None:
    stream = build(tmp_path, signers=lambda seq: KEY if seq <= 15 else OTHER_KEY)
    names = {orjson.loads(line)["key_id"] for line in lines_of(segment(stream, 21))[5:6]}
    assert names == {OTHER_KEY.key_id}
    both = KeyRing([KEY.public_key, OTHER_KEY.public_key])
    report = verify(tmp_path, both)
    assert report.ok and report.streams[0].checkpoints == 6
    assert only_problem(verify(tmp_path, KeyRing([OTHER_KEY.public_key]))) == (
        5,
        Reason.UNKNOWN_KEY,
    )
    assert only_problem(verify(tmp_path, KeyRing([KEY.public_key]))) == (20, Reason.UNKNOWN_KEY)


# ---- random records


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(written=st.lists(records, min_size=1, max_size=20), every=st.integers(1, 7))
def test_any_records_verify(tmp_path: Path, written: list[dict[str, Any]], every: int) -> None:
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    stream = directory / STREAM
    stream.mkdir()
    out, head, checkpoint_hash, checkpointed = [], GENESIS, GENESIS, 0
    for seq, record in enumerate(written, start=1):
        line = record_line(record, seq, head)
        head = line_hash(line)
        out.append(line)
        if seq % every == 0 or seq == len(written):
            line = checkpoint.to_line(
                checkpoint.build(
                    KEY,
                    stream=STREAM,
                    first=checkpointed + 1,
                    last=seq,
                    head=head,
                    prev_checkpoint=checkpoint_hash,
                    time=1.0,
                )
            )
            checkpoint_hash, checkpointed = line_hash(line), seq
            out.append(line)
    write_lines(stream / segment_name(1), out)
    report = verify(directory, KeyRing([KEY.public_key]), strict=True)
    assert report.ok, render_report(report)
    assert report.records == len(written)


# ---- any single byte, anywhere but the unsigned end


def _lines_with_positions(stream: Path) -> list[tuple[int, int, int, int]]:
    """(segment first, line start, line end incl. newline, expected seq) for every
    line whose edit must be found at a known seq."""
    out = []
    for first, _ in LAYOUT:
        data = segment(stream, first).read_bytes()
        start = 0
        for line in data.split(b"\n")[:-1]:
            obj = orjson.loads(line)
            seq = obj["seq"] if "seq" in obj else obj["last"]
            out.append((first, start, start + len(line) + 1, seq))
            start += len(line) + 1
    return out[:-2]  # not 31 (its edit shows at 32 only as ambiguity) and 32 (the end)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_single_byte_edit_is_found_at_its_line(tmp_path: Path, data: st.DataObject) -> None:
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    stream = build(directory)
    ring = KeyRing([KEY.public_key])
    first, start, end, seq = data.draw(st.sampled_from(_lines_with_positions(stream)))
    at = data.draw(st.integers(min_value=start, max_value=end - 1))
    path = segment(stream, first)
    raw = bytearray(path.read_bytes())
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[at]))
    raw[at] = byte
    path.write_bytes(bytes(raw))
    report = verify(directory, ring)
    problem = report.streams[0].problem
    assert problem is not None, render_report(report)
    assert problem.seq == seq, render_report(report)
