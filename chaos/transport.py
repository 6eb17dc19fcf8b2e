"""The chaos transport: faults injected at the wire, beneath routing.

It wraps the real transport of each deployment (and of tool endpoints). A
request whose extensions carry a chaos plan may meet a fault here; everything
above (providers, retries, breakers, the relay, tool checks) then sees exactly
what a real failure looks like: the same httpx exceptions with the messages an
operating system gives, provider-shaped error bodies, broken bytes. Delays honour
the request's read timeout the way a socket would: past it, `httpx.ReadTimeout`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from chaos.bodies import anthropic_error, openai_error
from chaos.faults import FaultSpec
from chaos.forge import forge_reply, forge_result, forged_call, forged_call_events
from chaos.plan import ChaosPlan
from common.headers import DEPLOYMENT_EXTENSION, PLAN_EXTENSION, TOOL_EXTENSION
from routing.mock.transport import wait_or_time_out
from routing.sse import split_complete

CONNECT_ERRORS = {
    "connect_refused": "[Errno 111] Connection refused",
    "tls_error": "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
    "self-signed certificate in certificate chain",
    "dns_error": "[Errno -2] Name or service not known",
}
HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
)


def where_of(request: httpx.Request) -> str | None:
    deployment = request.extensions.get(DEPLOYMENT_EXTENSION)
    if deployment is not None:
        return str(deployment)
    tool = request.extensions.get(TOOL_EXTENSION)
    return None if tool is None else f"tool:{tool}"


def error_response(spec: FaultSpec, model: str = "") -> httpx.Response:
    """An error answer shaped like the provider's own (OpenAI or Anthropic)."""
    status = int(spec.param("status"))
    shape = anthropic_error if spec.param("style") == "anthropic" else openai_error
    body = shape(status, model)
    headers = {"content-type": "application/json"}
    if spec.param("retry_after") is not None:
        headers["retry-after"] = f"{spec.param('retry_after'):g}"
    if spec.param("retry_after_ms") is not None:
        headers["retry-after-ms"] = str(spec.param("retry_after_ms"))
    return httpx.Response(status, headers=headers, content=orjson.dumps(body))


CONTEXT_LENGTH_BODY = orjson.dumps(
    {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your "
            "messages resulted in 9000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes], upstream: httpx.Response | None) -> None:
        self._chunks = chunks
        self._upstream = upstream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()


class Injection:
    """The faults hitting one call, applied before, instead of, or after it."""

    def __init__(self, request: httpx.Request, faults: list[FaultSpec], where: str) -> None:
        self.request = request
        self.faults = {f.name: f for f in faults}
        self.where = where
        timeouts = request.extensions.get("timeout", {})
        self.read_timeout: float | None = timeouts.get("read")
        self.connect_timeout: float = timeouts.get("connect") or 2.0
        self.rng = random.Random(next(iter(faults)).seed)

    def ms(self, name: str) -> float:
        return float(self.faults[name].param("ms")) / 1000

    async def run(self, inner: httpx.AsyncBaseTransport) -> httpx.Response:
        await self._before()
        if "http_error" in self.faults:
            model = str(self._request_body().get("model") or "")
            return self._answer(error_response(self.faults["http_error"], model))
        if "context_length" in self.faults:
            headers = {"content-type": "application/json"}
            return self._answer(httpx.Response(400, headers=headers, content=CONTEXT_LENGTH_BODY))
        response = await inner.handle_async_request(self.request)
        if response.status_code >= 400:
            return response
        is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
        if is_stream and "wrong_content_type" not in self.faults:
            return self._relay(response, self._events(response))
        return await self._body(response)

    async def _before(self) -> None:
        if "latency" in self.faults:
            spec = self.faults["latency"]
            jitter = float(spec.param("jitter_ms")) / 1000
            delay = max(0.0, self.ms("latency") + self.rng.uniform(-jitter, jitter))
            await wait_or_time_out(delay, self.read_timeout)
        for name, message in CONNECT_ERRORS.items():
            if name in self.faults:
                raise httpx.ConnectError(message, request=self.request)
        if "connect_timeout" in self.faults:
            await wait_or_time_out(self.connect_timeout, None)
            raise httpx.ConnectTimeout("timed out", request=self.request)

    def _answer(self, response: httpx.Response) -> httpx.Response:
        response.request = self.request
        return response

    def _relay(
        self, upstream: httpx.Response, chunks: AsyncIterator[bytes], **headers: str
    ) -> httpx.Response:
        replaced = {"content-length", "content-encoding", *headers}
        kept = [(k, v) for k, v in upstream.headers.items() if k not in replaced]
        kept += list(headers.items())
        return httpx.Response(
            upstream.status_code,
            headers=kept,
            stream=_Stream(chunks, upstream),
            request=self.request,
        )

    # -- plain (JSON) bodies -------------------------------------------------------

    async def _body(self, response: httpx.Response) -> httpx.Response:
        raw = await response.aread()
        content_type = response.headers.get("content-type", "application/json")
        raw = self._rewrite_json(raw)
        if "invalid_json" in self.faults:
            raw = raw[: max(1, len(raw) // 2)]  # complete as sent, but not JSON
        if "wrong_content_type" in self.faults:
            raw, content_type = HTML_PAGE, "text/html; charset=utf-8"
        return self._relay(response, self._body_chunks(raw), **{"content-type": content_type})

    def _rewrite_json(self, raw: bytes) -> bytes:
        tool_fault = self.faults.get("forge_tool")
        if tool_fault is not None and self.where.startswith("tool:"):
            return forge_result(raw.decode("utf-8", "replace"), tool_fault.param("mode")).encode()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(data, dict):
            return raw
        call_fault = self.faults.get("forge_tool_call")
        if call_fault is not None:
            call = forged_call(
                self._request_body(), call_fault.param("mode"), call_fault.param("tool")
            )
            data = forge_reply(data, call)
        for choice in data.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                self._rewrite_message(choice, message)
        return orjson.dumps(data)

    def _rewrite_message(self, choice: dict[str, Any], message: dict[str, Any]) -> None:
        content = message.get("content")
        if "finish_length" in self.faults and isinstance(content, str):
            message["content"] = content[: len(content) // 2]
            choice["finish_reason"] = "length"
        if "finish_content_filter" in self.faults:
            message["content"] = ""
            choice["finish_reason"] = "content_filter"
        if "empty_content" in self.faults and content is not None:
            message["content"] = ""

    async def _body_chunks(self, raw: bytes) -> AsyncIterator[bytes]:
        if "slow_ttft" in self.faults:
            await wait_or_time_out(self.ms("slow_ttft"), self.read_timeout)
        half = max(1, len(raw) // 2)
        if "stall" in self.faults:
            yield raw[:half]
            await wait_or_time_out(self.ms("stall"), self.read_timeout)
            raw = raw[half:]
        if "reset" in self.faults:
            yield raw[: int(self.faults["reset"].param("after_bytes"))]
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=self.request)
        if "truncated" in self.faults:
            yield raw[:half]
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=self.request
            )
        yield raw

    # -- SSE streams -----------------------------------------------------------------

    def _request_body(self) -> dict[str, Any]:
        """The upstream request's JSON body. Providers send it as a `ByteStream`
        (not `content=`, to skip httpx's encoding), which `.content` refuses
        until read: its bytes are right there, so read them without consuming."""
        stream = self.request.stream
        try:
            raw = self.request.content
        except httpx.RequestNotRead:
            if not isinstance(stream, httpx.ByteStream):
                return {}
            raw = b"".join(stream)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}

    async def _events(self, response: httpx.Response) -> AsyncIterator[bytes]:
        call_fault = self.faults.get("forge_tool_call")
        if call_fault is not None:
            call = forged_call(
                self._request_body(), call_fault.param("mode"), call_fault.param("tool")
            )
            for event in forged_call_events(call, str(self._request_body().get("model", ""))):
                yield event
            return
        sent_events = sent_bytes = 0
        tail = b""
        first = True
        broken = False  # invalid_json: one event's JSON, once
        async for chunk in response.aiter_bytes():
            if first and "slow_ttft" in self.faults:
                await wait_or_time_out(self.ms("slow_ttft"), self.read_timeout)
            elif not first and "slow_chunks" in self.faults:
                await wait_or_time_out(self.ms("slow_chunks"), self.read_timeout)
            first = False
            complete, tail = split_complete(tail + chunk)
            for event in _events_of(complete):
                if sent_events == 1 and "stall" in self.faults:
                    await wait_or_time_out(self.ms("stall"), self.read_timeout)
                if "stream_cut" in self.faults and sent_events >= int(
                    self.faults["stream_cut"].param("after_events")
                ):
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body",
                        request=self.request,
                    )
                if sent_events == 2 and "sse_truncated" in self.faults:
                    yield event[: len(event) // 2]  # half an event, then a clean close
                    return
                if sent_events == 2 and "truncated" in self.faults:
                    yield event[: len(event) // 2]  # half an event, then the connection drops
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body",
                        request=self.request,
                    )
                if "reset" in self.faults:
                    budget = int(self.faults["reset"].param("after_bytes")) - sent_bytes
                    if budget < len(event):
                        yield event[: max(0, budget)]
                        raise httpx.ReadError(
                            "[Errno 104] Connection reset by peer", request=self.request
                        )
                event, last = self._rewrite_event(event)
                if "invalid_json" in self.faults and not broken and sent_events >= 1:
                    event, broken = _break_json(event)
                yield event
                if last:
                    return
                sent_bytes += len(event)
                sent_events += 1
                if "sse_duplicate" in self.faults and sent_events == 2:
                    yield event  # the second event, twice
        if tail:
            yield tail

    def _rewrite_event(self, event: bytes) -> tuple[bytes, bool]:
        """Semantic faults on one `data:` event; True when the stream ends with it."""
        semantic = ("finish_length", "finish_content_filter", "empty_content")
        if not any(name in self.faults for name in semantic) or not event.startswith(b"data: {"):
            return event, False
        data = orjson.loads(event[len(b"data: ") :])
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") and (
                "finish_content_filter" in self.faults or "empty_content" in self.faults
            ):
                delta["content"] = ""
            if choice.get("finish_reason") and "finish_content_filter" in self.faults:
                choice["finish_reason"] = "content_filter"
            if "finish_length" in self.faults and delta.get("content"):
                choice["finish_reason"] = "length"  # cut off after the first words
                return b"data: " + orjson.dumps(data) + b"\n\ndata: [DONE]\n\n", True
        return b"data: " + orjson.dumps(data) + b"\n\n", False


def _break_json(event: bytes) -> tuple[bytes, bool]:
    """`invalid_json` on a stream: a `data:` event whose JSON stops halfway, framed
    as a complete event, as a provider serializing a chunk badly would send it.
    The first event is left alone (the stream has started for real) and so is any
    event that is not JSON (`[DONE]`); True once an event was broken."""
    if not event.startswith(b"data: {"):
        return event, False
    payload = event[len(b"data: ") :].rstrip(b"\r\n")
    return b"data: " + payload[: len(payload) // 2] + b"\n\n", True


def _events_of(complete: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in complete.replace(b"\r\n", b"\n").split(b"\n\n") if part]


class ChaosTransport(httpx.AsyncBaseTransport):
    """Wraps a real transport; injects the faults of the request's chaos plan."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan: ChaosPlan | None = request.extensions.get(PLAN_EXTENSION)
        where = where_of(request) if plan is not None else None
        if plan is None or where is None:
            return await self.inner.handle_async_request(request)
        faults = plan.firing(where)
        if not faults:
            return await self.inner.handle_async_request(request)
        return await Injection(request, faults, where).run(self.inner)

    async def aclose(self) -> None:
        await self.inner.aclose()
