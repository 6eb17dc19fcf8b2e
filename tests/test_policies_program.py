"""The combined rule program decides exactly as evaluating each rule alone does.

A rule set evaluates batches of a tenant's rules with one library call each (the
list of their conditions), and falls back to one call per rule when that call
raises (`policies.ruleset`). Checked with hypothesis: for random rule sets (random
conditions over the attributes, many of which fail at run time for some inputs:
division by zero, a missing key of a literal map, an index out of range, integer
overflow, `int` of a non-number, in branches of `&&`, `||` and `?:` that may
absorb the error), random budgets (so rules are batched differently) and random
request sequences (with the cache on, so hits evaluate only the per-request
rules), the combined rule set's decisions, and every rule's counts of
evaluations, matches and errors, equal those of the same rules evaluated one by
one. Then, one example each: the budget on a batch, cut-offs, time samples, and
comments in conditions.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import policies.ruleset as ruleset
from policies import Attributes, CompiledPolicies, compile_policies, parse_policies
from policies.expression import ExpressionError, compile_expression
from policies.ruleset import RuleSet
from tests.examples import examples
from tests.test_policies_properties import (
    CONTEXTS,
    HEADERS,
    KNOWN,
    TENANTS,
    attributes,
    expressions,
)

#: 150 examples at full count (`make properties`), half in the suite;
#: SEAWALL_PROPERTY_SCALE=40 for a long run (6,000)
#: (one passed at 6,000 when this was written).
PROGRAMS = settings(max_examples=examples(150), deadline=None)

# -- conditions ------------------------------------------------------------------------

#: Conditions that fail at run time for some attribute values.
FAILING = [
    "max_tokens / (hour - 12) > 1",
    "max_tokens % (weekday - 3) == 0",
    "{'gpt-4o': true, 'a': false}[model]",
    "int(model) > 3",
    "tools[0] == 'search'",
    "roles[1] == 'tools'",
    "size(tools[0]) > 2",
    "prompt_tokens * 100000000000000 > 5",
    "-9223372036854775807 - hour < 0",
    "int(headers['x-team']) == 1",
    "uint(max_tokens - 100) > 5u",
    "max_tokens / prompt_tokens > 2",
    "string(prompt_tokens / weekday) == model",
    "tools[hour] == model",
    "tools.exists(t, int(t) > 1)",
    "roles.all(r, {'user': true, 'tools': false}[r])",
]
#: Conditions that never fail, `matches` and comprehensions among them.
SOUND = [
    "stream",
    "prompt_tokens > 100000",
    "prompt_tokens < 2000 && max_tokens <= 512",
    "model.startsWith('gpt')",
    "model.matches('^g(p)t-[0-9]')",
    "headers['x-team'].matches('^s')",
    "client_ip.startsWith('10.') || client_ip == ''",
    "tools.exists(t, t.startsWith('s'))",
    "'admin' in roles",
    "hour < 6 || hour >= 22",
    "key.contains('a') && !tool_results",
    "size(tools) > 1",
    "'org' in tenants",
    "true",
    "false",
]


@st.composite
def conditions(draw: st.DrawFn, depth: int = 2) -> str:
    """A condition: a listed one, a random expression (`test_policies_properties`;
    often refused by the checker), or a combination that may absorb an error."""
    form = draw(st.integers(0, 9))
    if depth == 0 or form <= 2:
        return draw(st.sampled_from(FAILING))
    if form <= 4:
        return draw(st.sampled_from(SOUND))
    if form == 5:
        return draw(expressions())
    left, right = draw(conditions(depth - 1)), draw(conditions(depth - 1))
    if form == 6:
        return f"({left}) && ({right})"
    if form == 7:
        return f"({left}) || ({right})"
    if form == 8:
        return f"!({left})"
    return f"({draw(conditions(depth - 1))}) ? ({left}) : ({right})"


_accepted: dict[str, bool] = {}


def accepted(source: str) -> bool:
    if source not in _accepted:
        try:
            compile_expression(source, HEADERS, CONTEXTS)
            _accepted[source] = True
        except ExpressionError:
            _accepted[source] = False
    return _accepted[source]


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    sources = draw(st.lists(conditions().filter(accepted), min_size=2, max_size=10))
    rules = []
    for index, source in enumerate(sources):
        if draw(st.integers(0, 9)) == 0:
            source += " // a comment"
        entry: dict[str, Any] = {
            "id": f"r{index}",
            "tenant": draw(st.sampled_from(["root", *TENANTS])),
            "when": source,
            "on_error": draw(st.sampled_from(["deny", "ignore"])),
        }
        effect = draw(st.sampled_from(["deny", "flag", "pin", "exclude", "limit_class"]))
        if effect == "deny":
            entry.update(effect="deny", message=f"r{index} says no")
        elif effect == "flag":
            entry.update(effect="flag", flag=draw(st.sampled_from(["f1", "f2"])))
        elif effect == "limit_class":
            entry.update(effect="limit_class", limit_class="tight")
        else:
            deployments = draw(
                st.lists(st.sampled_from(["d1", "d2", "d3"]), min_size=1, unique=True)
            )
            entry.update(effect="route", route={effect: deployments})
        rules.append(entry)
    return rules


# -- requests --------------------------------------------------------------------------

words = st.sampled_from(
    ["", "a", "gpt-4o", "gpt-5", "42", "-7", "search", "shell", "10.0.0.1", "ü"]
)


def requests() -> st.SearchStrategy[Attributes]:
    """Attributes near the boundaries the rules compare with."""
    return attributes(
        text=words,
        prompt_tokens=st.sampled_from([0, 1, 100, 1999, 92233, 92234, 300_000]),
        max_tokens=st.sampled_from([0, 5, 99, 100, 512, 600, 20_000]),
        hour=st.sampled_from([0, 1, 5, 12, 13, 22, 23]),
        weekday=st.sampled_from([0, 3, 6]),
        max_tools=3,
    )


# -- the property ----------------------------------------------------------------------


def compiled(rules: list[dict[str, Any]], **settings: Any) -> CompiledPolicies:
    data = {"rules": rules, "headers": list(HEADERS), **settings}
    return compile_policies(parse_policies(data), KNOWN)


def counts(rule_set: RuleSet) -> tuple[object, ...]:
    stats = rule_set.stats()
    return (
        stats.evaluations,
        stats.errors,
        stats.budget_overruns,
        stats.budget_cutoffs,
        [(r.rule, r.evaluations, r.matches, r.errors, r.overruns, r.cutoffs) for r in stats.rules],
    )


@PROGRAMS
@given(
    rule_sets(),
    st.lists(requests(), min_size=1, max_size=4),
    st.data(),
    st.sampled_from([0, 64]),
    st.sampled_from([1, 100]),
)
def test_the_combined_program_decides_exactly_as_each_rule_alone(
    rules: list[dict[str, Any]],
    pool: list[Attributes],
    data: st.DataObject,
    cache_entries: int,
    budget_ms: int,
) -> None:
    settings = {"cache": {"max_entries": cache_entries}, "evaluation_budget_ms": budget_ms}
    combined, alone = compiled(rules, **settings), compiled(rules, **settings)
    combined.active.sample_every = 0  # no run rule by rule for time samples
    alone.active.combine = False
    sequence = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8))
    for request in sequence:
        assert combined.decide(request, "k") == alone.decide(request, "k")
    assert counts(combined.active) == counts(alone.active)
    assert alone.active.combined_calls == 0
    stats = combined.active.stats()
    event(f"combined calls: {min(stats.combined_calls, 3)}")
    event(f"fallbacks: {min(stats.combined_fallbacks, 3)}")


# -- one example each ------------------------------------------------------------------

CHEAP = ["stream", "max_tokens > 100", "model.startsWith('gpt')", "'admin' in roles"]


def rule(rule_id: str, when: str, on_error: str = "deny") -> dict[str, Any]:
    return {"id": rule_id, "when": when, "effect": "deny", "message": "no", "on_error": on_error}


def request(**values: Any) -> Attributes:
    base: dict[str, Any] = dict(
        tenant="team-a", tenants=KNOWN.chains["team-a"], key="k", roles=("user",),
        model="gpt-4o", endpoint="chat", prompt_tokens=100, max_tokens=0, stream=False,
        tools=(), tool_results=False, headers={"x-team": ""}, hour=12, weekday=2,
        client_ip="192.0.2.1", server="", tool="", argument_names=(), annotations=(),
    )  # fmt: skip
    base.update(values)
    return Attributes(**base)


def test_cheap_rules_share_one_call_and_costly_ones_run_alone() -> None:
    costly = "tools.exists(t, t.startsWith('shell'))"
    policies = compiled([rule(f"c{i}", when) for i, when in enumerate(CHEAP)] + [rule("x", costly)])
    active = policies.active
    active.sample_every = 0
    schedule = active.plans["team-a"].everything
    assert [batch.indices for batch in schedule.batches] == [(0, 1, 2, 3), (4,)]
    assert schedule.cpu_clock
    decision = policies.decide(request(max_tokens=500, tools=("shell_run",)), "k")
    assert decision.matched == ("c1", "c2", "x")
    stats = active.stats()
    assert (stats.combined_calls, stats.combined_fallbacks, stats.evaluations) == (1, 0, 5)
    assert [(r.evaluations, r.matches) for r in stats.rules] == [
        (1, 0),
        (1, 1),
        (1, 1),
        (1, 0),
        (1, 1),
    ]


def test_a_failing_rule_is_found_by_evaluating_the_batch_rule_by_rule() -> None:
    policies = compiled(
        [
            rule("a", "stream"),
            rule("div", "max_tokens / (hour - 12) > 1", "ignore"),
            rule("b", "true"),
        ]
    )
    policies.active.sample_every = 0
    decision = policies.decide(request(hour=12), "k")
    assert decision.deny is not None and decision.deny.rule == "b"
    assert [(e.rule, e.kind, e.action) for e in decision.errors] == [("div", "error", "ignore")]
    assert "division by zero" in decision.errors[0].detail
    stats = policies.active.stats()
    assert (stats.combined_calls, stats.combined_fallbacks) == (1, 1)
    assert [(r.rule, r.evaluations, r.errors) for r in stats.rules] == [
        ("a", 1, 0), ("div", 1, 1), ("b", 1, 0)
    ]  # fmt: skip


def test_a_comment_ending_a_condition_ends_there_in_the_batch_too() -> None:
    policies = compiled([rule("a", "stream // streams"), rule("b", "max_tokens > 5 // big")])
    policies.active.sample_every = 0
    assert policies.decide(request(max_tokens=6), "k").matched == ("b",)
    assert policies.active.stats().combined_calls == 1


def test_one_run_in_sample_every_evaluates_rule_by_rule_for_the_time_samples() -> None:
    policies = compiled(
        [rule("a", "stream"), rule("b", "max_tokens > 5")], cache={"max_entries": 0}
    )
    active = policies.active
    active.sample_every = 4
    for tokens in range(8):
        policies.decide(request(max_tokens=tokens), "k")
    stats = active.stats()
    assert stats.combined_calls == 6  # runs 0 and 4 went rule by rule
    a, b = stats.rules
    assert (a.evaluations, b.evaluations, b.matches) == (8, 8, 2)
    assert len(active.times["a"]._samples) == 2
    assert a.median_us is not None


def test_a_batch_over_the_budget_by_the_wall_clock_only_was_preempted_and_stands() -> None:
    ticks = itertools.count(0, 50_000_000)  # 50 ms between readings: a preempted thread
    policies = compile_policies(
        parse_policies({"rules": [rule("a", "stream"), rule("b", "max_tokens > 5")]}),
        KNOWN,
        timer=lambda: next(ticks),
    )
    policies.active.sample_every = 0
    decision = policies.decide(request(stream=True), "k")
    assert decision.matched == ("a",) and decision.errors == ()
    stats = policies.active.stats()
    assert (stats.combined_calls, stats.combined_fallbacks) == (1, 0)
    assert (stats.budget_rechecks, stats.budget_overruns) == (1, 0)


def test_a_batch_over_the_budget_on_the_cpu_clock_finds_the_rule_rule_by_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between readings the wall clock jumps 50 ms and the CPU clock 200 ms: the batch
    ran over the budget on both, so its rules run one by one, each over the budget
    too: each is an overrun, cut off for the tenant, exactly as when every rule
    runs alone."""
    rules = [
        rule("a", "stream"),
        rule("b", "max_tokens > 5", "ignore"),
        rule("x", "tools.exists(t, t.startsWith('shell'))"),
    ]
    decisions = []
    for combine in (True, False):
        monkeypatch.setattr(
            ruleset.time, "thread_time_ns", itertools.count(0, 200_000_000).__next__
        )
        ticks = itertools.count(0, 50_000_000).__next__
        policies = compile_policies(parse_policies({"rules": rules}), KNOWN, timer=ticks)
        policies.active.combine = combine
        policies.active.sample_every = 0
        first = policies.decide(request(), "k")
        again = policies.decide(request(), "k")  # cut off now: rule by rule, not run
        decisions.append([[(e.rule, e.kind, e.action) for e in d.errors] for d in (first, again)])
        assert counts(policies.active)[2:4] == (3, 3)
    assert (
        decisions[0]
        == decisions[1]
        == [
            [("a", "budget", "deny"), ("b", "budget", "ignore"), ("x", "budget", "deny")],
            [("a", "cutoff", "deny"), ("b", "cutoff", "ignore"), ("x", "cutoff", "deny")],
        ]
    )


def test_an_attribute_over_its_limit_sends_the_batches_reading_it_rule_by_rule() -> None:
    policies = compiled([rule("a", "stream"), rule("b", "size(tools) > 200", "ignore")])
    policies.active.sample_every = 0
    decision = policies.decide(request(stream=True, tools=tuple("t" * 200)), "k")
    assert decision.matched == ("a",)
    assert [(e.rule, e.kind) for e in decision.errors] == [("b", "attribute")]
    assert policies.active.stats().combined_calls == 0


def test_a_hit_meeting_outcomes_seen_before_returns_the_decision_assembled_then() -> None:
    rules = [rule("small", "prompt_tokens < 2000"), rule("streams", "stream", "ignore")]
    rules[0].update(effect="flag", flag="small")
    del rules[0]["message"]
    cached, uncached = compiled(rules), compiled(rules, cache={"max_entries": 0})
    first = cached.decide(request(prompt_tokens=10), "k")  # a miss
    again = cached.decide(request(prompt_tokens=20), "k")  # a hit, `small` true again
    assert again is first and again.flags == ("small",)
    quiet = cached.decide(request(prompt_tokens=5000), "k")  # `small` false
    assert quiet == uncached.decide(request(prompt_tokens=5000), "k") and quiet.flags == ()
    assert cached.active.stats().cache_hits == 2
