"""The shape of `limits:` wherever it appears: on a key, a tenant, or a named limit class.

Every field is optional; a limit that is not set does not apply. Where several
levels set the same limit (a key, its tenant, every ancestor, a policy-selected
class), all apply and all must pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.config import Frozen, Identifier
from common.secrets import SecretUrl, StoreUrl

StoreFailure = Literal["fail_open", "fail_closed"]


class SpendLimit(Frozen):
    """US dollars per calendar `day` or `month` (UTC)."""

    amount: float = Field(gt=0)
    per: Literal["day", "month"] = "day"


class LimitsConfig(Frozen):
    requests_per_minute: int | None = Field(None, gt=0)
    #: Prompt plus completion tokens.
    tokens_per_minute: int | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, gt=0)
    spend_usd: SpendLimit | None = None
    #: What these limits do when the shared store (Redis) cannot answer in time.
    on_store_failure: StoreFailure = "fail_closed"

    @property
    def counts_tokens(self) -> bool:
        """Does this level limit tokens or spend (so a request's prompt is counted)?"""
        return self.tokens_per_minute is not None or self.spend_usd is not None

    @property
    def empty(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_concurrent is None
            and self.spend_usd is None
        )


class LimitSettings(Frozen):
    """The gateway-wide `limits:` section: where counters live, and the named classes
    policies select (`effect: limit_class`)."""

    #: `memory` (this process; exact for one worker) or `redis://HOST:PORT/DB` (exact
    #: across workers and replicas), whose password may be an `env:` reference
    #: (`redis://user:env:REDIS_PASSWORD@host:6379/0`). Restart-only.
    store: StoreUrl = SecretUrl.of("memory")
    #: A store call slower than this is a store failure (each level's `on_store_failure`).
    store_timeout_ms: int = Field(200, gt=0, le=10_000)
    #: Completion tokens reserved for a request that sets no `max_tokens`.
    default_completion_tokens: int = Field(1024, gt=0)
    #: A concurrency slot is a lease with this time to live, renewed every third of
    #: it while its request runs (a long stream keeps its slot): a crashed
    #: process's slots free themselves at most this long after its last renewal.
    lease_s: float = Field(30, ge=3, le=3600)
    classes: dict[Identifier, LimitsConfig] = Field(default_factory=dict)

    @property
    def shared(self) -> bool:
        return self.store != "memory"
