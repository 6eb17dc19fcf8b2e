"""An httpx transport that runs on aiohttp's connection pool.

httpx stays the client API (its Request/Response types, transport stacking for the
chaos layer, OpenTelemetry's httpx instrumentation), but its own pool (httpcore) is
the bottleneck at concurrency. Measured on the project machine (Starlette proxy,
nginx upstream, one worker): httpcore 1,159 RPS at c=32; httpx-aiohttp 4,144;
this transport called directly 6,184; raw aiohttp 7,863. See docs/performance.md.

Like any httpx transport it returns the body undecoded; the caller decodes per
`content-encoding` (httpx does it in `Response.aread`).

A provider whose deployment's transport is the bare pool (`SharedTransport`: no chaos
layer, no tracing) skips httpx's objects altogether and calls `AiohttpTransport.post`:
an `httpx.Request` and `httpx.Response` per request cost ~20 us that only the layers
stacked on the httpx interface need (docs/performance.md, "The plain path"). Failures
are raised as the same httpx exceptions either way, so the provider classifies them
in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import httpx
import yarl

#: aiohttp exception -> the httpx exception a native httpx transport would raise.
#: Order matters: the first isinstance match wins, most specific first.
_EXCEPTION_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.TransportError),
)


def map_exception(exc: BaseException, request: httpx.Request | None) -> httpx.TransportError:
    for source, target in _EXCEPTION_MAP:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__, request=request)
    if isinstance(exc, asyncio.TimeoutError):
        return httpx.ReadTimeout("timed out", request=request)
    return httpx.TransportError(str(exc), request=request)


async def response_chunks(
    response: aiohttp.ClientResponse, request: httpx.Request | None = None
) -> AsyncIterator[bytes]:
    """The body of `response` in the chunks it arrives in; failures as httpx's."""
    content = response.content
    try:
        while True:
            chunk = await content.readany()
            if not chunk:
                return
            yield chunk
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise map_exception(exc, request) from exc


async def read_response(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of `response`; failures as httpx's."""
    try:
        return await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise map_exception(exc, None) from exc


class AiohttpResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise map_exception(exc, self._request) from exc

    async def aclose(self) -> None:
        # release() keeps the connection for reuse only if the body was fully read;
        # otherwise it closes it, which also tells the provider to stop generating.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled keep-alive connection set, shared by the deployments of one origin."""

    def __init__(self, *, max_connections: int = 1000, keepalive_seconds: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        """Create the session inside the running loop (aiohttp requires it)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_seconds,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                # A proxy must never carry one caller's cookies into another's request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    def _url(self, url: httpx.URL) -> yarl.URL:
        key = str(url)
        cached = self._urls.get(key)
        if cached is None:
            cached = yarl.URL(key, encoded=True)
            if len(self._urls) < 1024:
                self._urls[key] = cached
        return cached

    def _timeout(self, spec: dict[str, float | None]) -> aiohttp.ClientTimeout:
        return self.timeout(spec.get("connect"), spec.get("read"), spec.get("pool"))

    def timeout(
        self, connect: float | None, read: float | None, pool: float | None
    ) -> aiohttp.ClientTimeout:
        """httpx's timeouts as aiohttp's (one object per distinct set, reused)."""
        key = (connect, read, pool)
        cached = self._timeouts.get(key)
        if cached is None:
            cached = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, sock_read=read, connect=pool
            )
            self._timeouts[key] = cached
        return cached

    async def post(
        self,
        url: yarl.URL,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """POSTs `body` on the pool, with no httpx object on the way: the response as
        aiohttp's, its body decoded per `content-encoding` as httpx would; failures as
        the httpx exceptions `handle_async_request` raises. The caller releases it."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            return await self._session.request(
                "POST",
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=timeouts,
                auto_decompress=True,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise map_exception(exc, None) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            data: bytes | None = b"".join(stream) or None  # the body is in memory
        else:
            data = await request.aread() or None
        try:
            response = await self._session.request(
                request.method,
                self._url(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise map_exception(exc, request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=AiohttpResponseStream(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SharedTransport(httpx.AsyncBaseTransport):
    """A per-deployment handle on a shared pool; closing it leaves the pool open."""

    def __init__(self, pool: AiohttpTransport) -> None:
        self.pool = pool

    async def start(self) -> None:
        await self.pool.start()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


async def start_transport(transport: httpx.AsyncBaseTransport) -> None:
    """Start a transport stack that needs it (aiohttp sessions live in the loop)."""
    start = getattr(transport, "start", None)
    if start is not None:
        await start()
