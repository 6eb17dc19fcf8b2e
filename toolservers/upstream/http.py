"""The Streamable HTTP connector: the gateway as an MCP client of a remote server.

As the 2025-03-26..2025-11-25 revisions define it (and the official SDKs' servers
implement it): every message is a POST to the server's MCP endpoint, accepting
`application/json` and `text/event-stream`; the `initialize` answer may carry an
`Mcp-Session-Id`, sent back on every later request with `MCP-Protocol-Version`;
a request is answered with one JSON body, or an SSE stream carrying notifications
(and, rarely, server requests) before the response; a notification is answered 202.

- **Sessions**: the handshake runs lazily, once (a lock), on first use. A 404 to a
  request carrying the session id means the server dropped the session: the
  connector makes a new one and sends the request again, once.
- **Server-to-client messages**: when the server's capabilities announce
  `listChanged`, a GET stream is kept open (re-opened with backoff when it ends;
  a 405 means the server offers none) and its notifications go to
  `on_notification`. Notifications on a POST's stream go to that call's handler.
  Server requests are answered (`ping`) or refused (sampling, elicitation, roots:
  base.py).
- **Bounds**: every call has a deadline (`asyncio.timeout`, covering connect,
  handshake and answer); a body or SSE event over `max_message_bytes` is refused.
  A timed-out request is followed by `notifications/cancelled`, best effort.
- **Close**: DELETE with the session id (best effort, `timeout_ms`), as the spec asks.
- **Pool**: any `httpx.AsyncBaseTransport`; the gateway passes its pooled HTTP/1.1
  transport (routing/transport.py), tests plain httpx. A transport passed in is
  shared and not closed here.

Not done: resuming a broken POST stream with `Last-Event-ID` (the call fails as
`ServerDown` and is retried only when the tool is idempotent or read-only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx

from toolservers.config import HttpServer
from toolservers.jsonrpc import (
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
from toolservers.upstream.base import (
    NotificationHandler,
    ProtocolViolation,
    RemoteError,
    ServerDown,
    ServerTimeout,
    UpstreamError,
    check_initialize,
    initialize_params,
    log,
    refuse_server_request,
)
from toolservers.upstream.sse import EventTooLarge, events

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
ACCEPT = "application/json, text/event-stream"
#: Backoff of the GET stream's reconnections, seconds.
LISTEN_BACKOFF = (0.5, 30.0)


class _SessionGone(Exception):
    """404 with our session id: the server forgot the session."""


class HttpConnection:
    def __init__(
        self, config: HttpServer, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self._shared = transport is not None
        self._transport = transport or httpx.AsyncHTTPTransport()
        self._client = httpx.AsyncClient(
            transport=self._transport, timeout=config.timeout_ms / 1000, follow_redirects=False
        )
        #: Parsed once: every request goes to this one URL.
        self._url = httpx.URL(config.url)
        self._timeouts = httpx.Timeout(config.timeout_ms / 1000).as_dict()
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._limits = Limits(max_bytes=config.max_message_bytes, max_depth=512)
        self._ids = itertools.count(1)
        self._handshake_lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.initialize_result: dict[str, Any] | None = None
        self.on_notification: NotificationHandler | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connects and shakes hands now (otherwise the first request does)."""
        try:
            async with asyncio.timeout(self.config.timeout_ms / 1000):
                await self._ensure()
        except TimeoutError:
            raise self._timeout("connecting") from None

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        for task in list(self._tasks):
            task.cancel()
        if self.session_id is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.timeout_ms / 1000):
                    await self._client.delete(self.config.url, headers=self._request_headers())
        self.session_id = None
        if not self._shared:
            await self._client.aclose()

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        limit_s: float,
        on_notification: NotificationHandler | None = None,
    ) -> dict[str, Any]:
        request_id: int | None = None
        try:
            async with asyncio.timeout(limit_s):
                await self._ensure()
                request_id = next(self._ids)
                request = Request(request_id, method, params)
                try:
                    return await self._exchange(request, on_notification)
                except _SessionGone:
                    log.info("MCP server %r dropped its session: starting a new one", self.name)
                    self._forget_session()
                    await self._ensure()
                    return await self._exchange(request, on_notification)
        except TimeoutError:
            if request_id is not None:
                self._spawn(self._cancel(request_id))
            raise self._timeout(f"'{method[:64]}'", limit_s) from None

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._post_message(Notification(method, params))

    # -- the handshake -------------------------------------------------------------------

    async def _ensure(self) -> None:
        if self.initialize_result is not None:
            return
        async with self._handshake_lock:
            if self.initialize_result is not None:
                return
            if self._closed:
                raise ServerDown(f"MCP server '{self.name}' connection is closed")
            request = Request(next(self._ids), "initialize", initialize_params())
            result = await self._exchange(request, None, handshake=True)
            self.protocol_version = check_initialize(self.name, result)
            self.initialize_result = result
            await self._post_message(Notification("notifications/initialized"))
            if _announces_list_changes(result) and self._listener is None:
                self._listener = asyncio.create_task(self._listen())

    def _forget_session(self) -> None:
        self.session_id = None
        self.protocol_version = None
        self.initialize_result = None

    def _request_headers(self, accept: str = ACCEPT) -> dict[str, str]:
        headers = {**self._headers, "accept": accept}
        if self.session_id is not None:
            headers[SESSION_HEADER] = self.session_id
        if self.protocol_version is not None:
            headers[VERSION_HEADER] = self.protocol_version
        return headers

    # -- one POST --------------------------------------------------------------------------

    async def _exchange(
        self, request: Request, on_notification: NotificationHandler | None, handshake: bool = False
    ) -> dict[str, Any]:
        response = await self._send(self._post(dumps(request)))
        try:
            if handshake:
                session = response.headers.get(SESSION_HEADER)
                if session is not None and response.status_code < 400:
                    if not (session.isascii() and session.isprintable() and " " not in session):
                        raise ProtocolViolation(
                            f"MCP server '{self.name}' sent an invalid session id"
                        )
                    self.session_id = session
            if response.status_code == 404 and self.session_id is not None and not handshake:
                raise _SessionGone
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code >= 400:
                raise await self._http_error(response, kind)
            if kind == "application/json":
                answer = self._message(await self._read(response))
                return self._result(request, answer)
            if kind == "text/event-stream":
                return await self._from_stream(request, response, on_notification)
            raise ProtocolViolation(
                f"MCP server '{self.name}' answered with content-type {kind[:64]!r}"
            )
        finally:
            await response.aclose()

    def _post(self, content: bytes) -> httpx.Request:
        headers = {**self._request_headers(), "content-type": "application/json"}
        return httpx.Request(
            "POST", self._url, headers=headers, content=content,
            extensions={"timeout": self._timeouts},
        )  # fmt: skip

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """The request, straight to the transport (streamed: the caller reads and closes
        the response). Not through `AsyncClient.send`: its auth, redirect and cookie
        handling do nothing here (no auth flow, no redirects followed, no cookies kept
        between calls) and cost ~11% of the gateway's CPU per `tools/call`
        (docs/performance.md)."""
        try:
            return await self._transport.handle_async_request(request)
        except httpx.TimeoutException:
            raise self._timeout("connecting") from None
        except httpx.TransportError as exc:
            log.warning("MCP server %r (%r): %s", self.name, self.config.url, exc)
            raise ServerDown(f"MCP server '{self.name}' cannot be reached") from None

    async def _read(self, response: httpx.Response) -> bytes:
        limit = self.config.max_message_bytes
        body = b""
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ProtocolViolation(
                        f"MCP server '{self.name}' sent a message larger than {limit} bytes"
                    )
        except httpx.TimeoutException:
            raise self._timeout("answering") from None
        except httpx.TransportError:
            raise ServerDown(f"MCP server '{self.name}' broke the connection") from None
        return body

    async def _http_error(self, response: httpx.Response, kind: str) -> UpstreamError:
        status = response.status_code
        if kind == "application/json":
            with contextlib.suppress(UpstreamError, ParseFailure):
                answer = parse(await self._read(response), self._limits)
                if isinstance(answer, Error):
                    return RemoteError(answer.code, answer.message, answer.data)
        if status in (401, 403):
            return RemoteError(
                -32000,
                f"MCP server '{self.name}' refused the gateway's credentials (HTTP {status})",
            )
        if status >= 500 or status == 429:
            return ServerDown(f"MCP server '{self.name}' answered HTTP {status}")
        return ProtocolViolation(f"MCP server '{self.name}' answered HTTP {status}")

    def _message(self, raw: bytes) -> Message:
        try:
            answer = parse(raw, self._limits)
        except ParseFailure as exc:
            raise ProtocolViolation(
                f"MCP server '{self.name}' sent an invalid message: {exc}"
            ) from None
        if isinstance(answer, list):
            raise ProtocolViolation(f"MCP server '{self.name}' answered with a batch")
        return answer

    def _result(self, request: Request, answer: Message) -> dict[str, Any]:
        if isinstance(answer, Response) and answer.id == request.id:
            return answer.result
        if isinstance(answer, Error) and answer.id in (request.id, None):
            raise RemoteError(answer.code, answer.message, answer.data)
        raise ProtocolViolation(f"MCP server '{self.name}' answered another request")

    async def _from_stream(
        self,
        request: Request,
        response: httpx.Response,
        on_notification: NotificationHandler | None,
    ) -> dict[str, Any]:
        try:
            async for event in events(_raw(response), self.config.max_message_bytes):
                if not event.data.strip():
                    continue  # the priming event of a resumable stream
                answer = self._message(event.data.encode())
                if isinstance(answer, (Response, Error)) and (
                    answer.id == request.id or (isinstance(answer, Error) and answer.id is None)
                ):
                    return self._result(request, answer)
                self._dispatch(answer, on_notification)
        except EventTooLarge:
            raise ProtocolViolation(
                f"MCP server '{self.name}' sent an event larger than "
                f"{self.config.max_message_bytes} bytes"
            ) from None
        except httpx.TimeoutException:
            raise self._timeout("answering") from None
        except httpx.TransportError:
            raise ServerDown(
                f"MCP server '{self.name}' broke the stream before answering"
            ) from None
        raise ServerDown(f"MCP server '{self.name}' ended the stream before answering")

    def _dispatch(self, answer: Message, on_notification: NotificationHandler | None) -> None:
        if isinstance(answer, Notification):
            handler = on_notification or self.on_notification
            if handler is not None:
                handler(answer)
        elif isinstance(answer, Request):
            self._spawn(self._post_message(refuse_server_request(answer)))

    async def _post_message(self, outgoing: Message) -> None:
        """A notification or response to the server: answered 202, nothing to read."""
        response = await self._send(self._post(dumps(outgoing)))
        await response.aclose()
        if response.status_code >= 400:
            log.info("MCP server %r refused a message: HTTP %s", self.name, response.status_code)

    async def _cancel(self, request_id: int) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.timeout_ms / 1000):
                await self.notify(
                    "notifications/cancelled",
                    {"requestId": request_id, "reason": "the gateway's deadline passed"},
                )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _timeout(self, what: str, seconds: float | None = None) -> ServerTimeout:
        ms = round((seconds if seconds is not None else self.config.timeout_ms / 1000) * 1000)
        return ServerTimeout(f"MCP server '{self.name}' did not answer {what} within {ms} ms")

    # -- the GET stream ----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Keeps a GET stream open for the server's notifications; re-opens it with
        backoff when it ends; stops on 405 (none offered) or when closed."""
        delay = LISTEN_BACKOFF[0]
        while not self._closed:
            try:
                if not await self._listen_once():
                    return
                delay = LISTEN_BACKOFF[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream broke: try again later
                log.debug("MCP server %r: GET stream ended: %s", self.name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_BACKOFF[1])

    async def _listen_once(self) -> bool:
        """One GET stream; False when the server offers none (or forgot the session)."""
        if self.initialize_result is None:
            return False
        timeout = httpx.Timeout(self.config.timeout_ms / 1000, read=None)
        request = self._client.build_request(
            "GET",
            self.config.url,
            headers=self._request_headers("text/event-stream"),
            timeout=timeout,
        )
        response = await self._send(request)
        try:
            if response.status_code in (404, 405):
                return False
            if response.status_code >= 400:
                return True
            async for event in events(_raw(response), self.config.max_message_bytes):
                if event.data.strip():
                    with contextlib.suppress(ProtocolViolation):
                        self._dispatch(self._message(event.data.encode()), None)
        finally:
            await response.aclose()
        return True


def _announces_list_changes(result: dict[str, Any]) -> bool:
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict):
        return False
    return any(
        isinstance(capabilities.get(kind), dict) and capabilities[kind].get("listChanged")
        for kind in ("tools", "prompts", "resources")
    )


async def _raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body decoded (a server may compress it), chunk by chunk."""
    async for chunk in response.aiter_bytes():
        yield chunk
