"""A lean HTTP/1.1 client: keep-alive connections on asyncio protocols, parsed by
httptools (llhttp), pooled per origin.

Why not aiohttp's client: a relay asks one thing of its client, to write a request
on a warm connection and hand back the response as it arrives, and aiohttp's
session wraps that in a request object, a response object, a multidict of headers,
a stream reader, timer handles and a connector round per request. Measured on the
project machine against `bench/upstream.py` (CPU per POST, in process): aiohttp's
session ~67 µs at c=32, ~130 µs one at a time; this client ~15 and ~30 µs
(docs/performance.md, "A lean HTTP/1.1 client").

What a request costs here: the head is written with the body in one `write` (the
caller builds the head, most often from a template made once per deployment); the
response head arrives on one future; body chunks go to a deque, and a reader takes
all that arrived since its last read at once, without awaiting while there is some.
Everything else is per connection, not per request.

Guarantees and limits (each a constant below):

- failures are httpx's exceptions (`ConnectError`, `ConnectTimeout`, `PoolTimeout`,
  `ReadTimeout`, `RemoteProtocolError`, `ReadError`, `DecodingError`,
  `UnsupportedProtocol`); a connect failure names the origin, for the operator's
  log (what a client is told never does: routing/outcomes.py), and none names a
  header;
- timeouts: connect (the TCP and TLS handshake), pool (waiting for a connection
  when `max_connections` are open), read (no byte from the upstream for that long,
  while the caller is waiting for one; a caller that stops reading pauses the
  socket, and that pause is not the upstream's silence);
- a response head of at most `MAX_HEADERS` fields and `MAX_HEAD_BYTES` bytes; a body
  read whole (`read`) of at most `MAX_BODY_BYTES`; a body read in chunks is held at
  most ~`HIGH_WATER` bytes ahead of its reader (the socket is paused beyond that);
- a connection is reused only after its response was read to the end with
  keep-alive, and not after `keepalive_seconds` idle; one idle longer than
  `QUIET_REUSE_S` is first asked whether the upstream closed it meanwhile (see
  there); a response released early closes its connection, which tells the
  upstream to stop generating;
- bodies are relayed as they come, or decoded (`decode=True`) for `gzip` and
  `deflate`; another content coding is refused when decoding is asked for;
- TLS for `https` origins with the system's trust store (or a context passed in),
  the host name checked.

Not here: HTTP/2, proxies, redirects, cookies, request bodies streamed from the
caller (a request body is bytes in memory; the gateway has read its client's body
whole before it forwards it) and retrying a request on a fresh connection when a
reused one turns out closed (a POST is not idempotent; the router's own retries and
fallbacks decide what to try again).
"""

from __future__ import annotations

import asyncio
import select
import ssl
import zlib
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import httptools
import httpx

#: A connection idle longer than this is polled before it is reused. Servers close
#: idle connections after a few seconds (uvicorn, so vLLM's server, and Node: 5 s;
#: gunicorn: 2 s); a close that reached the socket while the event loop was busy is
#: not known to the pool yet, and a request sent on that connection fails without
#: the upstream ever reading it (counted against the deployment, retried). A
#: connection reused sooner (under load, all of them) is not polled: no server
#: closes one that young.
QUIET_REUSE_S = 1.0

#: Header fields a response head may have.
MAX_HEADERS = 128
#: Bytes of the response's header names and values together.
MAX_HEAD_BYTES = 64 * 1024
#: Bytes a response body read whole (`Response.read`) may have, after decoding.
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Bytes of body held for a reader that reads it as it comes before the socket is
#: paused (it resumes when the reader takes what is held).
HIGH_WATER = 256 * 1024
#: Content codings `decode=True` undoes (the gateway asks for none: a compliant
#: upstream sends identity).
DECODED = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}

#: scheme, host, port.
Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Timeouts(NamedTuple):
    """Seconds, or None for no limit."""

    connect: float | None
    read: float | None
    pool: float | None


def origin_of(url: httpx.URL) -> Origin:
    """`url`'s scheme, host and port (the scheme's default when it names none)."""
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]


def request_head(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A whole request head, its blank line included (`head_lines`)."""
    return head_lines(method, target, headers) + b"\r\n"


def head_lines(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A request line and header lines, without the blank line that ends a head (a
    template a caller appends per-request headers to). Names and values with a line
    break or NUL would split the head (a request smuggled after it): refused."""
    if not _safe(method) or not _safe(target) or b" " in target or b" " in method:
        raise ValueError("the request line holds a space, line break or NUL")
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    for name, value in headers:
        if not name or not _safe(name) or not _safe(value) or b":" in name or b" " in name:
            raise ValueError("a header name or value holds a line break, NUL or colon")
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines)


def _safe(part: bytes) -> bool:
    return b"\r" not in part and b"\n" not in part and b"\0" not in part


class Response:
    """One response: its head, and its body as it arrives (`read` whole, or iterate
    for chunks). `close` releases the connection: back to the pool when the body was
    read to its end with keep-alive, else closed."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_collecting",
        "_complete",
        "_connection",
        "_decoder",
        "_error",
        "_head",
        "_paused",
        "_received",
        "_waiter",
        "decode",
        "keep_alive",
        "raw_headers",
        "status",
    )

    def __init__(self, connection: _Connection, head: asyncio.Future[None], decode: bool) -> None:
        self._connection: _Connection | None = connection
        self._head = head
        self.decode = decode
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._received = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._collecting = False
        self._decoder: zlib._Decompress | None = None

    @property
    def content_type(self) -> str:
        return self.header(b"content-type")

    def header(self, name: bytes) -> str:
        """The first value of header `name` (lowercase), or ""."""
        for raw_name, value in self.raw_headers:
            if raw_name.lower() == name:
                return value.decode("latin-1")
        return ""

    # -- the reader's side ---------------------------------------------------------

    async def read(self) -> bytes:
        """The whole body (at most `MAX_BODY_BYTES`)."""
        self._collecting = True
        if self._paused:
            self._resume()
        while not self._complete and self._error is None:
            await self._wait()
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return body

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                raise StopAsyncIteration
            await self._wait()
        # Everything that arrived since the last read, as one: what came in one
        # burst is handled together (a stream's text and the tool call after it).
        if len(chunks) == 1:
            chunk = chunks.popleft()
        else:
            chunk = b"".join(chunks)
            chunks.clear()
        self._buffered = 0
        if self._paused:
            self._resume()
        return chunk

    def chunks(self) -> Response:
        """The body as it arrives: each item all that arrived since the last."""
        return self

    async def close(self) -> None:
        self.release()

    def release(self) -> None:
        """Gives the connection back (idempotent)."""
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        if self._complete and self._error is None and self.keep_alive:
            connection.done()
        else:
            connection.abort()
        if not self._head.done():
            self._head.cancel()

    async def _wait(self) -> None:
        # The head's loop is the pool's: no `get_running_loop` (a getpid system call
        # in CPython 3.11) on every wait of a stream.
        waiter = self._waiter = self._head.get_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _resume(self) -> None:
        self._paused = False
        connection = self._connection
        if connection is not None:
            connection.resume()

    # -- the connection's side -----------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        if self.decode:
            data = self._decompress(data)
            if not data:
                return
        self._received += len(data)
        if self._received > MAX_BODY_BYTES and self._collecting:
            raise httpx.RemoteProtocolError(f"upstream response body over {MAX_BODY_BYTES} bytes")
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._collecting and not self._paused:
            self._paused = True
            assert self._connection is not None
            self._connection.pause()
        self._wake()

    def _decompress(self, data: bytes) -> bytes:
        decoder = self._decoder
        if decoder is None:
            coding = self.header(b"content-encoding").strip().lower()
            if not coding or coding == "identity":
                self.decode = False
                return data
            wbits = DECODED.get(coding.encode("latin-1"))
            if wbits is None:
                raise httpx.DecodingError(f"unsupported content-encoding {coding[:40]!r}")
            decoder = self._decoder = zlib.decompressobj(wbits)
        try:
            return decoder.decompress(data)
        except zlib.error:
            raise httpx.DecodingError("the upstream body does not decode") from None

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._complete:
            self._error = error
        head = self._head
        if not head.done():
            head.set_exception(error)
            head.exception()  # retrieved: a caller that went away logs nothing
        self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one response at a time."""

    def __init__(self, pool: Http1Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.fd = -1
        self.head_bytes = 0
        self.informational = False
        #: The read timeout: when a byte last arrived, the limit, and its timer.
        self.last_read = 0.0
        self.read_timeout: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.error: BaseException | None = None

    # -- sending -------------------------------------------------------------------

    def send(self, head: bytes, body: bytes, read_timeout: float | None, decode: bool) -> Response:
        loop = self.pool.loop
        response = Response(self, loop.create_future(), decode)
        self.response = response
        self.head_bytes = 0
        transport = self.transport
        assert transport is not None
        transport.write(head + body if body else head)
        self.read_timeout = read_timeout
        if read_timeout is not None:
            self.last_read = now = loop.time()
            self.timer = loop.call_at(now + read_timeout, self._check_read)
        return response

    def _check_read(self) -> None:
        self.timer = None
        response, limit = self.response, self.read_timeout
        if response is None or limit is None:
            return
        loop = self.pool.loop
        now = loop.time()
        # Paused for a slow reader, or a byte arrived since: not the upstream's silence.
        if response._paused or now - self.last_read < limit:
            start = now if response._paused else self.last_read
            self.timer = loop.call_at(start + limit, self._check_read)
            return
        response._fail(httpx.ReadTimeout("upstream sent nothing for the read timeout"))
        self.abort()

    # -- the pool's side -----------------------------------------------------------

    def done(self) -> None:
        """The response was read to its end: idle again."""
        self._stop_timer()
        self.response = None
        if self.closed:
            return
        self.pool._idle_again(self)

    def abort(self) -> None:
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self._lost()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.last_read = self.pool.loop.time()  # the upstream's silence counts from now
            self.transport.resume_reading()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._forget(self)

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def quiet(self) -> bool:
        """Nothing arrived on the idle socket: no close from the upstream that the
        event loop has not handled yet (one poll, not waiting)."""
        if self.fd < 0:
            return True
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return not poller.poll(0)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        if self.read_timeout is not None:
            self.last_read = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(response, httpx.RemoteProtocolError("upstream switched protocols"))
        except httptools.HttpParserError:
            error = self.error or httpx.RemoteProtocolError("malformed upstream response")
            self.error = None
            self._broken(response, error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        response = self.response
        if response is not None and not response._complete:
            if response._head.done() and not response._head.cancelled() and _unframed(response):
                response._finish()  # the body ran to the close, as HTTP/1.0 frames it
                response.keep_alive = False
            else:
                response._fail(
                    httpx.RemoteProtocolError("upstream closed the connection mid-response")
                    if exc is None
                    else httpx.ReadError("upstream connection broke mid-response")
                )
        self._lost()

    # -- httptools callbacks (raising stops the parser: `data_received` answers) ---

    def on_message_begin(self) -> None:
        response = self.response
        if response is None or response._complete:
            self.error = httpx.RemoteProtocolError("upstream sent more than one response")
            raise self.error

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        headers = response.raw_headers
        self.head_bytes += len(name) + len(value)
        if len(headers) >= MAX_HEADERS or self.head_bytes > MAX_HEAD_BYTES:
            self.error = httpx.RemoteProtocolError(
                f"upstream response head over {MAX_HEADERS} fields or {MAX_HEAD_BYTES} bytes"
            )
            raise self.error
        if response.status:  # a chunked body's trailer: counted, not a header
            return
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim response: the real one follows
            self.informational = True
            response.raw_headers = []
            self.head_bytes = 0
            return
        response.status = status
        response.keep_alive = self.parser.should_keep_alive()
        if not response._head.done():
            response._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        try:
            response._feed(body)
        except httpx.HTTPError as exc:
            self.error = exc
            raise

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        response = self.response
        assert response is not None
        self._stop_timer()
        response._finish()

    def _broken(self, response: Response, error: BaseException) -> None:
        response._fail(error)
        self.abort()


def _unframed(response: Response) -> bool:
    """A body with neither a length nor chunks: it ends when the connection does."""
    return not response.header(b"content-length") and not response.header(b"transfer-encoding")


class Http1Pool:
    """Keep-alive connections by origin, at most `max_connections` open in all.

    Created outside a loop and used inside one (its first request binds it)."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_seconds = keepalive_seconds
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._connections: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        #: The loop the pool runs in: bound by the first request after it was made
        #: or closed (a closed pool opens again, as an aiohttp session is re-made).
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def __len__(self) -> int:
        """Connections open, idle or busy."""
        return len(self._connections)

    def idle(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes,
        timeouts: Timeouts,
        *,
        decode: bool = False,
    ) -> Response:
        """Writes `head` (`request_head`, or a template made from it) and `body` on a
        connection to `origin`, and returns the response once its head arrived. The
        caller releases it (`Response.close`)."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
            self._closed = False
        connection = self._reuse(origin, loop.time())
        if connection is None:
            connection = await self._connect(origin, timeouts)
        response = connection.send(head, body, timeouts.read, decode)
        try:
            await response._head
        except BaseException:
            response.release()
            raise
        return response

    def _reuse(self, origin: Origin, now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            idle_for = now - connection.idle_since
            if (
                not connection.closed
                and idle_for < self.keepalive_seconds
                and (idle_for < QUIET_REUSE_S or connection.quiet())
            ):
                return connection
            connection.abort()
        return None

    async def _connect(self, origin: Origin, timeouts: Timeouts) -> _Connection:
        if len(self._connections) >= self.max_connections:
            try:
                async with asyncio.timeout(timeouts.pool):
                    while len(self._connections) >= self.max_connections:
                        connection = self._reuse(origin, self.loop.time())
                        if connection is not None:
                            return connection
                        if not self._close_one_idle():
                            await self._wait_for_room()
            except TimeoutError:
                raise httpx.PoolTimeout("no upstream connection free in time") from None
        scheme, host, port = origin
        connection = _Connection(self, origin)
        self._connections.add(connection)
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeouts.connect):
                await self.loop.create_connection(
                    lambda: connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            connection.abort()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except ssl.SSLError as exc:
            connection.abort()
            reason = exc.reason or "error"
            raise httpx.ConnectError(f"TLS handshake with {host}:{port} failed: {reason}") from None
        except OSError as exc:
            connection.abort()
            reason = exc.strerror or type(exc).__name__
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {reason}") from None
        except BaseException:
            connection.abort()
            raise
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _close_one_idle(self) -> bool:
        """Closes the longest-idle connection of any origin, to make room."""
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        oldest.abort()
        return True

    async def _wait_for_room(self) -> None:
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _idle_again(self, connection: _Connection) -> None:
        if self._closed:
            connection.abort()
            return
        loop = self.loop
        connection.idle_since = now = loop.time()
        idle = self._idle.get(connection.origin)
        if idle is None:
            idle = self._idle[connection.origin] = []
        # The longest idle is first: close it when it outlived the keep-alive.
        if idle and now - idle[0].idle_since >= self.keepalive_seconds:
            idle.pop(0).abort()
        idle.append(connection)
        if self._waiters:
            self._wake_one()

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        if self._waiters:
            self._wake_one()

    async def aclose(self) -> None:
        """Closes every connection; requests in flight fail."""
        self._closed = True
        for connection in list(self._connections):
            if connection.response is not None:
                connection.response._fail(httpx.ReadError("the connection pool closed"))
            connection.abort()
        self._idle.clear()
        self.loop = None  # type: ignore[assignment]
