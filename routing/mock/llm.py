"""A deterministic fake LLM that speaks OpenAI's chat and embeddings formats.

Same request, same answer: replies are derived from the request only, so tests and
chaos experiments replay exactly. What it answers is decided in reply.py (tool
calls by `tools`/`tool_choice` and the legacy `functions`/`function_call`, agent
loops that end once tool results are in, `response_format`); this module renders
that answer as a `chat.completion` or its stream of chunks.

`n` choices are returned, each the same answer (a tool call gets a distinct id in
each): the mock samples nothing, so its choices cannot differ by chance. Streams
interleave the choices' chunks, as OpenAI's do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from routing.config import MockSettings
from routing.mock.errors import MockError
from routing.mock.reply import CallReply, Reply, TextReply, decide
from routing.mock.wire import head_delta, message, piece_delta
from routing.tokens import count_messages, count_text, count_tools, encoding_for

if TYPE_CHECKING:
    import tiktoken

Json = dict[str, Any]

#: The most choices one request may ask for (`n`), as on OpenAI.
MAX_CHOICES = 128


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


class MockLLM:
    def __init__(self, model: str, settings: MockSettings) -> None:
        self.model = model
        self.settings = settings

    @functools.cached_property
    def encoding(self) -> tiktoken.Encoding:
        """Loaded when first needed (~50 MB): a gateway's Runtime loads it before it
        serves (gateway/runtime.py, `counting_models`); a mock made alone, in a test or
        the standalone mock server, on its first answer."""
        return encoding_for(self.model)

    # -- chat --------------------------------------------------------------------

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
        prompt = count_messages(body["messages"], self.encoding)
        for offered in ("tools", "functions"):
            if body.get(offered):
                prompt += count_tools(body[offered], self.encoding)
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

    def _usage(self, prompt: int, completion: str, choices: int) -> Json:
        completion_tokens = count_text(completion, self.encoding) * choices
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    def _answer(self, body: Json) -> tuple[int, Reply, str, str]:
        """(prompt tokens, reply, the produced text, finish_reason)."""
        reply = decide(body, self.model)  # checks the request first, `messages` included
        prompt = self._prompt_tokens(body)
        if isinstance(reply, CallReply):
            return prompt, reply, reply.payload, "function_call" if reply.legacy else "tool_calls"
        text, finish = self._limit(body, reply.content)
        return prompt, TextReply(text), text, finish

    def chat(self, body: Json) -> Json:
        n = _choice_count(body)
        prompt, reply, produced, finish = self._answer(body)
        return {
            "id": "chatcmpl-mock" + _digest(body)[:20],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_seawall_mock",
            "choices": [
                {
                    "index": i,
                    "message": message(reply, i),
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ],
            "usage": self._usage(prompt, produced, n),
        }

    def chat_chunks(self, body: Json) -> Iterator[Json]:
        """The streamed form of `chat`: role chunk, content/argument deltas, finish;
        with `n` > 1 each step is sent for every choice before the next step."""
        n = _choice_count(body)
        prompt, reply, produced, finish = self._answer(body)
        base = {
            "id": "chatcmpl-mock" + _digest(body)[:20],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_seawall_mock",
        }
        for i in range(n):
            yield _chunk(base, i, head_delta(reply, i))
        for piece in _split(produced, self.settings.stream_chunks):
            delta = piece_delta(reply, piece)
            for i in range(n):
                yield _chunk(base, i, delta)
        for i in range(n):
            yield _chunk(base, i, {}, finish)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            yield {**base, "choices": [], "usage": self._usage(prompt, produced, n)}

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


def _choice_count(body: Json) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool):
        raise MockError(400, f"Invalid type for 'n': expected an integer, but got {n!r}.", "n")
    if n < 1:
        raise MockError(
            400,
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} "
            "instead.",
            "n",
            "integer_below_min_value",
        )
    if n > MAX_CHOICES:
        raise MockError(
            400,
            f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_CHOICES}, "
            f"but got {n} instead.",
            "n",
            "integer_above_max_value",
        )
    return n


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return [""]
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunk(base: Json, index: int, delta: Json, finish: str | None = None) -> Json:
    return {
        **base,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


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
