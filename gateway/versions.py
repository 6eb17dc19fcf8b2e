"""Config versions: what served when, and what was refused.

Every config the gateway has served is a `ConfigVersion` with two names. Its `id` is
a hash of the documents it was built from, so the same content has the same id on
every worker and every replica (what the response header and `/readyz` show, and
what `If-Match` names). Its `number` counts versions in this process, for people
("version 7"). The last `keep` versions stay (for `GET /admin/config/versions` and
rollback); older ones are forgotten.

A document that could not become a version is a `RefusedVersion`: its problems, in
check-config's `path: reason` form, shown by `GET /admin/config` until a good
version replaces it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.sources.base import digest

#: Versions kept for listing and rollback.
DEFAULT_KEEP = 10
#: Refused attempts kept for `GET /admin/config`.
KEEP_REFUSED = 10


def documents_id(documents: Mapping[str, str]) -> str:
    """The content id of a set of config documents (name -> text): the first 12 hex
    digits of the sources' digest (length-prefixed names and texts, in name order, so
    no two different sets share it by moving bytes across a boundary)."""
    return digest(documents)[:12]


@dataclass(frozen=True)
class ConfigVersion:
    number: int
    id: str
    documents: Mapping[str, str]
    origin: str
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "origin": self.origin,
            "loaded_at": round(self.loaded_at, 3),
            "documents": sorted(self.documents),
        }


@dataclass(frozen=True)
class RefusedVersion:
    id: str
    origin: str
    problems: tuple[str, ...]
    at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origin": self.origin,
            "at": round(self.at, 3),
            "problems": list(self.problems),
        }


class VersionHistory:
    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        self._numbers = itertools.count(1)
        self._versions: deque[ConfigVersion] = deque(maxlen=keep)
        self.refused: deque[RefusedVersion] = deque(maxlen=KEEP_REFUSED)

    def add(self, documents: Mapping[str, str], origin: str) -> ConfigVersion:
        version = ConfigVersion(
            next(self._numbers), documents_id(documents), dict(documents), origin
        )
        self._versions.append(version)
        return version

    def refuse(
        self, documents: Mapping[str, str], origin: str, problems: list[str]
    ) -> RefusedVersion:
        refused = RefusedVersion(documents_id(documents), origin, tuple(problems))
        self.refused.append(refused)
        return refused

    def find(self, name: int | str) -> ConfigVersion | None:
        """A kept version by number or id."""
        for version in self._versions:
            if name in (version.number, version.id, str(version.number)):
                return version
        return None

    def __iter__(self) -> Iterator[ConfigVersion]:
        return iter(self._versions)

    def __len__(self) -> int:
        return len(self._versions)
