"""The tool invoke proxy: validate the arguments, call the tool, validate and sign.

`POST /v1/tools/{name}/invoke` lands here through the gateway. The tool's
endpoint receives the arguments as the JSON body of a POST (with the call id in
`x-seawall-tool-call-id`) and must answer 200 with the result as JSON. Connect
errors, timeouts and 5xx answers are retried per the tool's `retry` settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from common.headers import TOOL_CALL_ID_HEADER, TOOL_EXTENSION, TOOL_HEADER
from tools.receipts import Receipts, canonical
from tools.registry import RegisteredTool, ToolRegistry
from tools.schemas import problems

#: Tool results larger than this are refused (the model would not read them anyway).
MAX_RESULT_BYTES = 4 * 1024 * 1024


class ToolError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param


class _Retryable(Exception):
    """An endpoint failure worth another try."""


@dataclass(frozen=True, slots=True)
class Invocation:
    tool_call_id: str
    content: str
    receipt: str | None

    def body(self) -> dict[str, Any]:
        return {"tool_call_id": self.tool_call_id, "content": self.content, "receipt": self.receipt}


class ToolInvoker:
    def __init__(
        self, registry: ToolRegistry, receipts: Receipts, transport: httpx.AsyncBaseTransport
    ) -> None:
        self._registry = registry
        self._receipts = receipts
        self._transport = transport

    async def invoke(
        self, name: str, call_id: str, arguments: Any, extensions: dict[str, Any] | None = None
    ) -> Invocation:
        """`extensions` ride along on the endpoint request (a chaos plan, tracing)."""
        tool = self._registry.get(name)
        if tool is None:
            raise ToolError(404, "tool_not_found", f"No tool named '{name}' is registered.")
        if tool.config.endpoint is None:
            raise ToolError(
                404, "tool_has_no_endpoint", f"Tool '{name}' has no endpoint to invoke."
            )
        for problem in problems(tool.input, arguments)[:1]:
            raise ToolError(
                400,
                "tool_arguments_invalid",
                f"Arguments for tool '{name}' are invalid at {problem.path}: {problem.message}",
                param=f"arguments{problem.path[1:]}",
            )
        result = await self._call(tool, call_id, arguments, extensions or {})
        if tool.output is not None:
            for problem in problems(tool.output, result)[:1]:
                raise ToolError(
                    502,
                    "tool_result_invalid",
                    f"Tool '{name}' returned a result that violates its output_schema at "
                    f"{problem.path}: {problem.message}",
                )
        content = canonical(result).decode()
        receipt = (
            self._receipts.sign(name, call_id, arguments, content)
            if self._receipts.enabled
            else None
        )
        return Invocation(call_id, content, receipt)

    async def _call(
        self, tool: RegisteredTool, call_id: str, arguments: Any, extensions: dict[str, Any]
    ) -> Any:
        settings = tool.config.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.attempts),
            wait=wait_random_exponential(
                multiplier=settings.backoff_ms / 1000, max=settings.max_backoff_ms / 1000
            ),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(tool, call_id, arguments, extensions)
        except _Retryable as exc:
            raise ToolError(502, "tool_endpoint_failed", f"Tool '{tool.name}': {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, tool: RegisteredTool, call_id: str, arguments: Any, extensions: dict[str, Any]
    ) -> Any:
        assert tool.config.endpoint is not None
        seconds = tool.config.timeout_ms / 1000
        request = httpx.Request(
            "POST",
            tool.config.endpoint,
            content=orjson.dumps(arguments),
            headers={
                "content-type": "application/json",
                TOOL_CALL_ID_HEADER: call_id,
                TOOL_HEADER: tool.name,
            },
            extensions={
                "timeout": {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds},
                TOOL_EXTENSION: tool.name,
                **extensions,
            },
        )
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(seconds):
                response = await self._transport.handle_async_request(request)
                raw = b""
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_RESULT_BYTES:
                        raise ToolError(
                            502,
                            "tool_result_too_large",
                            f"Tool '{tool.name}' returned more than {MAX_RESULT_BYTES} bytes.",
                        )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _Retryable(
                f"the endpoint did not answer within {tool.config.timeout_ms} ms"
            ) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach the endpoint: {exc}") from exc
        finally:
            if response is not None:
                await response.aclose()
        if response.status_code >= 500:
            raise _Retryable(f"the endpoint answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise ToolError(
                502,
                "tool_endpoint_failed",
                f"Tool '{tool.name}': the endpoint answered HTTP {response.status_code}.",
            )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ToolError(
                502,
                "tool_endpoint_failed",
                f"Tool '{tool.name}': the endpoint did not answer JSON.",
            ) from exc
