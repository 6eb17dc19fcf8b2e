"""Policies: config and compile errors, every effect, inheritance, routing, shadow and
canary sets, the decision cache, the evaluation budget and runaway rules.

Everything runs the real CEL library; the only stand-ins are clocks (the cache's
time to live, and one wall clock that jumps to imitate a preempted thread).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import (
    Attributes,
    CompiledPolicies,
    KnownNames,
    PolicyError,
    RepeatedHeader,
    UnknownTenant,
    compile_policies,
    parse_policies,
    policy_headers,
    raw_policy_headers,
    utc_hour_weekday,
)
from policies.attributes import MAX_TOOLS, reference_table
from policies.compiler import content_version
from tests.policy_support import ordinary

CHAINS = {
    "org": ("root", "org"),
    "team-a": ("root", "org", "team-a"),
    "team-b": ("root", "org", "team-b"),
    "other": ("root", "other"),
    "team-c": ("root", "other", "team-c"),
}
KNOWN = KnownNames.of(CHAINS, ["d1", "d2", "d3", "d4"], ["tight", "loose"])


def attrs(tenant: str = "team-a", **values: Any) -> Attributes:
    """A request of `tenant` with ordinary values; `values` override any attribute."""
    return ordinary(KNOWN.chains[tenant], {"x-team": ""}, **values)


def rule(rule_id: str, when: str, effect: str = "deny", **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": rule_id, "when": when, "effect": effect, **fields}
    if effect == "deny":
        entry.setdefault("message", f"{rule_id} says no")
    return entry


def policies(rules: list[dict[str, Any]], **settings: Any) -> CompiledPolicies:
    """Compiled `rules`; `settings` are other `policies:` keys (candidate, cache...)."""
    data: dict[str, Any] = {"rules": rules, "headers": ["x-team"], **settings}
    return compile_policies(parse_policies(data), KNOWN)


def problems(data: dict[str, Any], known: KnownNames = KNOWN) -> list[str]:
    """Every problem `data` has, from parsing or from compiling."""
    data = {"headers": ["x-team"], **data}
    with pytest.raises(PolicyError) as caught:
        compile_policies(parse_policies(data), known)
    return caught.value.problems


# -- config errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"id": "r", "when": "true", "effect": "deny"},
            "policies.rules[0]: effect 'deny' needs 'message'",
        ),
        (
            {"id": "r", "when": "true", "effect": "flag"},
            "policies.rules[0]: effect 'flag' needs 'flag'",
        ),
        (
            {"id": "r", "when": "true", "effect": "route"},
            "policies.rules[0]: effect 'route' needs 'route'",
        ),
        (
            {"id": "r", "when": "true", "effect": "limit_class"},
            "policies.rules[0]: effect 'limit_class' needs 'limit_class'",
        ),
        (
            {"id": "r", "when": "true", "effect": "flag", "flag": "f", "limit_class": "tight"},
            "policies.rules[0]: 'limit_class' belongs to effect 'limit_class', not 'flag'",
        ),
        (
            {"id": "r", "when": "true", "effect": "deny", "message": "m", "route": {"pin": ["d1"]}},
            "policies.rules[0]: 'route' belongs to effect 'route', not 'deny'",
        ),
        (
            {
                "id": "r",
                "when": "true",
                "effect": "route",
                "route": {"pin": ["d1"], "exclude": ["d2"]},
            },
            "policies.rules[0].route: give exactly one of 'pin' or 'exclude'",
        ),
        (
            {"id": "r", "when": "true", "effect": "route", "route": {"pin": []}},
            "policies.rules[0].route: 'pin' must list at least one deployment",
        ),
        (
            {"id": "r", "when": "true", "effect": "flag", "flag": "f", "on_error": "allow"},
            "policies.rules[0].on_error: Input should be 'deny' or 'ignore'",
        ),
        (
            {"id": "r", "when": "true", "effect": "flag", "flag": "f", "efect": "deny"},
            "policies.rules[0].efect: Extra inputs are not permitted",
        ),
        (
            {"id": "bad id!", "when": "true", "effect": "flag", "flag": "f"},
            "policies.rules[0].id: must be 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
        (
            {"id": "r", "when": "", "effect": "flag", "flag": "f"},
            "policies.rules[0].when: String should have at least 1 character",
        ),
    ],
)
def test_rule_field_problems(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies({"rules": [entry]})
    assert caught.value.problems == [expected]


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies({"rules": [rule("a", "true"), rule("b", "true"), rule("a", "stream")]})
    assert caught.value.problems == ["policies.rules: duplicate rule id 'a' at [0] and [2]"]


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (
            {"mode": "shadow", "share": 0.5, "rules": []},
            "policies.candidate: 'share' and 'tenants' are for mode 'canary'; shadow sees "
            "every request",
        ),
        (
            {"mode": "canary", "rules": []},
            "policies.candidate: a canary needs a 'share' above 0 or some 'tenants'",
        ),
        (
            {"mode": "canary", "share": 1.5, "rules": []},
            "policies.candidate.share: Input should be less than or equal to 1",
        ),
        (
            {"mode": "blue", "rules": []},
            "policies.candidate.mode: Input should be 'shadow' or 'canary'",
        ),
    ],
)
def test_candidate_problems(candidate: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies({"candidate": candidate})
    assert caught.value.problems == [expected]


def test_settings_problems() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies(
            {
                "headers": ["X-Team", "x-team"],
                "evaluation_budget_ms": 0,
                "cache": {"max_entries": -1, "ttl_seconds": 0},
            }
        )
    assert caught.value.problems == [
        "policies.headers[0]: must be a lowercase HTTP header name (at most 64 characters)",
        "policies.evaluation_budget_ms: Input should be greater than 0",
        "policies.cache.max_entries: Input should be greater than or equal to 0",
        "policies.cache.ttl_seconds: Input should be greater than 0",
    ]


# -- compile errors ------------------------------------------------------------------


def test_every_compile_problem_is_reported_at_once_with_its_path_and_position() -> None:
    found = problems(
        {
            "rules": [
                rule("ok", "stream"),
                rule("typo", "stream && strem"),
                rule("types", "stream > 3"),
                rule("syntax", "max_tokens >"),
                rule("tenant", "true", tenant="teem-a"),
                rule("pin", "true", "route", route={"pin": ["d1", "d9"]}),
                rule("limit", "true", "limit_class", limit_class="tigth"),
                rule("result", "max_tokens + 1", "flag", flag="f"),
            ]
        }
    )
    assert found == [
        "policies.rules[1].when: 1:11: undeclared reference to 'strem' (did you mean 'stream'?)",
        "policies.rules[2].when: 1:8: no matching overload for '>' applied to (bool, int)",
        "policies.rules[3].when: 1:13: Syntax error: mismatched input '<EOF>' expecting {'[', "
        "'{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, "
        "STRING, BYTES, IDENTIFIER}",
        "policies.rules[4].tenant: unknown tenant 'teem-a' (did you mean 'team-a'?)",
        "policies.rules[5].route.pin[1]: unknown deployment 'd9'",
        "policies.rules[6].limit_class: unknown limit class 'tigth' (did you mean 'tight'?)",
        "policies.rules[7].when: 1:1: a rule must evaluate to bool, not int",
    ]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("model.lowerAscii() == 'a'", "1:7: unknown function 'lowerAscii'"),
        ("model == 1", "1:7: no matching overload for '==' applied to (string, int)"),
        ("max_tokens + 1u > 2", "1:12: no matching overload for '+' applied to (int, uint)"),
        ("tools[0] > 1", "1:10: no matching overload for '>' applied to (string, int)"),
        ("size(stream) > 0", "1:1: size() of bool is undefined"),
        ("stream.startsWith('a')", "1:8: startsWith() is defined on strings, not bool"),
        ("tools.exists(t, t)", "1:17: the condition of exists() must be bool, not string"),
        (
            "tools.exists(model, model == 'x')",
            "1:14: exists() variable 'model' hides the attribute or variable of that name; "
            "choose another",
        ),
        ("hour.x == 1", "1:6: int has no field 'x'"),
        (
            "headers['x-tema'] == 'a'",
            "1:9: header 'x-tema' is not in policies.headers (x-team), so it is never present "
            "(did you mean 'x-team'?)",
        ),
        ("model.matches('(')", "1:15: invalid regular expression"),
        ("Foo{a: 1}", "1:1: message construction is not supported"),
        ("(" * 70 + "true" + ")" * 70, "1:65: nested more than 64 levels deep"),
        ("x" * 1100, "1:1: 1100 characters, over the limit of 1024"),
        (
            'tools.filter(t, t.startsWith("shell")).size() > 3',
            "1:1: may cost up to 25988 steps to evaluate, over the limit of 5000",
        ),
    ],
)
def test_condition_problems(when: str, expected: str) -> None:
    found = problems({"rules": [rule("r", when)]})
    assert len(found) == 1
    assert found[0].startswith(f"policies.rules[0].when: {expected}")


def test_candidate_problems_at_compile() -> None:
    same = [rule("a", "stream")]
    found = problems(
        {
            "rules": same,
            "candidate": {"mode": "canary", "tenants": ["teamb"], "rules": same},
        }
    )
    version = content_version(parse_policies({"rules": same}).rules)
    assert found == [
        f"policies.candidate.version: {version!r} is the active version too; a candidate "
        "needs rules or a version of its own",
        "policies.candidate.tenants[0]: unknown tenant 'teamb' (did you mean 'team-b'?)",
    ]


def test_the_rules_of_one_chain_have_a_cost_limit_together() -> None:
    # 1409 steps each (128 tools at the limit); 36 of them are over 50,000 together
    expensive = [
        rule(f"r{i}", f'tools.exists(t, t.startsWith("x{i}"))', tenant="org") for i in range(60)
    ]
    found = problems({"rules": expensive})
    assert found == [
        "policies.rules: the rules applying to tenant 'org' (and 2 other tenants) may cost "
        "up to 84540 steps together, over the limit of 50000"
    ]


# -- the runaway rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        # a list of lists of lists: 128³ items, two minutes in the library
        "tools.map(a, tools.map(b, tools)).size() > 0",
        # a comprehension over a list built in the rule, nested in another
        "[" + ",".join(str(i) for i in range(150)) + "].map(x, tools.filter(t, t != string(x)))"
        ".size() > 0",
        "tools.exists(a, tools.exists(b, a == b && a == 'zz'))",
    ],
)
def test_a_runaway_rule_is_refused_at_compile_time(when: str) -> None:
    found = problems({"rules": [rule("runaway", when)]})
    assert len(found) == 1
    assert "steps to evaluate, over the limit of 5000" in found[0]


def test_an_evaluation_over_the_budget_is_an_error_that_its_on_error_decides() -> None:
    tools = tuple(f"tool_{i}" for i in range(MAX_TOOLS))
    compiled = compile_policies(
        parse_policies(
            {
                # 1 µs: every evaluation of a 128-item comprehension takes longer
                "evaluation_budget_ms": 0.001,
                "rules": [
                    rule("slow-deny", 'tools.exists(t, t.startsWith("zz"))'),
                    rule(
                        "slow-flag",
                        'tools.exists(t, t.endsWith("zz"))',
                        "flag",
                        flag="f",
                        on_error="ignore",
                    ),
                ],
            }
        ),
        KNOWN,
    )
    decision = compiled.decide(attrs(tools=tools), "r1")
    assert decision.deny is not None
    assert (decision.deny.rule, decision.deny.cause) == ("slow-deny", "error")
    assert [(e.rule, e.kind, e.action) for e in decision.errors] == [
        ("slow-deny", "budget", "deny"),
        ("slow-flag", "budget", "ignore"),
    ]
    assert "over the budget of 0.001 ms" in decision.errors[0].detail
    assert decision.flags == ()
    # an over-budget outcome depends on time, not on attributes: it is never cached;
    # and the rules are now cut off for team-a: decided by on_error without running
    again = compiled.decide(attrs(tools=tools), "r2")
    assert [(e.rule, e.kind, e.action) for e in again.errors] == [
        ("slow-deny", "cutoff", "deny"),
        ("slow-flag", "cutoff", "ignore"),
    ]
    stats = compiled.stats().active
    assert (stats.budget_overruns, stats.budget_cutoffs) == (2, 2)
    assert stats.cache_entries == 0
    assert stats.evaluations == 2


def test_a_preempted_evaluation_is_rechecked_on_cpu_time_and_stands() -> None:
    """The wall clock jumps 50 ms during every evaluation (a preempted thread); the
    evaluation's own CPU time is far under the budget, so the result stands."""
    ticks = iter(range(0, 10**12, 50_000_000))
    compiled = compile_policies(
        parse_policies({"rules": [rule("streams", "stream")]}),
        KNOWN,
        timer=lambda: next(ticks),
    )
    decision = compiled.decide(attrs(stream=True), "r1")
    assert decision.deny is not None and decision.deny.cause == "rule"
    assert decision.errors == ()
    stats = compiled.stats().active
    assert (stats.budget_rechecks, stats.budget_overruns) == (1, 0)


def test_the_cpu_clock_is_read_only_for_decisions_with_a_rule_it_could_matter_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading the thread's CPU clock is a system call: a decision whose rules the cost
    model bounds far under the budget skips it (an overrun by the wall clock is then a
    preemption, a recheck), one with a costly rule reads it once."""
    import policies.ruleset as ruleset

    reads: list[int] = []
    real = ruleset.time.thread_time_ns

    def counted() -> int:
        reads.append(1)
        return real()

    monkeypatch.setattr(ruleset.time, "thread_time_ns", counted)
    cheap = policies([rule("streams", "stream")])
    assert cheap.decide(attrs(stream=True), "r1").deny is not None
    assert reads == []
    # The wall clock stands still from here on, so no overrun is rechecked (a second
    # read), however long an evaluation takes on a busy machine.
    costly = compile_policies(
        parse_policies({"rules": [rule("shell", 'tools.exists(t, t.startsWith("shell"))')]}),
        KNOWN,
        timer=lambda: 0,
    )
    costly.decide(attrs(tools=("shell_run",)), "r1")
    assert reads == [1]
    # the same cheap rule under a budget it could use up is timed on the CPU clock
    tight = compile_policies(
        parse_policies({"rules": [rule("streams", "stream")], "evaluation_budget_ms": 0.001}),
        KNOWN,
        timer=lambda: 0,
    )
    tight.decide(attrs(stream=False), "r1")
    assert reads == [1, 1]


# -- effects -------------------------------------------------------------------------


def test_every_effect() -> None:
    compiled = policies(
        [
            rule("no-long-streams", "stream && max_tokens > 1000", message="Not that long."),
            rule("pin", "model == 'gpt-4o'", "route", route={"pin": ["d1", "d2"]}),
            rule("exclude", "true", "route", route={"exclude": ["d2"]}),
            rule("flag", "stream", "flag", flag="streaming"),
            rule("flag-again", "true", "flag", flag="streaming"),
            rule("tight", "max_tokens > 500", "limit_class", limit_class="tight"),
            rule("loose", "true", "limit_class", limit_class="loose"),
        ]
    )
    allowed = compiled.decide(attrs(stream=True, max_tokens=800), "r")
    assert allowed.deny is None
    assert allowed.pin == frozenset({"d1", "d2"})
    assert allowed.exclude == frozenset({"d2"})
    assert [allowed.allows(d) for d in ("d1", "d2", "d3")] == [True, False, False]
    assert allowed.flags == ("streaming",)
    assert allowed.limit_classes == ("tight", "loose")
    assert allowed.matched == ("pin", "exclude", "flag", "flag-again", "tight", "loose")
    assert allowed.route_rules == ("pin", "exclude")
    assert allowed.version == compiled.version

    denied = compiled.decide(attrs(stream=True, max_tokens=2000), "r")
    assert denied.deny is not None
    assert (denied.deny.rule, denied.deny.message, denied.deny.cause) == (
        "no-long-streams",
        "Not that long.",
        "rule",
    )
    assert denied.matched[0] == "no-long-streams"  # every rule still runs, for audit
    assert denied.flags == ("streaming",)


def test_an_evaluation_error_denies_or_is_ignored_per_on_error() -> None:
    compiled = policies(
        [
            rule("ratio", "max_tokens / prompt_tokens > 10", on_error="ignore"),
            rule("team-number", "int(headers['x-team']) > 3", "flag", flag="big-team"),
        ]
    )
    # prompt_tokens 0: division by zero; x-team not a number: int() fails
    decision = compiled.decide(attrs(prompt_tokens=0, headers={"x-team": "blue"}), "r")
    assert [(e.rule, e.kind, e.action) for e in decision.errors] == [
        ("ratio", "error", "ignore"),
        ("team-number", "error", "deny"),
    ]
    assert decision.deny is not None
    assert decision.deny.rule == "team-number"
    assert decision.deny.cause == "error"
    assert decision.deny.message == (
        "Request refused: policy rule 'team-number' could not be evaluated."
    )
    fine = compiled.decide(attrs(prompt_tokens=10, headers={"x-team": "7"}), "r")
    assert (fine.deny, fine.errors, fine.flags) == (None, (), ("big-team",))


def test_an_attribute_over_its_limit_fails_the_rules_that_read_it() -> None:
    compiled = policies(
        [
            rule("shell", "tools.exists(t, t.startsWith('shell'))"),
            rule("streams", "stream", "flag", flag="s"),
        ]
    )
    too_many = tuple(f"t{i}" for i in range(MAX_TOOLS + 1))
    decision = compiled.decide(attrs(tools=too_many, stream=True), "r")
    assert decision.deny is not None and decision.deny.cause == "error"
    assert [(e.rule, e.kind) for e in decision.errors] == [("shell", "attribute")]
    assert decision.errors[0].detail == "'tools' has 129 items, over the limit of 128"
    assert decision.flags == ("s",)


# -- inheritance ---------------------------------------------------------------------


def test_rules_inherit_down_the_tree_and_never_across() -> None:
    compiled = policies(
        [
            rule("everyone", "model == 'banned'"),
            rule("org-rule", "stream", tenant="org"),
            rule("a-rule", "max_tokens > 10", tenant="team-a"),
            rule("b-rule", "true", tenant="team-b"),
            rule("other-rule", "true", tenant="other"),
        ]
    )
    assert [r.id for r in compiled.rules_for("team-a")] == ["everyone", "org-rule", "a-rule"]
    assert [r.id for r in compiled.rules_for("team-c")] == ["everyone", "other-rule"]
    assert [r.id for r in compiled.rules_for("root")] == ["everyone"]
    # an ancestor's deny applies to a descendant
    assert _denied_by(compiled, attrs("team-a", stream=True)) == "org-rule"
    # a sibling's rule (b-rule denies everything) never applies
    assert _denied_by(compiled, attrs("team-a")) is None
    assert _denied_by(compiled, attrs("team-b")) == "b-rule"
    # the first matching deny wins, ancestors' rules first
    assert _denied_by(compiled, attrs("team-a", stream=True, max_tokens=99)) == "org-rule"
    assert _denied_by(compiled, attrs("team-a", model="banned", stream=True)) == "everyone"
    with pytest.raises(UnknownTenant):
        compiled.decide(replace(attrs(), tenant="nobody"), "r")


def _denied_by(compiled: CompiledPolicies, request: Attributes) -> str | None:
    decision = compiled.decide(request, "r")
    return decision.deny.rule if decision.deny else None


# -- routing -------------------------------------------------------------------------


def test_pins_intersect_and_excludes_add_up() -> None:
    compiled = policies(
        [
            rule("eu", "true", "route", route={"pin": ["d1", "d2", "d3"]}, tenant="org"),
            rule("fast", "stream", "route", route={"pin": ["d2", "d3", "d4"]}, tenant="team-a"),
            rule("no-d3", "max_tokens > 0", "route", route={"exclude": ["d3"]}, tenant="team-a"),
            rule("no-d2", "max_tokens > 10", "route", route={"exclude": ["d2"]}, tenant="team-a"),
        ]
    )
    both = compiled.decide(attrs(stream=True), "r")
    assert (both.pin, both.exclude, both.deny) == (frozenset({"d2", "d3"}), frozenset(), None)
    one_left = compiled.decide(attrs(stream=True, max_tokens=5), "r")
    assert [d for d in ("d1", "d2", "d3", "d4") if one_left.allows(d)] == ["d2"]
    assert one_left.deny is None
    # pins and excludes that leave nothing refuse the request, naming the route rules
    nothing = compiled.decide(attrs(stream=True, max_tokens=50), "r")
    assert nothing.deny is not None
    assert (nothing.deny.rule, nothing.deny.cause) == ("no-d2", "route")
    assert nothing.deny.message == (
        "Request refused: policy rules 'eu', 'fast', 'no-d3', 'no-d2' leave no deployment "
        "to route to."
    )


def test_disjoint_pins_refuse_and_excludes_alone_never_do() -> None:
    compiled = policies(
        [
            rule("p1", "stream", "route", route={"pin": ["d1"]}),
            rule("p2", "stream", "route", route={"pin": ["d2"]}),
            rule("x", "true", "route", route={"exclude": ["d1", "d2", "d3", "d4"]}),
        ]
    )
    disjoint = compiled.decide(attrs(stream=True), "r")
    assert disjoint.pin == frozenset() and disjoint.deny is not None
    # without pins the gateway intersects the excludes with the model group's deployments
    excluded = compiled.decide(attrs(), "r")
    assert excluded.deny is None and excluded.pin is None
    assert not any(excluded.allows(d) for d in ("d1", "d2", "d3", "d4"))


# -- shadow and canary ---------------------------------------------------------------


def test_a_shadow_candidate_is_evaluated_and_counted_but_never_enforced() -> None:
    active_rules = [rule("streams", "stream"), rule("f", "true", "flag", flag="seen")]
    candidate = {
        "mode": "shadow",
        "version": "next",
        "rules": [rule("everything", "true"), rule("pin", "true", "route", route={"pin": ["d1"]})],
    }
    with_shadow = policies(active_rules, candidate=candidate)
    without = policies(active_rules)
    requests = [attrs(stream=s, max_tokens=m) for s in (True, False) for m in (0, 10)]
    for index, request in enumerate(requests):
        decision = with_shadow.decide(request, str(index))
        assert decision.shadow is not None
        assert decision.shadow.deny is not None and decision.shadow.version == "next"
        assert decision.shadow.pin == frozenset({"d1"})
        assert replace(decision, shadow=None) == without.decide(request, str(index))
        assert not decision.canary
    stats = with_shadow.stats()
    assert (stats.shadow_decisions, stats.shadow_disagreements) == (4, 4)
    assert stats.candidate is not None and stats.candidate.decisions == 4


def test_a_canary_decides_its_share_of_request_keys() -> None:
    compiled = policies(
        [rule("active", "false")],
        candidate={"mode": "canary", "share": 0.1, "version": "v2", "rules": [rule("c", "true")]},
    )
    keys = [f"request-{i}" for i in range(2000)]
    decisions = [compiled.decide(attrs("team-b"), key) for key in keys]
    canaried = [d for d in decisions if d.canary]
    # Binomial(2000, 0.1): mean 200, standard deviation 13.4; 5 standard deviations is
    # 133-267 (an independent hash lands outside with probability < 1e-6).
    assert 133 <= len(canaried) <= 267
    assert all(d.version == "v2" and d.deny is not None for d in canaried)
    assert all(d.version == compiled.version and d.deny is None for d in decisions if not d.canary)
    assert compiled.stats().canary_decisions == len(canaried)
    # stable: the same key is always decided by the same set
    again = [compiled.decide(attrs("team-b"), key).canary for key in keys]
    assert again == [d.canary for d in decisions]


def test_listed_canary_tenants_and_their_descendants_always_get_the_candidate() -> None:
    compiled = policies(
        [rule("active", "false")],
        candidate={"mode": "canary", "tenants": ["org"], "rules": [rule("c", "true")]},
    )
    for tenant in ("org", "team-a", "team-b"):
        assert all(compiled.decide(attrs(tenant), f"k{i}").canary for i in range(50))
    for tenant in ("root", "other", "team-c"):
        assert not any(compiled.decide(attrs(tenant), f"k{i}").canary for i in range(50))


# -- the decision cache --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_hits_and_misses() -> None:
    compiled = policies([rule("streams", "stream && max_tokens > 100")])
    compiled.decide(attrs(stream=True, max_tokens=500), "r")
    compiled.decide(attrs(stream=True, max_tokens=500, model="other"), "r")  # model is not read
    compiled.decide(attrs(stream=True, max_tokens=501), "r")
    compiled.decide(attrs("team-b", stream=True, max_tokens=500), "r")  # another tenant
    stats = compiled.stats().active
    assert (stats.cache_hits, stats.cache_misses, stats.evaluations) == (1, 3, 3)


def test_a_rule_not_reading_prompt_tokens_hits_across_prompt_sizes() -> None:
    compiled = policies(
        [
            rule("streams", "stream"),
            rule("huge", "prompt_tokens > 100000", tenant="org"),
            rule("tools", "'shell' in tools", "flag", flag="shell", tenant="team-a"),
        ]
    )
    decisions = [
        compiled.decide(attrs(prompt_tokens=size, tools=("shell",)), "r")
        for size in (10, 500, 200_000, 3000)
    ]
    assert [d.deny.rule if d.deny else None for d in decisions] == [None, None, "huge", None]
    assert all(d.flags == ("shell",) for d in decisions)
    stats = compiled.stats().active
    assert (stats.cache_hits, stats.cache_misses) == (3, 1)
    evaluations = {rule.rule: rule.evaluations for rule in stats.rules}
    # the prompt-size rule runs every time, the others once
    assert evaluations == {"streams": 1, "huge": 4, "tools": 1}


def test_time_is_part_of_the_key_only_for_rules_that_read_it() -> None:
    timeless = policies([rule("streams", "stream")])
    for hour in range(24):
        timeless.decide(attrs(hour=hour, weekday=hour % 7), "r")
    assert timeless.stats().active.cache_misses == 1
    nightly = policies([rule("night", "hour < 6")])
    for hour in range(24):
        nightly.decide(attrs(hour=hour, weekday=hour % 7), "r")
    assert nightly.stats().active.cache_misses == 24


def test_cache_entries_expire_and_the_least_recently_used_go_first() -> None:
    clock = FakeClock()
    config = parse_policies(
        {
            "rules": [rule("r", "max_tokens > 5")],
            "cache": {"max_entries": 2, "ttl_seconds": 30},
        }
    )
    compiled = compile_policies(config, KNOWN, clock=clock)
    cache = compiled.active.cache
    for tokens in (1, 2, 1, 3):  # 3 evicts 2, the least recently used
        compiled.decide(attrs(max_tokens=tokens), "r")
    assert (cache.hits, cache.misses, cache.evictions, len(cache)) == (1, 3, 1, 2)
    compiled.decide(attrs(max_tokens=1), "r")
    assert cache.hits == 2
    clock.now += 30
    compiled.decide(attrs(max_tokens=1), "r")
    assert (cache.hits, cache.expirations) == (2, 1)


def test_max_entries_zero_turns_the_cache_off() -> None:
    compiled = policies([rule("r", "stream")], cache={"max_entries": 0})
    for _ in range(3):
        compiled.decide(attrs(), "r")
    stats = compiled.stats().active
    assert (stats.cache_hits, stats.evaluations, stats.cache_entries) == (0, 3, 0)


def test_per_rule_statistics() -> None:
    compiled = policies([rule("a", "stream"), rule("b", "max_tokens > 5", "flag", flag="f")])
    for tokens in range(10):
        compiled.decide(attrs(max_tokens=tokens), "r")
    a, b = compiled.stats().active.rules
    assert (a.rule, a.evaluations, a.matches) == ("a", 10, 0)
    assert (b.rule, b.evaluations, b.matches) == ("b", 10, 4)
    assert b.median_us is not None and b.p99_us is not None
    assert 0 < b.median_us <= b.p99_us


# -- attributes ----------------------------------------------------------------------


def test_policy_headers_lists_every_allowed_header_and_nothing_else() -> None:
    headers = [("X-Team", "search"), ("Authorization", "Bearer x"), ("X-Other", "1")]
    assert policy_headers(headers, ["x-team", "x-project"]) == {
        "x-team": "search",
        "x-project": "",
    }


def test_a_repeated_header_rules_may_read_is_refused_and_others_are_not() -> None:
    # Joined as "search, ops", `headers["x-team"] == "ops"` would be false: a caller
    # could walk around a rule by repeating the header it compares.
    with pytest.raises(RepeatedHeader) as raised:
        policy_headers([("X-Team", "search"), ("x-team", "ops")], ["x-team"])
    assert raised.value.name == "x-team"
    unlisted = [("x-other", "a"), ("x-other", "b"), ("x-team", "ops")]
    assert policy_headers(unlisted, ["x-team"]) == {"x-team": "ops"}


_header_names = st.sampled_from(["x-team", "X-Team", "x-env", "X-ENV", "authorization", "x-other"])
_header_pairs = st.lists(st.tuples(_header_names, st.text(max_size=8)), max_size=6)


@given(_header_pairs)
def test_raw_policy_headers_decide_as_policy_headers(pairs: list[tuple[str, str]]) -> None:
    """From raw ASGI pairs (only the allowed ones decoded) the attribute is the one the
    decoded pairs give, repeated-header refusal included."""
    allowed = ("x-team", "x-env")
    raw = [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in pairs]
    decoded = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
    try:
        expected: dict[str, str] | str = policy_headers(decoded, allowed)
    except RepeatedHeader as exc:
        expected = exc.name
    try:
        got: dict[str, str] | str = raw_policy_headers(raw, allowed)
    except RepeatedHeader as exc:
        got = exc.name
    assert got == expected


def test_utc_hour_and_weekday() -> None:
    # 2026-11-30 is a Monday; 23:30 UTC
    assert utc_hour_weekday(1796081400) == (23, 0)


@given(st.floats(min_value=-(10**10), max_value=10**11, allow_nan=False))
def test_utc_hour_and_weekday_agree_with_datetime(epoch_seconds: float) -> None:
    """The arithmetic is held to `datetime`'s UTC calendar, before 1970 included."""
    moment = datetime.fromtimestamp(math.floor(epoch_seconds), UTC)
    assert utc_hour_weekday(epoch_seconds) == (moment.hour, moment.weekday())


def test_the_reference_table_names_every_attribute() -> None:
    table = reference_table()
    for name in Attributes.__dataclass_fields__:
        assert f"| `{name}` |" in table


def test_lists_where_tuples_belong_still_decide_and_cache() -> None:
    compiled = policies([rule("shell", "'shell' in tools"), rule("r", "'admin' in roles")])
    sloppy = replace(attrs(), tools=["shell"], roles=["user"])  # type: ignore[arg-type]
    assert _denied_by(compiled, sloppy) == "shell"
    assert _denied_by(compiled, sloppy) == "shell"
    assert compiled.stats().active.cache_hits == 1
