"""The MCP server side: one JSON-RPC message from an authenticated caller in, its
answer out. No HTTP here (http.py maps Streamable HTTP onto this), so the same
handler serves any transport and is tested without one.

Methods: `initialize` (capability negotiation: the revision the client asks for
when the gateway speaks it, else the newest it speaks), `ping`, `tools/list`,
`tools/call`, `resources/list`, `resources/templates/list`, `resources/read`,
`prompts/list`, `prompts/get`; notifications `notifications/initialized` and
`notifications/cancelled` (acknowledged; a call is cancelled when its HTTP request
goes away). Anything else is `Method not found`, including `server/discover`
(2026-07-28's probe: the official Python client then falls back to `initialize`).

`tools/call`, in order: the tool is resolved for the caller (a hidden tool is
`Unknown tool`, as if absent); its arguments are checked (verify.py); governance
admits it (the gateway's policies and limits, `Governance`); chaos faults act;
the server is called under its breaker and deadline; the result is checked,
sealed (receipts, ledger) and returned. Every step's refusal is an answer the
SDKs understand: a JSON-RPC error for what is not a tool execution (unknown tool,
denied, server down), a tool error result (`isError`) for what the model can act
on (invalid arguments, an invalid result).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolservers.caller import Caller
from toolservers.catalog import Catalog, CatalogTool
from toolservers.chaos import Fault, before_call, served_result, upstream_result
from toolservers.config import McpConfig
from toolservers.jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND,
    Error,
    Message,
    Notification,
    Request,
    Response,
)
from toolservers.sessions import Session
from toolservers.upstream import Upstream, UpstreamError
from toolservers.upstream.base import log
from toolservers.verify import VIOLATIONS_META, Finding, Verifier, tool_error, violations_meta

#: Revisions `/mcp` speaks, newest first: those of the initialize handshake with
#: the Streamable HTTP transport. 2026-07-28 is not among them (docs/mcp.md).
SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_VERSION = SUPPORTED_VERSIONS[0]
#: The one revision that allows JSON-RPC batches.
BATCH_VERSIONS = frozenset({"2025-03-26"})
SERVER_INFO = {"name": "seawall", "title": "seawall MCP gateway", "version": "0.1.0"}
# Governance refusals, in the implementation-defined server error range.
POLICY_DENIED = -32010
RATE_LIMITED = -32011


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What governance sees of a call: CEL attributes, limit claims."""

    caller: Caller
    server: str
    #: The exposed name (`server__tool`): what tenants' allow.tools name.
    tool: str
    #: The name the server knows.
    name: str
    arguments: dict[str, Any]
    annotations: dict[str, Any]

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.arguments))


@dataclass
class Admission:
    """Governance's answer: refused (a JSON-RPC error code and message), or admitted
    with the chaos faults that hit this call and a hook run when the call ends
    (limits release concurrency and settle there)."""

    error: tuple[int, str] | None = None
    faults: Sequence[Fault] = ()
    done: Callable[[bool], Awaitable[None]] | None = None
    #: Flags (policy `flag` effects) for audit and metrics; toolservers ignores them.
    flags: tuple[str, ...] = ()


class Governance(Protocol):
    async def admit(self, call: ToolCall) -> Admission: ...


class AllowAll:
    async def admit(self, call: ToolCall) -> Admission:
        return Admission()


@dataclass
class Outcome:
    """What the gateway may want to know of one handled message (metrics, audit)."""

    method: str = ""
    tool: str | None = None
    server: str | None = None
    findings: list[Finding] = field(default_factory=list)
    error: int | None = None


class McpServer:
    def __init__(
        self,
        config: McpConfig,
        catalog: Catalog,
        verifier: Verifier,
        governance: Governance | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.verifier = verifier
        self.governance: Governance = governance or AllowAll()

    # -- dispatch ----------------------------------------------------------------------

    async def handle(
        self,
        caller: Caller,
        message: Message,
        session: Session | None,
        faults: Sequence[Fault] = (),
        outcome: Outcome | None = None,
    ) -> Response | Error | None:
        """The answer to `message` (None for notifications and responses)."""
        outcome = outcome if outcome is not None else Outcome()
        if isinstance(message, Notification):
            outcome.method = message.method
            if message.method == "notifications/initialized" and session is not None:
                session.initialized = True
            return None
        if not isinstance(message, Request):
            return None  # a response to a request the gateway never sends
        outcome.method = message.method
        handler = self._methods.get(message.method)
        if handler is None:
            outcome.error = METHOD_NOT_FOUND
            return Error(message.id, METHOD_NOT_FOUND, f"Method not found: {message.method[:64]}")
        params = message.params or {}
        try:
            result = await handler(self, caller, params, session, faults, outcome)
        except _Refused as refused:
            outcome.error = refused.code
            return Error(message.id, refused.code, refused.message, refused.data)
        except UpstreamError as exc:
            outcome.error = exc.code
            return Error(message.id, exc.code, exc.message, exc.data)
        return Response(message.id, result)

    # -- lifecycle ---------------------------------------------------------------------

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        """The `initialize` result; http.py opens the session."""
        asked = params.get("protocolVersion")
        version = asked if asked in SUPPORTED_VERSIONS else LATEST_VERSION
        return {
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": True},
                "resources": {"listChanged": True},
                "prompts": {"listChanged": True},
            },
            "serverInfo": SERVER_INFO,
            "instructions": (
                "Tools of several MCP servers, named <server>__<tool>. Results carry "
                "receipts in _meta (seawall_receipt)."
            ),
        }

    async def _initialize(
        self, caller: Caller, params: dict[str, Any], session: Session | None, *_: Any
    ) -> dict[str, Any]:
        return self.initialize(params)

    async def _ping(self, *_: Any) -> dict[str, Any]:
        return {}

    # -- tools -------------------------------------------------------------------------

    async def _tools_list(self, caller: Caller, *_: Any) -> dict[str, Any]:
        return {"tools": await self.catalog.tools(caller)}

    async def _tools_call(
        self,
        caller: Caller,
        params: dict[str, Any],
        session: Session | None,
        faults: Sequence[Fault],
        outcome: Outcome,
    ) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise _Refused(INVALID_PARAMS, "tools/call needs a tool name")
        tool = await self.catalog.tool(caller, name)
        outcome.tool = name[:128]
        if tool is None:
            raise _Refused(INVALID_PARAMS, f"Unknown tool: {name[:128]}")
        outcome.server = tool.server
        upstream = self.catalog.upstreams[tool.server]
        settings = upstream.config.verification
        arguments = params.get("arguments", {})
        arguments = {} if arguments is None else arguments
        findings = self.verifier.check_arguments(tool, arguments, settings)
        outcome.findings += findings
        if findings and settings.mode == "enforce":
            return tool_error(
                f"The gateway did not call tool '{tool.exposed}': "
                + "; ".join(f.message for f in findings)
            )
        admission = await self.governance.admit(
            ToolCall(caller, tool.server, tool.exposed, tool.name, arguments, tool.annotations)
        )
        if admission.error is not None:
            code, message = admission.error
            raise _Refused(code, message)
        ok = False
        try:
            result = await self._call(upstream, tool, arguments, admission.faults)
            ok = True
        finally:
            if admission.done is not None:
                await admission.done(ok)
        checked = self.verifier.check_result(tool, result, settings)
        outcome.findings += checked
        if checked and settings.mode == "enforce":
            log.warning("MCP tool %r: result refused: %s", tool.exposed, checked[0].message)
            return tool_error(
                f"The gateway withheld the result of tool '{tool.exposed}': "
                + "; ".join(f.message for f in checked)
            )
        if findings or checked:
            meta = dict(result.get("_meta") or {})
            meta[VIOLATIONS_META] = violations_meta(findings + checked)
            result = {**result, "_meta": meta}
        sealed = await self.verifier.seal(
            caller.key_id, tool, arguments, result, settings, tenant=caller.tenant
        )
        previous = session.attributes.get("last_result") if session is not None else None
        if session is not None:
            session.attributes["last_result"] = sealed
        return served_result(admission.faults, sealed, previous)

    async def _call(
        self,
        upstream: Upstream,
        tool: CatalogTool,
        arguments: dict[str, Any],
        faults: Sequence[Fault],
    ) -> dict[str, Any]:
        if faults:
            await before_call(faults, upstream.name, upstream.config.call_timeout_ms / 1000)
        result = await upstream.call_tool(tool.name, arguments, idempotent=tool.idempotent)
        if faults:
            result = upstream_result(faults, result)
        return result

    # -- resources and prompts -----------------------------------------------------------

    async def _resources_list(self, caller: Caller, *_: Any) -> dict[str, Any]:
        return {"resources": await self.catalog.resources(caller)}

    async def _templates_list(self, caller: Caller, *_: Any) -> dict[str, Any]:
        return {"resourceTemplates": await self.catalog.resource_templates(caller)}

    async def _resources_read(
        self, caller: Caller, params: dict[str, Any], *_: Any
    ) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise _Refused(INVALID_PARAMS, "resources/read needs a uri")
        upstream = await self.catalog.resource(caller, uri)
        if upstream is None:
            raise _Refused(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri[:512]})
        return await upstream.request("resources/read", {"uri": uri}, idempotent=True)

    async def _prompts_list(self, caller: Caller, *_: Any) -> dict[str, Any]:
        return {"prompts": await self.catalog.prompts(caller)}

    async def _prompts_get(self, caller: Caller, params: dict[str, Any], *_: Any) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise _Refused(INVALID_PARAMS, "prompts/get needs a prompt name")
        found = self.catalog.prompt(caller, name)
        if found is None:
            raise _Refused(INVALID_PARAMS, f"Unknown prompt: {name[:128]}")
        upstream, upstream_name = found
        forwarded: dict[str, Any] = {"name": upstream_name}
        if isinstance(params.get("arguments"), dict):
            forwarded["arguments"] = params["arguments"]
        return await upstream.request("prompts/get", forwarded, idempotent=True)

    _methods: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "initialize": _initialize,
        "ping": _ping,
        "tools/list": _tools_list,
        "tools/call": _tools_call,
        "resources/list": _resources_list,
        "resources/templates/list": _templates_list,
        "resources/read": _resources_read,
        "prompts/list": _prompts_list,
        "prompts/get": _prompts_get,
    }


class _Refused(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
