"""Instructions per MCP `tools/call` through the gateway's `/mcp`, counted by valgrind.

    .venv/bin/python bench/mcp_instructions.py

bench/mcp_calls.py times `tools/call` against the tool server called directly; on a
shared machine its CPU time per call moves by +-20% between runs, which hides the
effect of a change to the `/mcp` path. This counts the instructions the gateway
executes per call instead, as bench/instructions.py does for chat requests: the
gateway app runs in-process (its ASGI interface called directly), against the same
FastMCP tool server as bench/mcp_calls.py (`add(a, b) -> {"sum": a + b}`, with an
output schema, over Streamable HTTP) in another process; one MCP session is opened
(`initialize`, `notifications/initialized`), then N `tools/call`s are sent, each
checked (status 200, the sum in the result, receipts in `_meta`). Two runs of
different lengths are subtracted, so start-up cancels out:

    instructions/call = (count(N2) - count(N1)) / (N2 - N1)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from instructions import ASGI_CALL, LONG, REPO, SHORT, count_instructions
from mcp_calls import TOKEN, TOOL, gateway_config
from processes import free_port, spawn

DRIVER = (
    r"""
import asyncio, os, sys
import orjson, uvloop
from gateway.app import create_app
from gateway.config import load_config

HEADERS = [(b"host", b"gw"), (b"content-type", b"application/json"),
           (b"accept", b"application/json, text/event-stream"),
           (b"authorization", os.environ["BENCH_AUTH"].encode())]
"""
    + ASGI_CALL
    + r"""
async def post(app, message, extra=()):
    body = orjson.dumps(message)
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/mcp",
        "raw_path": b"/mcp", "query_string": b"", "root_path": "",
        "headers": HEADERS + [(b"content-length", str(len(body)).encode())] + list(extra),
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }
    start, answer = await call(app, scope, body, read=True)
    return start["status"], dict(start["headers"]), answer

async def main(count):
    app = create_app(load_config(os.environ["BENCH_CONFIG"]))
    async with app.router.lifespan_context(app):
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}
        status, headers, body = await post(app, init)
        assert status == 200, (status, body)
        session = [(b"mcp-session-id", headers[b"mcp-session-id"]),
                   (b"mcp-protocol-version", b"2025-11-25")]
        status, _, _ = await post(app, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                  session)
        assert status == 202, status
        for n in range(1, count + 1):
            call = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": os.environ["BENCH_TOOL"], "arguments": {"a": n, "b": 1}}}
            status, _, body = await post(app, call, session)
            reply = orjson.loads(body)
            assert status == 200 and reply["id"] == n, (status, body)
            result = reply["result"]
            assert result["structuredContent"] == {"sum": n + 1}, result
            assert "_meta" in result, result

uvloop.run(main(int(sys.argv[1])))
"""
)


def wait_listening(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the tool server never listened on port {port}")


def main() -> int:
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "valgrind"], check=True)
    port = free_port()
    tool = [sys.executable, str(Path(__file__).with_name("mcp_calls.py")), "--serve-tool",
            str(port)]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with spawn("tool-server", tool, folder, folder):
            wait_listening(port)
            config = folder / "seawall.yaml"
            config.write_text(yaml.safe_dump(gateway_config(f"http://127.0.0.1:{port}/mcp")))
            env = {
                **os.environ,
                "BENCH_CONFIG": str(config),
                "BENCH_AUTH": f"Bearer {TOKEN}",
                "BENCH_TOOL": TOOL,
                "PYTHONPATH": str(REPO),
            }
            short = count_instructions(SHORT, env, DRIVER)
            long = count_instructions(LONG, env, DRIVER)
    per_call = (long - short) / (LONG - SHORT)
    print(
        f"{per_call:,.0f} instructions per MCP tools/call through /mcp (arguments and "
        f"result checked, receipts signed; valgrind; {SHORT} vs {LONG} calls)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
