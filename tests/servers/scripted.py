"""An OpenAI-compatible upstream whose every answer a test scripts.

Runs as a real server (see `tests.support.ServerThread`) and counts the calls it
gets, so tests can assert exact retry and failover behaviour over real sockets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Answer:
    """One scripted response.

    `events`: SSE data payloads (dicts, or raw strings) sent as a stream, each in its
    own write; `cut_after`: drop the connection after that many events;
    `done`: send the final `data: [DONE]`; `delay`: seconds before the headers.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] | None = None
    cut_after: int | None = None
    done: bool = True
    delay: float = 0.0
    event_delay: float = 0.0
    raw: bytes | None = None
    content_type: str | None = None


def chat_body(text: str = "scripted reply", model: str = "scripted-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    return _delta({} if content is None else {"content": content}, finish)


def text_events(words: list[str]) -> list[Any]:
    return [chunk(w) for w in words] + [chunk(finish="stop")]


def error_body(message: str, kind: str = "server_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


Script = Callable[[int, dict[str, Any]], Answer]


class ScriptedUpstream:
    """`script(call_number, request_json) -> Answer`; call numbers start at 1."""

    def __init__(self, script: Script | Answer | None = None) -> None:
        if script is None:
            script = Answer(body=chat_body())
        self.script: Script = script if callable(script) else (lambda n, body, a=script: a)
        self.calls = 0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        #: Set when a client left a stream with `event_delay` before its end.
        self.abandoned = threading.Event()
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body) if body else {}
        with self._lock:
            self.calls += 1
            number = self.calls
            self.requests.append(request)
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        answer = self.script(number, request)
        if answer.delay and await _client_left_within(answer.delay, receive):
            return
        if answer.events is not None:
            await self._stream(answer, send, receive)
            return
        payload = answer.raw if answer.raw is not None else orjson.dumps(answer.body or {})
        headers = [(b"content-type", (answer.content_type or "application/json").encode())]
        headers += [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, answer: Answer, send: Any, receive: Any) -> None:
        headers = [(b"content-type", (answer.content_type or "text/event-stream").encode())]
        headers += [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        assert answer.events is not None
        for index, event in enumerate(answer.events):
            if answer.cut_after is not None and index >= answer.cut_after:
                # Raising mid-body makes the server drop the connection: the client
                # sees a truncated chunked body, as with a provider crash.
                raise ConnectionAbortedError("scripted stream cut")
            data = event if isinstance(event, str) else orjson.dumps(event).decode()
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {data}\n\n".encode(),
                    "more_body": True,
                }
            )
            if answer.event_delay and await _client_left_within(answer.event_delay, receive):
                self.abandoned.set()
                return
        if answer.done:
            await send(
                {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True}
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _client_left_within(seconds: float, receive: Any) -> bool:
    """Wait `seconds`, or less if the client disconnects first (then True): like a
    real server, a scripted one stops working for a client that went away."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def tool_call_body(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """A chat.completion whose answer is one tool call with `arguments` (raw JSON text)."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "scripted-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
    }


def tool_call_events(
    name: str, arguments: str, call_id: str = "call_1", pieces: int = 3
) -> list[Any]:
    """The streamed form of `tool_call_body`: arguments split over `pieces` deltas."""
    size = max(1, -(-len(arguments) // pieces))
    head = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    events: list[Any] = [_delta({"role": "assistant", "content": None, "tool_calls": [head]})]
    for start in range(0, len(arguments), size):
        piece = {"index": 0, "function": {"arguments": arguments[start : start + size]}}
        events.append(_delta({"tool_calls": [piece]}))
    events.append(_delta({}, "tool_calls"))
    return events


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "scripted-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
