"""What one admission asks of the counters: a claim per limit per level.

A request's demand (1 request, 1 concurrency slot, N tokens, a price) becomes one
`Claim` per limit of every level that applies (`tenant:acme`, `key:ci`, `class:tight`).
Admission is all or nothing across the claims: a refusal reserves nothing anywhere.
Amounts are integers everywhere (tokens; spend in micro-dollars) so a store never sums
floats.

Three kinds of bucket, and their exact meaning (docs/limits.md):

- `window`: a sliding window log of the last 60 s. A claim is admitted when the sum of
  the amounts admitted in the 60 s before now, plus its amount, is at most the limit.
  There are no window edges: at no instant does the last minute hold more than the
  limit (settlement aside: an actual usage above the reservation is charged as debt,
  which delays later admissions but cannot be refused after the fact).
- `concurrent`: leases; admitted while fewer than the limit are held; each lease
  expires by itself after `lease_s` so a crashed process cannot hold one forever.
- `period`: a calendar day or month (UTC); the sum of the period's amounts.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Literal

from limits.config import LimitsConfig

Kind = Literal["window", "concurrent", "period"]
WINDOW_MS = 60_000
MICRO = 1_000_000

#: Limit names as clients and metrics see them.
REQUESTS, TOKENS, CONCURRENT, SPEND = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent",
    "spend_usd",
)


@dataclass(frozen=True, slots=True)
class Level:
    """One level's limits: `tenant:acme`, `key:ci-bot`, `class:tight`."""

    name: str
    config: LimitsConfig


@dataclass(frozen=True, slots=True)
class Demand:
    """What a request is expected to use: reserved at admission, settled at the end."""

    tokens: int
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    key: str  # the bucket: "seawall:limit:tenant:acme:tokens_per_minute"
    kind: Kind
    limit: int
    amount: int
    #: window: its length; concurrent: the lease; period: until it ends (ms).
    span_ms: int
    level: str
    name: str  # which limit (REQUESTS, TOKENS...)
    fail_open: bool
    #: A spend limit's period: "day" or "month".
    per: str = ""

    def with_amount(self, amount: int) -> Claim:
        return Claim(
            self.key, self.kind, self.limit, amount, self.span_ms, self.level, self.name,
            self.fail_open, self.per,
        )  # fmt: skip


def period_end_ms(per: str, now_s: float) -> int:
    """The end of the current UTC day or month, in ms since the epoch."""
    moment = time.gmtime(now_s)
    if per == "day":
        start = calendar.timegm((moment.tm_year, moment.tm_mon, moment.tm_mday, 0, 0, 0))
        return (start + 86_400) * 1000
    year, month = (moment.tm_year + moment.tm_mon // 12, moment.tm_mon % 12 + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def period_id(per: str, now_s: float) -> str:
    return time.strftime("%Y-%m-%d" if per == "day" else "%Y-%m", time.gmtime(now_s))


def claims_for(
    levels: tuple[Level, ...],
    demand: Demand,
    lease_s: float,
    prefix: str,
    now_s: float,
    window_ms: int = WINDOW_MS,
) -> list[Claim]:
    """Every claim the demand makes on `levels`, levels in order. `window_ms` is a
    minute; the algorithm does not depend on it (tests shorten it)."""
    return [
        c
        for level in levels
        for c in _level_claims(level, demand, lease_s, prefix, now_s, window_ms)
    ]


def _level_claims(
    level: Level, demand: Demand, lease_s: float, prefix: str, now_s: float, window_ms: int
) -> list[Claim]:
    config, base, name = level.config, f"{prefix}{level.name}:", level.name
    open_ = config.on_store_failure == "fail_open"
    claims = []
    if config.requests_per_minute is not None:
        limit = config.requests_per_minute
        claims.append(Claim(base + REQUESTS, "window", limit, 1, window_ms, name, REQUESTS, open_))
    if config.tokens_per_minute is not None:
        limit, tokens = config.tokens_per_minute, max(0, demand.tokens)
        claims.append(Claim(base + TOKENS, "window", limit, tokens, window_ms, name, TOKENS, open_))
    if config.max_concurrent is not None:
        limit, lease_ms = config.max_concurrent, int(lease_s * 1000)
        claims.append(
            Claim(base + CONCURRENT, "concurrent", limit, 1, lease_ms, name, CONCURRENT, open_)
        )
    if config.spend_usd is not None:
        per = config.spend_usd.per
        key = f"{base}{SPEND}:{period_id(per, now_s)}"
        span = period_end_ms(per, now_s) - int(now_s * 1000)
        limit, cost = int(config.spend_usd.amount * MICRO), round(demand.cost_usd * MICRO)
        claims.append(Claim(key, "period", limit, cost, span, name, SPEND, open_, per))
    return claims


@dataclass(frozen=True, slots=True)
class ClaimState:
    """A bucket after an admission: what the client-facing headers report."""

    claim: Claim
    used: int
    #: ms until the bucket next frees room (the oldest amount ages out; a lease or a
    #: period ends); 0 when it holds nothing.
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.claim.limit - self.used)


class StoreUnavailable(Exception):
    """The store did not answer in time, or not at all."""


@dataclass(frozen=True, slots=True)
class StoreAnswer:
    """A store's answer to one admission: admitted with each bucket's state, or
    refused by the first claim that did not fit, with when it would."""

    admitted: bool
    states: tuple[ClaimState, ...] = ()
    refused_by: int = -1
    retry_after_ms: int = 0
    #: The store's clock when it decided (ms since the epoch): what exactness is
    #: judged against (a replica's own clock may differ).
    at_ms: int = 0
