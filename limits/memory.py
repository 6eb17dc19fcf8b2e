"""The in-process store: exact for one process (one worker), shared with nobody.

The same buckets, with the same semantics, as the Redis store (limits/claims.py,
limits/lua.py), in plain Python; one event loop runs one admission at a time, so
an admission is atomic without a lock. Costs: a window keeps one entry per
admission of its last `span_ms` (RPM 10,000 is at most 10,000 entries); a lease
bucket one entry per held lease; a period one entry per unsettled reservation.
Everything else is O(claims) per admission, plus what has aged out since.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence

from limits.claims import BucketState, Claim
from limits.periods import period_of
from limits.store import LEASE_RETRY_MS, StoreAnswer

#: (used, reserved, reset_ms)
Look = tuple[int, int, int]


class _Count:
    """Requests: a log of admission times."""

    def __init__(self) -> None:
        self.log: deque[tuple[int, str]] = deque()

    def look(self, now: int, claim: Claim) -> Look:
        log, span = self.log, claim.span_ms
        while log and log[0][0] <= now - span:
            log.popleft()
        used = len(log)
        return used, 0, (log[0][0] + span - now if log else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        # The admission that must age out first is the (used + 1 - limit)th oldest.
        at = self.log[used - claim.limit][0]
        return max(1, at + claim.span_ms - now), False

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.log.append((now, rid))

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        return None  # an admitted request counts, whatever became of it


class _Window:
    """Tokens: a log of admission times, each reservation's charge (its estimate,
    then its actual usage), and which reservations are not settled yet."""

    def __init__(self) -> None:
        self.log: deque[tuple[int, str]] = deque()
        self.charges: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # rid -> estimate, until settled
        self.total = 0
        self.reserved = 0

    def look(self, now: int, claim: Claim) -> Look:
        log, span = self.log, claim.span_ms
        while log and log[0][0] <= now - span:
            _, rid = log.popleft()
            self.total -= self.charges.pop(rid)
            self.reserved -= self.pending.pop(rid, 0)
        return self.total, self.reserved, (log[0][0] + span - now if log else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        if claim.amount > claim.limit:
            return claim.span_ms, True
        over = used + claim.amount - claim.limit
        for at, rid in self.log:
            over -= self.charges[rid]
            if over <= 0:
                return max(1, at + claim.span_ms - now), False
        return claim.span_ms, False  # unreachable while amount <= limit

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.log.append((now, rid))
        self.charges[rid] = self.pending[rid] = claim.amount
        self.total += claim.amount
        self.reserved += claim.amount

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        estimate = self.pending.pop(rid, None)
        if estimate is None:
            return  # settled already, or aged out of the window
        self.charges[rid] = claim.amount
        self.total += claim.amount - estimate
        self.reserved -= estimate


class _Leases:
    """Concurrency: reservation -> expiry, and a heap of expiries for purging
    (renewals and releases leave stale heap entries, skipped when they surface)."""

    def __init__(self) -> None:
        self.expiries: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def look(self, now: int, claim: Claim) -> Look:
        heap, expiries = self.heap, self.expiries
        while heap and (heap[0][0] <= now or expiries.get(heap[0][1]) != heap[0][0]):
            at, rid = heapq.heappop(heap)
            if expiries.get(rid) == at:
                del expiries[rid]
        held = len(expiries)
        return held, held, (heap[0][0] - now if heap else 0)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        return max(1, min(LEASE_RETRY_MS, self.heap[0][0] - now)), False

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.expiries[rid] = now + claim.span_ms
        heapq.heappush(self.heap, (now + claim.span_ms, rid))

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        self.expiries.pop(rid, None)

    def renew(self, now: int, rid: str, span_ms: int) -> bool:
        if self.expiries.get(rid, now) <= now:
            return False
        self.expiries[rid] = now + span_ms
        heapq.heappush(self.heap, (now + span_ms, rid))
        return True


class _Period:
    """Spend: the period's total, and the estimates not settled yet."""

    def __init__(self, end: int) -> None:
        self.end = end
        self.pending: dict[str, int] = {}
        self.total = 0
        self.reserved = 0

    def look(self, now: int, claim: Claim) -> Look:
        return self.total, self.reserved, max(0, self.end - now)

    def wait(self, now: int, claim: Claim, used: int) -> tuple[int, bool]:
        return max(1, self.end - now), claim.amount > claim.limit

    def add(self, now: int, rid: str, claim: Claim) -> None:
        self.pending[rid] = claim.amount
        self.total += claim.amount
        self.reserved += claim.amount

    def settle(self, now: int, rid: str, claim: Claim) -> None:
        estimate = self.pending.pop(rid, None)
        if estimate is not None:
            self.total += claim.amount - estimate
            self.reserved -= estimate


Bucket = _Count | _Window | _Leases | _Period


class MemoryStore:
    shared = False
    failures = 0  # it cannot fail

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """`clock`: seconds since the epoch (tests move it instead of sleeping)."""
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    def _now(self) -> int:
        return round(self._clock() * 1000)

    def _bucket(self, claim: Claim, now: int) -> tuple[str, Bucket]:
        """The bucket `claim` is admitted to now (for a period: the current one)."""
        if claim.kind == "period":
            period, end = period_of(claim.per, now)
            key = f"{claim.key}:{period}"
            bucket = self._buckets.get(key)
            if bucket is None:
                self._forget_ended_periods(now)
                bucket = self._buckets[key] = _Period(end)
            return key, bucket
        bucket = self._buckets.get(claim.key)
        if bucket is None:
            bucket = self._buckets[claim.key] = _KINDS[claim.kind]()
        return claim.key, bucket

    def _forget_ended_periods(self, now: int) -> None:
        ended = [k for k, b in self._buckets.items() if isinstance(b, _Period) and b.end <= now]
        for key in ended:
            del self._buckets[key]

    async def admit(self, rid: str, claims: Sequence[Claim]) -> StoreAnswer:
        now = self._now()
        placed = [self._bucket(claim, now) for claim in claims]
        states = [
            BucketState(claim.placed(key), *bucket.look(now, claim))
            for claim, (key, bucket) in zip(claims, placed, strict=True)
        ]
        for index, (state, (_, bucket)) in enumerate(zip(states, placed, strict=True)):
            claim = state.claim
            if state.used + claim.amount > claim.limit:
                retry, too_large = bucket.wait(now, claim, state.used)
                return StoreAnswer(False, tuple(states), now, index, retry, too_large)
        for claim, (_, bucket) in zip(claims, placed, strict=True):
            bucket.add(now, rid, claim)
        return StoreAnswer(True, tuple(map(_admitted, states)), now)

    async def settle(self, rid: str, claims: Sequence[Claim]) -> None:
        now = self._now()
        for claim in claims:
            bucket = self._buckets.get(claim.bucket or claim.key)
            if bucket is not None:
                bucket.settle(now, rid, claim)

    async def renew(self, leases: Sequence[tuple[str, Claim]]) -> set[str]:
        now = self._now()
        lost = set()
        for rid, claim in leases:
            bucket = self._buckets.get(claim.key)
            if not (isinstance(bucket, _Leases) and bucket.renew(now, rid, claim.span_ms)):
                lost.add(rid)
        return lost

    async def usage(self, claims: Sequence[Claim]) -> list[BucketState]:
        now = self._now()
        states = []
        for claim in claims:
            key, bucket = self._bucket(claim, now)
            used, reserved, reset = bucket.look(now, claim)
            states.append(BucketState(claim.placed(key), used, reserved, reset))
        return states

    async def aclose(self) -> None:
        return None


def _admitted(state: BucketState) -> BucketState:
    """A bucket's state once its claim was added (the Lua script does the same)."""
    claim, reset = state.claim, state.reset_ms
    reserved = state.reserved if claim.kind == "count" else state.reserved + claim.amount
    if claim.kind != "period":  # a period's end does not move
        reset = claim.span_ms if reset == 0 else min(reset, claim.span_ms)
    return BucketState(claim, state.used + claim.amount, reserved, reset)


_KINDS: dict[str, type[_Count] | type[_Window] | type[_Leases]] = {
    "count": _Count,
    "window": _Window,
    "lease": _Leases,
}
