"""Importing a library without the optional extras it loads for features seawall never uses.

Some dependencies import whatever optional package happens to be installed, at import
time, for a feature seawall does not touch: pybreaker imports redis-py (and with it
OpenTelemetry's metrics SDK) for a Redis-backed breaker storage; httpx imports its
command-line client (click, rich, pygments). Installed beside seawall they are, so every
worker would pay for them in start-up time and memory (docs/performance.md, "Start-up
and idle memory"). `without` makes them look absent for the length of one import.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Imports inside the block see the modules `names` as not installed (ImportError,
    which the libraries above catch to switch the extra off). Afterwards they import
    normally again, for whoever needs them. A module already imported is left alone:
    hiding it could only break its users."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextmanager
def placeholder(*names: str) -> Iterator[None]:
    """Imports inside the block get an empty module for each submodule in `names`
    (`package.module`): for a package whose `__init__` imports a submodule it never
    needs to be imported for (the CEL library imports its command-line front end,
    prompt_toolkit and typer, ~230 modules and ~20 MB). Afterwards the placeholders
    are gone, from `sys.modules` and from their package, so a real import of the
    submodule still works."""
    placed = [name for name in names if name not in sys.modules]
    for name in placed:
        sys.modules[name] = ModuleType(name)
    try:
        yield
    finally:
        for name in placed:
            stub = sys.modules.pop(name, None)
            parent, _, child = name.rpartition(".")
            package = sys.modules.get(parent)
            if package is not None and getattr(package, child, None) is stub:
                delattr(package, child)
