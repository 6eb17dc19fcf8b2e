"""Bearer-token authentication against the configured keys, and the role it needs.

Roles are a closed set (`tenants.roles`) and independent: every endpoint names the
one role it requires, and a key without it gets 403 naming what is missing, so an
`admin` or `metrics` key cannot quietly be used for inference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gateway.config import KeyConfig
from gateway.errors import GatewayError, unauthorized
from gateway.exchange import Exchange, Principal
from tenants.roles import ROLES

#: With no keys configured (loopback only, enforced at start-up) the local caller
#: may do everything: it is the developer's own machine.
LOCAL_PRINCIPAL = Principal("local", ROLES)


class Keyring:
    """The configured keys by the sha256 of their token: one dict lookup a request."""

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

    def require(self, authorization: str | None, *roles: str) -> Principal:
        """The caller, who must hold one of `roles`: 401 without a valid key (when
        keys are configured), 403 without the role."""
        principal = self.principal_for(authorization)
        if not principal.roles.intersection(roles):
            raise lacks_role(principal, *roles)
        return principal


def lacks_role(principal: Principal, *roles: str) -> GatewayError:
    wanted = " or ".join(f"the '{role}' role" for role in roles)
    return GatewayError(403, f"Key '{principal.key_id}' lacks {wanted}.", code="permission_denied")


class Authenticate:
    """The pipeline's first stage: who is calling, and may they use this endpoint."""

    def __init__(self, keyring: Keyring, role: str) -> None:
        assert role in ROLES, role
        self.keyring = keyring
        self.role = role

    async def __call__(self, exchange: Exchange) -> None:
        principal = self.keyring.principal_for(exchange.request.headers.get("authorization"))
        if self.role not in principal.roles:
            raise lacks_role(principal, self.role)
        exchange.principal = principal
