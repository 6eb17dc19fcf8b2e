"""A config kept as several files in one directory, such as a mounted ConfigMap.

Every visible `*.yaml`/`*.yml` file at the top of the directory is a document
named by its file name; hidden entries are skipped, which covers editors' swap
files and Kubernetes' own `..data`, `..data_tmp` and `..<timestamp>` entries.

Kubernetes mounts a ConfigMap as real files in a timestamped directory, a
`..data` symlink to it, and one symlink per key through `..data`:

    dir/..2026_11_28_10_00_00.123456/seawall.yaml   the content
    dir/..data -> ..2026_11_28_10_00_00.123456
    dir/seawall.yaml -> ..data/seawall.yaml

An update writes a new timestamped directory, creates symlinks for new keys, renames
a new symlink over `..data` (the atomic step), then removes the symlinks of deleted
keys and the old directory. So when `..data` exists, a read resolves it once and
reads the timestamped directory it names: every document of one version, never a
mix of two. If `..data` moved while the files were read, the read starts again.
A plain directory has no such step: its files are read as they are, and a change
to several files may be seen in between (the next notification reads the rest).

A directory is not writable through the gateway: a ConfigMap is changed where it
lives (every replica then follows), and plain files cannot be replaced together.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping

from gateway.sources.base import (
    DEFAULT_RESYNC_S,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENTS,
    Documents,
    EventFilter,
    SourceError,
    SourceStats,
)
from gateway.sources.fswatch import DEFAULT_DEBOUNCE_S, DirectoryEvents, Watches
from gateway.sources.reading import DATA_LINK, Budget, is_document_name, read_documents

#: Reads that found `..data` swapped under them, in a row, before giving up for now
#: (the next notification or resync tries again). Kubernetes swaps at most every
#: kubelet sync period, so two in a row already means something else is going on.
MAX_SNAPSHOT_ATTEMPTS = 5


class DirectorySource:
    writable = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resync_s: float = DEFAULT_RESYNC_S,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        event_filter: EventFilter | None = None,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        max_documents: int = MAX_DOCUMENTS,
    ) -> None:
        self.path = os.path.abspath(path)
        self.origin = f"dir:{self.path}"
        self.resync_s = resync_s
        self.debounce_s = debounce_s
        self.event_filter = event_filter
        self.max_bytes = max_bytes
        self.max_documents = max_documents
        self.stats = SourceStats()
        self._watches = Watches()

    async def read(self) -> Documents:
        return await asyncio.to_thread(self._read)

    def _read(self) -> Documents:
        self.stats.reads += 1
        for _ in range(MAX_SNAPSHOT_ATTEMPTS):
            target = _data_target(self.path)
            base = os.path.join(self.path, target) if target is not None else self.path
            budget = Budget(
                bytes_left=self.max_bytes,
                documents_left=self.max_documents,
                max_bytes=self.max_bytes,
                max_documents=self.max_documents,
            )
            try:
                names = [name for name in os.listdir(base) if is_document_name(name)]
            except FileNotFoundError:
                if target is not None:
                    continue  # swapped and removed since the link was read
                return self._problem(f"(documents): no such directory {self.path}")
            except OSError as exc:
                return self._problem(f"(documents): cannot list {self.path}: {exc.strerror}")
            files = read_documents(base, names, budget)
            if target is None or _data_target(self.path) == target:
                return Documents.of(files, self.origin, None, budget.problems)
        return self._problem(
            f"(documents): {DATA_LINK} in {self.path} changed {MAX_SNAPSHOT_ATTEMPTS} times "
            "while it was read"
        )

    def _problem(self, problem: str) -> Documents:
        return Documents.of({}, self.origin, None, [problem])

    def watch(self) -> AsyncIterator[Documents]:
        events = DirectoryEvents(
            [self.path] if os.path.isdir(self.path) else [],
            _relevant,
            self.stats,
            self.debounce_s,
            self.event_filter,
        )
        return self._watches.follow(self.read, events, self.resync_s, self.stats)

    async def write(self, files: Mapping[str, str]) -> None:
        raise SourceError(f"{self.origin} is a directory: change its files where they live")

    async def aclose(self) -> None:
        await self._watches.close()


def _relevant(name: str) -> bool:
    return name == DATA_LINK or is_document_name(name)


def _data_target(directory: str) -> str | None:
    """Where `..data` points (a timestamped directory's name), or None without it."""
    try:
        return os.readlink(os.path.join(directory, DATA_LINK))
    except OSError:  # none, or not a symlink
        return None
