"""The small kernel every package shares: frozen config models and document errors.

Config models everywhere (routing, tools, chaos, tenants, policies, limits...) are
frozen pydantic models that refuse unknown keys, and every document (a config, an
experiment) reports all of its problems at once. `routing`, `tools`, `chaos` and
the domain packages import this; it imports none of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    TypeAdapter,
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


@dataclass(frozen=True)
class CrossCheck(Generic[DocumentT]):
    """A check across fields, and the top-level sections it reads: it runs whenever
    those sections are valid, even when another section is not, so one pass over a
    broken document reports every problem it can."""

    needs: frozenset[str]
    run: Callable[[DocumentT], list[str]]


RawCheck = Callable[[Mapping[str, Any]], list[str]]


def validate_document(
    model: type[DocumentT],
    data: object,
    cross_checks: Callable[[DocumentT], list[str]] | Sequence[CrossCheck[DocumentT]],
    error: type[DocumentError],
    source: str,
    raw_checks: Sequence[RawCheck] = (),
) -> DocumentT:
    """A YAML document validated with every problem reported in one pass: the field
    problems; the problems of `raw_checks`, which read the raw mapping and so always
    run; and those of every typed cross check whose sections are valid.

    A plain callable is a typed check that needs every section."""
    if not isinstance(data, Mapping):
        raise error(source, [f"(top level): the {error.kind} must be a YAML mapping"])
    checks = (
        [CrossCheck(frozenset(model.model_fields), cross_checks)]
        if callable(cross_checks)
        else list(cross_checks)
    )
    problems = [problem for check in raw_checks for problem in check(data)]
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{problem_path(item['loc'])}: {item['msg'].removeprefix('Value error, ')}"
            for item in exc.errors()
        ] + problems
        partial, valid = _valid_sections(model, data)
        for check in checks:
            if check.needs <= valid:
                problems += check.run(partial)
        raise error(source, problems) from None
    problems += [problem for check in checks for problem in check.run(document)]
    if problems:
        raise error(source, problems)
    return document


def _valid_sections(model: type[DocumentT], data: Mapping[str, Any]) -> tuple[DocumentT, set[str]]:
    """The document built from the top-level sections that validate on their own
    (defaults for the rest, unvalidated), and the names of those sections."""
    values: dict[str, Any] = {}
    valid: set[str] = set()
    for name, field in model.model_fields.items():
        annotated: Any = (
            Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        )
        try:
            if name in data:
                values[name] = TypeAdapter(annotated).validate_python(data[name])
            elif field.is_required():
                continue
            else:
                values[name] = field.get_default(call_default_factory=True)
        except ValidationError:
            continue
        valid.add(name)
    return model.model_construct(**values), valid


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
            if _SKIP_ENV.get():
                return f"<unset {name}>"
            raise ValueError(f"environment variable {name} is not set")
        return resolved
    return value


_SKIP_ENV: ContextVar[bool] = ContextVar("skip_env", default=False)


def secrets_optional() -> bool:
    """Inside `env_secrets_optional`: a check on a machine that need not hold the
    config's secrets (its `env:` variables, its key files)."""
    return _SKIP_ENV.get()


@contextmanager
def env_secrets_optional() -> Iterator[None]:
    """Within the block, an `env:` reference to an unset variable validates (as a
    placeholder) instead of failing: `check-config --skip-env` checks a config on a
    machine that does not hold its secrets. Never used for serving."""
    token = _SKIP_ENV.set(True)
    try:
        yield
    finally:
        _SKIP_ENV.reset(token)


#: A credential as a whole (an API key, a header value, an HMAC key): `env:NAME` or a
#: literal, shown as `**********`. URLs that may carry credentials are `SecretUrl`;
#: what both types guarantee, and where, is in common/secrets.py.
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
