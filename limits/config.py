"""The shape of `limits:` wherever it appears: on a key, a tenant, or a named limit class.

Every field is optional; a limit that is not set does not apply. Where several
levels set the same limit (a key, its tenant, every ancestor, a policy-selected
class), all apply and all must pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.config import Frozen

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
    def empty(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_concurrent is None
            and self.spend_usd is None
        )
