"""What exists in the rest of the config, so a rule can be checked against it.

A rule attached to a tenant that does not exist would never apply, a route to an
unknown deployment would route nowhere, a limit class nobody defined would limit
nothing: each is a typo that silently changes what policy does, so each is a
config error. The names come from the gateway's composition (policies never
import the gateway or the tenants package).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

#: The tenant at the top of every chain (`tenants.config.ROOT`).
ROOT = "root"


@dataclass(frozen=True, slots=True)
class KnownNames:
    #: Every tenant id, the root included, with its chain from the root:
    #: `("root", "acme", "search")`.
    chains: Mapping[str, tuple[str, ...]]
    deployments: frozenset[str] = frozenset()
    limit_classes: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        chains: Mapping[str, Iterable[str]],
        deployments: Iterable[str] = (),
        limit_classes: Iterable[str] = (),
    ) -> KnownNames:
        """From each tenant's chain (the root is added if missing)."""
        table = {tenant: tuple(chain) for tenant, chain in chains.items()}
        table.setdefault(ROOT, (ROOT,))
        return cls(MappingProxyType(table), frozenset(deployments), frozenset(limit_classes))
