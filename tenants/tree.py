"""The tenant tree of one Runtime, flattened: every tenant and every key resolved.

Built by `tenants.build.build_tenants` and never changed afterwards (a reload
builds another). A request pays one dict lookup (`identity_for_digest`) to learn
who is calling and what they may do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tenants.config import ROOT, DefaultValue
from tenants.identity import Identity, LimitLevel
from tenants.keys import INCORRECT_KEY, Unauthenticated, bearer_digest
from tenants.permissions import Permissions
from tenants.roles import ROLES

#: The caller's key id when no keys are configured (the gateway then serves loopback only).
LOCAL_KEY_ID = "local"


@dataclass(frozen=True, slots=True, eq=False)
class Tenant:
    """One tenant with its ancestors folded in."""

    id: str
    #: `None` for the root only.
    parent: str | None
    #: The ids from the root down to this tenant: `("root", "acme", "acme-search")`.
    chain: tuple[str, ...]
    children: tuple[str, ...]
    #: This tenant's id and every id below it.
    subtree: frozenset[str]
    permissions: Permissions
    #: `(tenant:ID, limits)` for this tenant and each ancestor that sets limits, root-most first.
    limit_levels: tuple[LimitLevel, ...]
    #: This tenant's own labels (not inherited).
    metadata: Mapping[str, str]

    @property
    def defaults(self) -> Mapping[str, DefaultValue]:
        return self.permissions.defaults


class Tenants:
    """Every tenant and every key's identity for one Runtime.

    `tenants` maps id -> `Tenant` (the root included); `identities` maps the sha256
    hex of each key's token -> its `Identity`.
    """

    def __init__(self, tenants: Mapping[str, Tenant], identities: Mapping[str, Identity]) -> None:
        self._tenants = dict(tenants)
        self._by_digest = dict(identities)
        self._by_key_id = {identity.key_id: identity for identity in self._by_digest.values()}
        self.root = self._tenants[ROOT]
        #: The caller when no keys are configured: root-scoped, every role. The
        #: gateway only serves key-less on loopback, so this is the machine's owner.
        self.local = Identity(
            key_id=LOCAL_KEY_ID,
            tenant_id=ROOT,
            chain=self.root.chain,
            roles=ROLES,
            permissions=self.root.permissions,
            limit_levels=(),
            scope=self.root.subtree,
        )

    @property
    def required(self) -> bool:
        """Are keys configured (so every request must present one)?"""
        return bool(self._by_digest)

    def identity_for_digest(self, digest: str) -> Identity | None:
        """The key whose token's sha256 hex is `digest` (lowercase), if any."""
        return self._by_digest.get(digest)

    def authenticate(self, authorization: str | None) -> Identity:
        """The caller named by an `Authorization` header value.

        Without configured keys, the local identity (the header is not read). With
        keys, raises `Unauthenticated` for a missing or malformed header or a token
        that matches no key."""
        if not self._by_digest:
            return self.local
        identity = self._by_digest.get(bearer_digest(authorization))
        if identity is None:
            raise Unauthenticated(INCORRECT_KEY)
        return identity

    def identity(self, key_id: str) -> Identity | None:
        """A key's identity by its configured id (for admin views, not for requests)."""
        return self._by_key_id.get(key_id)

    @property
    def identities(self) -> tuple[Identity, ...]:
        """Every configured key's identity, in config order."""
        return tuple(self._by_digest.values())

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self._tenants.get(tenant_id)

    def __getitem__(self, tenant_id: str) -> Tenant:
        return self._tenants[tenant_id]

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._tenants

    def __iter__(self) -> Iterator[Tenant]:
        """Every tenant, the root first, each after its parent."""
        return iter(self._tenants.values())

    def __len__(self) -> int:
        return len(self._tenants)

    def visible_to(self, identity: Identity) -> list[Tenant]:
        """The tenants an admin endpoint shows `identity`: its scope, parents first."""
        return [tenant for tenant in self._tenants.values() if tenant.id in identity.scope]
