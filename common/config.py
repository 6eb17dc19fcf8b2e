"""The small kernel every package shares: frozen config models and document errors.

Config models everywhere (routing, tools, chaos, tenants, policies, limits...) are
frozen pydantic models that refuse unknown keys, and every document (a config, an
experiment) reports all of its problems at once. `routing`, `tools`, `chaos` and
the domain packages import this; it imports none of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
)

ENV_PREFIX = "env:"
T = TypeVar("T")
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DocumentError(Exception):
    """A document (config, experiment) that cannot be used; `problems` lists each
    one as `path: reason`, so it can be fixed in one pass."""

    kind = "document"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"invalid {self.kind} {self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def problem_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a path, `models[0].deployments[1].weight`
    (validator names that pydantic puts in locations are left out)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith("function-"):
            text += f".{part}" if text else part
    return text or "(top level)"


DocumentT = TypeVar("DocumentT", bound=BaseModel)


def validate_document(
    model: type[DocumentT],
    data: object,
    cross_checks: Callable[[DocumentT], list[str]],
    error: type[DocumentError],
    source: str,
) -> DocumentT:
    """A YAML document validated with every problem reported: all field problems
    first; then, once the shape is right, the cross-field ones."""
    if not isinstance(data, Mapping):
        raise error(source, [f"(top level): the {error.kind} must be a YAML mapping"])
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{problem_path(item['loc'])}: {item['msg'].removeprefix('Value error, ')}"
            for item in exc.errors()
        ]
        raise error(source, problems) from None
    problems = cross_checks(document)
    if problems:
        raise error(source, problems)
    return document


class Frozen(BaseModel):
    """Base for config models: immutable, and unknown keys are errors (typos surface)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def resolve_secret(value: object) -> object:
    """Resolve `env:NAME` references so a secret never has to be written in a file.

    A missing variable is a config error (reported with the field path), not a
    silent empty key that fails later with a confusing 401 from the provider.
    """
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not name:
            raise ValueError("empty environment variable name in 'env:' reference")
        resolved = os.environ.get(name)
        if resolved is None:
            raise ValueError(f"environment variable {name} is not set")
        return resolved
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]


def identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            "must be 1-64 characters of letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )
    return value


Identifier = Annotated[str, AfterValidator(identifier)]


def non_empty(items: tuple[T, ...]) -> tuple[T, ...]:
    # An AfterValidator instead of Field(min_length=1): pydantic's length check
    # also fires when an item failed, adding a misleading "0 items" problem.
    if not items:
        raise ValueError("must list at least one entry")
    return items
