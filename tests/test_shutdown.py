"""SIGTERM against a real `seawall serve` process: drain, finish, interrupt, no tracebacks.

The streams here are longer than the drain window plus the shutdown timeout on
purpose: they must end with the documented `stream_interrupted` error event, never
a silent cut, and the log must show no CancelledError traceback.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import SeawallProcess, write_config

DRAIN_S = 1.0
SHUTDOWN_S = 2.0
#: The mock streams its reply (which quotes up to 120 characters of the question) in
#: up to `stream_chunks` pieces: a long question makes a long stream.
QUESTION = "word " * 60


def slow_config(chunks: int = 200, chunk_delay_ms: float = 50) -> dict[str, Any]:
    return {
        "server": {"drain_s": DRAIN_S, "shutdown_timeout_s": SHUTDOWN_S},
        "models": [
            {
                "name": "slow",
                "deployments": [
                    {
                        "id": "slow-mock",
                        "provider": "mock",
                        "model": "mock-gpt",
                        "mock": {"stream_chunks": chunks, "chunk_delay_ms": chunk_delay_ms},
                        "timeouts": {"ttft_ms": 30_000, "total_ms": 60_000},
                    }
                ],
            },
            {
                "name": "stuck",
                "deployments": [
                    {
                        "id": "stuck-mock",
                        "provider": "mock",
                        "model": "mock-gpt",
                        "mock": {"latency_ms": 30_000},
                        "timeouts": {"ttft_ms": 60_000, "total_ms": 60_000},
                    }
                ],
            },
        ],
    }


class Gateway:
    def __init__(self, tmp_path: Path, config: dict[str, Any], *extra: str) -> None:
        path = write_config(tmp_path / "seawall.yaml", config)
        self.process = SeawallProcess(["serve", "--config", str(path), "--port", "0", *extra])

    def __enter__(self) -> Gateway:
        self.process.start()
        self.process.wait_ready()
        self.url = self.process.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def signal(self, sig: int) -> None:
        assert self.process.proc is not None
        self.process.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.process.proc is not None
        return self.process.proc.wait(timeout)

    @property
    def log(self) -> str:
        return "".join(self.process.output)


class Stream(threading.Thread):
    """One streaming request, read event by event; `started` is set at its first."""

    def __init__(self, url: str, model: str = "slow") -> None:
        super().__init__(daemon=True)
        self.url = url
        self.model = model
        self.started = threading.Event()
        self.events: list[str] = []
        self.ended_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": self.model,
            "stream": True,
            "messages": [{"role": "user", "content": QUESTION}],
        }
        try:
            with httpx.stream(
                "POST", self.url + "/v1/chat/completions", json=body, timeout=60
            ) as response:
                for line in response.iter_lines():
                    if line:
                        self.events.append(line)
                        self.started.set()
        except BaseException as exc:  # recorded for the assertion, not swallowed
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.started.set()

    @property
    def error_event(self) -> dict[str, Any] | None:
        for index, line in enumerate(self.events):
            if line == "event: error":
                return dict(json.loads(self.events[index + 1].removeprefix("data: ")))
        return None


def streams(url: str, count: int, model: str = "slow") -> list[Stream]:
    started = [Stream(url, model) for _ in range(count)]
    for stream in started:
        stream.start()
    for stream in started:
        assert stream.started.wait(15)
    return started


def test_sigterm_drains_then_interrupts_long_streams(tmp_path: Path) -> None:
    with Gateway(tmp_path, slow_config()) as gateway:
        open_streams = streams(gateway.url, 10)
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        # /readyz turns 503 at once; new requests are still served during the drain.
        deadline = time.monotonic() + 0.5
        while httpx.get(gateway.url + "/readyz", timeout=1).status_code != 503:
            assert time.monotonic() < deadline, "/readyz still 200 after SIGTERM"
        assert httpx.get(gateway.url + "/readyz", timeout=1).json()["status"] == "draining"
        during = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "slow", "messages": [{"role": "user", "content": "late"}]},
            timeout=10,
        )
        assert during.status_code == 200
        for stream in open_streams:
            stream.join(30)
        assert gateway.wait() in (0, -signal.SIGTERM)
    for stream in open_streams:
        assert stream.error is None, stream.error
        error = stream.error_event
        assert error is not None, stream.events[-3:]
        assert error["error"]["code"] == "stream_interrupted"
        assert "data: [DONE]" not in stream.events
        # after the drain and the shutdown timeout, not before, and not much after
        assert DRAIN_S + SHUTDOWN_S - 0.3 <= stream.ended_at - signalled <= DRAIN_S + SHUTDOWN_S + 3
    log = gateway.log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "Exception in ASGI application" not in log


def test_ctrl_c_ends_gracefully_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C at a terminal): the same graceful end, exit 0, and no
    `KeyboardInterrupt` traceback (uvicorn raises the signal again after its shutdown)."""
    with Gateway(tmp_path, slow_config()) as gateway:
        gateway.signal(signal.SIGINT)
        assert gateway.wait() == 0
    assert "Application shutdown complete" in gateway.log
    assert "Traceback" not in gateway.log and "KeyboardInterrupt" not in gateway.log


def test_streams_that_fit_in_the_shutdown_window_finish(tmp_path: Path) -> None:
    # 40 events x 50 ms = 2 s: within drain (1 s) + shutdown timeout (2 s).
    with Gateway(tmp_path, slow_config(chunks=40)) as gateway:
        open_streams = streams(gateway.url, 5)
        gateway.signal(signal.SIGTERM)
        for stream in open_streams:
            stream.join(30)
        gateway.wait()
    for stream in open_streams:
        assert stream.error_event is None
        assert stream.events[-1] == "data: [DONE]"


def test_a_request_still_waiting_at_the_end_gets_a_503(tmp_path: Path) -> None:
    result: dict[str, Any] = {}

    def ask(url: str) -> None:
        body = {"model": "stuck", "messages": [{"role": "user", "content": "x"}]}
        response = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        result["status"] = response.status_code
        result["body"] = response.json()
        result["retry"] = response.headers.get("x-should-retry")

    with Gateway(tmp_path, slow_config()) as gateway:
        asker = threading.Thread(target=ask, args=(gateway.url,), daemon=True)
        asker.start()
        time.sleep(0.3)  # let the request reach the upstream wait; nothing to await here
        gateway.signal(signal.SIGTERM)
        asker.join(30)
        gateway.wait()
    assert result["status"] == 503
    assert result["body"]["error"]["code"] == "server_shutting_down"
    assert result["retry"] == "true"
    assert "Traceback" not in gateway.log


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(tmp_path, slow_config(), "--workers", "2") as gateway:
        yield gateway


def test_workers_drain_and_interrupt_too(two_workers: Gateway) -> None:
    open_streams = streams(two_workers.url, 6)
    two_workers.signal(signal.SIGTERM)
    for stream in open_streams:
        stream.join(30)
    assert two_workers.wait() == 0
    for stream in open_streams:
        error = stream.error_event
        assert error is not None and error["error"]["code"] == "stream_interrupted"
    assert "Traceback" not in two_workers.log
