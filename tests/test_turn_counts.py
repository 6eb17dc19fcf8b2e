"""Earlier turns' token counts, remembered per caller (routing/turn_counts.py).

Exact: a prompt counted with the caller's remembered counts is the count without
them, turn after turn, in either encoding. Bounded: per caller and in callers, least
recently used forgotten first. Walled: one caller's counts never answer another's,
and a caller flooding its own pushes out none of another's. Through the gateway: a
conversation's token reservation is the exact count on every turn, and each turn
counts only what it added.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import routing.turn_counts as turn_counts
from gateway.stages.guards import count_prompt
from routing.tokens import count_text, get_encoding
from routing.turn_counts import CallerCounts, TurnCounts
from tests.examples import examples
from tests.isolation import ATTACKER, VICTIM, call, two_tenants
from tests.support import mock_group, running_gateway

PATH = "/v1/chat/completions"
#: One model of each encoding: o200k_base and cl100k_base.
MODELS = ("gpt-4o-mini", "gpt-4")

texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["<|endoftext|>", "hello " * 20, "", '{"a": 1}'])


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": draw(st.sampled_from(["system", "user", "assistant", "tool"])),
        "content": draw(texts | st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                 "text": texts}), max_size=2)),
    }  # fmt: skip
    if draw(st.booleans()):
        message["name"] = draw(texts)
    if draw(st.booleans()):
        message["tool_calls"] = [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": draw(texts)}}
        ]
    return message


@pytest.fixture(autouse=True, scope="module")
def encodings() -> None:
    for name in ("o200k_base", "cl100k_base"):
        get_encoding(name)


tools = st.lists(
    st.builds(
        lambda name, description: {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": {}},
        },
        texts,
        texts,
    ),
    max_size=3,
)


@given(
    st.lists(messages(), min_size=1, max_size=8),
    st.lists(st.sampled_from(MODELS), min_size=1),
    st.lists(tools, min_size=1, max_size=3),
    st.sampled_from(["tools", "functions"]),
)
@settings(max_examples=examples(100), deadline=None)
def test_remembered_counts_are_the_exact_counts_turn_after_turn(
    conversation: list[dict[str, Any]],
    models: list[str],
    offered: list[list[dict[str, Any]]],
    field: str,
) -> None:
    """Every turn (a growing prefix of the conversation), in every model's encoding,
    with tool definitions (the same on consecutive turns, or changed; or none), with
    one caller's counts shared across them all: the count without memory."""
    remembered = CallerCounts(limit=4)  # small: forgetting is exercised too
    for model in models:
        for turn in range(1, len(conversation) + 1):
            body: dict[str, Any] = {"messages": conversation[:turn]}
            definitions = offered[turn % len(offered)]
            if definitions:
                body[field] = definitions
            assert count_prompt(body, model, remembered) == count_prompt(body, model)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9)), max_size=60))
@settings(max_examples=examples(200), deadline=None)
def test_counts_are_bounded_least_recently_used_first(steps: list[tuple[int, int]]) -> None:
    """`TurnCounts` against a model: per caller an ordered list of texts, callers in
    the order last seen; a text is remembered exactly when the model holds it."""
    turns = TurnCounts(max_callers=3, max_counts=4)
    encoding = get_encoding("o200k_base")
    model: dict[int, list[str]] = {}
    misses = 0

    def counting(text: str, enc: Any) -> int:
        nonlocal misses
        misses += 1
        return count_text(text, enc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(turn_counts, "count_text", counting)
        for caller, word in steps:
            text = f"text {word}"
            held = model.pop(caller, [])
            model[caller] = held
            if len(model) > 3:
                del model[next(iter(model))]
            before = misses
            assert turns.of(caller).count(text, encoding) == count_text(text, encoding)
            assert misses - before == (0 if text in held else 1)
            if text in held:
                held.remove(text)
            held.append(text)
            del held[:-4]
            assert len(turns) == len(model) <= 3
            assert all(len(turns.of(c)) <= 4 for c in list(model)[-1:])


@pytest.fixture
def misses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts counted because no remembered count answered them."""
    counted: list[str] = []

    def counting(text: str, encoding: Any) -> int:
        counted.append(text)
        return count_text(text, encoding)

    monkeypatch.setattr(turn_counts, "count_text", counting)
    return counted


HISTORY = [
    {"role": "system", "content": "You are the victim's careful assistant. " * 20},
    {"role": "user", "content": "The launch code is 0000; summarise the plan."},
    {"role": "assistant", "content": "The plan has three parts."},
    {"role": "user", "content": "Go on."},
]


def test_a_caller_never_reads_or_evicts_another_callers_counts(misses: list[str]) -> None:
    """The attacker sends the victim's very history: nothing the victim counted
    answers it (its timing would say the victim sent that text). Then it floods its
    own counts far past their bound: the victim's are all still remembered."""
    turns = TurnCounts()
    victim, attacker = object(), object()
    body = {"messages": HISTORY}
    count_prompt(body, "gpt-4o-mini", turns.of(victim))
    assert len(misses) == 3  # the three messages before the last
    misses.clear()
    count_prompt(body, "gpt-4o-mini", turns.of(attacker))
    assert len(misses) == 3, "the victim's counts answered the attacker"
    for n in range(3 * turn_counts.MAX_COUNTS):
        flood = {"messages": [{"role": "user", "content": f"flood {n}"}, HISTORY[-1]]}
        count_prompt(flood, "gpt-4o-mini", turns.of(attacker))
    assert len(turns.of(attacker)) == turn_counts.MAX_COUNTS
    misses.clear()
    count_prompt(body, "gpt-4o-mini", turns.of(victim))
    assert misses == []


def test_a_sibling_tenant_with_every_role_gets_no_count_the_victim_made(
    misses: list[str],
) -> None:
    """Through the gateway, with a tokens limit on both tenants (so every prompt is
    counted): the victim sends its conversation, then an attacker of the sibling
    tenant holding every role sends the very same one. Nothing the victim counted
    answers the attacker (a faster answer would tell it the victim sent that text),
    and the victim's counts still answer the victim. The same for its tool
    definitions."""
    limits = {"limits": {"tokens_per_minute": 10**9}}
    config = two_tenants(tenant_extra={VICTIM: limits, ATTACKER: limits})
    body = {"model": "chat", "messages": HISTORY, "tools": AGENT_TOOLS}
    with running_gateway(config) as gateway:
        assert call(gateway.url, f"{VICTIM}-user", "POST", PATH, json=body).status_code == 200
        assert len(misses) == 4  # the victim's three messages before the last, its tools
        misses.clear()
        assert call(gateway.url, f"{ATTACKER}-all", "POST", PATH, json=body).status_code == 200
        assert len(misses) == 4, "the victim's counts answered the attacker"
        misses.clear()
        assert call(gateway.url, f"{VICTIM}-user", "POST", PATH, json=body).status_code == 200
        assert misses == []


def test_callers_are_bounded_and_the_least_recently_seen_forgotten() -> None:
    turns = TurnCounts(max_callers=4)
    first = turns.of("first")
    for n in range(10):
        turns.of(n)
        assert turns.of("first") is first  # seen on every turn: never the one forgotten
    assert len(turns) == 4
    assert 0 not in {c for c in turns._callers}


#: A tenant whose tokens-per-minute limit (5) refuses every prompt as too large, naming
#: the tokens it needed; its key `agent`.
TIGHT_TPM: dict[str, Any] = {
    "models": [mock_group("demo")],
    "tenants": [{"id": "team", "limits": {"tokens_per_minute": 5}}],
    "keys": [{"id": "agent", "key_sha256": hashlib.sha256(b"agent").hexdigest(), "tenant": "team"}],
}


def test_through_the_gateway_each_turn_reserves_the_exact_count_and_counts_only_what_it_added(
    misses: list[str],
) -> None:
    """A tokens-per-minute limit of 5 refuses every turn as too large, naming the
    tokens it needed: the prompt's exact count plus `max_tokens` (a refusal reserves
    nothing, so every turn is measured alone). From the second turn on, only the
    messages the turn added are counted (its last one always)."""
    config = TIGHT_TPM
    model = config["models"][0]["deployments"][0]["model"]
    conversation = list(HISTORY[:2])
    with running_gateway(config) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="agent", max_retries=0)
        for turn in range(5):
            misses.clear()
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(
                    model="demo",
                    messages=conversation,  # type: ignore[arg-type]
                    max_tokens=16,
                )
            needed = re.search(r"it needs (\d+) tokens", refused.value.message)
            assert needed is not None, refused.value.message
            costs, fixed = count_prompt({"messages": conversation}, model)
            assert int(needed.group(1)) == fixed + sum(costs) + 16
            # Counted anew: the first turn's system message; later, the user message
            # and the answer the previous turn added before this turn's last message.
            assert len(misses) == (1 if turn == 0 else 2), misses
            conversation += [
                {"role": "assistant", "content": f"Answer {turn}."},
                {"role": "user", "content": f"Question {turn + 1}?"},
            ]


AGENT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Looks record {i} up and says what it found. " * 3,
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    for i in range(10)
]


def test_through_the_gateway_an_agents_tool_definitions_are_counted_once(
    misses: list[str],
) -> None:
    """An agent sends the same tool definitions every turn: they are counted on the
    first, and remembered after, even for a prompt of one message; the reservation is
    still the exact count (a TPM limit of 5 refuses each turn as too large, naming
    what it needed)."""
    config = TIGHT_TPM
    model = config["models"][0]["deployments"][0]["model"]
    with running_gateway(config) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="agent", max_retries=0)
        for turn in range(3):
            misses.clear()
            question = [{"role": "user", "content": f"Question {turn}?"}]
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(
                    model="demo",
                    messages=question,  # type: ignore[arg-type]
                    tools=AGENT_TOOLS,  # type: ignore[arg-type]
                    max_tokens=16,
                )
            needed = re.search(r"it needs (\d+) tokens", refused.value.message)
            assert needed is not None, refused.value.message
            costs, fixed = count_prompt({"messages": question, "tools": AGENT_TOOLS}, model)
            assert int(needed.group(1)) == fixed + sum(costs) + 16
            tool_texts = [text for text in misses if '"tool_0"' in text]
            assert len(tool_texts) == (1 if turn == 0 else 0), misses
