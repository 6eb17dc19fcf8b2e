"""Real servers on loopback for the tests: uvicorn in a thread, or a `seawall` process.

Ports are never guessed: a socket is bound to port 0 first and handed to uvicorn,
so parallel test runs cannot collide. Readiness is an event set by uvicorn's own
startup (or, for a subprocess, the line it prints), never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn
import uvloop
import yaml

from gateway.app import create_app
from gateway.config import ServerConfig, parse_config
from gateway.drain import Drain
from gateway.server.serve import GatewayServer, ServeOptions, uvicorn_config

STARTUP_TIMEOUT = 30.0


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class _Server(GatewayServer):
    """The production server (guarded protocol, drain) that tells the test when it
    is listening."""

    def __init__(
        self, config: uvicorn.Config, ready: threading.Event, drain: Drain, server: ServerConfig
    ) -> None:
        super().__init__(config, drain, server)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()


class ServerThread:
    """Runs an ASGI app on a real loopback socket in a background thread.

    A seawall app runs on exactly what `seawall serve` runs (the guarded httptools
    protocol, with the app's `server:` limits); any other app (fake upstreams) on
    plain uvicorn with httptools.
    """

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        self.app = app
        self.sock = bound_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        gateway = getattr(getattr(app, "state", None), "gateway", None)
        if gateway is not None:
            server = gateway.config.server
            options = ServeOptions(host="127.0.0.1", port=self.port, log_level="warning")
            config = uvicorn_config(app, server, options)
            drain = gateway.drain
        else:
            config = uvicorn.Config(
                app, lifespan=lifespan, log_level="warning", access_log=False, http="httptools"
            )
            server, drain = ServerConfig(), Drain()
        self.server = _Server(config, self._ready, drain, server)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced by start()
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT) or not self.server.started:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(STARTUP_TIMEOUT)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeClock:
    """A clock for the gateway's health bookkeeping that tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def running_gateway(
    config: dict[str, Any], clock: Callable[[], float] | None = None
) -> Iterator[ServerThread]:
    # The documents too, so version #1 can be rolled back to with its secrets.
    documents = {"config.yaml": yaml.safe_dump(config)}
    parsed = parse_config(config, "<test>")
    app = create_app(parsed, clock, documents) if clock else create_app(parsed, documents=documents)
    with ServerThread(app) as server:
        yield server


def sdk(base: str) -> openai.OpenAI:
    """The official SDK pointed at a server root, with its own retries off."""
    return openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key="unused", max_retries=0)


def scripted_deployment(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """An OpenAI-compatible deployment of a scripted upstream at `url`: one attempt, a
    breaker that opens after 2 failures (`extra` overrides either)."""
    return {
        "id": name,
        "provider": "openai",
        "model": "m",
        "api_base": url + "/v1",
        "retry": {"attempts": 1},
        "breaker": {"consecutive_failures": 2, "open_seconds": 60},
        **extra,
    }


def one_deployment(group: str, **deployment: Any) -> dict[str, Any]:
    """A config with one model group of one deployment."""
    return {"models": [{"name": group, "deployments": [deployment]}]}


RECEIPT_SECRET = "a-receipt-secret-of-32-characters"


def tool_stack_config(model_url: str, *tools: dict[str, Any]) -> dict[str, Any]:
    """Group `g` of one OpenAI-compatible deployment at `model_url` (a scripted model),
    the registered `tools`, and a receipt key, as the tool tests run them."""
    deployment = {"api_base": model_url + "/v1", "api_key": "sk-x"}
    return {
        **one_deployment("g", id="model", provider="openai", model="m", **deployment),
        "tools": list(tools),
        "receipts": {"keys": [{"id": "k1", "secret": RECEIPT_SECRET}]},
    }


def gateway_config(*groups: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"models": list(groups), **extra}


def mock_group(name: str = "demo", *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    if not deployments:
        deployments = ({"id": f"{name}-mock", "provider": "mock", "model": "mock-gpt"},)
    return {"name": name, "deployments": list(deployments), **extra}


class SeawallProcess:
    """`seawall ...` as a real subprocess; ready when uvicorn prints its address."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "gateway", *args]
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def start(self, ready_marker: str = "seawall listening on") -> SeawallProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            while True:
                line = self.lines.get(timeout=STARTUP_TIMEOUT)
                if line is None:
                    raise RuntimeError("seawall exited before ready:\n" + "".join(self.output))
                if ready_marker in line:
                    return self
        except BaseException:
            # Never ready (or the test was interrupted): no process outlives the test.
            self.proc.kill()
            self.proc.wait()
            raise

    @property
    def url(self) -> str:
        """Its loopback URL, from the address it printed (`--port 0` picks a free one)."""
        line = next(x for x in self.output if "seawall listening on" in x)
        match = re.search(r"http://[\d.]+:(\d+)", line)
        assert match, line
        return f"http://127.0.0.1:{match.group(1)}"

    def wait_ready(self, timeout: float = 30) -> httpx.Response:
        """Polls `/readyz` until it answers 200 (the config is built and its pools are
        started), and returns that answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = httpx.get(self.url + "/readyz", timeout=1)
                if ready.status_code == 200:
                    return ready
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "seawall never became ready"
            time.sleep(0.05)

    def run_to_exit(self, timeout: float = STARTUP_TIMEOUT) -> tuple[int, str]:
        result = subprocess.run(
            self.args, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        return result.returncode, result.stdout + result.stderr

    def stop(self, *, drain: bool = True) -> None:
        """SIGTERM, as an orchestrator stops a pod (killed if not gone in 10 s).

        `drain=False` skips the wait of the drain that SIGTERM starts (`server.drain_s`,
        5 s by default, most of what a test of a served process costs): a second
        SIGTERM ends it early (gateway/server/serve.py), and the shutdown that follows
        is the same. For one `seawall serve` process; a `--workers` supervisor does
        not act on a second SIGTERM, so it still drains."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            if not drain:
                self._end_drain()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _end_drain(self) -> None:
        """The second SIGTERM, once `/readyz` answers 503: the first was handled then
        (two signals sent together may be handled as one)."""
        assert self.proc is not None
        if not any("seawall listening on" in line for line in self.output):
            return  # not a `seawall serve` process: no drain to end
        deadline = time.monotonic() + 10
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 503:
                    break
            except httpx.ConnectError:
                break  # the listener is closed: the shutdown is under way already
            except httpx.HTTPError:
                pass  # slow to answer: asked again until the deadline
            time.sleep(0.02)
        self.proc.terminate()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
