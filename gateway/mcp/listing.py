"""`seawall mcp list`: what each tenant would see through `/mcp`, from a config.

The servers are started and asked for their tools exactly as a gateway would (the
same pool, catalog and namespacing), then each tenant's effective `allow.tools`
(narrowed down its chain) filters them, as `tools/list` does for that tenant's
keys. A server that does not answer is reported, never fatal: an operator wants
to see the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import GatewayConfig, known_names
from gateway.mcp.callers import visible_servers
from tenants.build import build_tenants
from toolservers.caller import Caller
from toolservers.catalog import Catalog
from toolservers.service import UpstreamPool


@dataclass(frozen=True)
class ServerView:
    name: str
    transport: str
    #: Every tool it exposes (namespaced); empty when it did not answer.
    tools: tuple[str, ...]
    reachable: bool


@dataclass(frozen=True)
class TenantView:
    tenant: str
    chain: tuple[str, ...]
    #: The exposed names its keys would see in `tools/list`.
    tools: tuple[str, ...]


async def listing(config: GatewayConfig) -> tuple[list[ServerView], list[TenantView]]:
    tenants = build_tenants(config.tenants, config.keys, known_names(config))
    pool = UpstreamPool()
    try:
        upstreams = await pool.sync(config.mcp)
        catalog = Catalog([upstreams[s.name] for s in config.mcp.servers])
        servers = []
        for server in config.mcp.servers:
            names = tuple(
                t["name"]
                for t in await catalog.tools(
                    Caller("seawall-cli", servers=frozenset({server.name}))
                )
            )
            reachable = upstreams[server.name].connection.initialize_result is not None
            servers.append(ServerView(server.name, server.transport, names, reachable))
        views = []
        for tenant in tenants:
            tools = tenant.permissions.tools
            caller = Caller(f"tenant:{tenant.id}", tools=tools, servers=visible_servers(tools))
            visible = tuple(
                name for s in servers for name in s.tools if caller.may_use_tool(s.name, name)
            )
            views.append(TenantView(tenant.id, tenant.chain, visible))
    finally:
        await pool.close()
    return servers, views


def render(servers: list[ServerView], tenants: list[TenantView]) -> str:
    """The listing as a person reads it."""
    if not servers:
        return "no MCP servers configured (mcp.servers)\n"
    lines = ["servers:"]
    for server in servers:
        state = f"{len(server.tools)} tools" if server.reachable else "did not answer"
        lines.append(f"  {server.name} ({server.transport}): {state}")
    lines.append("tenants:")
    for tenant in tenants:
        path = " > ".join(tenant.chain)
        shown = ", ".join(tenant.tools) if tenant.tools else "(none)"
        lines.append(f"  {tenant.tenant} [{path}]: {shown}")
    return "\n".join(lines) + "\n"
