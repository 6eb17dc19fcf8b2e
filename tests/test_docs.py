"""The docs run: every config block loads, every README example works, every config
field is documented.

YAML blocks of README.md and docs/*.md:

- a block with `models` is a whole config, loaded as it stands;
- a block without is a fragment of the page's config: merged onto the page's config
  so far (the embedded default at first; mappings merged key by key, lists
  replaced), so a page can build one config block by block (tenants, then their
  keys, then their policies);
- a block marked `<!-- docs-test: experiment -->` (the line before it) is a chaos
  experiment file, loaded by the experiment loader;
- a block marked `<!-- docs-test: skip (why) -->` is deliberately partial.

`env:` secrets may be unset (as `seawall check-config --skip-env` allows).

README examples: every `sh` command line and `python` block runs against the embedded
default, served on a free port (the address in the text is replaced), unless its
block is marked skip (`make ...`, the benchmark). `curl` commands must get a 2xx.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from chaos.runner.loading import parse_experiment
from common.config import env_secrets_optional
from gateway.config import DEFAULT_CONFIG_RESOURCE, GatewayConfig, parse_config
from tests.support import ServerThread

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
MARK = re.compile(r"<!--\s*docs-test:\s*(\w+)")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
ADDRESS = "127.0.0.1:8080"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    text: str
    #: The `docs-test:` mark on the line before the block ("" when none).
    mark: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> Iterator[Block]:
    text = page.read_text()
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        line = text[: match.start()].count("\n") + 1
        yield Block(page, line, match.group(1), match.group(2), mark.group(1) if mark else "")


def placeholders(text: str) -> str:
    """Each quoted placeholder (`"<hex sha256 of the token>"`) becomes a distinct sha256
    digest, valid wherever the docs put one."""
    counter = iter(range(1_000_000))
    return re.sub(
        r'"<[^">]*>"',
        lambda _: '"' + hashlib.sha256(str(next(counter)).encode()).hexdigest() + '"',
        text,
    )


def embedded_default() -> dict[str, Any]:
    text = (REPO / "gateway" / DEFAULT_CONFIG_RESOURCE).read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def merged(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """`fragment` merged onto `base`: mappings key by key (a block can set
    `mcp.ledger` and keep the page's `mcp.servers`), anything else replaced."""
    out = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def page_configs() -> Iterator[tuple[str, Any]]:
    """(where, what to load) for every YAML block of every page, in page order."""
    for page in PAGES:
        config = embedded_default()
        for block in blocks(page):
            if block.lang not in ("yaml", "yml") or block.mark == "skip":
                continue
            document = yaml.safe_load(placeholders(block.text))
            if block.mark == "experiment":
                yield block.where, ("experiment", document)
                continue
            assert isinstance(document, dict), f"{block.where}: not a mapping"
            config = document if "models" in document else merged(config, document)
            yield block.where, ("config", config)


CONFIGS = list(page_configs())


@pytest.mark.parametrize(("kind", "document"), [c for _, c in CONFIGS], ids=[w for w, _ in CONFIGS])
def test_every_yaml_block_loads(kind: str, document: Any) -> None:
    if kind == "experiment":
        parse_experiment(document, "<docs>")
        return
    with env_secrets_optional():
        parse_config(document, "<docs>")


def test_the_docs_have_config_blocks_to_check() -> None:
    """The parametrized test above must be able to fail: it has blocks to load."""
    assert len(CONFIGS) >= 10
    assert any(kind == "experiment" for _, (kind, _) in CONFIGS)


# -- README examples ---------------------------------------------------------------------


def readme_blocks(*langs: str) -> list[Block]:
    return [b for b in blocks(REPO / "README.md") if b.lang in langs and b.mark != "skip"]


def commands(block: Block) -> Iterator[str]:
    """The command lines of a shell block, continuation lines joined, comments cut."""
    joined = block.text.replace("\\\n", " ")
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


@pytest.fixture(scope="module")
def served(default_gateway: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("readme")
    # The README's own config, where its commands look for it.
    config = next(b for b in readme_blocks("yaml") if "# seawall.yaml" in b.text)
    (folder / "seawall.yaml").write_text(config.text)
    return types.SimpleNamespace(address=default_gateway.url.removeprefix("http://"), cwd=folder)


def run(command: str, served: Any) -> subprocess.CompletedProcess[str]:
    command = command.replace(ADDRESS, served.address)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        command, shell=True, cwd=served.cwd, env=env, capture_output=True, text=True, timeout=60
    )


SHELL = [(b, c) for b in readme_blocks("sh") for c in commands(b)]


@pytest.mark.parametrize(("block", "command"), SHELL, ids=[c[:60] for _, c in SHELL])
def test_every_readme_command_runs(block: Block, command: str, served: Any) -> None:
    argv = shlex.split(command.split("#", 1)[0])
    if argv[:2] == ["seawall", "serve"] or argv[:2] == ["seawall", "mock-upstream"]:
        # A server: it must start and answer; `--port 0` keeps it off real ports.
        command = command.split("#", 1)[0] + " --port 0"
        # The README's config names its secrets as env: references; a user sets them.
        secrets = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-y", "TEAM_A_TOKEN": "t"}
        proc = subprocess.Popen(
            shlex.split(command),
            cwd=served.cwd,
            env={**os.environ, **secrets, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "listening on" in line:
                    break
            else:
                pytest.fail(f"{block.where}: `{command}` exited: {proc.returncode}")
        finally:
            proc.terminate()
            proc.wait(30)
        return
    result = run(command, served)
    expected = 2 if "exit 2" in command and "--skip-env" not in command else 0
    assert result.returncode == expected, (block.where, command, result.stdout, result.stderr)
    if argv[0] == "curl":
        assert '"error"' not in result.stdout, (block.where, result.stdout)


PYTHON = readme_blocks("python")


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_every_readme_python_example_runs(block: Block, served: Any) -> None:
    code = block.text.replace(ADDRESS, served.address)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=served.cwd
    )
    assert result.returncode == 0, (block.where, result.stderr)
    assert result.stdout.strip()


# -- the config reference ------------------------------------------------------------------

#: Where each top-level section is documented, besides docs/configuration.md.
SECTION_PAGES = {
    "server": [],
    "routing": ["routing.md"],
    "models": ["routing.md", "guards-and-tools.md"],
    "tenants": ["tenants-and-policies.md", "audit.md"],
    "keys": ["tenants-and-policies.md"],
    "policies": ["tenants-and-policies.md"],
    "limits": ["limits.md"],
    "tools": ["guards-and-tools.md"],
    "receipts": ["guards-and-tools.md"],
    "tool_policy": ["guards-and-tools.md"],
    "chaos": ["chaos.md"],
    "telemetry": [],
    "reload": ["reloading.md", "observability.md"],
    "responses": ["responses.md"],
    "mcp": ["mcp.md"],
    "audit": ["audit.md"],
    "slos": ["observability.md"],
}


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The config models an annotation holds (itself, or inside tuples, dicts, unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in get_args(annotation):
        yield from models_in(argument)
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, BaseModel):
        yield origin


def fields(model: type[BaseModel], path: str, seen: set[type]) -> Iterator[str]:
    for name, info in model.model_fields.items():
        yield f"{path}.{name}"
        for nested in models_in(info.annotation):
            if nested not in seen:
                yield from fields(nested, f"{path}.{name}", seen | {nested})


def documented_names(pages: list[str]) -> set[str]:
    text = "".join((REPO / "docs" / page).read_text() for page in ["configuration.md", *pages])
    spans = re.findall(r"`([^`\n]+)`", text)
    code = re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)
    return {name for span in [*spans, *code] for name in re.findall(r"[A-Za-z_]\w*", span)}


def undocumented() -> list[str]:
    missing = []
    for section, info in GatewayConfig.model_fields.items():
        assert section in SECTION_PAGES, (
            f"new config section {section!r}: say where it is documented"
        )
        names = documented_names(SECTION_PAGES[section])
        for nested in models_in(info.annotation):
            for path in fields(nested, section, {nested}):
                if path.rsplit(".", 1)[-1] not in names:
                    missing.append(path)
    return missing


def test_every_config_field_is_in_the_reference() -> None:
    assert undocumented() == []
