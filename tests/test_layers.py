"""The layering rules of the README's architecture section, checked on the source.

- the domain packages (routing, tools, chaos, tenants, policies, limits, responses,
  toolservers, audit) and `common` never import `gateway`: `gateway` composes them;
- `gateway/server/` (the front door) imports nothing of `gateway` above it;
- `common` imports none of the domain packages.

Imports are read with `ast`, wherever they are (function-local lazy imports and
`TYPE_CHECKING` blocks included), so a lazy import cannot hide an arrow upwards.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOMAIN = ("routing", "tools", "chaos", "tenants", "policies", "limits", "responses", "slo",
          "toolservers", "audit", "rollouts")  # fmt: skip


def imported_modules(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def arrows(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sources(package):
        for module in imported_modules(path):
            top = module.split(".")
            if any(module == f or module.startswith(f + ".") for f in forbidden) and not any(
                module == a or module.startswith(a + ".") for a in allowed
            ):
                found.append(f"{path.relative_to(REPO)} imports {'.'.join(top)}")
    return found


@pytest.mark.parametrize("package", [*DOMAIN, "common"])
def test_domain_packages_never_import_the_gateway(package: str) -> None:
    assert sources(package), package
    assert arrows(package, ("gateway",)) == []


def test_the_front_door_imports_nothing_above_it() -> None:
    assert arrows("gateway/server", ("gateway",), allowed=("gateway.server",)) == []


def test_common_imports_no_domain_package() -> None:
    assert arrows("common", DOMAIN) == []


def test_the_check_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from gateway.app import create_app\n    return create_app\n")
    assert list(imported_modules(module)) == ["gateway.app"]
