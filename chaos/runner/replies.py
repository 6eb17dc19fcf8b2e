"""What the gateway answered, reduced to what the probes read, and what a request of
the load came to over all its steps (one call, a tool round, a conversation).

Shared by the request kinds (`chaos.runner.traffic`, `chaos.runner.race`): each
step's answer becomes a `Reply`, and every step is `observe`d into the request's
`Outcome`, so a timeout half-way through keeps what was seen before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from chaos.runner.samples import parse_injected
from chaos.runner.streams import StreamReader
from common.headers import (
    CHAOS_HEADER,
    CONFIG_VERSION_HEADER,
    DEPLOYMENT_HEADER,
    INJECTED_HEADER,
    ROUTE_HEADER,
)

CHAT_PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One HTTP answer, reduced to what the probes read."""

    status: int
    headers: httpx.Headers
    body: Any = None

    @property
    def code(self) -> str | None:
        if 200 <= self.status < 300:
            return None
        error = self.body.get("error") if isinstance(self.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return str(code) if code else f"http_{self.status}"

    @property
    def route(self) -> str | None:
        return self.headers.get(ROUTE_HEADER)


@dataclass
class Outcome:
    """What a request of any kind came to, before it becomes a Sample."""

    status: int = 0
    code: str | None = None
    ok: bool = False
    routes: list[str] = field(default_factory=list)
    deployment: str | None = None
    injected: list[str] = field(default_factory=list)
    #: The config versions that answered its steps, each once.
    config_versions: list[str] = field(default_factory=list)
    chaos_ignored: bool = False
    stream: StreamReader | None = None
    caught_by: str | None = None
    #: Tool-race cheats: how each result sent that should not have been sent fared
    #: (see `chaos.runner.samples.CHEAT_VERDICTS`).
    cheats: list[str] = field(default_factory=list)
    #: `mcp_agent`: how each genuine result sent fared (`SERVED` or a verdict).
    genuine: list[str] = field(default_factory=list)

    def observe(self, reply: Reply) -> None:
        self.status, self.code, self.ok = reply.status, reply.code, 200 <= reply.status < 300
        if reply.route:
            self.routes.append(reply.route)
        self.deployment = reply.headers.get(DEPLOYMENT_HEADER, self.deployment)
        for entry in parse_injected(reply.headers.get(INJECTED_HEADER)):
            self._inject(entry)
        self._version(reply.headers.get(CONFIG_VERSION_HEADER))
        self.chaos_ignored |= reply.headers.get(CHAOS_HEADER, "") == "ignored"

    def _version(self, version: str | None) -> None:
        if version and version not in self.config_versions:
            self.config_versions.append(version)

    def _inject(self, entry: str) -> None:
        if entry not in self.injected:
            self.injected.append(entry)

    def merge(self, other: Outcome) -> None:
        """Fold in a request that ran alongside this one as part of the same sample
        (the two conversations of a swap): it succeeded only if both did, and the
        first failure is the one reported."""
        if self.ok and not other.ok:
            self.status, self.code, self.ok = other.status, other.code, other.ok
        self.routes += other.routes
        self.deployment = self.deployment or other.deployment
        for entry in other.injected:
            self._inject(entry)
        for version in other.config_versions:
            self._version(version)
        self.chaos_ignored |= other.chaos_ignored
        self.cheats += other.cheats
        self.genuine += other.genuine


def json_body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def tool_calls(body: Any) -> list[dict[str, Any]]:
    """The tool calls of a chat completion's first choice."""
    try:
        calls = body["choices"][0]["message"]["tool_calls"]
    except (KeyError, IndexError, TypeError):
        return []
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def call_arguments(call: dict[str, Any]) -> Any:
    """A call's arguments as a value ({} when they are not JSON)."""
    text = (call.get("function") or {}).get("arguments") or "{}"
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
