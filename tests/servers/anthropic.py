"""A fake of Anthropic's Messages API, good enough for litellm's `anthropic` provider.

`POST /v1/messages` answers deterministically from the request, so tests can assert
exact contents, and every request is recorded (path, headers, JSON body) so tests can
assert what litellm actually sent. It validates what the real API insists on
(`x-api-key`, `anthropic-version`, `max_tokens`, only user/assistant turns, no
unknown top-level field) so that a translation mistake fails loudly instead of
passing silently.

How it answers:
- the last user turn holds `tool_result` blocks: text `Tool result: <their text>`;
- `tools` are given (and `tool_choice` is not `none`): a text block, then a `tool_use`
  of the chosen tool (the first one unless `tool_choice` names one), id
  `toolu_<name>_<number of messages>`, input `{"query": <last user text>}`, stop
  reason `tool_use`;
- otherwise text `You said: <last user text>`, cut to `max_tokens` words (stop reason
  `max_tokens`) if longer.

Usage is counted in words: `input_tokens` are the words of `system` and of every
message's text, `output_tokens` the number of deltas the streamed form of the answer
has (one per word of text, one per `JSON_PIECE` characters of tool input).

Errors are requested per request by a marker in the last user message, so tests that
share one server cannot disturb each other:
- `fake-anthropic:error:<status>:<type>[:<message>]` answers `{"type": "error", ...}`
  with that status (a 429 carries `retry-after: 7`);
- `fake-anthropic:break` makes a stream send an `error` event after its first text
  delta, as the real API does when it is overloaded mid-answer.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ERROR_MARKER = re.compile(r"fake-anthropic:error:(\d{3}):(\w+)(?::([^\n]*))?")
BREAK_MARKER = "fake-anthropic:break"
RETRY_AFTER_SECONDS = 7
#: Tool input JSON is streamed in pieces of this many characters.
JSON_PIECE = 8
#: The top-level fields the Messages API accepts; it refuses any other.
MESSAGES_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
    }
)
DEFAULT_ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "invalid_request_error": "Invalid request",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body; None if it was not JSON


@dataclass(frozen=True)
class Block:
    """One content block of the answer: text, or a tool call with its input."""

    type: str
    text: str = ""
    tool_id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None

    def pieces(self) -> list[str]:
        """The deltas a stream sends for this block; non-stream usage counts them too."""
        if self.type == "text":
            words = self.text.split(" ")
            return [w if i == 0 else " " + w for i, w in enumerate(words)]
        raw = json.dumps(self.input, separators=(",", ":"))
        return [raw[i : i + JSON_PIECE] for i in range(0, len(raw), JSON_PIECE)]

    def complete(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text", "text": self.text}
        return {"type": "tool_use", "id": self.tool_id, "name": self.name, "input": self.input}

    def start(self) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": self.tool_id, "name": self.name, "input": {}}

    def delta(self, piece: str) -> dict[str, Any]:
        if self.type == "text":
            return {"type": "text_delta", "text": piece}
        return {"type": "input_json_delta", "partial_json": piece}


class AnthropicError(Exception):
    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message

    def response(self) -> Response:
        headers = {"request-id": "req_fake"}
        if self.status == 429:
            headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        body = {"type": "error", "error": {"type": self.type, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=headers)


class FakeAnthropic:
    """The ASGI app. `requests` lists what it received, oldest first."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.url.path, dict(request.headers), body)
        )
        try:
            if request.method != "POST" or request.url.path != "/v1/messages":
                raise AnthropicError(404, "not_found_error", f"Not found: {request.url.path}")
            self._validate(request, body)
            marker = ERROR_MARKER.search(last_user_text(body["messages"]))
            if marker is not None:
                status, kind, message = marker.groups()
                raise AnthropicError(
                    int(status), kind, message or DEFAULT_ERROR_MESSAGES.get(kind, kind)
                )
        except AnthropicError as exc:
            return exc.response()
        blocks, stop_reason = self._answer(body)
        usage = {
            "input_tokens": count_input_words(body),
            "output_tokens": sum(len(b.pieces()) for b in blocks),
        }
        message = {
            "id": f"msg_fake{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [b.complete() for b in blocks],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if body.get("stream"):
            broken = BREAK_MARKER in last_user_text(body["messages"])
            return StreamingResponse(
                _events(message, blocks, broken),
                media_type="text/event-stream",
                headers={"request-id": "req_fake", "cache-control": "no-cache"},
            )
        return JSONResponse(message, headers={"request-id": "req_fake"})

    @staticmethod
    def _validate(request: Request, body: Any) -> None:
        if not request.headers.get("x-api-key"):
            raise AnthropicError(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            raise AnthropicError(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        if not isinstance(body, dict):
            raise AnthropicError(400, "invalid_request_error", "body: not a JSON object")
        extra = sorted(set(body) - MESSAGES_FIELDS)
        if extra:
            raise AnthropicError(
                400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted"
            )
        if not isinstance(body.get("model"), str):
            raise AnthropicError(400, "invalid_request_error", "model: Field required")
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            raise AnthropicError(400, "invalid_request_error", "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise AnthropicError(400, "invalid_request_error", "messages: Field required")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                role = m.get("role") if isinstance(m, dict) else None
                raise AnthropicError(
                    400,
                    "invalid_request_error",
                    f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}",
                )

    def _answer(self, body: dict[str, Any]) -> tuple[list[Block], str]:
        last = body["messages"][-1]
        results = [b for b in _blocks(last) if b.get("type") == "tool_result"]
        if last["role"] == "user" and results:
            text = " ".join(_text_of(r.get("content")) for r in results)
            return [Block("text", text=f"Tool result: {text}")], "end_turn"
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        if tools and choice.get("type") != "none":
            name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
            call = Block(
                "tool_use",
                tool_id=f"toolu_{name}_{len(body['messages'])}",
                name=name,
                input={"query": last_user_text(body["messages"])},
            )
            return [Block("text", text=f"Calling {name}."), call], "tool_use"
        words = f"You said: {last_user_text(body['messages'])}".split(" ")
        if len(words) > body["max_tokens"]:
            return [Block("text", text=" ".join(words[: body["max_tokens"]]))], "max_tokens"
        return [Block("text", text=" ".join(words))], "end_turn"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _events(message: dict[str, Any], blocks: list[Block], broken: bool) -> Any:
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
    yield _sse("message_start", {"type": "message_start", "message": start})
    yield _sse("ping", {"type": "ping"})
    for index, block in enumerate(blocks):
        yield _sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block.start()},
        )
        for piece in block.pieces():
            delta = {"type": "content_block_delta", "index": index, "delta": block.delta(piece)}
            yield _sse("content_block_delta", delta)
            if broken:
                error = {"type": "overloaded_error", "message": "Overloaded"}
                yield _sse("error", {"type": "error", "error": error})
                return
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": delta,
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user turn (tool results excluded)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return " ".join(b["text"] for b in _blocks(message) if b.get("type") == "text")
    return ""


def count_input_words(body: dict[str, Any]) -> int:
    system = body.get("system")
    words = len(_text_of(system).split()) if system else 0
    for message in body["messages"]:
        for block in _blocks(message):
            if block.get("type") == "text":
                words += len(block["text"].split())
            elif block.get("type") == "tool_result":
                words += len(_text_of(block.get("content")).split())
    return words
