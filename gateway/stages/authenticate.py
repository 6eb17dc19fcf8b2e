"""Who is calling (a key of a tenant), and whether they hold the endpoint's role.

Keys belong to tenants (tenants/); a request finds its `Identity` with one dict
lookup of its token's sha256, and from then on every permission question is a
membership test on it. Roles are a closed set and independent: every endpoint names
the one role it requires, and a key without it gets 403 naming what is missing, so
an `admin` or `metrics` key cannot quietly be used for inference.

Writes `exchange.identity`.
"""

from __future__ import annotations

from gateway.errors import GatewayError, unauthorized
from gateway.exchange import Exchange
from tenants.identity import Identity
from tenants.keys import Unauthenticated
from tenants.roles import ROLES
from tenants.tree import Tenants


def identify(tenants: Tenants, authorization: str | None) -> Identity:
    """The caller's identity, or 401 (with keys configured)."""
    try:
        return tenants.authenticate(authorization)
    except Unauthenticated as exc:
        raise unauthorized(exc.message) from None


def require(tenants: Tenants, authorization: str | None, *roles: str) -> Identity:
    """The caller, who must hold one of `roles`: 401 without a valid key (when keys
    are configured), 403 without the role."""
    identity = identify(tenants, authorization)
    if not identity.roles.intersection(roles):
        raise lacks_role(identity, *roles)
    return identity


def lacks_role(identity: Identity, *roles: str) -> GatewayError:
    wanted = " or ".join(f"the '{role}' role" for role in roles)
    return GatewayError(403, f"Key '{identity.key_id}' lacks {wanted}.", code="permission_denied")


class Authenticate:
    """The pipeline's first stage: who is calling, and may they use this endpoint."""

    def __init__(self, tenants: Tenants, role: str) -> None:
        assert role in ROLES, role
        self.tenants = tenants
        self.role = role

    async def __call__(self, exchange: Exchange) -> None:
        identity = identify(self.tenants, exchange.request_headers.get("authorization"))
        if self.role not in identity.roles:
            raise lacks_role(identity, self.role)
        exchange.identity = identity
