"""Nothing touches the network at import or start-up, and tokens count offline."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import ipaddress, os, sys
attempts = []

def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
        host = args[1][0] if event == "socket.connect" and isinstance(args[1], tuple) else (
            args[0] if event == "socket.getaddrinfo" else None)
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or not isinstance(host, str):
            return
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            if host == "localhost":
                return
        attempts.append((event, host))
        raise OSError(f"network disabled in this test: {event} {host}")

sys.addaudithook(audit)
os.environ.pop("TIKTOKEN_CACHE_DIR", None)

import asyncio, httpx
from gateway.app import create_app
from gateway.config import load_config

async def main():
    app = create_app(load_config(None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            r = await client.post("/v1/chat/completions", json={
                "model": "demo", "messages": [{"role": "user", "content": "count me"}]})
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["prompt_tokens"] > 0
asyncio.run(main())
assert not attempts, attempts
assert "litellm" not in sys.modules, "litellm imported without a litellm deployment"
print("offline-ok")
"""


def test_startup_and_first_request_need_no_network() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "offline-ok" in result.stdout
