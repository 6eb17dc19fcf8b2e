"""The Python floor: the least a Python proxy can do to relay a chat completion.

    python bench/floor.py --port 9001 --upstream http://127.0.0.1:9000

An aiohttp server with one shared aiohttp client session to the upstream. POST
/v1/chat/completions forwards the body bytes and the `authorization` header, relays
a JSON answer as it is, and relays a stream chunk by chunk as the chunks arrive. No
validation, no routing, no logging: whatever seawall costs above this is the price
of what it does, not of Python or of the event loop. It runs on uvloop, as seawall
does, so the two differ in their work and not in their loop.

Bench-only: aiohttp is not a seawall dependency (`pip install aiohttp`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence

import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

CHAT_PATH = "/v1/chat/completions"
#: Connections to the upstream that may be open at once; 0 would mean no limit, and
#: the benchmark's highest concurrency (32) stays well below this.
UPSTREAM_CONNECTIONS = 256
#: The whole request to the upstream, stream included: as long as wrk waits (30 s).
UPSTREAM_TIMEOUT_S = 30.0
#: Request headers relayed upstream: the caller's key, and the body's type.
FORWARDED_HEADERS = ("authorization", "content-type")
SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)
UPSTREAM_URL: web.AppKey[str] = web.AppKey("upstream_url", str)


async def relay(request: web.Request) -> web.StreamResponse:
    """Forward one chat completion; a stream is written on as each chunk arrives."""
    body = await request.read()
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    session = request.app[SESSION]
    async with session.post(request.app[UPSTREAM_URL], data=body, headers=headers) as upstream:
        content_type = upstream.headers.get("content-type", "application/json")
        if not content_type.startswith("text/event-stream"):
            answer = await upstream.read()
            return web.Response(
                body=answer, status=upstream.status, headers={"content-type": content_type}
            )
        response = web.StreamResponse(
            status=upstream.status,
            headers={"content-type": content_type, "cache-control": "no-cache"},
        )
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left (wrk at the end of a cell): nothing is left to relay
        return response


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """One client session for the server's life: its connection pool is the point."""
    connector = TCPConnector(limit=UPSTREAM_CONNECTIONS)
    timeout = ClientTimeout(total=UPSTREAM_TIMEOUT_S)
    async with ClientSession(connector=connector, timeout=timeout) as session:
        app[SESSION] = session
        yield


def make_app(upstream: str) -> web.Application:
    """`upstream` is the base URL up to and including `/v1`'s parent, e.g. http://host:port."""
    app = web.Application()
    app[UPSTREAM_URL] = upstream.rstrip("/") + CHAT_PATH
    app.cleanup_ctx.append(upstream_session)
    app.router.add_post(CHAT_PATH, relay)
    return app


async def serve(port: int, upstream: str) -> None:
    """Listen on loopback until cancelled (SIGTERM ends the process)."""
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9000")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
