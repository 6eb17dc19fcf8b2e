"""The in-process store: exact for one process (one worker), nothing shared.

The same buckets as the Redis store (limits/claims.py), in plain Python: a sliding
window is a log of (time, reservation) with each reservation's amount and a running
total; leases are reservation -> expiry; a period is reservation -> amount. Every
operation is O(claims) plus what has aged out since.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from limits.claims import Claim, ClaimState, StoreAnswer


class _Window:
    def __init__(self) -> None:
        self.log: deque[tuple[int, str]] = deque()
        self.amounts: dict[str, int] = {}
        self.total = 0

    def purge(self, now: int, span: int) -> None:
        log, amounts = self.log, self.amounts
        while log and log[0][0] <= now - span:
            _, rid = log.popleft()
            self.total -= amounts.pop(rid, 0)

    def retry_after(self, now: int, span: int, limit: int, amount: int) -> int:
        """ms until enough ages out for `amount` to fit (the window's own edge)."""
        over = self.total + amount - limit
        for at, rid in self.log:
            over -= self.amounts.get(rid, 0)
            if over <= 0:
                return max(1, at + span - now)
        return span  # more than the limit on its own: it fits in no window (refused)

    def reset(self, now: int, span: int) -> int:
        return max(0, self.log[0][0] + span - now) if self.log else 0


class _Leases:
    def __init__(self) -> None:
        self.expiries: dict[str, int] = {}

    def purge(self, now: int) -> None:
        for rid in [r for r, at in self.expiries.items() if at <= now]:
            del self.expiries[rid]


class _Period:
    def __init__(self, end: int) -> None:
        self.end = end
        self.amounts: dict[str, int] = {}
        self.total = 0


class MemoryStore:
    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, _Leases] = {}
        self._periods: dict[str, _Period] = {}

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def admit(self, rid: str, claims: Sequence[Claim]) -> StoreAnswer:
        now = self._now()
        self._expire_periods(now)
        for index, claim in enumerate(claims):
            refused = self._check(claim, now)
            if refused is not None:
                return StoreAnswer(False, refused_by=index, retry_after_ms=refused, at_ms=now)
        states = tuple(self._add(rid, claim, now) for claim in claims)
        return StoreAnswer(True, states, at_ms=now)

    def _check(self, claim: Claim, now: int) -> int | None:
        """None when it fits; else ms until it would."""
        if claim.kind == "window":
            window = self._windows.setdefault(claim.key, _Window())
            window.purge(now, claim.span_ms)
            if window.total + claim.amount <= claim.limit:
                return None
            return window.retry_after(now, claim.span_ms, claim.limit, claim.amount)
        if claim.kind == "concurrent":
            leases = self._leases.setdefault(claim.key, _Leases())
            leases.purge(now)
            if len(leases.expiries) < claim.limit:
                return None
            return max(1, min(leases.expiries.values()) - now)
        period = self._periods.setdefault(claim.key, _Period(now + claim.span_ms))
        if period.total + claim.amount <= claim.limit:
            return None
        return max(1, period.end - now)

    def _add(self, rid: str, claim: Claim, now: int) -> ClaimState:
        if claim.kind == "window":
            window = self._windows[claim.key]
            window.log.append((now, rid))
            window.amounts[rid] = claim.amount
            window.total += claim.amount
            return ClaimState(claim, window.total, window.reset(now, claim.span_ms))
        if claim.kind == "concurrent":
            leases = self._leases[claim.key]
            leases.expiries[rid] = now + claim.span_ms
            return ClaimState(claim, len(leases.expiries), 0)
        period = self._periods[claim.key]
        period.amounts[rid] = claim.amount
        period.total += claim.amount
        return ClaimState(claim, period.total, max(0, period.end - now))

    async def settle(self, rid: str, claims: Sequence[Claim]) -> None:
        """Each claim's reservation now counts `claim.amount` (windows and periods, if
        still held); a lease is freed. Twice is the same as once."""
        for claim in claims:
            if claim.kind == "concurrent":
                leases = self._leases.get(claim.key)
                if leases is not None:
                    leases.expiries.pop(rid, None)
                continue
            bucket: _Window | _Period | None
            bucket = self._windows.get(claim.key) if claim.kind == "window" else None
            if claim.kind == "period":
                bucket = self._periods.get(claim.key)
            if bucket is None or rid not in bucket.amounts:
                continue  # aged out already: nothing to correct
            bucket.total += claim.amount - bucket.amounts[rid]
            bucket.amounts[rid] = claim.amount

    async def usage(self, claims: Sequence[Claim]) -> list[ClaimState]:
        now = self._now()
        states = []
        for claim in claims:
            if claim.kind == "window":
                window = self._windows.setdefault(claim.key, _Window())
                window.purge(now, claim.span_ms)
                states.append(ClaimState(claim, window.total, window.reset(now, claim.span_ms)))
            elif claim.kind == "concurrent":
                leases = self._leases.setdefault(claim.key, _Leases())
                leases.purge(now)
                states.append(ClaimState(claim, len(leases.expiries), 0))
            else:
                period = self._periods.get(claim.key)
                used = period.total if period is not None else 0
                reset = max(0, period.end - now) if period is not None else claim.span_ms
                states.append(ClaimState(claim, used, reset))
        return states

    def _expire_periods(self, now: int) -> None:
        if len(self._periods) > 1024:
            for key in [k for k, p in self._periods.items() if p.end <= now]:
                del self._periods[key]

    async def aclose(self) -> None:
        return None
