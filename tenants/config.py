"""The shape of `tenants:` and `keys:` in the gateway's config.

A tenant says only what differs from its parent: an allow-list or a cap left out
(`None`) is whatever the parent allows. The tree itself (parents that exist, no
cycles, children that never exceed their parents) is checked across tenants by
`tenants.build.build_tenants`, which reports every problem at once.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from audit.config import TenantAudit
from common.config import Frozen, Identifier, Secret
from limits.config import LimitsConfig
from tenants.roles import RoleName

#: The id of the implicit tenant at the top of the tree. A key without `tenant:` and a
#: tenant without `parent:` belong to it; it may do everything the gateway offers.
ROOT = "root"

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

#: A value a tenant hands down to its subtree (a default model, a metadata tag...).
DefaultValue = str | int | float | bool


def _not_root(value: str) -> str:
    if value == ROOT:
        raise ValueError(f"{ROOT!r} is the implicit root tenant; choose another id")
    return value


TenantId = Annotated[Identifier, AfterValidator(_not_root)]


class AllowLists(Frozen):
    """What a tenant's subtree may use. `None`: whatever the parent allows. A list
    can only narrow: naming something the parent does not allow is a config error.
    An empty list allows nothing."""

    #: Model group names (`models[].name`).
    models: tuple[str, ...] | None = None
    #: Registered tool names (`tools[].name`), for the invoke proxy, and MCP tools
    #: as `/mcp` exposes them (`<server>__<tool>` of a configured `mcp.servers[]`).
    tools: tuple[str, ...] | None = None
    #: What a fault may aim at: deployment ids, `group:NAME`, `tool:NAME`.
    chaos_targets: tuple[str, ...] | None = None
    #: Deployment ids requests may be routed to.
    deployments: tuple[str, ...] | None = None


class Caps(Frozen):
    """Numeric ceilings on one request. `None`: the parent's ceiling (none at the root).
    A child's cap may be lower than its parent's, never higher."""

    #: The largest `max_tokens` / `max_output_tokens` a request may ask for.
    max_tokens: int | None = Field(None, gt=0)
    #: The largest prompt, in estimated tokens.
    max_prompt_tokens: int | None = Field(None, gt=0)


class TenantConfig(Frozen):
    """One organisation, team or project."""

    id: TenantId
    #: The parent tenant's id; `None` (or `root`): a child of the implicit root.
    parent: str | None = None
    allow: AllowLists = AllowLists()
    caps: Caps = Caps()
    #: Inherited down the tree; a descendant may override a key.
    defaults: dict[str, DefaultValue] = {}
    #: Labels of this tenant only (not inherited).
    metadata: dict[str, str] = {}
    #: Applies to every request of this tenant and of every tenant below it.
    limits: LimitsConfig | None = None
    #: What this subtree's audit records hold and what a full writer queue does to
    #: its requests; inherited, a field left out is the parent's (audit/config.py).
    audit: TenantAudit | None = None


class KeyConfig(Frozen):
    """An API key: stored as the sha256 of the bearer token, or an `env:` reference."""

    id: Identifier
    key_sha256: str | None = None
    key: Secret | None = None
    #: The tenant the key belongs to; `None`: the implicit root (the key is
    #: root-scoped, as every key was before tenants existed).
    tenant: str | None = None
    #: From the closed set in tenants/roles.py; a misspelt role is a config error.
    roles: tuple[RoleName, ...] = ("user",)
    #: Applies to this key's requests, on top of its tenant chain's limits.
    limits: LimitsConfig | None = None

    @field_validator("key_sha256")
    @classmethod
    def _check_hex(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.lower()
            if not SHA256_HEX.match(value):
                raise ValueError("must be 64 hexadecimal characters (sha256 of the token)")
        return value

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> KeyConfig:
        if (self.key_sha256 is None) == (self.key is None):
            raise ValueError("set exactly one of key_sha256 or key")
        return self

    @property
    def digest(self) -> str:
        """The sha256 hex of the token: what a request's bearer token is looked up by."""
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()
