"""Driving wrk and reading its report.

wrk is used as shipped by Debian: one thread, a Lua script that only sets the
method, headers and body (a `response()` hook would run Lua per reply and make wrk
the bottleneck), and `--latency` for the percentile table parsed below.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Per-request timeout: a stream through a slow gateway at c=32 can take seconds, and
#: wrk's default (2 s) would report those as errors instead of as latency.
REQUEST_TIMEOUT = "30s"

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s+(\d+) requests in ", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(RuntimeError):
    """wrk could not run, or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
        )


def write_script(path: Path, body: bytes, headers: Mapping[str, str]) -> None:
    """A wrk Lua script POSTing `body` with `headers` (the key among them).

    A long bracket quotes the JSON without escaping; header names and values are
    Lua string literals, so a quote or backslash in them is refused.
    """
    text = body.decode()
    if "]==]" in text:
        raise ValueError("request body cannot be quoted as a Lua long string")
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    for name, value in headers.items():
        if any(c in name + value for c in '"\\\n'):
            raise ValueError(f"header {name!r} cannot be quoted as a Lua string")
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    lines.append(f"wrk.body = [==[{text}]==]")
    path.write_text("\n".join(lines) + "\n")


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int) -> WrkResult:
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={REQUEST_TIMEOUT}",
        "--latency",
        f"-s{script}",
        url,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + 60} s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_wrk(done.stdout)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read the request count, p50/p99 and every kind of error from wrk's report."""
    requests, rps = _REQUESTS.search(output), _RPS.search(output)
    if requests is None or rps is None:
        raise WrkError(f"no request count in wrk output:\n{output}")
    count = int(requests.group(1))
    percentiles = {m.group(1): _to_ms(m.group(2), m.group(3)) for m in _PERCENTILE.finditer(output)}
    if count and set(percentiles) != {"50", "99"}:
        raise WrkError(f"no latency distribution in wrk output:\n{output}")
    sockets = _SOCKET_ERRORS.search(output)
    connect, read, write, timeout = (int(g) for g in sockets.groups()) if sockets else (0,) * 4
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=count,
        rps=float(rps.group(1)),
        # With no completed request wrk prints 0.00us: that is no measurement, not 0 ms.
        p50_ms=percentiles["50"] if count else None,
        p99_ms=percentiles["99"] if count else None,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )
