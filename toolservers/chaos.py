"""Chaos for MCP calls: the faults, where each acts, and the hooks that apply them.

chaos/ is not changed yet; this module is the proposal it will adopt and the code
the gateway calls meanwhile. The gateway builds the faults of a call the way it
does for tool endpoints (the request's `ChaosPlan`: header, colour, admin
schedules, scoped by tenant) with the targets `mcp:<server>` and
`tool:<server>__<tool>`, and hands them to the protocol layer as objects with a
`name` and `param(key)`: chaos.faults.FaultSpec has both.

Faults, where each acts, and what the agent meets:

- `latency` (ms, jitter_ms), before the upstream call: a slow call; past
  `call_timeout_ms`, the timeout error (-32001).
- `http_error` (status), instead of the upstream call: the server-down error (-32000).
- `stall` (ms) and `connect_timeout`, instead of the upstream call: the timeout
  error after the call's deadline.
- `mcp_drop_session`, before the message is handled: 404 for its session; the
  client must initialize again.
- `forge_tool` mode=invalid, on the upstream result before verification: a
  schema-invalid result, which verification turns into a tool error.
- `forge_tool` mode=inject, on the upstream result before verification: an
  injected instruction (the injection scan flags it model-side).
- `forge_tool` mode=wrong, on the served result after the receipt: values
  shifted; the model-side check calls it forged.
- `mcp_wrong_call`, on the served result after the receipt: the sealed result of
  the session's previous call; forged model-side (its receipt and ledger entry
  bind other arguments).
- `slow_chunks` (ms), on the answer stream (`answers: sse`): a slow stream.

Proposed for chaos/faults.py: a layer `mcp` with `mcp_drop_session` and
`mcp_wrong_call`; `ActiveFault.matches` lets `mcp:` and `tool:` targets meet
transport, http and `forge_tool` faults as tool endpoints do; `Targets` lists
`mcp:<server>` and every exposed tool; an experiment `mcp-forged-results` runs an
agent loop with `forge_tool;mode=wrong;p=0.3` and `mcp_wrong_call;p=0.2` and
expects every forgery caught and every genuine result accepted.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Protocol

from chaos.forge import INJECTION, shift
from toolservers.upstream.base import ServerDown, ServerTimeout

#: Fault name -> where it acts (`before`, `upstream`, `served`, `session`, `stream`).
FAULTS = {
    "latency": "before",
    "http_error": "before",
    "stall": "before",
    "connect_timeout": "before",
    "mcp_drop_session": "session",
    "forge_tool": "upstream",  # mode=wrong acts on the served result instead
    "mcp_wrong_call": "served",
    "slow_chunks": "stream",
}


class Fault(Protocol):
    @property
    def name(self) -> str: ...

    def param(self, key: str) -> Any: ...


def named(faults: Sequence[Fault], name: str) -> Fault | None:
    return next((f for f in faults if f.name == name), None)


async def before_call(faults: Sequence[Fault], server: str, timeout_s: float) -> None:
    """Delays and failures in place of the upstream call, as the agent would meet them."""
    latency = named(faults, "latency")
    if latency is not None:
        jitter = float(latency.param("jitter_ms") or 0) / 1000
        delay = max(0.0, float(latency.param("ms") or 0) / 1000 + random.uniform(-jitter, jitter))
        if delay >= timeout_s:
            await asyncio.sleep(timeout_s)
            raise ServerTimeout(
                f"MCP server '{server}' did not answer within {round(timeout_s * 1000)} ms"
            )
        await asyncio.sleep(delay)
    error = named(faults, "http_error")
    if error is not None:
        raise ServerDown(f"MCP server '{server}' answered HTTP {error.param('status') or 503}")
    for name in ("stall", "connect_timeout"):
        if named(faults, name) is not None:
            await asyncio.sleep(timeout_s)
            raise ServerTimeout(
                f"MCP server '{server}' did not answer within {round(timeout_s * 1000)} ms"
            )


def drops_session(faults: Sequence[Fault]) -> bool:
    return named(faults, "mcp_drop_session") is not None


def upstream_result(faults: Sequence[Fault], result: dict[str, Any]) -> dict[str, Any]:
    """The server lying before the gateway checks it: a schema-invalid or injected result."""
    forge = named(faults, "forge_tool")
    if forge is None:
        return result
    mode = forge.param("mode") or "invalid"
    if mode == "invalid":
        forged = {**result, "content": [{"type": "text", "text": '["forged"]'}]}
        forged["structuredContent"] = {"forged": ["not", "what", "the", "schema", "says"]}
        return forged
    if mode == "inject":
        content = list(result.get("content") or [])
        return {**result, "content": [*content, {"type": "text", "text": INJECTION}]}
    return result


def served_result(
    faults: Sequence[Fault], result: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The path lying after the gateway sealed the result: altered values (the
    receipt no longer matches), or another call's sealed result."""
    if named(faults, "mcp_wrong_call") is not None and previous is not None:
        return previous
    forge = named(faults, "forge_tool")
    if forge is not None and forge.param("mode") == "wrong":
        content = []
        for part in result.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "text":
                part = {**part, "text": _shift_text(part.get("text", ""))}
            content.append(part)
        forged = {**result, "content": content}
        if "structuredContent" in result:
            forged["structuredContent"] = shift(result["structuredContent"])
        return forged
    return result


def _shift_text(text: str) -> str:
    import orjson

    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text + " (altered)"
    shifted = shift(value)
    return orjson.dumps(shifted).decode() if shifted != value else text + " (altered)"


def stream_delay(faults: Sequence[Fault]) -> float:
    """Seconds between the events of an answer or GET stream."""
    slow = named(faults, "slow_chunks")
    return 0.0 if slow is None else float(slow.param("ms") or 0) / 1000
