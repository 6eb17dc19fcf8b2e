"""Where a fault may be aimed: the gateway's deployments, model groups and tools.

A fault aimed at a name the gateway does not have would match no call, so it
would silently do nothing: the experiment "passes" without testing anything. The
known names come from the gateway's composition (chaos never imports the
gateway), and an unknown target is refused with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chaos.faults import KINDS, FaultError, FaultSpec

#: The target of faults on the config source itself (`config_watch_drop`).
CONFIG_TARGET = "config"


class UnknownTarget(FaultError):
    """A fault aimed at no deployment, group or tool of this gateway."""


class Targets:
    def __init__(
        self,
        groups: Mapping[str, str],
        tools: Iterable[str] = (),
        namespaces: Iterable[str] = (),
    ) -> None:
        """`groups`: deployment id -> model group name; `tools`: registered tool names;
        `namespaces`: MCP server names, whose tools are only known once listed, so
        `mcp:<server>` and any `tool:<server>__<tool>` are valid targets."""
        self.namespaces = frozenset(namespaces)
        self.valid = frozenset(
            [
                *groups,
                *(f"group:{name}" for name in groups.values()),
                *(f"tool:{t}" for t in tools),
                *(f"mcp:{s}" for s in self.namespaces),
            ]
        )

    def _namespaced(self, target: str) -> bool:
        server, separator, tool = target.removeprefix("tool:").partition("__")
        return (
            target.startswith("tool:") and bool(separator and tool) and (server in self.namespaces)
        )

    def check(self, spec: FaultSpec) -> FaultSpec:
        """Faults on the config source aim at `config` and nothing else; every other
        fault at a deployment, group or tool of this gateway."""
        kind = KINDS.get(spec.name)
        on_config = kind is not None and kind.layer == CONFIG_TARGET
        valid = frozenset({CONFIG_TARGET}) if on_config else self.valid
        if spec.target is None or spec.target in valid:
            return spec
        if not on_config and self._namespaced(spec.target):
            return spec
        listed = ", ".join(sorted(valid)) or "none configured"
        raise UnknownTarget(f"{spec.name}: unknown target {spec.target!r} (valid: {listed})")
