"""`GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`.

Stored responses belong to the key that created them (`owner_of`): another key gets
the same 404 as for a response that never existed, so ids reveal nothing. These need
the `user` role, like every inference endpoint.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.stages.responses import owner_of, responses_error
from responses.errors import ResponsesError
from responses.listing import input_items_page, parse_page_query
from responses.store import ResponseStore, StoredResponse


class Served(Protocol):
    """What these endpoints need of the gateway."""

    def require_user(self, request: Request) -> Any: ...

    def respond(self, payload: Any, status: int = 200) -> Response: ...


class StoredResponses:
    def __init__(self, gateway: Served, store: ResponseStore) -> None:
        self.gateway = gateway
        self.store = store

    async def _stored(self, request: Request) -> tuple[StoredResponse, str]:
        owner = owner_of(self.gateway.require_user(request))
        response_id = request.path_params["response_id"]
        record = await self.store.get(response_id, owner)
        if record is None:
            raise GatewayError(
                404,
                f"Response with id '{response_id[:128]}' not found.",
                code="not_found",
                param="response_id",
            )
        return record, owner

    async def get(self, request: Request) -> Response:
        if request.query_params.get("stream") in ("true", "1"):
            raise GatewayError(
                400,
                "Streaming a stored response again is not supported; get it whole.",
                code="unsupported_parameter",
                param="stream",
            )
        record, _ = await self._stored(request)
        return self.gateway.respond(record.response)

    async def delete(self, request: Request) -> Response:
        record, owner = await self._stored(request)
        await self.store.delete(record.id, owner)
        return self.gateway.respond(
            {"id": record.id, "object": "response.deleted", "deleted": True}
        )

    async def input_items(self, request: Request) -> Response:
        record, _ = await self._stored(request)
        try:
            page = input_items_page(record.input_items, **parse_page_query(request.query_params))
        except ResponsesError as exc:
            raise responses_error(exc) from None
        return self.gateway.respond(page)
