"""Bearer-token authentication against the configured keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gateway.config import KeyConfig
from gateway.errors import unauthorized
from gateway.exchange import Exchange, Principal

#: With no keys configured (loopback only, enforced at start-up) the local caller
#: may do everything, chaos included: it is the developer's own machine.
LOCAL_PRINCIPAL = Principal("local", frozenset({"user", "chaos", "admin"}))


class Authenticate:
    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._by_digest = {k.digest: Principal(k.id, frozenset(k.roles)) for k in keys}

    @property
    def required(self) -> bool:
        return bool(self._by_digest)

    def principal_for(self, authorization: str | None) -> Principal:
        if not self._by_digest:
            return LOCAL_PRINCIPAL
        if not authorization:
            raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        principal = self._by_digest.get(digest)
        if principal is None:
            raise unauthorized("Incorrect API key provided.")
        return principal

    async def __call__(self, exchange: Exchange) -> None:
        exchange.principal = self.principal_for(exchange.request.headers.get("authorization"))
