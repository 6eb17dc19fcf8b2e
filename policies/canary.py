"""Which requests a canary rule set decides: a stable share of request keys.

The choice hashes the candidate's version with the request key, so it is stable
for a key (a retried request, or a session if the gateway passes a session id, is
decided by the same set every time) and independent between candidate versions
(the next candidate samples a fresh share, not the same unlucky requests).
"""

from __future__ import annotations

import hashlib

_SCALE = 2**64


def in_share(version: str, request_key: str, share: float) -> bool:
    """Does `request_key` fall in the `share` (0-1) of keys the candidate `version` decides?"""
    if share <= 0:
        return False
    digest = hashlib.blake2b(
        request_key.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=version.encode("utf-8")[:64],
    ).digest()
    return int.from_bytes(digest, "big") < share * _SCALE
