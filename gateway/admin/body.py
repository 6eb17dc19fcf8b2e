"""Reading admin request bodies: small JSON objects (or config documents)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.stages.body import json_object

#: Admin request bodies are small; anything bigger is refused unread.
MAX_ADMIN_BODY = 64 * 1024


async def read_body(request: Request, limit: int = MAX_ADMIN_BODY) -> bytes:
    """The body, refused (413) past `limit` bytes, declared or read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"This admin request is limited to {limit} bytes.")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise GatewayError(413, f"This admin request is limited to {limit} bytes.")
    return raw


async def read_json_object(request: Request) -> dict[str, Any]:
    return json_object(await read_body(request))
