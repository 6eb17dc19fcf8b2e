"""`POST /v1/tools/{name}/invoke`: run a registered tool and sign its result."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError, echoed
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from gateway.stages.validate import check_invocation
from tools.invoke import ToolError, ToolInvoker


class InvokeTool:
    def __init__(self, invoker: ToolInvoker, events: Events) -> None:
        self.invoker = invoker
        self.events = events

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.request.path_params["name"]
        call_id, arguments = check_invocation(exchange.body)
        try:
            invocation = await self.invoker.invoke(
                name, call_id, arguments, exchange.upstream_extensions
            )
        except ToolError as exc:
            if exc.code in ("tool_arguments_invalid", "tool_result_invalid"):
                kind = "tool_call_invalid" if exc.code == "tool_arguments_invalid" else exc.code
                self.events.emit(GuardEvent(kind, "reject", tool=name, detail=exc.message))
            # The tool name comes from the URL: a long one is not repeated whole.
            message = exc.message.replace(name, echoed(name)) if name else exc.message
            raise GatewayError(exc.status, message, code=exc.code, param=exc.param) from exc
        # exchange.headers: what earlier stages set for the client (the request id, the
        # config version, `x-seawall-chaos: ignored`), on the success response too.
        exchange.response = Response(
            orjson.dumps(invocation.body()),
            media_type="application/json",
            headers=exchange.headers,
        )
