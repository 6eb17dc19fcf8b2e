"""The in-process store: exact for one process (one worker), shared with nobody.

The same buckets, with the same semantics, as the Redis store (limits/claims.py,
limits/lua.py), in plain Python; one event loop runs one admission at a time, so
an admission is atomic without a lock. Costs: a request or token window keeps one
slot per millisecond of its last `span_ms` that admitted anything (the sum of that
millisecond's admissions: exact, since they age out together), so at most `span_ms`
slots whatever the rate (a minute: 60,000); the store one entry per reservation
with token windows not settled yet (the requests in flight), however many windows
it was charged in; a lease bucket one entry per held lease (and its heap at most
twice that); a period one entry per unsettled reservation. Everything else is O(1)
per bucket per admission (running sums), plus what has aged out since (each slot is
dropped once: amortised O(1)).
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
#: The store sweeps its unsettled token estimates for aged-out ones past twice the
#: count after its last sweep, and never below this.
PENDING_SWEEP_MIN = 1024
#: Stale entries a lease heap may hold beyond twice its held leases.
HEAP_SLACK = 64
#: A bucket's `first` when it holds nothing that could age out or expire.
NEVER = 1 << 62


class _Count:
    """Requests: how many were admitted in each millisecond of the last `span_ms`
    (one slot a millisecond that admitted any, oldest first), and their sum. An
    admitted request counts whatever became of it. At most `span_ms` slots,
    whatever the rate."""

    __slots__ = ("counts", "first", "times", "total")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        self.counts: deque[int] = deque()
        self.total = 0
        #: The oldest slot's millisecond (`NEVER` when empty): nothing ages out
        #: before `first + span`, so an admission reads `total` without a call.
        self.first = NEVER

    def used(self, now: int, span: int) -> int:
        times = self.times
        while times and times[0] <= now - span:
            times.popleft()
            self.total -= self.counts.popleft()
        self.first = times[0] if times else NEVER
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
            if not times:
                self.first = now
            times.append(now)
            self.counts.append(1)
        self.total += 1


class _Window:
    """Tokens: a slot per millisecond of the last `span_ms` that admitted any, oldest
    first, with what its admissions were charged (their estimates, then their actual
    usage as they settle) and how much of that is still estimates; and the running
    sums, so a look is O(what aged out since the last one). At most `span_ms` slots,
    whatever the rate. Which reservations are not settled yet, and the slot and
    estimate of each, the store keeps once per admission, not once per window
    (`MemoryStore._estimates`): every window of an admission is charged the same
    tokens in the same millisecond.

    A slot is two integers in two dicts keyed by its millisecond, not an object: a
    window holds up to 60,000 of them for a minute, and objects would be the
    garbage collector's to traverse, ints and dicts of ints are not."""

    __slots__ = ("first", "reserved", "reserved_at", "times", "total", "totals")

    def __init__(self) -> None:
        self.times: deque[int] = deque()
        #: Per slot (by its millisecond): what it is charged, and of that the estimates.
        self.totals: dict[int, int] = {}
        self.reserved_at: dict[int, int] = {}
        #: The oldest slot's millisecond, or `NEVER` (as `_Count.first`).
        self.first = NEVER
        self.total = 0
        self.reserved = 0

    def used(self, now: int, span: int) -> int:
        times = self.times
        while times and times[0] <= now - span:
            at = times.popleft()
            self.total -= self.totals.pop(at)
            self.reserved -= self.reserved_at.pop(at)
        self.first = times[0] if times else NEVER
        return self.total

    def reset(self, now: int, span: int) -> int:
        times = self.times
        return times[0] + span - now if times else 0

    def look(self, now: int, claim: Claim) -> Look:
        used = self.used(now, claim.span_ms)
        return used, self.reserved, self.reset(now, claim.span_ms)

    def wait(self, now: int, claim: Claim, amount: int, used: int) -> tuple[int, bool]:
        if amount > claim.limit:
            return claim.span_ms, True
        over = used + amount - claim.limit
        totals = self.totals
        for at in self.times:
            over -= totals[at]
            if over <= 0:
                return max(1, at + claim.span_ms - now), False
        return claim.span_ms, False  # unreachable while amount <= limit

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        times, totals, reserved = self.times, self.totals, self.reserved_at
        if times and times[-1] == now:
            totals[now] += amount
            reserved[now] += amount
        else:
            if not times:
                self.first = now
            times.append(now)
            totals[now] = amount
            reserved[now] = amount
        self.total += amount
        self.reserved += amount

    def settle(self, at: int, amount: int, estimate: int) -> None:
        """The admission of slot `at` that was charged `estimate` now counts `amount`."""
        totals = self.totals
        if at not in totals:
            return  # its slot aged out of the window: a late settlement changes nothing
        totals[at] += amount - estimate
        self.reserved_at[at] -= estimate
        self.total += amount - estimate
        self.reserved -= estimate


class _Leases:
    """Concurrency: reservation -> expiry, and a heap of expiries for purging
    (renewals and releases leave stale heap entries, skipped when they surface, and
    dropped all at once when they outnumber the held leases: the heap stays within
    twice the leases held, plus `HEAP_SLACK`)."""

    __slots__ = ("expiries", "first", "heap", "total")

    def __init__(self) -> None:
        self.expiries: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []
        #: The leases held (`len(expiries)`), and the heap's earliest expiry
        #: (`NEVER` when empty): until then nothing expires, so an admission reads
        #: `total` without a call.
        self.total = 0
        self.first = NEVER

    def used(self, now: int, span: int) -> int:
        heap, expiries = self.heap, self.expiries
        while heap and (heap[0][0] <= now or expiries.get(heap[0][1]) != heap[0][0]):
            at, rid = heapq.heappop(heap)
            if expiries.get(rid) == at:
                del expiries[rid]
        self.first = heap[0][0] if heap else NEVER
        self.total = len(expiries)
        return self.total

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
        heap = self.heap = [(expiry, held) for held, expiry in self.expiries.items()]
        heapq.heapify(heap)
        self.first = heap[0][0] if heap else NEVER

    def add(self, now: int, rid: str, amount: int, span: int) -> None:
        expiries = self.expiries
        expiry = expiries[rid] = now + span
        held = self.total = len(expiries)
        heap = self.heap
        heapq.heappush(heap, (expiry, rid))
        self.first = heap[0][0]
        if len(heap) > 2 * held + HEAP_SLACK:
            self._compact()

    def release(self, rid: str) -> None:
        """The lease is given back (its heap entry goes stale)."""
        if self.expiries.pop(rid, None) is not None:
            held = self.total = self.total - 1
            if len(self.heap) > 2 * held + HEAP_SLACK:
                self._compact()

    def renew(self, now: int, rid: str, span_ms: int) -> bool:
        if self.expiries.get(rid, now) <= now:
            return False
        self.expiries[rid] = now + span_ms
        heapq.heappush(self.heap, (now + span_ms, rid))
        self.first = self.heap[0][0]
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
#: The buckets whose claims an admission reads without a call (not periods).
Timed = _Count | _Window | _Leases

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
        #: Each plan's buckets (`_rows`), for at most `_RESOLVED` plans.
        self._resolved: dict[Plan, _Rows] = {}
        #: Reservations with token windows not settled yet: rid -> (slot, estimate,
        #: span), one entry per admission whatever its number of windows (each was
        #: charged the estimate in the same millisecond). Past `_estimates_mark`,
        #: entries whose slot aged out of the window are dropped (each once:
        #: amortised O(1)); a reservation is normally settled long before.
        self._estimates: dict[str, tuple[int, int, int]] = {}
        self._estimates_mark = PENDING_SWEEP_MIN

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

    def _rows(self, plan: Plan) -> _Rows:
        """`plan`'s buckets, with what an admission reads of each claim beside them."""
        rows = self._resolved.get(plan)
        if rows is None:
            if len(self._resolved) >= _RESOLVED:
                self._resolved.clear()
            now = self._now()
            buckets = tuple(
                None if claim.kind == "period" else self._bucket(claim, now)[1]
                for claim in plan.claims
            )
            rows = self._resolved[plan] = _Rows(plan, buckets)
        return rows

    async def admit(self, rid: str, plan: Plan, tokens: int, cost: int) -> StoreAnswer:
        """One pass over the plan's buckets to look (each reads its running sum,
        pruning first only when something may have aged out), one per kind to add:
        O(1) per bucket, amortised."""
        now = self._now()
        amounts = (1, tokens, cost)
        rows = self._rows(plan)
        if rows.fast is None:
            return self._admit_with_periods(rid, plan, rows, now, amounts)
        # What each bucket would count with this admission.
        used: list[int] = []
        refused = -1
        for bucket, source, limit, lag, span in rows.fast:
            count = bucket.used(now, span) if bucket.first <= now - lag else bucket.total
            count += amounts[source]
            if count > limit and refused < 0:
                refused = len(used)
            used.append(count)
        buckets: tuple[Bucket, ...] = rows.buckets  # type: ignore[assignment]
        if refused >= 0:
            sources = zip(used, plan.sources, strict=True)
            used = [count - amounts[source] for count, source in sources]
            return self._refused(plan, list(buckets), now, amounts, used, (), refused)
        for counted in rows.counts:
            counted.add(now, rid, 1, 0)
        if rows.windows:
            self._charge(rid, rows, now, tokens)
        for leased, span in rows.leases:
            leased.add(now, rid, 1, span)
        return StoreAnswer(True, now, used, _Resets(now, plan, buckets))

    def _charge(self, rid: str, rows: _Rows, now: int, tokens: int) -> None:
        """The admission's estimate in each of its token windows, remembered once."""
        for window in rows.windows:
            window.add(now, rid, tokens, 0)
        estimates = self._estimates
        estimates[rid] = (now, tokens, rows.window_span)
        if len(estimates) > self._estimates_mark:
            self._estimates = {r: e for r, e in estimates.items() if e[0] > now - e[2]}
            self._estimates_mark = max(PENDING_SWEEP_MIN, 2 * len(self._estimates))

    def _admit_with_periods(
        self, rid: str, plan: Plan, rows: _Rows, now: int, amounts: tuple[int, int, int]
    ) -> StoreAnswer:
        """`admit` for a plan with spend claims: each admission finds its period."""
        found = list(rows.buckets)
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
            return self._refused(plan, buckets, now, amounts, used, periods, refused)
        for index, (bucket, source, claim) in enumerate(
            zip(buckets, plan.sources, claims, strict=True)
        ):
            amount = amounts[source]
            used[index] += amount
            if not isinstance(bucket, _Window):  # charged below, the estimate kept once
                bucket.add(now, rid, amount, claim.span_ms)
        if rows.windows:
            self._charge(rid, rows, now, amounts[1])
        return StoreAnswer(True, now, used, _Resets(now, plan, buckets), periods)

    @staticmethod
    def _refused(
        plan: Plan,
        buckets: Sequence[Bucket],
        now: int,
        amounts: tuple[int, int, int],
        used: list[int],
        periods: tuple[str, ...],
        refused: int,
    ) -> StoreAnswer:
        """A refusal: every bucket as it stands (it reserves nothing anywhere)."""
        claims = plan.claims
        for bucket, claim in zip(buckets, claims, strict=True):
            bucket.used(now, claim.span_ms)  # pruned, so its reset is the true one
        resets = [b.reset(now, c.span_ms) for b, c in zip(buckets, claims, strict=True)]
        claim = claims[refused]
        amount = amounts[plan.sources[refused]]
        retry, too_large = buckets[refused].wait(now, claim, amount, used[refused])
        return StoreAnswer(False, now, used, resets, periods, refused, retry, too_large)

    async def settle(
        self, rid: str, plan: Plan, periods: Sequence[str], tokens: int, cost: int
    ) -> None:
        rows = self._rows(plan)
        estimate = self._estimates.pop(rid, None)
        if estimate is not None:
            at, charged, _ = estimate
            for window in rows.windows:
                window.settle(at, tokens, charged)
        for leased, _ in rows.leases:
            leased.release(rid)
        if not periods:
            return
        buckets = self._buckets
        for key in periods:
            bucket = buckets.get(key)
            if isinstance(bucket, _Period):  # else the period ended and was forgotten
                bucket.settle(rid, cost)

    async def renew(self, leases: Sequence[tuple[str, Plan]]) -> set[str]:
        now = self._now()
        lost = set()
        for rid, plan in leases:
            for claim in plan.lease_claims:
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


class _Rows:
    """A plan's buckets as this store holds them (None for a spend claim's: it moves
    with the period), each kind's apart for adding and settling, and for a plan
    without spend claims (whose buckets never change) a row per claim of what an
    admission reads, (bucket, amount source, limit, lag, span). A bucket needs
    pruning only once `first <= now - lag` (lag: the window for requests and
    tokens, 0 for a lease, whose `first` is an expiry)."""

    __slots__ = ("buckets", "counts", "fast", "leases", "window_span", "windows")

    def __init__(self, plan: Plan, buckets: tuple[Bucket | None, ...]) -> None:
        self.buckets = buckets
        claims = plan.claims
        self.counts = tuple(b for b in buckets if isinstance(b, _Count))
        self.windows = tuple(b for b in buckets if isinstance(b, _Window))
        #: (bucket, lease span) of each concurrency claim.
        self.leases = tuple(
            (b, c.span_ms) for b, c in zip(buckets, claims, strict=True) if isinstance(b, _Leases)
        )
        #: How long a token estimate can be settled: the longest window's span.
        self.window_span = max(
            (c.span_ms for b, c in zip(buckets, claims, strict=True) if isinstance(b, _Window)),
            default=0,
        )
        self.fast: tuple[tuple[Timed, int, int, int, int], ...] | None = None
        if all(bucket is not None for bucket in buckets):
            self.fast = tuple(
                (bucket, source, claim.limit, 0 if claim.kind == "lease" else claim.span_ms,
                 claim.span_ms)
                for bucket, source, claim in zip(buckets, plan.sources, claims, strict=True)
                if not isinstance(bucket, (_Period, type(None)))
            )  # fmt: skip


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
        # A requests or tokens bucket: its oldest slot (pruned, or with nothing to
        # prune, by the admission) ages out at `first + span` (its `reset`).
        first = self.buckets[index].first  # type: ignore[union-attr]
        if first == NEVER:
            return 0
        span = self.claims[index].span_ms
        reset = first + span - self.now
        return reset if reset < span else span


_KINDS: dict[str, type[_Count] | type[_Window] | type[_Leases]] = {
    "count": _Count,
    "window": _Window,
    "lease": _Leases,
}
