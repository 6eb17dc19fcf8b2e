"""Relaying an upstream server-sent-event stream without parsing each event.

The relay forwards upstream bytes in the chunks they arrive in, cut at the last
complete event boundary. That keeps per-event work to a couple of C-level byte
scans, and guarantees that whatever the gateway appends after a failure (an error
event) starts on an event boundary the client's parser can read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx

from routing.outcomes import Failure, UpstreamError

DONE_EVENT = b"data: [DONE]\n\n"
_BOUNDARIES = (b"\n\n", b"\r\n\r\n")


def split_complete(buffer: bytes) -> tuple[bytes, bytes]:
    """Split `buffer` into (complete events, incomplete tail)."""
    end = -1
    for boundary in _BOUNDARIES:
        at = buffer.rfind(boundary)
        if at >= 0:
            end = max(end, at + len(boundary))
    if end < 0:
        return b"", buffer
    return buffer[:end], buffer[end:]


def ends_with_done(events: bytes) -> bool:
    return events.rstrip(b"\r\n").endswith(b"[DONE]")


class EventRelay:
    """Iterates complete SSE events from an upstream byte stream.

    Raises `UpstreamError(STREAM_BROKEN)` if the stream fails, stalls past the
    transport's read timeout, outlives `deadline`, or ends without `[DONE]`. When
    `deadline` is the request's own (`by_deadline`), outliving it is
    `UpstreamError(DEADLINE)` instead: the client's time ran out, which says nothing
    about the deployment's health.
    """

    def __init__(
        self,
        deployment: str,
        chunks: AsyncIterator[bytes],
        deadline: float | None,
        by_deadline: bool = False,
    ) -> None:
        self.deployment = deployment
        self._chunks = chunks
        self._deadline = deadline
        self._by_deadline = by_deadline
        self._tail = b""
        self._done = False
        self.events_bytes = 0

    async def first(self) -> bytes:
        """Wait for the first complete event(s); failures here are still retryable."""
        events = await self._next_events()
        if not events:
            raise UpstreamError(
                Failure.BAD_RESPONSE, self.deployment, "upstream stream ended before any event"
            )
        return events

    async def _next_events(self) -> bytes:
        while True:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                # Tolerate a final "data: [DONE]" without its blank line.
                if self._tail and ends_with_done(self._tail):
                    events, self._tail, self._done = self._tail + b"\n\n", b"", True
                    return events
                return b""
            if self._deadline is not None and time.monotonic() > self._deadline:
                if self._by_deadline:
                    raise UpstreamError(
                        Failure.DEADLINE, self.deployment, "request deadline exceeded"
                    )
                raise httpx.ReadTimeout("stream exceeded its total time limit")
            if self._tail:
                chunk = self._tail + chunk
            events, self._tail = split_complete(chunk)
            if events:
                self.events_bytes += len(events)
                self._done = ends_with_done(events)
                return events

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                events = await self._next_events()
            except httpx.TimeoutException as exc:
                raise self._broken(f"upstream stream stalled: {exc}") from exc
            except httpx.TransportError as exc:
                raise self._broken(f"upstream stream failed: {exc}") from exc
            if not events:
                if not self._done:
                    raise self._broken("upstream stream ended before [DONE]")
                return
            yield events

    def _broken(self, message: str) -> UpstreamError:
        return UpstreamError(Failure.STREAM_BROKEN, self.deployment, message)


def data_payloads(events: bytes) -> list[bytes]:
    """The `data:` payloads of complete SSE events, `[DONE]` excluded.

    Only for streams the gateway must look into (tool calls to verify); plain
    relaying never parses events.
    """
    payloads = []
    for event in events.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            payload = b"\n".join(lines)
            if payload.strip() != b"[DONE]":
                payloads.append(payload)
    return payloads
