"""Deployments served through litellm, end to end over loopback.

The official openai SDK talks to a real gateway, whose `anthropic` deployment is
translated by litellm and sent to a fake of Anthropic's Messages API
(tests/servers/anthropic.py). The fake records what it received, so each test checks
both sides: what the client got back, and what litellm actually sent upstream.

`api_base` is the server's root URL: litellm's anthropic provider appends
`/v1/messages` itself (see routing/providers/litellm.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from routing.providers.litellm_import import imported_providers, litellm_providers
from tests.servers.anthropic import FakeAnthropic, RecordedRequest
from tests.support import ServerThread, gateway_config, running_gateway

MODEL = "claude-3-5-sonnet-20241022"
API_KEY = "sk-ant-test"
#: litellm's default for Anthropic's required `max_tokens` when the client sets none.
DEFAULT_MAX_TOKENS = 4096
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}
#: SEARCH_TOOL as Anthropic's API takes it.
ANTHROPIC_SEARCH_TOOL = {
    "name": "search",
    "description": "Search the web.",
    "input_schema": SEARCH_TOOL["function"]["parameters"],  # type: ignore[index]
    "type": "custom",
}


def deployment(id: str, api_base: str) -> dict[str, Any]:
    return {
        "id": id,
        "provider": "anthropic",
        "model": MODEL,
        "api_base": api_base,
        "api_key": API_KEY,
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(FakeAnthropic()) as server:
        yield server


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    """A port bound but never listened on: connecting is refused for as long as it is held."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module")
def gateway(upstream: ServerThread, refusing_port: int) -> Iterator[ServerThread]:
    config = gateway_config(
        {"name": "claude", "deployments": [deployment("claude-local", upstream.url)]},
        {
            "name": "claude-down",
            "deployments": [deployment("claude-down", f"http://127.0.0.1:{refusing_port}")],
        },
    )
    with running_gateway(config) as server:
        yield server


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="sk-client", max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture
def fake(upstream: ServerThread) -> FakeAnthropic:
    app = upstream.app
    assert isinstance(app, FakeAnthropic)
    return app


class Received:
    """The requests the fake upstream receives from now on."""

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        self.start = len(fake.requests)

    def all(self) -> list[RecordedRequest]:
        return self.fake.requests[self.start :]

    def one(self) -> RecordedRequest:
        received = self.all()
        assert len(received) == 1, received  # and so litellm did not retry
        return received[0]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


# -- answers --------------------------------------------------------------------------


def test_chat_text(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    raw = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        temperature=0.5,
        stop=["END"],
        user="alice",
    )
    completion = raw.parse()

    assert raw.headers["x-seawall-deployment"] == "claude-local"
    assert raw.headers["x-seawall-route"] == "claude/claude-local"
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: Hello there"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    # prompt: "Be brief." + "Hello there"; completion: "You said: Hello there"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 4)
    assert completion.usage.total_tokens == 8

    request = received.one()
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers  # the client's own key stays here
    assert request.body == {
        "model": MODEL,
        "messages": [user("Hello there")],
        "system": [{"type": "text", "text": "Be brief."}],
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "alice"},
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_chat_max_tokens_cuts_the_answer(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "one two three four"}],
        max_tokens=3,
    )
    assert completion.choices[0].message.content == "You said: one"
    assert completion.choices[0].finish_reason == "length"
    assert received.one().body["max_tokens"] == 3


def test_stream_text(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    stream = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert deltas == ["You", " said:", " stream", " me", " please"]
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (3, 5)

    assert received.one().body == {
        "model": MODEL,
        "messages": [user("stream me please")],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": True,
    }


def test_stream_ends_with_done(gateway: ServerThread) -> None:
    """The raw SSE bytes: OpenAI chunks, then `data: [DONE]`."""
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "You said: hi"


def test_tool_call(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[SEARCH_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling search."
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id == "toolu_search_1"
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": "Weather in Paris?"}

    assert received.one().body == {
        "model": MODEL,
        "messages": [user("Weather in Paris?")],
        "tools": [ANTHROPIC_SEARCH_TOOL],
        "tool_choice": {"type": "auto"},
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_tool_result_round_trip(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    call = {
        "id": "toolu_search_1",
        "type": "function",
        "function": {"name": "search", "arguments": '{"query": "Weather in Paris?"}'},
    }
    completion = client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_search_1", "content": "18 degrees"},
        ],
        tools=[SEARCH_TOOL],  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content == "Tool result: 18 degrees"
    assert completion.choices[0].finish_reason == "stop"
    assert received.one().body["messages"] == [
        user("Weather in Paris?"),
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_search_1",
                    "name": "search",
                    "input": {"query": "Weather in Paris?"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_search_1", "content": "18 degrees"}
            ],
        },
    ]


def test_stream_tool_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[SEARCH_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "search"}},
        stream=True,
    )
    text, names, ids, arguments, finish = "", [], [], "", []
    for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            assert call.index == 0
            if call.id:
                ids.append(call.id)
            if call.function and call.function.name:
                names.append(call.function.name)
            arguments += (call.function.arguments or "") if call.function else ""
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert text == "Calling search."
    assert (ids, names, finish) == (["toolu_search_1"], ["search"], ["tool_calls"])
    assert json.loads(arguments) == {"query": "Weather in Paris?"}


# -- failures -------------------------------------------------------------------------


def ask(client: openai.OpenAI, text: str, model: str = "claude", **extra: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def test_overloaded_is_a_503(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client, "fake-anthropic:error:529:overloaded_error")
    assert caught.value.status_code == 503  # 529 is "overloaded": SERVER, shown as 503
    assert caught.value.response.headers["x-seawall-deployment"] == "claude-local"
    assert caught.value.body == {
        "message": (
            "Deployment 'claude-local' failed: its upstream returned a server error (HTTP 529)."
        ),
        "type": "server_error",
        "param": None,
        "code": "upstream_server",
    }
    assert len(received.all()) == 2  # 529 is retried once (retry.attempts defaults to 2)


def test_overloaded_stream_is_a_503_before_any_byte(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client, "fake-anthropic:error:529:overloaded_error", stream=True)
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "upstream_server"  # type: ignore[index]


def test_invalid_request_is_relayed_as_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "fake-anthropic:error:400:invalid_request_error:temperature: too hot")
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "temperature: too hot",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_rate_limit_keeps_retry_after(client: openai.OpenAI) -> None:
    # A 7 s retry-after cannot be waited out within a 3 s deadline: no retry, at once.
    with pytest.raises(openai.RateLimitError) as caught:
        ask(
            client,
            "fake-anthropic:error:429:rate_limit_error",
            extra_headers={"x-seawall-timeout-ms": "3000"},
        )
    assert caught.value.status_code == 429
    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("7", "7000")
    assert caught.value.body["code"] == "upstream_rate_limited"  # type: ignore[index]


def test_prompt_too_long_is_context_length(client: openai.OpenAI) -> None:
    message = "prompt is too long: 250000 tokens > 200000 maximum"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, f"fake-anthropic:error:400:invalid_request_error:{message}")
    assert caught.value.body == {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "context_length_exceeded",
    }


def test_error_mid_stream_becomes_an_error_event(client: openai.OpenAI) -> None:
    stream = ask(client, "fake-anthropic:break", stream=True)
    texts: list[str | None] = []

    def drain() -> None:
        for chunk in stream:
            texts.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError) as caught:
        drain()
    assert texts == ["You"]
    assert caught.value.body == {
        "message": "Deployment 'claude-local' failed: its upstream stream broke off.",
        "type": "server_error",
        "param": None,
        "code": "stream_interrupted",
    }


def test_refused_connection_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client, "hi", model="claude-down")
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_connect"  # type: ignore[index]
    assert caught.value.response.headers["x-seawall-deployment"] == "claude-down"


def test_litellm_settings_in_the_body_are_refused(
    client: openai.OpenAI, fake: FakeAnthropic, upstream: ServerThread
) -> None:
    """litellm reads its settings from the same kwargs as the request's parameters."""
    received = Received(fake)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(
            client,
            "hi",
            extra_body={"base_url": "http://127.0.0.1:9", "mock_response": "pwned"},
        )
    assert caught.value.body == {
        "message": "Unrecognized request argument supplied: base_url, mock_response. "
        "Deployment 'claude-local' (anthropic) takes OpenAI's parameters only.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert received.all() == []


def test_parameter_the_provider_lacks_is_a_400(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    received = Received(fake)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "hi", seed=7)
    assert caught.value.body == {
        "message": f"anthropic does not support parameters: ['seed'], for model={MODEL}",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert received.all() == []


def test_embeddings_on_a_chat_only_provider_is_a_400(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    received = Received(fake)
    # The gateway applies `encoding_format` itself, so what reaches the client is
    # litellm's real reason: anthropic has no embeddings endpoint.
    for encoding in ("base64", "float"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(
                model="claude",
                input="hello",
                encoding_format=encoding,  # type: ignore[arg-type]
            )
        assert caught.value.body == {
            "message": (
                f"Unmapped LLM provider for this endpoint. You passed model={MODEL}, "
                "custom_llm_provider=anthropic. Check supported provider and route: "
                "https://docs.litellm.ai/docs/providers"
            ),
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    assert received.all() == []


# -- the process around litellm -------------------------------------------------------

IMPORT_PROBE = """
import asyncio, json, sys
from gateway.app import create_app
from gateway.config import load_config, parse_config

raw = json.loads(sys.argv[1])
app = create_app(load_config(None) if raw is None else parse_config(raw, "<probe>"))
after_create = "litellm" in sys.modules


async def serve() -> None:
    async with app.router.lifespan_context(app):
        pass


asyncio.run(serve())
print(json.dumps([after_create, "litellm" in sys.modules]))
"""


def run_probe(source: str, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", source, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_litellm_is_not_imported_without_litellm_deployments() -> None:
    assert run_probe(IMPORT_PROBE, "null") == [False, False]


def test_litellm_is_imported_at_startup_not_before() -> None:
    config = gateway_config(
        {"name": "claude", "deployments": [deployment("c", "http://x.invalid")]}
    )
    assert run_probe(IMPORT_PROBE, json.dumps(config)) == [False, True]


CHECK_PROBE = """
import json, sys
from gateway.config import serving_problems

problems = serving_problems(json.loads(sys.argv[1]), "127.0.0.1")
print(json.dumps([problems, "litellm" in sys.modules]))
"""


def test_check_config_knows_litellm_providers_without_importing_litellm() -> None:
    """`check-config` names an unknown provider from litellm's source, without the
    seconds of importing it."""
    config = gateway_config(
        {"name": "claude", "deployments": [deployment("c", "http://x.invalid")]},
        {
            "name": "typo",
            "deployments": [{**deployment("t", "http://x.invalid"), "provider": "antropic"}],
        },
    )
    problems, imported = run_probe(CHECK_PROBE, json.dumps(config))
    assert imported is False
    assert problems == [
        "models[1].deployments[0].provider: unknown provider 'antropic' "
        "(neither OpenAI-compatible nor one litellm translates)"
    ]


def test_litellm_providers_read_from_its_source_are_the_ones_it_imports() -> None:
    import litellm

    parsed = litellm_providers()
    assert "anthropic" in parsed and "bedrock" in parsed
    assert parsed == {p.value for p in litellm.provider_list}
    # The fallback, should a litellm release reshape the enum: the same names.
    assert imported_providers() == parsed


NETWORK_PROBE = """
import asyncio, json, sys

connections = []


def audit(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        connections.append(list(args[1][:2]))
    elif event == "socket.getaddrinfo":
        connections.append([str(args[0]), args[1]])


sys.addaudithook(audit)

from routing.call import UpstreamRequest
from routing.config import DeploymentConfig
from routing.providers.litellm import LiteLLMProvider


async def main() -> None:
    provider = LiteLLMProvider(DeploymentConfig.model_validate(json.loads(sys.argv[1])))
    await provider.start()
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    await provider.send(UpstreamRequest("chat", body))
    reply = await provider.send(UpstreamRequest("chat", {**body, "stream": True}, stream=True))
    async for _ in reply.events:
        pass
    await reply.close()
    await provider.aclose()


asyncio.run(main())
print(json.dumps(connections))
"""


def test_litellm_connects_to_api_base_only(upstream: ServerThread, fake: FakeAnthropic) -> None:
    """Import, startup and requests: the only socket litellm opens goes to `api_base`.

    A fresh process with Python's own event loop, so every connect and DNS lookup
    passes through the audit hook (litellm's import included: no cost-map download).
    """
    received = Received(fake)
    connections = run_probe(NETWORK_PROBE, json.dumps(deployment("probe", upstream.url)))
    assert connections
    assert {tuple(c) for c in connections} == {("127.0.0.1", upstream.port)}
    assert [r.path for r in received.all()] == ["/v1/messages", "/v1/messages"]


@pytest.mark.parametrize(
    ("suffix", "path"),
    [("", "/v1/messages"), ("/v1/messages", "/v1/messages"), ("/v1", "/v1/v1/messages")],
)
def test_what_litellm_makes_of_api_base(suffix: str, path: str) -> None:
    """litellm appends `/v1/messages` to `api_base` unless it already ends with it."""
    fake = FakeAnthropic()
    with ServerThread(fake) as other:
        config = gateway_config({"name": "c", "deployments": [deployment("c", other.url + suffix)]})
        with (
            running_gateway(config) as gateway,
            openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0) as client,
        ):
            if path == "/v1/messages":
                assert ask(client, "hi", model="c").choices[0].message.content == "You said: hi"
            else:
                with pytest.raises(openai.NotFoundError):
                    ask(client, "hi", model="c")
    assert [r.path for r in fake.requests] == [path]


def test_litellm_embeddings_honour_the_sdks_base64_default(mock_upstream: ServerThread) -> None:
    # hosted_vllm speaks OpenAI's format through litellm; the mock upstream serves it.
    # litellm refuses `encoding_format` for most providers, so the gateway encodes.
    config = {
        "models": [
            {
                "name": "emb",
                "deployments": [
                    {
                        "id": "vllm",
                        "provider": "hosted_vllm",
                        "model": "e5",
                        "api_base": mock_upstream.url + "/v1",
                        "api_key": "sk-x",
                    }
                ],
            }
        ]
    }
    with running_gateway(config) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        default = client.embeddings.create(model="emb", input=["alpha", "beta"])
        floats = client.embeddings.create(model="emb", input=["alpha"], encoding_format="float")
    assert [len(d.embedding) for d in default.data] == [256, 256]
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert default.data[0].embedding != default.data[1].embedding
