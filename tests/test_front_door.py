"""The front door under attack: raw sockets against a real gateway on loopback.

Each attack is bounded in time (every socket has a timeout). The limits are set low
(`FAST`) so the suite stays quick; the defaults and their reasons are in
gateway/server/frontdoor.py. Every refusal must come in OpenAI's envelope (or be a
silent close where nothing was asked), and must not slow anyone else down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.server.frontdoor import Waiting
from tests.examples import examples
from tests.support import ServerThread, mock_group, running_gateway

FAST = {
    "max_header_bytes": 8192,
    "max_headers": 20,
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
    "keepalive_timeout_s": 1.0,
}
CHAT = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway({"models": [mock_group("demo")], "server": FAST}) as server:
        yield server


def connect(server: ServerThread, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Reads one whole response (content-length bodies), or raises on timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def assert_envelope(headers: dict[str, str], body: bytes, code: str) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return dict(error)


def request_head(path: str = "/v1/chat/completions", **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- header size and count ---------------------------------------------------------------


def test_a_header_that_never_ends_is_refused_at_the_limit(gateway: ServerThread) -> None:
    sock = connect(gateway)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nX-Big: ")
    sent = 0
    status = None
    with sock:
        try:
            while sent < 64 * 1024 * 1024:  # far past the limit: it must stop us first
                sock.sendall(b"a" * 4096)
                sent += 4096
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = read_response(sock)
    assert status == 431
    assert_envelope(headers, body, "headers_too_large")
    # What the client could push is the server's 8 KiB limit plus what the kernel's
    # socket buffers absorb before the reset (a few MB on loopback), never the 64 MB.
    assert sent < 16 * 1024 * 1024, f"{sent} bytes of one header went out before the refusal"


def test_a_complete_oversized_head_is_refused(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        sock.sendall(request_head(**{"X-Big": "a" * 10_000}))
        status, headers, body = read_response(sock)
    assert status == 431
    error = assert_envelope(headers, body, "headers_too_large")
    assert "8192 bytes" in error["message"]


def test_too_many_headers_are_refused(gateway: ServerThread) -> None:
    many = {f"X-H{i}": "v" for i in range(30)}
    with connect(gateway) as sock:
        sock.sendall(request_head(**many))
        status, headers, body = read_response(sock)
    assert status == 431
    assert "at most 20" in assert_envelope(headers, body, "too_many_headers")["message"]


# -- read timeouts -------------------------------------------------------------------------


def test_an_unfinished_head_times_out_with_408(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: te")
        status, headers, body = read_response(sock)
        waited = time.monotonic() - started
    assert status == 408
    assert_envelope(headers, body, "header_timeout")
    assert 0.9 <= waited < 3.0


def test_a_silent_connection_is_closed_without_an_answer(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert 0.9 <= time.monotonic() - started < 3.0


def test_a_body_shorter_than_its_content_length_times_out(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        sock.sendall(request_head(**{"Content-Type": "application/json", "Content-Length": "100"}))
        sock.sendall(b'{"model":')  # 9 bytes, then silence
        started = time.monotonic()
        status, headers, body = read_response(sock)
        waited = time.monotonic() - started
    assert status == 408
    assert_envelope(headers, body, "body_timeout")
    assert waited < 3.0


def test_a_chunked_body_that_never_ends_times_out(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        sock.sendall(request_head(**{"Transfer-Encoding": "chunked"}))
        sock.sendall(b'5\r\n{"mod\r\n')
        status, headers, body = read_response(sock)
    assert status == 408
    assert_envelope(headers, body, "body_timeout")


def test_a_trickling_body_that_keeps_moving_is_not_cut(gateway: ServerThread) -> None:
    """The body timeout is for silence, not for slowness: a byte every 0.3 s (under
    the 1 s limit) for 2.5 s still gets its answer."""
    with connect(gateway) as sock:
        sock.sendall(request_head(**{"Content-Length": str(len(CHAT))}))
        pieces = [CHAT[: len(CHAT) // 8 * i] for i in range(9)]
        previous = 0
        for piece in pieces[1:]:
            time.sleep(0.3)  # the client's own pace, not synchronization
            sock.sendall(CHAT[previous : len(piece)])
            previous = len(piece)
        sock.sendall(CHAT[previous:])
        status, _, body = read_response(sock)
    assert status == 200, body
    assert json.loads(body)["object"] == "chat.completion"


def test_an_idle_keep_alive_connection_is_closed(gateway: ServerThread) -> None:
    with connect(gateway) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"  # keep-alive by default in 1.1
        )
        status, _, _ = read_response(sock)
        assert status == 200
        started = time.monotonic()
        assert closed_by_peer(sock)
        assert time.monotonic() - started < 3.0


# -- malformed HTTP: the envelope, not text/plain ------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"NOT A REQUEST\r\n\r\n",
    ],
    ids=["duplicate-cl", "cl-and-chunked", "nul-in-header", "negative-cl", "garbage"],
)
def test_malformed_http_gets_the_error_envelope(gateway: ServerThread, raw: bytes) -> None:
    with connect(gateway) as sock:
        sock.sendall(raw)
        status, headers, body = read_response(sock)
    assert status == 400
    error = assert_envelope(headers, body, "malformed_request")
    assert error["message"].startswith("Malformed HTTP request")


# -- the connection cap --------------------------------------------------------------------


#: A cap of 4 connections; heads and keep-alive that outlast any test's wait, so
#: only the cap decides what is closed.
CAPPED = {**FAST, "max_connections": 4, "header_timeout_s": 30.0, "keepalive_timeout_s": 30.0}
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"  # keep-alive by default in 1.1


def served(sock: socket.socket, request: bytes = HEALTH) -> int:
    """Sends `request` on `sock` and reads its answer: the connection then waits."""
    sock.sendall(request)
    status, _, _ = read_response(sock)
    return status


def counted(server: ServerThread) -> tuple[int, int]:
    """(connections closed while waiting, refused 503) as the gateway counts them,
    and as /metrics shows them. Read in process first: the scrape is a connection
    too, and at the cap it closes a waiting one."""
    stats = server.app.state.gateway.state.front_door
    before = (stats.waiting_closed, stats.refusals["too_many_connections"])
    text = httpx.get(server.url + "/metrics", headers={"connection": "close"}).text
    closed, refused = stats.waiting_closed, stats.refusals["too_many_connections"]
    assert f"seawall_front_door_waiting_closed_total {float(closed)}" in text
    assert (
        f'seawall_front_door_refusals_total{{reason="too_many_connections"}} {float(refused)}'
        in text
    )
    return before


@contextlib.contextmanager
def capped_gateway() -> Iterator[tuple[ServerThread, list[socket.socket]]]:
    """A gateway capped at 4 connections, and a list for the sockets a test opens
    (closed when it ends)."""
    with running_gateway({"models": [mock_group("demo")], "server": CAPPED}) as server:
        opened: list[socket.socket] = []
        try:
            yield server, opened
        finally:
            for sock in opened:
                sock.close()


def test_connections_over_the_cap_all_busy_get_503() -> None:
    """Every connection is busy with a request (its head half sent): none may be
    closed to make room, so the next one is refused, and the busy ones finish."""
    with capped_gateway() as (server, held):
        held += [connect(server) for _ in range(4)]
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # busy: a head under way
        with connect(server) as extra:
            status, headers, body = read_response(extra)
        assert status == 503
        assert_envelope(headers, body, "too_many_connections")
        for sock in held:  # none of them was touched
            sock.sendall(b"Host: test\r\n\r\n")
            assert read_response(sock)[0] == 200
        assert counted(server) == (0, 1)


def test_idle_connections_at_the_cap_cannot_lock_a_new_client_out() -> None:
    """An attacker holds every slot with kept-alive connections that each made one
    cheap request. A victim's new connection is served; the attacker's connection
    that has waited longest is the one closed (one that asked again since is not),
    and the others stay usable."""
    with capped_gateway() as (server, attacker):
        attacker += [connect(server) for _ in range(4)]
        for sock in attacker:
            assert served(sock) == 200
        assert served(attacker[0]) == 200  # a asked again: b now waited longest
        with connect(server) as victim:
            victim.sendall(request_head(**{"Content-Length": str(len(CHAT))}) + CHAT)
            status, _, body = read_response(victim)
            assert status == 200, body
            assert json.loads(body)["object"] == "chat.completion"
        attacker[1].settimeout(5)
        assert closed_by_peer(attacker[1])
        for sock in (attacker[0], attacker[2], attacker[3]):
            assert served(sock) == 200
        assert counted(server) == (1, 0)


def test_silent_new_connections_at_the_cap_are_closed_oldest_first() -> None:
    """Connections opened and never used hold no request: at the cap the oldest goes."""
    with capped_gateway() as (server, opened):
        silent = [connect(server) for _ in range(4)]
        opened += silent
        for k in range(2):  # each newcomer stays open: the cap stays reached
            opened.append(connect(server))
            assert served(opened[-1]) == 200
            silent[k].settimeout(5)
            assert closed_by_peer(silent[k])
        for sock in [*silent[2:], *opened[4:]]:
            assert served(sock) == 200
        assert counted(server) == (2, 0)


# -- nobody else pays for an attack ---------------------------------------------------------


class Slowloris:
    """`count` connections each sending one byte of a request head every `every` s."""

    def __init__(self, server: ServerThread, count: int, every: float) -> None:
        self.server = server
        self.count = count
        self.every = every
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sockets = []
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nX-Slow: "
        for _ in range(self.count):
            sock = connect(self.server)
            sock.sendall(head[:1])
            sockets.append(sock)
            self.opened += 1
        sent = 1
        while not self.stop.wait(self.every):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(head[sent : sent + 1] or b"a")
            sent += 1
        for sock in sockets:
            sock.close()


class HeaderFlood:
    """One connection at a time streaming an endless header as fast as it can."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.stop = threading.Event()
        self.refused = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            with connect(self.server) as sock:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nX-Big: ")
                try:
                    while not self.stop.is_set():
                        sock.sendall(b"a" * 65536)
                except OSError:
                    self.refused += 1


def test_normal_requests_stay_fast_during_slowloris_and_a_header_flood() -> None:
    server_settings = {**FAST, "header_timeout_s": 30.0, "max_connections": 1000}
    with running_gateway({"models": [mock_group("demo")], "server": server_settings}) as server:
        slow = Slowloris(server, count=200, every=0.5)
        flood = HeaderFlood(server)
        slow.thread.start()
        flood.thread.start()
        try:
            deadline = time.monotonic() + 30
            while (slow.opened < 200 or flood.refused < 3) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert slow.opened == 200 and flood.refused >= 3
            latencies = []
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for _ in range(40):
                    started = time.perf_counter()
                    reply = client.post("/v1/chat/completions", content=CHAT)
                    latencies.append(time.perf_counter() - started)
                    assert reply.status_code == 200
        finally:
            slow.stop.set()
            flood.stop.set()
            slow.thread.join(10)
            flood.thread.join(10)
    p50 = statistics.median(latencies)
    assert p50 < 0.1, f"p50 {p50 * 1000:.1f} ms while under attack"


# -- client aborts ---------------------------------------------------------------------------


def test_a_client_that_leaves_mid_body_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(caplog.handler)  # uvicorn's loggers do not propagate to root
    try:
        with (
            running_gateway({"models": [mock_group("demo")], "server": FAST}) as server,
            caplog.at_level(logging.INFO, logger="seawall"),
        ):
            with connect(server) as sock:
                sock.sendall(request_head(**{"Content-Length": "100"}) + b'{"model":')
            deadline = time.monotonic() + 5
            metrics = ""
            while 'code="client_closed"' not in metrics and time.monotonic() < deadline:
                metrics = httpx.get(server.url + "/metrics").text
    finally:
        server_log.removeHandler(caplog.handler)
    closed = '{code="client_closed",endpoint="chat",status="499",tenant="root"}'
    assert f"seawall_responses_total{closed} 1.0" in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    aborts = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(aborts) == 1 and aborts[0].levelno == logging.INFO
    assert "Traceback" not in caplog.text


def test_idle_connections_outlive_the_openai_sdks_keep_alive() -> None:
    """The OpenAI Python SDK (httpx) drops a pooled connection after 5 s idle; the
    gateway keeps one longer, so the SDK never sends a request on a connection the
    gateway is closing (with equal timeouts, one sent at the moment of expiry meets
    the close and fails unanswered: seen as a rare `ReadError` under load)."""
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    from gateway.server.config import ServerConfig
    from gateway.server.serve import ServeOptions, uvicorn_config

    expiry = DEFAULT_CONNECTION_LIMITS.keepalive_expiry
    assert expiry is not None
    with running_gateway({"models": [mock_group("demo")]}) as server:
        options = ServeOptions(host="127.0.0.1", port=0)
        config = uvicorn_config(server.app, ServerConfig(), options)
    assert config.timeout_keep_alive >= 2 * expiry


# -- the waiting order ---------------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(["add", "discard", "longest"]), st.integers(0, 5))))
@settings(max_examples=examples(200), deadline=None)
def test_waiting_hands_out_the_longest_waiting_connection(
    steps: list[tuple[str, int]],
) -> None:
    """`Waiting` against a list kept in the order connections last started waiting."""
    waiting, model = Waiting(), list[int]()
    for action, connection in steps:
        if action == "add":
            waiting.add(connection)
            if connection in model:
                model.remove(connection)
            model.append(connection)
        elif action == "discard":
            waiting.discard(connection)
            if connection in model:
                model.remove(connection)
        else:
            assert waiting.longest() == (model.pop(0) if model else None)
        assert len(waiting) == len(model)
