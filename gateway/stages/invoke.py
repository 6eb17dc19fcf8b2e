"""`POST /v1/tools/{name}/invoke`: run a registered tool and sign its result."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError, invalid_type, missing_parameter
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from tools.invoke import ToolError, ToolInvoker


class InvokeTool:
    def __init__(self, invoker: ToolInvoker, events: Events) -> None:
        self.invoker = invoker
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.request.path_params["name"]
        body = exchange.body
        call_id = body.get("tool_call_id")
        if call_id is None:
            raise missing_parameter("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid_type("tool_call_id", "a non-empty string", call_id)
        if "arguments" not in body:
            raise missing_parameter("arguments")
        arguments = body["arguments"]
        if not isinstance(arguments, dict):
            raise invalid_type("arguments", "an object", arguments)
        try:
            invocation = await self.invoker.invoke(
                name, call_id, arguments, exchange.upstream_extensions
            )
        except ToolError as exc:
            if exc.code in ("tool_arguments_invalid", "tool_result_invalid"):
                kind = "tool_call_invalid" if exc.code == "tool_arguments_invalid" else exc.code
                self.events.emit(GuardEvent(kind, "reject", tool=name, detail=exc.message))
            raise GatewayError(exc.status, exc.message, code=exc.code, param=exc.param) from exc
        exchange.response = Response(orjson.dumps(invocation.body()), media_type="application/json")
