"""The stdio connector: an MCP server as a child process the gateway supervises.

- **Started from an argv**, never a shell: `command` and `args` go to
  `asyncio.create_subprocess_exec` as they are, nothing expanded or split. The
  child gets only the environment its config names (`inherit_env`, a short list of
  harmless variables by default, plus `env`): the gateway's own environment holds
  provider keys. It runs in its own process group, so stopping it also stops what
  it started (`npx` starts `node`), and nothing else.
- **Framing**: newline-delimited JSON-RPC on stdin/stdout, one message a line (the
  spec forbids embedded newlines; orjson never writes one). A line longer than
  `max_message_bytes` cannot be resynchronised: the child is restarted. Lines that
  are not JSON-RPC (a banner some servers print) are logged and skipped.
- **stderr** goes to the log (`seawall.mcp.<server>`), a line at a time, cut at 4 KiB.
- **Supervision**: when the child exits, every call in flight fails at once with
  `ServerDown` naming the exit status, and the child is started again after a
  backoff that doubles from `initial_backoff_ms` to `max_backoff_ms` and resets
  once a child stayed up `healthy_after_s`. A child that never starts (no such
  program, exits at once, never answers `initialize`) keeps being retried with
  that backoff; meanwhile a call fails at once with a clear error (never a hang):
  while a start is under way a call waits for it, up to its own deadline.
- **Stop**: stdin closed, `stop_grace_ms` to exit, then SIGTERM to its group, the
  same grace, then SIGKILL (the spec's shutdown sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from typing import Any

from toolservers.config import StdioServer
from toolservers.jsonrpc import (
    Error,
    Limits,
    Message,
    Notification,
    ParseFailure,
    Request,
    Response,
    dumps,
    parse,
)
from toolservers.upstream.base import (
    NotificationHandler,
    ProtocolViolation,
    RemoteError,
    ServerDown,
    ServerTimeout,
    check_initialize,
    initialize_params,
    log,
    refuse_server_request,
)

MAX_STDERR_LINE = 4096


class StdioConnection:
    def __init__(self, config: StdioServer) -> None:
        self.config = config
        self.name = config.name
        self._limits = Limits(max_bytes=config.max_message_bytes, max_depth=512)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._write_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self._stderr_log = logging.getLogger(f"seawall.mcp.{config.name}")
        #: `starting` (a call waits for it), `ready`, or `down` (a call fails at once).
        self.state = "starting"
        #: Why the server is not running, for the error a call gets meanwhile.
        self._down_reason = "it is starting"
        self._next_start: float | None = None
        self.starts = 0
        self.exits = 0
        self.protocol_version: str | None = None
        self.initialize_result: dict[str, Any] | None = None
        self.on_notification: NotificationHandler | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._ready.is_set() else None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Starts supervising; returns once the first child answered `initialize`, or
        raises when it could not within `timeout_ms` (supervision goes on)."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise())
        try:
            async with asyncio.timeout(self.config.timeout_ms / 1000):
                await self._ready.wait()
        except TimeoutError:
            raise ServerDown(self._not_running()) from None

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        await self._stop_child()

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        limit_s: float,
        on_notification: NotificationHandler | None = None,
    ) -> dict[str, Any]:
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise())
        request_id: int | None = None
        try:
            async with asyncio.timeout(limit_s):
                if self.state != "ready":
                    if self.state == "down" or self._closed:
                        raise ServerDown(self._not_running())  # exited: fail at once
                    await self._ready.wait()  # a start is under way: wait for it
                request_id = next(self._ids)
                future = asyncio.get_running_loop().create_future()
                self._pending[request_id] = future
                try:
                    await self._write(Request(request_id, method, params))
                    return await future
                finally:
                    self._pending.pop(request_id, None)
        except TimeoutError:
            if request_id is not None and self._ready.is_set():
                with contextlib.suppress(Exception):
                    await self.notify(
                        "notifications/cancelled",
                        {"requestId": request_id, "reason": "the gateway's deadline passed"},
                    )
            if request_id is None:
                raise ServerDown(self._not_running()) from None
            raise ServerTimeout(
                f"MCP server '{self.name}' did not answer '{method[:64]}' within "
                f"{round(limit_s * 1000)} ms"
            ) from None

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._write(Notification(method, params))

    async def _write(self, outgoing: Message) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise ServerDown(self._not_running())
        async with self._write_lock:
            try:
                process.stdin.write(dumps(outgoing) + b"\n")
                await process.stdin.drain()
            except (ConnectionError, RuntimeError):
                raise ServerDown(f"MCP server '{self.name}' stopped reading its input") from None

    def _not_running(self) -> str:
        text = f"MCP server '{self.name}' is not running: {self._down_reason}"
        if self._next_start is not None:
            wait = max(0.0, self._next_start - time.monotonic())
            text += f"; next start in {wait:.1f} s"
        elif self.state == "down" and not self._closed:
            text += "; it is being restarted"
        return text

    # -- supervision ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = self.config.restart.initial_backoff_ms / 1000
        while not self._closed:
            started = time.monotonic()
            self._next_start = None
            self.state = "starting"
            await self._run_child()
            self.state = "down"
            if self._closed:
                return
            if time.monotonic() - started >= self.config.restart.healthy_after_s:
                backoff = self.config.restart.initial_backoff_ms / 1000
            self._next_start = time.monotonic() + backoff
            log.warning(
                "MCP server %r: %s; restarting in %.1f s", self.name, self._down_reason, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.restart.max_backoff_ms / 1000)

    async def _run_child(self) -> None:
        """One child: start, shake hands, serve until it exits."""
        try:
            self._process = await asyncio.create_subprocess_exec(
                self.config.command,
                *self.config.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment(),
                cwd=self.config.cwd,
                limit=self.config.max_message_bytes,
                start_new_session=True,
            )
        except OSError as exc:
            self._down_reason = f"it cannot be started ({exc.strerror or type(exc).__name__})"
            return
        self.starts += 1
        process = self._process
        reader = asyncio.create_task(self._read_stdout(process))
        errors = asyncio.create_task(self._read_stderr(process))
        try:
            try:
                async with asyncio.timeout(self.config.timeout_ms / 1000):
                    await self._handshake()
            except TimeoutError:
                self._down_reason = (
                    f"it did not answer initialize within {self.config.timeout_ms} ms"
                )
                return
            except ServerDown:
                await process.wait()
                self._down_reason = f"it exited with status {process.returncode} before initialize"
                return
            except (ProtocolViolation, RemoteError) as exc:
                self._down_reason = f"its initialize answer was refused ({exc.message[:200]})"
                return
            self._down_reason = "it is starting"
            self.state = "ready"
            self._ready.set()
            await process.wait()
            self.exits += 1
            self._down_reason = f"it exited with status {process.returncode}"
        finally:
            self.state = "down"
            self._ready.clear()
            self.initialize_result = None
            self._fail_pending(ServerDown(f"MCP server '{self.name}' exited during the call"))
            await self._stop_child()
            reader.cancel()
            errors.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, errors)

    async def _handshake(self) -> None:
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._write(Request(request_id, "initialize", initialize_params()))
            result = await future
        finally:
            self._pending.pop(request_id, None)
        self.protocol_version = check_initialize(self.name, result)
        self.initialize_result = result
        await self.notify("notifications/initialized")

    def _environment(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in self.config.inherit_env if name in os.environ}
        env.update({name: value.get_secret_value() for name, value in self.config.env.items()})
        return env

    async def _stop_child(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        grace = self.config.restart.stop_grace_ms / 1000
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await process.wait()
                    return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)  # its own group (start_new_session): only its tree
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace or 1.0):
                await process.wait()

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    # -- reading -------------------------------------------------------------------------

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # longer than `limit`: the stream cannot be resynchronised
                log.warning(
                    "MCP server %r wrote a message larger than %d bytes: restarting it",
                    self.name,
                    self.config.max_message_bytes,
                )
                self._fail_pending(
                    ProtocolViolation(
                        f"MCP server '{self.name}' sent a message larger than "
                        f"{self.config.max_message_bytes} bytes"
                    )
                )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                return
            if not line:  # EOF: nothing more will answer the calls in flight
                if self.state != "down":  # else the supervisor stopped it: its reason stands
                    self.state = "down"
                    self._down_reason = "it closed its output (exiting)"
                self._ready.clear()
                self._fail_pending(ServerDown(f"MCP server '{self.name}' closed its output"))
                return
            if not line.strip():
                continue
            try:
                incoming = parse(line, self._limits)
            except ParseFailure:
                log.info("MCP server %r wrote a line that is not JSON-RPC; skipped", self.name)
                continue
            for one in incoming if isinstance(incoming, list) else [incoming]:
                await self._dispatch(one)

    async def _dispatch(self, incoming: Message) -> None:
        if isinstance(incoming, (Response, Error)):
            future = self._pending.get(incoming.id) if isinstance(incoming.id, int) else None
            if future is None or future.done():
                return  # the answer to a call that was given up on
            if isinstance(incoming, Response):
                future.set_result(incoming.result)
            else:
                future.set_exception(RemoteError(incoming.code, incoming.message, incoming.data))
        elif isinstance(incoming, Notification):
            if self.on_notification is not None:
                self.on_notification(incoming)
        else:
            with contextlib.suppress(ServerDown):
                await self._write(refuse_server_request(incoming))

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            try:
                line = await process.stderr.readline()
            except ValueError:
                chunk = await process.stderr.read(MAX_STDERR_LINE)
                line = chunk + b"..."
            if not line:
                return
            text = line[:MAX_STDERR_LINE].decode("utf-8", "replace").rstrip()
            if text:
                self._stderr_log.info("%s", text)
