"""A config kept in one file: `seawall serve --config /etc/seawall.yaml`.

The document's name is the file's name. Changes are seen through notifications on
the file's directory (editors save by renaming a new file over the old one), and
on the directory the file's symlink points into, when it is one; a file that is a
key of a mounted ConfigMap (`/etc/seawall/seawall.yaml -> ..data/seawall.yaml`)
changes when the kubelet swaps `..data`, which is watched too.

`write` replaces the file atomically (a temporary file beside it, then a rename),
so a reader, this gateway's watch included, sees the old text or the new, never a
mix. A file that is a symlink, or lives in a ConfigMap mount, is not writable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Mapping

from gateway.sources.base import (
    DEFAULT_RESYNC_S,
    MAX_DOCUMENT_BYTES,
    Documents,
    EventFilter,
    SourceError,
    SourceStats,
)
from gateway.sources.fswatch import DEFAULT_DEBOUNCE_S, DirectoryEvents, Watches
from gateway.sources.reading import DATA_LINK, Budget, read_documents


class FileSource:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        resync_s: float = DEFAULT_RESYNC_S,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        event_filter: EventFilter | None = None,
        max_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        self.path = os.path.abspath(path)
        self.directory, self.name = os.path.split(self.path)
        self.origin = f"file:{self.path}"
        self.resync_s = resync_s
        self.debounce_s = debounce_s
        self.event_filter = event_filter
        self.max_bytes = max_bytes
        self.stats = SourceStats()
        self._watches = Watches()

    @property
    def writable(self) -> bool:
        return not os.path.islink(self.path) and not os.path.lexists(
            os.path.join(self.directory, DATA_LINK)
        )

    async def read(self) -> Documents:
        return await asyncio.to_thread(self._read)

    def _read(self) -> Documents:
        self.stats.reads += 1
        budget = Budget(bytes_left=self.max_bytes, max_bytes=self.max_bytes, documents_left=1)
        files = read_documents(self.directory, [self.name], budget)
        if self.name not in files and not budget.problems:
            reason = "is not a regular file" if os.path.lexists(self.path) else "no such file"
            budget.problems.append(f"{self.name}: cannot read {self.path}: {reason}")
        return Documents.of(files, self.origin, None, budget.problems)

    def watch(self) -> AsyncIterator[Documents]:
        target = os.path.realpath(self.path)
        names = {self.name, os.path.basename(target), DATA_LINK}
        directories = [d for d in (self.directory, os.path.dirname(target)) if os.path.isdir(d)]
        events = DirectoryEvents(
            directories,
            names.__contains__,
            self.stats,
            self.debounce_s,
            self.event_filter,
        )
        return self._watches.follow(self.read, events, self.resync_s, self.stats)

    async def write(self, files: Mapping[str, str]) -> None:
        """Replace the file with the one document in `files` (its name is not used:
        the file keeps its own)."""
        if not self.writable:
            raise SourceError(f"{self.origin} is a symlink or in a ConfigMap mount: not writable")
        if len(files) != 1:
            raise SourceError(f"{self.origin} holds one document; {len(files)} given")
        data = next(iter(files.values())).encode()
        if len(data) > self.max_bytes:
            raise SourceError(
                f"{len(data)} bytes of documents, over the limit of {self.max_bytes} bytes"
            )
        await asyncio.to_thread(self._replace, data)

    def _replace(self, data: bytes) -> None:
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            mode = 0o644
        try:
            fd, temporary = tempfile.mkstemp(
                dir=self.directory, prefix=f".{self.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise SourceError(f"cannot write {self.origin}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, mode)
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise SourceError(f"cannot write {self.origin}: {exc.strerror}") from None

    async def aclose(self) -> None:
        await self._watches.close()
