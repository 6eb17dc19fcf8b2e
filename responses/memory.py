"""The in-process response store: quotas per key and per tenant, LRU within each, a TTL.

Every record is in three orders: its key's LRU, its tenant's LRU (both least
recently used first) and the store's age order (oldest put first, for the TTL).
A put plans its evictions before it changes anything: first the key's own least
recently used records until the key's quota has room, then the tenant's until the
tenant's has; if the store's `total` would still be crossed, the put is refused
and nothing is evicted. So a put only ever evicts records of its own tenant (of its
own key first), and every bound holds after every operation.

Each key also has an item index (item id -> the record holding the item, and where
its bytes are: responses/store.py "Items by id"), updated when a record is put and
when it leaves (only the entries that still point at it).

Every operation is O(1) amortized (plus the records it evicts or expires, and the
items a put indexes or a removal unindexes) apart from encoding and decoding the
record itself. Expired records leave on the next
operation (the age order), not only under pressure; reads never extend a record's
life (a hard retention bound). Single-threaded by construction: the gateway calls it
from its event loop, and no method awaits inside, so each is atomic.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from responses.config import Quota, ResponsesConfig
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

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry:
    owner: Owner
    record: Encoded
    expires: float
    #: `record.size`, taken once at the put: every eviction plan and removal reads it.
    size: int


@dataclass(slots=True)
class _Share:
    """One key's or one tenant's records, least recently used first, and their bytes."""

    lru: OrderedDict[str, None] = field(default_factory=OrderedDict)
    bytes: int = 0


#: What an owner with no records holds: read, never changed (a fresh `_Share` per
#: lookup would cost an `OrderedDict` each time).
_NOTHING = _Share()


class MemoryResponseStore:
    def __init__(
        self, config: ResponsesConfig | None = None, clock: Clock = time.monotonic
    ) -> None:
        self.config = config or ResponsesConfig()
        self._clock = clock
        self._records: dict[str, _Entry] = {}
        self._by_age: OrderedDict[str, None] = OrderedDict()  # oldest put first
        self._keys: dict[tuple[str, str], _Share] = {}
        self._tenants: dict[str, _Share] = {}
        #: Each key's item index: item id -> the record holding it (its `Encoded.index`
        #: says where in the record the item is).
        self._items: dict[tuple[str, str], dict[str, str]] = {}
        #: JSON bytes of every record (what `total.max_bytes` bounds).
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    def usage(self, owner: Owner) -> tuple[tuple[int, int], tuple[int, int]]:
        """((entries, bytes) of the key, (entries, bytes) of the tenant), for tests
        and the admin view."""
        self._expire()
        key = self._keys.get((owner.tenant, owner.key), _NOTHING)
        tenant = self._tenants.get(owner.tenant, _NOTHING)
        return (len(key.lru), key.bytes), (len(tenant.lru), tenant.bytes)

    def ids(self) -> set[str]:
        self._expire()
        return set(self._records)

    # -- the protocol ------------------------------------------------------------------

    async def get(self, response_id: str, owner: Owner) -> StoredResponse | None:
        entry = self._find(response_id, owner)
        if entry is None:
            return None
        self._touch(response_id, owner)
        record = entry.record
        return decode(owner, record.response, record.items, record.inputs, record.chain)

    async def head(self, response_id: str, owner: Owner) -> Chain | None:
        entry = self._find(response_id, owner)
        return entry.record.chain if entry is not None else None

    async def chain(
        self, response_id: str, owner: Owner, max_depth: int, max_bytes: int
    ) -> History:
        self._expire()
        blobs: list[bytes] = []
        total = 0
        next_id: str | None = response_id
        while next_id is not None:
            entry = self._records.get(next_id)
            if entry is None or entry.owner != owner:
                blobs.reverse()
                return History(blobs, missing=next_id)
            items = entry.record.items
            total += len(items)
            if len(blobs) >= max_depth or total > max_bytes:
                blobs.reverse()
                return History(blobs, over=True)
            blobs.append(items)
            self._touch(next_id, owner)
            next_id = entry.record.previous
        blobs.reverse()
        return History(blobs)

    async def put(self, record: StoredResponse, encoded: Encoded | None = None) -> Put:
        if record.response.get("store") is False:
            return Put.NOT_REQUESTED
        if encoded is None:
            encoded = encode(record)
        size = encoded.size
        config = self.config
        if size > config.max_record_bytes:
            return Put.TOO_LARGE
        self._expire()
        owner, response_id = record.owner, record.id
        records = self._records
        existing = records.get(response_id)
        if existing is not None and existing.owner != owner:
            return Put.CONFLICT
        name = (owner.tenant, owner.key)
        key = self._keys.get(name)
        tenant = self._tenants.get(owner.tenant)
        victims = self._victims(key, tenant, response_id, size)
        freed = 0
        for victim in victims:
            freed += records[victim].size
        if existing is not None:
            victims.append(response_id)
            freed += existing.size
        total = config.total
        if (
            len(records) - len(victims) + 1 > total.max_entries
            or self.bytes - freed + size > total.max_bytes
        ):
            return Put.STORE_FULL
        for victim in victims:
            self._remove(victim)
        records[response_id] = _Entry(owner, encoded, self._clock() + config.ttl_seconds, size)
        self._by_age[response_id] = None
        key, tenant = self._shares(name)
        key.lru[response_id] = None
        key.bytes += size
        tenant.lru[response_id] = None
        tenant.bytes += size
        self.bytes += size
        if encoded.index:
            index = self._items.get(name)
            if index is None:
                index = self._items[name] = {}
            for item_id in encoded.index:
                index[item_id] = response_id  # the last put wins
        return Put.STORED

    async def delete(self, response_id: str, owner: Owner) -> bool:
        if self._find(response_id, owner) is None:
            return False
        self._remove(response_id)
        return True

    async def item_sizes(self, item_ids: Sequence[str], owner: Owner) -> list[int | None]:
        return [None if found is None else found[1][1] for found in self._locate(item_ids, owner)]

    async def read_items(self, item_ids: Sequence[str], owner: Owner) -> list[bytes | None]:
        out: list[bytes | None] = []
        touched: set[str] = set()
        for found in self._locate(item_ids, owner):
            if found is None:
                out.append(None)
                continue
            response_id, place = found
            out.append(self._records[response_id].record.item(place))
            if response_id not in touched:
                touched.add(response_id)
                self._touch(response_id, owner)
        return out

    async def aclose(self) -> None:
        return None

    # -- bookkeeping -------------------------------------------------------------------

    def _find(self, response_id: str, owner: Owner) -> _Entry | None:
        self._expire()
        entry = self._records.get(response_id)
        return entry if entry is not None and entry.owner == owner else None

    def _locate(
        self, item_ids: Sequence[str], owner: Owner
    ) -> list[tuple[str, tuple[int, int]] | None]:
        """Where each item is among this owner's records: (record id, its place in the
        record), or None."""
        self._expire()
        index = self._items.get((owner.tenant, owner.key), {})
        out: list[tuple[str, tuple[int, int]] | None] = []
        for item_id in item_ids:
            response_id = index.get(item_id)
            entry = self._records.get(response_id) if response_id is not None else None
            if response_id is None or entry is None or entry.owner != owner:
                out.append(None)
            else:
                out.append((response_id, entry.record.index[item_id]))
        return out

    def _shares(self, name: tuple[str, str]) -> tuple[_Share, _Share]:
        """The shares of the key `name` (tenant, key) and of its tenant, made if new."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = _Share()
        tenant = self._tenants.get(name[0])
        if tenant is None:
            tenant = self._tenants[name[0]] = _Share()
        return key, tenant

    def _victims(
        self, key: _Share | None, tenant: _Share | None, replacing: str, size: int
    ) -> list[str]:
        """The owner's own records a put of `size` bytes must evict, in order: the
        key's least recently used until the key's quota has room, then the tenant's
        until the tenant's has. `replacing` (the same id, put again) leaves anyway.
        `key` and `tenant` are the owner's shares (None: it holds nothing yet)."""
        config = self.config
        if not (_over(key, config.per_key, size) or _over(tenant, config.per_tenant, size)):
            # The usual put: room in both shares even before a record it replaces
            # leaves, so a plan would find nothing to evict.
            return []
        return self._plan(key, tenant, replacing, size)

    def _plan(
        self, key: _Share | None, tenant: _Share | None, replacing: str, size: int
    ) -> list[str]:
        """`_victims`, worked out in full: each share's least recently used first,
        until it has room."""
        config = self.config
        gone = self._records.get(replacing)
        victims: list[str] = []
        chosen: set[str] = set()
        gone_count, gone_size = (1, gone.size) if gone is not None else (0, 0)
        freed = 0
        for share, quota in ((key, config.per_key), (tenant, config.per_tenant)):
            if share is None:
                continue  # it holds nothing: nothing to evict
            # The key's victims are the tenant's too: they count for both.
            entries = len(share.lru) - gone_count - len(victims)
            used = share.bytes - gone_size - freed
            for candidate in share.lru:
                if entries + 1 <= quota.max_entries and used + size <= quota.max_bytes:
                    break
                if candidate == replacing or candidate in chosen:
                    continue
                victims.append(candidate)
                chosen.add(candidate)
                size_of = self._records[candidate].size
                entries -= 1
                used -= size_of
                freed += size_of
        return victims

    def _touch(self, response_id: str, owner: Owner) -> None:
        self._keys[(owner.tenant, owner.key)].lru.move_to_end(response_id)
        self._tenants[owner.tenant].lru.move_to_end(response_id)

    def _remove(self, response_id: str) -> None:
        entry = self._records.pop(response_id, None)
        if entry is None:
            return
        del self._by_age[response_id]
        size = entry.size
        self.bytes -= size
        owner = entry.owner
        key = (owner.tenant, owner.key)
        if entry.record.index:
            index = self._items[key]
            for item_id in entry.record.index:
                if index.get(item_id) == response_id:
                    del index[item_id]  # an entry a later record took stays
            if not index:
                del self._items[key]
        if _release(self._keys[key], response_id, size):
            del self._keys[key]
        if _release(self._tenants[owner.tenant], response_id, size):
            del self._tenants[owner.tenant]

    def _expire(self) -> None:
        """Drop expired records, oldest first: they leave memory when their time is
        up, not only when something else needs the room."""
        now = self._clock()
        while self._by_age:
            oldest = next(iter(self._by_age))
            if self._records[oldest].expires > now:
                return
            self._remove(oldest)


def _over(share: _Share | None, quota: Quota, size: int) -> bool:
    """Does one more record of `size` bytes take `share` (None: an empty one) over
    `quota`? When neither the key's nor the tenant's is, a put evicts nothing, and
    `_victims` says so without planning."""
    entries, used = (len(share.lru), share.bytes) if share is not None else (0, 0)
    return entries + 1 > quota.max_entries or used + size > quota.max_bytes


def _release(share: _Share, response_id: str, size: int) -> bool:
    """Takes a record out of `share`; True when the share is then empty."""
    del share.lru[response_id]
    share.bytes -= size
    return not share.lru
