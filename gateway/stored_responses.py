"""Stored responses in the gateway: whose they are, what became of each put, and
`GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`.

A stored response belongs to the key that created it and to that key's token
(`owner_of`: the key's tenant, its id and a tag of its token): another key, or the
same key id given a new token, gets the same 404 as for a response that never
existed, so ids reveal nothing. These endpoints need the `user` role, like every
inference endpoint. When the store cannot answer (Redis down or slow) they answer
503 `response_store_unavailable`, never a hang.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from responses.errors import ResponsesError, StoreUnavailable
from responses.listing import input_items_page, parse_page_query
from responses.store import Encoded, Owner, Put, ResponseStore, StoredResponse
from tenants.config import ROOT
from tenants.identity import Identity

log = logging.getLogger("seawall")

#: `PutOutcomes.counts`' key for a put the store could not answer.
FAILED = "failed"


#: The owner of the requests that present no key (a config without keys).
_LOCAL = Owner(ROOT, "local")
#: Each identity's owner, made on its first request: an `Identity` is one immutable
#: object per key and config version, and an `Owner` built per request cost ~4,800
#: instructions. Emptied when it holds `MAX_OWNERS` (old versions' identities go too).
_OWNERS: dict[Identity, Owner] = {}
MAX_OWNERS = 10_000


def owner_of(identity: Identity | None) -> Owner:
    """Who a stored response belongs to: its key's tenant (whose quota it counts
    against), and the key, by id and token tag: only the same key holding the same
    token can read, continue, list or delete it."""
    if identity is None:
        return _LOCAL
    owner = _OWNERS.get(identity)
    if owner is None:
        if len(_OWNERS) >= MAX_OWNERS:
            _OWNERS.clear()
        key = f"{identity.key_id}#{identity.token_tag}" if identity.token_tag else identity.key_id
        owner = _OWNERS[identity] = Owner(identity.tenant_id, key)
    return owner


def responses_error(error: ResponsesError) -> GatewayError:
    """The refusal in OpenAI's envelope. A `StoreUnavailable` says nothing of the
    store's address (the store logs that, once per outage)."""
    return GatewayError(error.status, error.message, code=error.code, param=error.param)


class PutOutcomes:
    """What became of each response the gateway tried to store: counted by result
    (`Put`'s values and `failed`; `/metrics` shows them as
    `seawall_response_store_puts_total{result}`), and logged the first time each kind
    of refusal happens after a response was stored, so a full store or an outage is
    one log line, not one per request. The response itself is served either way."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._said: set[str] = set()

    async def put(
        self, store: ResponseStore, record: StoredResponse, encoded: Encoded | None = None
    ) -> str:
        """Puts `record` (`encoded`: its encoding, if made already) and counts what
        became of it."""
        try:
            result = str(await store.put(record, encoded))
        except StoreUnavailable:
            result = FAILED  # the store logged it
        self.counts[result] = self.counts.get(result, 0) + 1
        if result == Put.STORED:
            self._said.clear()
        elif result in (Put.STORE_FULL, Put.CONFLICT) and result not in self._said:
            self._said.add(result)
            log.warning(
                "response store: a response was served but not stored (%s); counted in "
                "seawall_response_store_puts_total, logged again after the next one stored",
                "the store is at responses.total" if result == Put.STORE_FULL else result,
            )
        return result


class Served(Protocol):
    """What these endpoints need of the gateway."""

    def require_user(self, request: Request) -> Any: ...

    def respond(self, payload: Any, status: int = 200) -> Response: ...


class StoredResponses:
    def __init__(self, gateway: Served, store: ResponseStore) -> None:
        self.gateway = gateway
        self.store = store

    async def _stored(self, request: Request) -> tuple[StoredResponse, Owner]:
        owner = owner_of(self.gateway.require_user(request))
        response_id = request.path_params["response_id"]
        try:
            record = await self.store.get(response_id, owner)
        except ResponsesError as exc:
            raise responses_error(exc) from None
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
        try:
            await self.store.delete(record.id, owner)
        except ResponsesError as exc:
            raise responses_error(exc) from None
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
