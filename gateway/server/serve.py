"""Serving the app: uvicorn with the guarded protocol, and a shutdown that drains.

`GatewayServer` is uvicorn's `Server` with one change of behaviour, the shutdown
(see gateway/drain.py for the app's side):

- SIGTERM (an orchestrator stopping the pod): `/readyz` turns 503 at once and new
  requests are still served for `server.drain_s`; then the listener closes and
  in-flight requests get `server.shutdown_timeout_s` to finish; then what is left
  is interrupted on purpose (streams get the `stream_interrupted` error event).
  uvicorn's own timeout is set a little later than that, so it never has anything
  left to cancel (its cancellation is what logged a traceback per stream).
- SIGINT (Ctrl-C at a terminal): no drain, the same graceful end; a second Ctrl-C
  forces the exit.
- A second SIGTERM ends the drain early.

The listener is closed when the drain ends (uvicorn closes the sockets it serves on
first thing in its shutdown), so from then on a new connection is refused at once
instead of waiting in a backlog nobody accepts from. With `--workers N` each worker
has a listener of its own (gateway/server/workers.py), so closing it here is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import logging.config
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from gateway.server.config import ServerConfig
from gateway.server.frontdoor import Waiting
from gateway.server.logs import JSON, JsonFormatter, TextFormatter
from gateway.server.protocol import GuardedHttpToolsProtocol

log = logging.getLogger("seawall")

#: uvicorn's own graceful-shutdown timeout is this much later than ours: after
#: `Drain.interrupt`, open streams need a moment to send their last event.
INTERRUPT_GRACE_S = 5.0
#: Connections the kernel queues for a listener before its server accepts them
#: (uvicorn's default).
BACKLOG = 2048


class Drain(Protocol):
    """What the server asks of the app's drain (gateway/drain.py) at shutdown."""

    @property
    def in_flight(self) -> int: ...

    def begin(self) -> None: ...

    def interrupt(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What `seawall serve` was asked for on the command line."""

    host: str
    port: int
    workers: int = 1
    #: The gateway's access line, one per request at INFO (gateway/access_log.py);
    #: uvicorn's own access log is never on (it would be a second line per request).
    access_log: bool = True
    log_level: str = "info"
    #: `text` or `json` (gateway/server/logs.py).
    log_format: str = "text"
    #: The `--config` argument (None: the embedded default); workers load it themselves.
    config: str | None = None
    #: This process's number among `--workers` (0 for a single process); a replaced
    #: worker takes the number of the one it replaces (its audit chain continues).
    worker: int = 0
    #: Called once the server accepts connections: how a worker tells its supervisor
    #: that it started (gateway/server/workers.py). Set inside the worker process.
    on_serving: Callable[[], None] | None = None


def log_config(level: str, log_format: str = "text", access_log: bool = True) -> dict[str, Any]:
    """uvicorn's logging setup with the gateway's formatter (gateway/server/logs.py: a
    timestamp, the level, the logger, the request id and the structured fields on
    every line; `log_format` `text` or `json`) for uvicorn's loggers and the
    `seawall` ones alike, on one handler. The `seawall` records still propagate: the
    root logger has no handler of its own unless an embedding program (or a test)
    adds one. `access_log=False` silences the gateway's access line
    (`seawall.access`, INFO)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    formatter = {"()": JsonFormatter if log_format == JSON else TextFormatter}
    config["formatters"] = {"default": formatter, "access": dict(formatter)}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["seawall"] = {"handlers": ["default"], "level": level.upper()}
    # Always named: a logger dictConfig does not list keeps the level it had.
    config["loggers"]["seawall.access"] = {"level": "NOTSET" if access_log else "WARNING"}
    return config


def configure_logging(options: ServeOptions) -> None:
    """`log_config` applied now, before the app is made: the lines its making logs
    (a config warning) are formatted like every later one. uvicorn applies the same
    configuration again when it starts."""
    logging.config.dictConfig(log_config(options.log_level, options.log_format, options.access_log))
    # What uvicorn's `Config` does with the level, for the lines logged before it.
    level = options.log_level.upper()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logging.getLogger(name).setLevel(level)


def uvicorn_config(app: Starlette, server: ServerConfig, options: ServeOptions) -> uvicorn.Config:
    gateway = app.state.gateway
    protocol = functools.partial(
        GuardedHttpToolsProtocol,
        limits=server.front_door(),
        stats=gateway.state.front_door,
        waiting=Waiting(),  # this worker's connections waiting for a request
    )
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol,  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        server_header=False,
        # One access line per request, the gateway's (gateway/access_log.py).
        access_log=False,
        log_level=options.log_level,
        log_config=log_config(options.log_level, options.log_format, options.access_log),
        timeout_keep_alive=server.keepalive_timeout_s,  # type: ignore[arg-type]
        # Forwarded headers are believed from `trusted_proxies` only (uvicorn's
        # default trusts them from loopback, where any local process could claim to
        # be any client).
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=list(server.trusted_proxies),
        timeout_graceful_shutdown=int(server.shutdown_timeout_s + INTERRUPT_GRACE_S),
    )


class GatewayServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        server: ServerConfig,
        on_serving: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.on_serving = on_serving
        self.drain_s = server.drain_s
        self.shutdown_timeout_s = server.shutdown_timeout_s
        self._drain_until: float | None = None
        self._announced = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, except that a SIGINT is not raised again once the server has
        ended because of it: that would turn a graceful Ctrl-C into a KeyboardInterrupt
        traceback. A SIGTERM still is (the process then ends by it, as orchestrators
        expect)."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals = [
                    sig for sig in self._captured_signals if sig != signal.SIGINT
                ]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs in a signal handler: only flags and plain assignments here.
        self._captured_signals.append(sig)
        if sig == signal.SIGTERM and self._drain_until is None and not self.should_exit:
            self.drain.begin()
            self._drain_until = time.monotonic() + self.drain_s
            return
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and not self._announced:
            self._announced = True
            log.info(
                "SIGTERM: draining for %g s (/readyz answers 503, requests are still served)",
                self.drain_s,
            )
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_serving is not None:
            self.on_serving()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.drain.begin()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.shutdown_timeout_s, self._interrupt)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    def _interrupt(self) -> None:
        if self.drain.in_flight:
            log.info(
                "shutdown: %d request(s) still running after %g s; interrupting them",
                self.drain.in_flight,
                self.shutdown_timeout_s,
            )
        self.drain.interrupt()


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A socket bound to `host`:`port` (0: a free port the kernel picks), bound before
    the app is made so that a port in use fails at once. `reuse_port`: several
    sockets may bind the same port (`SO_REUSEPORT`: the kernel spreads connections
    over those listening; how `--workers N` gets one listener per worker). `listen`
    False: bound only, listening later (`serve_app`), or never (the supervisor's
    socket that keeps the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    sock.set_inheritable(not reuse_port)  # a shared socket is passed to the workers
    return sock


def listening_on(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_app(
    app: Starlette, server: ServerConfig, options: ServeOptions, sock: socket.socket
) -> None:
    """Serves `app` on `sock` in this process until a signal ends it. A socket bound
    but not yet listening (a worker's own, `SO_REUSEPORT`) listens from here on: only
    once the app is built does the kernel give it connections, so a worker that
    crashes while loading its config or building its app strands none in its backlog."""
    sock.listen(BACKLOG)
    config = uvicorn_config(app, server, options)
    GatewayServer(config, app.state.gateway.drain, server, options.on_serving).run(sockets=[sock])
