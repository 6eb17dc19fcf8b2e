"""Roles are a closed set, and every endpoint requires its own."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.config import ConfigError, parse_config
from tests.support import ServerThread, mock_group, running_gateway

TOKENS = {
    "user": "tok-user",
    "metrics": "tok-metrics",
    "admin": "tok-admin",
    "tools": "tok-tools",
    "chaos": "tok-chaos",
}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def key(role: str) -> dict[str, Any]:
    digest = hashlib.sha256(TOKENS[role].encode()).hexdigest()
    return {"id": f"{role}-key", "key_sha256": digest, "roles": [role]}


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    config = {
        "models": [mock_group("demo")],
        "keys": [key(role) for role in TOKENS],
        "tools": [
            {
                "name": "weather",
                "input_schema": WEATHER,
                "output_schema": {"type": "object"},
                "endpoint": "mock://weather",
            }
        ],
        "receipts": {"keys": [{"id": "k", "secret": "roles-test-secret-0123456789"}]},
    }
    with running_gateway(config) as server:
        yield server


def call(gateway: ServerThread, role: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {TOKENS[role]}"}
    return httpx.request(method, gateway.url + path, headers=headers, timeout=10, **kwargs)


CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
INVOKE = {"tool_call_id": "call_1", "arguments": {"city": "Oslo"}}


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("POST", "/v1/chat/completions", CHAT, {"user"}),
        ("POST", "/v1/embeddings", {"model": "demo", "input": "x"}, {"user"}),
        ("GET", "/v1/models", None, {"user"}),
        ("GET", "/v1/models/demo", None, {"user"}),
        ("POST", "/v1/tools/weather/invoke", INVOKE, {"tools"}),
        ("GET", "/metrics", None, {"metrics", "admin"}),
        ("GET", "/admin/routing", None, {"admin"}),
        ("GET", "/admin/chaos", None, {"admin"}),
    ],
)
def test_each_endpoint_requires_its_role(
    gateway: ServerThread, method: str, path: str, body: Any, allowed: set[str]
) -> None:
    for role in TOKENS:
        response = call(gateway, role, method, path, json=body)
        if role in allowed:
            assert response.status_code == 200, (role, path, response.text)
        else:
            assert response.status_code == 403, (role, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "permission_denied"
            assert f"{role}-key" in error["message"]


def test_the_sdk_sees_a_permission_error_for_an_admin_key(gateway: ServerThread) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TOKENS["admin"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="lacks the 'user' role"):
        client.chat.completions.create(**CHAT)


def test_a_misspelt_role_is_a_config_error() -> None:
    config = {"models": [mock_group("demo")], "keys": [{**key("user"), "roles": ["admn"]}]}
    with pytest.raises(ConfigError) as raised:
        parse_config(config, "<test>")
    (problem,) = raised.value.problems
    assert problem.startswith("keys[0].roles[0]: unknown role 'admn'")
    assert "admin" in problem
