"""What tokens cost, for spend limits: litellm's bundled price table, or the caller's.

The table is litellm's `model_prices_and_context_window_backup.json`, read as a
file by the loader routing already has (routing/context_windows.py: litellm is
never imported for it); its `input_cost_per_token` and `output_cost_per_token`
are USD per token. A deployment may set its own price, in USD per million input
and output tokens, which wins. A model the table does not know, with no price set,
costs 0, and says so: `price_for` returns None for it (the gateway may warn at
start-up), and `cost` logs it once per model.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Protocol

from routing.context_windows import litellm_table

log = logging.getLogger("seawall.limits")

MILLION = 1_000_000


class PriceOverride(Protocol):
    """A configured price (routing's `Price`): USD per million tokens."""

    @property
    def input_per_mtok(self) -> float: ...

    @property
    def output_per_mtok(self) -> float: ...


class PricedDeployment(Protocol):
    """What pricing needs of a deployment (routing's `DeploymentConfig`)."""

    @property
    def model(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def price(self) -> PriceOverride | None: ...


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


FREE = TokenPrice(0.0, 0.0)


def per_million(override: PriceOverride) -> TokenPrice:
    return TokenPrice(override.input_per_mtok / MILLION, override.output_per_mtok / MILLION)


def price_for(
    model: str, override: PriceOverride | None = None, provider: str | None = None
) -> TokenPrice | None:
    """`override` if given, else the table's price for `model` (also tried as
    `provider/model`, and without a `provider/` prefix); None when neither knows it."""
    if override is not None:
        return per_million(override)
    return table_price(model, provider)


@functools.cache
def table_price(model: str, provider: str | None = None) -> TokenPrice | None:
    table = litellm_table()
    names = [model]
    if provider:
        names.append(f"{provider}/{model}")
    if "/" in model:
        names.append(model.split("/", 1)[1])
    for name in names:
        entry = table.get(name)
        if name == "sample_spec" or not isinstance(entry, dict):
            continue
        cost_in = _usd(entry.get("input_cost_per_token"))
        cost_out = _usd(entry.get("output_cost_per_token"))
        if cost_in is not None and cost_out is not None:
            return TokenPrice(cost_in, cost_out)
    return None


def _usd(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    override: PriceOverride | None = None,
    provider: str | None = None,
) -> float:
    """USD for a request's tokens; 0 for a model nobody priced (logged once)."""
    price = price_for(model, override, provider)
    if price is None:
        _unpriced(model)
        return 0.0
    return price.cost(prompt_tokens, completion_tokens)


@functools.cache
def _unpriced(model: str) -> None:
    log.warning(
        "no price known for model %r: spend limits count its tokens as free "
        "(set the deployment's price: input_per_mtok, output_per_mtok)",
        model,
    )


def price_of(deployment: PricedDeployment) -> TokenPrice | None:
    """A deployment's price: its own, else the table's; None when neither knows it."""
    return price_for(deployment.model, deployment.price, deployment.provider)
