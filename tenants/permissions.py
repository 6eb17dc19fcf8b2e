"""What a tenant may do once its whole chain of ancestors is taken into account.

Flattened once per Runtime, so a request answers "may this key use model group X"
with one frozenset membership test instead of a walk up the tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tenants.config import DefaultValue, TenantConfig

#: The allow-list fields, each with what its entries name (for problem messages).
ALLOW_FIELDS: dict[str, str] = {
    "models": "model group",
    "tools": "tool",
    "chaos_targets": "chaos target",
    "deployments": "deployment",
}
CAP_FIELDS = ("max_tokens", "max_prompt_tokens")

NO_DEFAULTS: Mapping[str, DefaultValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Permissions:
    """Effective allow-lists (`None`: unrestricted), caps (`None`: no cap) and
    defaults of one tenant.

    One object per tenant per Runtime, shared by every key of the tenant: compared
    (and hashed) by identity.
    """

    models: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    chaos_targets: frozenset[str] | None = None
    deployments: frozenset[str] | None = None
    max_tokens: int | None = None
    max_prompt_tokens: int | None = None
    defaults: Mapping[str, DefaultValue] = field(default_factory=lambda: NO_DEFAULTS)

    def may_use_model(self, group: str) -> bool:
        return self.models is None or group in self.models

    def may_use_tool(self, name: str) -> bool:
        return self.tools is None or name in self.tools

    def may_use_deployment(self, deployment_id: str) -> bool:
        return self.deployments is None or deployment_id in self.deployments

    def may_target(self, target: str | None) -> bool:
        """May a fault aim at `target` (a deployment id, `group:NAME`, `tool:NAME`)?

        `None` (a fault with no target, which hits whatever it meets) is allowed only
        when chaos targets are unrestricted: for a scheduled fault that is every
        caller's traffic. A stage that knows where a per-request fault will land
        can ask about that target instead."""
        if self.chaos_targets is None:
            return True
        return target is not None and target in self.chaos_targets

    def allowed(self, name: str) -> frozenset[str] | None:
        """The effective allow-list `name` (one of `ALLOW_FIELDS`)."""
        value: frozenset[str] | None = getattr(self, name)
        return value

    def cap(self, name: str) -> int | None:
        """The effective cap `name` (one of `CAP_FIELDS`)."""
        value: int | None = getattr(self, name)
        return value


#: The root's permissions: everything, no caps, no defaults.
UNRESTRICTED = Permissions()


def narrow(parent: Permissions, config: TenantConfig) -> Permissions:
    """`config`'s own settings applied on top of its parent's effective ones:
    allow-lists intersect, caps take the minimum, defaults merge (the child's keys
    win). Whether the child tried to exceed its parent is `build`'s to report; this
    never lets it, whatever the config says."""
    allow = config.allow
    return Permissions(
        models=_intersect(parent.models, allow.models),
        tools=_intersect(parent.tools, allow.tools),
        chaos_targets=_intersect(parent.chaos_targets, allow.chaos_targets),
        deployments=_intersect(parent.deployments, allow.deployments),
        max_tokens=_minimum(parent.max_tokens, config.caps.max_tokens),
        max_prompt_tokens=_minimum(parent.max_prompt_tokens, config.caps.max_prompt_tokens),
        defaults=(
            MappingProxyType({**parent.defaults, **config.defaults})
            if config.defaults
            else parent.defaults
        ),
    )


def _intersect(
    inherited: frozenset[str] | None, own: tuple[str, ...] | None
) -> frozenset[str] | None:
    if own is None:
        return inherited
    return frozenset(own) if inherited is None else inherited.intersection(own)


def _minimum(inherited: int | None, own: int | None) -> int | None:
    if own is None:
        return inherited
    return own if inherited is None else min(inherited, own)
