"""A deterministic fake LLM that speaks OpenAI's chat and embeddings formats.

Same request, same answer: replies are derived from the request only, so tests and
chaos experiments replay exactly. It answers with a tool call when tools are
offered (arguments built to satisfy the tool's schema), with text otherwise, and
after a tool result it summarises that result, so agent loops terminate.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Iterator
from typing import Any

import orjson

from routing.config import MockSettings
from routing.mock.schema_example import example_for
from routing.tokens import content_text, count_messages, count_text, count_tools, encoding_for

Json = dict[str, Any]


class MockError(Exception):
    """A request the mock refuses, with the HTTP status and OpenAI error object."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


class MockLLM:
    def __init__(self, model: str, settings: MockSettings) -> None:
        self.model = model
        self.settings = settings
        self.encoding = encoding_for(model)

    # -- chat --------------------------------------------------------------------

    def _decide(self, body: Json) -> tuple[str | None, Json | None]:
        """(text, tool_call): exactly one of them is set."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MockError(400, "messages must be a non-empty array", "messages")
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        tools = body.get("tools") or []
        choice = body.get("tool_choice", "auto")
        if tools and choice != "none" and last.get("role") != "tool":
            tool = _chosen_tool(tools, choice)
            if tool is not None:
                function = tool.get("function") or {}
                arguments = example_for(function.get("parameters") or {"type": "object"})
                call_id = "call_" + _digest((messages, function.get("name")))[:24]
                return None, {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": function.get("name", "tool"),
                        "arguments": _compact_json(arguments),
                    },
                }
        if last.get("role") == "tool":
            result = content_text(last.get("content"))[:200]
            return f"The tool returned: {result}", None
        question = ""
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                question = content_text(message.get("content"))
                break
        question = " ".join(question.split())[:120]
        return f"This is a mock reply from {self.model} to: {question}", None

    def _limit(self, body: Json, text: str) -> tuple[str, str]:
        """Apply max_tokens like a real model: cut the reply, finish_reason=length."""
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit > 0:
            tokens = self.encoding.encode(text, disallowed_special=())
            if len(tokens) > limit:
                return self.encoding.decode(tokens[:limit]), "length"
        return text, "stop"

    def _prompt_tokens(self, body: Json) -> int:
        """Counted like a real model would, and refused past the context window."""
        prompt = count_messages(body["messages"], self.encoding) + count_tools(
            body.get("tools"), self.encoding
        )
        window = self.settings.context_window
        if prompt > window:
            raise MockError(
                400,
                f"This model's maximum context length is {window} tokens. However, your "
                f"messages resulted in {prompt} tokens.",
                "messages",
                "context_length_exceeded",
            )
        return prompt

    def _usage(self, prompt: int, completion: str) -> Json:
        completion_tokens = count_text(completion, self.encoding)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    def chat(self, body: Json) -> Json:
        prompt = self._prompt_tokens(body)
        text, call = self._decide(body)
        n = _choice_count(body)
        if call is not None:
            message: Json = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish, produced = "tool_calls", call["function"]["arguments"]
        else:
            assert text is not None
            text, finish = self._limit(body, text)
            message, produced = {"role": "assistant", "content": text}, text
        return {
            "id": "chatcmpl-mock" + _digest(body)[:20],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_seawall_mock",
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ],
            "usage": self._usage(prompt, produced),
        }

    def chat_chunks(self, body: Json) -> Iterator[Json]:
        """The streamed form of `chat`: role chunk, content/argument deltas, finish."""
        prompt = self._prompt_tokens(body)
        text, call = self._decide(body)
        base = {
            "id": "chatcmpl-mock" + _digest(body)[:20],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_seawall_mock",
        }
        pieces: list[str]
        if call is not None:
            finish, produced = "tool_calls", call["function"]["arguments"]
            pieces = _split(produced, self.settings.stream_chunks)
            head = {
                **call,
                "index": 0,
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            yield _chunk(base, {"role": "assistant", "content": None, "tool_calls": [head]})
            for piece in pieces:
                yield _chunk(base, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        else:
            assert text is not None
            text, finish = self._limit(body, text)
            produced = text
            yield _chunk(base, {"role": "assistant", "content": ""})
            for piece in _split(text, self.settings.stream_chunks):
                yield _chunk(base, {"content": piece})
        yield _chunk(base, {}, finish)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            yield {**base, "choices": [], "usage": self._usage(prompt, produced)}

    # -- embeddings --------------------------------------------------------------

    def embeddings(self, body: Json) -> Json:
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and all(isinstance(t, int) for t in inputs)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise MockError(400, "input must be a string or a non-empty array", "input")
        dim = body.get("dimensions") or self.settings.embedding_dim
        if not isinstance(dim, int) or dim < 1 or dim > 8192:
            raise MockError(400, "dimensions must be an integer between 1 and 8192", "dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                tokens += count_text(item, self.encoding)
            elif isinstance(item, list):
                tokens += len(item)
            vector = _vector(item, dim, self.settings.seed)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _chosen_tool(tools: list[Any], choice: Any) -> Json | None:
    functions = [t for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for tool in functions:
            if tool["function"].get("name") == wanted:
                return tool
    return functions[0] if functions else None


def _choice_count(body: Json) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and 1 <= n <= 16 else 1


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return [""]
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunk(base: Json, delta: Json, finish: str | None = None) -> Json:
    return {
        **base,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _vector(item: Any, dim: int, seed: int) -> list[float]:
    """A unit vector derived from the input: equal inputs embed equally."""
    stream = b""
    counter = 0
    key = f"{seed}:{item!r}".encode()
    while len(stream) < dim * 4:
        stream += hashlib.sha256(key + counter.to_bytes(4, "little")).digest()
        counter += 1
    raw = [(b / 127.5) - 1.0 for b in stream[: dim * 4 : 4]]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]
