"""Isolation, the policy gate's remembered reports (gateway/stages/policy.py).

The gate remembers what a decision reports (its `x-seawall-policy` value and guard
events) per decision, group and caller, in one bounded map shared by every tenant,
as the decision cache is. Red, with every role, floods it with decisions of its own
(a rule that reads a header red varies, so each request is a new decision) past the
bound, between blue's requests. What blue observes: every one of its responses
names exactly blue's rule and version, never red's; the events counted for blue's
rule are exactly blue's requests; and the map never holds more than its bound.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from common.headers import POLICY_HEADER
from gateway.stages import policy as policy_stage
from tests.isolation import ATTACKER, VICTIM, two_tenants
from tests.support import running_gateway

BOUND = 4


def _chat(url: str, key: str, tenant: str, header: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": f"{tenant}-chat", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}", "x-p": header},
        timeout=10,
    )


def _gate(server: Any) -> policy_stage.PolicyGate:
    pipeline = server.app.state.gateway.runtime.chat
    (gate,) = [s for s in pipeline.stages if isinstance(s, policy_stage.PolicyGate)]
    return gate


def test_reds_flood_of_decisions_never_reaches_blues_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy_stage, "MAX_REPORTS", BOUND)
    rules = [
        {
            "id": "red-tag",
            "tenant": ATTACKER,
            "when": 'headers["x-p"] != ""',
            "effect": "flag",
            "flag": "red",
        },
        {"id": "blue-tag", "tenant": VICTIM, "when": "true", "effect": "flag", "flag": "blue"},
    ]
    config = two_tenants(policies={"headers": ["x-p"], "rules": rules})
    with running_gateway(config) as server:
        events = server.app.state.gateway.state.events
        before = events.counts.get(("policy", "flag"), 0)
        version = None
        for n in range(6 * BOUND):
            red = _chat(server.url, f"{ATTACKER}-all", ATTACKER, f"red-{n}")
            assert red.status_code == 200, red.text
            assert red.headers[POLICY_HEADER].startswith("red-tag; version=")
            blue = _chat(server.url, f"{VICTIM}-user", VICTIM, "")
            assert blue.status_code == 200, blue.text
            named = blue.headers[POLICY_HEADER]
            assert named.startswith("blue-tag; version="), named
            version = version or named
            assert named == version  # the same rule set, the same words, every time
            assert len(_gate(server)._reports) <= BOUND
        # One flag event per request of each: blue's were neither lost nor doubled
        # while red's churned the map.
        assert events.counts[("policy", "flag")] - before == 2 * 6 * BOUND


def test_two_keys_sharing_a_decision_keep_a_report_each() -> None:
    """No rule reads `key`, so blue's two keys get the same decision object; each
    key's report names its own key in its events and is remembered once, not
    rebuilt each time the other key was last."""
    rules = [{"id": "blue-tag", "tenant": VICTIM, "when": "true", "effect": "flag", "flag": "b"}]
    with running_gateway(two_tenants(policies={"rules": rules})) as server:
        gate = _gate(server)
        for _ in range(3):
            for key in (f"{VICTIM}-user", f"{VICTIM}-all"):
                reply = _chat(server.url, key, VICTIM, "")
                assert reply.status_code == 200, reply.text
                assert reply.headers[POLICY_HEADER].startswith("blue-tag; version=")
        reports = list(gate._reports.items())
        assert len(reports) == 2
        (first_key, first), (second_key, second) = reports
        assert first[0] is second[0]  # one decision, two callers
        assert {first_key[2].key_id, second_key[2].key_id} == {"blue-user", "blue-all"}
        assert {first[2][0].key, second[2][0].key} == {"blue-user", "blue-all"}
