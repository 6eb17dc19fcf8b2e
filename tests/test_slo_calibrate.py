"""Calibration (slo/calibrate.py) on a synthetic 30-day history with a known answer."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import yaml

from slo.calibrate import (
    calibrate,
    day_windows,
    nearest_rank,
    render_patch,
    round_down_objective,
)
from slo.config import SloConfig
from slo.events import Outcome
from tests.slo_support import make_outcome

NOW = datetime(2026, 12, 7, 14, 30, tzinfo=UTC).timestamp()
DAY = 86400
#: 14:00 UTC of the day before NOW's
YESTERDAY_14 = datetime(2026, 12, 6, 14, 0, tzinfo=UTC).timestamp()

LATENCY = SloConfig(
    name="chat-latency", kind="latency", objective=0.99, threshold_ms=2000, model_group="chat"
)
AVAILABILITY = SloConfig(
    name="chat-availability", kind="availability", objective=0.9999, model_group="chat"
)


def outcome(t: float, latency_ms: float, status: int = 200, **kw: object) -> Outcome:
    return make_outcome(time=t, latency_ms=latency_ms, status=status, **kw)


def history(seed: int = 7) -> list[Outcome]:
    """30 days whose 14:00-15:00 UTC hour has a daily p99 of 1010, 1020, ... 1300 ms (in
    shuffled order; p95 of those, rank 29 of 30, is 1290), one day with 1 failure and
    one with 5 (p95 of the daily error ratios, rank 29, is 1/101), and noise that must
    not count."""
    rng = random.Random(seed)
    p99s = [1000.0 + 10 * k for k in range(1, 31)]
    rng.shuffle(p99s)
    errors = [0] * 28 + [1, 5]
    rng.shuffle(errors)
    items: list[Outcome] = []
    for back, (p99, failures) in enumerate(zip(p99s, errors, strict=True), start=1):
        start = YESTERDAY_14 - (back - 1) * DAY
        # 100 successes: 98 fast, the 99th slowest is the p99, one far above it
        latencies = [100.0] * 98 + [p99, 10 * p99]
        for i, latency in enumerate(latencies):
            t = start + rng.uniform(0, 3599.999)
            if i % 3 == 0:  # a stream: its TTFT is the measure, not its length
                items.append(outcome(t, latency + 60_000, stream=True, ttft_ms=latency))
            else:
                items.append(outcome(t, latency))
        items += [outcome(start + 60 * i, 99_999.0, status=502) for i in range(failures)]
        # noise: other hours, other groups, client-caused errors
        items.append(outcome(start - 1, 50_000.0))
        items.append(outcome(start + 3600, 50_000.0, status=500))
        items.append(outcome(start + 30, 50_000.0, model_group="embed", status=500))
        items.append(outcome(start + 30, 50_000.0, status=429, error="rate_limit_exceeded"))
        items.append(outcome(start + 30, 50_000.0, status=499, error="client_closed"))
    # today's partial hour and the 31st day back are outside the windows
    items += [outcome(NOW - 60, 90_000.0, status=500) for _ in range(50)]
    items += [outcome(YESTERDAY_14 - 30 * DAY + 10, 90_000.0, status=500) for _ in range(50)]
    rng.shuffle(items)
    return items


def test_known_answer_on_thirty_days() -> None:
    latency, availability = calibrate([LATENCY, AVAILABILITY], history(), NOW)
    assert len(latency.days) == 30 and latency.skipped_days == 0
    assert sorted(d.value for d in latency.days) == [1000.0 + 10 * k for k in range(1, 31)]
    assert latency.proposed.threshold_ms == 1290
    assert latency.proposed.objective == 0.99  # kept
    assert latency.changed
    assert (latency.days[0].day, latency.days[-1].day) == ("2026-11-07", "2026-12-06")
    ratios = sorted(d.value for d in availability.days)
    assert ratios[-2:] == [1 / 101, 5 / 105]
    assert availability.proposed.objective == 0.99  # 1 - 1/101 = 0.990099 -> 0.99
    assert availability.proposed.threshold_ms is None


def test_other_hours_and_day_counts() -> None:
    # 13:00-14:00 has nothing but the noise one second before each 14:00
    latency, _ = calibrate([LATENCY, AVAILABILITY], history(), NOW, start_hour=13)
    assert latency.days == () and latency.skipped_days == 30
    assert not latency.changed
    assert "unchanged" in latency.basis
    # two hours from 14:00 take in the 15:00 noise (a 500: no latency, one bad each)
    _, availability = calibrate([LATENCY, AVAILABILITY], history(), NOW, hours=2)
    assert all(d.samples >= 101 for d in availability.days)
    assert availability.proposed.objective == 0.95  # p95 ratio 2/102: 0.98 -> 0.95
    # the last 10 days only
    (latency,) = calibrate([LATENCY], history(), NOW, days=10)
    assert len(latency.days) == 10
    # too few requests a day to say anything
    latency, _ = calibrate([LATENCY, AVAILABILITY], history(), NOW, min_day_samples=101)
    assert latency.days == () and latency.proposed == LATENCY


def test_day_windows_are_complete_and_oldest_first() -> None:
    windows = day_windows(NOW, days=3)
    assert windows == [(YESTERDAY_14 - k * DAY, YESTERDAY_14 - k * DAY + 3600) for k in (2, 1, 0)]
    # a window that runs past now is left out
    just_after_midnight = datetime(2026, 12, 7, 0, 30, tzinfo=UTC).timestamp()
    assert len(day_windows(just_after_midnight, days=3, start_hour=23, hours=2)) == 2
    with pytest.raises(ValueError, match="hours"):
        day_windows(NOW, hours=25)
    with pytest.raises(ValueError, match="start_hour"):
        day_windows(NOW, start_hour=24)


def test_nearest_rank_and_the_nines_ladder() -> None:
    values = list(range(1, 31))
    assert nearest_rank(values, 95) == 29
    assert nearest_rank(values, 100) == 30
    assert nearest_rank(list(range(1, 101)), 99) == 99
    assert nearest_rank([5.0], 1) == 5.0
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 50)
    assert round_down_objective(1.0) == 0.9999
    assert round_down_objective(0.9995) == 0.9995
    assert round_down_objective(0.99949) == 0.999
    assert round_down_objective(0.990099) == 0.99
    assert round_down_objective(0.8765) == 0.87
    assert round_down_objective(0.0) == 0.01


def test_the_patch_is_reviewable_yaml_that_validates() -> None:
    proposals = calibrate([LATENCY, AVAILABILITY], history(), NOW)
    patch = render_patch(proposals, NOW)
    assert patch.startswith("# Proposed by `seawall slo calibrate` at 2026-12-07T14:30:00Z")
    assert "Nothing has been applied" in patch
    lines = patch.splitlines()
    threshold = lines.index("    threshold_ms: 1290")
    assert "p95 (nearest rank) of the daily p99" in lines[threshold - 1]
    assert "was 2000" in lines[threshold - 1]
    objective = lines.index("    objective: 0.99", threshold)
    assert "rounded down to the nines ladder; was 0.9999" in lines[objective - 1]
    document = yaml.safe_load(patch)
    slos = [SloConfig.model_validate(entry) for entry in document["slos"]]
    assert slos == [p.proposed for p in proposals]
