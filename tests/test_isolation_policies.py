"""Isolation: policies cannot be walked around.

Tenant `red` is bound by rules its organisation set (data residency, a tool ban,
an office-only rule...), and attacks them with `red-all`, a key holding every role
its tenant allows. Each test asserts where the request went (or that it was refused
as documented), and that blue, with no such rules, is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.isolation import call, chat, mock, two_tenants
from tests.support import ServerThread, running_gateway

#: shared-a is the EU deployment, shared-b the US one.
RULES = [
    {
        "id": "eu-data",
        "tenant": "red",
        "when": 'headers["x-region"] == "eu"',
        "effect": "route",
        "route": {"pin": ["shared-a"]},
    },
    {
        "id": "no-shell",
        "tenant": "red",
        "when": '"shell" in tools',
        "effect": "deny",
        "message": "No shell tools.",
    },
    {
        "id": "results-seen",
        "tenant": "red",
        "when": "tool_results",
        "effect": "flag",
        "flag": "tool-results",
    },
    {
        "id": "office-only",
        "tenant": "red",
        "when": 'headers["x-office"] == "1" && client_ip != "203.0.113.7"',
        "effect": "deny",
        "message": "Only from the office.",
    },
    {
        "id": "own-pin",
        "tenant": "red",
        "when": 'headers["x-pin"] == "own"',
        "effect": "route",
        "route": {"pin": ["red-own"]},
    },
    {
        "id": "no-intruders",
        "tenant": "red",
        "when": 'headers["x-team"] == "intruder"',
        "effect": "deny",
        "message": "Intruders out.",
    },
]
POLICIES = {"headers": ["x-region", "x-office", "x-pin", "x-team"], "rules": RULES}
RED = {
    "allow": {
        "models": ["chat", "red-chat", "overflow"],
        "chaos_targets": ["red-own", "group:red-chat", "shared-a", "shared-b"],
    }
}


def config(**server: Any) -> dict[str, Any]:
    base = two_tenants(
        tenant_extra={"red": RED},
        policies=POLICIES,
        chaos={"enabled": True, "colors": {"us-only": {"deployments": ["shared-b"]}}},
        **({"server": server} if server else {}),
    )
    base["models"][0]["fallbacks"] = ["overflow"]
    base["models"].append({"name": "overflow", "deployments": [mock("overflow-us")]})
    return base


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway(config()) as gw:
        yield gw


EU = {"x-region": "eu"}


def test_a_color_never_widens_a_policy_pin(gateway: ServerThread) -> None:
    pinned = [chat(gateway.url, "red-all", headers=EU) for _ in range(10)]
    assert {r.headers["x-seawall-deployment"] for r in pinned} == {"shared-a"}
    # The color asks for the US deployment only: what is left of the pin is nothing,
    # so the request is refused rather than sent to the US.
    colored = chat(gateway.url, "red-all", headers={**EU, "x-traffic-color": "us-only"})
    assert colored.status_code >= 400
    assert "x-seawall-deployment" not in colored.headers or (
        colored.headers["x-seawall-deployment"] == "shared-a"
    )
    assert "shared-b" not in colored.headers.get("x-seawall-route", "")
    # blue, with no such rule, is routed by the color as it asks.
    blue = chat(gateway.url, "root-admin", headers={"x-traffic-color": "us-only"})
    assert blue.headers["x-seawall-deployment"] == "shared-b"


def test_a_fallback_never_widens_a_policy_pin(gateway: ServerThread) -> None:
    # red drills an outage of the EU deployment: the group falls back to `overflow`,
    # which is in the US: the pin must hold and the request fail instead.
    down = {**EU, "x-seawall-chaos": "connect_refused;target=shared-a"}
    response = chat(gateway.url, "red-all", headers=down)
    assert response.status_code in (502, 503)
    assert "overflow" not in response.headers["x-seawall-route"]
    assert response.headers["x-seawall-route"] == "chat/shared-a!connect"
    # Without the pin the same drill fails over to shared-b, as a drill should.
    unpinned = chat(gateway.url, "red-all", headers={"x-seawall-chaos": down["x-seawall-chaos"]})
    assert unpinned.status_code == 200


def test_a_pin_outside_the_requested_group_is_the_documented_403(gateway: ServerThread) -> None:
    response = chat(gateway.url, "red-all", headers={"x-pin": "own"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "policy_denied" and "'own-pin'" in error["message"]
    # The same pin with the group that holds the deployment is served there.
    own = chat(gateway.url, "red-all", model="red-chat", headers={"x-pin": "own"})
    assert own.headers["x-seawall-deployment"] == "red-own"


@pytest.mark.parametrize(
    "offer",
    [
        {"tools": [{"type": "function", "function": {"name": "shell"}}]},
        {"functions": [{"name": "shell", "parameters": {"type": "object"}}]},
    ],
    ids=["tools", "legacy-functions"],
)
def test_every_way_of_offering_a_tool_reaches_the_rules(
    gateway: ServerThread, offer: dict[str, Any]
) -> None:
    refused = chat(gateway.url, "red-all", json=offer)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "policy_denied"
    assert chat(gateway.url, "blue-all", json=offer).status_code == 200


def test_responses_tools_reach_the_rules(gateway: ServerThread) -> None:
    # Custom tools on /v1/responses are refused under translation today (400); the
    # function tool is the way a Responses request offers a tool here.
    tools = [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]
    body = {"model": "chat", "input": "hi", "tools": tools}
    refused = call(gateway.url, "red-all", "POST", "/v1/responses", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "policy_denied"


def test_legacy_function_results_are_tool_results(gateway: ServerThread) -> None:
    legacy = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}},
        {"role": "function", "name": "w", "content": "sunny"},
    ]
    flagged = chat(gateway.url, "red-all", json={"messages": legacy})
    assert flagged.status_code == 200
    assert flagged.headers["x-seawall-policy"].startswith("results-seen")


def test_forwarded_headers_are_not_believed_from_an_untrusted_peer(gateway: ServerThread) -> None:
    office = {"x-office": "1", "x-forwarded-for": "203.0.113.7"}
    refused = chat(gateway.url, "red-all", headers=office)
    assert refused.status_code == 403
    assert "office-only" in refused.json()["error"]["message"]


def test_forwarded_headers_are_believed_from_a_trusted_proxy() -> None:
    with running_gateway(config(trusted_proxies=["127.0.0.0/8"])) as gw:
        office = {"x-office": "1", "x-forwarded-for": "203.0.113.7"}
        assert chat(gw.url, "red-all", headers=office).status_code == 200
        elsewhere = {"x-office": "1", "x-forwarded-for": "198.51.100.1"}
        assert chat(gw.url, "red-all", headers=elsewhere).status_code == 403


def test_a_repeated_header_rules_read_is_refused(gateway: ServerThread) -> None:
    # Joined as "intruder, friend" the rule's == would miss it.
    headers = [("authorization", "Bearer red-all"), ("x-team", "intruder"), ("x-team", "friend")]
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "repeated_header"
    assert response.json()["error"]["param"] == "x-team"


def test_both_max_token_fields_are_refused_as_openai_refuses_them(gateway: ServerThread) -> None:
    both = {"max_tokens": 10, "max_completion_tokens": 100_000}
    response = chat(gateway.url, "red-all", json=both)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter_combination"
