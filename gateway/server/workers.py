"""`--workers N`: N server processes, each with a listener of its own on one port.

uvicorn's own supervisor builds plain `uvicorn.Server`s in its workers, so it cannot
run the gateway's drain-aware server; this one is small enough to own. The parent
starts the workers (spawned, each loading the config itself) and on SIGTERM or SIGINT
passes the signal on and waits for every worker to drain and finish (each does what a
single process does; see serve.py). A dead worker is replaced with backoff; only a
first-generation worker that cannot start stops the gateway (gateway/server/restarts.py).

Sockets. On Linux each worker binds its own socket with `SO_REUSEPORT` and listens on
it once its app is built; the kernel spreads new connections over the listening
sockets by a hash of the connection's addresses, so each worker gets its share (one
shared socket let whichever worker woke first take a whole burst). The parent keeps
the port with a socket it binds the same way but never listens on: the kernel gives
it no connection, `--port 0` keeps the port it printed across worker restarts, and a
plain `seawall serve` on that port still fails as "in use". When the workers close
their listeners at the end of the drain nothing listens any more, so a new connection
is refused at once. Elsewhere (no `SO_REUSEPORT`) the workers share the parent's
socket, and the parent closes its copy as soon as it is told to stop, so the last
worker to close its copy closes the listener.

One scrape of `/metrics` shows every worker (gateway/metrics.py): the parent makes a
directory the workers share (`SEAWALL_METRICS_DIR`), where each writes its metrics
as `live-PID.json`; when a worker dies the parent renames its file `dead-PID.json`
(its counters still count, its gauges no longer), writes its own restart counter
there (`restarts.RESTARTS_FILE`), and removes the directory at exit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

from gateway.server.restarts import STABLE_S, Restarts, describe, restart_delay
from gateway.server.serve import ServeOptions, bind, configure_logging

log = logging.getLogger("seawall")

#: The longest the parent sleeps between looks at its workers (a death wakes it).
POLL_S = 0.2
#: The environment variable naming the directory the workers share their metrics in.
METRICS_DIR_ENV = "SEAWALL_METRICS_DIR"
#: One listener per worker (`SO_REUSEPORT` balances connections only on Linux; BSDs
#: and macOS accept the option but do not spread connections).
REUSE_PORT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def live_file(directory: Path, pid: int) -> Path:
    return directory / f"live-{pid}.json"


def dead_file(directory: Path, pid: int) -> Path:
    return directory / f"dead-{pid}.json"


def worker_pid(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


def mark_dead(directory: Path, pid: int | None) -> None:
    """A dead worker's metrics: its counters still count, its gauges no longer."""
    if pid is not None:
        with contextlib.suppress(FileNotFoundError):  # it never wrote one
            os.replace(live_file(directory, pid), dead_file(directory, pid))


def detach_from_terminal(parent: int) -> None:
    """A worker leaves the terminal's process group, so Ctrl-C reaches only the parent,
    which passes exactly one signal on (two would force an exit); and it asks the
    kernel for SIGTERM if the parent dies, so no worker outlives its supervisor."""
    os.setpgrp()
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        raise SystemExit(1)


def keep_port(sock: socket.socket, host: str) -> socket.socket:
    """The parent's socket for `SO_REUSEPORT` workers: `sock` (bound and listening,
    which proved the port free and picked it for `--port 0`) is replaced by one bound
    to the same port with `SO_REUSEPORT` and never listening. Between the close and
    the bind another program could take the port; then this raises (`EADDRINUSE`)."""
    port = sock.getsockname()[1]
    sock.close()
    return bind(host, port, reuse_port=True, listen=False)


#: What a worker runs once detached: load the config, build the app, serve until
#: signalled (`gateway.boot.boot`). A top-level function: spawned workers receive it
#: by reference.
Boot = Callable[[ServeOptions, socket.socket], None]


def worker_main(
    options: ServeOptions, shared: socket.socket | None, parent: int, boot: Boot, serving: Event
) -> None:
    """A worker process: detach, bind its own socket (unless it shares the parent's),
    boot, and say when it serves."""
    detach_from_terminal(parent)
    sock = shared
    if sock is None:
        try:
            sock = bind(options.host, options.port, reuse_port=True, listen=False)
        except OSError as exc:
            print(
                f"seawall: worker {options.worker} cannot listen on "
                f"{options.host}:{options.port}: {exc.strerror}",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    boot(replace(options, on_serving=serving.set), sock)


@dataclass(slots=True)
class Worker:
    """One of the N places: its current process (None while a replacement waits out
    its backoff) and what the restart policy needs to know about it."""

    number: int
    process: BaseProcess | None = None
    started: float = 0.0
    #: Set by the process once its server accepts connections.
    serving: Event | None = None
    #: Still the process of the first generation (not a replacement).
    first: bool = True
    #: Quick deaths in a row (each within `STABLE_S` of its start).
    deaths: int = 0
    #: When the replacement starts (monotonic).
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self, options: ServeOptions, sock: socket.socket, stop_timeout_s: float, boot: Boot
    ) -> None:
        self.boot = boot
        #: How long the parent waits for a signalled worker before killing it.
        self.stop_timeout_s = stop_timeout_s
        self.context = multiprocessing.get_context("spawn")
        if REUSE_PORT:
            self.sock = keep_port(sock, options.host)
            self.shared: socket.socket | None = None
            # the workers bind the concrete port, not `--port 0`
            self.options = replace(options, port=self.sock.getsockname()[1])
        else:
            self.sock = self.shared = sock
            self.options = options
        self.workers = [Worker(number) for number in range(options.workers)]
        self.stopping: int | None = None  # the signal that asked us to stop
        self.signalled: set[int] = set()
        #: Where the workers share their metrics (inherited through the environment).
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="seawall-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(self.metrics_dir)
        self.restarts = Restarts(self.metrics_dir, options.workers)

    def _start(self, worker: Worker) -> None:
        if self.stopping is not None:  # signalled since the loop looked
            return
        worker.serving = self.context.Event()
        process = self.context.Process(
            target=worker_main,
            args=(
                replace(self.options, worker=worker.number),
                self.shared,
                os.getpid(),
                self.boot,
                worker.serving,
            ),
            name="seawall-worker",
        )
        process.start()
        worker.process, worker.started = process, time.monotonic()
        kind = "started" if worker.first else "replacement started"
        log.info("worker %d %s (pid %s)", worker.number, kind, process.pid)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stopping is None:
            self.stopping = sig
            if self.shared is not None:
                self.shared.close()  # the workers' copies are the listener now
            self._forward(sig)
        elif sig == signal.SIGINT:
            for worker in self.workers:  # a second Ctrl-C: now
                if worker.process is not None and worker.process.is_alive():
                    worker.process.kill()

    def _forward(self, sig: int) -> None:
        """Passes the stop signal to every worker not yet told (one started while the
        signal arrived is told after the loop)."""
        for worker in self.workers:
            process = worker.process
            if process is None or process.pid is None or process.pid in self.signalled:
                continue
            if process.is_alive():
                self.signalled.add(process.pid)
                os.kill(process.pid, sig)

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for worker in self.workers:
            self._start(worker)
        status = 0
        while self.stopping is None and not status:
            wait([w.process.sentinel for w in self.workers if w.process is not None], POLL_S)
            for worker in self.workers:
                if self.stopping is not None:
                    break
                if worker.process is None:
                    if time.monotonic() >= worker.restart_at:
                        self._start(worker)
                elif not worker.process.is_alive():
                    status = self._died(worker)
                    if status:
                        self._on_signal(signal.SIGTERM, None)
                        break
        if self.stopping is not None:
            self._forward(self.stopping)
        deadline = time.monotonic() + self.stop_timeout_s
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        return status

    def _died(self, worker: Worker) -> int:
        """A worker's process ended while the gateway serves: the gateway's exit status
        if that stops it (a first-generation start-up failure), else 0 and a
        replacement scheduled."""
        process = worker.process
        assert process is not None and worker.serving is not None
        code = process.exitcode if process.exitcode is not None else 1
        now = time.monotonic()
        mark_dead(self.metrics_dir, process.pid)
        if worker.first and not worker.serving.is_set() and code >= 0:
            log.error(
                "worker %d (pid %s) %s before it served: a start-up failure; stopping the gateway",
                worker.number,
                process.pid,
                describe(code),
            )
            return code or 1
        lived = now - worker.started
        worker.deaths = 1 if lived >= STABLE_S else worker.deaths + 1
        delay = restart_delay(worker.deaths)
        self.restarts.count(worker.number, code)
        log.warning(
            "worker %d (pid %s) %s after %.1f s; restarting it in %.1f s (death %d in a "
            "row, restart %d since the gateway started)",
            worker.number,
            process.pid,
            describe(code),
            lived,
            delay,
            worker.deaths,
            self.restarts.total,
        )
        worker.process, worker.first, worker.restart_at = None, False, now + delay
        return 0


def run_workers(
    options: ServeOptions, sock: socket.socket, stop_timeout_s: float, boot: Boot
) -> int:
    configure_logging(options)
    try:
        supervisor = Supervisor(options, sock, stop_timeout_s, boot)
    except OSError as exc:
        log.error("cannot keep port %s:%s: %s", options.host, options.port, exc.strerror)
        return 1
    return supervisor.run()
