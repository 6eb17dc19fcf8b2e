"""Bearer tokens: from an `Authorization` header to the digest keys are stored by.

Keys are configured as the sha256 of their token, so a request hashes what it
sent and looks the digest up: the gateway never holds a plain token it did not
have to, and the lookup is one dict access whatever the number of keys.
"""

from __future__ import annotations

import hashlib

MISSING_KEY = "Missing API key: send 'Authorization: Bearer <key>'."
MALFORMED_HEADER = "Malformed Authorization header: expected 'Bearer <key>'."
INCORRECT_KEY = "Incorrect API key provided."


class Unauthenticated(Exception):
    """No valid key: the gateway answers 401 with `message` (OpenAI's wording)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def bearer_digest(authorization: str | None) -> str:
    """The sha256 hex of the bearer token in an `Authorization` header value.

    Raises `Unauthenticated` when the header is absent or empty, or is not
    `Bearer <token>` (the scheme in any case)."""
    if not authorization:
        raise Unauthenticated(MISSING_KEY)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(MALFORMED_HEADER)
    # surrogatepass: a str that is no valid text still hashes (to a digest no key has)
    # instead of failing the request with an encoding error.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


#: Hex digits of a token tag: 64 bits, so a new token for a key id is a new tag (two
#: tokens of one key colliding is a 2^-64 event).
TOKEN_TAG_HEX = 16


def token_tag(digest: str) -> str:
    """A short tag of a key's token, from its sha256 hex (`digest`): what binds the
    key's stored responses to the token (a key id given a new token does not inherit
    them). Never the digest itself, which authenticates and is not stored anywhere
    else; domain-separated, so the tag is no use for anything but telling tokens apart."""
    return hashlib.sha256(b"seawall-response-owner\0" + digest.encode()).hexdigest()[:TOKEN_TAG_HEX]
