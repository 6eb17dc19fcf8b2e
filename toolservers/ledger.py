"""The ledger of results served per key: which MCP results a key may show a model.

When an agent sends an MCP tool's result on to the model (a `role: tool` message,
a `function_call_output`), it almost never forwards the receipt in `_meta`: agent
frameworks keep the content and drop the rest. The ledger lets the gateway check
the content anyway: every result `/mcp` served is remembered for its key as a few
fingerprints (toolservers/fingerprints.py), and a tool message is recognised when
one of its fingerprints is among them.

Two stores keep it, with the same bounds and the same choices of what goes first:
`MemoryLedger` (this process) and `RedisLedger` (toolservers/redis_ledger.py,
`mcp.ledger.store: redis://...`), shared by every worker and replica, so a result
served by one is recognised by any other.

Limits (and why):
- **Bounded**: `max_entries_per_key` results and `max_bytes_per_key` bytes of
  fingerprints per key (the oldest goes first); `max_keys_per_tenant` keys and
  `max_bytes_per_tenant` bytes per tenant (the tenant's least recently served key,
  or its oldest results, go first); `max_keys` keys in all, where a new key
  evicts only its own tenant's least recently served key, and a tenant with none
  to give up is not recorded (its results still carry receipts); `ttl_s`. So one
  tenant can only ever evict its own. A genuine result evicted or expired is no
  longer recognised: a false "forged", which the bounds must be sized to avoid.
- **Not bound to the model's call**: an MCP call has no tool_call_id, so a genuine
  result can be shown again (another conversation of the same key) while it is
  remembered; it is bound to the key, the tool and the arguments.
- **In memory, per process**: a result served by another worker or replica is
  unknown to a `MemoryLedger`; a receipt, which any replica with the same keys
  verifies, does not have this limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from toolservers.config import LedgerSettings
from toolservers.fingerprints import entry_size


class LedgerUnavailable(Exception):
    """The ledger's store did not answer in time: whether a result was served is
    unknown (the gateway answers per `mcp.ledger.on_store_failure`)."""


class LedgerStore(Protocol):
    """Where the results served per key are remembered."""

    settings: LedgerSettings
    #: Results evicted by a bound (not by expiry), results not recorded (the ledger
    #: was full and their tenant had no key to give up), and store calls that failed:
    #: metrics.
    evicted: int
    unrecorded: int

    @property
    def failures(self) -> int: ...

    async def record(self, key_id: str, tenant: str, prints: Sequence[bytes]) -> None:
        """Remembers a result served to `key_id` (of `tenant`) by its fingerprints.
        Never raises: a result the store could not record is counted, and still
        carries its receipts."""
        ...

    async def recognises(self, key_id: str, prints: Sequence[bytes]) -> bool:
        """Was `key_id` served, within the TTL, a result with one of `prints`?
        Raises `LedgerUnavailable` when the store cannot say."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    expires: float
    prints: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return entry_size(len(self.prints))


class _KeyLedger:
    __slots__ = ("bytes", "entries", "index", "key_id", "next", "tenant")

    def __init__(self, key_id: str, tenant: str) -> None:
        self.key_id = key_id
        self.tenant = tenant
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        #: fingerprint -> the newest entry holding it
        self.index: dict[bytes, int] = {}
        self.bytes = 0
        self.next = 0


class _TenantLedger:
    """A tenant's keys (least recently served first) and the bytes they hold."""

    __slots__ = ("bytes", "keys")

    def __init__(self) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.bytes = 0


class MemoryLedger:
    """The ledger in this process's memory: O(1) per record and lookup."""

    def __init__(
        self, settings: LedgerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys: dict[str, _KeyLedger] = {}
        self._tenants: dict[str, _TenantLedger] = {}
        self.evicted = 0
        #: Results not recorded: the ledger was full and their tenant had no key to
        #: give up (a metric; such results are still recognised by their receipts).
        self.unrecorded = 0

    async def record(self, key_id: str, tenant: str, prints: Sequence[bytes]) -> None:
        self.record_now(key_id, tenant, prints)

    def record_now(self, key_id: str, tenant: str, prints: Sequence[bytes]) -> None:
        """`record`, for callers that are not coroutines."""
        if not self.settings.enabled or not prints:
            return
        now = self._clock()
        ledger = self._keys.get(key_id)
        if ledger is None:
            ledger = self._admit_key(key_id, tenant)
            if ledger is None:
                self.unrecorded += 1
                return
        owner = self._tenants[ledger.tenant]
        owner.keys.move_to_end(key_id)
        entry = _Entry(now + self.settings.ttl_s, tuple(prints))
        number = ledger.next
        ledger.next += 1
        ledger.entries[number] = entry
        ledger.bytes += entry.size
        owner.bytes += entry.size
        for digest in prints:
            ledger.index[digest] = number
        self._trim(ledger, now)
        # Over the tenant's bytes: its least recently served keys' oldest results go.
        while owner.bytes > self.settings.max_bytes_per_tenant:
            victim = self._keys[next(iter(owner.keys))]
            self._drop_oldest(victim)
            self.evicted += 1

    def _admit_key(self, key_id: str, tenant: str) -> _KeyLedger | None:
        """A ledger for a key not seen yet, room made within its own tenant only; None
        when the ledger is full and the tenant has no key to give up."""
        owner = self._tenants.setdefault(tenant, _TenantLedger())
        settings = self.settings
        full = len(self._keys) >= settings.max_keys
        if owner.keys and (full or len(owner.keys) >= settings.max_keys_per_tenant):
            self._forget_key(next(iter(owner.keys)))
            self.evicted += 1
        elif full:
            if not owner.keys:
                del self._tenants[tenant]
            return None
        ledger = self._keys[key_id] = _KeyLedger(key_id, tenant)
        self._tenants.setdefault(tenant, _TenantLedger()).keys[key_id] = None
        return ledger

    def _forget_key(self, key_id: str) -> None:
        ledger = self._keys.pop(key_id)
        owner = self._tenants[ledger.tenant]
        del owner.keys[key_id]
        owner.bytes -= ledger.bytes
        if not owner.keys:
            del self._tenants[ledger.tenant]

    def _trim(self, ledger: _KeyLedger, now: float) -> None:
        settings = self.settings
        while ledger.entries:
            oldest = next(iter(ledger.entries.values()))
            over = (
                len(ledger.entries) > settings.max_entries_per_key
                or ledger.bytes > settings.max_bytes_per_key
            )
            if not over and oldest.expires > now:
                return
            self._drop_oldest(ledger)
            self.evicted += over

    def _drop_oldest(self, ledger: _KeyLedger) -> None:
        number, oldest = ledger.entries.popitem(last=False)
        ledger.bytes -= oldest.size
        self._tenants[ledger.tenant].bytes -= oldest.size
        for digest in oldest.prints:
            if ledger.index.get(digest) == number:
                del ledger.index[digest]
        if not ledger.entries:
            self._forget_key(ledger.key_id)

    async def recognises(self, key_id: str, prints: Sequence[bytes]) -> bool:
        return self.recognises_now(key_id, prints)

    def recognises_now(self, key_id: str, prints: Sequence[bytes]) -> bool:
        """`recognises`, for callers that are not coroutines."""
        ledger = self._keys.get(key_id)
        if ledger is None:
            return False
        now = self._clock()
        for digest in prints:
            number = ledger.index.get(digest)
            if number is not None and ledger.entries[number].expires > now:
                return True
        return False

    @property
    def failures(self) -> int:
        """Always 0: memory does not fail (the protocol's metric)."""
        return 0

    async def aclose(self) -> None:
        return None

    def served(self, key_id: str) -> int:
        """Results remembered for `key_id` (expired ones included until trimmed)."""
        ledger = self._keys.get(key_id)
        return 0 if ledger is None else len(ledger.entries)

    def size(self, key_id: str) -> int:
        ledger = self._keys.get(key_id)
        return 0 if ledger is None else ledger.bytes
