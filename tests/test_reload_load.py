"""Reloading under load: a real `seawall serve` process, open-loop traffic (streams and
not), and the config changing all the while (weights, a deployment added and removed,
an invalid version in between).

Asserted: no request failed; every response names a version that was valid, and was
served by a deployment that version has (never a half-applied config); the invalid
versions never served; the process's memory is flat after the run.

Short form here (~12 s); `make reload-soak` runs the full form (500 req/s, 100
changes) with SEAWALL_RELOAD_FULL=1.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.sources import merge
from gateway.versions import documents_id
from tests.support import SeawallProcess, write_config

FULL = os.environ.get("SEAWALL_RELOAD_FULL") == "1"
RATE = 500 if FULL else 150  # requests per second, open loop
CHANGES = 100 if FULL else 30
INTERVAL = 0.25 if FULL else 0.3  # seconds between config changes
#: Allowed RSS growth over the run (retired runtimes must be freed).
RSS_GROWTH_MB = 25


def mock(name: str, weight: float) -> dict[str, Any]:
    return {
        "id": name,
        "provider": "mock",
        "model": "mock-gpt",
        "weight": weight,
        "mock": {"latency_ms": 2, "chunk_delay_ms": 1, "stream_chunks": 4},
    }


def config_number(n: int) -> dict[str, Any]:
    """Version n: distinct content every time (weights), sometimes a third deployment."""
    deployments = [mock("a", 1 + n % 3 + n / 1000), mock("b", 1 + (n + 1) % 2)]
    if n % 4 == 1:
        deployments.append(mock("extra", 2))
    return {"models": [{"name": "g", "deployments": deployments}]}


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert match
    return int(match.group(1)) / 1024


async def traffic(url: str, stop: asyncio.Event, results: list[tuple[int, str, str, str]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        pending: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            body = {"model": "g", "messages": [{"role": "user", "content": f"hi {n}"}]}
            if n % 3 == 0:
                body["stream"] = True
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    text = "".join([chunk async for chunk in r.aiter_text()])
                ok = r.status_code == 200 and text.rstrip().endswith("data: [DONE]")
            else:
                r = await client.post("/v1/chat/completions", json=body)
                ok = r.status_code == 200
            results.append(
                (
                    r.status_code if ok else -1,
                    r.headers.get("x-seawall-config-version", ""),
                    r.headers.get("x-seawall-deployment", ""),
                    "" if ok else r.text[:300],
                )
            )

        n = 0
        started = time.monotonic()
        while not stop.is_set():
            n += 1
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        await asyncio.gather(*pending)


async def changes(url: str, valid: dict[str, set[str]], refused: set[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for n in range(1, CHANGES + 1):
            await asyncio.sleep(INTERVAL)
            if n % 10 == 5:  # an invalid version in between
                text = yaml.safe_dump({"models": [{"name": "g", "deployments": []}]})
                reply = await client.put("/admin/config", content=text)
                assert reply.status_code == 400, reply.text
                refused.add(documents_id({"seawall.yaml": text}))
                continue
            config = config_number(n)
            text = yaml.safe_dump(config)
            reply = await client.put("/admin/config", content=text)
            assert reply.status_code == 200, reply.text
            ids = {d["id"] for g in config["models"] for d in g["deployments"]}
            valid[reply.json()["version"]["id"]] = ids


def test_reload_under_load_never_fails_a_request(tmp_path: Path) -> None:
    initial = config_number(0)
    path = write_config(tmp_path / "seawall.yaml", initial)
    process = SeawallProcess(
        ["serve", "--config", str(path), "--port", "0", "--log-level", "warning"]
    )
    process.start()
    try:
        assert process.proc is not None
        ready = process.wait_ready()
        url = process.url
        data, _ = merge({"seawall.yaml": path.read_text()})
        valid = {ready.json()["config_version"]: {"a", "b"}}
        refused: set[str] = set()
        results: list[tuple[int, str, str, str]] = []

        async def run() -> None:
            stop = asyncio.Event()
            load = asyncio.create_task(traffic(url, stop, results))
            await asyncio.sleep(1.0)  # warm up before the first change
            rss_before = rss_mb(process.proc.pid)  # type: ignore[union-attr]
            try:
                await changes(url, valid, refused)
            finally:
                stop.set()
                await load
            await asyncio.sleep(0.5)
            results.append((0, f"{rss_before}", "", ""))

        asyncio.run(run())
        rss_before = float(results.pop()[1])
        rss_after = rss_mb(process.proc.pid)
    finally:
        process.stop(drain=False)
    assert data == initial
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    # The load generator is Python on a shared machine: it may fall short of RATE,
    # but the traffic must be real and must span the changes.
    assert len(results) >= RATE * CHANGES * INTERVAL * 0.3
    for _, version, deployment, _ in results:
        assert version in valid, version
        assert version not in refused
        assert deployment in valid[version], (version, deployment)
    served = {version for _, version, _, _ in results}
    assert len(served) >= CHANGES // 2  # traffic really crossed the changes
    assert rss_after - rss_before < RSS_GROWTH_MB, (rss_before, rss_after)
