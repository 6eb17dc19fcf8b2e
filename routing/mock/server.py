"""`seawall mock-upstream`: the mock LLM as a standalone OpenAI-compatible server.

It serves the very transport that in-process `mock` deployments use, so a mock
behind a real socket behaves exactly like the in-process one (same answers, same
latency and error settings). A plain ASGI app: no framework needed for three paths.
"""

from __future__ import annotations

from typing import Any

import httpx

from routing.config import MockSettings
from routing.mock.transport import MockTransport

#: Mock request bodies are capped: this server exists for tests and benchmarks.
MAX_BODY_BYTES = 16 * 1024 * 1024


class MockUpstreamApp:
    def __init__(self, model: str = "mock-gpt", settings: MockSettings | None = None) -> None:
        self.transport = MockTransport(model, settings or MockSettings())
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        self.requests += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _send_simple(send, 413, b'{"error":{"message":"body too large"}}')
                return
            if not message.get("more_body"):
                break
        request = httpx.Request(scope["method"], "http://mock" + scope["path"], content=body)
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.TimeoutException:  # cannot happen without a read timeout; be safe
            await _send_simple(send, 504, b'{"error":{"message":"timeout"}}')
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": list(response.headers.raw),
            }
        )
        async for chunk in response.aiter_bytes():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_simple(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
