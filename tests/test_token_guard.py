"""The prompt guard's cheap byte bound never undercounts (`gateway.stages.guards`,
`routing.tokens`)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.stages.guards import count_prompt
from routing.tokens import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    content_text,
    count_messages,
    count_text,
    count_tools,
    encoding_for,
    encoding_name_for,
    get_encoding,
    message_tokens,
)
from tests.examples import examples

MODELS = ["gpt-4o-mini", "mock-gpt"]

# Text that tokenizes badly: CJK, emoji (with ZWJ sequences and variation
# selectors), special-token look-alikes, whitespace runs, plus any other character.
texts = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=12),
        st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=12),
        st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=6),
        st.sampled_from(
            ["<|endoftext|>", "<|im_start|>", "👩‍👩‍👧", "🇳🇴", "☀️", "\n\n", "   ", "\\u0000", '"'],
        ),
    ),
    max_size=5,
).map("".join)
names = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True) | texts
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
parts = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
        st.fixed_dictionaries(
            {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": texts})}
        ),
    ),
    max_size=3,
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": texts,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": names, "arguments": texts}),
        }
    ),
    min_size=1,
    max_size=3,
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
        "content": st.none() | texts | parts,
    },
    optional={"name": names, "tool_calls": tool_calls, "tool_call_id": texts},
)
tools = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": names},
                optional={
                    "description": texts,
                    "parameters": st.dictionaries(texts, json_values, max_size=3),
                },
            ),
        }
    ),
    min_size=1,
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": st.lists(messages, min_size=1, max_size=5)},
    optional={"tools": tools},
)


def serializations(body: dict[str, Any]) -> list[bytes]:
    return [
        orjson.dumps(body),
        json.dumps(body, ensure_ascii=True).encode(),
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
    ]


def guard_bound(raw: bytes, body: dict[str, Any]) -> int:
    """PromptGuard.__call__'s cheap bound, computed the same way."""
    return len(raw) + (TOKENS_PER_MESSAGE + 1) * len(body["messages"]) + REPLY_PRIMING_TOKENS


@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=examples(200), deadline=None)
@given(body=bodies)
def test_byte_bound_is_an_upper_bound_of_the_exact_count(model: str, body: dict[str, Any]) -> None:
    costs, fixed = count_prompt(body, model)
    assert len(costs) == len(body["messages"])
    for raw in serializations(body):
        assert orjson.loads(raw) == body
        assert fixed + sum(costs) <= guard_bound(raw, body)


@pytest.mark.parametrize("model", MODELS)
def test_bound_holds_for_a_worst_case_message(model: str) -> None:
    # One-byte tokens everywhere, short keys, a name: the tightest realistic body.
    body = {"messages": [{"role": "user", "name": "n", "content": "a"}], "model": "m"}
    costs, fixed = count_prompt(body, model)
    assert fixed + sum(costs) <= guard_bound(orjson.dumps(body), body)


def test_count_prompt_splits_messages_and_fixed_part() -> None:
    body = {
        "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    encoding = encoding_for("gpt-4o-mini")
    costs, fixed = count_prompt(body, "gpt-4o-mini")
    assert costs == [message_tokens(m, encoding) for m in body["messages"]]
    assert fixed == REPLY_PRIMING_TOKENS + count_tools(body["tools"], encoding)
    assert count_prompt({"messages": []}, "x") == ([], REPLY_PRIMING_TOKENS)
    # The legacy `functions` are shown to the model too: counted like `tools`.
    legacy = [{"name": "f", "parameters": {"type": "object"}}]
    _, with_functions = count_prompt({"messages": [], "functions": legacy}, "gpt-4o-mini")
    assert with_functions == REPLY_PRIMING_TOKENS + count_tools(legacy, encoding)


# --- routing.tokens ----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=examples(50), deadline=None)
@given(items=st.lists(messages, max_size=4))
def test_count_messages_is_priming_plus_message_tokens(
    model: str, items: list[dict[str, Any]]
) -> None:
    encoding = encoding_for(model)
    expected = REPLY_PRIMING_TOKENS + sum(message_tokens(m, encoding) for m in items)
    assert count_messages(items, encoding) == expected


def test_message_tokens_adds_up_its_parts() -> None:
    encoding = get_encoding("cl100k_base")
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    message = {"role": "assistant", "name": "bob", "content": "hello there", "tool_calls": calls}
    expected = (
        TOKENS_PER_MESSAGE
        + count_text("hello there", encoding)
        + count_text("assistant", encoding)
        + TOKENS_PER_NAME
        + count_text("bob", encoding)
        + count_text(orjson.dumps(calls).decode(), encoding)
    )
    assert message_tokens(message, encoding) == expected
    assert message_tokens({}, encoding) == TOKENS_PER_MESSAGE
    assert message_tokens({"role": 5, "name": None}, encoding) == TOKENS_PER_MESSAGE


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("GPT-4o-2024-08-06", "o200k_base"),
        ("openai/gpt-4.1-mini", "o200k_base"),
        ("azure/deployments/gpt-5", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("mock-gpt", "cl100k_base"),
        ("anthropic/claude-3-5-sonnet", "cl100k_base"),
        ("gpt-4o/custom-model", "cl100k_base"),
    ],
)
def test_encoding_name_for(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding
    assert encoding_for(model).name == encoding


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_special_token_text_counts_as_plain_text(name: str) -> None:
    encoding = get_encoding(name)
    text = "before <|endoftext|> after <|im_start|>system"
    assert count_text(text, encoding) == len(encoding.encode_ordinary(text))
    assert count_text("<|endoftext|>", encoding) > 1


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (None, ""),
        ("plain", "plain"),
        ([{"type": "text", "text": "a"}, {"type": "image_url"}, "x", {"text": "b"}], "a\nb"),
        ([], ""),
        ({"k": [1, "é"]}, '{"k":[1,"é"]}'),
        (12, "12"),
    ],
)
def test_content_text(content: Any, text: str) -> None:
    assert content_text(content) == text


def test_a_runtime_loads_only_the_tokenizers_its_config_may_count_with() -> None:
    """Mock deployments count usage; a group with a prompt limit or a config with token
    or spend limits counts prompts; anything else never counts: no tokenizer."""
    from gateway.config import load_config, parse_config
    from gateway.runtime import counting_models
    from routing.context_windows import prompt_limits

    def models(data: dict[str, Any]) -> set[str]:
        config = parse_config(data, "test")
        return counting_models(config, prompt_limits(config.models))

    local = {"id": "a", "provider": "openai", "model": "my-local-model"}
    local["api_base"] = "http://127.0.0.1:9/v1"
    assert models({"models": [{"name": "g", "deployments": [local]}]}) == set()
    guarded = {"name": "g", "deployments": [local], "max_prompt_tokens": 1000}
    assert models({"models": [guarded]}) == {"my-local-model"}
    limited = {
        "models": [{"name": "g", "deployments": [local]}],
        "keys": [{"id": "k", "key": "sk-k", "limits": {"tokens_per_minute": 10}}],
    }
    assert models(limited) == {"my-local-model"}
    default = load_config(None)
    mocks = {d.model for g in default.models for d in g.deployments if d.provider == "mock"}
    assert mocks and mocks <= counting_models(default, prompt_limits(default.models))
