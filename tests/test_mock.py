"""The mock LLM: deterministic, schema-satisfying, and faithful to its settings."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.config import MockSettings
from routing.mock.errors import MockError
from routing.mock.llm import MockLLM
from routing.mock.schema_example import example_for, example_json
from tests.examples import examples
from tests.support import ServerThread, one_deployment, running_gateway


def test_same_request_same_answer() -> None:
    llm = MockLLM("mock-gpt", MockSettings())
    body = {"model": "x", "messages": [{"role": "user", "content": "repeat me"}]}
    first, second = llm.chat(body), llm.chat(body)
    first.pop("created"), second.pop("created")
    assert first == second


def test_embeddings_are_deterministic_unit_vectors() -> None:
    llm = MockLLM("mock-gpt", MockSettings(embedding_dim=16))
    a = llm.embeddings({"input": "same"})["data"][0]["embedding"]
    b = llm.embeddings({"input": ["same", "other"]})["data"]
    assert a == b[0]["embedding"] and a != b[1]["embedding"]
    assert abs(sum(x * x for x in a) - 1) < 1e-9


SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"q": {"type": "string", "minLength": 20, "maxLength": 25}},
        "required": ["q"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 10, "maximum": 12},
            "x": {"type": "number", "exclusiveMinimum": 5, "multipleOf": 0.5},
        },
    },
    {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "enum": ["a", "b"]},
                "minItems": 3,
                "maxItems": 3,
            }
        },
        "required": ["tags"],
    },
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
        },
    },
    {
        "type": "object",
        "$defs": {
            "pt": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            }
        },
        "properties": {"path": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 2}},
        "required": ["path"],
    },
    {
        "type": "object",
        "properties": {
            "v": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            "c": {"const": 42},
            "opt": {"type": ["null", "string"]},
        },
    },
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]},
        ]
    },
    {
        "type": "object",
        "properties": {
            "nested": {
                "type": "object",
                "properties": {
                    "deep": {
                        "type": "object",
                        "properties": {"leaf": {"type": "boolean"}},
                        "required": ["leaf"],
                    }
                },
                "required": ["deep"],
            }
        },
        "required": ["nested"],
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_examples_satisfy_their_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        example_for(schema)
    )
    # The cached JSON text the mock sends is the same example, every time.
    assert orjson.loads(example_json(schema)) == example_for(schema)
    assert example_json(schema) == example_json(orjson.loads(orjson.dumps(schema)))


scalar_schemas = st.one_of(
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-(10**6), 10**6),
        st.integers(0, 100),
    ),
    st.builds(
        lambda lo, span: {"type": "number", "minimum": lo, "maximum": lo + span},
        st.floats(-1e6, 1e6),
        st.floats(0, 100),
    ),
    st.builds(
        lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    st.builds(
        lambda values: {"enum": values}, st.lists(st.text(max_size=5), min_size=1, max_size=4)
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
)
object_schemas = st.recursive(
    scalar_schemas,
    lambda children: st.one_of(
        st.builds(
            lambda props: {
                "type": "object",
                "properties": props,
                "required": sorted(props),
                "additionalProperties": False,
            },
            st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4),
        ),
        st.builds(
            lambda item, lo: {"type": "array", "items": item, "minItems": lo},
            children,
            st.integers(0, 3),
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(object_schemas)
def test_generated_examples_validate(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(example_for(schema))


def ask_mock(**deployment: Any) -> httpx.Response:
    config = one_deployment("g", id="mock-under-test", provider="mock", model="m", **deployment)
    with running_gateway(config) as gateway:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "g", "messages": [{"role": "user", "content": "x"}]},
        )


def test_error_rate_surfaces_as_503_naming_the_deployment() -> None:
    response = ask_mock(mock={"error_rate": 1.0})
    assert response.status_code == 503
    assert "'mock-under-test'" in response.json()["error"]["message"]


def test_mock_latency_beyond_timeout_is_504() -> None:
    response = ask_mock(mock={"latency_ms": 5000}, timeouts={"total_ms": 100})
    assert response.status_code == 504


def test_mock_upstream_app_over_http(mock_upstream: ServerThread) -> None:
    client = openai.OpenAI(base_url=mock_upstream.url + "/v1", api_key="x", max_retries=0)
    assert client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}]
    ).usage
    assert client.embeddings.create(model="m", input="q").data[0].embedding
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])


# -- the reply, decided from the request alone ------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OUTPUT_TOOL = {
    "type": "function",
    "function": {
        "name": "final_result_Forecast",
        "parameters": {
            "type": "object",
            "properties": {"celsius": {"type": "number", "minimum": 30}},
            "required": ["celsius"],
        },
    },
}


def chat(**body: Any) -> dict[str, Any]:
    llm = MockLLM("mock-gpt", MockSettings())
    return llm.chat({"model": "m", "messages": [{"role": "user", "content": "q"}], **body})


def answered(*results: str) -> list[dict[str, Any]]:
    calls = [
        {"id": f"c{k}", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        for k in range(len(results))
    ]
    return [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": f"c{k}", "content": r} for k, r in enumerate(results)),
    ]


def test_the_output_tool_waits_for_the_other_tools_results() -> None:
    tools = [OUTPUT_TOOL, WEATHER_TOOL]
    first = chat(tools=tools)["choices"][0]["message"]["tool_calls"][0]
    assert first["function"]["name"] == "get_weather"
    last = chat(tools=tools, messages=answered("4"))["choices"][0]["message"]["tool_calls"][0]
    assert last["function"]["name"] == "final_result_Forecast"
    assert orjson.loads(last["function"]["arguments"])["celsius"] >= 30


def test_an_output_tool_alone_is_called_at_once() -> None:
    [call] = chat(tools=[OUTPUT_TOOL])["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "final_result_Forecast"


def test_a_later_user_question_starts_a_new_round_of_tool_calls() -> None:
    messages = [*answered("4"), {"role": "assistant", "content": "4"}]
    messages.append({"role": "user", "content": "And tomorrow?"})
    assert chat(tools=[WEATHER_TOOL], messages=messages)["choices"][0]["finish_reason"] == (
        "tool_calls"
    )


def test_summaries_quote_a_bounded_number_of_results() -> None:
    text = chat(tools=[WEATHER_TOOL], messages=answered(*map(str, range(10))))
    content = text["choices"][0]["message"]["content"]
    assert content == "The tools returned: 0; 1; 2; 3; 4; 5; 6; 7; and 2 more"


def test_unanswered_calls_are_named_in_the_refusal() -> None:
    messages = answered("4", "5")[:-1]  # the second call has no result
    with pytest.raises(MockError) as caught:
        chat(messages=messages)
    assert caught.value.status == 400 and caught.value.error["message"].endswith(": c1")


@pytest.mark.parametrize("n", [0, 129, True])
def test_n_outside_openais_range_is_refused(n: Any) -> None:
    with pytest.raises(MockError) as caught:
        chat(n=n)
    assert caught.value.error["param"] == "n"


def test_streamed_choices_interleave_and_each_ends() -> None:
    llm = MockLLM("mock-gpt", MockSettings(stream_chunks=3))
    body = {"messages": [{"role": "user", "content": "q"}], "n": 2}
    chunks = list(llm.chat_chunks(body))
    order = [c["choices"][0]["index"] for c in chunks]
    assert order[:4] == [0, 1, 0, 1]
    texts = [
        "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks
            if c["choices"][0]["index"] == i
        )
        for i in (0, 1)
    ]
    assert texts[0] == texts[1] == llm.chat(body)["choices"][0]["message"]["content"]
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop", "stop"]


def test_max_tokens_cuts_a_structured_answer_like_a_real_model() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    full = chat(response_format=fmt)["choices"][0]
    cut = chat(response_format=fmt, max_tokens=3)["choices"][0]
    assert orjson.loads(full["message"]["content"]) == example_for(schema)
    assert cut["finish_reason"] == "length"
    assert full["message"]["content"].startswith(cut["message"]["content"])


def test_a_schema_in_the_prompt_is_found_past_other_braces() -> None:
    system = (
        'Use {curly} words, e.g. {"not": "a schema"}; return json for '
        + orjson.dumps(
            {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 5}},
                "required": ["n"],
            }
        ).decode()
    )
    content = chat(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "q"}],
        response_format={"type": "json_object"},
    )["choices"][0]["message"]["content"]
    assert orjson.loads(content) == {"n": 5}


def test_allowed_tools_may_list_a_custom_tool() -> None:
    shell = {"type": "custom", "custom": {"name": "shell"}}
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "custom", "custom": {"name": "shell"}}],
        },
    }
    [call] = chat(tools=[WEATHER_TOOL, shell], tool_choice=choice)["choices"][0]["message"][
        "tool_calls"
    ]
    assert call == {"id": call["id"], "type": "custom", "custom": {"name": "shell", "input": "q"}}


async def test_the_first_answer_loads_the_tokenizer_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading an encoding takes 0.3-1 s of CPU: the mock's first answer loads it in a
    worker thread (the loop keeps serving), not at start and not on the loop."""
    import threading

    import tiktoken

    from routing import tokens
    from routing.mock.transport import MockTransport

    name = tokens.encoding_name_for("mock-gpt")
    monkeypatch.delitem(tokens._LOADED, name, raising=False)
    tokens.get_encoding.cache_clear()
    loaded_on: list[threading.Thread] = []
    real = tiktoken.get_encoding

    def recording(encoding_name: str) -> tiktoken.Encoding:
        loaded_on.append(threading.current_thread())
        return real(encoding_name)

    monkeypatch.setattr(tiktoken, "get_encoding", recording)
    transport = MockTransport("mock-gpt", MockSettings())
    assert loaded_on == []  # nothing at start
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
    request = httpx.Request("POST", "http://mock/v1/chat/completions", json=body)
    response = await transport.handle_async_request(request)
    assert response.status_code == 200
    assert len(loaded_on) == 1 and loaded_on[0] is not threading.main_thread()
    assert orjson.loads(await response.aread())["usage"]["prompt_tokens"] > 0
