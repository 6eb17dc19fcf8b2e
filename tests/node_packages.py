"""The npm packages tests/test_frameworks_node.py runs: tests/node/package.json, pinned
by its package-lock.json, installed into tests/node/node_modules by `make deps` (after
tests/services.py has made sure `node` and `npm` are there, as it does the servers).

`npm ci` installs exactly the lock file, and runs only when node_modules is older than
package.json or the lock file (npm writes node_modules/.package-lock.json as it
finishes), so `make test` on an installed checkout costs nothing here. When it cannot
install, the step stops before any test runs with one message naming the command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "node"
#: What `npm ci` writes last: its time says the install is at least as new as the pins.
INSTALLED_MARKER = Path("node_modules", ".package-lock.json")
PINS = ("package.json", "package-lock.json")


def node_binary() -> str | None:
    return shutil.which("node")


def packages_installed(folder: Path = NODE_DIR) -> bool:
    """node_modules holds what the lock file pins (installed after its last change)."""
    marker = folder / INSTALLED_MARKER
    if not marker.exists():
        return False
    return marker.stat().st_mtime >= max((folder / pin).stat().st_mtime for pin in PINS)


def install(folder: Path = NODE_DIR) -> int:
    """Installs the pinned packages when they are missing or stale; 0 when they are in."""
    if packages_installed(folder):
        return 0
    npm = shutil.which("npm")
    if npm is not None:
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        if subprocess.run(command, cwd=folder).returncode == 0 and packages_installed(folder):
            return 0
    print(
        "The Node packages the framework tests run are not installed in "
        f"{folder}. Install them, then run `make test` again:\n"
        f"    cd {folder} && npm ci",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(install())
