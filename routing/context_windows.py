"""How many prompt tokens each upstream model accepts.

litellm ships its model table (context windows, prices) as a JSON file inside its
package. It is read as a file, never by importing litellm (seconds and ~150 MB),
and only the input limits are kept. Reading happens once, and only when some model
group has no explicit `max_prompt_tokens`.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from routing.config import DeploymentConfig, ModelGroupConfig

TABLE = "model_prices_and_context_window_backup.json"


@functools.cache
def litellm_table() -> dict[str, Any]:
    """litellm's bundled model table (context windows, prices), read as a file: {}
    when litellm or the file is missing."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / TABLE
    try:
        table = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


@functools.cache
def litellm_input_limits() -> dict[str, int]:
    table = litellm_table()
    limits = {}
    for name, info in table.items():
        if isinstance(info, dict):
            limit = info.get("max_input_tokens") or info.get("max_tokens")
            if isinstance(limit, int) and limit > 0:
                limits[name] = limit
    return limits


def deployment_window(deployment: DeploymentConfig) -> int | None:
    if deployment.context_window is not None:
        return deployment.context_window
    if deployment.provider == "mock":
        return deployment.mock.context_window
    limits = litellm_input_limits()
    for name in (deployment.model, f"{deployment.provider}/{deployment.model}"):
        if name in limits:
            return limits[name]
    return None


def group_prompt_limit(group: ModelGroupConfig) -> int | None:
    """`max_prompt_tokens`, or the smallest known window of the group's deployments:
    a prompt must fit whichever deployment serves it. None when none is known."""
    if group.max_prompt_tokens is not None:
        return group.max_prompt_tokens
    windows = [w for w in map(deployment_window, group.deployments) if w is not None]
    return min(windows) if windows else None


def prompt_limits(groups: Iterable[ModelGroupConfig]) -> dict[str, int | None]:
    return {group.name: group_prompt_limit(group) for group in groups}
