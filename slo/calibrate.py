"""Proposing SLO objectives from observed history: `seawall slo calibrate`.

Traffic and latency follow the time of day, so a value is calibrated against the same
hours of earlier days: the window `[start_hour, start_hour + hours)` UTC (default: the
hour `now` is in) of each of the `days` days before today (default 30). Only complete
windows are used, and a day with fewer than `min_day_samples` requests in its window
says nothing and is skipped.

- Latency SLO: per day, the p99 (nearest rank) of the latency measure (TTFT for
  streams, slo/events.py) of eligible successful requests; the proposed `threshold_ms`
  is the 95th percentile (nearest rank) of those daily p99s, rounded up to a whole
  millisecond: a threshold the service met on 95% of days. The objective is kept.
- Availability SLO: per day, the error ratio (bad / (good + bad), slo/events.py); the
  service achieved `1 - p95(daily error ratios)` on 95% of days, and the proposed
  objective is that rounded *down* to the nines ladder (`NINES`), never above 0.9999:
  an objective is a promise, and one the history does not support is not proposed.

Everything here is a pure function of the outcomes handed in (the gateway reads them
from the audit index); the result is a YAML patch for review, never applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from slo.config import SloConfig
from slo.events import Outcome, classify_availability, eligible, latency_measure, succeeded

SECONDS_PER_DAY = 86400
DEFAULT_DAYS = 30
DEFAULT_MIN_DAY_SAMPLES = 10
#: Objectives a proposal rounds down to, highest first; below the last, to 0.01 steps.
NINES: tuple[float, ...] = (0.9999, 0.9995, 0.999, 0.995, 0.99, 0.95, 0.9)
#: The daily percentile the latency threshold is taken from, and the share of days
#: whose achievement a proposal must match.
DAILY_PERCENTILE = 99.0
ACROSS_DAYS_PERCENTILE = 95.0


def nearest_rank(values: Iterable[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100): the smallest value with at
    least q% of the values at or below it; always one of the values, no interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    rank = max(1, math.ceil(q * len(ordered) / 100))
    return ordered[rank - 1]


def round_down_objective(achieved: float) -> float:
    """The highest objective on the nines ladder not above `achieved`."""
    for objective in NINES:
        if objective <= achieved + 1e-12:
            return objective
    return max(math.floor(achieved * 100) / 100, 0.01)


@dataclass(frozen=True, slots=True)
class DayValue:
    """One day's window: when it started, the requests it had, and its value (a p99 in
    ms for latency, an error ratio for availability)."""

    start: float
    samples: int
    value: float

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.start, UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Proposal:
    slo: SloConfig
    #: The SLO with the proposed value in place (the same SLO when there was no data).
    proposed: SloConfig
    #: The days that counted, oldest first.
    days: tuple[DayValue, ...]
    #: Windows skipped for having fewer than min_day_samples requests.
    skipped_days: int
    #: What the proposed value came from, for the patch's comment.
    basis: str

    @property
    def changed(self) -> bool:
        return self.proposed != self.slo


@dataclass(slots=True)
class _Day:
    start: float
    latencies: list[float]
    good: int = 0
    bad: int = 0


def day_windows(
    now: float, *, days: int = DEFAULT_DAYS, start_hour: int | None = None, hours: int = 1
) -> list[tuple[float, float]]:
    """The complete [start, end) windows, oldest first: the same hours of each of the
    `days` days before `now`'s day."""
    if days < 1 or not 1 <= hours <= 24:
        raise ValueError("days must be >= 1 and hours in 1..24")
    midnight = math.floor(now / SECONDS_PER_DAY) * SECONDS_PER_DAY
    if start_hour is None:
        start_hour = int((now - midnight) // 3600)
    if not 0 <= start_hour <= 23:
        raise ValueError("start_hour must be in 0..23")
    base = midnight + start_hour * 3600
    windows = [
        (base - k * SECONDS_PER_DAY, base - k * SECONDS_PER_DAY + hours * 3600)
        for k in range(days, 0, -1)
    ]
    return [(start, end) for start, end in windows if end <= now]


def calibrate(
    slos: Sequence[SloConfig],
    outcomes: Iterable[Outcome],
    now: float,
    *,
    days: int = DEFAULT_DAYS,
    start_hour: int | None = None,
    hours: int = 1,
    min_day_samples: int = DEFAULT_MIN_DAY_SAMPLES,
) -> list[Proposal]:
    """One proposal per SLO from the outcomes in the day windows (module docstring)."""
    windows = day_windows(now, days=days, start_hour=start_hour, hours=hours)
    per_slo = [[_Day(start, []) for start, _ in windows] for _ in slos]
    if windows:
        latest_start = windows[-1][0]
        length = windows[-1][1] - latest_start
        for outcome in outcomes:
            back = math.ceil((latest_start - outcome.time) / SECONDS_PER_DAY)
            start = latest_start - back * SECONDS_PER_DAY
            if not 0 <= back < len(windows) or not start <= outcome.time < start + length:
                continue
            index = len(windows) - 1 - back
            for slo, slo_days in zip(slos, per_slo, strict=True):
                if eligible(slo, outcome):
                    _count(slo_days[index], outcome)
    hour_text = _hours_text(windows)
    return [
        _propose(slo, slo_days, min_day_samples, hour_text)
        for slo, slo_days in zip(slos, per_slo, strict=True)
    ]


def _count(day: _Day, outcome: Outcome) -> None:
    if succeeded(outcome):
        day.latencies.append(latency_measure(outcome))
    verdict = classify_availability(outcome)
    if verdict == "good":
        day.good += 1
    elif verdict == "bad":
        day.bad += 1


def _hours_text(windows: list[tuple[float, float]]) -> str:
    if not windows:
        return "no complete window"
    start, end = windows[-1]
    first = datetime.fromtimestamp(start, UTC).strftime("%H:%M")
    last = datetime.fromtimestamp(end, UTC).strftime("%H:%M")
    return f"{first}-{last} UTC"


def _propose(slo: SloConfig, days: list[_Day], min_samples: int, hours: str) -> Proposal:
    values: list[DayValue] = []
    for day in days:
        if slo.kind == "latency":
            if len(day.latencies) >= min_samples:
                p99 = nearest_rank(day.latencies, DAILY_PERCENTILE)
                values.append(DayValue(day.start, len(day.latencies), p99))
        elif day.good + day.bad >= min_samples:
            values.append(DayValue(day.start, day.good + day.bad, day.bad / (day.good + day.bad)))
    skipped = len(days) - len(values)
    if not values:
        basis = (
            f"no day of {hours} had {min_samples} or more requests ({len(days)} windows); unchanged"
        )
        return Proposal(slo, slo, (), skipped, basis)
    span = f"{values[0].day}..{values[-1].day}"
    summary = _summary([v.value for v in values])
    across = nearest_rank([v.value for v in values], ACROSS_DAYS_PERCENTILE)
    if slo.kind == "latency":
        threshold = float(math.ceil(across))
        proposed = slo.model_copy(update={"threshold_ms": threshold})
        basis = (
            f"p95 (nearest rank) of the daily p99 latency (TTFT for streams) of "
            f"{len(values)} days' {hours}, {span}: {summary} ms; was {slo.threshold_ms:g}"
        )
    else:
        achieved = 1.0 - across
        objective = round_down_objective(achieved)
        proposed = slo.model_copy(update={"objective": objective})
        basis = (
            f"1 - p95 (nearest rank) of the daily error ratio of {len(values)} days' "
            f"{hours}, {span} ({summary}) = {achieved:.6g}, rounded down to the nines "
            f"ladder; was {slo.objective:g}"
        )
    if skipped:
        basis += f"; {skipped} day(s) skipped with fewer than {min_samples} requests"
    return Proposal(slo, proposed, tuple(values), skipped, basis)


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    median = nearest_rank(ordered, 50)
    return f"min {ordered[0]:.6g}, median {median:.6g}, max {ordered[-1]:.6g}"


def _scalar(value: object) -> str:
    """A YAML scalar: JSON's spelling of strings and numbers is valid YAML."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def render_patch(proposals: Sequence[Proposal], now: float) -> str:
    """The proposals as a `slos:` YAML block to review and merge by hand, with a
    comment on every proposed value saying what it came from."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# Proposed by `seawall slo calibrate` at {stamp}. Nothing has been applied:",
        "# review each value, then merge the entries you accept into the config.",
        "slos:",
    ]
    for proposal in proposals:
        slo = proposal.proposed
        field = "threshold_ms" if slo.kind == "latency" else "objective"
        lines.append(f"  - name: {_scalar(slo.name)}")
        for key in ("kind", "objective", "period_days", "model_group", "tenant", "threshold_ms"):
            value = getattr(slo, key)
            if value is None:
                continue
            if key == field:
                lines.append(f"    # {proposal.basis}")
            lines.append(f"    {key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"
