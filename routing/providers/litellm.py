"""Providers that do not speak OpenAI's API (anthropic, bedrock, ...), via litellm.

litellm is imported on first use only: it costs seconds and ~150 MB, and a
gateway without such deployments must never pay for it. Its own retries are
disabled; retries, breakers and failover are the router's job.

`api_base` is handed to litellm as is, and each litellm provider decides what to
append. For `anthropic` it is the origin (`https://api.anthropic.com`, or
`http://host:port` for a proxy or a fake): litellm appends `/v1/messages` unless the
URL already ends with it, without stripping a trailing slash, so `.../v1` or
`.../` would be called as `.../v1/v1/messages` or `...//v1/messages`. Without an
`api_base` or `api_key`, litellm falls back to the provider's environment variables
(`ANTHROPIC_API_BASE`, `ANTHROPIC_API_KEY`, ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import httpx
import orjson

from routing.call import Reply, UpstreamRequest
from routing.config import DeploymentConfig
from routing.outcomes import (
    Failure,
    UpstreamError,
    classify_status,
    error_object,
    parse_retry_after,
)
from routing.providers.base import attempt_limit
from routing.providers.litellm_import import import_litellm, litellm_providers

#: A provider's retry-after is honoured up to this many seconds (as for OpenAI upstreams).
RETRY_AFTER_CAP_SECONDS = 60.0
DONE_EVENT = b"data: [DONE]\n\n"
#: Error details from litellm are cut to one line of at most this many characters.
MAX_DETAIL_CHARS = 300

# What is handed to litellm: an allowlist of OpenAI's documented parameters, never
# the client's body as a whole. litellm reads its own settings from the same keyword
# arguments (`base_url`, `mock_response`, `custom_llm_provider`, `extra_headers`,
# `aws_*`...), so any other key would let a client send the request, with the
# deployment's key, wherever it likes. litellm translates these or refuses them
# (UnsupportedParamsError) for providers that lack them.
CHAT_PARAMS = frozenset(
    {
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
EMBEDDING_PARAMS = frozenset({"input", "dimensions", "user"})
# Set by the router or meaningless here: `model` and `stream` come from the request;
# `metadata` tags OpenAI's stored completions, and litellm would read (and write into)
# it as its own per-call settings.
# `encoding_format` is applied by the gateway (`encode_base64`): the openai SDK asks for
# base64 by default and litellm refuses the parameter for most non-OpenAI providers.
IGNORED_PARAMS = frozenset({"model", "stream", "metadata", "encoding_format"})


def translates(provider: str) -> bool:
    """Whether litellm knows `provider` (read from its source: no import)."""
    return provider in litellm_providers()


class LiteLLMProvider:
    def __init__(self, config: DeploymentConfig) -> None:
        self.deployment_id = config.id
        self.config = config
        self.model = f"{config.provider}/{config.model}"
        self._total = config.timeouts.total_ms / 1000
        self._ttft = config.timeouts.ttft_ms / 1000

    async def start(self) -> None:
        # Import off the event loop: the first import takes seconds.
        await asyncio.to_thread(import_litellm)
        if not translates(self.config.provider):
            raise ValueError(
                f"deployment {self.deployment_id!r}: unknown provider {self.config.provider!r}"
            )

    async def aclose(self) -> None:
        # litellm owns its HTTP clients: a module-level cache per provider and event
        # loop, evicted (and closed) after 10 minutes, and closed at exit. Closing them
        # here was tried: some are shared with litellm's module-level client, which then
        # leaks a fresh aiohttp session into the next event loop.
        return None

    def _kwargs(self, request: UpstreamRequest, limit: float) -> dict[str, Any]:
        allowed = EMBEDDING_PARAMS if request.endpoint == "embeddings" else CHAT_PARAMS
        params = {k: v for k, v in request.body.items() if v is not None}  # null means unset
        unknown = sorted(k for k in params if k not in allowed and k not in IGNORED_PARAMS)
        if unknown:
            message = (
                f"Unrecognized request argument supplied: {', '.join(unknown)}. Deployment "
                f"'{self.deployment_id}' ({self.config.provider}) takes OpenAI's parameters only."
            )
            raise UpstreamError(
                Failure.CLIENT,
                self.deployment_id,
                message,
                status=400,
                error_body={"message": message, "type": "invalid_request_error"},
            )
        # A deep copy: litellm may edit what it is given, and a retry or a failover must
        # start again from what the client sent.
        kwargs: dict[str, Any] = orjson.loads(
            orjson.dumps({k: v for k, v in params.items() if k in allowed})
        )
        kwargs.update(model=self.model, timeout=limit, num_retries=0, max_retries=0)
        if request.endpoint == "chat":
            kwargs["stream"] = request.stream
            # Any request with `tools` otherwise goes through litellm's MCP gateway check,
            # which imports the proxy's MCP server and fails without the `mcp` package.
            kwargs["_skip_mcp_handler"] = True
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self.config.api_key is not None:
            kwargs["api_key"] = self.config.api_key.get_secret_value()
        if self.config.headers:
            kwargs["extra_headers"] = {
                k: v.get_secret_value() for k, v in self.config.headers.items()
            }
        return kwargs

    async def send(self, request: UpstreamRequest, deadline: float | None = None) -> Reply:
        litellm = import_litellm()
        limit, by_deadline = attempt_limit(self.deployment_id, self._total, deadline)
        kwargs = self._kwargs(request, limit)
        ends = time.monotonic() + limit
        stream: Any = None
        try:
            async with asyncio.timeout(limit):
                if request.endpoint == "embeddings":
                    reply = self._json_reply(await litellm.aembedding(**kwargs))
                    if request.body.get("encoding_format") == "base64":
                        return encode_base64(reply)
                    return reply
                if not request.stream:
                    return self._json_reply(await litellm.acompletion(**kwargs))
                stream = await litellm.acompletion(**kwargs)
            first = await self._next_chunk(stream, ends)
        except Exception as exc:  # litellm raises many types; classify them all
            if stream is not None:
                await _close_stream(stream)
            error = self._classify(exc)
            if by_deadline and error.failure is Failure.TIMEOUT:
                error = UpstreamError(
                    Failure.DEADLINE, self.deployment_id, "request deadline exceeded"
                )
            raise error from exc
        if first is None:
            await _close_stream(stream)
            raise UpstreamError(
                Failure.BAD_RESPONSE, self.deployment_id, "upstream stream ended before any event"
            )
        events = self._events(first, stream, ends)

        async def close() -> None:
            await events.aclose()
            await _close_stream(stream)

        return Reply(self.deployment_id, events=events, close=close)

    def _json_reply(self, result: Any) -> Reply:
        data = result.model_dump(exclude_none=True)
        return Reply(self.deployment_id, 200, orjson.dumps(data), data)

    async def _next_chunk(self, stream: Any, ends: float) -> Any:
        """The next chunk, None at the end. Silence longer than `ttft_ms` is a timeout,
        as for OpenAI upstreams, and so is outliving the attempt's total limit."""
        async with asyncio.timeout(min(self._ttft, ends - time.monotonic())):
            return await anext(stream, None)

    async def _events(self, first: Any, stream: Any, ends: float) -> AsyncGenerator[bytes, None]:
        yield _sse(first)
        while True:
            try:
                chunk = await self._next_chunk(stream, ends)
            except Exception as exc:
                error = self._classify(exc)
                raise UpstreamError(
                    Failure.STREAM_BROKEN, self.deployment_id, error.message, status=error.status
                ) from exc
            if chunk is None:
                break
            yield _sse(chunk)
        yield DONE_EVENT

    def _classify(self, exc: BaseException) -> UpstreamError:
        """Decide from what happened upstream, not from litellm's exception type.

        litellm's types lose what routing needs: a refused connection arrives as
        InternalServerError(500), Anthropic's 529 as 500, an unparseable body as
        APIConnectionError. The exceptions chained under them still hold the transport
        error or the provider's real HTTP response.
        """
        if isinstance(exc, UpstreamError):
            return exc
        litellm = import_litellm()
        chain = list(_causes(exc))
        timeouts = (TimeoutError, httpx.TimeoutException, litellm.exceptions.Timeout)
        if any(isinstance(e, timeouts) for e in chain):
            return UpstreamError(Failure.TIMEOUT, self.deployment_id, "upstream timed out")
        refused = next(
            (e for e in chain if isinstance(e, (httpx.ConnectError, aiohttp.ClientConnectorError))),
            None,
        )
        if refused is not None:
            return UpstreamError(Failure.CONNECT, self.deployment_id, f"cannot connect: {refused}")
        answer = next((e for e in chain if isinstance(e, httpx.HTTPStatusError)), None)
        if answer is not None:
            return self._http_error(answer.response, exc)
        detail = _detail(chain)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            # litellm refused the request itself, e.g. a parameter the provider lacks.
            failure = self._refine(classify_status(status, {"message": detail}), exc)
            return UpstreamError(
                failure,
                self.deployment_id,
                f"litellm rejected the request: {detail}",
                status=status,
                error_body={"message": detail, "type": "invalid_request_error"},
            )
        return UpstreamError(Failure.BAD_RESPONSE, self.deployment_id, f"bad response: {detail}")

    def _http_error(self, response: httpx.Response, exc: BaseException) -> UpstreamError:
        try:
            text = response.text
        except httpx.ResponseNotRead:
            text = ""
        error = error_object(text)
        status = response.status_code
        failure = self._refine(classify_status(status, error), exc)
        detail = (error or {}).get("message") or text[:200].strip()
        return UpstreamError(
            failure,
            self.deployment_id,
            f"upstream returned HTTP {status}" + (f": {detail}" if detail else ""),
            status=status,
            retry_after=parse_retry_after(dict(response.headers), RETRY_AFTER_CAP_SECONDS),
            error_body=error,
        )

    @staticmethod
    def _refine(failure: Failure, exc: BaseException) -> Failure:
        """litellm also knows each provider's wording for context and policy errors."""
        if failure is not Failure.CLIENT:
            return failure
        errors = import_litellm().exceptions
        if isinstance(exc, errors.ContextWindowExceededError):
            return Failure.CONTEXT_LENGTH
        if isinstance(exc, errors.ContentPolicyViolationError):
            return Failure.CONTENT_POLICY
        return failure


def _sse(chunk: Any) -> bytes:
    return b"data: " + orjson.dumps(chunk.model_dump(exclude_none=True)) + b"\n\n"


async def _close_stream(stream: Any) -> None:
    """Release the upstream connection of a litellm stream; closing is best effort."""
    with contextlib.suppress(Exception):
        await stream.aclose()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _detail(chain: list[BaseException]) -> str:
    """The most precise message: the provider-level exception's, if litellm made one.

    One line, capped: litellm puts whole tracebacks (and a bug-report link) into some
    messages, and this one reaches the client.
    """
    from litellm.llms.base_llm.chat.transformation import BaseLLMException

    provider = next((e for e in chain if isinstance(e, BaseLLMException)), None)
    if provider is not None:
        message = provider.message
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
    else:
        message = str(chain[0])
        if message.startswith("litellm.") and ": " in message:  # "litellm.BadRequestError: "
            message = message.split(": ", 1)[1]
        # litellm's advice ("To drop these/it, set `litellm.drop_params`") is no setting
        # of this gateway.
        message = message.split(". To drop ")[0]
    lines = str(message).strip().splitlines()
    return lines[0][:MAX_DETAIL_CHARS] if lines else type(chain[0]).__name__


def encode_base64(reply: Reply) -> Reply:
    """OpenAI's base64 embedding format: little-endian float32, base64-encoded."""
    assert reply.data is not None
    for item in reply.data.get("data") or []:
        vector = item.get("embedding")
        if isinstance(vector, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return replace(reply, body=orjson.dumps(reply.data))
