"""What continuing a stored conversation costs: rebuild time, and the event loop's stalls.

    .venv/bin/python bench/response_chain.py [--quick] [--redis]

A continued conversation (`previous_response_id`) is rebuilt in
`ContinueConversation` (gateway/stages/responses.py): one chain walk in the store
(`read_history`), then decoding each record's items and joining them in front of the
request's messages (`rebuild`), on the event loop in slices of `SLICE_S` (it yields
between records). This measures, for chains of several depths and sizes:

- the rebuild: walk + decode + join, best and median of N, never yielding (its
  whole cost);
- the event loop's longest stall while one continuation is rebuilt and its
  messages freed (a monitor task sleeping 1 ms at a time records how late it wakes
  up), three ways: sliced (what the gateway does: `rebuild`, then `release` after
  the response), in a worker thread (`asyncio.to_thread`, the alternative the
  design weighed), and in one piece on the loop (both freeing in one piece, as a
  request's body is); then serializing the joined body once (what `Forward` does
  with any request that large, continued or not), and freeing it in one piece;
- for comparison, the same conversation sent directly as `input`: parsing and
  translating it (`ParseJSON`, `TranslateResponses`) holds the loop in one piece;
- with `--redis`, the chain walk on a real `redis-server` (one script call).

The loop is a shared machine's: run it when nothing else is (`uptime`), and read the
stalls against the first row, where there is nothing to rebuild.

Conversations: `agent` turns are what an Agents SDK run stores per model call (a
user message or a tool output, a function call, an assistant message: ~1.5 KB); a
`large` turn is one with 16 KB of text; `dense` is the adversarial shape (items of
many tiny content parts), the slowest JSON to decode per byte.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from responses.config import Quota, ResponsesConfig
from responses.conversation import (
    SLICE_S,
    Bounds,
    decode_history,
    read_history,
    rebuild,
    release,
)
from responses.memory import MemoryResponseStore
from responses.redis_store import RedisResponseStore
from responses.request import ChatTranslation, to_chat
from responses.store import EMPTY, Chain, Owner, ResponseStore, StoredResponse

OWNER = Owner("bench", "bench#0")
BIG = Quota(max_entries=1_000_000, max_bytes=1 << 34)
CONFIG = ResponsesConfig(
    per_key=BIG,
    per_tenant=BIG,
    total=BIG,
    max_record_bytes=64 << 20,
    max_chain_depth=100_000,
    max_chain_bytes=1 << 34,
)
BOUNDS = Bounds(100_000, 1 << 34)
MONITOR_TICK_S = 0.001


def message(role: str, text: str, k: int) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": text}
    if role == "assistant":
        part["annotations"] = []
    return {
        "id": f"msg_{k}",
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [part],
    }


def agent_turn(k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(input items, output items) of one agent turn: a tool output answering the
    previous turn's call (a user question on the first), then a call and a message."""
    inputs = (
        [message("user", "Plan a trip to Lisbon next month; check the weather. " * 4, k)]
        if k == 0
        else [
            {
                "id": f"fco_{k}",
                "type": "function_call_output",
                "call_id": f"call_{k - 1}",
                "output": orjson.dumps(
                    {
                        "forecast": [
                            {"day": d, "high": 21, "low": 12, "summary": "partly cloudy"}
                            for d in range(7)
                        ]
                    }
                ).decode(),
                "status": "completed",
            }
        ]
    )
    outputs = [
        message("assistant", "Checking the next source for your trip. " * 8, k),
        {
            "id": f"fc_{k}",
            "type": "function_call",
            "call_id": f"call_{k}",
            "name": "get_weather",
            "arguments": '{"city": "Lisbon", "days": 7}',
            "status": "completed",
        },
    ]
    return inputs, outputs


def large_turn(k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """~16 KB: 256 of them are about max_chain_bytes."""
    return [message("user", "word " * 2650, k)], [message("assistant", "reply " * 400, k)]


def dense_turn(k: int, count: int = 460) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """~16 KB of one-character text parts."""
    parts = [{"type": "input_text", "text": "x"} for _ in range(count)]
    item = {
        "id": f"msg_{k}",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": parts,
    }
    return [item], [message("assistant", "ok", k)]


Turn = Callable[[int], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


async def build_chain(store: ResponseStore, depth: int, turn: Turn) -> tuple[str, Chain]:
    previous: str | None = None
    history: Chain = EMPTY
    for k in range(depth):
        inputs, outputs = turn(k)
        response = {
            "id": f"resp_{k}",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "previous_response_id": previous,
            "store": True,
            "output": outputs,
        }
        await store.put(StoredResponse(response, inputs, OWNER, history))
        head = await store.head(f"resp_{k}", OWNER)
        assert head is not None
        previous, history = f"resp_{k}", head
    assert previous is not None
    return previous, history


def continuation(previous: str, turn: Turn, depth: int) -> ChatTranslation:
    """The request continuing the chain: the tool output for the last call (agent), or
    a question."""
    if turn is agent_turn:
        item: Any = [
            {"type": "function_call_output", "call_id": f"call_{depth - 1}", "output": "done"}
        ]
    else:
        item = "And then?"
    return to_chat({"model": "m", "input": item, "previous_response_id": previous})


def in_thread(translation: ChatTranslation, messages: list[Any], blobs: list[bytes]) -> list[Any]:
    return asyncio.run(rebuild(translation, messages, blobs, slice_s=1e9))


async def rebuild_once(
    store: ResponseStore, head: str, translation: ChatTranslation, how: str
) -> list[Any]:
    """What `ContinueConversation` and `ReleaseConversation` do (`sliced`: build and
    free the messages in slices), or the rebuild in one piece on the loop (`inline`)
    or in a worker thread (`thread`), its result then freed in one piece."""
    blobs = await read_history(store, head, OWNER, BOUNDS)
    messages = list(translation.chat["messages"])
    if how == "thread":
        return await asyncio.to_thread(in_thread, translation, messages, blobs)
    joined = await rebuild(translation, messages, blobs, SLICE_S if how == "sliced" else 1e9)
    if how == "sliced":
        await release(joined)
    return joined


async def longest_stall(work: Callable[[], Any]) -> tuple[float, float]:
    """(the loop's longest stall in ms while `work` runs, `work`'s own time in ms)."""
    done = False
    worst = 0.0

    async def monitor() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(MONITOR_TICK_S)
            worst = max(worst, time.perf_counter() - before - MONITOR_TICK_S)

    watcher = asyncio.create_task(monitor())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await work()
    took = time.perf_counter() - started
    done = True
    await watcher
    return worst * 1000, took * 1000


async def measure(store: ResponseStore, depth: int, turn: Turn, repeat: int) -> dict[str, Any]:
    head, chain = await build_chain(store, depth, turn)
    translation = continuation(head, turn, depth)
    # As the gateway does once started: what lives long is out of the collector's way.
    gc.collect()
    gc.freeze()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        joined = await rebuild_once(store, head, translation, "inline")
        expected = len(joined)
        times.append((time.perf_counter() - started) * 1000)
    stalls: dict[str, list[float]] = {"sliced": [], "thread": [], "inline": []}
    took: list[float] = []
    for _ in range(max(3, repeat // 5)):
        for how, seen in stalls.items():
            stall, wall = await longest_stall(
                lambda how=how: rebuild_once(store, head, translation, how)  # type: ignore[misc]
            )
            seen.append(stall)
            if how == "sliced":
                took.append(wall)
    assert expected == len(joined)
    dumps = min(_timed(orjson.dumps, {**translation.chat, "messages": joined}) for _ in range(5))
    started = time.perf_counter()
    del joined
    freed = (time.perf_counter() - started) * 1000
    items = decode_history(await read_history(store, head, OWNER, BOUNDS))
    direct = orjson.dumps({"model": "m", "input": [*items, *translation.input_items]})
    del items
    direct_ms = min(_timed(lambda raw: to_chat(orjson.loads(raw)), direct) for _ in range(3))
    return {
        "free": freed,
        "direct": direct_ms,
        "kb": chain.bytes / 1024,
        "rebuild_min": min(times),
        "rebuild_p50": statistics.median(times),
        "sliced": statistics.median(stalls["sliced"]),
        "sliced_max": max(stalls["sliced"]),
        "sliced_took": statistics.median(took),
        "thread": statistics.median(stalls["thread"]),
        "inline": statistics.median(stalls["inline"]),
        "serialize": dumps,
    }


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


#: (name, responses in the chain, turn). The defaults bound a chain at 256 responses
#: (`max_chain_depth`) and 4 MiB of items (`max_chain_bytes`).
CASES: list[tuple[str, int, Turn]] = [
    ("agent", 1, agent_turn),
    ("agent", 8, agent_turn),
    ("agent", 32, agent_turn),
    ("agent, max depth", 256, agent_turn),
    ("agent, 2,600 turns (past max depth, for scale)", 2600, agent_turn),
    ("large", 32, large_turn),
    ("large, max depth, ~max bytes", 256, large_turn),
    ("dense", 32, dense_turn),
    ("dense, max depth, ~max bytes", 256, dense_turn),
]


async def main(quick: bool, redis_url: str | None) -> None:
    repeat = 5 if quick else 25
    print(
        f"rebuild slices of {SLICE_S * 1000:g} ms; times in ms (rebuild: best/median of "
        f"{repeat}; stalls: median of {max(3, repeat // 5)}, max in brackets)\n"
    )
    print(
        "| conversation | responses | item KiB | rebuild best | rebuild p50 | loop stall, "
        "sliced (max) | sliced wall time | loop stall, worker thread | loop stall, one "
        "piece | serialize body once | free body | sent directly: parse + translate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, depth, turn in CASES:
        if quick and depth > 256:
            continue
        row = await measure(MemoryResponseStore(CONFIG), depth, turn, repeat)
        print(
            f"| {name} | {depth} | {row['kb']:,.0f} | {row['rebuild_min']:.2f} | "
            f"{row['rebuild_p50']:.2f} | {row['sliced']:.1f} ({row['sliced_max']:.1f}) | "
            f"{row['sliced_took']:.1f} | {row['thread']:.1f} | {row['inline']:.1f} | "
            f"{row['serialize']:.1f} | {row['free']:.1f} | {row['direct']:.1f} |"
        )
    if redis_url is None:
        return
    print("\nRedis (one script call per walk, loopback):\n")
    print("| conversation | responses | item KiB | walk best | walk p50 |")
    print("|---|---:|---:|---:|---:|")
    for name, depth, turn in CASES:
        if depth > 256:
            continue
        store = RedisResponseStore(
            CONFIG.model_copy(
                update={"store": ResponsesConfig(store=redis_url).store, "store_timeout_ms": 10_000}
            ),
            prefix=f"bench:{name}:{depth}:",
        )
        head, chain = await build_chain(store, depth, turn)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await store.chain(head, OWNER, BOUNDS.max_depth, BOUNDS.max_bytes)
            times.append((time.perf_counter() - started) * 1000)
        await store.aclose()
        print(
            f"| {name} | {depth} | {chain.bytes / 1024:,.0f} | {min(times):.2f} | "
            f"{statistics.median(times):.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 4 MiB agent chain")
    parser.add_argument("--redis", action="store_true", help="also walk chains on redis-server")
    args = parser.parse_args()
    if args.redis:
        from processes import redis_server

        with redis_server() as url:
            asyncio.run(main(args.quick, url))
    else:
        asyncio.run(main(args.quick, None))
