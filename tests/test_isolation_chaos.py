"""Isolation: one tenant's chaos never reaches what another tenant sees.

Tenant `red` attacks with `red-all` (every role, chaos included), tenant `blue` is
the victim (tests/isolation.py). Each test asserts what blue observes: its routing,
the breakers and statistics of the deployments it uses, its admin and metrics
views, the room left for its own drills.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.isolation import call, chat, mock, two_tenants
from tests.support import ServerThread, running_gateway

#: red may drill on shared-a (as a team that shares a deployment might be allowed
#: to), which is exactly why its drills must stay its own.
RED_DRILLS_SHARED = {"red": {"allow": {"models": ["chat", "red-chat"], "chaos_targets": [
    "red-own", "group:red-chat", "shared-a", "group:chat"]}}}  # fmt: skip
#: The first attempt of each request fails, wherever it goes; the failover serves it.
FIRST_ATTEMPT_FAILS = {"x-seawall-chaos": "http_error;status=503;target=group:chat;count=1"}


def config(**extra: Any) -> dict[str, Any]:
    breaker = {"consecutive_failures": 3, "open_seconds": 60}
    shared = [mock("shared-a", breaker=breaker), mock("shared-b", breaker=breaker)]
    chaos = {
        "enabled": True,
        "max_faults_per_tenant": 3,
        "colors": {
            "everywhere": {"faults": "http_error;status=503"},
            "on-shared": {"faults": "http_error;status=503;target=shared-a"},
            "pinned-shared": {"deployments": ["shared-a"]},
        },
    }
    return two_tenants(shared=shared, tenant_extra=RED_DRILLS_SHARED, chaos=chaos, **extra)


@pytest.fixture
def gateway() -> Iterator[ServerThread]:
    with running_gateway(config()) as gw:
        yield gw


def shared(view: dict[str, Any], deployment: str = "shared-a") -> dict[str, Any]:
    chat_group = next(g for g in view["groups"] if g["name"] == "chat")
    return next(d for d in chat_group["deployments"] if d["id"] == deployment)


def blue_view(gw: ServerThread) -> dict[str, Any]:
    response = call(gw.url, "blue-all", "GET", "/admin/routing")
    assert response.status_code == 200
    return response.json()


CLOSED = {"state": "closed", "openings": 0, "open_multiplier": 0, "reopens_in_ms": None}


def test_a_tenants_injected_failures_move_no_shared_breaker_and_no_blue_request(
    gateway: ServerThread,
) -> None:
    before = {d: shared(blue_view(gateway), d) for d in ("shared-a", "shared-b")}
    injected: Counter[str] = Counter()
    for _ in range(12):  # 12 failures: at least 6 on one deployment, twice its threshold
        attacked = chat(gateway.url, "red-all", headers=FIRST_ATTEMPT_FAILS)
        # red's own request still fails over, as a drill should show it.
        assert attacked.status_code == 200
        injected[attacked.headers["x-seawall-chaos-injected"]] += 1
    assert sum(injected.values()) == 12
    for deployment, earlier in before.items():
        after = shared(blue_view(gateway), deployment)
        assert after["breaker"] == earlier["breaker"] == CLOSED
        assert after["window"]["errors"] == 0 and after["window"]["attempts"] == 0
        assert after["effective_weight"] == earlier["effective_weight"]
        assert after["totals"]["outcomes"] == {}
    # blue's traffic still reaches both: its routing did not move.
    served = Counter(
        chat(gateway.url, "blue-user").headers["x-seawall-deployment"] for _ in range(40)
    )
    assert served["shared-a"] > 0 and served["shared-b"] > 0
    # Nor the retry budget: red's requests and retries were not counted in blue's.
    budget = call(gateway.url, "root-admin", "GET", "/admin/routing").json()["retry_budget"]
    assert budget["retries_in_window"] == 0
    assert budget["requests_in_window"] == 40


def test_a_root_scoped_drill_opens_real_breakers(gateway: ServerThread) -> None:
    """The rule's other side: a root drill is the whole gateway's, and is observed."""
    on_a = {
        "x-seawall-chaos": "http_error;status=503;target=shared-a",
        "x-traffic-color": "pinned-shared",
    }
    for _ in range(3):
        assert chat(gateway.url, "root-admin", headers=on_a).status_code == 503
    assert shared(blue_view(gateway))["breaker"]["state"] == "open"


def test_colors_pass_the_same_target_checks_as_the_header(gateway: ServerThread) -> None:
    red_own_only = two_tenants(chaos=config()["chaos"])
    with running_gateway(red_own_only) as gw:
        for color in ("everywhere", "on-shared", "pinned-shared"):
            refused = chat(gw.url, "red-all", headers={"x-traffic-color": color})
            assert refused.status_code == 403, color
            error = refused.json()["error"]
            assert error["code"] == "chaos_target_not_allowed"
            assert error["param"] == "x-traffic-color"
        # Nothing was injected anywhere: blue's view of shared-a is untouched.
        state = call(gw.url, "root-admin", "GET", "/admin/chaos").json()
        assert state["injected"] == []
        assert shared(blue_view(gw))["window"]["attempts"] == 0
        # The same key may use its own targets.
        fault = {"x-seawall-chaos": "http_error;status=503;target=red-own"}
        own = chat(gw.url, "red-all", model="red-chat", headers=fault)
        assert own.status_code == 503
        assert own.headers["x-seawall-chaos-injected"] == "http_error@red-own"


def test_fault_quotas_are_per_tenant_within_the_global_cap(gateway: ServerThread) -> None:
    def schedule(key: str, target: str) -> httpx.Response:
        body = {"fault": "latency", "ms": 1, "target": target, "duration_s": 60}
        return call(gateway.url, key, "POST", "/admin/chaos", json=body)

    for _ in range(3):
        assert schedule("red-all", "red-own").status_code == 201
    full = schedule("red-all", "red-own")
    assert full.status_code == 409
    assert full.json()["error"]["code"] == "chaos_quota_exceeded"
    assert "max_faults_per_tenant" in full.json()["error"]["message"]
    # blue's room is its own: red's full quota takes none of it.
    for _ in range(3):
        assert schedule("blue-all", "blue-own").status_code == 201
    # and each admin's view holds its own faults only.
    red_view = call(gateway.url, "red-all", "GET", "/admin/chaos").json()
    blue = call(gateway.url, "blue-all", "GET", "/admin/chaos").json()
    assert {f["scope"] for f in red_view["faults"]} == {"red"}
    assert {f["scope"] for f in blue["faults"]} == {"blue"}
    assert len(call(gateway.url, "root-admin", "GET", "/admin/chaos").json()["faults"]) == 6
    # red can clear only its own.
    assert call(gateway.url, "red-all", "DELETE", "/admin/chaos").json() == {"cleared": 3}
    assert len(call(gateway.url, "blue-all", "GET", "/admin/chaos").json()["faults"]) == 3


def test_every_chaos_view_shows_only_the_callers_scope(gateway: ServerThread) -> None:
    fault = {**FIRST_ATTEMPT_FAILS, "x-traffic-color": "pinned-shared"}
    for _ in range(2):
        assert chat(gateway.url, "red-all", headers=fault).status_code == 503
    red_state = call(gateway.url, "red-all", "GET", "/admin/chaos").json()
    assert red_state["injected"] == [{"fault": "http_error", "where": "shared-a", "count": 2}]
    assert call(gateway.url, "blue-all", "GET", "/admin/chaos").json()["injected"] == []
    blue_metrics = call(gateway.url, "blue-all", "GET", "/metrics").text
    assert "seawall_faults_injected_total{" not in blue_metrics
    red_metrics = call(gateway.url, "red-all", "GET", "/metrics").text
    assert (
        'seawall_faults_injected_total{fault="http_error",scope="red",target="shared-a"} 2.0'
        in red_metrics
    )


@pytest.mark.parametrize("body", [
    {"fault": "config_watch_drop", "duration_s": 60},
    {"fault": "config_watch_drop", "target": "config", "duration_s": 60},
])  # fmt: skip
def test_gateway_wide_faults_are_root_only(gateway: ServerThread, body: dict[str, Any]) -> None:
    for key in ("red-all", "org-admin"):
        refused = call(gateway.url, key, "POST", "/admin/chaos", json=body)
        assert refused.status_code == 403, key
        assert "only a root-scoped admin" in refused.json()["error"]["message"]
    header = {"x-seawall-chaos": "config_watch_drop"}
    assert chat(gateway.url, "red-all", headers=header).status_code == 403
    assert call(gateway.url, "blue-all", "GET", "/admin/chaos").json()["faults"] == []
    assert call(gateway.url, "root-admin", "POST", "/admin/chaos", json=body).status_code == 201
