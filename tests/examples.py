"""How many examples a property test draws: its full count scaled by
`SEAWALL_PROPERTY_SCALE` (default 0.5 in the suite: the short form; 1 in
`make properties`, the full form; more for a long run), never fewer than 10."""

from __future__ import annotations

import os

#: The suite's share of each test's full count of examples.
SCALE = float(os.environ.get("SEAWALL_PROPERTY_SCALE", "0.5"))
#: Fewer examples than this prove too little to be worth a run.
FLOOR = 10


def examples(full: int) -> int:
    """`full` examples scaled for this run."""
    return max(FLOOR, round(full * SCALE))
