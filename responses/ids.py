"""Identifiers for responses and their items, shaped like OpenAI's (`resp_...`).

Random, not derived from content: two identical requests are two responses. 24
random bytes (48 hex digits) make ids unguessable, so an id seen in a log does not
let anyone guess a neighbour's; owner checks in the store still decide access.
"""

from __future__ import annotations

import secrets

RANDOM_BYTES = 24


def new_id(prefix: str) -> str:
    """`prefix` + `_` + 48 random hex digits: `resp`, `msg`, `fc`, `fco`, `rs`..."""
    return f"{prefix}_{secrets.token_hex(RANDOM_BYTES)}"


def new_response_id() -> str:
    return new_id("resp")
