"""The official openai SDK, sync and async, against a running gateway over loopback."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.support import ServerThread

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "forecast_lookup",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def client(default_gateway: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(default_gateway: ServerThread) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=default_gateway.url + "/v1", api_key="unused", max_retries=0)


def test_chat_completion_text(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert response.object == "chat.completion"
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "This is a mock reply from mock-gpt to: Say hello"
    assert response.usage is not None
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.usage.prompt_tokens > 3


def test_route_headers_name_the_deployment(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "hi"}]
    )
    deployment = raw.headers["x-seawall-deployment"]
    assert deployment in {"mock-fast", "mock-slow"}
    assert raw.headers["x-seawall-route"] == f"demo/{deployment}"


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "This is a mock reply from mock-gpt to: Stream please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    assert chunks >= 10  # role chunk + 8 content chunks + finish + usage


def test_max_tokens_cuts_with_finish_length(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Say a lot"}], max_tokens=3
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 3


def test_tool_call_arguments_satisfy_the_schema(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "forecast_lookup"
    arguments = json.loads(calls[0].function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])


def test_streamed_tool_call_assembles_to_valid_arguments(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, arguments, finish = None, "", None
    for chunk in stream:
        delta = chunk.choices[0].delta
        for call in delta.tool_calls or []:
            name = call.function.name or name if call.function else name
            arguments += (call.function.arguments or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "forecast_lookup"
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])


def test_tool_result_turn_gets_a_text_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="demo",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "forecast_lookup",
                            "arguments": '{"city":"Oslo","unit":"celsius"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 4}'},
        ],
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content == 'The tool returned: {"temp": 4}'


def test_embeddings_default_base64_and_float(client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model="demo", input=["alpha", "beta"])
    assert [d.index for d in result.data] == [0, 1]
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 256 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-4
    assert vectors[0] != vectors[1]
    as_float = client.embeddings.create(model="demo", input="alpha", encoding_format="float")
    assert as_float.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    sized = client.embeddings.create(model="demo", input="alpha", dimensions=8)
    assert len(sized.data[0].embedding) == 8


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["demo"]
    assert client.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("missing")


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "gpt-nope" in info.value.message


def test_wrong_field_type_names_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "x"}],
            temperature="hot",  # type: ignore[arg-type]
        )
    assert info.value.param == "temperature"
    assert info.value.code == "invalid_type"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 7, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "demo"}, "messages"),
        ({"model": "demo", "messages": []}, "messages"),
        ({"model": "demo", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "demo", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "demo", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
        ),
        ({"model": "demo", "messages": [{"role": "user", "content": "x"}], "n": True}, "n"),
        (
            {
                "model": "demo",
                "messages": [{"role": "user", "content": "x"}],
                "stream_options": {"include_usage": "yes"},
            },
            "stream_options.include_usage",
        ),
        (
            {"model": "demo", "messages": [{"role": "user", "content": [1]}]},
            "messages[0].content[0]",
        ),
        (
            {"model": "demo", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"model": "demo", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"model": "demo", "messages": [{"role": "user", "content": "x", "name": 5}]},
            "messages[0].name",
        ),
        (
            {"model": "demo", "messages": [{"role": "tool", "content": "x", "tool_call_id": [1]}]},
            "messages[0].tool_call_id",
        ),
        (
            {
                "model": "demo",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function"}],
            },
            "tools[0]",
        ),
    ],
)
def test_bad_chat_fields_are_400_naming_the_field(
    default_gateway: ServerThread, body: dict[str, object], param: str
) -> None:
    response = httpx.post(default_gateway.url + "/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"", b"[1,2]", b'"text"', b"\xff\xfe", b"[" * 5000 + b"]" * 5000],
)
def test_malformed_json_is_400_envelope(default_gateway: ServerThread, payload: bytes) -> None:
    response = httpx.post(
        default_gateway.url + "/v1/chat/completions",
        content=payload,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_json"


def test_oversized_body_is_413(default_gateway: ServerThread) -> None:
    big = (
        b'{"model":"demo","messages":[{"role":"user","content":"'
        + b"a" * (9 * 1024 * 1024)
        + b'"}]}'
    )
    response = httpx.post(default_gateway.url + "/v1/chat/completions", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_oversized_chunked_body_is_413(default_gateway: ServerThread) -> None:
    def chunks():  # no content-length: the limit must hold while reading
        yield b'{"model":"demo","messages":[{"role":"user","content":"'
        for _ in range(9):
            yield b"a" * (1024 * 1024)
        yield b'"}]}'

    response = httpx.post(default_gateway.url + "/v1/chat/completions", content=chunks())
    assert response.status_code == 413


def test_unknown_path_and_method_are_enveloped(default_gateway: ServerThread) -> None:
    missing = httpx.get(default_gateway.url + "/v2/nothing")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong = httpx.get(default_gateway.url + "/v1/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_health_and_readiness(default_gateway: ServerThread) -> None:
    assert httpx.get(default_gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(default_gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_async_client_chat_stream_and_embeddings(aclient: openai.AsyncOpenAI) -> None:
    response = await aclient.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "async hello"}]
    )
    assert (
        response.choices[0].message.content == "This is a mock reply from mock-gpt to: async hello"
    )
    stream = await aclient.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "async stream"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "This is a mock reply from mock-gpt to: async stream"
    embedding = await aclient.embeddings.create(model="demo", input="x")
    assert len(embedding.data[0].embedding) == 256
    with pytest.raises(openai.NotFoundError):
        await aclient.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
