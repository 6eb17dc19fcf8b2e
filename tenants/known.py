"""What exists in the rest of the config, so an allow-list can be checked against it.

An allow-list entry that names nothing the gateway has would grant nothing and
refuse nothing: a typo that silently changes what a tenant can do. The names come
from the gateway's composition (tenants never import the gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Known:
    """The names an allow-list may use, one set per `AllowLists` field."""

    models: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    deployments: frozenset[str] = frozenset()
    #: Deployment ids, `group:NAME` and `tool:NAME` (the targets `chaos.targets` knows).
    chaos_targets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, groups: Mapping[str, Iterable[str]], tools: Iterable[str] = ()) -> Known:
        """From the model groups (group name -> its deployment ids) and tool names;
        the chaos targets follow from them as `chaos.targets.Targets` spells them."""
        tool_names = frozenset(tools)
        deployments = frozenset(d for ids in groups.values() for d in ids)
        return cls(
            models=frozenset(groups),
            tools=tool_names,
            deployments=deployments,
            chaos_targets=frozenset(
                [*deployments, *(f"group:{g}" for g in groups), *(f"tool:{t}" for t in tool_names)]
            ),
        )

    def names(self, field: str) -> frozenset[str]:
        """The known names for the allow-list `field` (`models`, `tools`...)."""
        value: frozenset[str] = getattr(self, field)
        return value
