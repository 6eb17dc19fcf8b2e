"""The server's coalescing of one turn's writes (gateway/server/protocol.py).

The whole server runs through it in every gateway test; these pin down its rules
against a transport that records what reaches it."""

from __future__ import annotations

import asyncio

from gateway.server.protocol import CoalescingTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(bytes(data))

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")

    def write_eof(self) -> None:
        self.events.append("eof")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


def coalescing() -> tuple[Recording, CoalescingTransport]:
    """A recording transport, and the coalescing one over it on this loop."""
    real = Recording()
    return real, CoalescingTransport(real, asyncio.get_running_loop())


async def turn() -> None:
    await asyncio.sleep(0)  # lets the loop run what was scheduled: the flush


async def test_the_writes_of_one_turn_reach_the_socket_as_one() -> None:
    real, transport = coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert real.events == []
    await turn()
    assert real.events == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_writes_of_separate_turns_stay_separate_and_in_order() -> None:
    real, transport = coalescing()
    for event in (b"data: 1\n\n", b"data: 2\n\n"):
        transport.write(event)
        await turn()
    transport.write(b"data: 3\n\n")
    transport.write(b"data: [DONE]\n\n")
    await turn()
    assert real.events == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\ndata: [DONE]\n\n"]


async def test_closing_sends_what_is_held_first() -> None:
    real, transport = coalescing()
    transport.write(b"refused")
    transport.close()
    await turn()
    assert real.events == [b"refused", "close"]
    transport.write(b"late")  # after the close: the real transport is closing
    await turn()
    assert real.events == [b"refused", "close"]


async def test_an_end_of_stream_sends_what_is_held_first() -> None:
    real, transport = coalescing()
    transport.write(b"tail")
    transport.write_eof()
    assert real.events == [b"tail", "eof"]


async def test_aborting_drops_what_is_held() -> None:
    real, transport = coalescing()
    transport.write(b"never sent")
    transport.abort()
    await turn()
    assert real.events == ["abort"]


async def test_the_rest_is_the_real_transports() -> None:
    real, transport = coalescing()
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert not transport.is_closing()
    real.closing = True
    assert transport.is_closing()
