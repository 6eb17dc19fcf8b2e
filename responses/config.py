"""The shape of `responses:` in the gateway's config: where stored responses live,
how much of the store each tenant and key may hold, and how long a conversation
may grow before `previous_response_id` refuses to continue it.

Every bound is explicit, and the defaults are chosen so that the store is shared
by tenants without one of them being able to evict another's responses:

- `per_key` and `per_tenant` quotas (entries and JSON bytes). A put over its key's
  or its tenant's quota evicts that key's (that tenant's) own least recently used
  responses, never anyone else's. The tenant is the key's own tenant: a parent's
  quota does not cover its children (each child tenant has its own share).
- `total`: the whole store's safety cap (the process's memory, or the Redis's). A
  put that would cross it is **refused** (the response is still served, not
  stored; counted and logged), never made room for by evicting another tenant.
- `max_chain_depth` / `max_chain_bytes`: what a request continuing a stored
  conversation may replay. The bytes are the stored conversation items (inputs and
  outputs, as JSON), which is exactly what a rebuild decodes, so a continuation
  costs no more than a client sending the same conversation itself.
- `max_item_references`: how many stored items one request may refer to by id
  (`item_reference`); the items' bytes count against `max_chain_bytes` with the
  conversation the request continues.

docs/responses.md ("The store") explains each default; docs/configuration.md lists them.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from common.config import Frozen
from common.secrets import SecretUrl, StoreUrl

MIB = 1024 * 1024
DAY_S = 24 * 3600

#: What OpenAI keeps a response for.
DEFAULT_TTL_S = 30 * DAY_S
#: A record (one response and its request's items) over this is not stored: the
#: request body itself is at most `server.max_request_bytes` (8 MiB by default).
DEFAULT_MAX_RECORD_BYTES = 8 * MIB
DEFAULT_STORE_TIMEOUT_MS = 200
#: Responses a continued conversation may replay: an agent loop makes one response
#: per model turn, and 256 turns is far past any context window for real turns.
DEFAULT_MAX_CHAIN_DEPTH = 256
#: Stored conversation bytes a continued conversation may replay: ~1M tokens of
#: English text, the largest context windows; more than the prompt any model takes.
DEFAULT_MAX_CHAIN_BYTES = 4 * MIB
#: Item references one request may make: four items (a reasoning item, a message,
#: calls) for each of `DEFAULT_MAX_CHAIN_DEPTH` model turns. Each is an index lookup
#: in the store (one Redis script for all of them, so this bounds its time too).
DEFAULT_MAX_ITEM_REFERENCES = 4 * DEFAULT_MAX_CHAIN_DEPTH


class Quota(Frozen):
    """How much of the store one owner (a key, a tenant, everyone) may hold."""

    max_entries: int = Field(gt=0)
    #: JSON bytes of the records (the response and its request's items).
    max_bytes: int = Field(gt=0)


#: A key's share: a quarter of its tenant's, so one key (one agent run amok) never
#: takes all of its tenant's room.
DEFAULT_PER_KEY = Quota(max_entries=2_500, max_bytes=32 * MIB)
#: A tenant's share: one eighth of the total, so eight tenants at their full quota
#: fit before any put is refused.
DEFAULT_PER_TENANT = Quota(max_entries=5_000, max_bytes=64 * MIB)
#: Everyone's: twice the old single global LRU (10,000 entries, 256 MiB) in bytes.
DEFAULT_TOTAL = Quota(max_entries=50_000, max_bytes=512 * MIB)


class ResponsesConfig(Frozen):
    """The gateway-wide `responses:` section."""

    #: `memory` (this process) or a `redis://HOST:PORT/DB` URL (`rediss://`,
    #: `unix://`; shared by every worker and replica, so a conversation continues on
    #: any of them). Its password may be an `env:` reference
    #: (`redis://user:env:REDIS_PASSWORD@host:6379/0`), or `env:NAME` the whole URL;
    #: credentials are masked wherever the config is shown. Restart-only.
    store: StoreUrl = SecretUrl.of("memory")
    #: A Redis call slower than this fails: a read answers 503, a put is counted as
    #: failed (the response is still served). Restart-only.
    store_timeout_ms: int = Field(DEFAULT_STORE_TIMEOUT_MS, gt=0, le=10_000)
    #: Seconds a stored response lives after its put; reads do not extend it.
    ttl_seconds: int = Field(DEFAULT_TTL_S, gt=0)
    max_record_bytes: int = Field(DEFAULT_MAX_RECORD_BYTES, gt=0)
    per_key: Quota = DEFAULT_PER_KEY
    per_tenant: Quota = DEFAULT_PER_TENANT
    total: Quota = DEFAULT_TOTAL
    max_chain_depth: int = Field(DEFAULT_MAX_CHAIN_DEPTH, gt=0, le=100_000)
    max_chain_bytes: int = Field(DEFAULT_MAX_CHAIN_BYTES, gt=0)
    #: `item_reference` input items one request may make; their items' bytes count
    #: against `max_chain_bytes` together with the conversation it continues.
    max_item_references: int = Field(DEFAULT_MAX_ITEM_REFERENCES, gt=0, le=100_000)

    @model_validator(mode="after")
    def _nested_quotas(self) -> ResponsesConfig:
        """A record fits a key's quota, a key's fits its tenant's, a tenant's the total:
        otherwise a bound would be unreachable and a put refused for the wrong reason."""
        problems = []
        if self.max_record_bytes > self.per_key.max_bytes:
            problems.append(
                f"max_record_bytes ({self.max_record_bytes}) is over per_key.max_bytes "
                f"({self.per_key.max_bytes})"
            )
        for inner, outer in (("per_key", "per_tenant"), ("per_tenant", "total")):
            small: Quota = getattr(self, inner)
            large: Quota = getattr(self, outer)
            for field in ("max_entries", "max_bytes"):
                if getattr(small, field) > getattr(large, field):
                    problems.append(
                        f"{inner}.{field} ({getattr(small, field)}) is over "
                        f"{outer}.{field} ({getattr(large, field)})"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def shared(self) -> bool:
        """Is the store shared by other processes (Redis)?"""
        return self.store != "memory"
