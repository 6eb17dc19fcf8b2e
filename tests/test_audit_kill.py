"""`kill -9` of a gateway writing its audit log under load: nothing on disk is lost
or broken beyond one batch window.

A real `seawall serve` process takes an open-loop 300 requests/s and is killed with
SIGKILL mid-load. A new process on the same directory recovers the stream (a torn
last line is set aside and the recovery recorded in the chain) and serves; once it
has stopped, the log verifies with the public key alone, and every request answered
before the kill is recorded, except those answered in the last batch window (plus
the fsync's own time) before it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit.keys import KeyRing, generate_keypair
from audit.verify import verify
from tests.support import SeawallProcess, write_config

RATE = 300  # requests a second, open loop
WINDOW_MS = 50
#: What an fsync of one batch may take on a loaded shared machine, on top of the window.
FSYNC_SLACK_S = 0.25
BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


async def load(url: str, seconds: float, answered: dict[str, float]) -> None:
    """`RATE` requests a second for `seconds`, each on its own; the answered ones'
    request ids with when their answers arrived."""
    async with httpx.AsyncClient(
        base_url=url, timeout=5, limits=httpx.Limits(max_connections=64)
    ) as client:

        async def one() -> None:
            try:
                response = await client.post("/v1/chat/completions", json=BODY)
            except httpx.HTTPError:
                return  # the gateway was killed under it
            if response.status_code == 200:
                answered[response.headers["x-seawall-request-id"]] = time.monotonic()

        tasks = []
        start = time.monotonic()
        for n in range(int(RATE * seconds)):
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)


def audited(
    tmp_path: Path, stream: str, server: dict[str, Any] | None = None, **audit: int
) -> tuple[Path, Path, Path]:
    """A config file of one mock deployment with the audit log on (a new key pair),
    and `server` settings if given: the file, the log directory and the public key."""
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_keypair(private, public)
    directory = tmp_path / "log"
    models = [{"name": "demo", "deployments": [{"id": "m", "provider": "mock", "model": "m"}]}]
    section = {
        "enabled": True,
        "directory": str(directory),
        "stream": stream,
        "signing_key_file": str(private),
        **audit,
    }
    document: dict[str, Any] = {"models": models, "audit": section}
    if server is not None:
        document["server"] = server
    config = write_config(tmp_path / "seawall.yaml", document)
    return config, directory, public


def recorded_ids(directory: Path) -> list[str]:
    ids = []
    for segment in sorted(directory.glob("*/*.jsonl")):
        for line in segment.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line set aside by recovery is not in a segment
            if record.get("kind") == "request":
                ids.append(record["request_id"])
    return ids


@pytest.mark.serial
def test_kill_9_under_load_loses_at_most_one_batch_window(tmp_path: Path) -> None:
    config, directory, public = audited(tmp_path, "kill", batch_window_ms=WINDOW_MS)
    args = ["serve", "--config", str(config), "--port", "0", "--log-level", "warning"]
    first = SeawallProcess(args).start()
    answered: dict[str, float] = {}
    try:
        first.wait_ready()

        async def load_then_kill() -> float:
            loader = asyncio.create_task(load(first.url, 3.0, answered))
            await asyncio.sleep(2.0)
            assert first.proc is not None
            os.kill(first.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            await loader
            return killed

        killed_at = asyncio.run(load_then_kill())
    finally:
        first.stop()
    assert len(answered) > RATE  # the load really ran before the kill

    second = SeawallProcess(args).start()
    try:
        second.wait_ready()
        after = httpx.post(second.url + "/v1/chat/completions", json=BODY, timeout=5)
        assert after.status_code == 200
    finally:
        second.stop(drain=False)  # SIGTERM: the writer closes with a final checkpoint

    report = verify(directory, KeyRing.from_files([public]))
    assert report.ok, report
    recorded = set(recorded_ids(directory))
    assert after.headers["x-seawall-request-id"] in recorded
    lost = {rid: at for rid, at in answered.items() if rid not in recorded}
    bound = WINDOW_MS / 1000 + FSYNC_SLACK_S
    assert all(at >= killed_at - bound for at in lost.values()), sorted(
        killed_at - at for at in lost.values()
    )
    assert len(lost) <= RATE * bound


def test_each_worker_writes_a_chain_of_its_own(tmp_path: Path) -> None:
    """`--workers 2`: two streams (`<stream>-w0`, `-w1`), each verifiable alone, and
    together holding every request served. No drain on SIGTERM (`drain_s: 0`): a
    supervisor does not end one early, and the writers close the same way after it."""
    config, directory, public = audited(tmp_path, "pod", server={"drain_s": 0})
    args = ["serve", "--config", str(config), "--port", "0", "--workers", "2"]
    server = SeawallProcess([*args, "--log-level", "warning"]).start()
    served: set[str] = set()
    try:
        server.wait_ready()
        for _ in range(40):  # fresh connections: the kernel spreads them over both
            answer = httpx.post(server.url + "/v1/chat/completions", json=BODY, timeout=5)
            assert answer.status_code == 200
            served.add(answer.headers["x-seawall-request-id"])
    finally:
        server.stop()
    streams = sorted(p.name for p in directory.iterdir() if p.is_dir())
    assert streams == ["pod-w0", "pod-w1"]
    for stream in streams:
        assert verify(directory, KeyRing.from_files([public]), streams=[stream]).ok
    assert set(recorded_ids(directory)) == served
