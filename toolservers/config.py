"""The `mcp:` config section: upstream MCP servers, sessions, the result ledger.

Frozen like every config model (common/config.py `Frozen`): a loaded config never
changes under a running call, and a typo is an error, never a silent default.
Every limit is a field with its default written here and in docs/mcp.md.

```yaml
mcp:
  servers:
    - name: github                     # the namespace: tools become github__<tool>
      transport: http
      url: https://mcp.example.com/mcp  # SecretUrl: env: for the whole or its password
      headers: {authorization: "env:GITHUB_MCP_TOKEN"}
      allow: [create_issue, search]     # upstream names; absent: every tool
    - name: files
      transport: stdio
      command: npx                      # an argv, never a shell
      args: ["-y", "@modelcontextprotocol/server-filesystem", "/srv/data"]
      env: {LOG_LEVEL: info}
```
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from common.config import Frozen, Secret
from common.secrets import SecretUrl, StoreUrl, unresolved
from routing.config import BreakerSettings, RetrySettings
from toolservers.names import check_server_name

Mode = Literal["enforce", "warn", "off"]
ServerName = Annotated[str, AfterValidator(check_server_name)]

#: Environment variables a stdio server inherits from the gateway unless its config
#: says otherwise: what a program needs to find itself and its locale, nothing that
#: could hold a credential (the gateway's environment holds provider keys). The
#: official SDKs' `get_default_environment` makes the same choice.
DEFAULT_INHERITED_ENV = (
    "HOME",
    "LOGNAME",
    "PATH",
    "SHELL",
    "TERM",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
#: Headers the connector sets itself; a configured one would break the protocol.
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)


class Verification(Frozen):
    """What the gateway checks of this server's calls (toolservers/verify.py)."""

    #: `enforce`: invalid arguments are refused before the call and an invalid result
    #: becomes a tool error naming the violation; `warn`: both pass, logged and
    #: flagged; `off`: nothing is checked and no receipt is issued.
    mode: Mode = "enforce"
    #: A result (its JSON-RPC `result`, serialized) larger than this is refused:
    #: a tool error in `enforce`, passed with a flag in `warn`.
    max_result_bytes: int = Field(1024 * 1024, gt=0, le=64 * 1024 * 1024)


class RestartSettings(Frozen):
    """How a stdio server that exits is restarted: exponential backoff, reset once it
    stayed up `healthy_after_s`."""

    initial_backoff_ms: int = Field(500, ge=10)
    max_backoff_ms: int = Field(30_000, ge=10)
    healthy_after_s: float = Field(30, gt=0)
    #: How long a stopping child gets after its stdin closes before SIGTERM, and
    #: after SIGTERM before SIGKILL (the spec's shutdown sequence for stdio).
    stop_grace_ms: int = Field(2000, ge=0, le=60_000)


class ServerBase(Frozen):
    name: ServerName
    #: Upstream tool names this server may expose (before namespacing). Absent:
    #: every tool it lists. A tool outside it is absent for every caller.
    allow: tuple[str, ...] | None = None
    #: Connecting, the handshake, lists, reads, ping: anything but a tool call.
    timeout_ms: int = Field(10_000, gt=0, le=600_000)
    #: One `tools/call`, from sending it to its result.
    call_timeout_ms: int = Field(60_000, gt=0, le=3_600_000)
    #: Retries of a failed call (transport failure, timeout): only for tools whose
    #: annotations say `readOnlyHint` or `idempotentHint`; never after a result,
    #: even an error result, came back.
    retry: RetrySettings = RetrySettings(attempts=2, backoff_ms=100, max_backoff_ms=2000)
    breaker: BreakerSettings = BreakerSettings()
    verification: Verification = Verification()
    #: One JSON-RPC message from the server larger than this is refused (a protocol
    #: error for that call), and an SSE event or stdout line larger than it too.
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)

    @field_validator("allow")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not name for name in value):
            raise ValueError("tool names must not be empty")
        return value


class HttpServer(ServerBase):
    transport: Literal["http"]
    #: The server's MCP endpoint (Streamable HTTP). May carry credentials: masked.
    url: SecretUrl
    #: Sent with every request (an `authorization` token...): values are secrets.
    headers: dict[str, Secret] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretUrl) -> SecretUrl:
        if not unresolved(value) and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for name in value:
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name[:64]!r} is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the MCP transport itself")
        return value


class StdioServer(ServerBase):
    transport: Literal["stdio"]
    #: The program, run directly (no shell: nothing in it is expanded or split).
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    #: Set for the child on top of the inherited variables; values are secrets.
    env: dict[str, Secret] = Field(default_factory=dict)
    #: Variables copied from the gateway's own environment (when set there).
    inherit_env: tuple[str, ...] = DEFAULT_INHERITED_ENV
    cwd: str | None = None
    restart: RestartSettings = RestartSettings()

    @field_validator("command")
    @classmethod
    def _argv(cls, value: str) -> str:
        if value != value.strip() or "\n" in value:
            raise ValueError("must be a program name or path, without surrounding whitespace")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not an environment variable name")
        return value

    @field_validator("inherit_env")
    @classmethod
    def _inherit_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not an environment variable name")
        return value


ServerConfig = Annotated[HttpServer | StdioServer, Field(discriminator="transport")]


class SessionSettings(Frozen):
    """Sessions of `/mcp` (`Mcp-Session-Id`), each owned by the key that opened it."""

    #: Open sessions per key. One more evicts that key's least recently used
    #: session (a key can only ever evict its own).
    max_per_key: int = Field(16, ge=1, le=10_000)
    #: Open sessions of all the keys of one tenant together. One more evicts that
    #: tenant's least recently used session (a tenant can only ever evict its own).
    max_per_tenant: int = Field(1024, ge=1, le=1_000_000)
    #: Open sessions in all. When full, a new session is refused (503), never made
    #: by evicting another key's.
    max_total: int = Field(4096, ge=1, le=1_000_000)
    #: A session unused this long is closed (404 to its next request: the client
    #: starts a new one, as the spec says).
    idle_ttl_s: float = Field(900, gt=0, le=7 * 86_400)
    #: Server-to-client messages (list_changed notifications) waiting for the
    #: session's GET stream; past it the oldest is dropped and counted.
    queue_size: int = Field(64, ge=1, le=10_000)


class LedgerSettings(Frozen):
    """The record of results served per key (toolservers/ledger.py): what lets the
    gateway recognise an MCP result the agent sends to the model without a receipt."""

    enabled: bool = True
    #: `memory` (this process) or a `redis://HOST:PORT/DB` URL (`rediss://`,
    #: `unix://`): shared by every worker and replica, so a result served by one is
    #: recognised by all. Its password may be an `env:` reference. Restart-only.
    store: StoreUrl = SecretUrl.of("memory")
    #: A Redis call slower than this fails: a result is not recorded (counted; it
    #: still carries its receipts), a lookup answers per `on_store_failure`.
    store_timeout_ms: int = Field(200, gt=0, le=10_000)
    #: A tool message without a receipt, when the store cannot say whether its
    #: result was served: `fail_closed` refuses the model request (503
    #: `tool_result_ledger_unavailable`, which SDKs retry); `fail_open` lets it through
    #: unverified (flagged in `x-seawall-tool-violations` and counted).
    on_store_failure: Literal["fail_open", "fail_closed"] = "fail_closed"
    #: Results remembered per key; the oldest goes first.
    max_entries_per_key: int = Field(4096, ge=1, le=1_000_000)
    #: Bytes the entries of one key may take (fingerprints and names, not contents).
    max_bytes_per_key: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    #: Keys remembered at once. A new key makes room by evicting its own tenant's
    #: least recently served key; a tenant with none is not recorded (its results
    #: are still recognised by their receipts).
    max_keys: int = Field(10_000, ge=1, le=1_000_000)
    #: Keys of one tenant remembered at once; the tenant's least recently served
    #: key goes first.
    max_keys_per_tenant: int = Field(1_000, ge=1, le=1_000_000)
    #: Bytes the entries of one tenant's keys may take together; the oldest results
    #: of its least recently served key go first.
    max_bytes_per_tenant: int = Field(64 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024 * 1024)
    #: How long a served result is recognised.
    ttl_s: float = Field(3600, gt=0, le=30 * 86_400)

    @property
    def shared(self) -> bool:
        """Is the ledger shared by other processes (Redis)?"""
        return self.store != "memory"


class CallLimits(Frozen):
    """Tool calls one level may make through `/mcp`. Counted by the gateway's limits
    engine (both stores) in buckets of their own: a tool call is not a model request."""

    calls_per_minute: int | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, gt=0)


class McpLimits(Frozen):
    """Limits on `tools/call`, applied by the gateway (toolservers only asks its
    `Governance`). Every level that applies must pass; each tenant, key and tool
    has its own counters."""

    #: Each tenant of the caller's chain, for the calls of its whole subtree.
    tenant: CallLimits = CallLimits()
    #: Each key.
    key: CallLimits = CallLimits()
    #: Each tool (`server__tool`), per tenant of the caller: one tenant's calls of a
    #: tool never use up another's.
    tool: CallLimits = CallLimits()
    #: What these limits do when a shared store (Redis) cannot answer in time.
    on_store_failure: Literal["fail_open", "fail_closed"] = "fail_closed"


class McpConfig(Frozen):
    servers: tuple[ServerConfig, ...] = ()
    sessions: SessionSettings = SessionSettings()
    ledger: LedgerSettings = LedgerSettings()
    limits: McpLimits = McpLimits()
    #: How `/mcp` answers a POSTed request when the client accepts both: one JSON
    #: body, or an SSE stream carrying it (for clients behind proxies that prefer it).
    answers: Literal["json", "sse"] = "json"
    #: `Origin` values a browser-borne request may carry (exact `scheme://host[:port]`).
    #: A request with any other Origin is refused (403), as the spec requires against
    #: DNS rebinding; requests without one (SDK clients) are not affected.
    allowed_origins: tuple[str, ...] = ()
    #: A request body larger than this is refused before it is parsed.
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: JSON nested deeper than this is refused (jsonrpc.py).
    max_json_depth: int = Field(64, ge=4, le=512)
    #: Messages in one JSON-RPC batch (only protocol 2025-03-26 allows batches).
    max_batch: int = Field(32, ge=1, le=1000)

    @model_validator(mode="after")
    def _unique_names(self) -> McpConfig:
        seen: set[str] = set()
        for server in self.servers:
            # Case-insensitively: `GitHub__x` and `github__x` would read as one tool.
            folded = server.name.lower()
            if folded in seen:
                raise ValueError(f"servers: two servers are named {server.name!r}")
            seen.add(folded)
        return self

    def server(self, name: str) -> HttpServer | StdioServer | None:
        return next((s for s in self.servers if s.name == name), None)
