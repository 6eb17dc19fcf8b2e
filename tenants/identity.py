"""Who is calling, with everything a request needs to know about them, flattened.

An `Identity` is built once per key per Runtime; a request finds it with one dict
lookup and then answers every question (role, model, tool, deployment, chaos
target, admin scope) with a frozenset membership test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from limits.config import LimitsConfig
from tenants.config import ROOT
from tenants.permissions import Permissions

#: A level of limits that applies to a request: (`tenant:ID` or `key:ID`, its limits).
LimitLevel = tuple[str, LimitsConfig]


@dataclass(frozen=True, slots=True, eq=False)
class Identity:
    """One key (or the local caller) as a request sees it.

    One object per key per Runtime: compared and hashed by identity, which is also
    the cheapest key for a per-identity cache.
    """

    key_id: str
    tenant_id: str
    #: The tenant ids from the root down to this key's tenant: `("root", "acme", "search")`.
    chain: tuple[str, ...]
    roles: frozenset[str]
    #: The effective permissions of the key's tenant.
    permissions: Permissions
    #: Every level of limits a request of this key must pass, root-most first: each
    #: tenant of the chain that sets limits, then `key:<id>` when the key does.
    limit_levels: tuple[LimitLevel, ...]
    #: The tenant ids this identity administers: its tenant and everything below it.
    scope: frozenset[str]
    #: A tag of the key's token (tenants/keys.py `token_tag`): stored responses belong
    #: to the key id and this, so a key id given a new token cannot read the old
    #: token's. Empty for the local caller (no keys).
    token_tag: str = ""

    @property
    def root_scoped(self) -> bool:
        """Does this identity's scope cover the whole tree?"""
        return self.tenant_id == ROOT

    @property
    def visible_tenants(self) -> frozenset[str]:
        """The tenants an admin endpoint may show to this identity (its scope)."""
        return self.scope

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def within_scope(self, tenant_id: str) -> bool:
        """Is `tenant_id` this identity's tenant or below it? A team admin manages
        its team and the team's projects, never a sibling team."""
        return tenant_id in self.scope

    # The checks below repeat `Permissions`' instead of delegating: they run on every
    # request, and a second call costs more than the membership test itself.

    def may_use_model(self, group: str) -> bool:
        allowed = self.permissions.models
        return allowed is None or group in allowed

    def may_use_tool(self, name: str) -> bool:
        allowed = self.permissions.tools
        return allowed is None or name in allowed

    def may_use_deployment(self, deployment_id: str) -> bool:
        allowed = self.permissions.deployments
        return allowed is None or deployment_id in allowed

    def may_target(self, target: str | None) -> bool:
        """See `Permissions.may_target` (an untargeted fault needs unrestricted targets)."""
        return self.permissions.may_target(target)

    def allowed_models(self, groups: Iterable[str]) -> list[str]:
        """`groups` (in their order) that this identity may use: `GET /v1/models`."""
        allowed = self.permissions.models
        if allowed is None:
            return list(groups)
        return [group for group in groups if group in allowed]
