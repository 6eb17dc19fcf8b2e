"""What one admission asks of the counters: a claim per limit per level.

A request's demand (1 request, 1 concurrency slot, N tokens, a price) becomes one
`Claim` per limit of every level that applies (`tenant:acme`, `key:ci-bot`,
`class:tight`). Admission is all or nothing across the claims: a refusal reserves
nothing anywhere. Amounts are integers everywhere (tokens; spend in micro-dollars),
so no store ever sums floats.

Four kinds of bucket (docs/limits.md has their exact semantics):

- `count` (requests per minute): a sliding-window log of the admissions of the last
  `span_ms`. An admission at `t` counts while `now < t + span_ms`. A request is
  admitted when fewer than `limit` are counted.
- `window` (tokens per minute): a sliding-window log of amounts. Admitted when the
  amounts counted now plus this one are at most `limit`. Each amount is an
  estimate until settled; settlement replaces it with the actual usage, which may
  exceed the estimate (debt: it counts, and delays later admissions, until it ages
  out of the window with its admission).
- `lease` (concurrent requests): leases that expire by themselves `span_ms` after
  they were taken or last renewed. Admitted while fewer than `limit` are held.
- `period` (spend): the sum of amounts of the current UTC day or month
  (limits/periods.py), settled like a window's; it starts from zero each period.

No window has edges: at no instant does the last `span_ms` hold more than the limit
(settlement debt aside), and at no instant is a request refused while it would fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from limits.config import LimitsConfig
from limits.errors import StoreUnavailable as StoreUnavailable  # its first home

Kind = Literal["count", "window", "lease", "period"]

#: A minute: the window of `requests_per_minute` and `tokens_per_minute`.
WINDOW_MS = 60_000
#: Spend is counted in micro-dollars: integers, exact to $0.000001 per request.
MICRO = 1_000_000

#: Limit names as clients, refusals and metrics see them.
REQUESTS, TOKENS, CONCURRENT, SPEND = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent",
    "spend_usd",
)


@dataclass(frozen=True, slots=True)
class Level:
    """One level's limits, named by its kind and id: `tenant:acme`, `key:ci-bot`,
    `class:tight`. The kind (before the colon) labels metrics."""

    name: str
    config: LimitsConfig

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Demand:
    """What a request is expected to use: reserved at admission, settled at the end.

    `tokens` is prompt plus completion (the counted prompt plus `max_tokens`, or the
    gateway's default completion estimate); `cost_usd` is that priced."""

    tokens: int
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """One limit of one level, and what this admission asks of it."""

    #: The bucket's key (without a period's suffix): `seawall:limit:tenant:acme:max_concurrent`.
    key: str
    kind: Kind
    limit: int
    amount: int
    #: `count` and `window`: the window's length; `lease`: the lease's time to live;
    #: `period`: 0 (the calendar decides).
    span_ms: int
    level: str
    name: str  # which limit: REQUESTS, TOKENS, CONCURRENT, SPEND
    fail_open: bool
    #: A period's length: "day" or "month" ("" for the other kinds).
    per: str = ""
    #: A period claim's bucket once the store has placed it (`<key>:2027-01-15`): a
    #: settlement after midnight still corrects the day it was admitted in. None
    #: before admission; always None for the other kinds (their bucket is `key`).
    bucket: str | None = None

    def with_amount(self, amount: int) -> Claim:
        return Claim(
            self.key, self.kind, self.limit, amount, self.span_ms, self.level, self.name,
            self.fail_open, self.per, self.bucket,
        )  # fmt: skip

    def placed(self, bucket: str) -> Claim:
        if self.kind != "period" or bucket == self.bucket:
            return self
        return Claim(
            self.key, self.kind, self.limit, self.amount, self.span_ms, self.level, self.name,
            self.fail_open, self.per, bucket,
        )  # fmt: skip

    @property
    def settles(self) -> bool:
        """Is its amount an estimate that settlement replaces (tokens, spend)?"""
        return self.kind in ("window", "period")


def claims_for(
    levels: Sequence[Level],
    demand: Demand,
    *,
    lease_ms: int,
    prefix: str,
    window_ms: int = WINDOW_MS,
) -> list[Claim]:
    """Every claim `demand` makes on `levels`, in level order. A level named twice
    counts once (the first one's limits apply): one bucket is never charged twice
    for one request. `window_ms` is a minute; the algorithm does not depend on it
    (tests shorten it)."""
    seen: set[str] = set()
    claims: list[Claim] = []
    for level in levels:
        if level.name not in seen:
            seen.add(level.name)
            claims += _level_claims(level, demand, lease_ms, prefix, window_ms)
    return claims


def _level_claims(
    level: Level, demand: Demand, lease_ms: int, prefix: str, window_ms: int
) -> list[Claim]:
    config, name = level.config, level.name
    base = f"{prefix}{name}:"
    open_ = config.on_store_failure == "fail_open"
    claims = []
    if config.requests_per_minute is not None:
        limit = config.requests_per_minute
        claims.append(Claim(base + REQUESTS, "count", limit, 1, window_ms, name, REQUESTS, open_))
    if config.tokens_per_minute is not None:
        limit, tokens = config.tokens_per_minute, max(0, demand.tokens)
        claims.append(Claim(base + TOKENS, "window", limit, tokens, window_ms, name, TOKENS, open_))
    if config.max_concurrent is not None:
        limit = config.max_concurrent
        claims.append(
            Claim(base + CONCURRENT, "lease", limit, 1, lease_ms, name, CONCURRENT, open_)
        )
    if config.spend_usd is not None:
        spend = config.spend_usd
        limit, cost = micro_usd(spend.amount), micro_usd(max(0.0, demand.cost_usd))
        claims.append(Claim(base + SPEND, "period", limit, cost, 0, name, SPEND, open_, spend.per))
    return claims


def micro_usd(usd: float) -> int:
    return round(usd * MICRO)


def describe(claim: Claim) -> str:
    """The limit as a person reads it: `tokens_per_minute 50000`, `spend_usd $5 per day`."""
    if claim.name == SPEND:
        return f"spend_usd ${claim.limit / MICRO:g} per {claim.per}"
    return f"{claim.name} {claim.limit}"


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket as the store counted it: after an admission (including it), at a
    refusal (without it), or for the admin view."""

    claim: Claim
    #: What the bucket counts now: settled usage plus unsettled reservations; may
    #: exceed the limit while settlement debt is outstanding.
    used: int
    #: The part of `used` that is estimates of reservations not yet settled (for a
    #: lease bucket: the leases held).
    reserved: int
    #: ms until the bucket next frees room if nothing is settled meanwhile: the
    #: oldest amount ages out of the window, the earliest lease expires, the period
    #: ends. 0 when it holds nothing.
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.claim.limit - self.used)
