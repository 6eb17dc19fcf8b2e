"""`--workers 2` under an orchestrator (gateway/server/workers.py, restarts.py): after
the drain new connections are refused at once, never left hanging; a worker killed
twice in a row is replaced both times, counted and logged; a worker of the first
generation that cannot start stops the gateway; connections spread over the workers.

Workers are told apart by the per-process prefix of `x-seawall-request-id`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SeawallProcess, gateway_config, mock_group, write_config
from tests.test_shutdown import Gateway, slow_config, streams

#: Fresh connections in the spread test, and the share neither worker may fall below.
CONNECTIONS = 200
MIN_SHARE = 0.3
#: How long a connection attempt after the drain may take to be refused (or answered).
REFUSED_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeawallProcess]:
    """One gateway for the spread and the restart tests (each leaves both workers
    serving)."""
    config = gateway_config(mock_group(), server={"drain_s": 0.2, "shutdown_timeout_s": 1})
    path = write_config(tmp_path_factory.mktemp("workers") / "seawall.yaml", config)
    process = SeawallProcess(["serve", "--config", str(path), "--port", "0", "--workers", "2"])
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def worker_of(url: str) -> str:
    """Which worker answers a fresh connection: `GET /healthz` over a new socket with
    `Connection: close`, the prefix of its request id (raw, so that 200 connections
    cost the client little of the machine the workers share)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    match = re.search(rb"x-seawall-request-id: ([0-9a-f]+)-\d+", data)
    assert match, data[:200]
    return match.group(1).decode()


def wait_both_serving(url: str, timeout: float = 20) -> None:
    """Until fresh connections have reached two workers (a worker listens only once it
    serves, so both answering means both serve)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {seen} answered"
        with contextlib.suppress(OSError):
            seen.add(worker_of(url))
        time.sleep(0.02)


def restarts(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (sample.labels["worker"], sample.labels["cause"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "seawall_worker_restarts_total"
    }


def test_connections_spread_evenly_over_the_workers(two_workers: SeawallProcess) -> None:
    """One `SO_REUSEPORT` listener per worker: the kernel hashes each connection's
    addresses, so 200 fresh connections split like coin flips (standard deviation 7);
    30% is more than 5 deviations below half."""
    url = two_workers.url
    wait_both_serving(url)
    with ThreadPoolExecutor(16) as pool:
        counts = Counter(pool.map(lambda _: worker_of(url), range(CONNECTIONS)))
    assert len(counts) == 2, counts
    assert min(counts.values()) >= MIN_SHARE * CONNECTIONS, counts


def log_line(process: SeawallProcess, pattern: str, timeout: float = 15) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        for line in list(process.output):
            match = re.search(pattern, line)
            if match:
                return match
        assert time.monotonic() < deadline, f"no line matching {pattern!r}"
        time.sleep(0.02)


def chat(url: str) -> int:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=10).status_code


def worker_pids(process: SeawallProcess, number: int) -> list[int]:
    """The pids the supervisor logged for worker `number`, oldest first."""
    pattern = rf"worker {number} (?:replacement )?started \(pid (\d+)\)"
    return [int(pid) for pid in re.findall(pattern, "".join(process.output))]


def next_pid(process: SeawallProcess, number: int, count: int, timeout: float = 15) -> int:
    """The pid of worker `number`'s `count`-th process, once the supervisor started it."""
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(process, number)) < count:
        assert time.monotonic() < deadline, "".join(process.output)
        time.sleep(0.02)
    return pids[count - 1]


def test_a_worker_killed_twice_in_a_row_is_replaced_both_times(
    two_workers: SeawallProcess,
) -> None:
    url = two_workers.url
    wait_both_serving(url)
    counted = restarts(url)
    before = counted[("0", "SIGKILL")]
    assert counted[("1", "exit")] == 0  # every worker's series exist from the start
    generation = len(worker_pids(two_workers, 0))
    first = worker_pids(two_workers, 0)[-1]
    os.kill(first, signal.SIGKILL)  # what the OOM killer sends
    second = next_pid(two_workers, 0, generation + 1)
    assert chat(url) == 200  # the other worker serves meanwhile
    os.kill(second, signal.SIGKILL)  # again, within the replacement's first second
    third = next_pid(two_workers, 0, generation + 2)
    assert chat(url) == 200
    wait_both_serving(url)  # the third serves
    assert two_workers.proc is not None and two_workers.proc.poll() is None
    assert len({first, second, third}) == 3
    # one line per restart, with the signal; the backoff doubled for the second
    delays = [
        float(
            log_line(
                two_workers, rf"worker 0 \(pid {pid}\) killed by SIGKILL.* in ([\d.]+) s"
            ).group(1)
        )
        for pid in (first, second)
    ]
    assert delays[1] == 2 * delays[0], delays
    # whichever worker answers the scrape shows the supervisor's count
    deadline = time.monotonic() + 10
    while restarts(url).get(("0", "SIGKILL"), 0.0) != before + 2:
        assert time.monotonic() < deadline, restarts(url)
        time.sleep(0.1)


def probe(url: str) -> tuple[str, float]:
    """A new connection and request: how it ended (`refused`, or the status) and how
    long that took. A timeout is the failure this file exists for."""
    started = time.monotonic()
    try:
        outcome = str(httpx.get(url + "/healthz", timeout=REFUSED_WITHIN_S * 3).status_code)
    except httpx.ConnectError:
        outcome = "refused"
    except httpx.TransportError as exc:  # a timeout, or a reset after a wait in a backlog
        outcome = type(exc).__name__
    return outcome, time.monotonic() - started


def test_after_the_drain_new_connections_are_refused_at_once(tmp_path: Path) -> None:
    """Streams in flight keep both workers (and the gateway) up for the shutdown
    timeout after the drain; in that time a new connection must not wait in a backlog
    nobody accepts from."""
    with Gateway(tmp_path, slow_config(), "--workers", "2") as gateway:
        open_streams = streams(gateway.url, 4)
        gateway.signal(signal.SIGTERM)
        assert gateway.process.proc is not None
        during = probe(gateway.url)
        # The drain ends 1 s after the signal; the streams are interrupted 2 s later.
        deadline = time.monotonic() + 15
        while gateway.log.count("Shutting down") < 2:  # both drains over
            assert time.monotonic() < deadline, gateway.log
            time.sleep(0.02)
        outcomes = []
        for _ in range(5):
            outcomes.append(probe(gateway.url))
            time.sleep(0.1)
        alive = gateway.process.proc.poll() is None
        for stream in open_streams:
            stream.join(30)
        assert gateway.wait() == 0
    assert during[0] == "200", during  # served while draining
    for outcome, took in outcomes:
        assert outcome in ("refused", "503"), outcomes
        assert took < REFUSED_WITHIN_S, outcomes
    assert alive, "the gateway exited before the probes were done: nothing was tested"
    for stream in open_streams:
        error = stream.error_event
        assert error is not None and error["error"]["code"] == "stream_interrupted"


SITECUSTOMIZE = """\
import os, sys
if "--multiprocessing-fork" in sys.argv:  # a worker: its config no longer loads
    os.environ.pop("SEAWALL_TEST_TOKEN", None)
"""


def test_a_first_generation_worker_that_cannot_start_stops_the_gateway(tmp_path: Path) -> None:
    """The supervisor loaded the config, but its workers cannot (an `env:` secret the
    workers do not see, as when the config changed in between): exit 2, the worker's
    own status, at once rather than a restart loop."""
    config: dict[str, Any] = gateway_config(
        mock_group(), keys=[{"id": "team", "key": "env:SEAWALL_TEST_TOKEN", "roles": ["user"]}]
    )
    path = write_config(tmp_path / "seawall.yaml", config)
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {"SEAWALL_TEST_TOKEN": "t" * 32, "PYTHONPATH": str(tmp_path)}
    process = SeawallProcess(
        ["serve", "--config", str(path), "--port", "0", "--workers", "2"], env=env
    )
    started = time.monotonic()
    code, output = process.run_to_exit(timeout=30)
    assert code == 2, output
    assert time.monotonic() - started < 15, output
    assert "before it served: a start-up failure; stopping the gateway" in output
    assert "SEAWALL_TEST_TOKEN" in output  # the worker's own reason is shown
    assert "Traceback" not in output
    assert "restarting it" not in output


def test_the_restart_policy_is_bounded() -> None:
    from gateway.server.restarts import BACKOFF_MAX_S, cause, describe, restart_delay

    assert [restart_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 30]
    assert restart_delay(10_000) == BACKOFF_MAX_S
    assert (cause(-9), describe(-9), cause(3), describe(3)) == (
        "SIGKILL", "killed by SIGKILL", "exit", "exited with 3"
    )  # fmt: skip
