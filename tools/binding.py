"""Which registered tools' contracts bind one request.

A name alone is not consent. The most common example tool in agent-framework docs is
a client-side `get_weather` with a schema of its own; if the gateway's registry also
had a `get_weather`, matching by name would validate the client's calls against the
wrong schema and "repair" them into the gateway's own error text, invisibly. So a
registered tool binds a request (its input schema checks the model's calls, its
output schema and receipt rule check the agent's results) only when the request
opts in:

- it offers the tool *by reference*: a function tool with that name and no
  `parameters`; the gateway then fills in the registered description and schema, so
  the model sees the contract that will be enforced;
- or it offers exactly the registered schema (compared as canonical JSON);
- or the tool is configured `bind: always` (an operator's choice: the contract
  applies whenever the name appears, on top of whatever the request offers).

A request that offers the name with a different schema is not bound, and is told:
`x-seawall-tool-collision` names the tool, so the mismatch is visible instead of a
silent takeover. A result that carries a receipt is always verified: only the invoke
proxy issues receipts, so a receipt is itself the opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.chat import offered_tools
from tools.registry import ToolRegistry, canonical


@dataclass(frozen=True, slots=True)
class Bindings:
    #: Registered tools whose contract applies to this request.
    bound: frozenset[str]
    #: Offered with the name of a registered tool but another schema.
    collisions: tuple[str, ...] = ()

    def binds(self, name: str | None) -> bool:
        return name is not None and name in self.bound


NONE = Bindings(frozenset())


def bind(body: Mapping[str, Any], registry: ToolRegistry) -> Bindings:
    """The bindings for a chat request's offered tools (`tools` and the legacy
    `functions`, read by `common.chat.offered_tools`). Tools offered by reference get
    the registered description and schema written in."""
    if not len(registry):
        return NONE
    bound = set(registry.always_bound)
    collisions = []
    for tool in offered_tools(body):
        registered = registry.get(tool.name) if tool.kind == "function" else None
        if registered is None:
            continue
        spec = tool.spec
        parameters = spec.get("parameters")
        if parameters is None:
            spec["parameters"] = registered.config.input_schema
            if registered.config.description and not spec.get("description"):
                spec["description"] = registered.config.description
            bound.add(registered.name)
        elif canonical(parameters) == registered.canonical_input:
            bound.add(registered.name)
        else:
            collisions.append(registered.name)
    if not bound and not collisions:
        return NONE
    return Bindings(frozenset(bound), tuple(collisions))
