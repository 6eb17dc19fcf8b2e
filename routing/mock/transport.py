"""The mock LLM behind an httpx transport.

A `mock` deployment is an OpenAI-compatible deployment whose "network" is this
transport, so routing, timeouts and the chaos layer treat it exactly like a remote
provider. It honours the request's read timeout the way a socket would: a reply
slower than the limit ends in `httpx.ReadTimeout`, not in a late answer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import httpx
import orjson

from routing.config import MockSettings
from routing.mock.errors import MockError
from routing.mock.llm import MockLLM
from routing.mock.responses import MockResponses
from routing.tokens import load_encoding

T = TypeVar("T")

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def wait_or_time_out(delay: float, read_timeout: float | None) -> None:
    if read_timeout is not None and delay > read_timeout:
        await asyncio.sleep(read_timeout)
        raise httpx.ReadTimeout("mock upstream did not answer within the read timeout")
    if delay > 0:
        await asyncio.sleep(delay)


class MockEventStream(httpx.AsyncByteStream):
    def __init__(self, chunks: Iterator[dict[str, Any]], delay: float, read_timeout: float | None):
        self._chunks = chunks
        self._delay = delay
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index:
                await wait_or_time_out(self._delay, self._read_timeout)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"


class MockByteStream(httpx.AsyncByteStream):
    """Already encoded SSE events (the Responses mode's), one write each."""

    def __init__(self, events: Iterator[bytes], delay: float, read_timeout: float | None):
        self._events = events
        self._delay = delay
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, events in enumerate(self._events):
            if index:
                await wait_or_time_out(self._delay, self._read_timeout)
            if events:
                yield events


def _json(status: int, payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, headers=JSON_HEADERS, content=orjson.dumps(payload))


class MockTransport(httpx.AsyncBaseTransport):
    def __init__(self, model: str, settings: MockSettings) -> None:
        self.llm = MockLLM(model, settings)
        #: `POST /responses`: the same model in Responses mode (routing/mock/responses.py).
        self.responses = MockResponses(self.llm)
        self.settings = settings
        # Seeded: a given error_rate fails the same calls on every run.
        self._rng = random.Random(settings.seed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        path = request.url.path
        if request.method == "GET" and path.endswith("/models"):
            return _json(200, {"object": "list", "data": [_model_card(self.llm.model)]})
        if request.method != "POST":
            return _json(405, _error("method not allowed"))
        try:
            body = orjson.loads(await request.aread())
        except orjson.JSONDecodeError:
            return _json(400, _error("request body is not valid JSON"))
        if not isinstance(body, dict):
            return _json(400, _error("request body must be a JSON object"))
        await wait_or_time_out(self.settings.latency_ms / 1000, read_timeout)
        await load_encoding(self.llm.model)  # loaded already when a Runtime started it
        if self.settings.error_rate and self._rng.random() < self.settings.error_rate:
            return _json(503, _error("mock upstream error (error_rate)", kind="server_error"))
        try:
            if path.endswith("/chat/completions"):
                if body.get("stream") is True:
                    chunks = self.llm.chat_chunks(body)
                    first = next(chunks)  # validate the request before committing to 200
                    stream = MockEventStream(
                        _chain(first, chunks), self.settings.chunk_delay_ms / 1000, read_timeout
                    )
                    return httpx.Response(200, headers=SSE_HEADERS, stream=stream)
                return _json(200, self.llm.chat(body))
            if path.endswith("/embeddings"):
                return _json(200, self.llm.embeddings(body))
            if path.endswith("/responses"):
                if body.get("stream") is True:
                    events = self.responses.events(body)
                    start = next(events)  # validate the request before committing to 200
                    encoded = MockByteStream(
                        _chain(start, events), self.settings.chunk_delay_ms / 1000, read_timeout
                    )
                    return httpx.Response(200, headers=SSE_HEADERS, stream=encoded)
                return _json(200, self.responses.respond(body))
        except MockError as exc:
            return _json(exc.status, {"error": exc.error})
        return _json(404, _error(f"unknown path {path}"))


def _chain(first: T, rest: Iterator[T]) -> Iterator[T]:
    yield first
    yield from rest


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "seawall-mock"}
