"""Spawning the servers under test, stopping them for sure, and reading their memory.

Every server starts in its own session, hence its own process group: one `killpg`
ends it together with everything it forked (nginx's worker, a uvicorn supervisor),
and a Ctrl-C in the terminal reaches only this script, whose `finally` blocks then
stop the groups instead of leaving half-killed servers behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

#: How long a server gets to exit after SIGTERM before its group is SIGKILLed.
STOP_GRACE_S = 5.0


def free_port() -> int:
    """A loopback port nobody listens on right now (the bind/close race is harmless here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Spawned:
    """A server process; `started` is taken just before the spawn, for time-to-ready."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output, to say why it failed without opening files."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def spawn(
    name: str,
    argv: Sequence[str],
    cwd: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[Spawned]:
    """Run `argv` in a new process group (output to `<log_dir>/<name>.log`), stopped on exit.

    `cwd` is a scratch directory, so nothing a server writes lands in the repository.
    """
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    try:
        yield Spawned(name, process, log_path, started)
    finally:
        stop_group(process)


@contextmanager
def redis_server() -> Iterator[str]:
    """A `redis-server` on a free loopback port with a temporary directory and no
    persistence, answering PING; yields its URL, stops it on the way out."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", scratch,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after the grace period.

    The final SIGKILL also catches members that outlived a leader which exited on
    SIGTERM; it is a no-op (ProcessLookupError) when the group is already gone.
    """
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_GRACE_S)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return stat.rpartition(")")[2].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants, found by walking every /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds used so far by `root` and its live descendants."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all CPUs together have spent busy (not idle, not iowait) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def busy_pct(sample_s: float = 1.0) -> float:
    """How busy the machine is now, in % of one core: other work skews every cell."""
    before = machine_busy_s()
    time.sleep(sample_s)
    return 100 * (machine_busy_s() - before) / sample_s


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_mb(root: int) -> float:
    """Summed VmRSS (MB, 10^6 bytes) of `root` and its descendants.

    Pages shared between them (nginx's master and worker, forked workers) count
    once per process, so the sum is an upper bound on the memory really used.
    """
    return sum(_rss_kib(pid) for pid in process_tree(root)) * 1024 / 1e6
