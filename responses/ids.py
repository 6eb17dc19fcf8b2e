"""Identifiers for responses and their items, shaped like OpenAI's (`resp_...`).

Random, not derived from content: two identical requests are two responses. 24
random bytes (48 hex digits) make ids unguessable, so an id seen in a log does not
let anyone guess a neighbour's; owner checks in the store still decide access.

The bytes are the operating system's CSPRNG's (`os.urandom`), drawn `POOL_BYTES` at a
time and each byte used once: a request makes three ids, and a `getrandom` system
call per id cost more than the rest of making it. A forked child never reuses its
parent's undrawn bytes (the pool is emptied in the child at fork), so two workers
never make the same id.
"""

from __future__ import annotations

import os
import threading

RANDOM_BYTES = 24
#: Random bytes drawn from the OS at a time: 170 ids a system call.
POOL_BYTES = 4096


class _Pool:
    """Random bytes drawn ahead, each handed out once (under a lock: an id may be
    made on a worker thread too)."""

    __slots__ = ("at", "data", "lock")

    def __init__(self) -> None:
        self.data = b""
        self.at = 0
        self.lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self.lock:
            at = self.at
            if at + count > len(self.data):
                self.data, at = os.urandom(max(POOL_BYTES, count)), 0
            self.at = at + count
            return self.data[at : at + count]

    def forget(self) -> None:
        self.data, self.at, self.lock = b"", 0, threading.Lock()


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def new_id(prefix: str) -> str:
    """`prefix` + `_` + 48 random hex digits: `resp`, `msg`, `fc`, `fco`, `rs`..."""
    return f"{prefix}_{_POOL.take(RANDOM_BYTES).hex()}"


def new_response_id() -> str:
    return new_id("resp")
