"""The one way seawall's Redis-backed stores connect: bounded in time, retried once.

Limits, the response store and the MCP result ledger each talk to a Redis of their
own config; all of them need the same client: no call (connecting included) waits
longer than the store's timeout, and a connection error is retried once at once (a
pooled connection may be stale after Redis restarted), never with backoff (a
request is waiting). Importing this imports redis-py, so only a config that names a
Redis store does (docs/performance.md, "Start-up and idle memory").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

T = TypeVar("T")

#: Lua that sets `now` to Redis's clock in milliseconds: every store's scripts decide
#: by the server's clock, one for every replica, never by a caller's.
LUA_NOW_MS = r"""
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

#: What a store call may raise when Redis does not answer: catch these, all of them.
FAILURES: tuple[type[BaseException], ...] = (TimeoutError, RedisError, OSError)


def connect(url: str, timeout_s: float) -> aioredis.Redis:
    """A client of the Redis at `url` (`redis://`, `rediss://`, `unix://`); it
    connects on first use.

    Connecting is bounded by `timeout_s`; a command is not, here: every store call
    runs under `asyncio.timeout` (`Reachability.call`, the limit store's `_call`),
    which bounds the whole call, queueing and retry included. A socket timeout as
    well made redis-py wrap every write in `asyncio.wait_for`, a task per command
    (a tenth of a limited request's work on the Redis path). A call cut off by the
    outer timeout is cancelled, and redis-py drops the connection it was on (an
    answer left unread would otherwise go to the next command)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=None,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


def failure_reason(exc: BaseException) -> str:
    """A failed call's reason for a log line or a metric label: the exception's type
    and message (the URL is never in it: callers add it masked)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class RedisDown(Exception):
    """A call to a store's Redis failed or did not answer in time; `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reachability:
    """One store's calls to its Redis, timed, counted and logged as an outage: the
    first failure after an answer is logged (with the store's address, credentials
    masked, and what the gateway does meanwhile), then nothing until Redis answers
    again, which is logged too. An outage is two log lines, not one per request."""

    def __init__(
        self, log: logging.Logger, store: str, where: str, meanwhile: str, timeout_s: float
    ) -> None:
        self.log = log
        self.store = store
        self.where = where
        self.meanwhile = meanwhile
        self.timeout_s = timeout_s
        #: Calls that failed or timed out (a metric).
        self.failures = 0
        self._down = False

    async def call(self, run: Awaitable[T]) -> T:
        """`run`'s answer; `RedisDown` when it fails or takes over the timeout."""
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await run
        except FAILURES as exc:
            reason = failure_reason(exc)
            self.failures += 1
            if not self._down:
                self._down = True
                self.log.warning(
                    "%s: redis at %s unavailable (%s); %s until it answers again",
                    self.store,
                    self.where,
                    reason,
                    self.meanwhile,
                )
            raise RedisDown(reason) from None
        if self._down:
            self._down = False
            self.log.info("%s: redis at %s answers again", self.store, self.where)
        return result
