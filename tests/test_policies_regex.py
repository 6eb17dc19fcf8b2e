"""`matches` in policy rules: literal patterns compiled once, evaluated with RE2 in the
dialect both engines read alike, charged their measured cost; and the cut-off of a
rule that ran over the budget.

- a property test: for random patterns of a small RE2 grammar and random subjects,
  seawall's `matches` decides exactly as the CEL library's own does, alone and inside
  a rule;
- refusals at load, each with its reason and position: a pattern taken from request
  data, constructs the two engines read differently, a program over the size limit,
  a pattern whose worst case on the longest allowed subject is over the cost limit;
- a cacheable rule with a pattern is cached; the pattern is compiled once;
- after an overrun the rule is cut off for the caller's tenant only, decided by its
  `on_error` without running, until the cool-down ends (an injected clock).
"""

from __future__ import annotations

import time
from typing import Any

import cel
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policies import (
    Attributes,
    KnownNames,
    PolicyError,
    compile_policies,
    parse_policies,
)
from policies.attributes import MAX_TOOLS
from policies.cost import estimate, matches_steps
from policies.expression import ExpressionError, compile_expression, probe_contexts
from policies.patterns import MAX_PROGRAM_SIZE, PatternError, compile_pattern, dialect_problem
from policies.ruleset import COOL_DOWN_SECONDS
from policies.syntax import parse
from tests.examples import examples
from tests.policy_support import ordinary

LIBRARY_MATCHES = cel.compile("subject.matches(pattern)")
HEADERS = ("x-p",)
CONTEXTS = probe_contexts(HEADERS)
CHAINS = {"org": ("root", "org"), "red": ("root", "org", "red"), "blue": ("root", "org", "blue")}
KNOWN = KnownNames.of(CHAINS)


def library_matches(pattern: str, subject: str) -> bool | str:
    """What the CEL library's own `matches` says, or "error"."""
    try:
        result = LIBRARY_MATCHES.execute({"subject": subject, "pattern": pattern})
    except Exception:
        return "error"
    assert isinstance(result, bool)
    return result


# -- a small RE2 grammar -----------------------------------------------------------

#: Characters where the engines could differ: case folding (K and the Kelvin sign,
#: ß and ẞ, s and the long s), a non-ASCII digit, spaces, a newline, a non-ASCII letter.
ALPHABET = "abAB-_09 .é\u212akKßẞ\u017fs\u0663\u00a0\n"
ATOMS = [
    "a",
    "b",
    "A",
    "k",
    "s",
    "ß",
    "é",
    "-",
    "\\.",
    "\\-",
    " ",
    ".",
    "[ab]",
    "[^a]",
    "[a-c]",
    "[A-Za-z]",
    "[0-9]",
    "[[:word:]]",
    "[[:space:]]",
    "[[:upper:]]",
    "[[:alpha:]]",
    "[^[:word:]]",
    "\\pL",
    "\\p{Lu}",
    "\\p{Nd}",
    "\\PL",
    "\\pZ",
    "\\x{212A}",
    "\\n",
]


@st.composite
def regexes(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(ATOMS))
    form = draw(st.integers(0, 6))
    inner = draw(regexes(depth - 1))
    if form == 0:
        return inner + draw(regexes(depth - 1))
    if form == 1:
        return f"({inner}|{draw(regexes(depth - 1))})"
    if form == 2:
        quantifier = draw(st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{2,}", "*?", "+?"]))
        return f"(?:{inner}){quantifier}"
    if form == 3:
        return draw(st.sampled_from(["^", "\\A"])) + inner
    if form == 4:
        return inner + draw(st.sampled_from(["$", "\\z"]))
    if form == 5:
        return draw(st.sampled_from(["(?i)", "(?s)", "(?m)"])) + inner
    return f"(?i:{inner})"


@settings(max_examples=examples(500), deadline=None)
@given(regexes(), st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=6))
def test_seawalls_matches_decides_as_the_cel_librarys_own(
    pattern: str, subjects: list[str]
) -> None:
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        assume(False)
        return
    for subject in subjects:
        assert compiled(subject) == library_matches(pattern, subject), (pattern, subject)


def cel_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


@settings(max_examples=examples(100), deadline=None)
@given(regexes(), st.text(ALPHABET, max_size=12), st.text(ALPHABET, max_size=12))
def test_a_rule_with_matches_decides_as_the_library_with_its_own_matches(
    pattern: str, subject: str, other: str
) -> None:
    literal = cel_literal(pattern)
    source = (
        f"{cel_literal(subject)}.matches({literal}) "
        f"!= [{cel_literal(other)}, {cel_literal(subject)}].exists(t, t.matches({literal}))"
    )
    try:
        expression = compile_expression(source, HEADERS, CONTEXTS)
    except ExpressionError:
        assume(False)
        return
    ours = expression.program.execute(expression.context({}))
    assert ours == cel.compile(source).execute({}), source
    assert ".matches(" not in expression.program.source  # no pattern compiled per call


# -- refused at load, with the reason ---------------------------------------------


def problems(when: str, **settings: Any) -> list[str]:
    data = {"headers": list(HEADERS), "rules": [rule("r", when)], **settings}
    with pytest.raises(PolicyError) as caught:
        compile_policies(parse_policies(data), KNOWN)
    return caught.value.problems


def rule(rule_id: str, when: str, effect: str = "deny", **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": rule_id, "when": when, "effect": effect, **fields}
    if effect == "deny":
        entry.setdefault("message", f"{rule_id} says no")
    return entry


@pytest.mark.parametrize(
    "when",
    [
        'tenant.matches(headers["x-p"])',  # the issue's: a caller chose the pattern
        "tenant.matches(model)",
        'tenant.matches("^" + key)',
        "tools.exists(t, tenant.matches(t))",
    ],
)
def test_a_pattern_that_is_not_a_literal_is_a_config_error(when: str) -> None:
    (problem,) = problems(when)
    assert problem.startswith("policies.rules[0].when: 1:")
    assert "the pattern of matches() must be a string literal" in problem


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("\\d+", "'\\d' means ASCII in RE2"),
        ("[\\w-]+", "'\\w' means ASCII in RE2"),
        ("\\bword\\b", "'\\b' means ASCII in RE2"),
        ("\\<x", "is a word boundary in the CEL library"),
        ("\\p{Greek}", "only general categories"),
        ("\\pC", "only general categories"),
        ("[a&&b]", "'&&' inside a class is a set operation"),
        ("[[a]]", "nests a class"),
        ("(", "invalid regular expression: missing ): ("),
        ("\\Qa.b\\E", "the CEL library's regular expression engine refuses it"),
        ("(?:a?){400}a{400}", f"over the limit of {MAX_PROGRAM_SIZE}"),
    ],
)
def test_a_pattern_the_engines_would_read_differently_is_refused(pattern: str, reason: str) -> None:
    literal = pattern.replace("\\", "\\\\")
    (problem,) = problems(f'model.matches("{literal}")')
    assert problem.startswith("policies.rules[0].when: 1:15: ")
    assert reason in problem


def test_the_dialect_check_leaves_ordinary_patterns_alone() -> None:
    for pattern in ("^[a-z]+-[0-9]+$", "[]a]", "[^]a]", "[\\[\\]]", "[[:word:]-]", "\\p{Nd}"):
        assert dialect_problem(pattern) is None, pattern


def test_a_pattern_whose_worst_case_is_over_the_cost_limit_is_refused() -> None:
    # the issue's \w{90} in the allowed dialect: 274 instructions; on a 1024-character
    # header its worst case is charged 1024 x (20 + 24 x 274) ns = 6.8 ms
    (problem,) = problems('headers["x-p"].matches("[[:word:]]{90}")')
    assert "may cost up to 67579 steps to evaluate, over the limit of 5000" in problem
    # the same pattern on a short string is fine
    compile_policies(
        parse_policies({"rules": [rule("r", 'key.size() < 5 && "abc".matches("[[:word:]]{90}")')]}),
        KNOWN,
    )


def test_the_charge_follows_the_subjects_bound() -> None:
    program = compile_pattern("^x").program_size
    assert estimate(parse("model.matches('^x')")).steps == 3 + matches_steps(1024, program)
    assert estimate(parse("(model + key).matches('^x')")).steps == 5 + matches_steps(2048, program)
    assert estimate(parse("tools.exists(t, t.matches('^x'))")).steps == 1 + 128 * (
        8 + 3 + matches_steps(1024, program)
    )
    assert estimate(parse("string(max_tokens).matches('^x')")).steps == 4 + matches_steps(
        32, program
    )


# -- compiled once, cached as before -----------------------------------------------


def attrs(tenant: str = "red", **values: Any) -> Attributes:
    """A request of `tenant` with ordinary values; `values` override any attribute."""
    return ordinary(KNOWN.chains[tenant], {"x-p": ""}, **values)


def test_a_cacheable_rule_with_a_pattern_is_cached_and_compiled_once() -> None:
    compiled = compile_policies(
        parse_policies(
            {
                "headers": ["x-p"],
                "rules": [
                    rule("team-label", 'headers["x-p"].matches("^[a-z]+-[0-9]+$")'),
                    rule("same", 'key.matches("^[a-z]+-[0-9]+$")', "flag", flag="f"),
                ],
            }
        ),
        KNOWN,
    )
    first, second = compiled.active.rules
    # one compiled pattern, shared, and the library never sees `matches`
    assert first.expression.functions == second.expression.functions
    assert ".matches(" not in first.expression.program.source
    labelled = attrs(headers={"x-p": "search-1"})
    for _ in range(3):
        assert compiled.decide(labelled, "r").deny is not None
    assert compiled.decide(attrs(headers={"x-p": "Search"}), "r").deny is None
    stats = compiled.stats().active
    assert (stats.cache_hits, stats.cache_misses, stats.evaluations) == (2, 2, 4)


# -- the cut-off after an overrun ----------------------------------------------------


class ShiftedClock:
    """The real wall clock, plus a shift a test moves: evaluations are timed for real
    (the overrun must show on the CPU clock too), the cool-down is skipped by hand."""

    def __init__(self) -> None:
        self.shift = 0

    def __call__(self) -> int:
        return time.perf_counter_ns() + self.shift


def test_after_an_overrun_the_rule_is_cut_off_for_that_tenant_until_the_cool_down_ends() -> None:
    clock = ShiftedClock()
    compiled = compile_policies(
        parse_policies(
            {
                # 50 µs: 128 tools take ~100 µs of CPU here, one tool ~2 µs
                "evaluation_budget_ms": 0.05,
                "rules": [
                    rule(
                        "shell-tools",
                        'tools.exists(t, t.startsWith("zz")) || tools.exists(t, t.endsWith("zz"))',
                    )
                ],
            }
        ),
        KNOWN,
        timer=clock,
    )
    many = tuple(f"tool_{i}" for i in range(MAX_TOOLS))
    overrun = compiled.decide(attrs("red", tools=many), "r1")
    assert [(e.kind, e.action) for e in overrun.errors] == [("budget", "deny")]
    assert overrun.deny is not None and overrun.deny.cause == "error"
    evaluations = compiled.stats().active.evaluations

    # red: decided by on_error without running, again and again
    for _ in range(3):
        cut = compiled.decide(attrs("red", tools=("x",)), "r2")
        assert [(e.kind, e.action) for e in cut.errors] == [("cutoff", "deny")]
        assert "cut off for tenant 'red'" in cut.errors[0].detail
    # blue: the same rule runs for it as before
    assert compiled.decide(attrs("blue", tools=("x",)), "r3").errors == ()
    stats = compiled.stats().active
    assert stats.evaluations == evaluations + 1
    assert (stats.budget_overruns, stats.budget_cutoffs) == (1, 3)
    assert stats.rules[0].cutoffs == 3
    assert stats.cache_entries == 1  # blue's; nothing of red's is cached

    # the cool-down ends: red's requests run the rule again
    clock.shift += int((COOL_DOWN_SECONDS + 1) * 1e9)
    assert compiled.decide(attrs("red", tools=("x",)), "r4").errors == ()
