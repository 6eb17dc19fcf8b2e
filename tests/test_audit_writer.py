"""The audit writer: group commit, segment rolls, checkpoints, back-pressure, restart,
torn-tail recovery, pruning, and a real `kill -9`."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from audit.keys import KeyRing, Signer, generate_keypair
from audit.segments import list_segments, segment_name
from audit.verify import Reason, render_report, verify
from audit.writer import StreamLocked, Writer, WriterSettings, prune

ROOT = Path(__file__).resolve().parent.parent
STREAM = "worker-0"
KEY = Signer.generate()
RING = KeyRing([KEY.public_key])


def request(i: int, pad: int = 200) -> dict[str, Any]:
    return {"kind": "request", "time": 1765000000.0 + i, "request_id": f"r{i}", "pad": "x" * pad}


def lines(directory: Path, stream: str = STREAM) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for segment in list_segments(directory / stream):
        out.extend(orjson.loads(line) for line in segment.path.read_bytes().splitlines())
    return out


def records(directory: Path) -> list[dict[str, Any]]:
    return [line for line in lines(directory) if line["kind"] != "checkpoint"]


def assert_verifies(directory: Path, strict: bool = True) -> None:
    report = verify(directory, RING, strict=strict)
    assert report.ok, render_report(report)


def writer(directory: Path, **settings: Any) -> Writer:
    return Writer(directory, STREAM, KEY, WriterSettings(**settings))


async def test_records_are_chained_and_signed(tmp_path: Path) -> None:
    async with writer(tmp_path) as w:
        for i in range(100):
            assert w.submit(request(i))
        await w.flush()
        stats = w.stats()
        assert (stats.appended, stats.last_seq, stats.durable_seq) == (100, 100, 100)
    written = records(tmp_path)
    assert [r["seq"] for r in written] == list(range(1, 101))
    assert [r["request_id"] for r in written] == [f"r{i}" for i in range(100)]
    assert lines(tmp_path)[-1]["kind"] == "checkpoint"
    assert w.stats().last_checkpoint_seq == 100
    assert_verifies(tmp_path)


async def test_group_commit_fsyncs_once_per_batch(tmp_path: Path) -> None:
    async with writer(tmp_path, batch_window=0.05, checkpoint_interval=60) as w:
        for i in range(1000):
            assert w.submit(request(i))
        await w.flush()
        stats = w.stats()
    assert stats.appended == 1000
    assert stats.batches <= 2
    assert stats.fsyncs == stats.batches
    assert w.stats().fsyncs == stats.batches + 1  # and the checkpoint at close
    assert_verifies(tmp_path)


async def test_segments_roll_each_closed_by_a_checkpoint(tmp_path: Path) -> None:
    async with writer(tmp_path, segment_max_bytes=8 * 1024, checkpoint_interval=60) as w:
        for i in range(200):
            await w.submit_wait(request(i))
            if i % 30 == 0:
                await w.flush()
    segments = list_segments(tmp_path / STREAM)
    assert len(segments) > 5
    for segment, following in itertools.pairwise(segments):
        assert segment.path.stat().st_size <= 8 * 1024 + 400  # plus one checkpoint line
        first, *_, last = segment.path.read_bytes().splitlines()
        assert orjson.loads(first)["seq"] == segment.first
        closing = orjson.loads(last)
        assert closing["kind"] == "checkpoint" and closing["last"] == following.first - 1
    report = verify(tmp_path, RING, strict=True)
    assert report.ok and report.streams[0].segments == len(segments)


async def test_checkpoints_follow_the_interval_while_records_flow(tmp_path: Path) -> None:
    async with writer(tmp_path, batch_window=0.005, checkpoint_interval=0.05) as w:
        loop = asyncio.get_running_loop()
        started = loop.time()
        i = 0
        while loop.time() - started < 0.4:
            w.submit(request(i))
            i += 1
            await asyncio.sleep(0.002)  # a steady trickle of records, not a wait for state
        await w.flush()
        assert w.stats().checkpoints >= 3
        # the unsigned tail is signed by the timer, without more records or close
        for _ in range(200):
            if w.stats().last_checkpoint_seq == w.stats().last_seq:
                break
            await asyncio.sleep(0.01)
        assert w.stats().last_checkpoint_seq == w.stats().last_seq == i
    checkpoints = [line for line in lines(tmp_path) if line["kind"] == "checkpoint"]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(checkpoints)]
    assert max(gaps) < 0.05 + 0.45  # the interval, plus a batch and a loaded machine's slack
    assert_verifies(tmp_path)


async def test_a_full_queue_refuses_and_submit_wait_waits(tmp_path: Path) -> None:
    w = writer(tmp_path, capacity=3)
    # not started: nothing drains the queue
    assert [w.submit(request(i)) for i in range(4)] == [True, True, True, False]
    assert w.stats().queue_depth == 3 and w.stats().capacity == 3 and w.full
    waiting = asyncio.create_task(w.submit_wait(request(3)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    await w.start()
    await asyncio.wait_for(waiting, 5)
    await w.flush()
    assert w.stats().appended == 4
    await w.close()
    assert not w.submit(request(9))
    with pytest.raises(RuntimeError, match="not accepting"):
        await w.submit_wait(request(9))
    assert [r["request_id"] for r in records(tmp_path)] == ["r0", "r1", "r2", "r3"]


async def test_a_held_writer_lets_the_queue_fill(tmp_path: Path) -> None:
    async with writer(tmp_path, capacity=2, batch_window=0) as w:
        with w.held():
            assert [w.submit(request(i)) for i in range(3)] == [True, True, False]
            for _ in range(5):
                await asyncio.sleep(0)
            assert w.full and w.stats().appended == 0
        await w.flush()
        assert w.stats().appended == 2 and not w.full


async def test_a_record_that_is_not_json_is_skipped_and_counted(tmp_path: Path) -> None:
    async with writer(tmp_path) as w:
        w.submit(request(0))
        w.submit({"kind": "request", "bad": object()})
        w.submit({"kind": "request", "seq": 5})
        w.submit(request(1))
        await w.flush()
        assert w.stats().rejected == 2
    assert [r["seq"] for r in records(tmp_path)] == [1, 2]
    assert_verifies(tmp_path)


async def test_a_new_key_signs_the_next_checkpoints(tmp_path: Path) -> None:
    other = Signer.generate()
    async with writer(tmp_path) as w:
        w.submit(request(0))
        await w.checkpoint()
        w.signer = other
        assert w.signer is other
        w.submit(request(1))
    checkpoints = [line for line in lines(tmp_path) if line["kind"] == "checkpoint"]
    assert [c["key_id"] for c in checkpoints] == [KEY.key_id, other.key_id]
    assert verify(tmp_path, KeyRing([KEY.public_key, other.public_key]), strict=True).ok
    problem = verify(tmp_path, RING).streams[0].problem
    assert problem is not None and (problem.seq, problem.reason) == (2, Reason.UNKNOWN_KEY)


async def test_one_writer_per_stream(tmp_path: Path) -> None:
    async with writer(tmp_path):
        with pytest.raises(StreamLocked):
            await writer(tmp_path).start()
        async with Writer(tmp_path, "worker-1", KEY):
            pass


async def test_a_restart_continues_the_chain(tmp_path: Path) -> None:
    for round_ in range(3):
        async with writer(tmp_path) as w:
            assert w.recovery is not None and w.recovery.last_seq == 10 * round_
            for i in range(10):
                w.submit(request(i))
    assert [r["seq"] for r in records(tmp_path)] == list(range(1, 31))
    report = verify(tmp_path, RING, strict=True)
    assert report.ok and report.streams[0].checkpoints == 3


async def test_an_unsigned_tail_is_signed_at_start(tmp_path: Path) -> None:
    async with writer(tmp_path, checkpoint_interval=60) as w:
        for i in range(10):
            w.submit(request(i))
        await w.flush()
        # what a crash leaves: records written, no checkpoint yet
        unsigned = (tmp_path / STREAM / segment_name(1)).read_bytes()
    (tmp_path / STREAM / segment_name(1)).write_bytes(unsigned)
    problem = verify(tmp_path, RING, strict=True).streams[0].problem
    assert problem is not None and problem.reason == Reason.UNSIGNED
    async with writer(tmp_path) as w:
        assert w.recovery is not None and w.recovery.unsigned == 10
        assert w.stats().last_checkpoint_seq == 10
    assert_verifies(tmp_path)


@pytest.mark.parametrize("tail", [b'{"seq":11,"prev":"ab', b"\x00\x00\x00\x00\n"])
async def test_a_torn_tail_is_moved_aside_and_recorded(tmp_path: Path, tail: bytes) -> None:
    async with writer(tmp_path) as w:
        for i in range(10):
            w.submit(request(i))
    path = tmp_path / STREAM / segment_name(1)
    whole = path.read_bytes()
    path.write_bytes(whole + tail)
    problem = verify(tmp_path, RING).streams[0].problem
    assert problem is not None and problem.reason == Reason.TORN_TAIL

    async with writer(tmp_path) as w:
        recovery = w.recovery
        assert recovery is not None
        assert (recovery.torn_segment, recovery.torn_bytes) == (segment_name(1), len(tail))
        w.submit(request(10))
    torn = tmp_path / STREAM / (segment_name(1) + ".torn")
    assert torn.read_bytes() == tail
    assert path.read_bytes().startswith(whole)
    notice = records(tmp_path)[10]
    assert notice["kind"] == "admin" and notice["action"] == "audit.recovered"
    assert notice["seq"] == 11
    assert notice["detail"] == {
        "segment": segment_name(1),
        "offset": len(whole),
        "torn_bytes": len(tail),
        "torn_file": torn.name,
    }
    assert records(tmp_path)[11]["request_id"] == "r10"
    assert_verifies(tmp_path)


async def test_a_segment_that_holds_only_a_torn_line_is_dropped(tmp_path: Path) -> None:
    async with writer(tmp_path, segment_max_bytes=4096) as w:
        for i in range(40):
            await w.submit_wait(request(i))
    segments = list_segments(tmp_path / STREAM)
    following = tmp_path / STREAM / segment_name(41)
    following.write_bytes(b'{"seq":41,"pr')
    async with writer(tmp_path, segment_max_bytes=4096) as w:
        assert w.recovery is not None and w.recovery.torn_bytes == 13
        assert w.recovery.torn_segment == following.name
    # the empty segment went; the recovery record went where record 41 belongs
    notice = records(tmp_path)[-1]
    assert (notice["seq"], notice["action"]) == (41, "audit.recovered")
    assert [s.first for s in list_segments(tmp_path / STREAM)][: len(segments)] == [
        s.first for s in segments
    ]
    assert (tmp_path / STREAM / (following.name + ".torn")).read_bytes() == b'{"seq":41,"pr'
    assert_verifies(tmp_path)


async def test_pruning_leaves_a_tombstone_and_still_verifies(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"segment_max_bytes": 4096, "checkpoint_interval": 60}
    async with writer(tmp_path, **settings) as w:
        for i in range(200):
            await w.submit_wait(request(i))
        await w.flush()
        before = list_segments(tmp_path / STREAM)
        result = await w.prune(100)
        assert result.pruned_first == 1
        assert result.pruned_last is not None and result.pruned_last < 100
        after = list_segments(tmp_path / STREAM)
        assert [s.name for s in before if s not in after] == list(result.removed)
        assert after[0].first == result.pruned_last + 1
        w.submit(request(200))
    report = verify(tmp_path, RING, strict=True)
    assert report.ok, render_report(report)
    assert report.streams[0].pruned_last == result.pruned_last
    assert report.streams[0].first_seq == result.pruned_last + 1
    tombstone = next(r for r in records(tmp_path) if r["kind"] == "tombstone")
    assert tombstone["pruned_last"] == result.pruned_last
    assert tombstone["checkpoint"]["last"] == result.pruned_last
    # a second prune, offline, cumulative from the stream's first record
    again = await prune(tmp_path, STREAM, 180, KEY, WriterSettings(**settings))
    assert again.pruned_first == 1 and again.pruned_last is not None
    assert again.pruned_last > result.pruned_last
    assert_verifies(tmp_path)
    assert await prune(tmp_path, STREAM, 1, KEY) == type(again)()  # nothing to prune

    # deleting more and pointing pruned.json at a later checkpoint is found
    stream = tmp_path / STREAM
    victim, following = list_segments(stream)[:2]
    closing = victim.path.read_bytes().splitlines()[-1]
    pruned = orjson.loads((stream / "pruned.json").read_bytes())
    pruned.update(pruned_last=following.first - 1, checkpoint_line=closing.decode())
    (stream / "pruned.json").write_bytes(orjson.dumps(pruned))
    victim.path.unlink()
    problem = verify(tmp_path, RING).streams[0].problem
    assert problem is not None
    assert (problem.seq, problem.reason) == (again.pruned_last + 1, Reason.SEGMENT_MISSING)


async def test_an_interrupted_prune_is_finished_at_start(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"segment_max_bytes": 4096, "checkpoint_interval": 60}
    async with writer(tmp_path, **settings) as w:
        for i in range(100):
            await w.submit_wait(request(i))
        result = await w.prune(60)
    # as if the process died before deleting: the files come back
    stream = tmp_path / STREAM
    assert result.pruned_last is not None
    (stream / segment_name(1)).write_bytes(b'{"not":"checked"}\n')
    report = verify(tmp_path, RING)
    assert report.ok and report.streams[0].notes
    async with writer(tmp_path, **settings):
        pass
    assert not (stream / segment_name(1)).exists()
    assert_verifies(tmp_path)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from audit.keys import Signer
    from audit.writer import Writer, WriterSettings

    async def main():
        signer = Signer.from_pem(open(sys.argv[2]).read())
        settings = WriterSettings(
            capacity=2000, batch_window=0.01, segment_max_bytes=256 * 1024,
            checkpoint_interval=0.05,
        )
        writer = Writer(sys.argv[1], "worker-0", signer, settings)
        await writer.start()
        i, durable = 0, -1
        while True:
            for _ in range(20):
                if writer.submit({"kind": "request", "i": i, "pad": "x" * 300}):
                    i += 1
            await asyncio.sleep(0.0005)
            stats = writer.stats()
            if stats.durable_seq != durable:
                durable = stats.durable_seq
                print(durable, i, flush=True)

    asyncio.run(main())
    """
)


def test_kill_9_loses_at_most_one_batch_and_still_verifies(tmp_path: Path) -> None:
    """A real SIGKILL while records flow: every record the child saw durable is on
    disk, a new writer recovers the directory, and it verifies."""
    key_file, public_file = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_keypair(key_file, public_file)
    signer = Signer.from_pem(key_file.read_text())
    ring = KeyRing.from_files([public_file])
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(directory), str(key_file)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert child.stdout is not None
    durable = submitted = 0
    try:
        for raw in child.stdout:
            durable, submitted = map(int, raw.split())
            if durable >= 3000:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert durable >= 3000

    async def recover() -> None:
        async with Writer(directory, STREAM, signer):
            pass

    asyncio.run(recover())
    report = verify(directory, ring, strict=True)
    assert report.ok, render_report(report)
    requests = [r for r in records(directory) if r["kind"] == "request"]
    # gapless: record i is seq i + 1
    assert [r["i"] for r in requests] == list(range(len(requests)))
    assert len(requests) >= durable
    # what was lost was in the queue or the batch in flight: at most one queue and
    # one batch, bounded by what was accepted after the last durable report
    assert submitted - len(requests) <= 2 * 2000
    assert len(list_segments(directory / STREAM)) > 3
