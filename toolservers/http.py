"""Streamable HTTP on top of the protocol handler, without a web framework.

The gateway's `/mcp` route authenticates the request, builds the `Caller`, and
hands the method, the headers (lower-case names) and the body here; it sends the
`HttpAnswer` back as it is (status, headers, then `body` or the `stream`'s chunks).
What this module does, per the 2025-03-26..2025-11-25 revisions:

- **Origin**: a request with an `Origin` header not in `allowed_origins` is 403
  (the spec's DNS-rebinding defence); no Origin (SDK clients) passes.
- **POST**: `Accept` must admit JSON or SSE (406 otherwise); `Content-Type` JSON
  (415); the body is parsed under the bounds (jsonrpc.py: 413-like refusals as
  400 with a JSON-RPC error). `initialize` opens a session (`Mcp-Session-Id` on
  the answer); every other message needs the session's id (400 without one, 404
  for an unknown, expired or another key's: the client then initializes again).
  `MCP-Protocol-Version`, when sent, must be the session's revision (400).
  Notifications and responses only: 202. Requests: the answers as one JSON body,
  or as an SSE stream when `answers: sse` and the client accepts it. A batch is
  accepted only in a 2025-03-26 session.
- **GET**: the session's server-to-client stream (SSE): its outbound queue
  (sessions.py), a keep-alive comment every `KEEPALIVE_S`; one stream per session
  (409 for a second); ends when the session closes.
- **DELETE**: closes the session (200; 404 when it is not the caller's).

2026-07-28 clients (the Python SDK's `mode="auto"`) probe with `server/discover`
and no session: the 400 they get carries a JSON-RPC error that is not a modern
one, so they fall back to `initialize`, as that revision tells them to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from toolservers.caller import Caller
from toolservers.chaos import Fault, drops_session, stream_delay
from toolservers.config import McpConfig
from toolservers.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    Error,
    Limits,
    Message,
    Notification,
    ParseFailure,
    Request,
    Response,
    dumps,
    parse,
)
from toolservers.protocol import BATCH_VERSIONS, SUPPORTED_VERSIONS, McpServer, Outcome
from toolservers.sessions import Session, SessionsFull, SessionStore
from toolservers.upstream.base import log

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
#: A GET stream sends a comment this often, so proxies keep it open.
KEEPALIVE_S = 15.0
JSON = "application/json"
SSE = "text/event-stream"


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: An SSE body, sent chunk by chunk (the route streams it), instead of `body`.
    stream: AsyncIterator[bytes] | None = None
    outcomes: list[Outcome] = field(default_factory=list)


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> HttpAnswer:
    body = dumps(Error(None, code, message))
    return HttpAnswer(status, {"content-type": JSON, **(headers or {})}, body)


def _event(message: Message | list[Message]) -> bytes:
    return b"event: message\ndata: " + dumps(message) + b"\n\n"


class McpHttp:
    def __init__(self, server: McpServer, sessions: SessionStore, config: McpConfig) -> None:
        self.server = server
        self.sessions = sessions
        self.config = config
        self._origins = frozenset(config.allowed_origins)
        server.catalog.listeners.append(self._list_changed)

    def _list_changed(self, kind: str) -> None:
        self.sessions.broadcast(Notification(f"notifications/{kind}/list_changed"))

    def _origin_refused(self, headers: Mapping[str, str]) -> HttpAnswer | None:
        origin = headers.get("origin")
        if origin is None or origin in self._origins:
            return None
        return _error(403, INVALID_REQUEST, "Forbidden: this Origin may not use the MCP endpoint")

    def _session(self, caller: Caller, headers: Mapping[str, str]) -> Session | HttpAnswer:
        session_id = headers.get(SESSION_HEADER)
        if not session_id:
            return _error(
                400,
                INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required; start with initialize "
                f"(this endpoint speaks protocol revisions {', '.join(SUPPORTED_VERSIONS)})",
            )
        session = self.sessions.get(caller.key_id, session_id)
        if session is None:
            return _error(404, INVALID_REQUEST, "Session not found")
        version = headers.get(VERSION_HEADER)
        if version is not None and version != session.protocol_version:
            return _error(
                400,
                INVALID_REQUEST,
                f"Bad Request: MCP-Protocol-Version {version[:32]!r} is not this session's "
                f"({session.protocol_version})",
            )
        return session

    # -- POST ----------------------------------------------------------------------------

    async def post(
        self,
        caller: Caller,
        headers: Mapping[str, str],
        body: bytes,
        faults: Sequence[Fault] = (),
    ) -> HttpAnswer:
        refused = self._origin_refused(headers)
        if refused is not None:
            return refused
        accept = headers.get("accept", "*/*")
        wants_json = JSON in accept or "*/*" in accept or "application/*" in accept
        wants_sse = SSE in accept or "*/*" in accept
        if not (wants_json or wants_sse):
            return _error(
                406, INVALID_REQUEST, "Not Acceptable: accept application/json or text/event-stream"
            )
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != JSON:
            return _error(415, INVALID_REQUEST, "Unsupported Media Type: send application/json")
        limits = Limits(
            self.config.max_request_bytes, self.config.max_json_depth, self.config.max_batch
        )
        try:
            parsed = parse(body, limits)
        except ParseFailure as exc:
            return HttpAnswer(400, {"content-type": JSON}, dumps(exc.error()))
        messages = parsed if isinstance(parsed, list) else [parsed]
        initialize = next(
            (m for m in messages if isinstance(m, Request) and m.method == "initialize"), None
        )
        if initialize is not None:
            if len(messages) > 1:
                return _error(400, INVALID_REQUEST, "initialize must be sent alone")
            return self._initialize(caller, initialize, wants_json, wants_sse)
        found = self._session(caller, headers)
        if isinstance(found, HttpAnswer):
            return found
        session = found
        if isinstance(parsed, list) and session.protocol_version not in BATCH_VERSIONS:
            return _error(
                400, INVALID_REQUEST, "batches are not supported by this protocol revision"
            )
        if faults and drops_session(faults):
            self.sessions.close(caller.key_id, session.id)
            return _error(404, INVALID_REQUEST, "Session not found")
        requests = [m for m in messages if isinstance(m, Request)]
        outcomes: list[Outcome] = []
        if not requests:
            for one in messages:
                outcome = Outcome()
                await self.server.handle(caller, one, session, faults, outcome)
                outcomes.append(outcome)
            return HttpAnswer(202, outcomes=outcomes)
        sse = wants_sse and (self.config.answers == "sse" or not wants_json)
        answers: list[Message] = []
        for one in messages:
            outcome = Outcome()
            try:
                answer = await self.server.handle(caller, one, session, faults, outcome)
            except Exception:
                log.exception("MCP: handling %s failed", outcome.method or "a message")
                answer = (
                    Error(one.id, INTERNAL_ERROR, "Internal error")
                    if isinstance(one, Request)
                    else None
                )
            outcomes.append(outcome)
            if answer is not None:
                answers.append(answer)
        payload: Message | list[Message] = answers if isinstance(parsed, list) else answers[0]
        if sse:
            return HttpAnswer(
                200,
                {"content-type": SSE, "cache-control": "no-cache"},
                stream=_once(_event(payload), stream_delay(faults)),
                outcomes=outcomes,
            )
        return HttpAnswer(200, {"content-type": JSON}, dumps(payload), outcomes=outcomes)

    def _initialize(
        self, caller: Caller, request: Request, wants_json: bool, wants_sse: bool
    ) -> HttpAnswer:
        params = request.params or {}
        result = self.server.initialize(params)
        capabilities = params.get("capabilities")
        client_info = params.get("clientInfo")
        try:
            session = self.sessions.open(
                caller.key_id,
                result["protocolVersion"],
                capabilities if isinstance(capabilities, dict) else None,
                client_info if isinstance(client_info, dict) else None,
                tenant=caller.tenant,
            )
        except SessionsFull as exc:
            return _error(503, INTERNAL_ERROR, f"Service Unavailable: {exc}")
        answer = Response(request.id, result)
        headers = {SESSION_HEADER: session.id}
        if wants_sse and (self.config.answers == "sse" or not wants_json):
            headers.update({"content-type": SSE, "cache-control": "no-cache"})
            return HttpAnswer(200, headers, stream=_once(_event(answer), 0.0))
        return HttpAnswer(200, {**headers, "content-type": JSON}, dumps(answer))

    # -- GET -----------------------------------------------------------------------------

    async def get(
        self, caller: Caller, headers: Mapping[str, str], faults: Sequence[Fault] = ()
    ) -> HttpAnswer:
        refused = self._origin_refused(headers)
        if refused is not None:
            return refused
        if SSE not in headers.get("accept", ""):
            return _error(
                406, INVALID_REQUEST, "Not Acceptable: the GET stream is text/event-stream"
            )
        found = self._session(caller, headers)
        if isinstance(found, HttpAnswer):
            return found
        if found.streaming:
            return _error(409, INVALID_REQUEST, "Conflict: this session already has a GET stream")
        found.streaming = True
        return HttpAnswer(
            200,
            {"content-type": SSE, "cache-control": "no-cache"},
            stream=self._listen(found, stream_delay(faults)),
        )

    async def _listen(self, session: Session, delay: float) -> AsyncIterator[bytes]:
        try:
            yield b": stream open\n\n"
            while not session.outbound.closed:
                messages = await session.outbound.wait(KEEPALIVE_S)
                if not messages:
                    if not session.outbound.closed:
                        yield b": keep-alive\n\n"
                    continue
                for message in messages:
                    if delay:
                        await asyncio.sleep(delay)
                    yield _event(message)
        finally:
            session.streaming = False

    # -- DELETE --------------------------------------------------------------------------

    async def delete(self, caller: Caller, headers: Mapping[str, str]) -> HttpAnswer:
        refused = self._origin_refused(headers)
        if refused is not None:
            return refused
        session_id = headers.get(SESSION_HEADER)
        if not session_id:
            return _error(400, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        if not self.sessions.close(caller.key_id, session_id):
            return _error(404, INVALID_REQUEST, "Session not found")
        return HttpAnswer(200, {"content-type": JSON}, b"{}")


async def _once(chunk: bytes, delay: float) -> AsyncIterator[bytes]:
    if delay:
        await asyncio.sleep(delay)
    yield chunk
