"""The SSE relay cuts only at event boundaries and notices truncated streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.outcomes import Failure, UpstreamError
from routing.sse import EventRelay, first_invalid, split_complete

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
events = st.lists(
    json_values.map(lambda value: b"data: " + json.dumps({"v": value}).encode() + b"\n\n"),
    min_size=1,
    max_size=20,
)


@given(events, st.data())
def test_split_never_cuts_inside_an_event(items: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(items)
    cut = data.draw(st.integers(0, len(stream)))
    complete, tail = split_complete(stream[:cut])
    assert complete + tail == stream[:cut]
    assert complete == b"" or complete.endswith(b"\n\n")
    assert stream.startswith(complete)
    # every complete prefix is a whole number of the original events
    boundaries = {sum(len(e) for e in items[:i]) for i in range(len(items) + 1)}
    assert len(complete) in boundaries


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(relay: EventRelay) -> bytes:
    out = await relay.first()
    async for piece in relay:
        out += piece
    return out


@given(events, st.lists(st.integers(1, 40), max_size=30))
async def test_relay_reassembles_arbitrary_chunking(items: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(items) + b"data: [DONE]\n\n"
    parts, at = [], 0
    for size in sizes:
        parts.append(stream[at : at + size])
        at += size
    parts.append(stream[at:])
    relay = EventRelay("d", _chunks([p for p in parts if p]), None)
    assert await _collect(relay) == stream


async def test_relay_reports_missing_done() -> None:
    relay = EventRelay("d", _chunks([b"data: 1\n\n", b"data: 2\n\ndata: par"]), None)
    assert await relay.first() == b"data: 1\n\n"
    with pytest.raises(UpstreamError) as info:
        async for _ in relay:
            pass
    assert info.value.failure is Failure.STREAM_BROKEN
    assert "before [DONE]" in info.value.message


async def test_relay_accepts_done_without_final_blank_line() -> None:
    relay = EventRelay("d", _chunks([b"data: 1\n\n", b"data: [DONE]"]), None)
    assert await _collect(relay) == b"data: 1\n\ndata: [DONE]\n\n"


async def test_relay_with_no_event_is_a_bad_response() -> None:
    with pytest.raises(UpstreamError) as info:
        await EventRelay("d", _chunks([b"partial without end"]), None).first()
    assert info.value.failure is Failure.BAD_RESPONSE


@given(events)
def test_valid_json_events_are_never_flagged(items: list[bytes]) -> None:
    assert first_invalid(b"".join(items) + b": a comment\n\ndata: [DONE]\n\n") is None


@given(events, st.data())
def test_a_truncated_event_is_flagged_at_its_start(items: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(items) - 1))
    event = items[index]
    payload = event[len(b"data: ") : -2]
    cut = data.draw(st.integers(1, len(payload) - 1))
    broken = b"data: " + payload[:cut] + b"\n\n"
    stream = b"".join(items[:index]) + broken + b"".join(items[index + 1 :])
    assert first_invalid(stream) == sum(len(e) for e in items[:index])


async def test_relay_stops_at_an_invalid_event_after_relaying_the_ones_before() -> None:
    stream = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: {"a": \n\ndata: [DONE]\n\n'
    relay = EventRelay("d", _chunks([stream]), None)
    assert await relay.first() == b'data: {"a": 1}\n\ndata: {"a": 2}\n\n'
    with pytest.raises(UpstreamError) as info:
        async for _ in relay:
            pass
    assert info.value.failure is Failure.STREAM_BROKEN
    assert "not valid JSON" in info.value.message


async def test_an_invalid_first_event_is_a_retryable_bad_response() -> None:
    relay = EventRelay("d", _chunks([b"data: <html>\n\n"]), None)
    with pytest.raises(UpstreamError) as info:
        await relay.first()
    assert info.value.failure is Failure.BAD_RESPONSE


single_line_payloads = st.lists(
    st.one_of(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=6,
        ).map(lambda value: json.dumps(value).encode()),
        # fragments that are not JSON alone but could be if joined with a neighbour
        st.sampled_from([b'"a', b'b",1', b"[1", b"2]", b"3,4", b"{", b"}", b"", b"[DONE]"]),
    ),
    min_size=1,
    max_size=8,
)


@given(single_line_payloads)
def test_the_fast_path_agrees_with_parsing_each_event(payloads: list[bytes]) -> None:
    """Chunks of one-line `data:` events take a fast path (one shape check for the
    chunk, then only parses); its answer is the one event-by-event parsing gives."""
    stream = b"".join(b"data: " + payload + b"\n\n" for payload in payloads)
    expected, offset = None, 0
    for payload in payloads:
        if payload != b"[DONE]":
            try:
                json.loads(payload)
            except ValueError:
                expected = offset
                break
        offset += len(payload) + len(b"data: \n\n")
    assert first_invalid(stream) == expected
