"""`--config` as a source: a file, a directory, or an etcd prefix.

    seawall serve --config /etc/seawall.yaml                 a file
    seawall serve --config /etc/seawall/                     a directory (a ConfigMap mount)
    seawall serve --config etcd://10.0.0.1:2379,10.0.0.2:2379/seawall/
    seawall serve --config etcd://seawall:env:ETCD_PASSWORD@10.0.0.1:2379/seawall/

`file:PATH` and `dir:PATH` say which one explicitly (they are also how each
source names itself in `origin`). A path must exist when the gateway starts: a
typo should stop it there, not leave it waiting for a file that never comes.

An etcd spec may carry a user and password (the password literal, or `env:NAME`;
the whole spec may be `env:NAME` too). They go to the source and nowhere else: a
spec is only ever shown masked (`mask_url`), in errors as in `origin`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import unquote

from common.config import ENV_PREFIX
from common.secrets import SecretUrl, mask_url
from gateway.sources.base import DEFAULT_RESYNC_S, Documents, EventFilter, Source, SourceError
from gateway.sources.directory import DirectorySource
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
    shown = repr(mask_url(text))
    if text.startswith(ENV_PREFIX):
        text = resolved(text).strip()
        shown = repr(mask_url(text))
    if text.startswith(ETCD_SCHEME):
        # Imported here: etcd's gRPC bindings are for etcd:// sources only.
        from gateway.sources.etcd import Credentials, EtcdSource

        authority, slash, prefix = resolved(text)[len(ETCD_SCHEME) :].partition("/")
        if not slash:
            raise SourceError(
                f"{shown}: etcd sources are etcd://HOST:PORT[,HOST:PORT]/prefix/ "
                "(USER:PASSWORD@ before the hosts when etcd requires it)"
            )
        userinfo, at, endpoints = authority.rpartition("@")
        credentials = None
        if at:
            user, colon, password = userinfo.partition(":")
            if not (user and colon and password):
                raise SourceError(f"{shown}: etcd credentials are USER:PASSWORD@")
            credentials = Credentials(unquote(user), unquote(password))
        return EtcdSource(
            endpoints,
            "/" + prefix,
            resync_s=resync_s,
            event_filter=event_filter,
            credentials=credentials,
            **options,
        )
    kind, colon, rest = text.partition(":")
    if colon and kind in ("file", "dir"):
        path = rest
    elif "://" in text:
        raise SourceError(f"{shown}: unknown config source scheme (file, dir or etcd://)")
    else:
        kind, path = "", text
    if kind == "dir" or (not kind and os.path.isdir(path)):
        if not os.path.isdir(path):
            raise SourceError(f"{shown}: no such directory")
        return DirectorySource(path, resync_s=resync_s, event_filter=event_filter, **options)
    if not os.path.isfile(path):
        reason = "is not a regular file" if os.path.exists(path) else "no such file or directory"
        raise SourceError(f"{shown}: {reason}")
    return FileSource(path, resync_s=resync_s, event_filter=event_filter, **options)


def resolved(spec: str) -> str:
    """`spec` with its `env:` references resolved (the whole of it, or an etcd
    password); SourceError naming the variable when one is not set."""
    try:
        return str(SecretUrl.of(spec))
    except ValueError as exc:
        raise SourceError(f"{mask_url(spec)!r}: {exc}") from None


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
