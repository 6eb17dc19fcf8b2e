"""An httpx transport on seawall's own HTTP/1.1 connection pool (routing/http1.py).

httpx stays the client API where it earns its place (its Request/Response types,
transport stacking for the chaos layer, OpenTelemetry's httpx instrumentation, the
MCP tool servers' client), but its own pool (httpcore) is the bottleneck at
concurrency, and so was aiohttp's session after it: measured on the project machine
(Starlette proxy, nginx upstream, one worker), httpcore 1,159 RPS at c=32, aiohttp
under this transport 6,184; per request in process, aiohttp's session used ~67 µs of
CPU at c=32 and `routing.http1` ~15 µs. See docs/performance.md.

Like any httpx transport it returns the body undecoded; the caller decodes per
`content-encoding` (httpx does it in `Response.aread`).

A provider whose deployment's transport is the bare pool (`SharedTransport`: no chaos
layer, no tracing) skips httpx's objects altogether and calls `PoolTransport.post`
with a request head it made once (docs/performance.md, "The plain path"). Failures
are the same httpx exceptions either way, so the provider classifies them in one
place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from routing.http1 import Http1Pool, Origin, Response, Timeouts, origin_of, request_head

#: Request headers the transport sets itself: the body is sent whole, with its length.
_FRAMING = (b"content-length", b"transfer-encoding")
_BODY_METHODS = ("POST", "PUT", "PATCH")


class PoolResponseStream(httpx.AsyncByteStream):
    """A pool response's body as httpx reads it; failures carry the request."""

    def __init__(self, response: Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response:
                yield chunk
        except httpx.RequestError as exc:
            exc.request = self._request
            raise

    async def aclose(self) -> None:
        # Releasing keeps the connection for reuse only if the body was read to its
        # end; otherwise it is closed, which also tells the provider to stop.
        self._response.release()


class PoolTransport(httpx.AsyncBaseTransport):
    """One keep-alive connection pool, shared by the deployments of one origin (or by
    every tool server's client)."""

    def __init__(self, *, max_connections: int = 1000, keepalive_seconds: float = 30.0) -> None:
        self.pool = Http1Pool(max_connections=max_connections, keepalive_seconds=keepalive_seconds)

    async def post(self, origin: Origin, head: bytes, body: bytes, timeouts: Timeouts) -> Response:
        """Sends a request on the pool with no httpx object on the way: `head` is a
        whole request head (`routing.http1.request_head`); the response's body is
        decoded per `content-encoding` as httpx would. The caller releases it."""
        return await self.pool.request(origin, head, body, timeouts, decode=True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)  # the body is in memory
        else:
            body = await request.aread()
        headers = [pair for pair in request.headers.raw if pair[0].lower() not in _FRAMING]
        if body or request.method in _BODY_METHODS:
            headers.append((b"content-length", str(len(body)).encode()))
        spec: dict[str, Any] = request.extensions.get("timeout", {})
        timeouts = Timeouts(spec.get("connect"), spec.get("read"), spec.get("pool"))
        try:
            head = request_head(request.method.encode(), request.url.raw_path, headers)
            response = await self.pool.request(origin_of(request.url), head, body, timeouts)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        except ValueError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from None
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=PoolResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class SharedTransport(httpx.AsyncBaseTransport):
    """A per-deployment handle on a shared pool; closing it leaves the pool open."""

    def __init__(self, pool: PoolTransport) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None
