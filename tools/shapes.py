"""Reading JSON of unknown shape: what a client or a provider sent may be anything."""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
