"""A config kept under a key prefix in etcd (v3 API), shared by every replica.

Each key under the prefix is a document named by the rest of the key
(`/seawall/models.yaml` under `/seawall/` is `models.yaml`). Changes are followed
the way etcd is meant to be read:

1. list the prefix (a linearizable range); the response's revision is the
   version of what was listed;
2. watch the prefix from that revision + 1: etcd delivers every change after the
   list, in order, each watch response holding whole revisions (a transaction
   that changed several keys arrives together and is applied together);
3. when the watch reports that the history it needs was compacted, is cancelled,
   or the connection breaks: back off (capped, jittered), reconnect (the next
   endpoint when several are given) and list again (a loss is logged once when
   it starts and once when the watch is back, with the failed attempts between);
4. every `resync_s`, list again anyway and compare: a watch that silently lost
   events (chaos drops them on purpose through `event_filter`) still converges
   within `resync_s` plus one request.

Everything is bounded: connecting (`connect_timeout_s`), every request
(`request_timeout_s`), the documents (`max_bytes`, `max_documents`; a prefix over
them is a problem of the version, and is re-listed every `resync_s` rather than
watched until it fits), the gRPC messages taken in (a list larger than the limit
is refused by gRPC before it is held), and the watch responses buffered between
the network and the reader (`WATCH_BUFFER`; beyond it the stream is not read, so
etcd sees a slow watcher, and a compaction brings us back through a fresh list).

The wire protocol is etcd's own gRPC API through `aetcd`'s generated bindings
(`aetcd.rpc`). aetcd's higher-level watch flattens responses into single events
(so a multi-key transaction could be seen half-applied) and hides each response's
revision, so the watch is driven on the stream directly.

With credentials (`etcd://user:password@host:2379/prefix/`, the password as an
`env:` reference or literal; see gateway/sources/spec.py), every connection first
authenticates (etcd's Auth.Authenticate) and sends the token it gets with each
call. A token etcd no longer accepts is one more reason to reconnect, which
authenticates again. The credentials never appear in `origin`, in errors or in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio
from aetcd import rpc

from gateway.sources.backoff import Backoff
from gateway.sources.base import (
    DEFAULT_RESYNC_S,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    Documents,
    EventFilter,
    SourceError,
    SourceStats,
    allow_event,
    label,
)

log = logging.getLogger("seawall.sources")
T = TypeVar("T")

#: Time to establish a connection to one endpoint.
DEFAULT_CONNECT_TIMEOUT_S = 3.0
#: Time for one request (a list, a watch to be created, a write).
DEFAULT_REQUEST_TIMEOUT_S = 5.0
#: Reconnect delays: from this, doubling, jittered...
DEFAULT_BACKOFF_INITIAL_S = 0.1
#: ...up to this.
DEFAULT_BACKOFF_MAX_S = 5.0
#: Watch responses read from the network but not yet applied, at most.
WATCH_BUFFER = 64
#: Attempts at an atomic replace of the prefix (`write`) while others change it.
WRITE_ATTEMPTS = 3
#: gRPC keepalive: a ping after this much silence on a connection with a call open
#: (the watch), and the connection declared dead when the ping is not answered
#: within the timeout. etcd refuses pings more often than every 5 s, and pings on a
#: connection with no call open, by default (it answers with GOAWAY).
KEEPALIVE_S = 10.0
KEEPALIVE_TIMEOUT_S = 5.0
#: What a list response may carry beyond the documents (keys, metadata).
LIST_OVERHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Credentials:
    """An etcd user and password. `repr` never shows the password."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password='***')"


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoints(text: str) -> list[Endpoint]:
    """`HOST:PORT[,HOST:PORT...]` (IPv6 hosts in brackets); SourceError if malformed."""
    endpoints = []
    for part in text.split(","):
        item = part.strip()
        host, sep, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SourceError(f"etcd endpoint {item!r} is not HOST:PORT")
        endpoints.append(Endpoint(host, int(port)))
    return endpoints


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range holding every key that starts with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


class _Unavailable(Exception):
    """No answer from etcd (connection, timeout, refused request): reconnect."""


class _Unauthenticated(_Unavailable):
    """etcd no longer accepts the connection's token: reconnect (authenticate again)."""


class _Compacted(Exception):
    """The watch needs history etcd has compacted away: list again."""


class _Canceled(Exception):
    """etcd cancelled the watch (for a reason it states): list again."""


class _Quiet(Exception):
    """No watch response in the time given (time to resync)."""


class _TooLarge(Exception):
    """The prefix grew past the limits while watched: list again later."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The raw keys and values under the prefix at a revision, and its documents."""

    state: Mapping[bytes, bytes]
    revision: int
    documents: Documents
    too_large: bool


class _Connection:
    """One gRPC channel to one endpoint."""

    def __init__(self, endpoint: Endpoint, max_receive_bytes: int) -> None:
        self.endpoint = endpoint
        #: Sent with every call: etcd's auth token, when the source has credentials.
        self.metadata: tuple[tuple[str, str], ...] | None = None
        self.channel = grpc.aio.insecure_channel(
            endpoint.target,
            options=[
                ("grpc.max_receive_message_length", max_receive_bytes),
                ("grpc.keepalive_time_ms", round(KEEPALIVE_S * 1000)),
                ("grpc.keepalive_timeout_ms", round(KEEPALIVE_TIMEOUT_S * 1000)),
                ("grpc.keepalive_permit_without_calls", 0),
                # A quiet watch sends no data; keep pinging anyway (gRPC stops after
                # two pings without data by default).
                ("grpc.http2.max_pings_without_data", 0),
                # Each connection is fresh and short-lived on failure; our own
                # backoff decides when to try again.
                ("grpc.enable_retries", 0),
            ],
        )
        self.kv = rpc.KVStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.auth = rpc.AuthStub(self.channel)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()


class EtcdSource:
    writable = True

    def __init__(
        self,
        endpoints: str | Sequence[str],
        prefix: str,
        *,
        resync_s: float = DEFAULT_RESYNC_S,
        event_filter: EventFilter | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        max_documents: int = MAX_DOCUMENTS,
        credentials: Credentials | None = None,
    ) -> None:
        text = endpoints if isinstance(endpoints, str) else ",".join(endpoints)
        self.endpoints = parse_endpoints(text)
        if not prefix.strip("/"):
            raise SourceError(f"etcd prefix {prefix!r} must name a key prefix, such as /seawall/")
        self.prefix = "/" + prefix.strip("/") + "/"
        self._key = self.prefix.encode()
        self._end = prefix_end(self._key)
        self.origin = f"etcd://{','.join(e.target for e in self.endpoints)}{self.prefix}"
        self.resync_s = resync_s
        self.event_filter = event_filter
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_bytes = max_bytes
        self.max_documents = max_documents
        self.credentials = credentials
        self.stats = SourceStats()
        self._connection: _Connection | None = None
        self._next = 0  # the endpoint the next connection goes to
        self._connect_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        #: The loss under way (None: watching, or not started): since when
        #: (`time.monotonic()`) and the failed attempts since. Logged once when it
        #: starts and once when the watch is back, never per retry.
        self._lost_since: float | None = None
        self._lost_attempts = 0

    # -- connections --------------------------------------------------------------

    async def _connect(self) -> _Connection:
        async with self._connect_lock:
            if self._closed.is_set():
                raise _Unavailable("the source is closed")
            if self._connection is not None:
                return self._connection
            endpoint = self.endpoints[self._next % len(self.endpoints)]
            connection = _Connection(endpoint, self.max_bytes + LIST_OVERHEAD_BYTES)
            try:
                await self._call(connection.channel.channel_ready(), self.connect_timeout_s)
                await self._authenticate(connection)
            except _Unavailable as exc:
                await connection.close()
                self._next += 1
                raise _Unavailable(f"{endpoint.target}: not connected: {exc}") from None
            self._connection = connection
            return connection

    async def _authenticate(self, connection: _Connection) -> None:
        """Get the token the connection's calls carry (nothing without credentials)."""
        if self.credentials is None:
            return
        request = rpc.AuthenticateRequest(
            name=self.credentials.user, password=self.credentials.password
        )
        try:
            response = await self._call(
                connection.auth.Authenticate(request, timeout=self.request_timeout_s),
                self.request_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _Unavailable(
                f"authentication as {self.credentials.user!r} failed: "
                f"{exc.code().name} {exc.details()}"
            ) from None
        connection.metadata = (("token", response.token),)

    async def _drop(self, connection: _Connection | None) -> None:
        """Close a connection that failed; the next one goes to the next endpoint."""
        async with self._connect_lock:
            if connection is not None and connection is self._connection:
                self._connection = None
                self._next += 1
        if connection is not None:
            await connection.close()

    async def _call(self, awaitable: Awaitable[T], within_s: float) -> T:
        """Await one step of talking to etcd, giving up after `within_s` seconds or
        as soon as the source is closed (`_Unavailable` either way). gRPC errors
        pass through; a call cancelled under us (its channel closed) is unavailable."""
        step = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {step, closed}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            step.cancel()
            raise
        finally:
            closed.cancel()
        if step not in done:
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await step
            raise _Unavailable(
                "the source is closed" if self._closed.is_set() else f"no answer in {within_s} s"
            )
        try:
            return step.result()
        except asyncio.CancelledError:
            raise _Unavailable("the call was cancelled (its connection closed)") from None
        except asyncio.InvalidStateError:
            raise _Unavailable("the call had already ended (its connection closed)") from None

    # -- reading ------------------------------------------------------------------

    async def read(self) -> Documents:
        """The documents now (a linearizable list), trying each endpoint once."""
        errors = []
        for _ in self.endpoints:
            connection: _Connection | None = None
            try:
                connection = await self._connect()
                return (await self._list(connection)).documents
            except _Unavailable as exc:
                errors.append(str(exc))
                self.stats.failed(str(exc))
                await self._drop(connection)
        raise SourceError(f"{self.origin}: no etcd endpoint answered: {'; '.join(errors)}")

    async def _list(self, connection: _Connection) -> _Snapshot:
        request = rpc.RangeRequest(key=self._key, range_end=self._end)
        try:
            response = await self._call(
                connection.kv.Range(
                    request, timeout=self.request_timeout_s, metadata=connection.metadata
                ),
                self.request_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise _Unavailable(_describe(connection, exc)) from None
            return await self._list_too_large(connection)
        self.stats.reads += 1
        state = {kv.key: kv.value for kv in response.kvs}
        revision = int(response.header.revision)
        documents, too_large = self._documents(state, revision)
        return _Snapshot(state, revision, documents, too_large)

    async def _list_too_large(self, connection: _Connection) -> _Snapshot:
        """The prefix's revision and size, without its values: its list did not fit."""
        request = rpc.RangeRequest(key=self._key, range_end=self._end, count_only=True)
        try:
            response = await self._call(
                connection.kv.Range(
                    request, timeout=self.request_timeout_s, metadata=connection.metadata
                ),
                self.request_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _Unavailable(_describe(connection, exc)) from None
        self.stats.reads += 1
        revision = int(response.header.revision)
        problem = (
            f"(documents): the {response.count} keys under {self.prefix} are over the limit "
            f"of {self.max_bytes} bytes"
        )
        documents = Documents.of({}, self.origin, str(revision), [problem])
        return _Snapshot({}, revision, documents, True)

    def _documents(self, state: Mapping[bytes, bytes], revision: int) -> tuple[Documents, bool]:
        """The documents a state holds, and whether it is over the limits."""
        total = sum(len(value) for value in state.values())
        problems = []
        if len(state) > self.max_documents:
            problems.append(
                f"(documents): {len(state)} keys under {self.prefix}, over the limit "
                f"of {self.max_documents}"
            )
        if total > self.max_bytes:
            problems.append(
                f"(documents): {total} bytes under {self.prefix}, over the limit "
                f"of {self.max_bytes} bytes"
            )
        if problems:
            return Documents.of({}, self.origin, str(revision), problems), True
        files = {}
        for key, value in state.items():
            raw = key[len(self._key) :]
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{raw!r}: a key name that is not UTF-8")
                continue
            if not name:
                problems.append(f"{self.prefix}: a key equal to the prefix names no document")
                continue
            try:
                files[name] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{label(name)}: not UTF-8 text (byte {exc.start})")
        return Documents.of(files, self.origin, str(revision), problems), False

    # -- watching -----------------------------------------------------------------

    async def watch(self) -> AsyncIterator[Documents]:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        last: str | None = None
        reason = "start"
        while not self._closed.is_set():
            connection: _Connection | None = None
            delay = 0.0
            try:
                connection = await self._connect()
                snapshot = await self._list(connection)
                self.stats.relisted(reason)
                if snapshot.documents.digest != last:
                    last = snapshot.documents.digest
                    self.stats.yields += 1
                    yield snapshot.documents
                if snapshot.too_large:
                    raise _TooLarge
                async with contextlib.aclosing(self._follow(connection, snapshot, backoff)) as run:
                    async for documents in run:
                        if documents.digest != last:
                            last = documents.digest
                            self.stats.yields += 1
                            yield documents
            except _Compacted as exc:
                reason, delay = "compacted", backoff.next()
                log.info("config watch on %s: %s; listing again", self.origin, exc)
            except _Canceled as exc:
                reason, delay = "canceled", backoff.next()
                self.stats.failed(str(exc))
                self._lost(f"the watch was cancelled: {exc}", delay)
            except _TooLarge:
                reason, delay = "resync", self.resync_s
            except _Unavailable as exc:
                await self._drop(connection)
                if self._closed.is_set():
                    break
                reason, delay = "reconnect", backoff.next()
                self.stats.failed(str(exc))
                self._lost(str(exc), delay)
            except Exception as exc:
                # Not a failure this loop knows: still a watch that must not die.
                await self._drop(connection)
                if self._closed.is_set():
                    break
                reason, delay = "reconnect", backoff.next()
                self.stats.failed(f"{type(exc).__name__}: {exc}")
                self._lost(f"{type(exc).__name__}: {exc}", delay, unexpected=True)
            self.stats.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)

    def _lost(self, reason: str, delay: float, unexpected: bool = False) -> None:
        """A failed attempt: the first of a loss is logged (with its traceback when
        `unexpected`), the ones after it only at DEBUG."""
        self._lost_attempts += 1
        if self._lost_since is not None:
            log.debug("config source %s: %s; retrying in %.2f s", self.origin, reason, delay)
            return
        self._lost_since = time.monotonic()
        log.log(
            logging.ERROR if unexpected else logging.WARNING,
            "config source %s lost: %s; still serving the current version, retrying "
            "(logged again when the watch is back)",
            self.origin,
            reason,
            exc_info=unexpected,
            extra={"episode": "config_source_lost"},
        )

    def _found(self) -> None:
        """The watch is established: the loss under way, if any, is over."""
        if self._lost_since is None:
            return
        log.warning(
            "config source %s back after %.1f s (%d failed attempts); watching again",
            self.origin,
            time.monotonic() - self._lost_since,
            self._lost_attempts,
            extra={"episode": "config_source_lost", "attempts": self._lost_attempts},
        )
        self._lost_since = None
        self._lost_attempts = 0

    async def _follow(
        self, connection: _Connection, snapshot: _Snapshot, backoff: Backoff
    ) -> AsyncGenerator[Documents, None]:
        """Watch from the snapshot's revision + 1; yield the documents after each
        response or resync that changed them; raise to list again."""
        call = connection.watch.Watch(metadata=connection.metadata)
        responses: asyncio.Queue[Any] = asyncio.Queue(WATCH_BUFFER)
        pump = asyncio.create_task(_pump(call, responses), name="seawall-config-etcd-watch")
        try:
            create = rpc.WatchCreateRequest(
                key=self._key, range_end=self._end, start_revision=snapshot.revision + 1
            )
            try:
                await self._call(
                    call.write(rpc.WatchRequest(create_request=create)), self.request_timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                raise _Unavailable(_describe(connection, exc)) from None
            try:
                created = await self._next_response(responses, self.request_timeout_s)
            except _Quiet:
                raise _Unavailable("the watch was not created in time") from None
            self._check(created)
            self.stats.connected = True
            self._found()
            backoff.reset()
            state = dict(snapshot.state)
            revision = snapshot.revision
            #: Events at or below this revision are already in `state` (a resync
            #: listed past them); applying them again would move keys back in time.
            floor = snapshot.revision
            changed = self._apply(created, state, floor)
            loop = asyncio.get_running_loop()
            resync_at = loop.time() + self.resync_s
            while True:
                if changed:
                    revision = max(revision, changed)
                    documents, too_large = self._documents(state, revision)
                    yield documents
                    if too_large:
                        raise _TooLarge
                try:
                    response = await self._next_response(
                        responses, max(0.0, resync_at - loop.time())
                    )
                except _Quiet:
                    fresh = await self._list(connection)
                    self.stats.relisted("resync")
                    resync_at = loop.time() + self.resync_s
                    if fresh.too_large:
                        yield fresh.documents
                        raise _TooLarge from None
                    if fresh.state != state:
                        self.stats.repaired += 1
                        log.warning(
                            "config watch on %s had missed changes; the resync at revision "
                            "%d repaired it",
                            self.origin,
                            fresh.revision,
                        )
                        state = dict(fresh.state)
                        yield fresh.documents
                    revision = floor = max(revision, fresh.revision)
                    changed = 0
                    continue
                self._check(response)
                changed = await self._apply_filtered(response, state, floor)
        finally:
            self.stats.connected = False
            pump.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _next_response(self, responses: asyncio.Queue[Any], within_s: float) -> Any:
        """The next watch response; `_Quiet` when none came within `within_s`."""
        try:
            item = await self._call(responses.get(), within_s)
        except _Unavailable:
            if self._closed.is_set():
                raise
            raise _Quiet from None
        if isinstance(item, grpc.aio.AioRpcError):
            raise _Unavailable(f"the watch broke: {item.code().name} {item.details()}")
        if item is grpc.aio.EOF:
            raise _Unavailable("the watch stream ended")
        return item

    def _check(self, response: Any) -> None:
        if response.compact_revision:
            raise _Compacted(
                f"revisions up to {response.compact_revision} were compacted before "
                "the watch read them"
            )
        if response.canceled:
            raise _Canceled(response.cancel_reason or "no reason given")

    def _apply(self, response: Any, state: dict[bytes, bytes], floor: int) -> int:
        """Events of a response without the filter (the created response has none)."""
        latest = 0
        for event in response.events:
            if event.kv.mod_revision > floor:
                _apply_event(event, state)
                latest = max(latest, event.kv.mod_revision)
        return latest

    async def _apply_filtered(self, response: Any, state: dict[bytes, bytes], floor: int) -> int:
        """Apply the response's events the filter lets through; the latest revision
        applied, or 0 when nothing was."""
        latest = 0
        for event in response.events:
            if event.kv.mod_revision <= floor:
                continue
            if not await allow_event(self.event_filter):
                self.stats.dropped_events += 1
                continue
            self.stats.events += 1
            _apply_event(event, state)
            latest = max(latest, event.kv.mod_revision)
        return latest

    # -- writing ------------------------------------------------------------------

    async def write(self, files: Mapping[str, str]) -> None:
        """Replace every key under the prefix with `files`, in one transaction: one
        revision, so every watcher sees the old documents or the new, never a mix.
        Fails (SourceError) rather than overwrite a change made in between."""
        if len(files) > self.max_documents:
            raise SourceError(f"{len(files)} documents, over the limit of {self.max_documents}")
        values = {self._key + name.encode(): text.encode() for name, text in files.items()}
        if any(not name for name in files):
            raise SourceError("a document needs a name")
        size = sum(len(value) for value in values.values())
        if size > self.max_bytes:
            raise SourceError(f"{size} bytes of documents, over the limit of {self.max_bytes}")
        for _ in range(WRITE_ATTEMPTS):
            connection: _Connection | None = None
            try:
                connection = await self._connect()
                if await self._replace(connection, values):
                    return
            except _Unauthenticated:
                await self._drop(connection)  # a stale token: the next one is fresh
            except _Unavailable as exc:
                await self._drop(connection)
                raise SourceError(f"cannot write {self.origin}: {exc}") from None
        raise SourceError(f"{self.origin} kept changing during the write; nothing was written")

    async def _replace(self, connection: _Connection, values: Mapping[bytes, bytes]) -> bool:
        listing = rpc.RangeRequest(key=self._key, range_end=self._end, keys_only=True)
        try:
            current = await self._call(
                connection.kv.Range(
                    listing, timeout=self.request_timeout_s, metadata=connection.metadata
                ),
                self.request_timeout_s,
            )
            unchanged = rpc.Compare(
                result=rpc.Compare.LESS,
                target=rpc.Compare.MOD,
                key=self._key,
                range_end=self._end,
                mod_revision=current.header.revision + 1,
            )
            operations = [
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=kv.key))
                for kv in current.kvs
                if kv.key not in values
            ] + [
                rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))
                for key, value in values.items()
            ]
            request = rpc.TxnRequest(compare=[unchanged], success=operations)
            response = await self._call(
                connection.kv.Txn(
                    request, timeout=self.request_timeout_s, metadata=connection.metadata
                ),
                self.request_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAUTHENTICATED:
                raise _Unauthenticated(_describe(connection, exc)) from None
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise _Unavailable(_describe(connection, exc)) from None
            raise SourceError(f"etcd refused the write: {exc.details()}") from None
        return bool(response.succeeded)

    async def aclose(self) -> None:
        self._closed.set()
        async with self._connect_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def _apply_event(event: Any, state: dict[bytes, bytes]) -> None:
    if event.type == rpc.Event.DELETE:
        state.pop(event.kv.key, None)
    else:
        state[event.kv.key] = event.kv.value


async def _pump(call: Any, responses: asyncio.Queue[Any]) -> None:
    """Read the watch stream into `responses` until it ends, then put how it ended.
    (A read must never be cancelled by a timeout: that cancels the whole RPC.)"""
    ending: Any
    try:
        while True:
            response = await call.read()
            await responses.put(response)
            if response is grpc.aio.EOF:
                return
    except grpc.aio.AioRpcError as exc:
        ending = exc
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # stopped by `_follow`
        ending = grpc.aio.EOF  # the call was cancelled under us: the channel closed
    await responses.put(ending)


def _describe(connection: _Connection, exc: grpc.aio.AioRpcError) -> str:
    return f"{connection.endpoint.target}: {exc.code().name} {exc.details()}"
