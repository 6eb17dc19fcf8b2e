"""A small round-robin TCP balancer on loopback: what a Kubernetes Service does in front
of the replicas of the scale-out proof (tests/test_scaleout.py, bench/scaleout.py).

It balances connections, not requests, as kube-proxy does: each accepted connection
goes to the next backend in turn and stays there; bytes are relayed both ways until
either side closes. A client that keeps a connection alive keeps its replica, so the
tests open one connection per request when they need requests spread.

Failover is on connecting only (nginx's `proxy_next_upstream error`, or an endpoint
dropped once its readiness probe fails): a backend that refuses a connection is
skipped for `down_s` and the next one is tried. Once bytes have been relayed, a
backend that dies closes the client's connection: what that replica had in flight is
lost, which is exactly what the kill test measures.

Runs in a thread (`BalancerThread`, for the tests, which read its counters and swap
a backend) or as a process (`python -m tests.balancer --port P --backend HOST:PORT ...`,
for the benchmark, so its CPU is measured apart).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

#: Bytes read from one side before writing them to the other.
CHUNK_BYTES = 64 * 1024
#: How long a backend that refused a connection is skipped.
DOWN_S = 1.0
#: Connecting to one backend (loopback: a refusal is immediate, this is for a hang).
CONNECT_TIMEOUT_S = 2.0
#: The listening socket's backlog.
BACKLOG = 1024

Address = tuple[str, int]


@dataclass
class BackendStats:
    """What the balancer did with one backend: the tests' view of which replica served."""

    connections: int = 0
    active: int = 0
    refused: int = 0
    down_until: float = 0.0


@dataclass
class Balancer:
    """Round robin over `backends`, per connection, with connect-time failover."""

    backends: list[Address]
    down_s: float = DOWN_S
    stats: list[BackendStats] = field(default_factory=list)
    #: The backend index each accepted connection went to, in order (None: none answered).
    log: list[int | None] = field(default_factory=list)
    _next: int = 0
    _server: asyncio.Server | None = None

    def __post_init__(self) -> None:
        self.stats = [BackendStats() for _ in self.backends]

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def replace(self, index: int, address: Address) -> None:
        """A replacement replica takes the place of backend `index` (a new pod)."""
        self.backends[index] = address
        self.stats[index].down_until = 0.0

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend in turn that accepts a connection; None when none does."""
        for _ in range(len(self.backends)):
            index = self._next % len(self.backends)
            self._next += 1
            stats = self.stats[index]
            if stats.down_until > time.monotonic():
                continue
            host, port = self.backends[index]
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            except (TimeoutError, OSError):
                stats.refused += 1
                stats.down_until = time.monotonic() + self.down_s
                continue
            return index, reader, writer
        return None

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        chosen = await self._connect()
        self.log.append(None if chosen is None else chosen[0])
        if chosen is None:
            client_w.close()
            return
        index, backend_r, backend_w = chosen
        stats = self.stats[index]
        stats.connections += 1
        stats.active += 1
        try:
            upstream = asyncio.ensure_future(_pipe(client_r, backend_w))
            downstream = asyncio.ensure_future(_pipe(backend_r, client_w))
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            if downstream.done():
                # The backend closed (its answer is complete, or it died): so does the
                # client's connection, whatever the client was still sending.
                upstream.cancel()
            else:
                # The client finished sending: the answer may still be coming.
                await downstream
        finally:
            stats.active -= 1
            for writer in (backend_w, client_w):
                writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until EOF (or a reset), then passes the EOF on."""
    with suppress(ConnectionError, OSError):
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    with suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class BalancerThread:
    """The balancer on its own event loop in a daemon thread, for synchronous tests."""

    def __init__(self, backends: Sequence[Address], down_s: float = DOWN_S) -> None:
        self.balancer = Balancer(list(backends), down_s)
        self.sock = listening_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> BalancerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.balancer.start(self.sock), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.balancer.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> BalancerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="round-robin TCP balancer (loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", type=_address, required=True)
    args = parser.parse_args(argv)

    async def run() -> None:
        balancer = Balancer(args.backend)
        await balancer.start(listening_socket(port=args.port))
        print(f"balancer listening on 127.0.0.1:{args.port}", flush=True)
        await asyncio.Event().wait()

    import uvloop

    uvloop.run(run())


if __name__ == "__main__":
    main()
