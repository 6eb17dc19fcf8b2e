"""`/mcp`: MCP's Streamable HTTP transport, behind the gateway's keys.

Authentication is the gateway's: a bearer key holding the `tools` role (the role
of the invoke proxy: MCP tools are tools), 401/403 in the gateway's error
envelope otherwise. The key's tenant decides what the caller sees: its effective
`allow.tools` becomes the `Caller`'s visible tools, so a tool outside it is absent
from `tools/list` and `Unknown tool` to `tools/call`, exactly like one no server
has. Sessions belong to the key that opened them (toolservers/sessions.py): any
other key gets 404 for the id, as for an id that never existed.

Chaos: the request's plan is built as for every endpoint (the `x-seawall-chaos`
header and `x-traffic-color` only for a key with the `chaos` role and chaos
enabled; admin schedules for the caller's tenant chain), and its MCP faults act
on the calls and the session (gateway/mcp/faults.py); what was injected is in
`x-seawall-chaos-injected`.

Errors: what toolservers answers is already MCP's (JSON-RPC errors, tool error
results); anything unexpected is logged with its traceback and answered with a
plain JSON-RPC internal error, never the exception's text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from audit.chain import serialise
from audit.config import DEFAULT_POLICY
from chaos.engine import ChaosEngine
from chaos.plan import ChaosPlan
from common.headers import (
    CONFIG_VERSION_HEADER,
    INJECTED_HEADER,
    REQUEST_ID_HEADER,
)
from gateway.audit_record import mcp_record
from gateway.errors import GatewayError, error_response
from gateway.mcp.callers import caller_of
from gateway.mcp.faults import session_faults
from gateway.pipeline import internal_error
from gateway.stages.audit import audit_unavailable
from gateway.stages.authenticate import require
from gateway.stages.chaos import requested_plan
from tenants.identity import Identity
from toolservers.caller import Caller
from toolservers.http import HttpAnswer
from toolservers.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, Error, dumps

if TYPE_CHECKING:
    from gateway.drain import Drain
    from gateway.runtime import Runtime
    from gateway.state import State

log = logging.getLogger("seawall")

#: The role a key needs for `/mcp` (docs/mcp.md).
ROLE = "tools"
#: How often an open GET stream looks whether the gateway is draining.
DRAIN_POLL_S = 1.0


def caller_for(
    identity: Identity, plan: ChaosPlan | None, request: Request, request_id: str
) -> Caller:
    """`caller_of` the key, with what governance needs of this request."""
    client = request.client
    return caller_of(
        identity,
        {
            "identity": identity,
            "plan": plan,
            "headers": request.headers,
            "client_ip": client.host if client is not None else "",
            "request_id": request_id,
        },
    )


def _jsonrpc_error(status: int, code: int, message: str) -> HttpAnswer:
    body = dumps(Error(None, code, message))
    return HttpAnswer(status, {"content-type": "application/json"}, body)


class Served(Protocol):
    """What the endpoint reads of the running gateway (gateway/app.py's `Gateway`):
    the Runtime being served, the process-long State, the drain."""

    runtime: Runtime
    state: State

    @property
    def drain(self) -> Drain: ...


class McpEndpoint:
    def __init__(self, gateway: Served) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A POST to /mcp as a plain ASGI endpoint, reached around Starlette's router
        and exception middlewares (gateway/app.py `GatewayApp`), as the inference
        endpoints are: it answers every error itself, in the envelope. Measured with
        bench/mcp_instructions.py (docs/performance.md)."""
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except GatewayError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return  # the client left while sending its body: nobody to answer
        except Exception:
            log.exception("MCP: POST /mcp failed")
            response = error_response(internal_error())
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        gateway = self.gateway
        runtime = gateway.runtime
        identity = require(runtime.tenants, request.headers.get("authorization"), ROLE)
        started = time.monotonic()
        audit = gateway.state.audit
        policy = runtime.audit_policies.get(identity.tenant_id, DEFAULT_POLICY)
        if audit is not None and not audit.admits(policy):
            raise audit_unavailable()
        request_id = gateway.state.ids.next()
        headers = {REQUEST_ID_HEADER: request_id, CONFIG_VERSION_HEADER: runtime.version.id}
        service = runtime.mcp
        if service is None:
            raise GatewayError(
                503, "The MCP endpoint is not ready yet; retry shortly.", code="mcp_unavailable"
            )
        plan = self._plan(runtime.chaos, identity, request, headers)
        caller = caller_for(identity, plan, request, request_id)
        # Starlette's header names are lower-case already; a repeated one keeps its last.
        sent = dict(request.headers.items())
        try:
            if request.method == "POST":
                body = await self._body(request, service.config.max_request_bytes)
                if isinstance(body, HttpAnswer):
                    answer = body
                else:
                    answer = await service.http.post(caller, sent, body, session_faults(plan))
            elif request.method == "GET":
                answer = await service.http.get(caller, sent, session_faults(plan))
            else:
                answer = await service.http.delete(caller, sent)
        except Exception:
            log.exception("MCP: %s /mcp failed", request.method)
            answer = _jsonrpc_error(500, INTERNAL_ERROR, "Internal error")
        injected = plan.injected if plan is not None else ()
        if plan is not None and injected:
            headers[INJECTED_HEADER] = ", ".join(injected)
            runtime.chaos.count(plan)
        headers.update(answer.headers)
        if audit is not None:
            record = mcp_record(
                identity,
                request_id,
                request.method,
                answer.status,
                (time.monotonic() - started) * 1000,
                runtime.version.id,
                answer.outcomes,
                injected,
                runtime.redactor,
            )
            await audit.write(serialise(record), policy)
        if answer.stream is not None:
            stream = answer.stream
            if request.method == "GET":
                stream = until_draining(stream, gateway.drain)
            return StreamingResponse(stream, status_code=answer.status, headers=headers)
        return Response(answer.body, status_code=answer.status, headers=headers)

    @staticmethod
    async def _body(request: Request, limit: int) -> bytes | HttpAnswer:
        """The body, read up to `limit` bytes: one larger is refused unread."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _plan(
        engine: ChaosEngine, identity: Identity, request: Request, headers: dict[str, str]
    ) -> ChaosPlan | None:
        """The request's chaos plan, as the `Chaos` stage builds it for other endpoints."""
        plan, _ = requested_plan(engine, request.headers, identity, headers)
        return plan


async def until_draining(
    stream: AsyncIterator[bytes], drain: Drain, poll_s: float = DRAIN_POLL_S
) -> AsyncIterator[bytes]:
    """`stream` (a session's GET stream, which never ends by itself) until the gateway
    starts draining: it ends within `poll_s` of that, before the listener closes
    (`server.drain_s`), so a shutdown never waits `server.shutdown_timeout_s` for
    the GET stream every connected SDK client keeps open. The client reopens it
    elsewhere (the spec lets a client reconnect its GET stream at any time)."""
    iterator = aiter(stream)
    pending: asyncio.Future[bytes] | None = None
    try:
        while not drain.draining:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=poll_s)
            if not done:
                continue
            finished, pending = pending, None
            try:
                chunk = finished.result()
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _too_large(limit: int) -> HttpAnswer:
    message = f"Request body too large: at most {limit} bytes (mcp.max_request_bytes)"
    return _jsonrpc_error(413, INVALID_REQUEST, message)
