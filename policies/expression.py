"""One rule's CEL condition, compiled and checked once, when a config version loads.

In order, each step only when the previous ones passed:

1. length: at most `MAX_EXPRESSION_CHARS` characters;
2. syntax: the CEL library's parser (the authority), its errors with positions;
3. the syntax tree (`policies.syntax`, nesting at most `syntax.MAX_NESTING`);
4. names, functions and types (`policies.checker`), and header names against
   `policies.headers`;
5. cost (`policies.cost`): at most `cost.MAX_RULE_STEPS`;
6. each literal `matches` pattern, compiled by the library;
7. trial evaluations against `probes`, attribute values of the declared types: an
   evaluation that fails for lack of an overload, or yields a non-bool, is reported.
   The checker refuses everything that would make a value `dyn`, so this is the
   backstop against a gap between the checker and the library, not a second checker.

What is not caught before serving: errors that depend on values (integer overflow,
division by zero, a list index out of range, a missing map key in a literal map,
`int("x")`); those are evaluation errors, decided per rule by `on_error`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

from policies.attributes import ATTRIBUTE_NAMES, Attributes, cel_value
from policies.checker import check
from policies.cost import MAX_RULE_STEPS, estimate
from policies.lexer import LexError, line_column
from policies.syntax import ParseError, parse

#: Characters a rule's condition may have. Real rules are well under 200.
MAX_EXPRESSION_CHARS = 1024
#: Characters of a library message kept in a problem report.
MAX_MESSAGE_CHARS = 240

_LIBRARY_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
_MATCHES = cel.compile("subject.matches(pattern)")


class ExpressionError(ValueError):
    """A condition that cannot be used; `problems` are `line:column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    source: str
    program: cel.Program
    #: The attributes it reads, in `ATTRIBUTES` order.
    reads: tuple[str, ...]
    #: Its cost bound, in steps (`policies.cost`).
    steps: int


def probes(headers: tuple[str, ...]) -> tuple[Attributes, ...]:
    """Attribute sets of the declared types for the trial evaluations: empty and zero
    values, typical ones, and large ones, so both sides of `&&`, `||` and `?:` run."""
    return (
        Attributes(
            tenant="root",
            tenants=("root",),
            key="local",
            roles=(),
            model="",
            endpoint="chat",
            prompt_tokens=0,
            max_tokens=0,
            stream=False,
            tools=(),
            tool_results=False,
            headers=dict.fromkeys(headers, ""),
            hour=0,
            weekday=0,
            client_ip="",
        ),
        Attributes(
            tenant="probe-team",
            tenants=("root", "probe-org", "probe-team"),
            key="probe-key",
            roles=("user", "tools"),
            model="probe-model",
            endpoint="responses",
            prompt_tokens=1000,
            max_tokens=4096,
            stream=True,
            tools=("probe_tool", "other_tool"),
            tool_results=True,
            headers=dict.fromkeys(headers, "probe"),
            hour=12,
            weekday=3,
            client_ip="127.0.0.1",
        ),
        Attributes(
            tenant="probe-project",
            tenants=("root", "probe-org", "probe-team", "probe-project"),
            key="probe-key-2",
            roles=("admin",),
            model="probe/large-model",
            endpoint="embeddings",
            prompt_tokens=2_000_000,
            max_tokens=1_000_000,
            stream=True,
            tools=("probe_tool",),
            tool_results=False,
            headers=dict.fromkeys(headers, "x"),
            hour=23,
            weekday=6,
            client_ip="2001:db8::1",
        ),
    )


def probe_contexts(headers: tuple[str, ...]) -> tuple[cel.Context, ...]:
    """`probes` bound for the library, built once per compilation and shared by rules."""
    return tuple(
        cel.Context({name: cel_value(attrs, name) for name in ATTRIBUTE_NAMES})
        for attrs in probes(headers)
    )


def compile_expression(
    source: str, headers: tuple[str, ...], contexts: tuple[cel.Context, ...]
) -> Expression:
    """`source` compiled and checked, or `ExpressionError` with its problems.

    `headers` are the header names rules may read; `contexts` are
    `probe_contexts(headers)`."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            [f"1:1: {len(source)} characters, over the limit of {MAX_EXPRESSION_CHARS}"]
        )
    program = _library_compile(source)
    try:
        tree = parse(source)
    except (ParseError, LexError) as exc:
        raise ExpressionError([f"{line_column(source, exc.offset)}: {exc}"]) from None
    checked = check(tree, headers)
    if checked.problems:
        raise ExpressionError(
            [f"{line_column(source, p.offset)}: {p.message}" for p in checked.problems]
        )
    cost = estimate(tree)
    if cost.unbounded is not None:
        raise ExpressionError([f"1:1: {cost.unbounded}"])
    if cost.steps > MAX_RULE_STEPS:
        raise ExpressionError(
            [
                f"1:1: may cost up to {cost.steps} steps to evaluate, over the limit of "
                f"{MAX_RULE_STEPS} (see the evaluation budget in the docs)"
            ]
        )
    problems = [
        problem
        for offset, pattern in checked.patterns
        if (problem := _pattern_problem(source, offset, pattern)) is not None
    ]
    problems += trial_problems(program, contexts)
    if problems:
        raise ExpressionError(problems)
    return Expression(source, program, checked.reads, cost.steps)


def _library_compile(source: str) -> cel.Program:
    try:
        return cel.compile(source)
    except BaseException as exc:  # the library raises a BaseException on internal panics
        if not _library_failure(exc):
            raise
        found = _LIBRARY_POSITION.search(str(exc))
        if found is None:
            raise ExpressionError([f"1:1: {_short(str(exc))}"]) from None
        line, column, message = found.groups()
        raise ExpressionError([f"{line}:{column}: {_short(message)}"]) from None


def _library_failure(exc: BaseException) -> bool:
    """An error from the CEL library (a `PanicException` from its Rust core is a
    `BaseException`), as opposed to an interrupt or exit."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _pattern_problem(source: str, offset: int, pattern: str) -> str | None:
    try:
        _MATCHES.execute({"subject": "", "pattern": pattern})
    except Exception as exc:
        return f"{line_column(source, offset)}: invalid regular expression: {_short(str(exc))}"
    return None


def trial_problems(program: cel.Program, contexts: tuple[cel.Context, ...]) -> list[str]:
    """What evaluating `program` on each of `contexts` shows: a failure for a type
    reason or a non-bool result. Errors that depend on values are not problems."""
    for context in contexts:
        try:
            result: Any = program.execute(context)
        except TypeError as exc:
            return [f"1:1: type error when tried: {_short(str(exc))}"]
        except RuntimeError as exc:
            if str(exc).startswith("Undefined variable or function"):
                return [f"1:1: no matching function when tried: {_short(str(exc))}"]
        except Exception:
            continue  # value-dependent (overflow, missing key...): an evaluation error
        else:
            if not isinstance(result, bool):
                return [f"1:1: a rule must evaluate to bool, not {type(result).__name__}"]
    return []


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."
