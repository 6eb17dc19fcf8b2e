"""Server-sent events, parsed incrementally with a bound on each event.

The Streamable HTTP transport answers a POST (and a GET) with `text/event-stream`
when it has more than one message to send. Only what MCP uses is kept: `data`
(lines joined with newlines), `event` and `id`; comments and `retry` are read and
dropped. An event larger than `max_bytes` ends the stream with `EventTooLarge`:
a server cannot make the gateway buffer without limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


class EventTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None


async def events(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[Event]:
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while True:
            cut, skip = _boundary(buffer)
            if cut < 0:
                break
            raw, buffer = buffer[:cut], buffer[cut + skip :]
            event = _parse(raw)
            if event is not None:
                yield event
        if len(buffer) > max_bytes:
            raise EventTooLarge(f"an event larger than {max_bytes} bytes")
    event = _parse(buffer) if buffer.strip() else None
    if event is not None:
        yield event


def _boundary(buffer: bytes) -> tuple[int, int]:
    """Where the first complete event ends and how long its blank line is."""
    best, length = -1, 0
    for separator in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        at = buffer.find(separator)
        if at >= 0 and (best < 0 or at < best):
            best, length = at, len(separator)
    return best, length


def _parse(raw: bytes) -> Event | None:
    data: list[str] = []
    name, event_id = "message", None
    for line in (
        raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            event_id = value
    if not data:
        return None
    return Event("\n".join(data), name, event_id)
