"""Who calls `/mcp`, as far as the MCP layer needs to know.

The gateway authenticates the request and hands the MCP layer a `Caller`: the key
id (sessions and the result ledger belong to it) and what it may see. toolservers
never learns about tenants, roles or keys beyond this; the gateway builds one
`Caller` per key per Runtime from the key's effective permissions (its tenant's
`allow.tools` narrowed down the tree, and the servers it may use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, eq=False)
class Caller:
    key_id: str
    #: Exposed tool names (`server__tool`) the caller may see and call; None: all.
    tools: frozenset[str] | None = None
    #: Server names the caller may use (tools, resources, prompts); None: all.
    servers: frozenset[str] | None = None
    #: Anything the gateway wants back in hooks (the tenant chain for policies,
    #: limits...): opaque here.
    context: dict[str, Any] = field(default_factory=dict)
    #: The tenant the key belongs to: sessions and the result ledger are bounded per
    #: tenant too, so one tenant's keys can only ever evict that tenant's own.
    tenant: str = ""

    def may_use_server(self, server: str) -> bool:
        return self.servers is None or server in self.servers

    def may_use_tool(self, server: str, exposed: str) -> bool:
        return self.may_use_server(server) and (self.tools is None or exposed in self.tools)


#: The caller of a gateway without keys (loopback only, as the gateway itself).
LOCAL = Caller("local")
