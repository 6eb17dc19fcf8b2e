"""Conditions evaluated in Python (policies/native.py) decide exactly as the CEL
library does, and a rule set uses them only where that holds.

Random conditions of the subset (integer comparisons joined by `&&`, `||` and `!`,
bool attributes and literals, integers across CEL's whole int range) against random
attributes: the Python condition's outcome is the library's. Conditions outside the
subset get none. The rule set's own property (tests/test_policies_program.py)
compares decisions and per-rule counts with the library evaluating rule by rule,
native conditions included (its sound conditions are in the subset).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Attributes, compile_policies, parse_policies
from policies.attributes import INT_RANGE, cel_value
from policies.expression import compile_expression
from policies.native import native
from tests.examples import examples
from tests.test_policies_properties import CONTEXTS, HEADERS, KNOWN, attributes

INTS = ["prompt_tokens", "max_tokens", "hour", "weekday"]
BOOLS = ["stream", "tool_results"]
EDGES = [INT_RANGE.start, INT_RANGE.stop - 1, -1, 0, 1, 5, 512, 2000, 200_000]


@st.composite
def integers(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(INTS))
    value = draw(st.sampled_from(EDGES) | st.integers(INT_RANGE.start, INT_RANGE.stop - 1))
    return str(value) if value != INT_RANGE.start else f"({INT_RANGE.start + 1} - 1)"


@st.composite
def subset(draw: st.DrawFn, depth: int = 3) -> str:
    form = draw(st.integers(0, 6 if depth else 2))
    if form == 0:
        return draw(st.sampled_from([*BOOLS, "true", "false"]))
    if form <= 2:
        operator = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        return f"{draw(integers())} {operator} {draw(integers())}"
    if form == 3:
        return f"!({draw(subset(depth - 1))})"
    joint = "&&" if form <= 4 else "||"
    return f"({draw(subset(depth - 1))}) {joint} ({draw(subset(depth - 1))})"


def library_outcome(source: str, attrs: Attributes) -> object:
    expression = compile_expression(source, HEADERS, CONTEXTS)
    variables = {name: cel_value(attrs, name) for name in expression.reads}
    return expression.program.execute(expression.context(variables))


def numbers() -> st.SearchStrategy[int]:
    return st.sampled_from(EDGES[2:]) | st.integers(INT_RANGE.start, INT_RANGE.stop - 1)


@settings(max_examples=examples(100), deadline=None)
@given(
    subset(),
    attributes(prompt_tokens=numbers(), max_tokens=numbers(), hour=numbers(), weekday=numbers()),
)
def test_a_native_condition_decides_as_the_library_does(source: str, attrs: Attributes) -> None:
    condition = native(source)
    # `(-9223372036854775807 - 1)` is arithmetic: outside the subset, as it can overflow.
    if f"({INT_RANGE.start + 1} - 1)" in source:
        assert condition is None
        return
    assert condition is not None, source
    assert condition(attrs) is library_outcome(source, attrs), source


def test_what_could_fail_or_is_not_an_integer_comparison_stays_with_the_library() -> None:
    for source in [
        "prompt_tokens + 1 > 5",  # arithmetic can overflow
        "max_tokens / hour > 1",  # or divide by zero
        "prompt_tokens > 1.5",  # a double
        "prompt_tokens > 5u",  # a uint
        "model == 'gpt-4o'",
        "size(tools) > 1",
        "hour > 3 ? stream : tool_results",
        "'admin' in roles",
        "stream == true",
        "tools.exists(t, t == 'x')",
        "unknown_name > 3",
        "prompt_tokens >",  # not a condition at all
    ]:
        assert native(source) is None, source
    assert native("prompt_tokens < 2000 && max_tokens <= 512") is not None
    assert native("!(stream || tool_results) && -5 < hour") is not None


def test_a_hit_evaluates_only_native_rules_in_python_and_counts_them() -> None:
    rules = [
        {"id": "big", "when": "prompt_tokens > 1000", "effect": "deny", "message": "no"},
        {"id": "night", "when": "hour >= 22", "effect": "flag", "flag": "late"},
    ]
    policies = compile_policies(parse_policies({"rules": rules}), KNOWN)
    active = policies.active
    assert active.plans["team-a"].native_live is not None
    base = dict(
        tenant="team-a", tenants=KNOWN.chains["team-a"], key="k", roles=("user",),
        model="gpt-4o", endpoint="chat", max_tokens=0, stream=False, tools=(),
        tool_results=False, headers={}, hour=23, weekday=2, client_ip="",
        server="", tool="", argument_names=(), annotations=(),
    )  # fmt: skip
    first = policies.decide(Attributes(prompt_tokens=10, **base), "k")  # a miss
    second = policies.decide(Attributes(prompt_tokens=5000, **base), "k")  # a hit
    third = policies.decide(Attributes(prompt_tokens=2**63, **base), "k")  # over its limit
    assert first.matched == ("night",) and first.deny is None
    assert second.matched == ("big", "night") and second.deny is not None
    assert third.deny is not None and third.errors[0].kind == "attribute"
    stats = {r.rule: (r.evaluations, r.matches, r.errors) for r in active.stats().rules}
    # An attribute over its limit is not an evaluation (the library path's rule).
    assert stats == {"big": (2, 1, 0), "night": (1, 1, 0)}
    assert active.combined_calls == 0  # the hits made no library call


def test_native_conditions_are_used_only_when_every_live_rule_has_one() -> None:
    rules = [
        {"id": "big", "when": "prompt_tokens > 1000", "effect": "deny", "message": "no"},
        {"id": "odd", "when": "prompt_tokens % 2 == 1", "effect": "flag", "flag": "odd"},
    ]
    policies = compile_policies(parse_policies({"rules": rules}), KNOWN)
    assert policies.active.plans["team-a"].native_live is None
