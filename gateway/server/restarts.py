"""`--workers N`: when a dead worker is replaced, and how the restarts are counted.

The policy (docs/configuration.md, "Worker processes"):

- A worker of the first generation that exits by itself before it ever served (a
  config that no longer loads, a crash at import, an app that cannot start) is a
  start-up failure: the gateway stops with that worker's exit status, since its
  replacement would fail the same way.
- Any other death is replaced, whatever killed it and however soon: the OOM killer
  twice in a row, a crash, a replacement that cannot start (the others still serve).
  The replacement waits `BACKOFF_BASE_S`, doubled for each death in a row of the
  same worker, at most `BACKOFF_MAX_S`; a worker that lived `STABLE_S` starts the
  count again. A worker never waits long for one crash, and a worker that cannot
  start costs one attempt every `BACKOFF_MAX_S`, not a busy loop.

The supervisor cannot serve `/metrics` (it runs no app), so it writes its counter
where the workers share their metrics, in their snapshot format (gateway/metrics.py
merges every `*.json` there; a file not named `live-` has its counters summed):
whichever worker answers a scrape shows `seawall_worker_restarts_total`.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

#: The first replacement of a worker waits this long ...
BACKOFF_BASE_S = 0.5
#: ... doubled for each death in a row, up to this.
BACKOFF_MAX_S = 30.0
#: A worker that lived this long before dying resets its backoff.
STABLE_S = 60.0
#: The supervisor's file among the workers' metrics.
RESTARTS_FILE = "supervisor.json"
RESTARTS_METRIC = "seawall_worker_restarts"
#: The causes every worker has a series for from the start (0), so that `rate()` sees
#: the first restart (a series born at 1 has no increase to show): the OOM killer's
#: signal, and an exit. Other signals get their series when they happen.
SEEDED_CAUSES = ("SIGKILL", "exit")


def restart_delay(deaths_in_a_row: int) -> float:
    """How long the replacement waits after its worker's `deaths_in_a_row`-th quick
    death (1 for the first): 0.5, 1, 2, 4, ... 30 s."""
    exponent = min(max(deaths_in_a_row, 1) - 1, 16)  # 2**16 x 0.5 s is past any maximum
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**exponent)


def cause(exitcode: int) -> str:
    """The metric's label for how a worker ended: the signal's name (`SIGKILL`: the OOM
    killer, or an operator) or `exit` (it exited by itself, whatever the status)."""
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return "exit"


def describe(exitcode: int) -> str:
    """How a worker ended, for the log line: `killed by SIGKILL` or `exited with 3`."""
    return f"killed by {cause(exitcode)}" if exitcode < 0 else f"exited with {exitcode}"


class Restarts:
    """The supervisor's restart counter, by worker number and cause, written for the
    workers to publish (None: no metrics directory, nothing written)."""

    def __init__(self, directory: Path | None, workers: int) -> None:
        self.directory = directory
        self.counts: Counter[tuple[int, str]] = Counter(
            {(worker, why): 0 for worker in range(workers) for why in SEEDED_CAUSES}
        )
        self.write()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, worker: int, exitcode: int) -> None:
        self.counts[worker, cause(exitcode)] += 1
        self.write()

    def snapshot(self) -> list[dict[str, object]]:
        """One counter family, as gateway/metrics.py's `_snapshot` writes them."""
        samples = [
            [f"{RESTARTS_METRIC}_total", {"worker": str(worker), "cause": why}, float(n)]
            for (worker, why), n in sorted(self.counts.items())
        ]
        doc = "Worker processes replaced after they died, by worker number and cause."
        return [{"name": RESTARTS_METRIC, "type": "counter", "doc": doc, "samples": samples}]

    def write(self) -> None:
        if self.directory is None:
            return
        path = self.directory / RESTARTS_FILE
        temporary = path.with_suffix(".tmp")  # not `*.json`: never read half-written
        temporary.write_text(json.dumps(self.snapshot()))
        os.replace(temporary, path)
