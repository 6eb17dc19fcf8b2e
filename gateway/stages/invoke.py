"""`POST /v1/tools/{name}/invoke`: run a registered tool and sign its result."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from common.fields import FieldProblem
from common.redact import Redactor
from gateway.errors import GatewayError, bad_request, echoed
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from gateway.stages.validate import check_invocation
from tools.invoke import ToolError, ToolInvoker


class InvokeTool:
    def __init__(
        self, invoker: ToolInvoker, events: Events, redactor: Redactor | None = None
    ) -> None:
        self.invoker = invoker
        self.events = events
        #: A failing endpoint's detail (a connection error naming its host, a URL with
        #: credentials) is the operator's, as for upstreams: redacted for the client.
        self.redactor = redactor if redactor is not None else Redactor()

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.request.path_params["name"]
        try:
            call_id, arguments = check_invocation(exchange.body)
        except FieldProblem as problem:
            raise bad_request(problem) from None
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
            if exc.status >= 500:
                message = self.redactor.client(message)
            raise GatewayError(exc.status, message, code=exc.code, param=exc.param) from exc
        # exchange.headers: what earlier stages set for the client (the request id, the
        # config version, `x-seawall-chaos: ignored`), on the success response too.
        exchange.response = Response(
            orjson.dumps(invocation.body()),
            media_type="application/json",
            headers=exchange.headers,
        )
