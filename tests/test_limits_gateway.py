"""Limits through the gateway: OpenAI's headers, 429s the SDK honours, settlement after
every kind of ending, spend, the admin view; and four gateway processes sharing one
Redis, exact."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, chunk, text_events
from tests.services import RedisServer
from tests.support import SeawallProcess, ServerThread, running_gateway, write_config

HI = [{"role": "user", "content": "hi"}]


def key(name: str, tenant: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": name,
        "key_sha256": hashlib.sha256(name.encode()).hexdigest(),
        **extra,
    }
    if tenant:
        entry["tenant"] = tenant
    return entry


def config(url: str, **extra: Any) -> dict[str, Any]:
    deployment = {
        "id": "p",
        "provider": "openai",
        "model": "m",
        "api_base": url + "/v1",
        "retry": {"attempts": 1},
        "price": {"input_per_mtok": 1_000_000, "output_per_mtok": 1_000_000},  # $1 a token
    }
    return {
        "models": [{"name": "g", "deployments": [deployment], "max_prompt_tokens": 100_000}],
        "tenants": [{"id": "team", "limits": {"requests_per_minute": 3, "tokens_per_minute": 500}}],
        "keys": [
            key("alice", "team", limits={"max_concurrent": 1}),
            key("bob", "team"),
            key("admin", roles=["admin", "user"]),
            key("rich", limits={"spend_usd": {"amount": 100, "per": "day"}}),
            key("solo", limits={"max_concurrent": 1}),
        ],
        **extra,
    }


@pytest.fixture
def upstream() -> Any:
    scripted = ScriptedUpstream(Answer(body=chat_body("ok")))
    with ServerThread(scripted) as server:
        yield scripted, server


def sdk(gateway: ServerThread, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=name, max_retries=0)


def test_headers_and_a_429_the_sdk_honours(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config(server.url)) as gateway:
        client = sdk(gateway, "bob")
        first = client.chat.completions.with_raw_response.create(
            model="g",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=20,
        )
        headers = first.headers
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert headers["x-ratelimit-remaining-requests"] == "2"
        assert headers["x-ratelimit-limit-tokens"] == "500"
        assert int(headers["x-ratelimit-remaining-tokens"]) < 500
        assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms|1m0s", headers["x-ratelimit-reset-requests"])
        for _ in range(2):
            client.chat.completions.create(model="g", messages=HI, max_tokens=20)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="g", messages=HI, max_tokens=20)  # type: ignore[arg-type]
        response = raised.value.response
        assert raised.value.code == "rate_limit_exceeded"
        assert "requests_per_minute 3 of tenant:team" in raised.value.message
        assert response.headers["x-seawall-limit"] == "requests_per_minute; level=tenant:team"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        # Sibling keys of one tenant share its limits.
        with pytest.raises(openai.RateLimitError):
            sdk(gateway, "alice").chat.completions.create(model="g", messages=HI)  # type: ignore[arg-type]


def test_usage_settles_the_token_reservation(upstream: Any) -> None:
    scripted, server = upstream
    body = chat_body("ok")  # usage: 7 tokens in all
    scripted.script = lambda n, b: Answer(body=body)
    with running_gateway(config(server.url)) as gateway:
        client = sdk(gateway, "bob")
        # 400 tokens reserved (prompt + max_tokens), 7 used: the rest is refunded.
        client.chat.completions.create(model="g", messages=HI, max_tokens=390)  # type: ignore[arg-type]
        second = client.chat.completions.with_raw_response.create(
            model="g",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=390,
        )
        assert second.http_response.status_code == 200


def test_streams_force_usage_upstream_and_strip_it_for_the_client(upstream: Any) -> None:
    scripted, server = upstream
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    events = [*text_events(["a", "b"]), {**chunk(), "choices": [], "usage": usage}]
    scripted.script = lambda n, b: Answer(events=events)
    with running_gateway(config(server.url)) as gateway:
        with httpx.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json={"model": "g", "messages": HI, "stream": True, "max_tokens": 300},
            headers={"authorization": "Bearer bob"},
        ) as response:
            text = response.read().decode()
        assert scripted.requests[0]["stream_options"] == {"include_usage": True}
        assert '"usage"' not in text and text.rstrip().endswith("data: [DONE]")
        # The stream's 7 tokens were settled: another 300-token request fits (500/min).
        scripted.script = lambda n, b: Answer(body=chat_body("ok"))
        again = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "g", "messages": HI, "max_tokens": 300},
            headers={"authorization": "Bearer bob"},
        )
        assert again.status_code == 200


@pytest.mark.parametrize("ending", ["upstream_error", "stream_cut", "client_left"])
def test_concurrency_is_released_however_the_request_ends(upstream: Any, ending: str) -> None:
    scripted, server = upstream
    if ending == "upstream_error":
        scripted.script = lambda n, b: Answer(status=500, body={"error": {"message": "x"}})
    elif ending == "stream_cut":
        scripted.script = lambda n, b: Answer(
            events=[chunk("a"), chunk("b"), chunk("c")], cut_after=1
        )
    else:
        scripted.script = lambda n, b: Answer(events=text_events(list("abcdef")), event_delay=0.2)
    with running_gateway(config(server.url)) as gateway:
        body = {"model": "g", "messages": HI, "stream": ending != "upstream_error"}
        headers = {"authorization": "Bearer solo"}  # max_concurrent 1
        if ending == "client_left":
            with httpx.stream(
                "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                next(response.iter_lines())
        else:
            httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers)
        scripted.script = lambda n, b: Answer(body=chat_body("ok"))
        deadline = time.monotonic() + 5
        while True:  # the slot is freed when the response ends (async, just after)
            reply = httpx.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "g", "messages": HI},
                headers=headers,
            )
            if reply.status_code == 200:
                break
            assert reply.headers["x-seawall-limit"] == "max_concurrent; level=key:solo"
            assert time.monotonic() < deadline, "the concurrency slot was never released"
            time.sleep(0.02)


def test_spend_is_a_quota_priced_by_the_deployment(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config(server.url)) as gateway:
        client = sdk(gateway, "rich")
        # $1 a token: 7 tokens used, $100 a day.
        client.chat.completions.create(model="g", messages=HI, max_tokens=10)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="g", messages=HI, max_tokens=95)  # type: ignore[arg-type]
        assert raised.value.code == "insufficient_quota"
        view = httpx.get(gateway.url + "/admin/limits", headers={"authorization": "Bearer admin"})
        levels = {level["level"]: level for level in view.json()["levels"]}
        spend = levels["key:rich"]["limits"][0]
        assert spend["limit"] == "spend_usd" and spend["used"] == 7_000_000
        assert view.json()["store"]["kind"] == "memory"


def test_workers_with_in_process_limits_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", config("http://127.0.0.1:9"))
    code, output = SeawallProcess(
        ["serve", "--config", str(path), "--port", "0", "--workers", "2"]
    ).run_to_exit()
    assert code == 2 and "limits.store" in output


def test_four_gateways_on_one_redis_are_exact(redis: RedisServer, tmp_path: Path) -> None:
    """4 gateway processes, 40 concurrent clients, one key limited to 30 requests a
    minute: exactly 30 are admitted across all of them, and then none."""
    cfg = {
        "models": [{"name": "g", "deployments": [{"id": "m", "provider": "mock", "model": "m"}]}],
        "keys": [key("hot", limits={"requests_per_minute": 30})],
        "limits": {"store": redis.url},
    }
    path = write_config(tmp_path / "c.yaml", cfg)
    # Started inside the `try`: when one fails to start, the others are still stopped.
    processes = [SeawallProcess(["serve", "--config", str(path), "--port", "0"]) for _ in range(4)]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready()
        urls = [process.url for process in processes]

        async def run() -> list[int]:
            async with httpx.AsyncClient(headers={"authorization": "Bearer hot"}, timeout=20) as c:

                async def one(n: int) -> int:
                    body = {"model": "g", "messages": HI}
                    reply = await c.post(urls[n % 4] + "/v1/chat/completions", json=body)
                    return reply.status_code

                return list(await asyncio.gather(*(one(n) for n in range(120))))

        statuses = asyncio.run(run())
    finally:
        for process in processes:
            process.stop(drain=False)
    assert statuses.count(200) == 30
    assert statuses.count(429) == 90
