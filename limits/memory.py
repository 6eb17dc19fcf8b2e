"""The in-process store: exact for one process (one worker), shared with nobody.

The same buckets, with the same semantics, as the Redis store (limits/claims.py,
limits/lua.py), in plain Python; one event loop runs one admission at a time, so
an admission is atomic without a lock. Costs: a request or token window keeps one
slot per millisecond of its last `span_ms` that admitted anything (the sum of that
millisecond's admissions: exact, since they age out together), so at most `span_ms`
slots whatever the rate (a minute: 60,000), and a token window also one entry per
reservation not settled yet (the requests in flight); a lease bucket one entry per
held lease (and its heap at most twice that); a period one entry per unsettled
reservation. Everything else is O(1) per bucket per admission (running sums), plus
what has aged out since (each slot is dropped once: amortised O(1)).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import overload

from limits.claims import BucketState, Claim, Plan
from limits.periods import DAY_MS, period_of
from limits.store import LEASE_RETRY_MS, StoreAnswer

#: (used, reserved, reset_ms)
Look = tuple[int, int, int]
#: A token window sweeps its unsettled reservations for aged-out ones past twice the
#: count after its last sweep, and never below this.
PENDING_SWEEP_MIN = 1024
#: Stale entries a lease heap may hold beyond twice its held leases.
HEAP_SLACK = 64


class _Count:
    """Requests: how many were admitted in each millisecond of the last `span_ms`
    (one slot a millisecond that admitted any, oldest first), and their sum. An
    admitted request counts whatever became of it. At most `span_ms` slots,
    whatever the rate."""

    __slots__ = ("counts", "times", "total")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.counts: deque[int] = deque()
        self.total = 0

    def used(self, now: int, span: int) -> int:
        times = self.times
        while times and times[0] <= now - span:
            times.popleft()
            self.total -= self.counts.popleft()
        return self.total

    def reset(self, now: int, span: int) -> int:
        times = self.times
        return times[0] + span - now if times else 0

    def look(self, now: int, claim: Claim) -> Look:
        return self.used(now, claim.span_ms), 0, self.reset(now, claim.span_ms)

    def wait(self, now: int, claim: Claim, amount: int, used: int) -> tuple[int, bool]:
        # The admission that must age out first is the (used + 1 - limit)th oldest.
        over = used + amount - claim.limit
        for at, count in zip(self.times, self.counts, strict=True):
            over -= count
            if over <= 0:
                return max(1, at + claim.span_ms - now), False
        return claim.span_ms, False  # unreachable while amount <= limit

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        times = self.times
        if times and times[-1] == now:
            self.counts[-1] += 1
        else:
            times.append(now)
            self.counts.append(1)
        self.total += 1

    def settle(self, rid: str, amount: int) -> None:
        return None


class _Slot:
    """One millisecond of a token window: what its admissions were charged (their
    estimates, then their actual usage as they settle) and how much of that is
    still estimates."""

    __slots__ = ("at", "live", "reserved", "total")

    def __init__(self, at: int) -> None:
        self.at = at
        self.total = 0
        self.reserved = 0
        #: False once it aged out of the window: a late settlement changes nothing.
        self.live = True


class _Window:
    """Tokens: a slot per millisecond of the last `span_ms` that admitted any, oldest
    first; the reservations not settled yet, each with its slot and estimate; and the
    running sums, so a look is O(what aged out since the last one). At most `span_ms`
    slots, whatever the rate; unsettled reservations are the requests in flight."""

    __slots__ = ("pending", "pending_mark", "reserved", "slots", "total")

    def __init__(self) -> None:
        self.slots: deque[_Slot] = deque()
        self.pending: dict[str, tuple[_Slot, int]] = {}  # rid -> (slot, estimate)
        #: Past this many, pending entries whose slot aged out are dropped (each
        #: once: amortised O(1)); a reservation is normally settled long before.
        self.pending_mark = PENDING_SWEEP_MIN
        self.total = 0
        self.reserved = 0

    def used(self, now: int, span: int) -> int:
        slots = self.slots
        while slots and slots[0].at <= now - span:
            slot = slots.popleft()
            slot.live = False
            self.total -= slot.total
            self.reserved -= slot.reserved
        return self.total

    def reset(self, now: int, span: int) -> int:
        slots = self.slots
        return slots[0].at + span - now if slots else 0

    def look(self, now: int, claim: Claim) -> Look:
        used = self.used(now, claim.span_ms)
        return used, self.reserved, self.reset(now, claim.span_ms)

    def wait(self, now: int, claim: Claim, amount: int, used: int) -> tuple[int, bool]:
        if amount > claim.limit:
            return claim.span_ms, True
        over = used + amount - claim.limit
        for slot in self.slots:
            over -= slot.total
            if over <= 0:
                return max(1, slot.at + claim.span_ms - now), False
        return claim.span_ms, False  # unreachable while amount <= limit

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        slots = self.slots
        if slots and slots[-1].at == now:
            slot = slots[-1]
        else:
            slot = _Slot(now)
            slots.append(slot)
        slot.total += amount
        slot.reserved += amount
        self.total += amount
        self.reserved += amount
        pending = self.pending
        pending[rid] = (slot, amount)
        if len(pending) > self.pending_mark:
            self.pending = {r: entry for r, entry in pending.items() if entry[0].live}
            self.pending_mark = max(PENDING_SWEEP_MIN, 2 * len(self.pending))

    def settle(self, rid: str, amount: int) -> None:
        found = self.pending.pop(rid, None)
        if found is None:
            return  # settled already
        slot, estimate = found
        if not slot.live:
            return  # aged out of the window
        slot.total += amount - estimate
        slot.reserved -= estimate
        self.total += amount - estimate
        self.reserved -= estimate


class _Leases:
    """Concurrency: reservation -> expiry, and a heap of expiries for purging
    (renewals and releases leave stale heap entries, skipped when they surface, and
    dropped all at once when they outnumber the held leases: the heap stays within
    twice the leases held, plus `HEAP_SLACK`)."""

    __slots__ = ("expiries", "heap")

    def __init__(self) -> None:
        self.expiries: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def used(self, now: int, span: int) -> int:
        heap, expiries = self.heap, self.expiries
        while heap and (heap[0][0] <= now or expiries.get(heap[0][1]) != heap[0][0]):
            at, rid = heapq.heappop(heap)
            if expiries.get(rid) == at:
                del expiries[rid]
        return len(expiries)

    def reset(self, now: int, span: int) -> int:
        heap = self.heap
        return heap[0][0] - now if heap else 0

    def look(self, now: int, claim: Claim) -> Look:
        held = self.used(now, claim.span_ms)
        return held, held, self.reset(now, claim.span_ms)

    def wait(self, now: int, claim: Claim, amount: int, used: int) -> tuple[int, bool]:
        return max(1, min(LEASE_RETRY_MS, self.heap[0][0] - now)), False

    def _compact(self) -> None:
        """The heap rebuilt from the held leases, once stale entries outnumber them
        (each stale entry is dropped once: amortised O(1))."""
        self.heap = [(expiry, held) for held, expiry in self.expiries.items()]
        heapq.heapify(self.heap)

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        self.expiries[rid] = now + span
        heap = self.heap
        heapq.heappush(heap, (now + span, rid))
        if len(heap) > 2 * len(self.expiries) + HEAP_SLACK:
            self._compact()

    def settle(self, rid: str, amount: int) -> None:
        expiries = self.expiries
        if expiries.pop(rid, None) is not None and len(self.heap) > 2 * len(expiries) + HEAP_SLACK:
            self._compact()

    def renew(self, now: int, rid: str, span_ms: int) -> bool:
        if self.expiries.get(rid, now) <= now:
            return False
        self.expiries[rid] = now + span_ms
        heapq.heappush(self.heap, (now + span_ms, rid))
        if len(self.heap) > 2 * len(self.expiries) + HEAP_SLACK:
            self._compact()
        return True


class _Period:
    """Spend: the period's total, and the estimates not settled yet."""

    __slots__ = ("end", "pending", "reserved", "total")

    def __init__(self, end: int) -> None:
        self.end = end
        self.pending: dict[str, int] = {}
        self.total = 0
        self.reserved = 0

    def used(self, now: int, span: int) -> int:
        return self.total

    def reset(self, now: int, span: int) -> int:
        return max(0, self.end - now)

    def look(self, now: int, claim: Claim) -> Look:
        return self.total, self.reserved, max(0, self.end - now)

    def wait(self, now: int, claim: Claim, amount: int, used: int) -> tuple[int, bool]:
        return max(1, self.end - now), amount > claim.limit

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        self.pending[rid] = amount
        self.total += amount
        self.reserved += amount

    def settle(self, rid: str, amount: int) -> None:
        estimate = self.pending.pop(rid, None)
        if estimate is not None:
            self.total += amount - estimate
            self.reserved -= estimate


Bucket = _Count | _Window | _Leases | _Period

#: Plans whose buckets a store remembers, at most (emptied when full: a plan's
#: buckets are found again in microseconds).
_RESOLVED = 10_000

#: Period placements remembered (claim key, per, UTC day) -> bucket key, at most this
#: many (a month's bucket is the same all day, and so is a day's).
_PLACEMENTS = 4096


class MemoryStore:
    shared = False
    failures = 0  # it cannot fail

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """`clock`: seconds since the epoch (tests move it instead of sleeping)."""
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._placements: dict[tuple[str, str, int], str] = {}
        #: Each plan's buckets (`_resolve`), for at most `_RESOLVED` plans.
        self._resolved: dict[Plan, tuple[Bucket | None, ...]] = {}

    def _now(self) -> int:
        return round(self._clock() * 1000)

    def _bucket(self, claim: Claim, now: int) -> tuple[str, Bucket]:
        """The bucket `claim` is admitted to now (for a period: the current one)."""
        if claim.kind == "period":
            return self._period(claim, now)
        bucket = self._buckets.get(claim.key)
        if bucket is None:
            bucket = self._buckets[claim.key] = _KINDS[claim.kind]()
        return claim.key, bucket

    def _period(self, claim: Claim, now: int) -> tuple[str, Bucket]:
        """The current period's bucket: its key is worked out once a day per claim."""
        placement = (claim.key, claim.per, now // DAY_MS)
        key = self._placements.get(placement)
        if key is None:
            if len(self._placements) >= _PLACEMENTS:
                self._placements.clear()
            period, _ = period_of(claim.per, now)
            key = self._placements[placement] = f"{claim.key}:{period}"
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_ended_periods(now)
            bucket = self._buckets[key] = _Period(period_of(claim.per, now)[1])
        return key, bucket

    def _forget_ended_periods(self, now: int) -> None:
        ended = [k for k, b in self._buckets.items() if isinstance(b, _Period) and b.end <= now]
        for key in ended:
            del self._buckets[key]

    def _resolve(self, plan: Plan) -> tuple[Bucket | None, ...]:
        """The bucket of each of `plan`'s claims (None for a spend claim, whose bucket
        is the period of each admission): found once per plan, since a window or
        lease bucket, once made, is never dropped."""
        resolved = self._resolved.get(plan)
        if resolved is None:
            if len(self._resolved) >= _RESOLVED:
                self._resolved.clear()
            now = self._now()
            resolved = self._resolved[plan] = tuple(
                None if claim.kind == "period" else self._bucket(claim, now)[1]
                for claim in plan.claims
            )
        return resolved

    async def admit(self, rid: str, plan: Plan, tokens: int, cost: int) -> StoreAnswer:
        """One pass over the plan's buckets to look (each prunes what aged out and
        reads its running sum), one to add: O(1) per bucket, amortised."""
        now = self._now()
        amounts = (1, tokens, cost)
        found = list(self._resolve(plan))
        claims = plan.claims
        used: list[int] = []
        periods: tuple[str, ...] = ()
        refused = -1
        for index, (claim, source, bucket) in enumerate(
            zip(claims, plan.sources, found, strict=True)
        ):
            if bucket is None:
                key, bucket = self._period(claim, now)
                found[index] = bucket
                periods += (key,)
            count = bucket.used(now, claim.span_ms)
            if count + amounts[source] > claim.limit and refused < 0:
                refused = index
            used.append(count)
        buckets: list[Bucket] = found  # type: ignore[assignment]
        if refused >= 0:
            # Every bucket as it stands (a refusal reserves nothing anywhere).
            resets = [b.reset(now, c.span_ms) for b, c in zip(buckets, claims, strict=True)]
            claim = claims[refused]
            amount = amounts[plan.sources[refused]]
            retry, too_large = buckets[refused].wait(now, claim, amount, used[refused])
            return StoreAnswer(False, now, used, resets, periods, refused, retry, too_large)
        for index, (bucket, source, claim) in enumerate(
            zip(buckets, plan.sources, claims, strict=True)
        ):
            amount = amounts[source]
            bucket.add(now, rid, amount, claim.span_ms)
            used[index] += amount
        return StoreAnswer(True, now, used, _Resets(now, plan, buckets), periods)

    async def settle(
        self, rid: str, plan: Plan, periods: Sequence[str], tokens: int, cost: int
    ) -> None:
        buckets, resolved = self._buckets, self._resolve(plan)
        amounts = (1, tokens, cost)
        spent = iter(periods)
        for index in plan.settles:
            bucket = resolved[index]
            if bucket is None:
                bucket = buckets.get(next(spent))
                if bucket is None:
                    continue  # the period ended and was forgotten
            bucket.settle(rid, amounts[plan.sources[index]])

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


class _Resets(Sequence[int]):
    """An admitted request's reset per claim (`StoreAnswer.resets`), worked out only
    for the claims it is asked for, and read at once (the buckets move on): the
    headers read two of a dozen, the tightest requests and tokens limits. For those
    claims, when the oldest admission (or this one) ages out of the window; 0 for
    the others, which no header reports."""

    __slots__ = ("buckets", "claims", "now", "reported")

    def __init__(self, now: int, plan: Plan, buckets: Sequence[Bucket]) -> None:
        self.now = now
        self.claims = plan.claims
        self.buckets = buckets
        self.reported = plan.reported

    def __len__(self) -> int:
        return len(self.claims)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self.claims))[index]]
        if not self.reported[index]:
            return 0
        span = self.claims[index].span_ms
        return min(self.buckets[index].reset(self.now, span), span)


_KINDS: dict[str, type[_Count] | type[_Window] | type[_Leases]] = {
    "count": _Count,
    "window": _Window,
    "lease": _Leases,
}
