"""The HTTP/1.1 client (routing/http1.py) against real sockets on loopback.

Each test runs a small asyncio server that writes exactly the bytes the test
scripts (framings, interim responses, broken heads, stalls, early closes), so the
client is held to what it reads on the wire, not to another client's behaviour.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import itertools
import socket
import ssl
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing import http1
from routing.http1 import Http1Pool, Timeouts, request_head
from tests.examples import examples

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = Timeouts(connect=5.0, read=5.0, pool=5.0)
HEAD = request_head(b"POST", b"/v1/x", [(b"host", b"upstream"), (b"content-length", b"2")])


class Server:
    """Counts connections; every request on them is answered by `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.eof = asyncio.Event()  # set when a client closed a connection
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.eof.set()
        except asyncio.CancelledError:
            pass  # the test is over (ending cancelled, the stream's callback would log it)
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Server, int]]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        listener.close()
        for task in server.tasks:
            task.cancel()
        await asyncio.gather(*server.tasks)


def replying(*parts: bytes) -> Handler:
    """Writes `parts` one `write` each, letting the client read between them."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0)

    return handler


def fixed(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


def chunked(*chunks: bytes) -> list[bytes]:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    return [head, *(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks), b"0\r\n\r\n"]


async def post(pool: Http1Pool, port: int, **kw: object) -> http1.Response:
    return await pool.request(("http", "127.0.0.1", port), HEAD, b"{}", TIMEOUTS, **kw)  # type: ignore[arg-type]


async def post_and_read(pool: Http1Pool, port: int) -> bytes:
    response = await post(pool, port)
    try:
        return await response.read()
    finally:
        await response.close()


async def drain(response: http1.Response, into: list[bytes]) -> None:
    async for chunk in response:
        into.append(chunk)


async def test_a_connection_is_kept_and_reused() -> None:
    async with serving(replying(fixed(b'{"a":1}'))) as (server, port):
        pool = Http1Pool()
        for _ in range(3):
            response = await post(pool, port)
            assert (response.status, await response.read()) == (200, b'{"a":1}')
            await response.close()
        assert server.connections == 1
        assert len(server.requests) == 3
        assert server.requests[0] == HEAD + b"{}"
        assert (len(pool), pool.idle(("http", "127.0.0.1", port))) == (1, 1)
        await pool.aclose()
        assert len(pool) == 0


async def test_a_chunked_body_arrives_as_it_comes_and_whole() -> None:
    taken = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, first, second, end = chunked(b"data: 1\n\n", b"data: 2\n\n")
        writer.write(head + first)
        await writer.drain()
        await taken.wait()  # the reader has the first event before the second exists
        taken.clear()
        writer.write(second + end)

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port)
        received = []
        async for chunk in response:
            received.append(chunk)
            taken.set()
        assert received == [b"data: 1\n\n", b"data: 2\n\n"]
        await response.close()
        response = await post(pool, port)
        taken.set()
        assert await response.read() == b"data: 1\n\ndata: 2\n\n"
        await response.close()
        await pool.aclose()


async def test_what_arrived_together_is_read_together() -> None:
    events = [b"data: %d\n\n" % i for i in range(5)]
    async with serving(replying(b"".join(chunked(*events)))) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port)
        assert [chunk async for chunk in response] == [b"".join(events)]
        await response.close()
        await pool.aclose()


async def test_gzip_is_decoded_when_asked_and_relayed_as_is_otherwise() -> None:
    body = gzip.compress(b'{"answer": "' + b"x" * 5000 + b'"}')
    answer = fixed(body, b"content-encoding: gzip\r\n")
    async with serving(replying(answer[:70], answer[70:200], answer[200:])) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port, decode=True)
        assert await response.read() == b'{"answer": "' + b"x" * 5000 + b'"}'
        await response.close()
        response = await post(pool, port)
        assert await response.read() == body
        await response.close()
        await pool.aclose()


async def test_an_unknown_content_coding_is_refused_when_decoding() -> None:
    async with serving(replying(fixed(b"zzz", b"content-encoding: br\r\n"))) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port, decode=True)
        with pytest.raises(httpx.DecodingError, match="unsupported content-encoding"):
            await response.read()
        await response.close()
        assert len(pool) == 0  # a connection in an unknown state is not reused
        await pool.aclose()


async def test_a_body_that_runs_to_the_close_ends_there_and_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ")
        await writer.drain()
        writer.write(b"world")
        writer.close()

    async with serving(handler) as (server, port):
        pool = Http1Pool()
        for _ in range(2):
            response = await post(pool, port)
            assert await response.read() == b"hello world"
            assert response.content_type == "text/plain"
            await response.close()
        assert server.connections == 2
        await pool.aclose()


async def test_a_connection_closed_mid_body_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        await writer.drain()
        writer.close()

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port)
        with pytest.raises(httpx.RemoteProtocolError, match="closed the connection"):
            await response.read()
        await response.close()
        assert len(pool) == 0
        await pool.aclose()


async def test_a_connection_closed_before_the_head_fails_the_request() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        with pytest.raises(httpx.RemoteProtocolError):
            await post(pool, port)
        assert len(pool) == 0
        await pool.aclose()


@pytest.mark.parametrize(
    "garbage",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    ],
)
async def test_a_malformed_response_is_a_protocol_error(garbage: bytes) -> None:
    async with serving(replying(garbage)) as (_, port):
        pool = Http1Pool()
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await post_and_read(pool, port)
        assert len(pool) == 0
        await pool.aclose()


@pytest.mark.parametrize(
    "extra",
    [
        b"".join(b"x-h%d: v\r\n" % i for i in range(http1.MAX_HEADERS + 1)),
        b"x-big: " + b"v" * http1.MAX_HEAD_BYTES + b"\r\n",
    ],
)
async def test_a_response_head_over_its_limits_is_refused(extra: bytes) -> None:
    async with serving(replying(fixed(b"{}", extra))) as (_, port):
        pool = Http1Pool()
        with pytest.raises(httpx.RemoteProtocolError, match="response head over"):
            await post(pool, port)
        assert len(pool) == 0
        await pool.aclose()


async def test_a_body_read_whole_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", 1000)
    async with serving(replying(*chunked(b"a" * 600, b"b" * 600))) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port)
        with pytest.raises(httpx.RemoteProtocolError, match="over 1000 bytes"):
            await response.read()
        await response.close()
        await pool.aclose()


async def test_a_trailer_is_not_taken_for_a_header() -> None:
    head, *chunks, _ = chunked(b"hello")
    reply = head + b"".join(chunks) + b"0\r\nx-ratelimit-remaining: 0\r\n\r\n"
    answers = iter([reply, fixed(b"next")])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(next(answers))

    async with serving(handler) as (server, port):
        pool = Http1Pool()
        response = await post(pool, port)
        assert await response.read() == b"hello"
        assert all(name != b"x-ratelimit-remaining" for name, _ in response.raw_headers)
        await response.close()
        assert await post_and_read(pool, port) == b"next"  # the connection was reusable
        assert server.connections == 1
        await pool.aclose()


async def test_an_interim_response_is_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\nx-interim: 1\r\n\r\n" + fixed(b"done")
    async with serving(replying(reply)) as (_, port):
        pool = Http1Pool()
        response = await post(pool, port)
        assert (response.status, await response.read()) == (200, b"done")
        assert all(name != b"x-interim" for name, _ in response.raw_headers)
        await response.close()
        await pool.aclose()


async def test_an_upstream_silent_past_the_read_timeout_fails_the_request() -> None:
    silent = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await silent.wait()

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        origin = ("http", "127.0.0.1", port)
        with pytest.raises(httpx.ReadTimeout):
            await pool.request(origin, HEAD, b"{}", Timeouts(5.0, 0.2, 5.0))
        assert len(pool) == 0
        silent.set()
        await pool.aclose()


async def test_the_read_timeout_counts_silence_between_chunks_not_the_whole_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parts = chunked(*[b"event %d\n\n" % i for i in range(6)])
        for part in parts[:-1]:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.1)  # the upstream's pace: each gap under the timeout
        await asyncio.Event().wait()  # then it goes silent before the last chunk

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        origin = ("http", "127.0.0.1", port)
        response = await pool.request(origin, HEAD, b"{}", Timeouts(5.0, 0.35, 5.0))
        received: list[bytes] = []
        with pytest.raises(httpx.ReadTimeout):
            await drain(response, received)
        assert received == [b"event %d\n\n" % i for i in range(6)]  # 0.6 s of body
        await response.close()
        await pool.aclose()


async def test_a_slow_reader_pauses_the_socket_and_is_not_timed_out() -> None:
    total = 4 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()

    async with serving(handler) as (_, port):
        pool = Http1Pool()
        origin = ("http", "127.0.0.1", port)
        response = await pool.request(origin, HEAD, b"{}", Timeouts(5.0, 0.2, 5.0))
        await asyncio.sleep(0.5)  # the reader is busy elsewhere, past the read timeout
        assert response._buffered <= http1.HIGH_WATER + 256 * 1024
        received = 0
        async for chunk in response:
            received += len(chunk)
            assert response._buffered <= http1.HIGH_WATER + 256 * 1024
        assert received == total
        await response.close()
        await pool.aclose()


async def test_releasing_a_response_early_closes_its_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # until the client closes

    async with serving(handler) as (server, port):
        pool = Http1Pool()
        response = await post(pool, port)
        assert await response.__anext__() == b"hello"
        await response.close()
        await asyncio.wait_for(server.eof.wait(), 5)  # the upstream sees it go
        assert len(pool) == 0
        await pool.aclose()


async def test_a_refused_connection_names_the_origin_for_the_log() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = Http1Pool()
    with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        await post(pool, port)
    assert len(pool) == 0
    await pool.aclose()


async def test_requests_wait_for_a_connection_up_to_the_pool_timeout() -> None:
    async with serving(replying(fixed(b"one"))) as (server, port):
        pool = Http1Pool(max_connections=1)
        origin = ("http", "127.0.0.1", port)
        held = await post(pool, port)
        with pytest.raises(httpx.PoolTimeout):
            await pool.request(origin, HEAD, b"{}", Timeouts(5.0, 5.0, 0.1))
        waiting = asyncio.create_task(pool.request(origin, HEAD, b"{}", TIMEOUTS))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert await held.read() == b"one"
        await held.close()  # the connection goes idle: the waiting request takes it
        second = await waiting
        assert await second.read() == b"one"
        await second.close()
        assert server.connections == 1
        await pool.aclose()


async def test_a_full_pool_closes_another_origins_idle_connection() -> None:
    async with (
        serving(replying(fixed(b"a"))) as (_, port_a),
        serving(replying(fixed(b"b"))) as (_, port_b),
    ):
        pool = Http1Pool(max_connections=1)
        assert await post_and_read(pool, port_a) == b"a"
        assert await post_and_read(pool, port_b) == b"b"
        assert (len(pool), pool.idle(("http", "127.0.0.1", port_a))) == (1, 0)
        await pool.aclose()


async def test_an_idle_connection_past_the_keepalive_is_not_reused() -> None:
    async with serving(replying(fixed(b"{}"))) as (server, port):
        pool = Http1Pool(keepalive_seconds=0.0)
        for _ in range(2):
            response = await post(pool, port)
            await response.read()
            await response.close()
        assert server.connections == 2
        await pool.aclose()


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"POST", b"/x", [(b"x-a", b"1\r\nx-injected: 1")]),
        (b"POST", b"/x", [(b"x-a\r\n", b"1")]),
        (b"POST", b"/x", [(b"x:a", b"1")]),
        (b"POST", b"/x HTTP/1.1\r\nx: y", []),
        (b"POST", b"/x\0", []),
        (b"PO ST", b"/x", []),
    ],
)
def test_a_head_that_would_split_is_refused(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(ValueError, match=r"line break|space"):
        request_head(method, target, headers)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_checks_the_certificate_and_carries_the_exchange(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    async with serving(replying(fixed(b"secret")), tls=server_tls) as (server, port):
        origin = ("https", "127.0.0.1", port)
        untrusting = Http1Pool()  # the system's trust store: a self-signed upstream fails
        with pytest.raises(httpx.ConnectError, match="TLS handshake"):
            await untrusting.request(origin, HEAD, b"{}", TIMEOUTS)
        await untrusting.aclose()
        trusting = Http1Pool(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
        for _ in range(2):
            response = await trusting.request(origin, HEAD, b"{}", TIMEOUTS)
            assert await response.read() == b"secret"
            await response.close()
        assert server.connections == 1  # one kept (a failed handshake never reaches it)
        await trusting.aclose()


def _framings(body: bytes, cuts: list[int], framing: str) -> list[bytes]:
    """`body` framed as `framing`, the bytes split at `cuts` (the writes the client reads)."""
    if framing == "length":
        wire = fixed(body)
    elif framing == "chunked":
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)] or []
        wire = b"".join(chunked(*pieces))
    else:
        wire = b"HTTP/1.0 200 OK\r\n\r\n" + body
    points = sorted({min(cut, len(wire)) for cut in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    framing=st.sampled_from(["length", "chunked", "close"]),
    whole=st.booleans(),
)
def test_any_framing_split_anywhere_reads_back_the_body(
    body: bytes, cuts: list[int], framing: str, whole: bool
) -> None:
    parts = _framings(body, cuts, framing)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0)
        if framing == "close":
            writer.close()

    async def exchange() -> bytes:
        async with serving(handler) as (_, port):
            pool = Http1Pool()
            response = await post(pool, port)
            if whole:
                data = await response.read()
            else:
                data = b"".join([chunk async for chunk in response])
            await response.close()
            await pool.aclose()
            return data

    assert asyncio.run(exchange()) == body


def test_deflate_decodes_both_wrapped_and_gzip_bodies() -> None:
    assert zlib.decompressobj(http1.DECODED[b"deflate"]).decompress(zlib.compress(b"x")) == b"x"
    assert zlib.decompressobj(http1.DECODED[b"gzip"]).decompress(gzip.compress(b"y")) == b"y"


async def test_bytes_after_a_response_break_the_connection_not_the_response() -> None:
    async with serving(replying(fixed(b"ok") + b"HTTP/1.1 200 OK\r\n")) as (server, port):
        pool = Http1Pool()
        for _ in range(2):
            response = await post(pool, port)
            assert await response.read() == b"ok"
            await response.close()
        assert server.connections == 2  # the first connection was not reused
        await pool.aclose()


def _answer_one_request(conn: socket.socket) -> None:
    """Reads one request (head and its 2-byte body) and answers it, keeping the
    connection (a blocking server in a thread, so it runs while the loop does not)."""
    received = b""
    while not received.endswith(b"\r\n\r\n{}"):
        received += conn.recv(65536)
    conn.sendall(fixed(b'{"a":1}'))


async def test_a_connection_the_upstream_closed_while_the_loop_was_busy_is_not_reused() -> None:
    """An upstream closes an idle keep-alive connection (as uvicorn does after 5 s)
    at a moment the event loop is busy, so the pool has not handled the close yet.
    The next request polls the connection, finds the close, and goes out on a new
    one: answered, and the upstream read both requests. Without the poll it is
    written to the closed connection and fails without the upstream reading it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    close_now, closed = threading.Event(), threading.Event()
    served: list[int] = []

    def upstream() -> None:
        first, _ = listener.accept()
        _answer_one_request(first)
        served.append(1)
        close_now.wait(10)
        first.close()
        closed.set()
        second, _ = listener.accept()
        _answer_one_request(second)
        served.append(2)
        second.close()

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    pool = Http1Pool()
    try:
        assert await post_and_read(pool, port) == b'{"a":1}'
        (connection,) = pool._idle[("http", "127.0.0.1", port)]
        close_now.set()
        assert closed.wait(10)  # blocks the loop: the close is not handled
        connection.idle_since -= 2 * http1.QUIET_REUSE_S
        assert not connection.closed
        assert await post_and_read(pool, port) == b'{"a":1}'
        assert connection.closed
        thread.join(10)
        assert served == [1, 2]
    finally:
        await pool.aclose()
        listener.close()
