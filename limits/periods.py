"""Calendar periods for spend quotas: a UTC day or a UTC month.

A spend limit counts from the first millisecond of its period to the last, then
starts from zero: `2027-01-31` ends at `2027-02-01T00:00:00Z`, the month `2027-02`
at `2027-03-01T00:00:00Z`. The memory store reads its periods here; the Redis store
computes the same ones in Lua from Redis's own clock (limits/lua.py), and a test
holds the two to each other.
"""

from __future__ import annotations

import calendar
import time
from typing import Literal

Per = Literal["day", "month"]
DAY_MS = 86_400_000


def period_of(per: str, at_ms: int) -> tuple[str, int]:
    """The period holding `at_ms` (ms since the epoch): its id (`2027-01-15` for a
    day, `2027-01` for a month) and its end, exclusive, in ms since the epoch."""
    moment = time.gmtime(at_ms // 1000)
    if per == "day":
        day = at_ms // DAY_MS
        return time.strftime("%Y-%m-%d", moment), (day + 1) * DAY_MS
    if per != "month":
        raise ValueError(f"unknown period {per!r}: expected 'day' or 'month'")
    year, month = moment.tm_year, moment.tm_mon
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    end_s = calendar.timegm((*following, 1, 0, 0, 0))
    return f"{year:04d}-{month:02d}", end_s * 1000
