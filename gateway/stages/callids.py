"""Minted ids for calls to bound registered tools (why: tools/callids.py).

Runs after `VerifyToolCalls`, so the calls it renames are the ones the client will
get (after any repair), and before rendering, so both the Chat Completions and the
translated Responses output carry the minted ids. A request that binds no
registered tool pays one attribute test; a plain text reply or stream is not
parsed (a C-speed search for `"tool_calls"` decides).

Reads: `exchange.tool_bindings`, `exchange.routed.reply`. Writes: the reply (body and
parsed data, or its event stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import orjson

from gateway.exchange import Exchange
from tools.callids import StreamCallIds, rename_reply_calls

TOOL_CALLS = b'"tool_calls"'


class MintCallIds:
    async def __call__(self, exchange: Exchange) -> None:
        bindings = exchange.tool_bindings
        if not bindings.bound or exchange.routed is None:
            return
        reply = exchange.routed.reply
        if reply.events is not None:
            events = _renamed(reply.events, StreamCallIds(bindings))
            exchange.routed.reply = replace(reply, events=events)
        elif (
            reply.data is not None
            and TOOL_CALLS in reply.body
            and rename_reply_calls(reply.data, bindings)
        ):
            exchange.routed.reply = replace(reply, body=orjson.dumps(reply.data))


async def _renamed(events: AsyncIterator[bytes], ids: StreamCallIds) -> AsyncIterator[bytes]:
    async for chunk in events:
        yield _rename_chunk(chunk, ids) if TOOL_CALLS in chunk else chunk


def _rename_chunk(chunk: bytes, ids: StreamCallIds) -> bytes:
    """The chunk's SSE events, each with its call ids renamed. An event that is not
    plain `data:` lines of one JSON object is passed on as it came."""
    out = []
    for event in chunk.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not event:
            continue
        lines = event.split(b"\n")
        if TOOL_CALLS in event and all(line.startswith(b"data:") for line in lines):
            try:
                data = orjson.loads(b"\n".join(line[5:].lstrip() for line in lines))
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and ids.rename(data):
                event = b"data: " + orjson.dumps(data)
        out.append(event + b"\n\n")
    return b"".join(out)
