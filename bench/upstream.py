"""A minimal, fast OpenAI-style upstream for the benchmark (uvloop + httptools).

`POST /v1/chat/completions` answers with a fixed `chat.completion` JSON, or, when the
body has `"stream": true`, with `STREAM_EVENTS` `chat.completion.chunk` SSE events and
`data: [DONE]`. Each event goes out in its own `transport.write()` followed by a yield
to the loop, the way a real provider trickles tokens: a gateway under test then sees
many small reads, not one pre-built blob that would flatter its per-event cost.

Run alone: `python bench/upstream.py --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections import deque
from typing import Any, NamedTuple, cast

import httptools
import uvloop

STREAM_EVENTS = 200
MODEL = "gpt-4o-mini"
CREATED = 1_700_000_000
CHAT_PATH = b"/v1/chat/completions"


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


#: The non-stream answer; `bench/run.py` also has nginx serve these exact bytes.
COMPLETION_BODY = _dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "I am fine, thank you!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
    }
)


def _chunk_event(index: int) -> bytes:
    """One SSE event shaped like OpenAI's: role first, an empty delta with the stop last."""
    last = index == STREAM_EVENTS - 1
    delta: dict[str, str] = {"role": "assistant"} if index == 0 else {}
    if not last:
        delta["content"] = f"tok{index} "
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": "stop" if last else None,
            }
        ],
    }
    return b"data: " + _dumps(chunk) + b"\n\n"


def _chunked(payload: bytes) -> bytes:
    """Frame `payload` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


#: Framed once at import: the per-event cost measured should be the gateway's, not ours.
FRAMED_EVENTS = tuple(_chunked(_chunk_event(i)) for i in range(STREAM_EVENTS))
FRAMED_DONE = _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def _head(status: bytes, content_type: bytes, framing: bytes, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\n%s%s\r\n" % (
        status,
        content_type,
        framing,
        connection,
    )


def _fixed(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    """A complete response with a content-length body."""
    framing = b"content-length: %d\r\n" % len(body)
    return _head(status, b"application/json", framing, keep_alive) + body


class Request(NamedTuple):
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool


def wants_stream(body: bytes) -> bool | None:
    """`stream` from a JSON body, or None when the body is not a JSON object."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    return payload.get("stream") is True


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered strictly in arrival order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.pending: deque[Request] = deque()
        self.streaming: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(_fixed(b"400 Bad Request", b"{}", keep_alive=False), keep_alive=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()  # unblocks a paused stream so it sees the closed transport

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- httptools callbacks -------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = httptools.parse_url(self.url).path
        request = Request(method, path, b"".join(self.body), self.parser.should_keep_alive())
        self.url, self.body = b"", []
        self.pending.append(request)
        self._serve_pending()

    # -- responses -----------------------------------------------------------------

    def _serve_pending(self) -> None:
        """Answer queued requests until one starts a stream (which resumes us when done)."""
        while self.pending and self.streaming is None:
            method, path, body, keep_alive = self.pending.popleft()
            stream = wants_stream(body)
            if method != b"POST" or path != CHAT_PATH:
                self._send(_fixed(b"404 Not Found", b"{}", keep_alive), keep_alive)
            elif stream is None:
                self._send(_fixed(b"400 Bad Request", b"{}", keep_alive), keep_alive)
            elif stream:
                self.streaming = asyncio.get_running_loop().create_task(self._stream(keep_alive))
            else:
                self._send(_fixed(b"200 OK", COMPLETION_BODY, keep_alive), keep_alive)

    def _send(self, response: bytes, keep_alive: bool) -> None:
        assert self.transport is not None
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()

    async def _stream(self, keep_alive: bool) -> None:
        transport = self.transport
        assert transport is not None
        framing = b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
        transport.write(_head(b"200 OK", b"text/event-stream", framing, keep_alive))
        for event in FRAMED_EVENTS:
            if transport.is_closing():
                return
            transport.write(event)
            await asyncio.sleep(0)
            if not self.writable.is_set():
                await self.writable.wait()
        self.streaming = None
        self._send(FRAMED_DONE, keep_alive)
        if keep_alive:
            self._serve_pending()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C when run by hand
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
