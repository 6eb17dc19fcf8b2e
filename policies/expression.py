"""One rule's CEL condition, compiled and checked once, when a config version loads.

In order, each step only when the previous ones passed:

1. length: at most `MAX_EXPRESSION_CHARS` characters;
2. syntax: the CEL library's parser (the authority), its errors with positions;
3. the syntax tree (`policies.syntax`, nesting at most `syntax.MAX_NESTING`);
4. names, functions and types (`policies.checker`), and header names against
   `policies.headers`; a `matches` pattern must be a string literal;
5. each `matches` pattern, compiled once (`policies.patterns`: RE2, in the dialect
   both engines read alike, at most `patterns.MAX_PROGRAM_SIZE` instructions);
6. cost (`policies.cost`, a pattern charged by its program size): at most
   `cost.MAX_RULE_STEPS`;
7. the condition is rewritten for evaluation: each `x.matches('p')` becomes
   `x.<function>()`, a function registered with the library (`Expression.functions`)
   that runs the compiled pattern, and the rewritten text is compiled by the library;
8. trial evaluations against `probes`, attribute values of the declared types: an
   evaluation that fails for lack of an overload, or yields a non-bool, is reported.
   The checker refuses everything that would make a value `dyn`, so this is the
   backstop against a gap between the checker and the library, not a second checker.

What is not caught before serving: errors that depend on values (integer overflow,
division by zero, a list index out of range, a missing map key in a literal map,
`int("x")`); those are evaluation errors, decided per rule by `on_error`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.attributes import ATTRIBUTE_NAMES, Attributes, cel_value
from policies.checker import check
from policies.cost import MAX_RULE_STEPS, estimate
from policies.lexer import LexError, line_column, tokenize
from policies.library import cel
from policies.patterns import Pattern, PatternError, compile_pattern
from policies.syntax import Call, Literal, Node, ParseError, parse, walk

#: Characters a rule's condition may have. Real rules are well under 200.
MAX_EXPRESSION_CHARS = 1024
#: Characters of a library message kept in a problem report.
MAX_MESSAGE_CHARS = 240

_LIBRARY_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")


class ExpressionError(ValueError):
    """A condition that cannot be used; `problems` are `line:column: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    source: str
    #: What the library runs: `source` with each `matches` rewritten as a call of one
    #: of `functions`, so a context it runs in must hold them (`context()`).
    program: cel.Program
    #: The attributes it reads, in `ATTRIBUTES` order.
    reads: tuple[str, ...]
    #: Its cost bound, in steps (`policies.cost`).
    steps: int
    #: Its compiled `matches` patterns, by the name the library calls each by.
    functions: Mapping[str, Pattern] = field(default_factory=dict)
    #: The text `program` was compiled from (`source` with `matches` rewritten), for
    #: combining conditions into one program (`policies.ruleset`); "" when unknown.
    text: str = ""

    def context(self, variables: Mapping[str, object]) -> cel.Context:
        """A library context holding `variables` and this condition's functions."""
        return cel.Context(dict(variables), functions=dict(self.functions))


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
            server="",
            tool="",
            argument_names=(),
            annotations=(),
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
            server="probe-server",
            tool="probe-server__probe_tool",
            argument_names=("path", "query"),
            annotations=("readOnlyHint",),
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
            server="probe-server-2",
            tool="probe-server-2__write",
            argument_names=("a",),
            annotations=("destructiveHint", "openWorldHint"),
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
    _library_compile(source)
    try:
        tree = parse(source)
    except (ParseError, LexError) as exc:
        raise ExpressionError([f"{line_column(source, exc.offset)}: {exc}"]) from None
    checked = check(tree, headers)
    if checked.problems:
        raise ExpressionError(
            [f"{line_column(source, p.offset)}: {p.message}" for p in checked.problems]
        )
    patterns: dict[str, Pattern] = {}
    problems: list[str] = []
    for offset, text in checked.patterns:
        try:
            patterns[text] = compile_pattern(text)
        except PatternError as exc:
            problems.append(f"{line_column(source, offset)}: {exc}")
    if problems:
        raise ExpressionError(problems)
    cost = estimate(tree, {text: pattern.program_size for text, pattern in patterns.items()})
    if cost.unbounded is not None:
        raise ExpressionError([f"1:1: {cost.unbounded}"])
    if cost.steps > MAX_RULE_STEPS:
        raise ExpressionError(
            [
                f"1:1: may cost up to {cost.steps} steps to evaluate, over the limit of "
                f"{MAX_RULE_STEPS} (see the evaluation budget in the docs)"
            ]
        )
    functions = {pattern.function_name: pattern for pattern in patterns.values()}
    rewritten = rewrite_matches(source, tree, patterns)
    program = _library_compile(rewritten)
    for context in contexts:
        for name, pattern in functions.items():
            context.add_function(name, pattern)
    problems = trial_problems(program, contexts)
    if problems:
        raise ExpressionError(problems)
    return Expression(source, program, checked.reads, cost.steps, functions, rewritten)


def rewrite_matches(source: str, tree: Node, patterns: Mapping[str, Pattern]) -> str:
    """`source` with each `x.matches('p')` replaced by `x.<function>()`, the function
    of the compiled `patterns['p']`. Every other character stays where it was, so the
    rewritten text parses to the same tree but for those calls."""
    tokens = tokenize(source)
    starts = {token.offset: index for index, token in enumerate(tokens)}
    spans: list[tuple[int, int, str]] = []
    for node in walk(tree):
        if not (isinstance(node, Call) and node.function == "matches" and node.target):
            continue
        pattern = node.args[0]
        assert isinstance(pattern, Literal) and isinstance(pattern.value, str)
        # `matches` `(` literal `)`: the call's name to its closing parenthesis
        index = starts[pattern.offset] + 1
        while tokens[index].text != ")":  # a trailing comma, if the library allows one
            index += 1
        name = patterns[pattern.value].function_name
        spans.append((node.offset, tokens[index].offset + 1, f"{name}()"))
    for start, end, text in sorted(spans, reverse=True):
        source = source[:start] + text + source[end:]
    return source


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
