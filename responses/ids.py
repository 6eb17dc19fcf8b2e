"""Identifiers for responses and their items, shaped like OpenAI's (`resp_...`).

Random, not derived from content: two identical requests are two responses. 24
random bytes (48 hex digits) make ids unguessable, so an id seen in a log does not
let anyone guess a neighbour's; owner checks in the store still decide access.
The bytes are the operating system's CSPRNG's (`os.urandom`, what
`secrets.token_hex` reads, called directly: a request makes three ids, and the
two calls `secrets` adds on the way cost a fifth of each).
"""

from __future__ import annotations

from os import urandom

RANDOM_BYTES = 24


def new_id(prefix: str) -> str:
    """`prefix` + `_` + 48 random hex digits: `resp`, `msg`, `fc`, `fco`, `rs`..."""
    return f"{prefix}_{urandom(RANDOM_BYTES).hex()}"


def new_response_id() -> str:
    return new_id("resp")
