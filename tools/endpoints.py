"""Where tool calls go: a tool's HTTP endpoint, or a built-in mock tool.

`endpoint: mock://weather` serves a deterministic fake tool in-process, the way
`provider: mock` serves a fake model: the embedded default config can show the
invoke proxy, receipts and forged tool replies with no network and no tool server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson

MOCK_SCHEME = "mock"


def weather(arguments: dict[str, Any]) -> dict[str, Any]:
    """Made-up weather, the same for the same city every time."""
    city = str(arguments.get("city", ""))
    unit = arguments.get("unit", "c")
    seed = int.from_bytes(hashlib.sha256(city.lower().encode()).digest()[:2], "big")
    celsius = round(-10 + (seed % 400) / 10, 1)
    temp = celsius if unit == "c" else round(celsius * 9 / 5 + 32, 1)
    conditions = ("sunny", "cloudy", "rain", "snow", "fog")[seed % 5]
    return {"city": city, "temp": temp, "unit": unit, "conditions": conditions}


MOCK_TOOLS: dict[str, Callable[[dict[str, Any]], Any]] = {"weather": weather}


class ToolEndpoints(httpx.AsyncBaseTransport):
    """Sends tool calls to `mock://NAME` tools in-process, and to HTTP endpoints
    through `network`."""

    def __init__(self, network: httpx.AsyncBaseTransport) -> None:
        self.network = network

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != MOCK_SCHEME:
            return await self.network.handle_async_request(request)
        tool = MOCK_TOOLS.get(request.url.host)
        if tool is None:
            return httpx.Response(404, json={"error": f"no mock tool {request.url.host!r}"})
        try:
            arguments = orjson.loads(await request.aread())
        except orjson.JSONDecodeError:
            return httpx.Response(400, json={"error": "arguments are not JSON"})
        result = tool(arguments if isinstance(arguments, dict) else {})
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=orjson.dumps(result)
        )

    async def aclose(self) -> None:
        await self.network.aclose()
