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

A request's claims differ from the next one's of the same levels only in two
amounts, the tokens and the cost: a `Plan` holds the claims of one set of levels,
built once (the limits stage keeps one per caller and limit classes), and a
request fills in only those two numbers. Nothing is built per claim per request.
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


#: The demand of a request whose levels limit neither tokens nor spend.
NO_DEMAND = Demand(0, 0.0)


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


def plan_claims(
    levels: Sequence[Level], *, lease_ms: int, prefix: str, window_ms: int = WINDOW_MS
) -> list[Claim]:
    """The claims of `levels` with no demand (tokens and spend 0): a `Plan`'s."""
    return claims_for(levels, NO_DEMAND, lease_ms=lease_ms, prefix=prefix, window_ms=window_ms)


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


#: Where a claim's amount comes from, per request (`Plan.sources`): one (a request,
#: a concurrency slot), the demand's tokens, the demand's cost in micro-dollars.
#: The order is that of `Plan.amounts`' tuple.
ONE, BY_TOKENS, BY_COST = 0, 1, 2
_SOURCES: dict[str, int] = {"count": ONE, "lease": ONE, "window": BY_TOKENS, "period": BY_COST}

#: A decision counter's key: (limit, level kind, result).
DecisionKey = tuple[str, str, str]


class Plan:
    """Every claim one set of levels makes, with what a request needs to know about
    them worked out once: which amount each takes, which ones the rate-limit
    headers report, which are settled, their decision-counter keys. Built by
    `Limiter.plan`; immutable after that, except its `tally` (admissions it allowed,
    shared with every plan of the same counter keys), which the limiter owns.

    The claims' amounts are 0 for tokens and spend (filled per request) and 1 for
    requests and concurrency; `claims_for` is the same claims with a demand's amounts."""

    __slots__ = (
        "allowed_keys",
        "claims",
        "counts_tokens",
        "lease_claims",
        "limit_texts",
        "limits",
        "periods",
        "ranked",
        "reported",
        "requests",
        "settles",
        "sources",
        "tally",
        "tokens",
    )

    def __init__(self, claims: Sequence[Claim], tally: list[int] | None = None) -> None:
        self.claims = tuple(claims)
        self.sources = tuple(_SOURCES[c.kind] for c in self.claims)
        #: Indices of the claims OpenAI's headers report: requests, and tokens.
        self.requests = tuple(i for i, c in enumerate(self.claims) if c.name == REQUESTS)
        self.tokens = tuple(i for i, c in enumerate(self.claims) if c.name == TOKENS)
        #: Per claim: its limit, and that written out (for the headers).
        self.limits = tuple(c.limit for c in self.claims)
        self.limit_texts = tuple(str(c.limit) for c in self.claims)
        #: The requests claims and the tokens claims, each ordered by limit (claim
        #: order among equal limits): the headers' tie-break, the smaller limit first.
        self.ranked = tuple(
            tuple(sorted(indices, key=lambda i: self.claims[i].limit))
            for indices in (self.requests, self.tokens)
        )
        #: Per claim: is it one of those (whose reset the headers may report)?
        self.reported = tuple(i in self.requests or i in self.tokens for i in range(len(claims)))
        #: Indices of the spend claims, whose bucket is the period of the admission.
        self.periods = tuple(i for i, c in enumerate(self.claims) if c.kind == "period")
        #: Indices of the claims a settlement touches (all but requests), in order.
        self.settles = tuple(i for i, c in enumerate(self.claims) if c.kind != "count")
        self.lease_claims = tuple(c for c in self.claims if c.kind == "lease")
        #: Does a request's demand matter (a tokens or spend limit)? Else it is not counted.
        self.counts_tokens = any(c.kind in ("window", "period") for c in self.claims)
        #: The decision-counter key of each claim when admitted.
        self.allowed_keys: tuple[DecisionKey, ...] = tuple(
            (c.name, c.level.split(":", 1)[0], "allowed") for c in self.claims
        )
        #: [admissions allowed]: counted once per admission, not once per claim.
        self.tally = [0] if tally is None else tally

    def with_amounts(self, tokens: int, cost: int) -> list[Claim]:
        """The claims with a request's amounts (for stores and views that want them)."""
        amounts = (1, tokens, cost)
        return [
            c if s == ONE else c.with_amount(amounts[s])
            for c, s in zip(self.claims, self.sources, strict=True)
        ]


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
