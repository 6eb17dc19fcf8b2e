"""`--config` as a source: a file, a directory, or an etcd prefix.

    seawall serve --config /etc/seawall.yaml                 a file
    seawall serve --config /etc/seawall/                     a directory (a ConfigMap mount)
    seawall serve --config etcd://10.0.0.1:2379,10.0.0.2:2379/seawall/

`file:PATH` and `dir:PATH` say which one explicitly (they are also how each
source names itself in `origin`). A path must exist when the gateway starts: a
typo should stop it there, not leave it waiting for a file that never comes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from gateway.sources.base import DEFAULT_RESYNC_S, Documents, EventFilter, Source, SourceError
from gateway.sources.directory import DirectorySource
from gateway.sources.etcd import EtcdSource
from gateway.sources.file import FileSource

ETCD_SCHEME = "etcd://"


def source_for(
    spec: str,
    *,
    resync_s: float = DEFAULT_RESYNC_S,
    event_filter: EventFilter | None = None,
    **options: Any,
) -> Source:
    """The source `spec` names; SourceError when it names none. `options` go to
    the source's constructor (timeouts, limits)."""
    text = spec.strip()
    if not text:
        raise SourceError("the config source is empty: give a file, a directory or etcd://")
    if text.startswith(ETCD_SCHEME):
        endpoints, slash, prefix = text[len(ETCD_SCHEME) :].partition("/")
        if not slash:
            raise SourceError(f"{spec!r}: etcd sources are etcd://HOST:PORT[,HOST:PORT]/prefix/")
        return EtcdSource(
            endpoints, "/" + prefix, resync_s=resync_s, event_filter=event_filter, **options
        )
    kind, colon, rest = text.partition(":")
    if colon and kind in ("file", "dir"):
        path = rest
    elif "://" in text:
        raise SourceError(f"{spec!r}: unknown config source scheme (file, dir or etcd://)")
    else:
        kind, path = "", text
    if kind == "dir" or (not kind and os.path.isdir(path)):
        if not os.path.isdir(path):
            raise SourceError(f"{spec!r}: no such directory")
        return DirectorySource(path, resync_s=resync_s, event_filter=event_filter, **options)
    if not os.path.isfile(path):
        reason = "is not a regular file" if os.path.exists(path) else "no such file or directory"
        raise SourceError(f"{spec!r}: {reason}")
    return FileSource(path, resync_s=resync_s, event_filter=event_filter, **options)


def read_now(spec: str) -> Documents:
    """The documents `spec` holds, read once outside any running event loop (the
    command line, before serving starts). SourceError when it cannot be read."""

    async def read() -> Documents:
        source = source_for(spec)
        try:
            return await source.read()
        finally:
            await source.aclose()

    return asyncio.run(read())
