"""The two statistics every probe is made of: a percentile and a ratio.

Percentiles are nearest-rank (the smallest observed value with at least q of the
data at or below it): always a latency that really happened, never an
interpolation between two requests. The rank is computed in exact fractions, so
p99 of 100 values is the 99th, not the 100th through a float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, `q` in [0, 1]; None without data."""
    if not 0 <= q <= 1:
        raise ValueError("q must be between 0 and 1")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(Fraction(q) * len(ordered))
    return ordered[max(rank, 1) - 1]


def ratio(hits: int, total: int) -> float | None:
    """hits / total, None when there is nothing to divide (no data is not 0% or 100%)."""
    return None if total == 0 else hits / total


def count(items: Iterable[object]) -> int:
    return sum(1 for _ in items)
