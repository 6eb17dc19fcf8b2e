"""What a limit store does, whichever it is: the in-process one or Redis.

A store keeps the buckets (limits/claims.py) and decides admissions atomically: all
of one admission's claims are checked and reserved as one step, so two admissions
never both take the last unit, and a refusal leaves every bucket as it was. It
keeps time itself (the memory store its clock, Redis its `TIME`): a replica's own
clock never decides a window edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from limits.claims import BucketState, Claim, Plan
from limits.errors import StoreUnavailable as StoreUnavailable

#: The retry hint when every concurrency slot is held: a slot frees when a running
#: request ends, which no store can foresee (the earliest lease's expiry, if sooner).
LEASE_RETRY_MS = 1000


@dataclass(slots=True)
class StoreAnswer:
    """A store's answer to one admission: admitted, or refused by the first claim that
    did not fit; either way what each bucket counts, as two lists indexed like the
    plan's claims (no object per claim: most of them are only checked, and the
    headers read two kinds)."""

    admitted: bool
    #: The store's clock when it decided (ms since the epoch): what exactness is
    #: judged against (a replica's own clock may differ).
    at_ms: int
    #: Per claim: what its bucket counts, this admission included when admitted,
    #: as it stands when refused (settled usage plus unsettled reservations).
    used: Sequence[int]
    #: Per claim: ms until its bucket next frees room if nothing is settled
    #: meanwhile (see `BucketState.reset_ms`). Exact for requests and tokens
    #: claims, the ones the headers report; a store may leave the others 0.
    resets: Sequence[int]
    #: The period bucket of each of the plan's spend claims, in order
    #: (`<key>:2027-01-15`): a settlement after midnight still corrects the day it
    #: was admitted in.
    periods: tuple[str, ...] = ()
    refused_by: int = -1
    #: ms until the refusing claim would fit, if nothing is settled meanwhile.
    retry_after_ms: int = 0
    #: The claim's amount exceeds its limit on its own: waiting never helps.
    too_large: bool = False


class Store(Protocol):
    #: Whether other processes share the counters (Redis) or not (memory).
    shared: bool
    #: Calls that failed or timed out, since the store was made (a metric).
    failures: int

    async def admit(self, rid: str, plan: Plan, tokens: int, cost: int) -> StoreAnswer:
        """Reserve every claim of `plan` under reservation id `rid`, or none; a
        tokens claim takes `tokens`, a spend claim `cost` (micro-dollars), the
        others one. Raises `StoreUnavailable`."""
        ...

    async def settle(
        self, rid: str, plan: Plan, periods: Sequence[str], tokens: int, cost: int
    ) -> None:
        """Reservation `rid` (admitted for `plan`, its spend in `periods`) now counts
        `tokens` in each tokens bucket and `cost` in each spend bucket; its leases
        are released. Applying it twice is applying it once; a bucket the
        reservation has aged out of is left alone. Never raises: a store that
        cannot apply it now applies it later (or says why it gave up)."""
        ...

    async def renew(self, leases: Sequence[tuple[str, Plan]]) -> set[str]:
        """Extend the leases of each (reservation id, plan it was admitted for), each
        lease claim's by its `span_ms` from now; returns the reservation ids whose
        leases were no longer held (expired, released, or never taken). Raises
        `StoreUnavailable`."""
        ...

    async def usage(self, claims: Sequence[Claim]) -> list[BucketState]:
        """Each claim's bucket as it stands (amounts ignored). Raises
        `StoreUnavailable`."""
        ...

    async def aclose(self) -> None: ...
