"""The Redis response store: the memory store's quotas and LRU, shared by every replica.

A conversation started on one gateway process continues on any other that shares
the Redis (`responses.store: redis://...`). Puts, reads that count as a use, chain
walks, deletes and item lookups (all of a request's ids at once) are one Lua script
each (responses/lua.py), so the quotas and the item index hold exactly under
concurrent puts from many replicas; `head` is one `HMGET`. Every call is one round
trip; a chain walk too, whatever its depth.

**When Redis does not answer** (down, partitioned, or slower than `timeout_s`), no
call waits longer than `timeout_s` (connecting included), and every call raises
`StoreUnavailable`: the gateway answers a read (`GET`, `DELETE`, `input_items`, a
`previous_response_id`) with 503 `response_store_unavailable` in OpenAI's envelope,
and serves a new response without storing it (the put is counted as failed). The
first failure after a success is logged (with the store's address, credentials
masked), then nothing until Redis answers again, which is logged too: an outage is
two log lines, not one per request. A connection error is retried once at once (a
pooled connection may be stale after Redis restarted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from redis.commands.core import AsyncScript

from common.redis_client import Reachability, RedisDown, connect
from common.secrets import mask_url
from responses import lua
from responses.config import ResponsesConfig
from responses.errors import StoreUnavailable
from responses.store import (
    Chain,
    Encoded,
    History,
    Owner,
    Put,
    StoredResponse,
    decode,
    encode,
)

log = logging.getLogger("seawall.responses")

#: Every key this store writes starts with this.
PREFIX = "seawall:responses:"


class RedisResponseStore:
    def __init__(self, config: ResponsesConfig, *, prefix: str = PREFIX) -> None:
        self.config = config
        self.url = str(config.store)
        self.timeout_s = config.store_timeout_ms / 1000
        self.prefix = prefix
        self._client = connect(self.url, self.timeout_s)
        self._put: AsyncScript = self._client.register_script(lua.PUT)
        self._get: AsyncScript = self._client.register_script(lua.GET)
        self._chain: AsyncScript = self._client.register_script(lua.CHAIN)
        self._delete: AsyncScript = self._client.register_script(lua.DELETE)
        self._item_sizes: AsyncScript = self._client.register_script(lua.ITEM_SIZES)
        self._read_items: AsyncScript = self._client.register_script(lua.READ_ITEMS)
        self.reach = Reachability(
            log,
            "response store",
            mask_url(self.url),
            "reads answer 503 and new responses are not stored",
            self.timeout_s,
        )

    @property
    def where(self) -> str:
        """The URL with its credentials masked."""
        return self.reach.where

    @property
    def failures(self) -> int:
        """Calls that failed or timed out (a metric)."""
        return self.reach.failures

    async def _call(self, run: Any) -> Any:
        try:
            return await self.reach.call(run)
        except RedisDown as down:
            raise StoreUnavailable(down.reason) from None

    def _script(self, script: AsyncScript, *args: Any) -> Any:
        return self._call(script(args=[self.prefix, *args]))

    async def get(self, response_id: str, owner: Owner) -> StoredResponse | None:
        found = await self._script(self._get, response_id, owner.tenant, owner.key)
        if not found:
            return None
        response, items, inputs, depth, size = found
        return decode(owner, response, items, int(inputs), Chain(int(depth), int(size)))

    async def head(self, response_id: str, owner: Owner) -> Chain | None:
        fields = await self._call(
            self._client.hmget(f"{self.prefix}r:{response_id}", "t", "k", "d", "b")
        )
        tenant, key, depth, size = fields
        if tenant is None or tenant.decode() != owner.tenant or key.decode() != owner.key:
            return None
        return Chain(int(depth), int(size))

    async def chain(
        self, response_id: str, owner: Owner, max_depth: int, max_bytes: int
    ) -> History:
        found = await self._script(
            self._chain, response_id, owner.tenant, owner.key, max_depth, max_bytes
        )
        status = found[0]
        if status == b"missing":
            return History([], missing=found[1].decode())
        if status == b"over":
            return History([], over=True)
        return History(found[:0:-1])  # newest first from Redis, oldest first here

    async def put(self, record: StoredResponse, encoded: Encoded | None = None) -> Put:
        if record.response.get("store") is False:
            return Put.NOT_REQUESTED
        if encoded is None:
            encoded = encode(record)
        config = self.config
        if encoded.size > config.max_record_bytes:
            return Put.TOO_LARGE
        owner = record.owner
        result = await self._script(
            self._put,
            record.id,
            owner.tenant,
            owner.key,
            encoded.response,
            encoded.items,
            encoded.inputs,
            encoded.previous or "",
            encoded.chain.depth,
            encoded.chain.bytes,
            config.ttl_seconds * 1000,
            config.per_key.max_entries,
            config.per_key.max_bytes,
            config.per_tenant.max_entries,
            config.per_tenant.max_bytes,
            config.total.max_entries,
            config.total.max_bytes,
            lua.GRACE_MS,
            lua.PURGE_BATCH,
            encoded.index_bytes,
            orjson.dumps(list(encoded.index)),
            *(x for item_id, place in encoded.index.items() for x in (item_id, *place)),
        )
        return Put(result.decode())

    async def delete(self, response_id: str, owner: Owner) -> bool:
        deleted = await self._script(self._delete, response_id, owner.tenant, owner.key)
        return bool(deleted)

    async def item_sizes(self, item_ids: Sequence[str], owner: Owner) -> list[int | None]:
        if not item_ids:
            return []
        found = await self._script(self._item_sizes, owner.tenant, owner.key, *item_ids)
        return [int(size) if int(size) >= 0 else None for size in found]

    async def read_items(self, item_ids: Sequence[str], owner: Owner) -> list[bytes | None]:
        if not item_ids:
            return []
        found = await self._script(self._read_items, owner.tenant, owner.key, *item_ids)
        return [item or None for item in found]

    async def aclose(self) -> None:
        await self._client.aclose()
