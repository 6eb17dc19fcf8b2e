"""Isolation: `/metrics` shows a scoped key what `/admin/routing` shows it, no more.

`red-all` (metrics and admin roles in tenant red) scrapes after blue has used its own
group: it must see none of blue's deployments, responses or faults, and none of the
gateway-wide counters that mix every tenant's traffic. The root sees everything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.isolation import call, chat, two_tenants
from tests.support import ServerThread, running_gateway

#: Families only the root sees: they count every tenant's traffic together.
GATEWAY_WIDE = {
    "seawall_retry_budget_denied",
    "seawall_front_door_refusals",
    "seawall_front_door_waiting_closed",
    "seawall_guard_events",
    "seawall_config_reloads",
    "seawall_policy_decisions",
    "seawall_limit_decisions",
    "gen_ai_client_token_usage",
    "gen_ai_client_operation_duration_seconds",
}


def scrape(gw: ServerThread, key: str) -> dict[str, list[dict[str, str]]]:
    response = call(gw.url, key, "GET", "/metrics")
    assert response.status_code == 200, response.text
    return {
        family.name: [sample.labels for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway(two_tenants()) as gw:
        fault = {"x-seawall-chaos": "latency;ms=1;target=blue-own"}
        for _ in range(3):
            assert chat(gw.url, "blue-all", model="blue-chat", headers=fault).status_code == 200
            assert chat(gw.url, "red-user").status_code == 200
        yield gw


def test_a_tenant_scrape_shows_only_its_own(gateway: ServerThread) -> None:
    red = scrape(gateway, "red-all")
    deployments = {s["deployment"] for s in red["seawall_breaker_state"]}
    assert deployments == {"shared-a", "shared-b", "red-own"}
    assert "blue-own" not in str(red)
    assert "blue-chat" not in str(red)
    assert {s["tenant"] for s in red["seawall_responses"]} == {"red"}
    assert red.get("seawall_faults_injected", []) == []
    assert GATEWAY_WIDE.isdisjoint(red)
    assert "seawall_config_version_info" in red


def test_the_root_scrape_shows_everything(gateway: ServerThread) -> None:
    root = scrape(gateway, "root-admin")
    deployments = {s["deployment"] for s in root["seawall_breaker_state"]}
    assert deployments == {"shared-a", "shared-b", "red-own", "blue-own"}
    assert {s["tenant"] for s in root["seawall_responses"]} >= {"red", "blue"}
    assert {s["scope"] for s in root["seawall_faults_injected"]} == {"blue"}
    assert set(root) >= GATEWAY_WIDE


def test_an_org_admin_sees_its_whole_subtree(gateway: ServerThread) -> None:
    org = scrape(gateway, "org-admin")
    assert {s["tenant"] for s in org["seawall_responses"]} == {"red", "blue"}
    assert GATEWAY_WIDE.isdisjoint(org)


def test_a_key_without_the_role_gets_no_metrics(gateway: ServerThread) -> None:
    refused = call(gateway.url, "red-user", "GET", "/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
