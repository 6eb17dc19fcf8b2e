"""What tokens cost, for spend limits: litellm's bundled price table, read as a file.

A deployment may set its own `price` (USD per million input and output tokens),
which wins. A model the table does not know, with no price set, costs 0: its spend
is not limited, and the gateway warns about it at start-up (say so, rather than
guess a price).
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.config import DeploymentConfig
from routing.context_windows import litellm_table

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


FREE = TokenPrice(0.0, 0.0)


def price_of(deployment: DeploymentConfig) -> TokenPrice | None:
    """The deployment's price; None when neither its config nor the table knows it."""
    if deployment.price is not None:
        return TokenPrice(
            deployment.price.input_per_mtok / MILLION, deployment.price.output_per_mtok / MILLION
        )
    table = litellm_table()
    for name in (deployment.model, f"{deployment.provider}/{deployment.model}"):
        entry = table.get(name)
        if isinstance(entry, dict):
            cost_in = entry.get("input_cost_per_token")
            cost_out = entry.get("output_cost_per_token")
            if isinstance(cost_in, (int, float)) and isinstance(cost_out, (int, float)):
                return TokenPrice(float(cost_in), float(cost_out))
    return None
