"""Every configured SLO's windows in one place: what the gateway feeds completed requests
into and reads `/admin/slo`, metrics and the change freeze from.

A reload keeps the counts of an SLO whose counting is unchanged: same name, kind,
period, selectors (model group, tenant) and latency threshold. The objective is not
part of that identity: it changes how the counts are judged (the error budget), not
what was counted, so a new objective applies at once to the history already seen.
Anything else starts empty; `rebuild` refills chosen SLOs from recorded outcomes
(the audit index) so a changed SLO need not wait a period to mean something.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slo.config import DEFAULT_FREEZE_AT, STANDARD_ALERTS, SloConfig, SloKind
from slo.events import Outcome, classify
from slo.windows import (
    DEFAULT_BUCKET_S,
    STANDARD_WINDOWS_S,
    Clock,
    RollingWindows,
    scaled_threshold,
    window_label,
)

SECONDS_PER_DAY = 86400
#: Worst first: the order `SloStatus.severity` picks from.
SEVERITIES = ("page", "ticket")


def counting_identity(slo: SloConfig) -> tuple[object, ...]:
    """What must stay the same for an SLO's counts to stay valid across a reload."""
    return (slo.name, slo.kind, slo.period_days, slo.model_group, slo.tenant, slo.threshold_ms)


@dataclass(frozen=True, slots=True)
class WindowStatus:
    window_s: int
    samples: int
    bad: int
    error_ratio: float
    burn_rate: float

    def describe(self) -> dict[str, Any]:
        return {
            "window": window_label(self.window_s),
            "window_s": self.window_s,
            "samples": self.samples,
            "bad": self.bad,
            "error_ratio": self.error_ratio,
            "burn_rate": self.burn_rate,
        }


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """One STANDARD_ALERTS row, evaluated: fires when both windows burn above the
    threshold (scaled to the SLO's period)."""

    severity: str
    threshold: float
    long_window_s: int
    short_window_s: int
    long_burn_rate: float
    short_burn_rate: float
    firing: bool

    def describe(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "threshold": self.threshold,
            "long_window": window_label(self.long_window_s),
            "short_window": window_label(self.short_window_s),
            "long_burn_rate": self.long_burn_rate,
            "short_burn_rate": self.short_burn_rate,
            "firing": self.firing,
        }


@dataclass(frozen=True, slots=True)
class SloStatus:
    slo: SloConfig
    #: Every standard window and the period, shortest first (a window longer than
    #: the period reads the period).
    windows: tuple[WindowStatus, ...]
    budget_consumed: float
    budget_remaining: float
    #: Good + bad over the period.
    samples: int
    alerts: tuple[AlertStatus, ...]

    @property
    def name(self) -> str:
        return self.slo.name

    @property
    def kind(self) -> SloKind:
        return self.slo.kind

    @property
    def burn_rates(self) -> dict[int, float]:
        """window seconds -> burn rate."""
        return {w.window_s: w.burn_rate for w in self.windows}

    @property
    def firing(self) -> tuple[AlertStatus, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def severity(self) -> str | None:
        """The worst severity firing ("page" over "ticket"), None when none is."""
        firing = {a.severity for a in self.firing}
        return next((s for s in SEVERITIES if s in firing), None)

    def describe(self) -> dict[str, Any]:
        """JSON-ready, for `/admin/slo`."""
        slo = self.slo
        return {
            "name": slo.name,
            "kind": slo.kind,
            "objective": slo.objective,
            "error_budget": slo.error_budget,
            "period_days": slo.period_days,
            "model_group": slo.model_group,
            "tenant": slo.tenant,
            "threshold_ms": slo.threshold_ms,
            "samples": self.samples,
            "budget_consumed": self.budget_consumed,
            "budget_remaining": self.budget_remaining,
            "windows": [w.describe() for w in self.windows],
            "alerts": [a.describe() for a in self.alerts],
            "severity": self.severity,
        }


class SloTracker:
    """One `RollingWindows` per configured SLO; `observe` counts a completed request
    toward every SLO it is eligible for."""

    def __init__(
        self,
        slos: Sequence[SloConfig] = (),
        *,
        clock: Clock = time.time,
        bucket_s: int = DEFAULT_BUCKET_S,
    ) -> None:
        self._clock = clock
        self._bucket_s = bucket_s
        self._entries: list[tuple[SloConfig, RollingWindows]] = [
            (slo, self._windows(slo)) for slo in slos
        ]

    def _windows(self, slo: SloConfig) -> RollingWindows:
        return RollingWindows(
            slo.period_days * SECONDS_PER_DAY,
            slo.error_budget,
            bucket_s=self._bucket_s,
            clock=self._clock,
        )

    @property
    def slos(self) -> tuple[SloConfig, ...]:
        return tuple(slo for slo, _ in self._entries)

    def windows(self, name: str) -> RollingWindows:
        """The named SLO's windows (KeyError when there is none)."""
        for slo, windows in self._entries:
            if slo.name == name:
                return windows
        raise KeyError(name)

    # -- writing -----------------------------------------------------------------

    def observe(self, outcome: Outcome) -> list[tuple[str, bool]]:
        """Count one completed request toward every SLO it has a verdict for; returns
        (SLO name, good) for each (the gateway counts them for Prometheus)."""
        now = self._clock()
        counted = []
        for slo, windows in self._entries:
            verdict = classify(slo, outcome)
            if verdict == "good" or verdict == "bad":
                good = verdict == "good"
                windows.add(outcome.time, good, now=now)
                counted.append((slo.name, good))
        return counted

    def reconfigure(self, slos: Sequence[SloConfig]) -> list[str]:
        """Adopt a new SLO list (a config reload). Returns the names that start empty,
        for the caller to `rebuild` from history if it has some."""
        kept: dict[tuple[object, ...], list[RollingWindows]] = {}
        for slo, windows in self._entries:
            kept.setdefault(counting_identity(slo), []).append(windows)
        entries: list[tuple[SloConfig, RollingWindows]] = []
        fresh: list[str] = []
        for slo in slos:
            same = kept.get(counting_identity(slo))
            if same:
                windows = same.pop(0)
                windows.error_budget = slo.error_budget
            else:
                windows = self._windows(slo)
                fresh.append(slo.name)
            entries.append((slo, windows))
        self._entries = entries
        return fresh

    def rebuild(self, outcomes: Iterable[Outcome], names: Iterable[str] | None = None) -> None:
        """Refill the named SLOs (default: all) from scratch from recorded outcomes, in
        one pass; outcomes older than each SLO's period are ignored."""
        wanted = None if names is None else set(names)
        targets: list[tuple[SloConfig, RollingWindows]] = []
        entries: list[tuple[SloConfig, RollingWindows]] = []
        for slo, windows in self._entries:
            if wanted is None or slo.name in wanted:
                windows = self._windows(slo)
                targets.append((slo, windows))
            entries.append((slo, windows))
        self._entries = entries
        now = self._clock()
        for outcome in outcomes:
            for slo, windows in targets:
                verdict = classify(slo, outcome)
                if verdict == "good" or verdict == "bad":
                    windows.add(outcome.time, verdict == "good", now=now)

    # -- reading -----------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> list[SloStatus]:
        """Every SLO's burn rates, budget and alerts at `now` (default: the clock)."""
        if now is None:
            now = self._clock()
        return [status(slo, windows, now) for slo, windows in self._entries]

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready state for `GET /admin/slo`."""
        return {"slos": [s.describe() for s in self.snapshot(now)]}

    def over_budget(
        self, share: float = DEFAULT_FREEZE_AT, now: float | None = None
    ) -> list[SloStatus]:
        """SLOs that have consumed more than `share` of their budget: while any has,
        config changes are frozen."""
        return [s for s in self.snapshot(now) if s.budget_consumed > share]


def status(slo: SloConfig, windows: RollingWindows, now: float) -> SloStatus:
    """One SLO's state read from its windows."""
    period_s = slo.period_days * SECONDS_PER_DAY
    rows: list[WindowStatus] = []
    for window_s in sorted({*STANDARD_WINDOWS_S, period_s}):
        good, bad = windows.counts(window_s, now=now)
        ratio = bad / (good + bad) if good + bad else 0.0
        rows.append(WindowStatus(window_s, good + bad, bad, ratio, ratio / slo.error_budget))
    burn = {w.window_s: w.burn_rate for w in rows}
    alerts = []
    for severity, threshold, long_s, short_s in STANDARD_ALERTS:
        scaled = scaled_threshold(threshold, slo.period_days)
        long_burn, short_burn = burn[long_s], burn[short_s]
        firing = long_burn > scaled and short_burn > scaled
        alerts.append(AlertStatus(severity, scaled, long_s, short_s, long_burn, short_burn, firing))
    period = next(w for w in rows if w.window_s == period_s)
    return SloStatus(
        slo=slo,
        windows=tuple(rows),
        budget_consumed=period.burn_rate,
        budget_remaining=1.0 - period.burn_rate,
        samples=period.samples,
        alerts=tuple(alerts),
    )
