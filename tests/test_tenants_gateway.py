"""Tenants through the gateway: allow-lists, caps and scoped admin, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.isolation import keys
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body
from tests.support import ServerThread, running_gateway

KEYS = {
    "root-admin": (None, ["admin"]),
    "acme-admin": ("acme", ["admin"]),
    "search-admin": ("search", ["admin", "user"]),
    "ads-admin": ("ads", ["admin"]),
    "p1-user": ("p1", ["user", "chaos"]),
    "ads-user": ("ads", ["user"]),
}


def mock(name: str) -> dict[str, Any]:
    return {"id": name, "provider": "mock", "model": "mock-gpt", "retry": {"attempts": 1}}


def tree_config(scripted_url: str) -> dict[str, Any]:
    scripted = {
        "id": "scripted",
        "provider": "openai",
        "model": "m",
        "api_base": scripted_url + "/v1",
        "retry": {"attempts": 1},
    }
    return {
        "models": [
            {"name": "chat", "deployments": [mock("chat-a"), mock("chat-b")], "fallbacks": ["big"]},
            {"name": "big", "deployments": [mock("big-a")]},
            {"name": "embed", "deployments": [mock("embed-a")]},
            {"name": "capped", "deployments": [scripted]},
        ],
        "tenants": [
            {"id": "acme", "allow": {"models": ["chat", "big", "embed", "capped"]}},
            {
                "id": "search",
                "parent": "acme",
                "allow": {
                    "models": ["chat", "capped"],
                    "chaos_targets": ["chat-a", "chat-b", "group:chat"],
                },
            },
            {"id": "p1", "parent": "search", "caps": {"max_tokens": 100}},
            {"id": "ads", "parent": "acme", "allow": {"models": ["chat", "big"]}},
        ],
        "keys": keys(KEYS),
        "chaos": {"enabled": True},
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[ServerThread, ScriptedUpstream]]:
    upstream = ScriptedUpstream(Answer(body=chat_body("ok")))
    with ServerThread(upstream) as server, running_gateway(tree_config(server.url)) as gw:
        yield gw, upstream


def sdk(gateway: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def call(gateway: ServerThread, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(method, gateway.url + path, headers=headers, timeout=10, **kwargs)


HI = [{"role": "user", "content": "hi"}]


def test_models_list_only_what_the_tenant_may_use(gateway: Any) -> None:
    gw, _ = gateway
    assert [m.id for m in sdk(gw, "p1-user").models.list()] == ["chat", "capped"]
    assert [m.id for m in sdk(gw, "ads-user").models.list()] == ["chat", "big"]
    with pytest.raises(openai.NotFoundError):
        sdk(gw, "p1-user").models.retrieve("big")


def test_a_model_the_tenant_may_not_use_is_not_found(gateway: Any) -> None:
    gw, _ = gateway
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(gw, "p1-user").chat.completions.create(model="big", messages=HI)  # type: ignore[arg-type]
    assert raised.value.code == "model_not_found"
    ok = sdk(gw, "ads-user").chat.completions.create(model="big", messages=HI)  # type: ignore[arg-type]
    assert ok.choices[0].message.content


def test_a_fallback_the_tenant_may_not_use_is_skipped(gateway: Any) -> None:
    gw, _ = gateway
    # chat falls back to big: p1 may not use big, ads may.
    down = {"x-seawall-chaos": "http_error;status=503;target=group:chat"}
    p1 = call(
        gw,
        "p1-user",
        "POST",
        "/v1/chat/completions",
        json={"model": "chat", "messages": HI},
        headers=down,
    )
    assert p1.status_code == 503
    assert "big" not in p1.headers["x-seawall-route"]


def test_the_max_tokens_cap(gateway: Any) -> None:
    gw, upstream = gateway
    client = sdk(gw, "p1-user")
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="capped", messages=HI, max_tokens=500)  # type: ignore[arg-type]
    assert raised.value.code == "max_tokens_over_cap" and "p1" in raised.value.message
    client.chat.completions.create(model="capped", messages=HI)  # type: ignore[arg-type]
    assert upstream.requests[-1]["max_completion_tokens"] == 100
    client.chat.completions.create(model="capped", messages=HI, max_tokens=50)  # type: ignore[arg-type]
    assert upstream.requests[-1]["max_tokens"] == 50


def test_chaos_targets_are_the_tenants(gateway: Any) -> None:
    gw, _ = gateway
    body = {"model": "chat", "messages": HI}
    denied = call(gw, "p1-user", "POST", "/v1/chat/completions", json=body,
                  headers={"x-seawall-chaos": "http_error;status=503;target=big-a"})  # fmt: skip
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "chaos_target_not_allowed"


def test_a_team_admin_schedules_faults_only_for_its_subtree(gateway: Any) -> None:
    gw, _ = gateway
    fault = {"fault": "http_error", "status": 503, "target": "group:chat", "duration_s": 60}
    scheduled = call(gw, "search-admin", "POST", "/admin/chaos", json=fault)
    assert scheduled.status_code == 201, scheduled.text
    fault_id = scheduled.json()["id"]
    try:
        body = {"model": "chat", "messages": HI}
        # The fault touches search's subtree (p1) and nobody else.
        assert call(gw, "p1-user", "POST", "/v1/chat/completions", json=body).status_code == 503
        assert call(gw, "ads-user", "POST", "/v1/chat/completions", json=body).status_code == 200
        # A sibling team's admin neither sees nor clears it; the org's admin sees it.
        assert call(gw, "ads-admin", "GET", "/admin/chaos").json()["faults"] == []
        assert call(gw, "ads-admin", "DELETE", f"/admin/chaos/{fault_id}").status_code == 404
        assert call(gw, "ads-admin", "DELETE", "/admin/chaos").json() == {"cleared": 0}
        seen = call(gw, "acme-admin", "GET", "/admin/chaos").json()["faults"]
        assert [f["id"] for f in seen] == [fault_id] and seen[0]["scope"] == "search"
        # ...and may not aim outside its own targets.
        outside = {**fault, "target": "big-a"}
        assert call(gw, "search-admin", "POST", "/admin/chaos", json=outside).status_code == 403
    finally:
        call(gw, "root-admin", "DELETE", "/admin/chaos")
    assert call(gw, "p1-user", "POST", "/v1/chat/completions", json=body).status_code == 200


def test_the_config_is_the_root_admins(gateway: Any) -> None:
    gw, _ = gateway
    assert call(gw, "search-admin", "GET", "/admin/config").status_code == 403
    assert call(gw, "root-admin", "GET", "/admin/config").status_code == 200
    routing = call(gw, "ads-admin", "GET", "/admin/routing").json()
    assert [g["name"] for g in routing["groups"]] == ["chat", "big"]
