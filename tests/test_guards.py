"""Prompt-size guards, seen from the client: a context explosion never reaches a
provider, and whatever the guard decides is said in a clear error or header."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.app import create_app
from gateway.config import load_config, parse_config
from gateway.stages import guards
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body
from tests.support import ServerThread, running_gateway, sdk

REPLY = Answer(body=chat_body("fits"))


def group(name: str, url: str, **limits: Any) -> dict[str, Any]:
    deployment = {
        "id": f"{name}-d",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": url + "/v1",
        "api_key": "sk-x",
    }
    return {"name": name, "deployments": [deployment], **limits}


@contextmanager
def gateway_with(*groups: dict[str, Any], **extra: Any) -> Iterator[ServerThread]:
    with running_gateway({"models": list(groups), **extra}) as gateway:
        yield gateway


@contextmanager
def upstream() -> Iterator[tuple[ScriptedUpstream, str]]:
    scripted = ScriptedUpstream(REPLY)
    with ServerThread(scripted) as server:
        yield scripted, server.url


def words(count: int) -> str:
    return " ".join(f"word{i}" for i in range(count))


def test_an_oversized_prompt_is_refused_before_the_provider() -> None:
    with upstream() as (provider, url), gateway_with(group("g", url, max_prompt_tokens=200)) as gw:
        client = sdk(gw.url)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="g", messages=[{"role": "user", "content": words(300)}]
            )
        small = client.chat.completions.create(
            model="g", messages=[{"role": "user", "content": "short"}]
        )
    assert info.value.code == "context_length_exceeded"
    assert "over the limit of 200" in info.value.message
    assert "'g'" in info.value.message
    assert small.choices[0].message.content == "fits"
    assert provider.calls == 1  # only the small one


def test_tool_definitions_count_towards_the_prompt() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": words(30),
                "parameters": {"type": "object"},
            },
        }
        for i in range(10)
    ]
    with upstream() as (provider, url), gateway_with(group("g", url, max_prompt_tokens=200)) as gw:
        response = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "g", "messages": [{"role": "user", "content": "hi"}], "tools": tools},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert provider.calls == 0


def test_the_default_limit_is_the_models_context_window() -> None:
    # The embedded default: mock deployments with a 16,384-token window.
    default = create_app(load_config(None))
    with ServerThread(default) as gw, pytest.raises(openai.BadRequestError) as info:
        sdk(gw.url).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": words(20_000)}]
        )
    assert info.value.code == "context_length_exceeded"
    assert "over the limit of 16384" in info.value.message


def test_overflow_can_fall_back_to_a_larger_group() -> None:
    with upstream() as (small, small_url), upstream() as (large, large_url):
        groups = (
            group(
                "small",
                small_url,
                max_prompt_tokens=100,
                on_overflow="fallback",
                context_window_fallbacks=["large"],
            ),
            group("large", large_url, max_prompt_tokens=10_000),
        )
        with gateway_with(*groups) as gw:
            response = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "small", "messages": [{"role": "user", "content": words(200)}]},
            )
    assert response.status_code == 200
    assert response.headers["x-seawall-guard"].startswith("fallback small>large (")
    assert response.headers["x-seawall-route"] == "large/large-d"
    assert (small.calls, large.calls) == (0, 1)


def test_overflow_can_truncate_the_oldest_turns_keeping_tool_calls_whole() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": words(80)},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": words(80)},
        {"role": "assistant", "content": words(20)},
        {"role": "user", "content": "And now?"},
    ]
    truncating = {"max_prompt_tokens": 200, "on_overflow": "truncate"}
    with upstream() as (provider, url), gateway_with(group("g", url, **truncating)) as gw:
        response = httpx.post(
            gw.url + "/v1/chat/completions", json={"model": "g", "messages": messages}
        )
    assert response.status_code == 200
    assert response.headers["x-seawall-guard"].startswith("truncated 3 messages (")
    sent = provider.requests[0]["messages"]
    assert sent == [messages[0], messages[4], messages[5]]


def test_truncation_that_cannot_fit_is_a_refusal() -> None:
    messages = [{"role": "system", "content": words(300)}, {"role": "user", "content": "hi"}]
    truncating = {"max_prompt_tokens": 100, "on_overflow": "truncate"}
    with upstream() as (provider, url), gateway_with(group("g", url, **truncating)) as gw:
        response = httpx.post(
            gw.url + "/v1/chat/completions", json={"model": "g", "messages": messages}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert provider.calls == 0


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}] * 6}, "too_many_messages", "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "a", "content": "y" * 2000},
                ]
            },
            "tool_message_too_large",
            "messages[1].content",
        ),
    ],
)
def test_message_count_and_tool_result_size_limits(
    body: dict[str, Any], code: str, param: str
) -> None:
    limits = {"max_messages": 5, "max_tool_message_bytes": 1024}
    with upstream() as (provider, url), gateway_with(group("g", url, **limits)) as gw:
        response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "g", **body})
        metrics = httpx.get(gw.url + "/metrics").text
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": response.json()["error"]["message"],
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }
    assert f'seawall_guard_events_total{{action="reject",kind="{code}"}} 1.0' in metrics
    assert provider.calls == 0


@pytest.mark.parametrize(("depth", "code"), [(100, "json_too_deep"), (100_000, "invalid_json")])
def test_nesting_bombs_are_fast_400s(depth: int, code: str) -> None:
    bomb = b'{"model": "g", "messages": [{"role": "user", "content": "x"}], "metadata": '
    bomb += b"[" * depth + b"]" * depth + b"}"
    with upstream() as (provider, url), gateway_with(group("g", url)) as gw:
        started = time.monotonic()
        response = httpx.post(gw.url + "/v1/chat/completions", content=bomb)
        elapsed = time.monotonic() - started
        metrics = httpx.get(gw.url + "/metrics").text
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert elapsed < 1.0
    assert provider.calls == 0
    # The depth guard's refusal is a guard event; orjson's own limit is plain bad JSON.
    counted = 'seawall_guard_events_total{action="reject",kind="json_too_deep"} 1.0' in metrics
    assert counted == (code == "json_too_deep")


def chunked(body: bytes) -> Iterator[bytes]:
    """A body without Content-Length, so only the running count can refuse it."""
    for at in range(0, len(body), 512):
        yield body[at : at + 512]


@pytest.mark.parametrize("declared", [True, False])
def test_oversized_bodies_are_413s_counted_as_guard_events(declared: bool) -> None:
    body = orjson.dumps({"model": "g", "messages": [{"role": "user", "content": "x" * 4096}]})
    with (
        upstream() as (provider, url),
        gateway_with(group("g", url), server={"max_request_bytes": 2048}) as gw,
    ):
        content = body if declared else chunked(body)
        response = httpx.post(
            gw.url + "/v1/chat/completions",
            content=content,
            headers={"content-type": "application/json"},
        )
        metrics = httpx.get(gw.url + "/metrics").text
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert 'seawall_guard_events_total{action="reject",kind="request_too_large"} 1.0' in metrics
    assert provider.calls == 0


async def test_counting_a_huge_prompt_does_not_stall_the_event_loop() -> None:
    """A ~2 MB prompt near the limit is counted in a worker thread: meanwhile the
    loop keeps running other work (a ticker here, other requests in production)."""
    config = parse_config(
        {
            "models": [
                {
                    "name": "g",
                    "max_prompt_tokens": 1_000_000,
                    "deployments": [
                        {
                            "id": "d",
                            "provider": "mock",
                            "model": "mock-gpt",
                            "mock": {"context_window": 2_000_000},
                        }
                    ],
                }
            ]
        },
        "<test>",
    )
    app = create_app(config)
    gateway = app.state.gateway
    guard = next(s for s in gateway.runtime.chat.stages if isinstance(s, guards.PromptGuard))
    text = "Zürich 東京 " * 200_000  # ~2.4 MB, ~1M tokens: counted exactly, off the loop
    body = {"model": "g", "messages": [{"role": "user", "content": text}]}

    class Exchange:  # only what the guard reads
        raw = text.encode()
        group = gateway.runtime.router.group("g")
        headers: dict[str, str] = {}
        identity = None
        history_bytes = 0

    exchange: Any = Exchange()
    exchange.body = body
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    with pytest.raises(Exception, match="over the limit of 1000000"):
        await guard(exchange)
    task.cancel()
    assert ticks >= 5
