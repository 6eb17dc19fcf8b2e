"""Which providers litellm translates, known without importing it.

`seawall check-config` must say "unknown provider" for a deployment litellm does not
know, and importing litellm to ask costs seconds of CPU (most of a check) and ~150 MB.
litellm's provider list is its `LlmProviders` enum (`litellm.provider_list` is
`list(LlmProviders)`), a class of string constants in one source file of its
package: it is read from there, parsed, never executed. Should a litellm release move
or reshape the enum, the names are taken from an imported litellm instead (slower,
the same answer); a test holds the parsed names to the imported ones.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

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
    from routing.providers.litellm import import_litellm

    return frozenset(p.value for p in import_litellm().provider_list)
