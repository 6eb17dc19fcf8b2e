"""Response and item ids: OpenAI's shape, never repeated, not even across a fork or
between threads, though their random bytes are drawn from the OS in pools."""

from __future__ import annotations

import os
import re
import threading

from responses import ids
from responses.ids import POOL_BYTES, RANDOM_BYTES, new_id, new_response_id

ID = re.compile(r"^resp_[0-9a-f]{48}$")


def test_ids_have_openais_shape_and_never_repeat_across_pools() -> None:
    count = 3 * POOL_BYTES // RANDOM_BYTES + 7  # past a few refills
    made = [new_response_id() for _ in range(count)]
    assert all(ID.match(made_id) for made_id in made)
    assert len(set(made)) == count
    assert new_id("msg").startswith("msg_")


def test_each_random_byte_is_handed_out_once() -> None:
    pool = ids._Pool()
    taken = b"".join(pool.take(RANDOM_BYTES) for _ in range(POOL_BYTES // RANDOM_BYTES))
    assert taken == pool.data[: len(taken)]  # consecutive slices of one draw
    again = pool.take(RANDOM_BYTES)
    assert len(again) == RANDOM_BYTES and again not in taken
    assert len(pool.take(POOL_BYTES + 1)) == POOL_BYTES + 1  # a take larger than a pool


def test_a_forked_child_does_not_reuse_its_parents_pool() -> None:
    new_response_id()  # the parent holds undrawn bytes
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, new_response_id().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert status == 0
    theirs = os.read(read, 100).decode()
    os.close(read)
    assert ID.match(theirs)
    assert theirs != new_response_id()


def test_threads_never_get_the_same_id() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        for _ in range(5000):
            into.append(new_id("fc"))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [made_id for into in made for made_id in into]
    assert len(set(every)) == len(every) == 20_000
