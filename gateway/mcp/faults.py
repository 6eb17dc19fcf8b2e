"""Which of a request's chaos faults act on MCP, and where.

The plan is the one every endpoint builds (`ChaosEngine.plan`: the header, the
traffic colour, admin schedules, all scoped by the caller's tenant and checked
against its `chaos_targets`). toolservers/chaos.py says where each MCP fault acts;
this module picks the faults that hit one call or one session, fires them (so
`p`, `after`, `count` and `seed` mean what they mean everywhere), and records
them as injected (`x-seawall-chaos-injected`, the scoped counts in /metrics).

Targets: none (every MCP call of the request), `mcp:<server>` (every call to that
server), `tool:<server>__<tool>` (that tool). Session faults (`mcp_drop_session`,
`slow_chunks`) act before any call is known, so only untargeted ones apply to them.
"""

from __future__ import annotations

from chaos.faults import FaultSpec
from chaos.plan import ChaosPlan
from toolservers.chaos import FAULTS

#: Where the faults that act on a whole `/mcp` request act (toolservers/chaos.py).
SESSION_PLACES = frozenset({"session", "stream"})


def call_faults(plan: ChaosPlan | None, server: str, tool: str) -> list[FaultSpec]:
    """The faults that hit this `tools/call` of `tool` (`server__name`) on `server`."""
    if plan is None:
        return []
    targets = (None, f"mcp:{server}", f"tool:{tool}")
    hits = []
    for fault in plan.faults:
        spec = fault.spec
        place = FAULTS.get(spec.name)
        if place is None or place in SESSION_PLACES or spec.target not in targets:
            continue
        if fault.fires():
            hits.append(spec)
            plan.record(fault, f"tool:{tool}")
    return hits


def session_faults(plan: ChaosPlan | None) -> list[FaultSpec]:
    """The untargeted faults that hit this `/mcp` request as a whole: its session
    dropped, its answer stream slowed."""
    if plan is None:
        return []
    hits = []
    for fault in plan.faults:
        spec = fault.spec
        if FAULTS.get(spec.name) in SESSION_PLACES and spec.target is None and fault.fires():
            hits.append(spec)
            plan.record(fault, "mcp")
    return hits
