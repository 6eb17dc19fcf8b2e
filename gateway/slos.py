"""The process's SLO state: the tracker, the Prometheus counts, recent outcomes for
the release gate, and the rebuild from the audit log after a restart.

Lives in `State` (an SLO's windows must outlive config versions: a reload that keeps
an SLO keeps its budget). A request becomes an `Outcome` in the completion hook
(gateway/stages/slo.py); `GET /admin/slo`, `/admin/slo/evaluate`, `/metrics` and the
change freeze (gateway/reload.py) read what is here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from slo.config import SloConfig
from slo.events import Outcome
from slo.state import SloStatus, SloTracker, counting_identity

log = logging.getLogger("seawall.slo")

#: Outcomes kept for `GET /admin/slo/evaluate` (the gate compares a candidate with a
#: baseline over these): the newest, at most this many (~150 bytes each).
RECENT_OUTCOMES = 20_000


class SloState:
    def __init__(self) -> None:
        #: Empty until the first Runtime starts: every SLO is then fresh, and refilled
        #: from the audit log (a restart keeps the budgets).
        self.tracker = SloTracker()
        #: Requests counted, by (SLO, `good` | `bad`): `seawall_slo_events_total`.
        self.counts: dict[tuple[str, str], int] = {}
        self.recent: deque[Outcome] = deque(maxlen=RECENT_OUTCOMES)

    def _register(self, slos: Iterable[SloConfig]) -> None:
        # Both series exist from the start: Prometheus' rate() never counts the first
        # increment of a series born at 1 (slo/rules.py reads both).
        for slo in slos:
            for result in ("good", "bad"):
                self.counts.setdefault((slo.name, result), 0)

    def observe(self, outcome: Outcome) -> None:
        self.recent.append(outcome)
        for name, good in self.tracker.observe(outcome):
            key = (name, "good" if good else "bad")
            self.counts[key] += 1

    def fresh(self, slos: Sequence[SloConfig]) -> list[str]:
        """The SLOs of `slos` that a reconfigure would start empty (new, or changed in
        what they count): the ones to refill from history."""
        tracked = {counting_identity(slo) for slo in self.tracker.slos}
        return [slo.name for slo in slos if counting_identity(slo) not in tracked]

    def reconfigure(
        self, slos: Sequence[SloConfig], history: Sequence[Outcome] | None = None
    ) -> None:
        """Adopt a config version's SLOs (on the event loop); the new or changed ones
        are refilled from `history` (`history`, read off the loop) when given."""
        fresh = self.tracker.reconfigure(slos)
        self._register(slos)
        if fresh and history:
            self.tracker.rebuild(history, fresh)
            if not self.recent:
                self.recent.extend(history[-RECENT_OUTCOMES:])

    def over_budget(self, share: float) -> list[SloStatus]:
        return self.tracker.over_budget(share)


def history(audit: Any, slos: Sequence[SloConfig], since: float | None = None) -> list[Outcome]:
    """The outcomes the audit log recorded since `since` (default: the longest period
    of `slos` ago), oldest first: what refills the windows after a restart, so a
    deploy does not reset an error budget. Reads the index (brought up to date
    first); run it off the loop."""
    from audit.index import AuditIndex

    if not slos:
        return []
    if since is None:
        since = time.time() - max(slo.period_days for slo in slos) * 86400
    started = time.monotonic()
    with AuditIndex(Path(audit.index_path), Path(audit.directory)) as index:
        index.update()
        outcomes = [outcome_of(record) for record in index.records_since(since)]
    log.info(
        "SLO history: %d audit records read in %.1f s", len(outcomes), time.monotonic() - started
    )
    return outcomes


def outcome_of(record: Mapping[str, Any]) -> Outcome:
    """A request's audit record as the SLO machinery sees it (audit/record.py)."""
    policy = record.get("policy") or {}
    chaos = record.get("chaos") or {}
    return Outcome(
        time=float(record["time"]),
        model_group=record.get("model"),
        tenants=tuple(record.get("tenants") or ()),
        status=int(record.get("status") or 0),
        latency_ms=float(record.get("latency_ms") or 0.0),
        config_version=str(record.get("config_version") or ""),
        error=record.get("error"),
        ttft_ms=record.get("ttft_ms"),
        stream=bool(record.get("stream")),
        policy_version=policy.get("version"),
        deployment=record.get("deployment"),
        colour=chaos.get("colour"),
    )
