"""The etcd config source against a real etcd (tests/services.py), sometimes through a
real TCP proxy the test can stall or cut (the way Toxiproxy would).

Writes, deletes and compactions are made with aetcd's own client, not with the
source, so the source is checked against etcd, not against itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aetcd
import pytest

from gateway.sources import EtcdSource, SourceError, merge
from tests.services import EtcdServer, free_port
from tests.test_sources import Follower, eventually, following, has

PREFIX = "/seawall/"


class Proxy:
    """A loopback TCP proxy in front of one port. `pause()` holds back what the
    server sends (the client looks slow to the server); `cut()` closes every
    connection and refuses new ones until `restore()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepting = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        self.accepting = False
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.accepting = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, gated=False),
                self._pipe(up_reader, writer, gated=True),
            )
        finally:
            self._writers -= {writer, up_writer}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gated: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if gated:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def client(etcd: EtcdServer) -> AsyncIterator[aetcd.Client]:
    """aetcd's client on the same etcd: how the tests change what the source reads."""
    async with aetcd.Client(host="127.0.0.1", port=etcd.port, timeout=10) as connected:
        yield connected


@pytest.fixture
async def proxy(etcd: EtcdServer) -> AsyncIterator[Proxy]:
    started = await Proxy(etcd.port).start()
    try:
        yield started
    finally:
        await started.close()


async def put(client: aetcd.Client, name: str, text: str | bytes) -> int:
    value = text.encode() if isinstance(text, str) else text
    response = await client.put((PREFIX + name).encode(), value)
    return int(response.header.revision)


def source(endpoints: str, **options: object) -> EtcdSource:
    """A source whose periodic resync is too slow to matter unless a test sets it,
    with reconnects quick enough for a test."""
    settings: dict[str, object] = {
        "resync_s": 60.0,
        "connect_timeout_s": 1.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
    }
    settings.update(options)
    return EtcdSource(endpoints, PREFIX, **settings)  # type: ignore[arg-type]


async def test_read_lists_the_prefix_at_a_revision(etcd: EtcdServer, client: aetcd.Client) -> None:
    await put(client, "models.yaml", "models: []\n")
    await client.put(b"/seawall-other/x.yaml", b"no: 1\n")
    await client.put(b"/other/seawall/y.yaml", b"no: 2\n")
    revision = await put(client, "tools.yaml", "tools: {}\n")
    documents = await source(etcd.endpoint).read()
    assert dict(documents.files) == {"models.yaml": "models: []\n", "tools.yaml": "tools: {}\n"}
    assert documents.revision == str(revision)
    assert documents.origin == f"etcd://{etcd.endpoint}/seawall/"
    assert merge(documents) == ({"models": [], "tools": {}}, [])


async def test_put_and_delete_are_seen(etcd: EtcdServer, client: aetcd.Client) -> None:
    await put(client, "seawall.yaml", "v: 1\n")
    async with following(source(etcd.endpoint)) as follower:
        first = await follower.next()
        assert dict(first.files) == {"seawall.yaml": "v: 1\n"}
        revision = await put(client, "seawall.yaml", "v: 2\n")
        changed = await follower.next()
        assert dict(changed.files) == {"seawall.yaml": "v: 2\n"}
        assert changed.revision == str(revision)
        revision = await put(client, "tools.yaml", "tools: {}\n")
        assert (await follower.next()).revision == str(revision)
        await client.delete((PREFIX + "seawall.yaml").encode())
        deleted = await follower.next()
        assert dict(deleted.files) == {"tools.yaml": "tools: {}\n"}
        assert int(deleted.revision or 0) == revision + 1


async def test_a_transaction_is_one_version(etcd: EtcdServer, client: aetcd.Client) -> None:
    await put(client, "a.yaml", "a: 0\n")
    async with following(source(etcd.endpoint)) as follower:
        await follower.next()
        ops = client.transactions
        await client.transaction(
            compare=[],
            success=[
                ops.put(b"/seawall/a.yaml", b"a: 1\n"),
                ops.put(b"/seawall/b.yaml", b"b: 1\n"),
            ],
            failure=[],
        )
        both = await follower.next()  # never a version with only one of them
        assert dict(both.files) == {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"}


async def test_compaction_past_a_slow_watcher_forces_a_relist(
    etcd: EtcdServer, client: aetcd.Client, proxy: Proxy
) -> None:
    """The proxy stops passing what etcd sends, so etcd finds the watcher slow;
    the history it still needs is then compacted away. etcd tells the watcher so,
    and the source must list again to converge.

    Except when it does not: etcd before 3.4.31 / 3.5.13 can drop the compaction
    notice of a watcher whose send channel is full and move it past the compacted
    revisions, so the watch goes quiet, still connected, having missed the last
    changes (etcd-io/etcd#17529; seen here on 3.4.23: 134 events, then silence).
    The periodic resync is what repairs that, so it is short here, and either path
    must converge: a relist on the notice, or a repair by the resync."""
    await put(client, "seawall.yaml", "v: 0\n")
    watched = source(proxy.endpoint, resync_s=2.0)
    async with following(watched) as follower:
        await follower.next()
        proxy.pause()
        # Enough bytes to fill the stream's flow-control window, then more
        # revisions than etcd buffers for one watcher: it becomes "slow".
        for _ in range(8):
            await put(client, "bulk", b"x" * (1 << 20))
        for version in range(1, 301):
            await put(client, "seawall.yaml", f"v: {version}\n")
        await client.delete(b"/seawall/bulk")
        latest = await put(client, "seawall.yaml", "v: final\n")
        await client.compact(latest)
        proxy.resume()
        try:
            final, _ = await follower.until(has({"seawall.yaml": "v: final\n"}), within_s=30)
        except TimeoutError:
            pytest.fail(f"never converged on revision {latest}: {watched.stats}")
    stats = watched.stats
    assert stats.relists.get("compacted", 0) >= 1 or stats.repaired >= 1, stats
    assert final.revision == str(latest)


async def test_etcd_restart_reconnects_and_lists_again(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(etcd.endpoint)
    async with following(watched) as follower:
        await follower.next()
        await eventually(lambda: watched.stats.connected)
        await asyncio.to_thread(etcd.kill)
        await eventually(lambda: not watched.stats.connected)
        await asyncio.to_thread(etcd.start)  # same data directory, same port
        async with aetcd.Client(host="127.0.0.1", port=etcd.port, timeout=10) as fresh:
            await put(fresh, "seawall.yaml", "v: 2\n")
        await follower.until(has({"seawall.yaml": "v: 2\n"}), within_s=15)
    assert watched.stats.relists.get("reconnect", 0) >= 1
    assert watched.stats.errors >= 1 and watched.stats.last_error


async def test_changes_made_while_disconnected_are_found_by_the_relist(
    etcd: EtcdServer, client: aetcd.Client, proxy: Proxy
) -> None:
    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(proxy.endpoint)
    async with following(watched) as follower:
        await follower.next()
        await eventually(lambda: watched.stats.connected)
        proxy.cut()
        await eventually(lambda: not watched.stats.connected)
        await put(client, "seawall.yaml", "v: 2\n")
        await put(client, "tools.yaml", "tools: {}\n")
        events = watched.stats.events
        proxy.restore()
        await follower.until(has({"seawall.yaml": "v: 2\n", "tools.yaml": "tools: {}\n"}))
    assert watched.stats.events == events  # found by listing, not by the watch
    assert watched.stats.relists.get("reconnect", 0) >= 1


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_dropped_watch_events_are_repaired_by_the_periodic_relist(
    etcd: EtcdServer, client: aetcd.Client, asynchronous: bool
) -> None:
    dropped = 0

    def drop() -> bool:
        nonlocal dropped
        dropped += 1
        return False

    async def drop_later() -> bool:
        await asyncio.sleep(0)
        return drop()

    resync_s = 0.5
    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(
        etcd.endpoint, resync_s=resync_s, event_filter=drop_later if asynchronous else drop
    )
    async with following(watched) as follower:
        await follower.next()
        await eventually(lambda: watched.stats.connected)
        started = time.monotonic()
        await put(client, "seawall.yaml", "v: 2\n")
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
        took = time.monotonic() - started
        await eventually(lambda: dropped >= 1)
    assert watched.stats.dropped_events == dropped and watched.stats.events == 0
    assert watched.stats.repaired >= 1
    # The stated bound: one resync period plus one list request (milliseconds here).
    assert took <= resync_s + 0.5


async def test_event_filter_passing_events_is_the_plain_watch(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    asked = 0

    def count() -> bool:
        nonlocal asked
        asked += 1
        return True

    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(etcd.endpoint, event_filter=count)
    async with following(watched) as follower:
        await follower.next()
        await put(client, "seawall.yaml", "v: 2\n")
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
    assert asked == 1 and watched.stats.events == 1 and watched.stats.repaired == 0


async def test_documents_over_the_limit_are_refused_then_recovered(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    await put(client, "a.yaml", "a: " + "x" * 6000 + "\n")
    watched = source(etcd.endpoint, max_bytes=10_000, resync_s=0.3)
    async with following(watched) as follower:
        first = await follower.next()
        assert list(first.files) == ["a.yaml"] and not first.problems
        await put(client, "b.yaml", "b: " + "x" * 6000 + "\n")
        refused = await follower.next()
        assert refused.files == {}
        assert refused.problems == (
            "(documents): 12008 bytes under /seawall/, over the limit of 10000 bytes",
        )
        assert merge(refused)[1] == list(refused.problems)
        await client.delete(b"/seawall/b.yaml")
        await follower.until(lambda d: list(d.files) == ["a.yaml"] and not d.problems)


async def test_a_list_too_large_to_receive_is_refused_without_holding_it(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    # Two values of 1 MiB: over what gRPC will take in for max_bytes=10_000
    # (the limit plus 1 MiB of room for keys), so the list never arrives whole.
    await put(client, "a.yaml", b"a" * (1 << 20))
    await put(client, "b.yaml", b"b" * (1 << 20))
    documents = await source(etcd.endpoint, max_bytes=10_000).read()
    assert documents.files == {}
    assert documents.problems == (
        "(documents): the 2 keys under /seawall/ are over the limit of 10000 bytes",
    )


async def test_values_that_are_not_text_are_problems(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    await put(client, "ok.yaml", "ok: 1\n")
    await put(client, "latin1.yaml", b"name: caf\xe9\n")
    await client.put(b"/seawall/", b"nameless: 1\n")
    documents = await source(etcd.endpoint).read()
    assert dict(documents.files) == {"ok.yaml": "ok: 1\n"}
    assert sorted(documents.problems) == [
        "/seawall/: a key equal to the prefix names no document",
        "latin1.yaml: not UTF-8 text (byte 9)",
    ]


async def test_write_replaces_the_prefix_in_one_revision(
    etcd: EtcdServer, client: aetcd.Client
) -> None:
    await put(client, "a.yaml", "a: 1\n")
    await put(client, "b.yaml", "b: 1\n")
    await client.put(b"/seawall-other/keep.yaml", b"keep: 1\n")
    writer = source(etcd.endpoint)
    async with following(source(etcd.endpoint)) as follower:
        await follower.next()
        await writer.write({"b.yaml": "b: 2\n", "c.yaml": "c: 2\n"})
        written = await follower.next()
        assert dict(written.files) == {"b.yaml": "b: 2\n", "c.yaml": "c: 2\n"}
    listed = await client.get_prefix(PREFIX.encode())
    assert {kv.mod_revision for kv in listed} == {int(written.revision or 0)}
    assert await client.get(b"/seawall-other/keep.yaml") is not None
    with pytest.raises(SourceError, match="over the limit"):
        await source(etcd.endpoint, max_bytes=10).write({"a.yaml": "x" * 11})
    await writer.aclose()


async def test_a_dead_endpoint_is_skipped(etcd: EtcdServer, client: aetcd.Client) -> None:
    await put(client, "seawall.yaml", "v: 1\n")
    dead = f"127.0.0.1:{free_port()}"
    both = source(f"{dead},{etcd.endpoint}", connect_timeout_s=0.5)
    documents = await both.read()
    assert dict(documents.files) == {"seawall.yaml": "v: 1\n"}
    assert both.stats.errors == 1 and dead in (both.stats.last_error or "")
    await both.aclose()


async def test_no_endpoint_answering_is_a_source_error_within_the_timeouts() -> None:
    dead = source(f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}", connect_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(SourceError, match="no etcd endpoint answered"):
        await dead.read()
    assert time.monotonic() - started < 2 * 0.3 + 1.0


async def test_aclose_ends_the_watch(etcd: EtcdServer, client: aetcd.Client) -> None:
    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(etcd.endpoint)
    follower = Follower(watched)
    follower.start()
    await follower.next()
    await watched.aclose()
    await asyncio.wait_for(follower.ended.wait(), 5)


async def test_a_silent_connection_is_found_by_the_request_timeout(
    etcd: EtcdServer, client: aetcd.Client, proxy: Proxy
) -> None:
    """etcd's answers stop arriving but the connection stays open (a black hole):
    the resync's list times out, and the source reconnects and lists again."""
    await put(client, "seawall.yaml", "v: 1\n")
    watched = source(proxy.endpoint, resync_s=0.5, request_timeout_s=0.5)
    async with following(watched) as follower:
        await follower.next()
        await eventually(lambda: watched.stats.connected)
        proxy.pause()
        await put(client, "seawall.yaml", "v: 2\n")
        await eventually(lambda: watched.stats.errors >= 1)
        # The request timeout, whichever of its two clocks fires first: the source's own
        # wait ("no answer in 0.5 s") or the gRPC deadline it sets to the same length
        # (DEADLINE_EXCEEDED; on a loaded machine it can win the race).
        error = watched.stats.last_error or ""
        assert "no answer in" in error or "DEADLINE_EXCEEDED" in error, error
        proxy.resume()
        await follower.until(has({"seawall.yaml": "v: 2\n"}))
