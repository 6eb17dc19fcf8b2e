"""What exists in the rest of the config, so an allow-list can be checked against it.

An allow-list entry that names nothing the gateway has would grant nothing and
refuse nothing: a typo that silently changes what a tenant can do. The names come
from the gateway's composition (tenants never import the gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Separates an MCP server's name from its tool's in the names agents see
#: (`github__create_issue`; toolservers/names.py).
NAMESPACE_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class Known:
    """The names an allow-list may use, one set per `AllowLists` field."""

    models: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    deployments: frozenset[str] = frozenset()
    #: Deployment ids, `group:NAME` and `tool:NAME` (the targets `chaos.targets` knows).
    chaos_targets: frozenset[str] = frozenset()
    #: MCP servers (`mcp.servers[].name`). Their tools are only known once the servers
    #: list them, so any `<server>__<tool>` of a configured server is a known tool
    #: name, and `mcp:<server>` and `tool:<server>__<tool>` known chaos targets.
    namespaces: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        groups: Mapping[str, Iterable[str]],
        tools: Iterable[str] = (),
        namespaces: Iterable[str] = (),
    ) -> Known:
        """From the model groups (group name -> its deployment ids), tool names and
        MCP server names; the chaos targets follow from them as `chaos.targets.Targets`
        spells them."""
        tool_names = frozenset(tools)
        deployments = frozenset(d for ids in groups.values() for d in ids)
        servers = frozenset(namespaces)
        return cls(
            models=frozenset(groups),
            tools=tool_names,
            deployments=deployments,
            chaos_targets=frozenset(
                [
                    *deployments,
                    *(f"group:{g}" for g in groups),
                    *(f"tool:{t}" for t in tool_names),
                    *(f"mcp:{s}" for s in servers),
                ]
            ),
            namespaces=servers,
        )

    def knows(self, field: str, name: str) -> bool:
        """Is `name` something the allow-list `field` may name?"""
        if name in self.names(field):
            return True
        if field == "tools":
            return self._namespaced(name)
        if field == "chaos_targets" and name.startswith("tool:"):
            return self._namespaced(name[len("tool:") :])
        return False

    def _namespaced(self, name: str) -> bool:
        server, separator, tool = name.partition(NAMESPACE_SEPARATOR)
        return bool(separator and tool) and server in self.namespaces

    def names(self, field: str) -> frozenset[str]:
        """The known names for the allow-list `field` (`models`, `tools`...)."""
        value: frozenset[str] = getattr(self, field)
        return value
