"""Where the config comes from, and how a change is noticed: file, directory, etcd.

A source yields documents (raw text by name) and never parses them; `merge` turns
documents into one config mapping and every problem; the gateway's loader
validates, applies, and keeps the last good version. See base.py for the contract
and docs/reloading.md for how each source detects changes and how fast.

`EtcdSource` is imported on first use: its gRPC bindings (grpc, protobuf, aetcd) are
~15 MB and ~120 modules that only an etcd:// source needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.sources.base import (
    DEFAULT_RESYNC_S,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    Documents,
    EventFilter,
    Source,
    SourceError,
    SourceStats,
    digest,
)
from gateway.sources.directory import DirectorySource
from gateway.sources.file import FileSource
from gateway.sources.merge import merge
from gateway.sources.spec import source_for

if TYPE_CHECKING:
    from gateway.sources.etcd import EtcdSource

__all__ = [
    "DEFAULT_RESYNC_S",
    "MAX_DOCUMENTS",
    "MAX_DOCUMENT_BYTES",
    "DirectorySource",
    "Documents",
    "EtcdSource",
    "EventFilter",
    "FileSource",
    "Source",
    "SourceError",
    "SourceStats",
    "digest",
    "merge",
    "source_for",
]


def __getattr__(name: str) -> Any:
    if name == "EtcdSource":
        from gateway.sources.etcd import EtcdSource

        return EtcdSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
