"""Real Redis and etcd servers for the tests, on free loopback ports with temp dirs.

These are the Debian binaries (`redis-server`, `etcd`), started per use and stopped
after; readiness is the server answering its own protocol, polled with a deadline,
never a fixed sleep. `PACKAGES` is the one list of the Debian packages the suite
needs (the servers, and `node`/`npm` for the Node clients' tests), and
`python -m tests.services install` (what `make deps`, and so `make test` and
`.ci/run`, run first) installs what is missing, or stops before any test runs with
one message naming the packages and the command to install them; then it installs
the pinned npm packages (tests/node_packages.py) and the Helm binary
(tests/helm_binary.py). A fixture that still finds its
binary missing fails loudly (a test that needs Redis must not pass without it).

`kill()` and `restart()` exist for outage tests: the server's data dir and port
survive a restart, so a client that reconnects finds the same server again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

READY_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} was not ready within {READY_TIMEOUT} s")


#: Every program the suite runs, and the Debian package it comes from: the servers it
#: starts, and Node.js with npm for the Node clients (tests/test_frameworks_node.py;
#: a machine that has them from elsewhere, NodeSource's build, keeps its own);
#: `promtool`, which checks and unit-tests the generated SLO rules (slo/rules.py); and
#: `chromium`, in which tests/test_admin_ui.py drives the admin page (Playwright).
PACKAGES = {
    "redis-server": "redis-server",
    "etcd": "etcd-server",
    "node": "nodejs",
    "npm": "npm",
    "promtool": "prometheus",
    "chromium": "chromium",
}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (`make deps` installs it)")
    return path


def missing_packages() -> list[str]:
    """The Debian packages of the binaries not found on PATH."""
    return [package for binary, package in PACKAGES.items() if shutil.which(binary) is None]


def installer() -> list[str] | None:
    """How this process may install Debian packages: apt-get as root, or through
    sudo without a password; None when it may not."""
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    if os.geteuid() == 0:
        return [apt]
    sudo = shutil.which("sudo")
    if (
        sudo is not None
        and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0
    ):
        return [sudo, "-n", apt]
    return None


def install() -> int:
    """Installs the missing servers, or explains in one message how to; 0 when every
    server the suite starts is there."""
    missing = missing_packages()
    if not missing:
        return 0
    command = installer()
    if command is not None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = [*command, "install", "-y", "-q", *missing]
        if subprocess.run(apt, env=env).returncode != 0:
            subprocess.run([*command, "update", "-q"], env=env)
            subprocess.run(apt, env=env)
        missing = missing_packages()
        if not missing:
            return 0
    print(
        "The test suite runs programs that are not installed: "
        f"{', '.join(missing)}. Install them, then run `make test` again:\n"
        f"    sudo apt-get install -y {' '.join(missing)}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    from tests import helm_binary, node_packages

    sys.exit(install() or node_packages.install() or helm_binary.install())


class RedisServer:
    """`redis-server` on 127.0.0.1:<free port>, no persistence, its own temp dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="seawall-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                _binary("redis-server"),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", self.dir,
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.ping, "redis-server", self.proc)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: an outage, not a clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class EtcdServer:
    """A single-member `etcd` on loopback client and peer ports, its own data dir."""

    def __init__(self) -> None:
        self.port = free_port()
        self.peer_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="seawall-etcd-")
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.endpoint}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdServer:
        self.proc = subprocess.Popen(
            [
                _binary("etcd"),
                "--name", "test",
                "--data-dir", self.dir,
                "--listen-client-urls", self.url,
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster", f"test=http://127.0.0.1:{self.peer_port}",
                "--log-level", "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.healthy, "etcd", self.proc)
        return self

    def healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                return b'"health":"true"' in sock.recv(4096)
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def etcd_server() -> Iterator[EtcdServer]:
    server = EtcdServer().start()
    try:
        yield server
    finally:
        server.stop()
