"""What the gateway holds: the MCP layer of one Runtime, and the upstreams it keeps.

`McpService` puts the pieces together for one config version: the catalog over the
upstream servers, the verifier with the gateway's receipt keys and the ledger, the
protocol handler with the gateway's governance, and the Streamable HTTP layer.
What must outlive a config reload lives outside it and is passed in, as DESIGN.md
section 9 asks: the `UpstreamPool` (connections, stdio children, breakers), the
`SessionStore` and the `Ledger` belong to the gateway's State.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from tools.receipts import Receipts
from toolservers.caller import Caller
from toolservers.catalog import Catalog
from toolservers.config import HttpServer, LedgerSettings, McpConfig, SessionSettings, StdioServer
from toolservers.http import McpHttp
from toolservers.ledger import LedgerStore, MemoryLedger
from toolservers.names import split
from toolservers.protocol import Governance, McpServer
from toolservers.sessions import SessionStore
from toolservers.upstream import Upstream, UpstreamError
from toolservers.upstream.base import log
from toolservers.verify import Verdict, Verifier


def identity(config: HttpServer | StdioServer) -> str:
    """What makes an upstream the same one across reloads: how it is reached (URL,
    headers; argv, environment, directory). Timeouts, allow-lists, verification
    and breaker thresholds may change without restarting it."""
    if isinstance(config, HttpServer):
        reach: Any = [str(config.url), {k: v.get_secret_value() for k, v in config.headers.items()}]
    else:
        env = {k: v.get_secret_value() for k, v in config.env.items()}
        reach = [config.command, list(config.args), env, list(config.inherit_env), config.cwd]
    raw = orjson.dumps([config.transport, reach], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


class UpstreamPool:
    """The upstream servers, kept across reloads by name and identity (State)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._upstreams: dict[str, tuple[str, Upstream]] = {}

    async def sync(self, config: McpConfig) -> dict[str, Upstream]:
        """The upstreams of `config`: the same objects for unchanged servers (their
        settings updated), new ones started, removed or changed ones closed."""
        wanted: dict[str, tuple[str, Upstream]] = {}
        starting = []
        for server in config.servers:
            ident = identity(server)
            kept = self._upstreams.get(server.name)
            if kept is not None and kept[0] == ident:
                upstream = kept[1]
                upstream.config = server
                upstream.connection.config = server  # type: ignore[attr-defined]
                upstream.breaker.reconfigure(server.breaker)
            else:
                upstream = Upstream(server, transport=self._transport)
                starting.append(upstream)
            wanted[server.name] = (ident, upstream)
        retired = [
            u
            for name, (ident, u) in self._upstreams.items()
            if wanted.get(name, (None,))[0] != ident
        ]
        self._upstreams = wanted
        await asyncio.gather(*(_start(u) for u in starting))
        await asyncio.gather(*(u.close() for u in retired), return_exceptions=True)
        return {name: upstream for name, (_, upstream) in wanted.items()}

    async def close(self) -> None:
        await asyncio.gather(
            *(u.close() for _, u in self._upstreams.values()), return_exceptions=True
        )
        self._upstreams = {}


async def _start(upstream: Upstream) -> None:
    """Starts a server; one that cannot start is logged and retried (stdio) or
    connected on first use (HTTP), never a reason to stop the gateway."""
    try:
        await upstream.start()
    except UpstreamError as exc:
        log.warning("MCP server %r did not start: %s", upstream.name, exc.message)


class McpService:
    def __init__(
        self,
        config: McpConfig,
        upstreams: Mapping[str, Upstream],
        receipts: Receipts,
        *,
        sessions: SessionStore | None = None,
        ledger: LedgerStore | None = None,
        governance: Governance | None = None,
    ) -> None:
        self.config = config
        self.sessions = sessions if sessions is not None else SessionStore(config.sessions)
        self.ledger = ledger if ledger is not None else MemoryLedger(config.ledger)
        ordered = [upstreams[server.name] for server in config.servers]
        self.catalog = Catalog(ordered)
        self.verifier = Verifier(receipts, self.ledger)
        self.server = McpServer(config, self.catalog, self.verifier, governance)
        self.http = McpHttp(self.server, self.sessions, config)

    def mcp_tool(self, caller: Caller, name: str) -> str | None:
        """The server of `name` when it names an MCP tool `caller` may use (the
        tool-result stage's test before `check_tool_message`); None otherwise."""
        parts = split(name)
        if parts is None or parts[0] not in self.catalog.upstreams:
            return None
        return parts[0] if caller.may_use_tool(parts[0], name) else None

    def result_mode(self, server: str) -> str:
        """The mode a result of `server`'s tools is judged in, model-side."""
        upstream = self.catalog.upstreams.get(server)
        return "off" if upstream is None else upstream.config.verification.mode

    async def check_tool_message(
        self, caller: Caller, tool: str, arguments: Any, content: Any, receipt: Any = None
    ) -> Verdict:
        return await self.verifier.check_tool_message(
            caller.key_id, tool, arguments, content, receipt
        )


def state_parts(config: McpConfig) -> tuple[SessionStore, LedgerStore]:
    """The long-lived pieces for the gateway's State (sized by the first config); the
    Redis ledger's module (and redis-py) is imported only when the config names one."""
    ledger: LedgerStore
    if config.ledger.shared:
        from toolservers.redis_ledger import RedisLedger

        ledger = RedisLedger(config.ledger)
    else:
        ledger = MemoryLedger(config.ledger)
    return SessionStore(config.sessions), ledger


__all__ = [
    "LedgerSettings",
    "McpService",
    "SessionSettings",
    "UpstreamPool",
    "identity",
    "state_parts",
]
