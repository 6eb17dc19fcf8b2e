"""Properties of policy compilation and decisions, checked with hypothesis.

- the checker agrees with the CEL library: for random expressions over the
  attributes (well-typed or not), a condition `compile_expression` accepts never
  fails in the library for a type reason or yields a non-bool, whatever the
  attributes; the attributes it says a condition reads are the ones the library
  finds; and the parser reads every expression the library parses;
- string literals read by the lexer hold exactly what the library evaluates them to;
- a decision never depends on attributes no applicable rule reads;
- deny is monotone: adding a deny rule anywhere never turns a denied request into
  an allowed one;
- the cache is transparent: the same requests decide the same with it on or off;
- a shadow candidate never changes the enforced decision.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cel
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Attributes, KnownNames, compile_policies, parse_policies
from policies.attributes import ATTRIBUTE_NAMES, SPECS
from policies.expression import Expression, ExpressionError, compile_expression, probe_contexts
from policies.lexer import tokenize
from policies.syntax import parse
from tests.examples import examples

HEADERS = ("x-team",)
CONTEXTS = probe_contexts(HEADERS)
CHAINS = {
    "org": ("root", "org"),
    "team-a": ("root", "org", "team-a"),
    "team-b": ("root", "org", "team-b"),
    "other": ("root", "other"),
}
KNOWN = KnownNames.of(CHAINS, ["d1", "d2", "d3"], ["tight"])
TENANTS = sorted(KNOWN.chains)
SETTINGS = settings(max_examples=examples(300), deadline=None)
#: Each example of a decision property compiles a rule set (a few ms).
DECISIONS = settings(max_examples=examples(150), deadline=None)

# -- attribute values ----------------------------------------------------------------

words = st.sampled_from(["", "a", "gpt-4o", "shell_run", "search", "10.0.0.1", "admin", "ü"])
PROMPT_TOKENS = st.integers(0, 300_000)
MAX_TOKENS = st.integers(0, 20_000)
HOURS = st.integers(0, 23)
WEEKDAYS = st.integers(0, 6)


@st.composite
def attributes(
    draw: st.DrawFn,
    tenant: str | None = None,
    text: st.SearchStrategy[str] = words,
    prompt_tokens: st.SearchStrategy[int] = PROMPT_TOKENS,
    max_tokens: st.SearchStrategy[int] = MAX_TOKENS,
    hour: st.SearchStrategy[int] = HOURS,
    weekday: st.SearchStrategy[int] = WEEKDAYS,
    max_tools: int = 4,
) -> Attributes:
    """A request's attributes (of `tenant`, else any); the strategies of the text and
    number attributes can be narrowed, e.g. to the values rules compare with."""
    chosen = tenant if tenant is not None else draw(st.sampled_from(TENANTS))
    return Attributes(
        tenant=chosen,
        tenants=KNOWN.chains[chosen],
        key=draw(text),
        roles=tuple(draw(st.lists(st.sampled_from(["user", "tools", "admin"]), max_size=3))),
        model=draw(text),
        endpoint=draw(st.sampled_from(["chat", "responses", "embeddings"])),
        prompt_tokens=draw(prompt_tokens),
        max_tokens=draw(max_tokens),
        stream=draw(st.booleans()),
        tools=tuple(draw(st.lists(text, max_size=max_tools))),
        tool_results=draw(st.booleans()),
        headers={"x-team": draw(text)},
        hour=draw(hour),
        weekday=draw(weekday),
        client_ip=draw(text),
        server=draw(text),
        tool=draw(text),
        argument_names=tuple(draw(st.lists(text, max_size=3))),
        annotations=tuple(
            draw(st.lists(st.sampled_from(["readOnlyHint", "destructiveHint"]), max_size=2))
        ),
    )


def bound(attrs: Attributes) -> dict[str, Any]:
    """Every attribute, as the library takes them."""
    values = {name: getattr(attrs, name) for name in ATTRIBUTE_NAMES}
    values["headers"] = dict(attrs.headers)
    return values


# -- random expressions --------------------------------------------------------------

LEAVES = {
    "bool": ["stream", "tool_results", "true", "false"],
    "int": ["prompt_tokens", "max_tokens", "hour", "weekday", "0", "7", "1000", "-3"],
    "string": ["model", "endpoint", "key", "tenant", "client_ip", "'gpt'", "headers['x-team']"],
    "list": ["tools", "roles", "tenants", "['a', 'b']"],
    "other": ["1u", "2.5", "null", "b'x'", "headers", "[1, 2]"],
}
KINDS = list(LEAVES)


@st.composite
def expressions(draw: st.DrawFn, kind: str = "bool", depth: int = 3) -> str:
    """A random CEL expression of type `kind` over the attributes; one operand in
    eight is of a random type instead, so a good share is ill-typed."""
    if draw(st.integers(0, 7)) == 0:
        kind = draw(st.sampled_from(KINDS))
    if depth == 0 or kind == "other" or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(LEAVES[kind]))
    forms = {"bool": _booleans, "int": _integers, "string": _strings, "list": _lists}[kind]
    return draw(forms(depth - 1))


@st.composite
def _booleans(draw: st.DrawFn, depth: int) -> str:
    def sub(kind: str) -> str:
        return draw(expressions(kind, depth))

    form = draw(st.integers(0, 8))
    if form == 0:
        return f"!({sub('bool')})"
    if form == 1:
        return f"({sub('bool')}) {draw(st.sampled_from(['&&', '||']))} ({sub('bool')})"
    if form == 2:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"({sub('int')}) {op} ({sub('int')})"
    if form == 3:
        return f"({sub('string')}) {draw(st.sampled_from(['==', '!=']))} ({sub('string')})"
    if form == 4:
        method = draw(st.sampled_from(["startsWith", "endsWith", "contains", "matches"]))
        argument = draw(st.sampled_from(["'a'", "'^g'"]))
        return f"({sub('string')}).{method}({argument})"
    if form == 5:
        return f"({sub('string')}) in ({sub('list')})"
    if form == 6:
        macro = draw(st.sampled_from(["exists", "all", "exists_one"]))
        body = draw(st.sampled_from(["v == 'a'", "v.startsWith('s')", "size(v) > 1", "v"]))
        return f"({sub('list')}).{macro}(v, {body})"
    if form == 7:
        return f"size({sub('list')}) > ({sub('int')})"
    return f"({sub('bool')}) ? ({sub('bool')}) : ({sub('bool')})"


@st.composite
def _integers(draw: st.DrawFn, depth: int) -> str:
    def sub(kind: str) -> str:
        return draw(expressions(kind, depth))

    form = draw(st.integers(0, 4))
    if form == 0:
        return f"({sub('int')}) {draw(st.sampled_from(['+', '-', '*']))} ({sub('int')})"
    if form == 1:
        divisor = draw(st.sampled_from(["3", "7"]))
        return f"({sub('int')}) {draw(st.sampled_from(['/', '%']))} {divisor}"
    if form == 2:
        return f"size({sub(draw(st.sampled_from(['list', 'string'])))})"
    if form == 3:
        return f"int({sub(draw(st.sampled_from(['int', 'string'])))})"
    return f"({sub('bool')}) ? ({sub('int')}) : ({sub('int')})"


@st.composite
def _strings(draw: st.DrawFn, depth: int) -> str:
    def sub(kind: str) -> str:
        return draw(expressions(kind, depth))

    form = draw(st.integers(0, 3))
    if form == 0:
        return f"({sub('string')}) + ({sub('string')})"
    if form == 1:
        return f"string({sub('int')})"
    if form == 2:
        return f"({sub('list')})[{sub('int')}]"
    return f"({sub('bool')}) ? ({sub('string')}) : ({sub('string')})"


@st.composite
def _lists(draw: st.DrawFn, depth: int) -> str:
    def sub(kind: str) -> str:
        return draw(expressions(kind, depth))

    form = draw(st.integers(0, 2))
    if form == 0:
        return f"({sub('list')}) + ({sub('list')})"
    if form == 1:
        condition = draw(st.sampled_from(["v == 'admin'", "size(v) > 3"]))
        return f"roles.filter(v, {condition})"
    return f"[{sub('string')}, {sub('string')}]"


def _type_failure(exc: object) -> bool:
    """Is `exc` not a value-dependent error (a type mismatch, or not even an error)?"""
    if not isinstance(exc, Exception):
        return True
    return isinstance(exc, TypeError) or (
        isinstance(exc, RuntimeError) and str(exc).startswith("Undefined variable or function")
    )


@SETTINGS
@given(expressions(), st.lists(attributes(), min_size=1, max_size=4))
def test_an_accepted_condition_never_fails_for_a_type_reason(
    source: str, requests: list[Attributes]
) -> None:
    try:
        expression = compile_expression(source, HEADERS, CONTEXTS)
    except ExpressionError:
        return
    for request in requests:
        outcome = _evaluate(expression, request)
        assert isinstance(outcome, bool) or not _type_failure(outcome), (source, outcome)


def _evaluate(expression: Expression, request: Attributes) -> object:
    """The result, or the exception the library raised (its `matches` functions bound)."""
    try:
        return expression.program.execute(expression.context(bound(request)))
    except Exception as exc:
        return exc


@SETTINGS
@given(expressions())
def test_the_parser_reads_what_the_library_parses_and_reads_what_it_reads(source: str) -> None:
    program = cel.compile(source)  # every generated expression is valid syntax
    tree = parse(source)
    assert tree is not None
    try:
        expression = compile_expression(source, HEADERS, CONTEXTS)
    except ExpressionError:
        return
    found = {name for name in program.variables() if name in SPECS}
    assert set(expression.reads) == found


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def _literal(value: str, quote: str) -> str:
    escaped = []
    for char in value:
        if char in ("\\", quote):
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif ord(char) < 32 or ord(char) == 127:
            escaped.append(f"\\x{ord(char):02x}")
        elif ord(char) > 0xFFFF:
            escaped.append(f"\\U{ord(char):08x}")
        elif ord(char) > 127 and ord(char) % 2 == 0:  # both spellings get exercised
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return quote + "".join(escaped) + quote


@SETTINGS
@given(text, st.sampled_from(["'", '"']))
def test_string_literals_read_as_the_library_evaluates_them(value: str, quote: str) -> None:
    literal = _literal(value, quote)
    (token, end) = tokenize(literal)
    assert end.kind == "end"
    assert token.value == value
    assert cel.compile(literal).execute({}) == value


# -- decisions -----------------------------------------------------------------------

CONDITIONS = [
    "stream",
    "stream && max_tokens > 1000",
    "prompt_tokens > 100000",
    "model.startsWith('gpt')",
    "'shell_run' in tools",
    "tools.exists(t, t.startsWith('s'))",
    "'admin' in roles",
    "hour < 6 || hour >= 22",
    "weekday >= 5",
    "headers['x-team'] == 'search'",
    "endpoint == 'embeddings' && !tool_results",
    "key == '' || client_ip == ''",
    "'org' in tenants",
    "true",
    "size(tools) > 2 && max_tokens > 10",
]
EFFECTS = ["deny", "flag", "route-pin", "route-exclude", "limit_class"]


@st.composite
def rules(draw: st.DrawFn, max_size: int = 8) -> list[dict[str, Any]]:
    count = draw(st.integers(0, max_size))
    return [draw(one_rule(f"r{i}")) for i in range(count)]


@st.composite
def one_rule(draw: st.DrawFn, rule_id: str, effect: str | None = None) -> dict[str, Any]:
    chosen = effect or draw(st.sampled_from(EFFECTS))
    entry: dict[str, Any] = {
        "id": rule_id,
        "tenant": draw(st.sampled_from(TENANTS)),
        "when": draw(st.sampled_from(CONDITIONS)),
        "on_error": draw(st.sampled_from(["deny", "ignore"])),
    }
    if chosen == "deny":
        entry.update(effect="deny", message="no")
    elif chosen == "flag":
        entry.update(effect="flag", flag=draw(st.sampled_from(["f1", "f2"])))
    elif chosen == "limit_class":
        entry.update(effect="limit_class", limit_class="tight")
    else:
        kind = "pin" if chosen == "route-pin" else "exclude"
        deployments = draw(st.lists(st.sampled_from(["d1", "d2", "d3"]), min_size=1, unique=True))
        entry.update(effect="route", route={kind: deployments})
    return entry


def compiled(rule_list: list[dict[str, Any]], cache_entries: int = 0) -> Any:
    data = {"rules": rule_list, "headers": list(HEADERS), "cache": {"max_entries": cache_entries}}
    return compile_policies(parse_policies(data), KNOWN)


@DECISIONS
@given(rules(), attributes(), st.data())
def test_a_decision_never_depends_on_attributes_no_applicable_rule_reads(
    rule_list: list[dict[str, Any]], request: Attributes, data: st.DataObject
) -> None:
    policies = compiled(rule_list)
    read = {name for rule in policies.rules_for(request.tenant) for name in rule.reads}
    other = data.draw(attributes(request.tenant))
    changed = replace(
        request,
        **{name: getattr(other, name) for name in ATTRIBUTE_NAMES if name not in read | {"tenant"}},
    )
    assert policies.decide(changed, "k") == policies.decide(request, "k")


@DECISIONS
@given(rules(), attributes(), st.data())
def test_adding_a_deny_rule_anywhere_never_allows_a_denied_request(
    rule_list: list[dict[str, Any]], request: Attributes, data: st.DataObject
) -> None:
    if data.draw(st.booleans()):  # half the time, make sure the request starts denied
        always = {"id": "always", "when": "true", "effect": "deny", "message": "no"}
        always["tenant"] = data.draw(st.sampled_from(request.tenants))
        rule_list = [*rule_list, always]
    before = compiled(rule_list).decide(request, "k")
    added = data.draw(one_rule("added", "deny"))
    position = data.draw(st.integers(0, len(rule_list)))
    after = compiled([*rule_list[:position], added, *rule_list[position:]]).decide(request, "k")
    if before.deny is not None:
        assert after.deny is not None
    assert set(before.matched) <= set(after.matched)


@DECISIONS
@given(rules(), st.lists(attributes(), min_size=1, max_size=5), st.data())
def test_the_cache_never_changes_a_decision(
    rule_list: list[dict[str, Any]], pool: list[Attributes], data: st.DataObject
) -> None:
    uncached, cached = compiled(rule_list), compiled(rule_list, cache_entries=64)
    sequence = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=12))
    for request in sequence:
        assert cached.decide(request, "k") == uncached.decide(request, "k")


@DECISIONS
@given(rules(), rules(), attributes())
def test_a_shadow_candidate_never_changes_the_enforced_decision(
    active: list[dict[str, Any]], candidate: list[dict[str, Any]], request: Attributes
) -> None:
    shadowed = compile_policies(
        parse_policies(
            {
                "rules": active,
                "headers": list(HEADERS),
                "candidate": {"mode": "shadow", "version": "candidate", "rules": candidate},
            }
        ),
        KNOWN,
    )
    decision = shadowed.decide(request, "k")
    assert decision.shadow is not None and decision.shadow.version == "candidate"
    assert replace(decision, shadow=None) == compiled(active).decide(request, "k")
