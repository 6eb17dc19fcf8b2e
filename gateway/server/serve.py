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
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from gateway.server.config import ServerConfig
from gateway.server.protocol import GuardedHttpToolsProtocol

log = logging.getLogger("seawall")

#: uvicorn's own graceful-shutdown timeout is this much later than ours: after
#: `Drain.interrupt`, open streams need a moment to send their last event.
INTERRUPT_GRACE_S = 5.0


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
    access_log: bool = False
    log_level: str = "info"
    #: The `--config` argument (None: the embedded default); workers load it themselves.
    config: str | None = None


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the `seawall` loggers on the same handler, so the
    gateway's own lines (client aborts, upstream failures with their request id)
    are printed like uvicorn's. They still propagate: the root logger has no handler
    of its own unless an embedding program (or a test) adds one."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["seawall"] = {"handlers": ["default"], "level": level.upper()}
    return config


def uvicorn_config(app: Starlette, server: ServerConfig, options: ServeOptions) -> uvicorn.Config:
    gateway = app.state.gateway
    protocol = functools.partial(
        GuardedHttpToolsProtocol, limits=server.front_door(), stats=gateway.state.front_door
    )
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol,  # type: ignore[arg-type]
        ws="none",
        lifespan="on",
        server_header=False,
        access_log=options.access_log,
        log_level=options.log_level,
        log_config=log_config(options.log_level),
        timeout_keep_alive=server.keepalive_timeout_s,  # type: ignore[arg-type]
        # Forwarded headers are believed from `trusted_proxies` only (uvicorn's
        # default trusts them from loopback, where any local process could claim to
        # be any client).
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=list(server.trusted_proxies),
        timeout_graceful_shutdown=int(server.shutdown_timeout_s + INTERRUPT_GRACE_S),
    )


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain, server: ServerConfig) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_s = server.drain_s
        self.shutdown_timeout_s = server.shutdown_timeout_s
        self._drain_until: float | None = None
        self._announced = False

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


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any worker starts (so `--port 0` works and
    every worker shares one port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listening_on(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_app(
    app: Starlette, server: ServerConfig, options: ServeOptions, sock: socket.socket
) -> None:
    """Serves `app` on `sock` in this process until a signal ends it."""
    config = uvicorn_config(app, server, options)
    GatewayServer(config, app.state.gateway.drain, server).run(sockets=[sock])
