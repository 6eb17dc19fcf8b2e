"""A small MCP server over stdio, for chaos experiments that need a tool behind `/mcp`.

`python -m chaos.demo_mcp` speaks MCP's stdio transport (one JSON-RPC message per
line on stdin and stdout) with the standard library only, so any gateway that has
seawall installed can start it from its config (`mcp: {servers: [...]}`), without
the test-only MCP SDKs. It serves one tool, `weather`: a deterministic forecast for
a city, with an input and an output schema, so the gateway checks both and seals
every result with a receipt. The city's description lists a few names, which the
embedded mock model picks from the question (routing/mock/arguments.py): an agent
asking about different cities makes calls with different arguments.

Used by `mcp-forged-results` (chaos/experiments/), where the gateway starts it.
"""

from __future__ import annotations

import json
import sys
import zlib
from typing import Any

#: Protocol revisions it answers in; an unknown one asked for gets the newest.
VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
CONDITIONS = ("sunny", "cloudy", "rain", "snow", "fog")

WEATHER = {
    "name": "weather",
    "description": "Current weather for a city (a demo tool of seawall's chaos experiments).",
    "inputSchema": {
        "type": "object",
        "properties": {
            "city": {
                "type": "string",
                "minLength": 1,
                "description": "The city, e.g. 'Oslo', 'Lima', 'Pune' or 'Quito'.",
            }
        },
        "required": ["city"],
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temp_c": {"type": "integer"},
            "conditions": {"type": "string"},
        },
        "required": ["city", "temp_c", "conditions"],
        "additionalProperties": False,
    },
    "annotations": {"readOnlyHint": True, "idempotentHint": True},
}


def forecast(city: str) -> dict[str, Any]:
    """The same city, the same weather: a result the agent could check again."""
    seed = zlib.crc32(city.encode())
    return {"city": city, "temp_c": seed % 35 - 5, "conditions": CONDITIONS[seed % 5]}


def _call(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("name") != WEATHER["name"]:
        raise LookupError(f"Unknown tool: {params.get('name')}")
    arguments = params.get("arguments") or {}
    city = arguments.get("city") if isinstance(arguments, dict) else None
    if not isinstance(city, str) or not city:
        return {"content": [{"type": "text", "text": "city is required"}], "isError": True}
    result = forecast(city)
    text = json.dumps(result, separators=(",", ":"))
    return {"content": [{"type": "text", "text": text}], "structuredContent": result}


def answer(message: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to one message; None for a notification (or a stray response)."""
    method, ident = message.get("method"), message.get("id")
    if not isinstance(method, str) or ident is None:
        return None
    params = message.get("params") or {}
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": ident}
    if method == "initialize":
        asked = params.get("protocolVersion")
        reply["result"] = {
            "protocolVersion": asked if asked in VERSIONS else VERSIONS[0],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "seawall-demo", "version": "1"},
        }
    elif method == "ping":
        reply["result"] = {}
    elif method == "tools/list":
        reply["result"] = {"tools": [WEATHER]}
    elif method == "tools/call":
        try:
            reply["result"] = _call(params)
        except LookupError as exc:
            reply["error"] = {"code": -32602, "message": str(exc)}
    else:
        reply["error"] = {"code": -32601, "message": f"Method not found: {method}"}
    return reply


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            reply: dict[str, Any] | None = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32700, "message": "Parse error"},
            }
        else:
            reply = answer(message) if isinstance(message, dict) else None
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
