"""What every config source gives the gateway: documents, now and after each change.

A source knows where the config lives and how to notice that it changed; it never
parses or validates it. It hands over *documents*, the raw text split by file or
key name, and the loader (gateway/reload.py) merges, validates and applies them,
keeping the last good version when a new one is refused. So a source cannot turn
a bad edit into an outage, and every source reports problems the same way.

What a source cannot read as text (too large, not UTF-8, unreadable) travels as
`Documents.problems`, which `merge` reports with the YAML's own problems: the
version is refused with every reason, like any invalid config.

Every source converges even when a change notification is lost (an fs event
dropped, an etcd watch that missed events): it re-reads on a period (`resync_s`)
and compares digests. `watch()` yields only when the digest changes; the first
yield is the content at the moment the watch was armed, so a consumer that calls
`read()` and then `watch()` can never miss a change made in between.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

#: The documents of one version, all together, at most (bytes of text). Beyond it
#: the version is refused with a problem; nothing larger is held in memory longer
#: than it takes to measure it.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: Files in a directory or keys under an etcd prefix, at most. (An etcd
#: transaction holds at most 128 operations by default; a write replacing every
#: document of a version must fit in one.)
MAX_DOCUMENTS = 64
#: How often a source re-reads everything and compares, whatever notifications
#: said: the bound on convergence when notifications are lost.
DEFAULT_RESYNC_S = 10.0

#: Called before a change notification is acted on (an etcd watch event, a batch of
#: file-system events); returning False drops it, as a lossy watch would. Chaos
#: wires its `config_watch_drop` fault here; the periodic resync must recover.
EventFilter = Callable[[], Awaitable[bool]] | Callable[[], bool]


class SourceError(Exception):
    """The source itself cannot be used (no etcd endpoint answers, a path that
    names nothing, a write that cannot be done). Content that cannot become a
    version is not an error here: it is a problem in `Documents.problems`."""


@dataclass(frozen=True, slots=True)
class Documents:
    """The config as a source holds it at one moment."""

    files: Mapping[str, str]  # name -> text ("seawall.yaml" -> "...")
    origin: str  # "file:/etc/seawall.yaml", "dir:/etc/seawall", "etcd://127.0.0.1:2379/seawall/"
    revision: str | None  # the store's revision when it has one (etcd), else None
    digest: str  # sha256 over the names, texts and problems: equal content, equal digest
    #: Why some content could not be read as documents (size, encoding, I/O), each
    #: as `name: reason`. A version with problems must be refused.
    problems: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        files: Mapping[str, str],
        origin: str,
        revision: str | None = None,
        problems: Iterable[str] = (),
    ) -> Documents:
        ordered = {name: files[name] for name in sorted(files)}
        listed = tuple(problems)
        return cls(MappingProxyType(ordered), origin, revision, digest(ordered, listed), listed)


def digest(files: Mapping[str, str], problems: Iterable[str] = ()) -> str:
    """sha256 hex over the documents in name order, then the problems.

    Every name and text is length-prefixed, so no two different sets of documents
    share a digest by moving bytes across a boundary ({"a": "x\\0b"} against
    {"a": "x", "b": ""} with a separator-based encoding). The digest names a
    version everywhere (If-Match, replicas comparing what they serve), so that
    matters."""
    sha = hashlib.sha256()

    def put(text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        sha.update(len(data).to_bytes(8, "big"))
        sha.update(data)

    for name in sorted(files):
        put(name)
        put(files[name])
    listed = tuple(problems)
    if listed:
        sha.update(b"\xffproblems")
        for problem in listed:
            put(problem)
    return sha.hexdigest()


def label(name: str) -> str:
    """A document name as problems show it: as is when printable, else quoted with
    escapes (a name with a newline must not break a one-line problem)."""
    return name if name and name.isprintable() else repr(name)


async def allow_event(event_filter: EventFilter | None) -> bool:
    """Whether a change notification may be acted on (see `EventFilter`)."""
    if event_filter is None:
        return True
    verdict = event_filter()
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


@dataclass
class SourceStats:
    """What a source has been through; counters only go up. The gateway exports
    them as metrics and shows them in `GET /admin/config`."""

    reads: int = 0  # full reads (lists), for any reason
    yields: int = 0  # versions handed to the watcher (content changed)
    events: int = 0  # change notifications acted on
    dropped_events: int = 0  # notifications the event filter dropped
    #: Full re-reads by reason: "start", "event", "resync", "reconnect", "compacted", "canceled".
    relists: dict[str, int] = field(default_factory=dict)
    #: Resyncs that found content the notifications had not delivered: each one
    #: is a lost or dropped notification that the resync repaired.
    repaired: int = 0
    errors: int = 0  # failed reads, broken watches, failed connections
    last_error: str | None = None
    connected: bool = False  # etcd: a watch is established

    def relisted(self, reason: str) -> None:
        self.relists[reason] = self.relists.get(reason, 0) + 1

    def failed(self, error: str) -> None:
        self.errors += 1
        self.last_error = error

    def describe(self) -> dict[str, object]:
        return {
            "reads": self.reads,
            "yields": self.yields,
            "events": self.events,
            "dropped_events": self.dropped_events,
            "relists": dict(self.relists),
            "repaired": self.repaired,
            "errors": self.errors,
            "last_error": self.last_error,
            "connected": self.connected,
        }


class Source(Protocol):
    """A place the config is read from (a file, a directory, an etcd prefix)."""

    @property
    def origin(self) -> str:
        """Where the documents come from, as a URL-like name (see `Documents.origin`)."""
        ...

    @property
    def writable(self) -> bool:
        """Whether `write` may be called: a plain file and etcd, yes; a directory (a
        ConfigMap mount is read-only, and files cannot be replaced together), no."""
        ...

    @property
    def stats(self) -> SourceStats: ...

    async def read(self) -> Documents:
        """The current content, now."""
        ...

    def watch(self) -> AsyncIterator[Documents]:
        """The content when the watch is armed, then again after every change.

        Equal content is not yielded twice in a row (consumers may still dedup
        by digest). Runs until the consumer stops iterating or `aclose()`."""
        ...

    async def write(self, files: Mapping[str, str]) -> None:
        """Replace the whole content with `files` (SourceError if not writable)."""
        ...

    async def aclose(self) -> None: ...
