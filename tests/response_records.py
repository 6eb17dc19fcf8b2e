"""Stored-response records and store configs for the response store tests."""

from __future__ import annotations

from typing import Any

from responses.config import Quota, ResponsesConfig
from responses.store import EMPTY, Chain, Owner, StoredResponse, encode

A = Owner("tenant-a", "key-a")


def record(
    response_id: str,
    owner: Owner = A,
    *,
    previous: str | None = None,
    text: str = "answer",
    store: bool = True,
    inputs: list[dict[str, Any]] | None = None,
    history: Chain = EMPTY,
) -> StoredResponse:
    """A stored response with one input message and one output message."""
    response = {
        "id": response_id,
        "object": "response",
        "created_at": 1.0,
        "status": "completed",
        "previous_response_id": previous,
        "store": store,
        "output": [
            {
                "id": f"msg_out_{response_id}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
    }
    if inputs is None:
        inputs = [
            {
                "id": f"msg_in_{response_id}",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": f"question {response_id}"}],
            }
        ]
    return StoredResponse(response, inputs, owner, history)


def size_of(stored: StoredResponse) -> int:
    """What the quotas count for `stored`."""
    return encode(stored).size


def config(
    *,
    entries: int = 10_000,
    size: int = 256 * 1024 * 1024,
    key: tuple[int, int] | None = None,
    tenant: tuple[int, int] | None = None,
    total: tuple[int, int] | None = None,
    record_bytes: int | None = None,
    ttl: int = 30 * 24 * 3600,
    **extra: Any,
) -> ResponsesConfig:
    """A store config: every quota `entries`/`size` unless given as (entries, bytes)."""
    return ResponsesConfig(
        per_key=Quota(
            max_entries=(key or (entries, size))[0], max_bytes=(key or (entries, size))[1]
        ),
        per_tenant=Quota(
            max_entries=(tenant or (entries, size))[0], max_bytes=(tenant or (entries, size))[1]
        ),
        total=Quota(
            max_entries=(total or (entries, size))[0], max_bytes=(total or (entries, size))[1]
        ),
        max_record_bytes=record_bytes or min(size, (key or (entries, size))[1]),
        ttl_seconds=ttl,
        **extra,
    )
