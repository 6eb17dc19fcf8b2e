"""Reading an experiment: a file path, or the bare name of a shipped experiment.

Every problem of a bad file is collected (pydantic's, then the cross-field checks)
and reported together as `path: reason`, so a user fixes the file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from chaos.runner.checks import experiment_problems
from chaos.runner.schema import Experiment
from common.config import DocumentError, validate_document

LIBRARY_PACKAGE = "chaos"
LIBRARY_FOLDER = "experiments"


class ExperimentError(DocumentError):
    """An experiment that cannot be run."""

    kind = "experiment"


def parse_experiment(data: Any, source: str) -> Experiment:
    return validate_document(Experiment, data, experiment_problems, ExperimentError, source)


def library() -> Traversable:
    return resources.files(LIBRARY_PACKAGE).joinpath(LIBRARY_FOLDER)


@dataclass(frozen=True)
class Shipped:
    name: str
    title: str


def shipped() -> list[Shipped]:
    """The experiments that come with seawall, by name, with their titles."""
    found = []
    for entry in sorted(library().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text())
            title = data.get("title", "") if isinstance(data, dict) else ""
            found.append(Shipped(entry.name.removesuffix(".yaml"), str(title)))
    return found


def _read(reference: str) -> tuple[str, str]:
    """(source, text) of a path, or of a shipped experiment named `reference`."""
    path = Path(reference)
    if path.exists():
        try:
            return str(path), path.read_text()
        except OSError as exc:
            raise ExperimentError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    entry = library().joinpath(f"{reference}.yaml")
    if "/" not in reference and entry.is_file():
        return f"{reference} (shipped)", entry.read_text()
    names = ", ".join(s.name for s in shipped())
    raise ExperimentError(reference, [f"no such file, nor a shipped experiment ({names})"])


def load_experiment(reference: str) -> Experiment:
    source, text = _read(reference)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentError(source, [f"YAML syntax error: {exc}"]) from None
    return parse_experiment(data, source)
