"""Admissions per second through the limit stores, and what coalescing buys on Redis.

    .venv/bin/python bench/limit_stores.py [--quick]

Each mode admits and settles through `limits.Limiter` for one level with requests,
tokens and concurrency limits (set far above the load, so nothing is refused and
every admission does the full work): the memory store; Redis one admission at a
time (every admission a round trip); Redis with 64 admissions in flight at once
(where coalescing puts many into one script call); and, for reference, redis-py
running a trivial script one call at a time and 64 to a pipeline: the floor a
Python client on this machine can reach. A real `redis-server` is started on a free
loopback port with a temporary directory, and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from processes import redis_server

from limits import Demand, Level, Limiter, MemoryStore
from limits.config import LimitsConfig
from limits.redis_store import RedisStore

LEVELS = [
    Level(
        "key:bench",
        LimitsConfig(
            requests_per_minute=10_000_000, tokens_per_minute=10**12, max_concurrent=1_000_000
        ),
    )
]
CONCURRENCY = 64


async def measure(one: Callable[[], Awaitable[None]], count: int, parallel: int) -> list[float]:
    """Runs `one` `count` times, `parallel` at once; each call's latency in ms."""
    latencies: list[float] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await one()
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return latencies


def admit_and_settle(limiter: Limiter) -> Callable[[], Awaitable[None]]:
    async def one() -> None:
        admission = await limiter.admit(LEVELS, Demand(100))
        assert admission.reservation is not None, admission.refusal
        await limiter.settle(admission.reservation, tokens=80)

    return one


async def run(url: str, count: int) -> list[tuple[str, float, list[float]]]:
    rows = []

    async def mode(name: str, one: Callable[[], Awaitable[None]], parallel: int) -> None:
        await measure(one, count // 10, parallel)  # warm-up
        started = time.perf_counter()
        latencies = await measure(one, count, parallel)
        rows.append((name, count / (time.perf_counter() - started), latencies))

    memory = Limiter(MemoryStore())
    await mode("memory store, 1 at a time", admit_and_settle(memory), 1)
    await mode(f"memory store, {CONCURRENCY} in flight", admit_and_settle(memory), CONCURRENCY)
    await memory.aclose()
    redis_limiter = Limiter(RedisStore(url, timeout_s=5.0))
    await mode("Redis store, 1 at a time", admit_and_settle(redis_limiter), 1)
    await mode(
        f"Redis store, {CONCURRENCY} in flight (coalesced)",
        admit_and_settle(redis_limiter),
        CONCURRENCY,
    )
    await redis_limiter.aclose()
    client = aioredis.Redis.from_url(url)
    script = client.register_script("return redis.call('INCR', KEYS[1])")

    async def evalsha() -> None:
        await script(keys=["bench:floor"])

    async def pipelined() -> None:
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(CONCURRENCY):
                await script(keys=["bench:floor"], client=pipe)
            await pipe.execute()

    await mode("redis-py EVALSHA, 1 at a time (floor)", evalsha, 1)
    started = time.perf_counter()
    latencies = await measure(pipelined, count // CONCURRENCY, 1)
    per_second = (count // CONCURRENCY) * CONCURRENCY / (time.perf_counter() - started)
    rows.append((f"redis-py EVALSHA, pipelines of {CONCURRENCY} (floor)", per_second, latencies))
    await client.aclose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 operations a mode")
    args = parser.parse_args()
    with redis_server() as url:
        rows = asyncio.run(run(url, 1_000 if args.quick else 10_000))
    print("| mode | admissions/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for name, per_second, latencies in rows:
        q = statistics.quantiles(latencies, n=100)
        print(f"| {name} | {per_second:,.0f} | {q[49]:.3f} | {q[98]:.3f} |")
    print("\n(floor rows: one trivial script call per operation; admission rows: admit + settle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
