"""Reading config files from disk with limits: what the file and directory sources share.

Every read is bounded before it happens: sizes come from `stat`, and a file is
read at most one byte past what is left of the budget, so a file that grows while
it is read (or a huge file dropped into a config directory) costs a stat, not the
memory. Text must be UTF-8; anything else is a problem of the version, not an
exception.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.sources.base import MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, label

#: Kubernetes' atomic-writer names: `..data` (the symlink swapped on update),
#: `..data_tmp` and the timestamped `..2026_11_28_10_00_00.123456` directories.
#: All start with "..", which is also "hidden"; named here for the reader.
DATA_LINK = "..data"
YAML_SUFFIXES = (".yaml", ".yml")


def is_document_name(name: str) -> bool:
    """A directory entry that is a config document: a visible *.yaml/*.yml name.
    Hidden entries (editor swap files, Kubernetes' `..` entries) never are."""
    return not name.startswith(".") and name.lower().endswith(YAML_SUFFIXES)


@dataclass
class Budget:
    """What is left of the limits for one version's documents."""

    bytes_left: int = MAX_DOCUMENT_BYTES
    documents_left: int = MAX_DOCUMENTS
    max_bytes: int = MAX_DOCUMENT_BYTES
    max_documents: int = MAX_DOCUMENTS
    problems: list[str] = field(default_factory=list)


def read_documents(directory: str, names: Iterable[str], budget: Budget) -> dict[str, str]:
    """`names` in `directory` (following symlinks) as text, within `budget`.

    A name that does not resolve to a regular file is skipped: in a ConfigMap
    mount the kubelet creates a new key's symlink before the swap and removes a
    deleted key's symlink after it, so both dangle for a moment. Problems
    (over the limits, unreadable, not UTF-8) go to `budget.problems`; over a limit,
    nothing more is read."""
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for name in sorted(names):
        try:
            info = os.stat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        except OSError as exc:
            budget.problems.append(f"{label(name)}: cannot read: {exc.strerror}")
            continue
        if stat.S_ISREG(info.st_mode):
            sizes[name] = info.st_size
    if len(sizes) > budget.documents_left:
        budget.problems.append(
            f"(documents): {len(sizes)} documents, over the limit of {budget.max_documents}"
        )
        return {}
    total = sum(sizes.values())
    if total > budget.bytes_left:
        budget.problems.append(_too_large(total, budget))
        return {}
    for name in sizes:
        try:
            data = _read_at_most(os.path.join(directory, name), budget.bytes_left)
        except FileNotFoundError:
            continue
        except OSError as exc:
            budget.problems.append(f"{label(name)}: cannot read: {exc.strerror}")
            continue
        if len(data) > budget.bytes_left:
            budget.problems.append(_too_large(total - sizes[name] + len(data), budget))
            return {}
        budget.bytes_left -= len(data)
        budget.documents_left -= 1
        try:
            files[name] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            budget.problems.append(f"{label(name)}: not UTF-8 text (byte {exc.start})")
    return files


def _read_at_most(path: str, limit: int) -> bytes:
    """The file's bytes, at most `limit + 1` of them (one more says "too large")."""
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _too_large(size: int, budget: Budget) -> str:
    return f"(documents): {size} bytes of documents, over the limit of {budget.max_bytes} bytes"
