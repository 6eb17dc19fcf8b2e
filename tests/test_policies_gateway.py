"""Policies through the gateway, with the official openai SDK: every effect, inheritance,
hot reload, shadow, canary, the budget and the decision cache."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support import ServerThread, running_gateway

HI = [{"role": "user", "content": "hi"}]


def key(name: str, tenant: str | None, roles: tuple[str, ...] = ("user",)) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    entry: dict[str, Any] = {"id": name, "key_sha256": digest, "roles": list(roles)}
    if tenant:
        entry["tenant"] = tenant
    return entry


def mock(name: str) -> dict[str, Any]:
    return {"id": name, "provider": "mock", "model": "mock-gpt"}


def config(rules: list[dict[str, Any]], **policies: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "chat", "deployments": [mock("fast"), mock("slow")]}],
        "tenants": [{"id": "org"}, {"id": "team", "parent": "org"}, {"id": "other"}],
        "keys": [
            key("team-key", "team"),
            key("other-key", "other"),
            key("root-key", None, ("user", "admin")),
        ],
        "policies": {"rules": rules, **policies},
    }


def sdk(gateway: ServerThread, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=name, max_retries=0)


def chat(gateway: ServerThread, name: str, **extra: Any) -> httpx.Response:
    body = {"model": "chat", "messages": HI, **extra}
    headers = {"authorization": f"Bearer {name}"}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def metrics_of(gateway: ServerThread) -> str:
    return httpx.get(gateway.url + "/metrics", headers={"authorization": "Bearer root-key"}).text


NO_STREAMS = {
    "id": "no-streams",
    "tenant": "org",
    "when": "stream",
    "effect": "deny",
    "message": "Streaming is off for this org.",
}


def test_a_deny_is_a_permission_error_naming_the_rule() -> None:
    with running_gateway(config([NO_STREAMS])) as gateway:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            sdk(gateway, "team-key").chat.completions.create(
                model="chat",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
            )
        assert raised.value.code == "policy_denied"
        assert "no-streams" in raised.value.message
        assert "Streaming is off" in raised.value.message
        # Inherited by the team; a sibling tenant's requests are not touched.
        assert chat(gateway, "other-key", stream=True).status_code == 200
        assert chat(gateway, "team-key").status_code == 200


def test_flag_and_route_effects() -> None:
    rules = [
        {"id": "big", "when": "max_tokens > 100", "effect": "flag", "flag": "big-answer"},
        {
            "id": "team-fast",
            "tenant": "team",
            "when": "true",
            "effect": "route",
            "route": {"pin": ["fast"]},
        },
        {
            "id": "no-slow",
            "tenant": "other",
            "when": "true",
            "effect": "route",
            "route": {"exclude": ["slow"]},
        },
    ]
    with running_gateway(config(rules)) as gateway:
        flagged = chat(gateway, "team-key", max_tokens=500)
        assert flagged.status_code == 200
        assert re.fullmatch(r"big, team-fast; version=\S+", flagged.headers["x-seawall-policy"])
        deployments = {chat(gateway, "team-key").headers["x-seawall-deployment"] for _ in range(20)}
        assert deployments == {"fast"}
        others = {chat(gateway, "other-key").headers["x-seawall-deployment"] for _ in range(20)}
        assert others == {"fast"}
        metrics = metrics_of(gateway)
    assert 'seawall_guard_events_total{action="flag",kind="policy"} 1.0' in metrics


def test_a_new_deny_applies_from_the_next_request_after_a_reload() -> None:
    with running_gateway(config([])) as gateway:
        assert chat(gateway, "team-key", stream=True).status_code == 200
        reply = httpx.put(
            gateway.url + "/admin/config",
            content=yaml.safe_dump(config([NO_STREAMS])),
            headers={"authorization": "Bearer root-key"},
        )
        assert reply.status_code == 200, reply.text
        assert chat(gateway, "team-key", stream=True).status_code == 403


def test_a_rule_that_does_not_compile_is_a_config_error() -> None:
    bad = {"id": "typo", "when": "strem && max_tokens > 3", "effect": "deny", "message": "x"}
    runaway = {
        "id": "runaway",
        "when": "tools.map(a, tools.map(b, tools.map(c, tools))).size() > 0",
        "effect": "deny",
        "message": "x",
    }
    with running_gateway(config([])) as gateway:
        for rule, expected in ((bad, "undeclared reference to 'strem'"), (runaway, "cost")):
            reply = httpx.put(
                gateway.url + "/admin/config",
                content=yaml.safe_dump(config([rule])),
                headers={"authorization": "Bearer root-key"},
            )
            assert reply.status_code == 400
            (problem,) = reply.json()["problems"]
            assert problem.startswith("policies.rules[0].when") and expected in problem


def test_shadow_never_blocks_and_counts_disagreements() -> None:
    shadow = {"mode": "shadow", "version": "next", "rules": [NO_STREAMS]}
    with running_gateway(config([], candidate=shadow)) as gateway:
        for _ in range(3):
            assert chat(gateway, "team-key", stream=True).status_code == 200
        metrics = metrics_of(gateway)
    assert 'seawall_policy_shadow_total{result="disagreed"} 3.0' in metrics
    assert 'seawall_guard_events_total{action="shadow_disagrees",kind="policy"} 3.0' in metrics


def test_a_canary_decides_its_share_of_requests() -> None:
    canary = {"mode": "canary", "share": 0.3, "version": "next", "rules": [NO_STREAMS]}
    with running_gateway(config([], candidate=canary)) as gateway:

        async def run() -> list[int]:
            headers = {"authorization": "Bearer team-key"}
            body = {"model": "chat", "messages": HI, "stream": True}
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
                semaphore = asyncio.Semaphore(32)

                async def one() -> int:
                    async with semaphore:
                        reply = await client.post("/v1/chat/completions", json=body)
                        return reply.status_code

                return await asyncio.gather(*(one() for _ in range(1000)))

        statuses = asyncio.run(run())
    denied = statuses.count(403) / len(statuses)
    # Binomial(1000, 0.3): the standard deviation is ~0.0145; 5 of them either way.
    assert abs(denied - 0.3) < 0.0725, denied
    assert set(statuses) == {200, 403}


def test_the_decision_cache_serves_repeated_decisions() -> None:
    rules = [{"id": "no-big", "when": "max_tokens > 1000", "effect": "deny", "message": "x"}]
    with running_gateway(config(rules)) as gateway:
        for _ in range(10):
            assert chat(gateway, "team-key", max_tokens=10).status_code == 200
        metrics = metrics_of(gateway)
    hits = re.search(
        r'seawall_policy_cache_total\{result="hit",set="active",version="\S+"\} (\S+)', metrics
    )
    misses = re.search(
        r'seawall_policy_cache_total\{result="miss",set="active",version="\S+"\} (\S+)', metrics
    )
    assert hits and misses
    assert (float(hits.group(1)), float(misses.group(1))) == (9.0, 1.0)
