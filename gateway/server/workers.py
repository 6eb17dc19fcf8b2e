"""`--workers N`: N server processes sharing one listening socket.

uvicorn's own supervisor builds plain `uvicorn.Server`s in its workers, so it cannot
run the gateway's drain-aware server; this one is small enough to own. The parent
binds the socket, starts the workers (spawned, each loading the config itself), and
on SIGTERM or SIGINT passes the signal on and waits for every worker to drain and
finish (each does what a single process does; see serve.py). A worker that dies
while the gateway is serving is replaced; one that cannot even start (a config that
no longer loads, a crash at import) stops the whole gateway instead of looping.

One scrape of `/metrics` shows every worker (gateway/metrics.py): the parent makes a
directory the workers share (`SEAWALL_METRICS_DIR`), where each writes its metrics
as `live-PID.json`; when a worker dies the parent renames its file `dead-PID.json`
(its counters still count, its gauges no longer), and removes the directory at exit.
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
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from gateway.server.serve import ServeOptions, configure_logging

log = logging.getLogger("seawall")

#: A worker that exits within this many seconds of its start failed to start.
STARTUP_GRACE_S = 10.0
#: How often the parent looks at its workers.
POLL_S = 0.2
#: The environment variable naming the directory the workers share their metrics in.
METRICS_DIR_ENV = "SEAWALL_METRICS_DIR"


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


#: What a worker runs once detached: load the config, build the app, serve until
#: signalled (`gateway.boot.boot`). A top-level function: spawned workers receive it
#: by reference.
Boot = Callable[[ServeOptions, socket.socket], None]


def worker_main(options: ServeOptions, sock: socket.socket, parent: int, boot: Boot) -> None:
    """A worker process: detach, then boot."""
    detach_from_terminal(parent)
    boot(options, sock)


class Supervisor:
    def __init__(
        self, options: ServeOptions, sock: socket.socket, stop_timeout_s: float, boot: Boot
    ) -> None:
        self.options = options
        self.sock = sock
        self.boot = boot
        #: How long the parent waits for a signalled worker before killing it.
        self.stop_timeout_s = stop_timeout_s
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[tuple[BaseProcess, float]] = []
        self.stopping: int | None = None  # the signal that asked us to stop
        #: Where the workers share their metrics (inherited through the environment).
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="seawall-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(self.metrics_dir)

    def _start(self, index: int) -> tuple[BaseProcess, float]:
        process = self.context.Process(
            target=worker_main,
            args=(replace(self.options, worker=index), self.sock, os.getpid(), self.boot),
            name="seawall-worker",
        )
        process.start()
        return process, time.monotonic()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stopping is None:
            self.stopping = sig
            for process, _ in self.workers:
                if process.pid is not None and process.is_alive():
                    os.kill(process.pid, sig)
        elif sig == signal.SIGINT:
            for process, _ in self.workers:  # a second Ctrl-C: now
                process.kill()

    def run(self) -> int:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.workers = [self._start(index) for index in range(self.options.workers)]
        log.info("started %d worker processes", len(self.workers))
        status = 0
        while self.stopping is None:
            time.sleep(POLL_S)
            for index, (process, started) in enumerate(self.workers):
                if process.is_alive() or self.stopping is not None:
                    continue
                if time.monotonic() - started < STARTUP_GRACE_S:
                    log.error(
                        "worker %s exited with %s during start-up; stopping the gateway",
                        process.pid,
                        process.exitcode,
                    )
                    self._on_signal(signal.SIGTERM, None)
                    status = 1
                    break
                log.warning(
                    "worker %s died (exit %s); starting a new one", process.pid, process.exitcode
                )
                mark_dead(self.metrics_dir, process.pid)
                self.workers[index] = self._start(index)
        deadline = time.monotonic() + self.stop_timeout_s
        for process, _ in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        return status


def run_workers(
    options: ServeOptions, sock: socket.socket, stop_timeout_s: float, boot: Boot
) -> int:
    configure_logging(options)
    return Supervisor(options, sock, stop_timeout_s, boot).run()
