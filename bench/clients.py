"""CPU per upstream request: seawall's HTTP/1.1 pool (routing/http1.py) against
aiohttp's client session, configured as the gateway configured it before.

Both POST the same chat body to `bench/upstream.py` (another process) from one
process, one request at a time and 32 at a time, and read the whole answer; the
figure is this process's CPU time (`time.process_time`) per request, so the
upstream's work is not in it. The rounds interleave the two clients.

    .venv/bin/python bench/clients.py [--requests 5000] [--rounds 3]

Needs aiohttp (a dev dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import uvloop
from checks import Endpoint, prompt_of, wait_ready
from processes import free_port, spawn
from upstream import MODEL

from routing.http1 import Http1Pool, Timeouts, request_head

PATH = "/v1/chat/completions"


async def measure(port: int, requests: int, rounds: int) -> dict[str, list[float]]:
    import aiohttp
    import yarl

    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt_of(0)}]})
    host = f"127.0.0.1:{port}"
    pool = Http1Pool()
    origin = ("http", "127.0.0.1", port)
    headers = [(b"host", host.encode()), (b"content-type", b"application/json")]
    head = request_head(b"POST", PATH.encode(), [*headers, (b"content-length", b"%d" % len(body))])
    timeouts = Timeouts(5.0, 30.0, 5.0)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30.0),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    url = yarl.URL(f"http://{host}{PATH}", encoded=True)
    aio_headers = [("host", host), ("content-type", "application/json")]
    aio_timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30, connect=5)

    async def lean() -> None:
        response = await pool.request(origin, head, body, timeouts, decode=True)
        answer = await response.read()
        await response.close()
        assert response.status == 200 and answer

    async def aio() -> None:
        response = await session.request(
            "POST",
            url,
            headers=[*aio_headers, ("content-length", str(len(body)))],
            data=body,
            allow_redirects=False,
            timeout=aio_timeout,
            auto_decompress=True,
        )
        answer = await response.read()
        response.release()
        assert response.status == 200 and answer

    def concurrent(one: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def batch() -> None:
            await asyncio.gather(*(one() for _ in range(32)))

        return batch

    cases: list[tuple[str, Callable[[], Awaitable[None]], int]] = [
        ("routing.http1, c=1", lean, 1),
        ("aiohttp session, c=1", aio, 1),
        ("routing.http1, c=32", concurrent(lean), 32),
        ("aiohttp session, c=32", concurrent(aio), 32),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(rounds):
        for name, call, per_call in cases:
            for _ in range(max(1, 300 // per_call)):
                await call()
            start = time.process_time()
            for _ in range(requests // per_call):
                await call()
            results[name].append((time.process_time() - start) / requests * 1e6)
    await session.close()
    await pool.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    folder = Path(tempfile.mkdtemp())
    argv = [sys.executable, str(Path(__file__).parent / "upstream.py"), "--port", str(port)]
    with spawn("upstream", argv, folder, folder) as upstream:
        wait_ready(
            Endpoint(f"http://127.0.0.1:{port}{PATH}", "sk-bench", MODEL, prompt_of(0)),
            False,
            upstream,
            timeout_s=30,
        )
        results = uvloop.run(measure(port, args.requests, args.rounds))
    print("| client | CPU µs per request (rounds) | median |")
    print("|---|---|---|")
    for name, values in results.items():
        rounds = " / ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {rounds} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
