"""One upstream MCP server as the gateway uses it: a connection behind a breaker,
deadlines on every call, retries only where a call is safe to repeat.

- **Deadlines**: `timeout_ms` for everything but tool calls, `call_timeout_ms` for
  `tools/call`; a call never waits longer, whatever the server does.
- **Breaker** (routing/breaker.py, the same state machine and settings as for
  model deployments): transport failures, timeouts and protocol violations count;
  the server's own JSON-RPC errors and tool error results do not (the server
  answered). While open, a call fails at once with `ServerDown` saying so.
- **Retries**: only calls the caller marks `idempotent` (the catalog does so for
  tools annotated `readOnlyHint` or `idempotentHint`, and for lists and reads),
  only after a failure that produced no answer, with full-jitter exponential
  backoff, within the call's deadline and while the breaker admits.
- **Lists**: `list_all` follows `nextCursor` up to `MAX_PAGES` pages.
- **Changes**: the server's `notifications/*/list_changed` go to `on_change`
  (the catalog drops its cached lists and tells the sessions).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from routing.breaker import Breaker
from toolservers.config import HttpServer, StdioServer
from toolservers.jsonrpc import Notification
from toolservers.upstream.base import (
    Connection,
    NotificationHandler,
    ProtocolViolation,
    ServerDown,
    UpstreamError,
    log,
)
from toolservers.upstream.http import HttpConnection
from toolservers.upstream.stdio import StdioConnection

#: Pages of one list followed at most (100 items a page is typical: 10k items).
MAX_PAGES = 100
LIST_CHANGED = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    }
)


def connect(
    config: HttpServer | StdioServer, transport: httpx.AsyncBaseTransport | None = None
) -> Connection:
    if isinstance(config, HttpServer):
        return HttpConnection(config, transport)
    return StdioConnection(config)


class Upstream:
    def __init__(
        self,
        config: HttpServer | StdioServer,
        connection: Connection | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        breaker: Breaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.connection = connection or connect(config, transport)
        self.connection.on_notification = self._notified
        #: Kept by the gateway's State across reloads (keyed by server name and its
        #: identity), like the deployments' breakers; a fresh one otherwise.
        self.breaker = breaker or Breaker(f"mcp:{config.name}", config.breaker, clock)
        self._clock = clock
        self.on_change: Callable[[Upstream, str], None] | None = None
        self.on_notification: NotificationHandler | None = None

    async def start(self) -> None:
        await self.connection.start()

    async def close(self) -> None:
        await self.connection.close()

    @property
    def capabilities(self) -> dict[str, Any]:
        result = self.connection.initialize_result or {}
        capabilities = result.get("capabilities")
        return capabilities if isinstance(capabilities, dict) else {}

    def _notified(self, notification: Notification) -> None:
        if notification.method in LIST_CHANGED and self.on_change is not None:
            self.on_change(self, notification.method)
        elif self.on_notification is not None:
            self.on_notification(notification)

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout_ms: int | None = None,
        idempotent: bool = False,
        on_notification: NotificationHandler | None = None,
    ) -> dict[str, Any]:
        """The server's `result`, or an `UpstreamError` within the deadline."""
        timeout = (timeout_ms or self.config.timeout_ms) / 1000
        deadline = self._clock() + timeout
        attempts = self.config.retry.attempts if idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            permit = self.breaker.allow()
            if permit is None:
                raise ServerDown(
                    f"MCP server '{self.name}' is unavailable: its circuit breaker is open "
                    "after repeated failures"
                )
            left = deadline - self._clock()
            try:
                result = await self.connection.request(
                    method, params, max(left, 0.001), on_notification
                )
            except UpstreamError as exc:
                if not exc.failure:
                    self.breaker.success(permit)
                    raise
                self.breaker.failure(permit)
                if attempt >= attempts or isinstance(exc, ProtocolViolation):
                    raise
                pause = self._backoff(attempt)
                if self._clock() + pause >= deadline or not self.breaker.available():
                    raise
                log.info("MCP server %r: %s; retrying in %.2f s", self.name, exc.message, pause)
                await asyncio.sleep(pause)
                continue
            except asyncio.CancelledError:
                self.breaker.cancelled(permit)
                raise
            self.breaker.success(permit)
            return result

    def _backoff(self, attempt: int) -> float:
        settings = self.config.retry
        ceiling = min(settings.max_backoff_ms, settings.backoff_ms * 2 ** (attempt - 1)) / 1000
        return random.uniform(0, ceiling)

    async def list_all(self, method: str, key: str) -> list[dict[str, Any]]:
        """Every item of a paginated list (`tools/list` -> `tools`...)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = {"cursor": cursor} if cursor else None
            page = await self.request(method, params, idempotent=True)
            found = page.get(key)
            if not isinstance(found, list):
                raise ProtocolViolation(
                    f"MCP server '{self.name}' answered {method} without '{key}'"
                )
            items += [item for item in found if isinstance(item, dict)]
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                return items
        log.warning(
            "MCP server %r: %s has more than %d pages; the rest is ignored",
            self.name,
            method,
            MAX_PAGES,
        )
        return items

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotent: bool,
        meta: dict[str, Any] | None = None,
        on_notification: NotificationHandler | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        return await self.request(
            "tools/call",
            params,
            timeout_ms=self.config.call_timeout_ms,
            idempotent=idempotent,
            on_notification=on_notification,
        )
