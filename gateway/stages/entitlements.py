"""What the caller's tenant allows a request, beyond its model (which `ResolveModel`
checks): its numeric caps, and the registered tools it may invoke.

`EnforceCaps`: the numeric caps of the caller's tenant that bound a request.

`caps.max_tokens` bounds what a request may ask the model to generate: a request
asking for more is refused (400, naming the cap and the tenant), and one asking for
nothing is given the cap, so no request of a capped tenant is unbounded. (The
prompt-size cap, `caps.max_prompt_tokens`, is the prompt guard's: gateway/stages/
guards.py takes the tighter of it and the model group's limit.)

Reads `exchange.identity`, `exchange.body` through `exchange.shape` (a chat request,
the Responses API's translated by now; or a Responses request passed through). Writes
the shape's output-token field (`max_completion_tokens`, `max_output_tokens`) when
absent.
"""

from __future__ import annotations

from gateway.errors import GatewayError, echoed
from gateway.exchange import Exchange

#: What the client called the field, when its request was translated.
CLIENT_NAMES = {"responses": "max_output_tokens"}


class EnforceCaps:
    async def __call__(self, exchange: Exchange) -> None:
        identity = exchange.identity
        cap = identity.permissions.max_tokens if identity is not None else None
        if cap is None:
            return
        assert identity is not None
        body = exchange.body
        fields = exchange.shape.max_tokens_fields
        asked = False
        for field in fields:
            value = body.get(field)
            if value is None:
                continue
            asked = True
            if isinstance(value, int) and value > cap:
                name = CLIENT_NAMES.get(exchange.endpoint, field)
                raise GatewayError(
                    400,
                    f"'{name}' is {value}; tenant '{identity.tenant_id}' may ask for at most "
                    f"{cap} tokens (caps.max_tokens).",
                    code="max_tokens_over_cap",
                    param=name,
                )
        if not asked:
            body[fields[0]] = cap


class ToolAllowed:
    """The invoke proxy runs only tools the caller's tenant may use; any other is the
    same 404 as a tool that is not registered (the answer does not tell which)."""

    async def __call__(self, exchange: Exchange) -> None:
        name = exchange.request.path_params["name"]
        identity = exchange.identity
        if identity is not None and not identity.may_use_tool(name):
            raise GatewayError(
                404, f"No tool named '{echoed(name)}' is registered.", code="tool_not_found"
            )
