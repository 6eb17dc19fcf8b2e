"""litellm, imported once and only when a deployment needs it; and which providers it
translates, known without importing it.

Importing litellm costs seconds of CPU and ~150 MB, so it happens on first use only,
off the event loop (`import_litellm`). `seawall check-config` must still say "unknown
provider" for a deployment litellm does not know, without that cost (most of a
check). litellm's provider list is its `LlmProviders` enum (`litellm.provider_list`
is `list(LlmProviders)`), a class of string constants in one source file of its
package: it is read from there, parsed, never executed. Should a litellm release move
or reshape the enum, the names are taken from an imported litellm instead (slower,
the same answer); a test holds the parsed names to the imported ones.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

#: Where the enum lives, under litellm's package folder.
SOURCE = Path("types") / "utils.py"
ENUM = "LlmProviders"


@functools.cache
def litellm_providers() -> frozenset[str]:
    """Every provider name litellm translates; empty without litellm installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or spec.origin is None:
        return frozenset()
    try:
        source = (Path(spec.origin).parent / SOURCE).read_text(encoding="utf-8")
        names = enum_values(ast.parse(source), ENUM)
    except (OSError, SyntaxError, UnicodeDecodeError):
        names = frozenset()
    return names or imported_providers()


def enum_values(module: ast.Module, name: str) -> frozenset[str]:
    """The string values assigned in class `name` of `module` (a `str, Enum` class's
    members), or none when there is no such class."""
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return frozenset(
                statement.value.value
                for statement in node.body
                if isinstance(statement, ast.Assign)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            )
    return frozenset()


def imported_providers() -> frozenset[str]:
    """The names as an imported litellm lists them (seconds, the first time)."""
    return frozenset(p.value for p in import_litellm().provider_list)


# litellm 1.106 imports these on its first request: ~0.5 s (the proxy's type
# definitions, tiktoken's encoding) that would block the event loop mid-traffic.
# Importing them with litellm moves that cost to startup, off the loop.
WARM_MODULES = ("litellm.proxy._types", "litellm.litellm_core_utils.default_encoding")

_litellm: Any = None


def import_litellm() -> Any:
    """Import litellm with its network fetches disabled (the cost map is bundled).

    Slow: call it from a worker thread (`LiteLLMProvider.start` does).
    """
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):  # moved in another litellm: only slower
                importlib.import_module(name)
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm
