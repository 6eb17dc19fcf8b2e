"""Reading and checking one condition: the lexer, the parser, the checker, the cost
bound, and what the trial evaluations do and do not catch."""

from __future__ import annotations

import cel
import pytest

from policies.checker import check
from policies.cost import MAX_RULE_STEPS, estimate
from policies.expression import (
    ExpressionError,
    compile_expression,
    probe_contexts,
    trial_problems,
)
from policies.lexer import tokenize
from policies.syntax import Call, Comprehension, Literal, ParseError, Select, parse

HEADERS = ("x-team", "x-project")
CONTEXTS = probe_contexts(HEADERS)


def reads(source: str) -> tuple[str, ...]:
    return compile_expression(source, HEADERS, CONTEXTS).reads


def refused(source: str) -> list[str]:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source, HEADERS, CONTEXTS)
    return caught.value.problems


@pytest.mark.parametrize(
    ("source", "kind", "value"),
    [
        ('"a\\"b"', "string", 'a"b'),
        ("'\\x41\\u00e9\\101\\n'", "string", "Aé A\n".replace(" ", "")),
        ('r"a\\d"', "string", "a\\d"),
        ("'''it's'''", "string", "it's"),
        ('"""two\nlines"""', "string", "two\nlines"),
        ('b"\\xff"', "bytes", b"\xff"),
        ("0x1F", "int", 31),
        ("7u", "uint", 7),
        ("0x10U", "uint", 16),
        ("1.5e3", "double", 1500.0),
        (".5", "double", 0.5),
        ("2e-1", "double", 0.2),
    ],
)
def test_literals(source: str, kind: str, value: object) -> None:
    token, end = tokenize(source)
    assert (token.kind, token.value, end.kind) == (kind, value, "end")


def test_comments_and_positions() -> None:
    tokens = tokenize("stream // why\n  && hour > 1")
    assert [(t.text, t.offset) for t in tokens] == [
        ("stream", 0),
        ("&&", 16),
        ("hour", 19),
        (">", 24),
        ("1", 26),
        ("", 27),
    ]
    assert refused("stream // why\n  && strem")[0].startswith("2:6: undeclared reference")


def test_the_tree() -> None:
    tree = parse("-5 < max_tokens && tools.exists(t, t == 'x') && has(headers.a)")
    assert isinstance(tree, Call) and tree.function == "_&&_"
    left, has = tree.args
    assert isinstance(has, Select) and has.test_only and has.name == "a"
    assert isinstance(left, Call)
    comparison, exists = left.args
    assert isinstance(comparison, Call) and isinstance(comparison.args[0], Literal)
    assert comparison.args[0].value == -5
    assert isinstance(exists, Comprehension) and exists.variable == "t"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("headers[?'x']", "optional indexing is not supported"),
        ("headers.?x", "optional selection is not supported"),
        (".tools", "a leading '.' on a name is not supported"),
        ("has(tools)", "has() takes one field selection, as in has(m.f)"),
        ("tools.exists(1, true)", "exists() needs a variable name first"),
    ],
)
def test_what_the_parser_refuses(source: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(source)


def test_reads_are_the_attributes_named_not_the_macro_variables() -> None:
    assert reads("tools.exists(t, t.startsWith(model))") == ("model", "tools")
    assert reads("[1, 2].exists(n, n > hour) && stream") == ("stream", "hour")
    assert reads("true") == ()
    assert reads("'x-team' in headers") == ("headers",)


@pytest.mark.parametrize(
    "source",
    [
        "has(headers.x) || true",
        "'x-tema' in headers",
        "headers.x_team == ''",
    ],
)
def test_header_names_must_be_listed(source: str) -> None:
    (problem,) = refused(source)
    assert "is not in policies.headers (x-project, x-team), so it is never present" in problem


@pytest.mark.parametrize(
    "source",
    [
        "1 == 1.0",  # numbers compare across types
        "max_tokens < 2.5",
        "null == model",
        "'a' in {'a': 1}",
        "{'a': hour}['a'] > 3",
        "[tools, roles].exists(l, 'x' in l)",
        "(stream ? 1 : 2) > 0",
        "string(max_tokens) == '0' && int('5') == 5 && double(hour) > 0.5 && uint(hour) >= 0u",
        "roles.map(r, size(r)).exists(n, n > 3)",
        "roles.map(r, r != 'x', r + '!').size() >= 0",
        "size(b'ab') == 2 && model.size() >= 0",
    ],
)
def test_well_typed_conditions_pass(source: str) -> None:
    compile_expression(source, HEADERS, CONTEXTS)


def test_what_would_be_dyn_is_refused() -> None:
    assert refused("[1, 'a'][1] > 2") == ["1:5: list items must have one type, not int and string"]
    assert refused("{'a': 1, 'b': 'x'}['a'] > 0") == [
        "1:15: map values must have one type, not int and string"
    ]
    assert refused("tool_results && prompt_tokens < (stream ? prompt_tokens : stream)") == [
        "1:41: the branches of ?: must have one type, not int and bool"
    ]
    # an empty literal's elements take the other side's type
    assert reads("(tools + [])[0] == 'x' && (stream ? [] : roles).size() > 0") == (
        "roles",
        "stream",
        "tools",
    )


def test_the_trial_evaluations_are_the_backstop() -> None:
    """What the library refuses on a trial evaluation is reported, whatever the
    checker said (here, a program the checker never saw)."""
    assert trial_problems(cel.compile("stream > 3"), CONTEXTS)[0].startswith(
        "1:1: type error when tried: No such overload"
    )
    assert trial_problems(cel.compile("max_tokens"), CONTEXTS) == [
        "1:1: a rule must evaluate to bool, not int"
    ]
    assert trial_problems(cel.compile("max_tokens / prompt_tokens > 1"), CONTEXTS) == []


def test_value_dependent_errors_are_not_caught_before_serving() -> None:
    for source in (
        "max_tokens / prompt_tokens > 2",  # division by zero when prompt_tokens is 0
        "int(headers['x-team']) > 3",  # not a number
        "tools[3] == 'x'",  # index out of range
        "max_tokens * 9223372036854775807 > 0",  # overflow
    ):
        compile_expression(source, HEADERS, CONTEXTS)


@pytest.mark.parametrize(
    ("source", "steps"),
    [
        ("stream", 1),
        ("stream && max_tokens > 1000", 5),
        ('tools.exists(t, t.startsWith("x"))', 1 + 128 * (8 + 3)),
        ('roles.filter(r, r == "a").size() > 0', 1 + 1 + (1 + 16 * (8 + 3) + 3 * 16 * 16 // 2) + 1),
        # 30 for the call, then 1024 characters x (20 ns + 24 ns x 4 instructions) / 100 ns
        ('model.matches("^a")', 3 + 30 + 1188),
        ('("a" + "bc").matches("^a")', 5 + 30 + 4),
        ("'x' in tools", 3 + 16),
        ("size(tools + roles) > 0", 1 + 1 + (1 + 1 + 1 + 3 * 144) + 1),
        ("[1, 2, 3].exists(n, n > 1)", (1 + 3 + 3) + 3 * (8 + 3)),
    ],
)
def test_the_cost_bound(source: str, steps: int) -> None:
    cost = estimate(parse(source))
    assert (cost.steps, cost.unbounded) == (steps, None)


def test_a_range_without_a_bound_has_no_cost_bound() -> None:
    # only reachable for trees the checker refuses (a string is not a range), but the
    # estimate never guesses a size
    cost = estimate(parse("model.exists(x, true)"))
    assert cost.unbounded == "exists() ranges over a value whose size has no known bound"
    assert [p.message for p in check(parse("model.exists(x, true)")).problems] == [
        "exists() needs a list or a map, not string"
    ]
    assert MAX_RULE_STEPS == 5000
