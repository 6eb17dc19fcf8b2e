"""The admin page's recent audit decisions: what the gateway refused or flagged.

Read from the audit index (audit/query.py), within the viewer's scope as
`GET /admin/audit` reads it (a scope filter the viewer cannot lift). The page polls
every second, and reading the index means bringing it up to date from the segments,
so answers are kept per scope for `REFRESH_S` seconds: a state read uses the kept
answer and, when it is older, starts one refresh off the loop and answers with the
older one (its `as_of` says how old). Only a scope's first read waits for the index.

A *decision* is a request record that the gateway refused (a 4xx error code: a policy
denial, a limit, a forged tool result refused...) or that carries a guard verdict or
a policy flag, among the newest `SCANNED` requests of the last `RECENT_S` seconds;
the newest `SHOWN` are kept. Limit refusals are counted by level over the same
`RECENT_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.index import AuditIndex

log = logging.getLogger("seawall")

#: How far back decisions and refusals are looked for.
RECENT_S = 15 * 60
#: Request records read per refresh, newest first.
SCANNED = 200
#: Decisions shown.
SHOWN = 20
#: How long an answer is kept before a read refreshes it.
REFRESH_S = 2.0
#: Scopes kept at once (a gateway has at most as many as tenants); past it, emptied.
MAX_SCOPES = 1000

#: Runs a function on the up-to-date index off the loop (`AuditAdmin.read`).
IndexReader = Callable[[Callable[["AuditIndex"], Any]], Awaitable[Any]]


class RecentDecisions:
    def __init__(self, reader: IndexReader, clock: Callable[[], float] = time.time) -> None:
        self._reader = reader
        self._clock = clock
        #: scope (None: the root's) -> the answer, and when it was read.
        self._kept: dict[str | None, dict[str, Any]] = {}
        self._refreshing: dict[str | None, asyncio.Task[dict[str, Any]]] = {}

    async def get(self, scope: str | None) -> dict[str, Any]:
        """Decisions and refusals by level in `scope` (None: every tenant's)."""
        kept = self._kept.get(scope)
        if kept is not None and self._clock() - kept["as_of"] < REFRESH_S:
            return kept
        task = self._refreshing.get(scope)
        if task is None:
            task = asyncio.create_task(self._refresh(scope))
            self._refreshing[scope] = task
            task.add_done_callback(lambda _: self._refreshing.pop(scope, None))
        if kept is not None:
            return kept
        return await asyncio.shield(task)

    async def _refresh(self, scope: str | None) -> dict[str, Any]:
        now = self._clock()
        try:
            answer: dict[str, Any] = await self._reader(lambda index: _read(index, scope, now))
        except Exception as exc:  # the page says so; the next poll tries again
            log.warning("admin page: the audit index could not be read: %s: %s",
                        type(exc).__name__, exc)  # fmt: skip
            answer = {
                "decisions": [],
                "refusals": [],
                "error": "The audit index could not be read.",
            }
        answer["as_of"] = now
        if len(self._kept) >= MAX_SCOPES:
            self._kept.clear()
        self._kept[scope] = answer
        return answer


def _read(index: AuditIndex, scope: str | None, now: float) -> dict[str, Any]:
    from audit.query import Filter, aggregate, search

    since = now - RECENT_S
    page = search(index, Filter(scope=scope, kind="request", since=since), SCANNED)
    decisions = []
    for entry in page.entries:
        summary = summarize(entry.record)
        if summary is not None:
            decisions.append(summary)
            if len(decisions) >= SHOWN:
                break
    rows = aggregate(
        index, Filter(scope=scope, kind="request", since=since), ["refused"], None, ["count"]
    )
    refusals = [
        {"level": row["refused"], "count": row["count"]}
        for row in rows
        if row["refused"] is not None
    ]
    refusals.sort(key=lambda row: (-row["count"], row["level"]))
    return {"decisions": decisions, "refusals": refusals, "error": None}


def summarize(record: dict[str, Any]) -> dict[str, Any] | None:
    """What the page shows of a request record that holds a decision; None when the
    gateway neither refused nor flagged it."""
    policy = record.get("policy") or {}
    guards = record.get("guards") or []
    refused = [v for v in record.get("limits") or [] if v.get("decision") == "refused"]
    status = record.get("status") or 0
    # An upstream's failure (5xx) is not the gateway's decision: the routing table shows it.
    error = record.get("error") if 400 <= status < 500 else None
    if not (error or guards or policy.get("denied") or policy.get("flags") or refused):
        return None
    what: list[str] = []
    if policy.get("denied"):
        what.append(f"policy denied by {policy['denied']}")
    what += [f"flag {flag}" for flag in policy.get("flags") or []]
    what += [f"limit {v.get('limit')} refused at {v.get('level')}" for v in refused]
    what += [
        f"{g.get('kind')}: {g.get('action')}" + (f" ({g['tool']})" if g.get("tool") else "")
        for g in guards
    ]
    return {
        "time": record.get("time"),
        "tenant": record.get("tenant"),
        "key": record.get("key"),
        "model": record.get("model"),
        "status": status,
        "error": error,
        "what": what,
        "request_id": record.get("request_id"),
    }
