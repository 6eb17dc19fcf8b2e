"""`make deps`: on a machine without the servers the suite starts (or Node.js), the
install step either installs them or stops before any test runs, with one message that
names the packages and the command (never a run that errors half-way)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import node_packages
from tests.services import PACKAGES, missing_packages

REPO = Path(__file__).resolve().parent.parent


def hidden_path(tmp_path: Path, *keep: str) -> str:
    """A PATH holding only `keep` (symlinked): the servers, apt-get and sudo are hidden."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in keep:
        found = shutil.which(name)
        assert found is not None, name
        (folder / name).symlink_to(found)
    return str(folder)


def test_every_server_the_suite_starts_is_found_here() -> None:
    assert missing_packages() == []


def test_the_pinned_node_packages_are_installed_here() -> None:
    assert node_packages.packages_installed()


def test_without_npm_the_node_step_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Node packages pinned but not installed, and no npm to install them: one message."""
    folder = tmp_path / "node"
    folder.mkdir()
    for pin in node_packages.PINS:
        (folder / pin).write_text("{}")
    monkeypatch.setenv("PATH", hidden_path(tmp_path))
    assert node_packages.install(folder) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"The Node packages the framework tests run are not installed in {folder}. "
        "Install them, then run `make test` again:",
        f"    cd {folder} && npm ci",
    ]


def test_the_install_step_names_what_is_missing_and_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": hidden_path(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.services"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    packages = " ".join(PACKAGES.values())
    assert result.stderr.strip().splitlines() == [
        f"The test suite runs programs that are not installed: "
        f"{', '.join(PACKAGES.values())}. Install them, then run `make test` again:",
        f"    sudo apt-get install -y {packages}",
    ]
    assert result.stdout == ""


def test_make_test_stops_before_running_a_test(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": hidden_path(tmp_path, "make")}
    # The virtualenv is taken as installed (`-o`): this is about the servers. The deps
    # step fails first, so the recipe that runs pytest is never reached.
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "test"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "sudo apt-get install -y" in result.stderr
    assert "pytest" not in result.stdout.replace("-m tests.services", "")
    assert "passed" not in result.stdout and "collected" not in result.stdout
