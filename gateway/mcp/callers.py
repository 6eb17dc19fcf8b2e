"""Who the MCP layer serves a key as: a `toolservers.caller.Caller`.

One rule for every place a key meets MCP (the `/mcp` route, the tool-result stage,
`seawall mcp list`), so what `tools/list` shows a key and what the model-side check
accepts from it can never differ: the key id (sessions and the ledger belong to it),
the tools its tenant's `allow.tools` names (None: every tool), and the servers of
those tools (their resources and prompts are what it sees of a server).
"""

from __future__ import annotations

import functools
from typing import Any

from tenants.identity import Identity
from toolservers.caller import Caller
from toolservers.names import split


@functools.lru_cache(maxsize=1024)
def visible_servers(tools: frozenset[str] | None) -> frozenset[str] | None:
    """The servers a tenant allowed `tools` may use at all: those it may call at
    least one tool of (None: every server). Their resources and prompts are what it
    sees; a server it may call nothing of is as absent as its tools."""
    if tools is None:
        return None
    return frozenset(parts[0] for name in tools if (parts := split(name)) is not None)


def caller_of(identity: Identity, context: dict[str, Any] | None = None) -> Caller:
    """The MCP caller a key is: sessions and the ledger belong to its id; it sees the
    tools its tenant allows (None: every tool), and those tools' servers."""
    tools = identity.permissions.tools
    return Caller(
        identity.key_id,
        tools=tools,
        servers=visible_servers(tools),
        context=context or {},
        tenant=identity.tenant_id,
    )
