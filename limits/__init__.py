"""Rate limits and quotas: reserve at admission, settle with actual usage, in this
process or on Redis (docs/limits.md).

    limiter = Limiter(MemoryStore())          # or RedisStore("redis://...")
    admission = await limiter.admit([Level("tenant:acme", config)], Demand(900, 0.01))
    ...
    await limiter.settle(admission.reservation, tokens=612, cost_usd=0.007)

`limits.redis_store.RedisStore` is imported from its module (it needs redis-py).
"""

from limits.claims import BucketState, Demand, Level
from limits.errors import StoreUnavailable
from limits.limiter import Admission, Limiter, Refusal, Reservation
from limits.memory import MemoryStore
from limits.store import Store

__all__ = [
    "Admission",
    "BucketState",
    "Demand",
    "Level",
    "Limiter",
    "MemoryStore",
    "Refusal",
    "Reservation",
    "Store",
    "StoreUnavailable",
]
