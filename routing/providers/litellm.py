"""Providers that do not speak OpenAI's API (anthropic, bedrock, ...), via litellm.

litellm is imported on first use only: it costs seconds and ~150 MB, and a
gateway without such deployments must never pay for it. Its own retries are
disabled; retries, breakers and failover are the router's job.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from routing.call import Reply, UpstreamRequest
from routing.config import DeploymentConfig
from routing.outcomes import Failure, UpstreamError, classify_status

_litellm: Any = None


def import_litellm() -> Any:
    """Import litellm with its network fetches disabled (the cost map is bundled)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


class LiteLLMProvider:
    def __init__(self, config: DeploymentConfig) -> None:
        self.deployment_id = config.id
        self.config = config
        self.model = f"{config.provider}/{config.model}"
        self._total = config.timeouts.total_ms / 1000

    async def start(self) -> None:
        # Import off the event loop: the first import takes seconds.
        litellm = await asyncio.to_thread(import_litellm)
        if self.config.provider not in {str(p.value) for p in litellm.provider_list}:
            raise ValueError(f"deployment {self.deployment_id!r}: unknown provider {self.config.provider!r}")

    async def aclose(self) -> None:
        return None

    def _kwargs(self, request: UpstreamRequest, limit: float) -> dict[str, Any]:
        body = {k: v for k, v in request.body.items() if k != "model"}
        kwargs: dict[str, Any] = {
            **body,
            "model": self.model,
            "timeout": limit,
            "num_retries": 0,
            "max_retries": 0,
        }
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self.config.api_key is not None:
            kwargs["api_key"] = self.config.api_key.get_secret_value()
        if self.config.headers:
            kwargs["extra_headers"] = dict(self.config.headers)
        return kwargs

    async def send(self, request: UpstreamRequest, deadline: float | None = None) -> Reply:
        litellm = import_litellm()
        limit = self._total
        if deadline is not None:
            limit = min(limit, deadline - time.monotonic())
            if limit <= 0:
                raise UpstreamError(Failure.TIMEOUT, self.deployment_id, "request deadline exceeded")
        kwargs = self._kwargs(request, limit)
        try:
            async with asyncio.timeout(limit):
                if request.endpoint == "embeddings":
                    result = await litellm.aembedding(**kwargs)
                    return self._json_reply(result)
                if request.stream:
                    kwargs["stream"] = True
                    stream = await litellm.acompletion(**kwargs)
                    iterator = aiter(stream)
                    first = await anext(iterator)
                    return Reply(
                        self.deployment_id,
                        events=self._events(first, iterator, time.monotonic() + limit),
                    )
                result = await litellm.acompletion(**kwargs)
                return self._json_reply(result)
        except UpstreamError:
            raise
        except Exception as exc:  # litellm raises many types; classify them all
            raise self._classify(exc) from exc

    def _json_reply(self, result: Any) -> Reply:
        data = result.model_dump(exclude_none=True)
        return Reply(self.deployment_id, 200, orjson.dumps(data), data)

    async def _events(self, first: Any, rest: AsyncIterator[Any], deadline: float) -> Any:
        yield _sse(first)
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                async for chunk in rest:
                    yield _sse(chunk)
        except Exception as exc:
            error = self._classify(exc)
            raise UpstreamError(Failure.STREAM_BROKEN, self.deployment_id, error.message) from exc
        yield b"data: [DONE]\n\n"

    def _classify(self, exc: BaseException) -> UpstreamError:
        litellm = import_litellm()
        name = type(exc).__name__
        if isinstance(exc, TimeoutError) or isinstance(exc, litellm.exceptions.Timeout):
            return UpstreamError(Failure.TIMEOUT, self.deployment_id, "upstream timed out")
        if isinstance(exc, litellm.exceptions.APIConnectionError):
            return UpstreamError(Failure.CONNECT, self.deployment_id, f"cannot connect: {exc}")
        if isinstance(exc, litellm.exceptions.ContextWindowExceededError):
            failure = Failure.CONTEXT_LENGTH
        elif isinstance(exc, litellm.exceptions.ContentPolicyViolationError):
            failure = Failure.CONTENT_POLICY
        else:
            status = getattr(exc, "status_code", None)
            if not isinstance(status, int):
                return UpstreamError(Failure.BAD_RESPONSE, self.deployment_id, f"{name}: {exc}")
            failure = classify_status(status, {"message": str(exc)})
        status = getattr(exc, "status_code", None)
        return UpstreamError(
            failure,
            self.deployment_id,
            f"upstream returned HTTP {status}: {exc}",
            status=status if isinstance(status, int) else None,
            error_body={"message": str(exc), "type": name},
        )


def _sse(chunk: Any) -> bytes:
    return b"data: " + orjson.dumps(chunk.model_dump(exclude_none=True)) + b"\n\n"
