"""JSON merge patches (RFC 7386): how an experiment writes a candidate config.

A rollout step's `candidate` is a patch over the serving config as `GET /admin/config`
returns it: an object merges key by key, `null` removes a key, anything else (an
array included) replaces what was there. So a patch says only what changes, but a
list such as `models` or a group's `deployments` is restated whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

#: Nesting a patch may have, at most (a config is a few levels deep; this only keeps
#: a pathological file from recursing without bound).
MAX_DEPTH = 32


def apply_patch(target: Any, patch: Any) -> Any:
    """`patch` merged over `target` (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = apply_patch(merged.get(key), value)
    return merged


def json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why `value` is not a JSON value (YAML also has dates, sets, non-string keys,
    NaN), as `path: reason`; None when it is one."""
    where = path or "(top)"
    if depth > MAX_DEPTH:
        return f"{where}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}: key {key!r} is not a string"
            found = json_problem(item, f"{path}.{key}" if path else key, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = json_problem(item, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {value} is not a JSON number"
    if value is None or isinstance(value, str | int | float | bool):
        return None
    return f"{where}: a {type(value).__name__} is not a JSON value (quote it)"


def string_paths(value: Any, wanted: Callable[[str], bool], path: str = "") -> list[str]:
    """Where `value` holds a string `wanted` accepts, as paths like
    `receipts.keys[0].secret`."""
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in string_paths(item, wanted, f"{path}.{key}" if path else key)
        ]
    if isinstance(value, list):
        return [
            found
            for i, item in enumerate(value)
            for found in string_paths(item, wanted, f"{path}[{i}]")
        ]
    return [path] if isinstance(value, str) and wanted(value) else []
