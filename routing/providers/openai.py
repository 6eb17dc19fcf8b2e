"""Relay to any OpenAI-compatible API (OpenAI, vLLM, llama.cpp, the built-in mock...).

The request body goes upstream as the client sent it except `model`, which becomes
the deployment's upstream model name. The response body comes back byte for byte,
`model` included: it names the model that actually answered, as OpenAI itself does
when it resolves an alias to a snapshot. The gateway reports the group and the
deployment in response headers instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import httpx
import orjson

from common.headers import DEPLOYMENT_EXTENSION, relayed_headers
from routing.call import Reply, UpstreamRequest
from routing.config import DeploymentConfig
from routing.http1 import Timeouts, head_lines, origin_of
from routing.outcomes import (
    Failure,
    UpstreamError,
    classify_status,
    error_object,
    parse_retry_after,
)
from routing.providers.base import attempt_limit
from routing.sse import STREAM_ENDS, EventRelay
from routing.transport import PoolTransport, SharedTransport

USER_AGENT = b"seawall/0.1"
#: Upstream error bodies are read up to this size; the rest is discarded.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: A provider's retry-after is honoured up to this many seconds.
RETRY_AFTER_CAP_SECONDS = 60.0
PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}


class OpenAICompatible:
    def __init__(self, config: DeploymentConfig, transport: httpx.AsyncBaseTransport) -> None:
        assert config.api_base is not None
        self.deployment_id = config.id
        self.model = config.model
        self.transport = transport
        base = config.api_base.rstrip("/")
        self._urls = {name: httpx.URL(base + path) for name, path in PATHS.items()}
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"user-agent", USER_AGENT),
        ]
        if config.api_key is not None:
            token = config.api_key.get_secret_value()
            headers.append((b"authorization", b"Bearer " + token.encode()))
        headers += [
            (k.lower().encode(), v.get_secret_value().encode()) for k, v in config.headers.items()
        ]
        host = httpx.URL(base).netloc
        self._headers = [(b"host", host), *headers]
        self._stream_headers = [*self._headers, (b"accept", b"text/event-stream")]
        t = config.timeouts
        self._total = t.total_ms / 1000
        connect = t.connect_ms / 1000
        # Non-stream: the whole answer is generated before the headers arrive, so the
        # read limit is the total. Stream: reads must not stall longer than ttft.
        self._timeouts = {
            "connect": connect,
            "read": self._total,
            "write": self._total,
            "pool": connect,
        }
        ttft = min(t.ttft_ms / 1000, self._total)
        self._stream_timeouts = {"connect": connect, "read": ttft, "write": ttft, "pool": connect}
        #: The pool itself when nothing is stacked on it (no chaos layer, no tracing):
        #: then requests skip httpx's Request and Response (routing/transport.py),
        #: and their heads are made from templates written here, once.
        self._pool: PoolTransport | None = (
            transport.pool if isinstance(transport, SharedTransport) else None
        )
        if self._pool is not None:
            self._origin = origin_of(self._urls["chat"])
            self._heads = {
                (name, stream): head_lines(
                    b"POST", url.raw_path, self._stream_headers if stream else self._headers
                )
                + b"content-length: "
                for name, url in self._urls.items()
                for stream in (False, True)
            }
            # No read timer for a non-stream answer: its read limit is the total, and
            # the attempt's own deadline (`send`) already bounds it from before the
            # first byte was written, so the timer could never fire first (a loop
            # timer set and cancelled is ~3 µs a request on uvloop).
            self._direct_timeouts = Timeouts(connect, None, connect)
            self._direct_stream_timeouts = Timeouts(connect, ttft, connect)

    async def start(self) -> None:
        """Nothing to open ahead: the pool connects on a deployment's first request."""

    async def aclose(self) -> None:
        await self.transport.aclose()

    def _content(self, request: UpstreamRequest) -> bytes:
        """The client's body with the deployment's model, serialized."""
        body = dict(request.body)
        body["model"] = self.model
        return orjson.dumps(body)

    def _build(self, request: UpstreamRequest) -> httpx.Request:
        extensions: dict[str, Any] = {
            "timeout": self._stream_timeouts if request.stream else self._timeouts,
            DEPLOYMENT_EXTENSION: self.deployment_id,
        }
        if request.extensions:
            extensions.update(request.extensions)
        content = self._content(request)
        headers = self._stream_headers if request.stream else self._headers
        # stream= instead of content=: httpx then skips its body encoding and header
        # defaults (measured: 8.3 -> ~3 us a request); host and content-length are
        # set here, so the request stays complete for any transport.
        return httpx.Request(
            "POST",
            self._urls[request.endpoint],
            headers=[*headers, (b"content-length", str(len(content)).encode())],
            stream=httpx.ByteStream(content),
            extensions=extensions,
        )

    async def send(self, request: UpstreamRequest, deadline: float | None = None) -> Reply:
        limit, by_deadline = attempt_limit(self.deployment_id, self._total, deadline)
        if request.stream:
            return await self._send_stream(request, time.monotonic() + limit, by_deadline)
        answer: Answer | None = None
        try:
            async with asyncio.timeout(limit):
                answer = await self._open(request)
                if answer.status >= 400:
                    raise await self._http_error(answer)
                raw = await answer.read()
        except UpstreamError:
            raise
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_error(exc, by_deadline) from exc
        finally:
            if answer is not None:
                await answer.close()
        return self._reply(answer.status, raw, answer.raw_headers)

    async def _open(self, request: UpstreamRequest) -> Answer:
        """POSTs the request upstream: on the bare pool when nothing is stacked on the
        transport (no httpx objects), else through the transport's httpx interface."""
        pool = self._pool
        if pool is None:
            return HttpxAnswer(await self.transport.handle_async_request(self._build(request)))
        content = self._content(request)
        stream = request.stream
        head = self._heads[request.endpoint, stream] + b"%d\r\n\r\n" % len(content)
        timeouts = self._direct_stream_timeouts if stream else self._direct_timeouts
        return await pool.post(self._origin, head, content, timeouts)

    def _reply(self, status: int, raw: bytes, raw_headers: Sequence[tuple[bytes, bytes]]) -> Reply:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                Failure.BAD_RESPONSE, self.deployment_id, "upstream returned invalid JSON"
            ) from None
        if not isinstance(data, dict):
            raise UpstreamError(
                Failure.BAD_RESPONSE, self.deployment_id, "upstream returned a non-object JSON body"
            )
        return Reply(self.deployment_id, status, raw, data, headers=relayed_headers(raw_headers))

    async def _send_stream(
        self, request: UpstreamRequest, deadline: float, by_deadline: bool
    ) -> Reply:
        answer: Answer | None = None
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                answer = await self._open(request)
                if answer.status >= 400:
                    raise await self._http_error(answer)
                self._check_event_stream(answer.content_type)
                relay = EventRelay(
                    self.deployment_id,
                    answer.chunks(),
                    deadline,
                    by_deadline,
                    STREAM_ENDS[request.endpoint],
                )
                first = await relay.first()
        except UpstreamError:
            if answer is not None:
                await answer.close()
            raise
        except (TimeoutError, httpx.HTTPError) as exc:
            if answer is not None:
                await answer.close()
            raise self._transport_error(exc, by_deadline) from exc
        return Reply(
            self.deployment_id,
            answer.status,
            events=_prepend(first, relay),
            close=answer.close,
            headers=relayed_headers(answer.raw_headers),
        )

    def _check_event_stream(self, content_type: str) -> None:
        if not content_type.startswith("text/event-stream"):
            raise UpstreamError(
                Failure.BAD_RESPONSE,
                self.deployment_id,
                f"upstream answered a stream request with content-type {content_type!r}",
            )

    async def _http_error(self, answer: Answer) -> UpstreamError:
        raw = b""
        try:
            async for chunk in answer.chunks():
                raw += chunk
                if len(raw) > MAX_ERROR_BODY_BYTES:
                    break
        except (httpx.HTTPError, httpx.StreamError):
            pass  # the status alone still classifies the failure
        error = error_object(raw)
        status, raw_headers = answer.status, answer.raw_headers
        failure = classify_status(status, error)
        detail = (error or {}).get("message") or raw[:200].decode("utf-8", "replace").strip()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        return UpstreamError(
            failure,
            self.deployment_id,
            f"upstream returned HTTP {status}" + (f": {detail}" if detail else ""),
            status=status,
            retry_after=parse_retry_after(headers, RETRY_AFTER_CAP_SECONDS),
            error_body=error,
            headers=relayed_headers(raw_headers),
        )

    def _transport_error(self, exc: BaseException, by_deadline: bool) -> UpstreamError:
        if by_deadline and isinstance(exc, TimeoutError):
            return UpstreamError(Failure.DEADLINE, self.deployment_id, "request deadline exceeded")
        if isinstance(exc, httpx.ConnectTimeout):
            return UpstreamError(Failure.TIMEOUT, self.deployment_id, "connect timeout")
        if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
            return UpstreamError(Failure.TIMEOUT, self.deployment_id, "upstream timed out")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamError(Failure.CONNECT, self.deployment_id, f"cannot connect: {exc}")
        return UpstreamError(Failure.BAD_RESPONSE, self.deployment_id, f"broken response: {exc}")


class Answer(Protocol):
    """An upstream response as the provider reads it, whichever client made it: the
    bare pool's `routing.http1.Response`, or an `HttpxAnswer`."""

    status: int

    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    @property
    def content_type(self) -> str: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body in the chunks it arrives in; failures as httpx's exceptions."""
        ...

    async def read(self) -> bytes: ...

    async def close(self) -> None:
        """Releases the connection: reused if the body was read to its end, else closed
        (which tells the provider to stop)."""
        ...


class HttpxAnswer:
    """An `httpx.Response` from a transport with layers on it (chaos, tracing)."""

    __slots__ = ("raw_headers", "response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.raw_headers: Sequence[tuple[bytes, bytes]] = response.headers.raw

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    def chunks(self) -> AsyncIterator[bytes]:
        """Identity-encoded bodies are read straight from the transport's stream:
        httpx's own iterators (decoder selection, chunker, context managers) cost
        microseconds per chunk that a relay does not need; encoded bodies still go
        through them, to be decoded."""
        response = self.response
        encoding = response.headers.get("content-encoding")
        plain = not encoding or encoding == "identity"
        if plain and isinstance(response.stream, httpx.AsyncByteStream):
            return response.stream.__aiter__()
        return response.aiter_bytes()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def close(self) -> None:
        await self.response.aclose()


async def _prepend(first: bytes, rest: EventRelay) -> Any:
    yield first
    async for events in rest:
        yield events
