"""MCP `tools/call` through the gateway's `/mcp` against the same server called directly.

    .venv/bin/python bench/mcp_calls.py [--seconds 4] [--rounds 3]

Starts a FastMCP server over Streamable HTTP (JSON answers) with one trivial tool that
has an output schema, `add(a, b) -> {"sum": a + b}`, in its own process on a free
loopback port, and `seawall serve` (one worker) with that server configured as `calc`
(`transport: http`), one key with the `tools` role whose tenant may use `calc__add`, and
a receipt key: the gateway checks the arguments against the tool's `inputSchema` and the
result against its `outputSchema`, signs the result (receipts in `_meta`) and records it
in the key's ledger, as it does for every call (`--ledger redis`: in a `redis-server`
this starts, `mcp.ledger.store`, one more round trip per call).

For both targets (the server's own URL, the gateway's `/mcp`) it opens one MCP session
(`initialize`, then `notifications/initialized`; the `Mcp-Session-Id` and
`MCP-Protocol-Version` headers on every later request), then sends raw JSON-RPC
`tools/call` POSTs with one aiohttp client session: each answer (JSON or an SSE stream)
is parsed and checked, the sum must be right, and through the gateway the result must
carry its receipts. In `--rounds` rounds (the targets' order alternating between rounds,
so the machine's drift falls on both alike), each target is measured at c=1 for
`--seconds` (the median latency, p50) and at c=16 for `--seconds` (completed calls per
second). Before the first round each target is warmed up at c=16 for one second.

Prints a markdown table: per target the median of the rounds' c=1 p50 and each round's
c=16 calls/s; the gateway's added p50 (the median of the per-round differences) and its
share of the direct calls/s (the median of the per-round ratios), against the goals
(<= 0.5 ms added, >= 0.7x); then the CPU the gateway, the tool server, this client and
everything else on the machine used during the measurement, in % of one core, and the
CPU time per call of the first three (a figure the machine's other load disturbs less
than the wall-clock ones). Client, gateway and server share the machine's cores, so the
client's own cost is in both targets' numbers. Progress goes to stderr; exit status 1 if
a call came back wrong. Needs nothing outside the project's dev environment (fastmcp,
aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from processes import busy_pct, free_port, machine_busy_s, redis_server, spawn, tree_cpu_s
from pydantic import BaseModel

TOKEN = "bench-mcp-key"
PROTOCOL = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
SERVER = "calc"
TOOL = f"{SERVER}__add"
READY_TIMEOUT_S = 60
BUSY_CONCURRENCY = 16
GOAL_ADDED_MS = 0.5
GOAL_RATIO = 0.7


# -- the tool server (this script run with --serve-tool PORT) ---------------------------


class Sum(BaseModel):  # `add`'s result: FastMCP derives the tool's outputSchema from it
    sum: int


def serve_tool(port: int) -> None:
    from fastmcp import FastMCP

    server = FastMCP(SERVER)

    @server.tool
    def add(a: int, b: int) -> Sum:
        """Adds two integers."""
        return Sum(sum=a + b)

    server.run(
        "http",
        host="127.0.0.1",
        port=port,
        show_banner=False,
        json_response=True,
        log_level="warning",
    )


# -- the client ----------------------------------------------------------------------


class WrongAnswer(RuntimeError):
    """A call that did not come back as it must: the run stops, nothing is measured."""


def parse_answer(content_type: str, body: bytes) -> dict[str, Any]:
    """The JSON-RPC response in a JSON body or in an SSE stream (its last `data:` message
    that is a response, i.e. has an `id`)."""
    if content_type.startswith("application/json"):
        message: dict[str, Any] = orjson.loads(body)
        return message
    if content_type.startswith("text/event-stream"):
        found: dict[str, Any] | None = None
        for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
            data = b"\n".join(
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            )
            if data:
                candidate = orjson.loads(data)
                if isinstance(candidate, dict) and "id" in candidate:
                    found = candidate
        if found is not None:
            return found
    raise WrongAnswer(f"no JSON-RPC response in a {content_type!r} answer: {body[:300]!r}")


@dataclass
class Target:
    name: str
    url: str
    receipts: bool  # the gateway's results must carry receipts
    headers: dict[str, str] = field(default_factory=dict)
    p50_ms: list[float] = field(default_factory=list)
    calls_per_s: list[float] = field(default_factory=list)
    calls: int = 0  # every correct `tools/call`, warm-up included (for CPU per call)


class Caller:
    """One aiohttp session for all targets; each call gets its own id and arguments."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.ids: Iterator[int] = itertools.count(1)

    async def post(
        self, target: Target, message: dict[str, Any], session: bool = True
    ) -> aiohttp.ClientResponse:
        headers = {"accept": ACCEPT, "content-type": "application/json"}
        if target.receipts:
            headers["authorization"] = f"Bearer {TOKEN}"
        if session:
            headers.update(target.headers)
        return await self.http.post(target.url, data=orjson.dumps(message), headers=headers)

    async def open_session(self, target: Target) -> None:
        init = {
            "jsonrpc": "2.0",
            "id": next(self.ids),
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "seawall-bench", "version": "1"},
            },
        }
        async with await self.post(target, init, session=False) as answer:
            body = await answer.read()
            if answer.status != 200:
                raise WrongAnswer(f"{target.name}: initialize: HTTP {answer.status}: {body!r}")
            reply = parse_answer(answer.headers.get("content-type", ""), body)
            result = reply.get("result")
            if not isinstance(result, dict) or "protocolVersion" not in result:
                raise WrongAnswer(f"{target.name}: initialize answered {reply}")
            version = str(result["protocolVersion"])
            session_id = answer.headers.get("mcp-session-id")
        if session_id is None:
            raise WrongAnswer(f"{target.name}: initialize answered no Mcp-Session-Id")
        target.headers = {"mcp-session-id": session_id, "mcp-protocol-version": version}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with await self.post(target, note) as answer:
            if answer.status != 202:
                raise WrongAnswer(f"{target.name}: notifications/initialized: HTTP {answer.status}")

    async def call(self, target: Target) -> None:
        """One `tools/call add`, checked: status, id, the sum, and receipts where due."""
        number = next(self.ids)
        a, b = number % 1000, number % 997
        name = TOOL if target.receipts else "add"
        message = {
            "jsonrpc": "2.0",
            "id": number,
            "method": "tools/call",
            "params": {"name": name, "arguments": {"a": a, "b": b}},
        }
        async with await self.post(target, message) as answer:
            body = await answer.read()
            if answer.status != 200:
                raise WrongAnswer(f"{target.name}: HTTP {answer.status}: {body[:300]!r}")
            reply = parse_answer(answer.headers.get("content-type", ""), body)
        result = reply.get("result")
        if reply.get("id") != number or not isinstance(result, dict) or result.get("isError"):
            raise WrongAnswer(f"{target.name}: not the result of call {number}: {reply}")
        if result.get("structuredContent") != {"sum": a + b}:
            raise WrongAnswer(f"{target.name}: {a} + {b} came back as {result}")
        if target.receipts:
            meta = result.get("_meta") or {}
            if not meta.get("seawall_receipt") or not meta.get("seawall_receipt_structured"):
                raise WrongAnswer(f"{target.name}: a result without its receipts: {result}")
        target.calls += 1


async def calm(caller: Caller, target: Target, seconds: float) -> float:
    """c=1 for `seconds`: the median latency in ms."""
    latencies = []
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        await caller.call(target)
        end = time.perf_counter()
        latencies.append(end - start)
        if end >= deadline:
            return 1000 * statistics.median(latencies)


async def busy(caller: Caller, target: Target, seconds: float) -> float:
    """c=16 for `seconds`: completed calls per second (every worker finishes its last
    call; the elapsed time runs to the last one)."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await caller.call(target)
            done += 1

    await asyncio.gather(*(worker() for _ in range(BUSY_CONCURRENCY)))
    return done / (time.perf_counter() - start)


async def ready(caller: Caller, target: Target) -> None:
    """A session and one correct call, retried until READY_TIMEOUT_S: the gateway may
    listen before its upstream connection is up."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            await caller.open_session(target)
            await caller.call(target)
            return
        except (WrongAnswer, aiohttp.ClientError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def measure(targets: list[Target], seconds: float, rounds: int) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        caller = Caller(http)
        for target in targets:
            await ready(caller, target)
            await busy(caller, target, 1.0)
        for number in range(rounds):
            order = targets if number % 2 == 0 else targets[::-1]
            for target in order:
                target.p50_ms.append(await calm(caller, target, seconds))
                target.calls_per_s.append(await busy(caller, target, seconds))
            print(
                f"round {number + 1}: "
                + ", ".join(
                    f"{t.name} {t.p50_ms[-1]:.2f} ms / {t.calls_per_s[-1]:.0f} calls/s"
                    for t in targets
                ),
                file=sys.stderr,
            )


# -- servers -------------------------------------------------------------------------


def gateway_config(server_url: str, ledger: str = "memory") -> dict[str, Any]:
    return {
        # The gateway wants one model group; this run sends it no model request.
        "models": [
            {"name": "demo", "deployments": [{"id": "m", "provider": "mock", "model": "m"}]}
        ],
        "tenants": [{"id": "bench", "allow": {"tools": [TOOL]}}],
        "keys": [
            {
                "id": "bench",
                "key_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                "tenant": "bench",
                "roles": ["tools"],
            }
        ],
        "receipts": {"keys": [{"id": "k1", "secret": "bench-receipt-secret-0123456789abcdef"}]},
        "mcp": {
            "servers": [{"name": SERVER, "transport": "http", "url": server_url}],
            "ledger": {"store": ledger},
        },
    }


def wait_listening(port: int, name: str, process: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name}: nothing listened on port {port} within {READY_TIMEOUT_S} s")


def table(
    direct: Target,
    gateway: Target,
    seconds: float,
    busy_before: float,
    cpu: dict[str, float],
    elapsed: float,
) -> str:
    added = statistics.median(g - d for g, d in zip(gateway.p50_ms, direct.p50_ms, strict=True))
    ratio = statistics.median(
        g / d for g, d in zip(gateway.calls_per_s, direct.calls_per_s, strict=True)
    )
    rounds = len(direct.p50_ms)

    def per_round(target: Target) -> str:
        return " / ".join(f"{value:,.0f}" for value in target.calls_per_s)

    shares = ", ".join(f"{name} {100 * used / elapsed:.0f}%" for name, used in cpu.items())
    # Every call reaches the tool server; only the gateway's pass through the gateway.
    calls = direct.calls + gateway.calls
    per_call = (
        f"gateway {1000 * cpu['gateway'] / gateway.calls:.2f} ms per call through it,"
        f" tool server {1000 * cpu['tool server'] / calls:.2f} ms,"
        f" client {1000 * cpu['client'] / calls:.2f} ms"
    )
    lines = [
        "| | direct | through `/mcp` | gateway vs direct | goal | met |",
        "|---|---|---|---|---|---|",
        f"| `tools/call`, c=1, p50 (median of rounds) | {statistics.median(direct.p50_ms):.2f} ms"
        f" | {statistics.median(gateway.p50_ms):.2f} ms | +{added:.2f} ms"
        f" | <= +{GOAL_ADDED_MS} ms | {'yes' if added <= GOAL_ADDED_MS else 'no'} |",
        f"| `tools/call`, c={BUSY_CONCURRENCY}, calls/s (rounds) | {per_round(direct)}"
        f" | {per_round(gateway)} | {ratio:.2f}x | >= {GOAL_RATIO}x"
        f" | {'yes' if ratio >= GOAL_RATIO else 'no'} |",
        "",
        f"{rounds} rounds, {seconds:g} s at c=1 and {seconds:g} s at c={BUSY_CONCURRENCY}"
        " per target per round; added p50: median of the per-round differences; calls/s"
        " ratio: median of the per-round ratios. c=1 p50 per round (ms): direct "
        + " / ".join(f"{v:.2f}" for v in direct.p50_ms)
        + ", through `/mcp` "
        + " / ".join(f"{v:.2f}" for v in gateway.p50_ms)
        + f". CPU during the run, in % of one core ({os.cpu_count()} cores): {shares}"
        f" (the machine was {busy_before:.0f}% busy just before it); CPU time per call:"
        f" {per_call}.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4, help="per target, per c, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ledger",
        choices=["memory", "redis"],
        default="memory",
        help="where the gateway records results (redis: a redis-server this starts)",
    )
    parser.add_argument("--serve-tool", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_tool is not None:
        serve_tool(args.serve_tool)
        return 0
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds and --seconds must be positive")
    busy_before = busy_pct()
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)
        tool_port, gateway_port = free_port(), free_port()
        tool_argv = [sys.executable, str(Path(__file__).resolve()), "--serve-tool", str(tool_port)]
        tool = stack.enter_context(spawn("tool-server", tool_argv, folder, folder))
        wait_listening(tool_port, "the tool server", tool.process)
        server_url = f"http://127.0.0.1:{tool_port}/mcp"
        config = folder / "seawall.yaml"
        ledger = stack.enter_context(redis_server()) if args.ledger == "redis" else "memory"
        config.write_text(yaml.safe_dump(gateway_config(server_url, ledger)))
        gateway_argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config),
                        "--port", str(gateway_port), "--log-level", "warning"]  # fmt: skip
        gateway = stack.enter_context(spawn("seawall", gateway_argv, folder, folder))
        wait_listening(gateway_port, "seawall", gateway.process)
        direct = Target("direct", server_url, receipts=False)
        through = Target("gateway", f"http://127.0.0.1:{gateway_port}/mcp", receipts=True)
        # The client is this process alone (its servers are its children): process_time.
        pids = {"gateway": gateway.pid, "tool server": tool.pid}
        before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
        client_before = time.process_time()
        machine_before, started = machine_busy_s(), time.monotonic()
        try:
            run_measure(direct, through, args.seconds, args.rounds)
        except (WrongAnswer, aiohttp.ClientError, TimeoutError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            for spawned in (tool, gateway):
                print(f"--- {spawned.name} log ---\n{spawned.log_tail()}", file=sys.stderr)
            return 1
        elapsed = time.monotonic() - started
        cpu = {name: tree_cpu_s(pid) - before[name] for name, pid in pids.items()}
        cpu["client"] = time.process_time() - client_before
        # Clock ticks: a quiet machine can come out a hair below zero.
        cpu["other"] = max(0.0, machine_busy_s() - machine_before - sum(cpu.values()))
    print(table(direct, through, args.seconds, busy_before, cpu, elapsed))
    return 0


def run_measure(direct: Target, through: Target, seconds: float, rounds: int) -> None:
    try:
        import uvloop
    except ImportError:  # the client then runs on asyncio's own loop
        asyncio.run(measure([direct, through], seconds, rounds))
    else:
        uvloop.run(measure([direct, through], seconds, rounds))


if __name__ == "__main__":
    raise SystemExit(main())
