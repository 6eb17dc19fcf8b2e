"""Relaying an upstream server-sent-event stream without parsing each event.

The relay forwards upstream bytes in the chunks they arrive in, cut at the last
complete event boundary. That keeps per-event work to a couple of C-level byte
scans, and guarantees that whatever the gateway appends after a failure (an error
event) starts on an event boundary the client's parser can read.

Every relayed `data:` payload is checked to be well-formed JSON before it goes out:
a provider that serializes a chunk badly would otherwise hand the client's SDK a
raw JSON decode error in the middle of its loop. The check is simdjson's validating
parse (measured: ~0.45 us an event against orjson's ~1.5 us, because it builds no
Python objects; docs/performance.md). What a check of form cannot see passes
through by nature: a duplicated event, or a semantically wrong one, is valid JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import simdjson

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


#: The Responses API's streams end with one of these events, not with `[DONE]`.
RESPONSE_ENDS = (b'"response.completed"', b'"response.failed"', b'"response.incomplete"')


def ends_with_response_end(events: bytes) -> bool:
    """Whether `events` hold a Responses stream's last event (its type in the data)."""
    return b'"response.' in events and any(end in events for end in RESPONSE_ENDS)


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream of one upstream API says it is complete, and what that is called."""

    seen: Callable[[bytes], bool]
    name: str


DONE = StreamEnd(ends_with_done, "[DONE]")
#: How a stream of each upstream API ends.
STREAM_ENDS: dict[str, StreamEnd] = {
    "chat": DONE,
    "embeddings": DONE,
    "responses": StreamEnd(ends_with_response_end, "response.completed"),
}


#: One validating parser for the process: the event loop is single-threaded and a
#: parse result is dropped at once, so the parser is never reused while in use.
_VALIDATOR = simdjson.Parser()


def first_invalid(events: bytes) -> int | None:
    """The offset of the first complete event in `events` whose `data:` payload is not
    valid JSON (`[DONE]` aside), or None when all are."""
    if _all_valid_single_lines(events):
        return None
    offset = 0
    for event in events.split(b"\n\n"):
        start, offset = offset, offset + len(event) + 2
        if not event:
            continue
        if event.startswith(b"data: ") and b"\n" not in event and b"\r" not in event:
            payload = event[6:]  # the common case: one `data: ` line
        else:
            lines = event.replace(b"\r\n", b"\n").split(b"\n")
            data = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
            if not data:
                continue  # a comment or a field without data
            payload = b"\n".join(data)
        if payload == b"[DONE]":
            continue
        try:
            _VALIDATOR.parse(payload)
        except (ValueError, RuntimeError):
            # simdjson also refuses valid JSON it cannot represent (integers beyond
            # 64 bits, a RuntimeError): the standard parser, with no such limit, has
            # the last word.
            try:
                json.loads(payload)
            except ValueError:
                return start
    return None


def _all_valid_single_lines(events: bytes) -> bool:
    """The fast path of `first_invalid`, for what nearly every upstream sends: events
    that are each one `data: ` line. Split at the event boundaries that begin a next
    `data: ` line, the chunk is exactly its payloads when it starts with `data: `, ends
    with a blank line, and no payload holds a line break; the loop then only parses.
    False when the shape is otherwise or any payload is invalid: the precise path
    then finds the offset."""
    if not events.startswith(b"data: ") or not events.endswith(b"\n\n") or b"\r" in events:
        return False
    try:
        for payload in events[6:-2].split(b"\n\ndata: "):
            if b"\n" in payload:
                return False
            if payload != b"[DONE]":
                _VALIDATOR.parse(payload)
    except (ValueError, RuntimeError):
        return False
    return True


class EventRelay:
    """Iterates complete SSE events from an upstream byte stream.

    Raises `UpstreamError(STREAM_BROKEN)` if the stream fails, stalls past the
    transport's read timeout, outlives `deadline`, sends an event that is not valid
    JSON (after relaying the events before it), or ends without its last event
    (`end`: `[DONE]` for Chat Completions, `response.completed` and its kin for the
    Responses API). When
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
        end: StreamEnd = DONE,
    ) -> None:
        self.deployment = deployment
        self._chunks = chunks
        self._end = end
        self._deadline = deadline
        self._by_deadline = by_deadline
        self._tail = b""
        self._done = False
        self._malformed = False  # an invalid event is next: raise instead of reading
        self.events_bytes = 0

    async def first(self) -> bytes:
        """Wait for the first complete event(s); failures here are still retryable."""
        events = await self._next_events()
        if not events:
            raise UpstreamError(
                Failure.BAD_RESPONSE,
                self.deployment,
                "upstream sent an invalid event before any valid one"
                if self._malformed
                else "upstream stream ended before any event",
            )
        return events

    async def _next_events(self) -> bytes:
        if self._malformed:
            return b""
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
                bad = first_invalid(events)
                if bad is not None:
                    # Relay what came before it; the stream ends at the invalid event.
                    events, self._malformed, self._done = events[:bad], True, False
                    if not events:
                        return b""
                self.events_bytes += len(events)
                self._done = self._done or self._end.seen(events)
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
                if self._malformed:
                    raise self._broken("upstream sent an event that is not valid JSON")
                if not self._done:
                    raise self._broken(f"upstream stream ended before {self._end.name}")
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
