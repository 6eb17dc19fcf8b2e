"""The aggregated catalog: every server's tools, resources and prompts as one.

- **Merged and namespaced**: `tools/list` is each server's tools with names
  `server__tool` (names.py), in config order; prompts likewise; resources keep
  their URIs (and get a namespaced `name`), and are routed by the URI each server
  listed (a URI two servers list goes to the first, logged), or by the fixed
  prefix of a server's resource template.
- **Filtered per caller**: a server outside the caller's servers, a tool outside
  the server's `allow` or the caller's tools is not listed, and `tool()` answers
  None for it exactly as for a name no server has: a hidden tool is
  indistinguishable from an absent one, in lists, calls and error messages.
- **Cached**: each server's lists are fetched on first need and kept until the
  server says `notifications/*/list_changed`, or for `list_ttl_s` for servers that
  never say so. Concurrent needs share one fetch. A server that cannot be listed
  keeps its last list (its calls then fail with a clear error) or, never listed,
  contributes nothing: one server down never fails `tools/list` for the others.
- **Changes**: a server's `list_changed` drops its cached list and tells every
  `listener` (the protocol layer queues the notification on every session).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolservers.caller import Caller
from toolservers.names import expose, split
from toolservers.upstream import Upstream, UpstreamError
from toolservers.upstream.base import log

#: How long a list is trusted when its server never announces changes.
LIST_TTL_S = 300.0
#: kind -> (method, result key, capability that announces it)
KINDS = {
    "tools": ("tools/list", "tools", "tools"),
    "prompts": ("prompts/list", "prompts", "prompts"),
    "resources": ("resources/list", "resources", "resources"),
    "templates": ("resources/templates/list", "resourceTemplates", "resources"),
}
CHANGED = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}


@dataclass(eq=False)
class CatalogTool:
    """One tool as the gateway exposes it."""

    exposed: str
    server: str
    #: The name the server knows it by.
    name: str
    #: The definition agents get: the server's, with the exposed name.
    definition: dict[str, Any]

    @property
    def annotations(self) -> dict[str, Any]:
        value = self.definition.get("annotations")
        return value if isinstance(value, dict) else {}

    @property
    def idempotent(self) -> bool:
        """Safe to call twice: the server says it is read-only or idempotent."""
        hints = self.annotations
        return hints.get("readOnlyHint") is True or hints.get("idempotentHint") is True

    @property
    def input_schema(self) -> Any:
        return self.definition.get("inputSchema")

    @property
    def output_schema(self) -> Any:
        return self.definition.get("outputSchema")

    #: Compiled validators, filled in by verify.py on first use.
    validators: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Listing:
    items: list[dict[str, Any]]
    fetched_at: float


class Catalog:
    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        list_ttl_s: float = LIST_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = {upstream.name: upstream for upstream in upstreams}
        self._ttl = list_ttl_s
        self._clock = clock
        self._lists: dict[tuple[str, str], _Listing] = {}
        self._fetching: dict[tuple[str, str], asyncio.Future[list[dict[str, Any]]]] = {}
        self._tools: dict[str, dict[str, CatalogTool]] = {}
        #: Called with the kind ("tools", "prompts", "resources") when a server's
        #: list changed.
        self.listeners: list[Callable[[str], None]] = []
        for upstream in upstreams:
            upstream.on_change = self._changed

    # -- tools -----------------------------------------------------------------------

    async def tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The definitions `tools/list` shows `caller`."""
        visible = []
        for server in self._servers(caller):
            for tool in (await self._tool_index(server)).values():
                if caller.may_use_tool(server, tool.exposed):
                    visible.append(tool.definition)
        return visible

    async def tool(self, caller: Caller, exposed: str) -> CatalogTool | None:
        """The tool `caller` calls by `exposed`; None when no server has it, or the
        caller may not see it (the same answer, on purpose)."""
        parts = split(exposed)
        if parts is None or parts[0] not in self.upstreams:
            return None
        server = parts[0]
        if not caller.may_use_tool(server, exposed):
            return None
        return (await self._tool_index(server)).get(exposed)

    async def _tool_index(self, server: str) -> dict[str, CatalogTool]:
        items = await self._items(server, "tools")
        index = self._tools.get(server)
        if index is None or getattr(index, "_source", None) is not items:
            index = _ToolIndex(self._build_tools(server, items))
            index._source = items
            self._tools[server] = index
        return index

    def _build_tools(self, server: str, items: list[dict[str, Any]]) -> dict[str, CatalogTool]:
        allow = self.upstreams[server].config.allow
        allowed = None if allow is None else frozenset(allow)
        index: dict[str, CatalogTool] = {}
        for item in items:
            name = item.get("name")
            if not isinstance(name, str) or (allowed is not None and name not in allowed):
                continue
            exposed = expose(server, name)
            if exposed is None:
                log.warning(
                    "MCP server %r: tool %r is not exposed: '%s__%s' is not a valid function "
                    "name (64 characters of letters, digits, '_' and '-')",
                    server,
                    name[:80],
                    server,
                    name[:80],
                )
                continue
            if exposed in index:
                log.warning("MCP server %r lists tool %r twice; the first is kept", server, name)
                continue
            index[exposed] = CatalogTool(exposed, server, name, {**item, "name": exposed})
        return index

    # -- prompts -----------------------------------------------------------------------

    async def prompts(self, caller: Caller) -> list[dict[str, Any]]:
        found = []
        for server in self._servers(caller):
            for item in await self._items(server, "prompts"):
                name = item.get("name")
                exposed = expose(server, name) if isinstance(name, str) else None
                if exposed is not None:
                    found.append({**item, "name": exposed})
        return found

    def prompt(self, caller: Caller, exposed: str) -> tuple[Upstream, str] | None:
        """The server and upstream name of a prompt (gets are not checked against the
        list: the server answers for names it does not have)."""
        parts = split(exposed)
        if parts is None or parts[0] not in self.upstreams or not caller.may_use_server(parts[0]):
            return None
        return self.upstreams[parts[0]], parts[1]

    # -- resources ---------------------------------------------------------------------

    async def resources(self, caller: Caller) -> list[dict[str, Any]]:
        found, seen = [], set()
        for server in self._servers(caller):
            for item in await self._items(server, "resources"):
                uri = item.get("uri")
                if not isinstance(uri, str) or uri in seen:
                    continue
                seen.add(uri)
                found.append(self._named(server, item))
        return found

    async def resource_templates(self, caller: Caller) -> list[dict[str, Any]]:
        found = []
        for server in self._servers(caller):
            for item in await self._items(server, "templates"):
                if isinstance(item.get("uriTemplate"), str):
                    found.append(self._named(server, item))
        return found

    async def resource(self, caller: Caller, uri: str) -> Upstream | None:
        """The server that serves `uri` for `caller`: the first that lists it, else
        the first whose template's fixed prefix it starts with."""
        servers = self._servers(caller)
        for server in servers:
            if any(item.get("uri") == uri for item in await self._items(server, "resources")):
                return self.upstreams[server]
        for server in servers:
            for item in await self._items(server, "templates"):
                template = item.get("uriTemplate")
                if isinstance(template, str):
                    prefix = template.split("{", 1)[0]
                    if prefix and uri.startswith(prefix):
                        return self.upstreams[server]
        return None

    @staticmethod
    def _named(server: str, item: dict[str, Any]) -> dict[str, Any]:
        name = item.get("name")
        exposed = expose(server, name) if isinstance(name, str) else None
        return {**item, "name": exposed or f"{server}__resource"}

    # -- lists, cached -----------------------------------------------------------------

    def _servers(self, caller: Caller) -> list[str]:
        return [name for name in self.upstreams if caller.may_use_server(name)]

    async def _items(self, server: str, kind: str) -> list[dict[str, Any]]:
        key = (server, kind)
        listing = self._lists.get(key)
        if listing is not None and self._clock() - listing.fetched_at < self._ttl:
            return listing.items
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(server, kind, listing))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch(self, server: str, kind: str, stale: _Listing | None) -> list[dict[str, Any]]:
        upstream = self.upstreams[server]
        method, key, capability = KINDS[kind]
        try:
            if upstream.connection.initialize_result is None:
                await upstream.request("ping", idempotent=True)  # the handshake, under the breaker
            if capability not in upstream.capabilities:
                items: list[dict[str, Any]] = []
            else:
                items = await upstream.list_all(method, key)
        except UpstreamError as exc:
            log.warning("MCP server %r: %s failed: %s", server, method, exc.message)
            return stale.items if stale is not None else []
        self._lists[(server, kind)] = _Listing(items, self._clock())
        return items

    def _changed(self, upstream: Upstream, method: str) -> None:
        kind = CHANGED.get(method)
        if kind is None:
            return
        self._lists.pop((upstream.name, kind), None)
        if kind == "resources":
            self._lists.pop((upstream.name, "templates"), None)
        for listener in self.listeners:
            listener(kind)

    def invalidate(self, server: str | None = None) -> None:
        """Drops cached lists (of one server, or all)."""
        for key in [k for k in self._lists if server is None or k[0] == server]:
            del self._lists[key]


class _ToolIndex(dict[str, CatalogTool]):
    """A server's tools by exposed name, remembering the list it was built from."""

    _source: Any = None
