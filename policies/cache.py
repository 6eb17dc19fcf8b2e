"""The decision cache: LRU with a time to live, one per rule set.

An outcome is a pure function of the attributes its rule reads, so the key is the
tenant and exactly the values of the attributes the cached rules read
(`policies.ruleset` builds it): `hour`/`weekday` are in the key only when a rule
reads them, and a rule that does not read `prompt_tokens` hits across prompt sizes.
`max_entries` bounds memory; `ttl_seconds` bounds how long an entry for a key
nobody repeats stays resident. The cache lives as long as its rule set (a config
version): a reload starts an empty one, so nothing cached outlives its rules.

Not thread-safe: `decide` runs on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Clock = Callable[[], float]
V = TypeVar("V")


class DecisionCache(Generic[V]):
    def __init__(self, max_entries: int, ttl_seconds: float, clock: Clock = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            self.expirations += 1
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.max_entries <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1
