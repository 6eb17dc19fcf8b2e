"""Guarded config rollouts, end to end over loopback: a canary version serves beside
the current one and is judged by the gateway itself (gateway/rollouts.py).

The upstreams are real servers: `good` always answers, `flaky` fails 3 calls in 10.
A canary pinned to `flaky` must be rolled back by the judge, with the baseline's
traffic never seeing a failure; a canary as healthy as the baseline is promoted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from audit.keys import KeyRing
from audit.verify import verify
from gateway.app import create_app
from gateway.config import parse_config
from tenants.roles import ROLES
from tests.audit_support import audit_section, make_keypair
from tests.audit_support import records as audit_records
from tests.isolation import keys
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, error_body
from tests.support import ServerThread, running_gateway, scripted_deployment

CHAT = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}
VERSION = "x-seawall-config-version"
#: How often the judge looks in these tests, and the samples it needs per side.
INTERVAL_S = 0.1
MIN_SAMPLES = 40


def flaky(number: int, _: dict[str, Any]) -> Answer:
    """Fails calls 1-3 of every 10: 30% of requests."""
    if number % 10 in (1, 2, 3):
        return Answer(status=500, body=error_body("scripted failure"))
    return Answer(body=chat_body("from flaky"))


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[str, str]]:
    with (
        ServerThread(ScriptedUpstream(Answer(body=chat_body("from good")))) as good,
        ServerThread(ScriptedUpstream(flaky)) as bad,
    ):
        yield good.url, bad.url


def deployment(name: str, url: str) -> dict[str, Any]:
    # The breaker must not hide the failures from the judge: it never opens here.
    breaker = {"consecutive_failures": 1000, "open_seconds": 1}
    return scripted_deployment(name, url, breaker=breaker)


def config(*deployments: dict[str, Any], **rollout: Any) -> dict[str, Any]:
    settings = {
        "min_samples": MIN_SAMPLES,
        "bake_s": 0.5,
        "check_interval_s": INTERVAL_S,
        "max_s": 60,
        **rollout,
    }
    return {
        "models": [{"name": "g", "deployments": list(deployments)}],
        "reload": {"rollout": settings},
    }


def put(gateway: ServerThread, document: dict[str, Any], **params: str) -> httpx.Response:
    return httpx.put(
        gateway.url + "/admin/config",
        params=params,
        content=yaml.safe_dump(document),
        headers={"content-type": "application/yaml"},
        timeout=10,
    )


def rollout(gateway: ServerThread) -> dict[str, Any]:
    answer = httpx.get(gateway.url + "/admin/config/rollout", timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def drive(gateway: ServerThread, until: str, deadline_s: float = 30) -> list[httpx.Response]:
    """Chat requests from 4 threads until the rollout's state is `until` (or not
    running, then the assertion on the state tells what happened)."""
    answers: list[httpx.Response] = []
    done = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            while not done.is_set():
                answers.append(http.post("/v1/chat/completions", json=CHAT))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + deadline_s
    try:
        while rollout(gateway)["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert rollout(gateway)["state"] == until, rollout(gateway)
    return answers


def test_a_canary_on_a_failing_deployment_is_rolled_back_and_the_baseline_never_fails(
    upstreams: tuple[str, str],
) -> None:
    good, bad = upstreams
    with running_gateway(config(deployment("good", good))) as gateway:
        baseline = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).headers[VERSION]
        started = put(gateway, config(deployment("flaky", bad)), rollout="canary", share="0.5")
        assert started.status_code == 200, started.text
        candidate = started.json()["version"]["id"]
        assert started.json()["rollout"]["state"] == "running"
        answers = drive(gateway, "rolled_back")
        by_version: dict[str, list[int]] = {}
        for answer in answers:
            by_version.setdefault(answer.headers[VERSION], []).append(answer.status_code)
        assert set(by_version) <= {baseline, candidate}
        # The baseline's traffic never saw a failure; the candidate's did.
        assert by_version[baseline] and set(by_version[baseline]) == {200}
        assert 502 in by_version[candidate]  # an upstream 500, relayed as a bad gateway
        state = rollout(gateway)
        assert state["candidate"]["id"] == candidate
        assert state["baseline"]["id"] == baseline
        assert state["verdict"]["result"] == "fail"
        assert any("burn rate" in reason for reason in state["verdict"]["reasons"])
        assert [s["action"] for s in state["steps"]] == ["started", "rolled_back"]
        # Decided once the candidate had its samples: at most a few judge intervals
        # after the last request it served (the documented bound: one interval).
        assert state["samples"]["candidate"] >= MIN_SAMPLES
        # Afterwards every request is the baseline's, and the candidate is not retried
        # even though it was sent again by the same person (that is a new decision).
        after = [httpx.post(gateway.url + "/v1/chat/completions", json=CHAT) for _ in range(20)]
        assert {a.headers[VERSION] for a in after} == {baseline}
        assert {a.status_code for a in after} == {200}
        assert httpx.get(gateway.url + "/readyz").json()["config_version"] == baseline


def test_a_healthy_canary_is_promoted_after_its_bake_time(upstreams: tuple[str, str]) -> None:
    good, _ = upstreams
    with running_gateway(config(deployment("good", good))) as gateway:
        changed = config(deployment("good", good), deployment("good-2", good))
        started = put(gateway, changed, rollout="canary", share="0.5")
        assert started.status_code == 200, started.text
        candidate = started.json()["version"]["id"]
        began = time.monotonic()
        answers = drive(gateway, "promoted")
        assert time.monotonic() - began >= 0.5  # bake_s
        assert {a.status_code for a in answers} == {200}
        state = rollout(gateway)
        assert state["verdict"]["result"] == "pass"
        assert [s["action"] for s in state["steps"]] == ["started", "promoted"]
        assert httpx.get(gateway.url + "/readyz").json()["config_version"] == candidate
        after = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT)
        assert after.headers[VERSION] == candidate
        routing = httpx.get(gateway.url + "/admin/routing").json()["groups"][0]["deployments"]
        assert [d["id"] for d in routing] == ["good", "good-2"]
        metrics = httpx.get(gateway.url + "/metrics").text
        assert 'seawall_config_rollout_steps_total{step="promoted"} 1.0' in metrics
        assert 'seawall_config_rollout_steps_total{step="started"} 1.0' in metrics


def test_people_promote_and_abort_and_a_new_version_supersedes(
    upstreams: tuple[str, str],
) -> None:
    good, _ = upstreams
    slow = {"bake_s": 3600, "check_interval_s": 60}
    base = config(deployment("good", good), **slow)
    with running_gateway(base) as gateway:
        for path in ("promote", "abort"):
            idle = httpx.post(f"{gateway.url}/admin/config/rollout/{path}")
            assert idle.status_code == 409
            assert idle.json()["error"]["code"] == "no_rollout"
        baseline = rollout(gateway)["baseline"]["id"]
        two = config(deployment("good", good), deployment("two", good), **slow)
        candidate = put(gateway, two, rollout="canary", share="1").json()["version"]["id"]
        assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).headers[VERSION] == (
            candidate
        )
        aborted = httpx.post(
            gateway.url + "/admin/config/rollout/abort", json={"reason": "not today"}
        )
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["state"] == "aborted"
        assert aborted.json()["steps"][-1]["reason"] == "not today"
        assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).headers[VERSION] == (
            baseline
        )
        # The same version again, by a person: a new rollout, promoted by hand.
        again = put(gateway, two, rollout="canary", share="0.1")
        assert again.json()["rollout"]["state"] == "running"
        promoted = httpx.post(gateway.url + "/admin/config/rollout/promote")
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["state"] == "promoted"
        assert httpx.get(gateway.url + "/readyz").json()["config_version"] == candidate
        # A new version while a canary runs ends the rollout (superseded) and applies.
        three = config(deployment("good", good), deployment("three", good), **slow)
        put(gateway, three, rollout="canary", share="0.5")
        direct = put(gateway, config(deployment("good", good), **slow))
        assert direct.status_code == 200
        state = rollout(gateway)
        assert state["state"] == "aborted"
        assert state["steps"][-1]["reason"].startswith("superseded by admin PUT")
        serving = httpx.get(gateway.url + "/readyz").json()["config_version"]
        assert serving == direct.json()["version"]["id"]
        answers = {
            httpx.post(gateway.url + "/v1/chat/completions", json=CHAT).headers[VERSION]
            for _ in range(10)
        }
        assert answers == {serving}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rollout": "sideways"}, "rollout"),
        ({"rollout": "canary", "share": "2"}, "share"),
        ({"rollout": "canary", "share": "x"}, "share"),
        ({"rollout": "canary", "share": "0"}, "share"),
        ({"rollout": "canary", "tenants": "nobody"}, "tenants"),
        ({"share": "0.5"}, "share"),
    ],
)
def test_bad_rollout_parameters_change_nothing(
    upstreams: tuple[str, str], params: dict[str, str], field: str
) -> None:
    good, _ = upstreams
    with running_gateway(config(deployment("good", good))) as gateway:
        before = rollout(gateway)
        answer = put(gateway, config(deployment("good", good), deployment("x", good)), **params)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_value"
        assert error["param"] == field
        assert rollout(gateway) == before


#: Every role there is, for the sibling team's key: none of them crosses the wall.
TENANT_KEYS = {
    "root-admin": (None, ["admin"]),
    "team-a-user": ("team-a", ["user"]),
    "team-b-all": ("team-b", sorted(ROLES)),
}


def tenants_config(good: str, **rollout: Any) -> dict[str, Any]:
    document = config(deployment("good", good), **rollout)
    document["tenants"] = [
        {"id": "acme", "allow": {"models": ["g"]}},
        {"id": "team-a", "parent": "acme"},
        {"id": "team-b", "parent": "acme"},
    ]
    document["keys"] = keys(TENANT_KEYS)
    return document


def test_a_tenant_canary_serves_that_tenant_only_and_a_sibling_never_sees_it(
    upstreams: tuple[str, str],
) -> None:
    """A canary pinned to team-a: team-b's key, holding every role, is never served by
    it, and can neither read nor move the rollout."""
    good, _ = upstreams
    slow = {"bake_s": 3600, "check_interval_s": 60}
    with running_gateway(tenants_config(good, **slow)) as gateway:
        admin = {"authorization": "Bearer root-admin"}
        baseline = httpx.get(gateway.url + "/admin/config/rollout", headers=admin).json()
        changed = tenants_config(good, **slow)
        changed["models"][0]["deployments"].append(deployment("two", good))
        started = httpx.put(
            gateway.url + "/admin/config",
            params={"rollout": "canary", "share": "0", "tenants": "team-a"},
            content=yaml.safe_dump(changed),
            headers=admin,
        )
        assert started.status_code == 200, started.text
        candidate = started.json()["version"]["id"]

        def versions(token: str) -> set[str]:
            headers = {"authorization": f"Bearer {token}"}
            return {
                httpx.post(
                    gateway.url + "/v1/chat/completions", json=CHAT, headers=headers
                ).headers[VERSION]
                for _ in range(30)
            }

        assert versions("team-a-user") == {candidate}
        assert versions("team-b-all") == {baseline["baseline"]["id"]}
        sibling = {"authorization": "Bearer team-b-all"}
        read = httpx.get(gateway.url + "/admin/config/rollout", headers=sibling)
        assert read.status_code == 403
        assert read.json()["error"]["code"] == "permission_denied"
        for path in ("promote", "abort"):
            moved = httpx.post(f"{gateway.url}/admin/config/rollout/{path}", headers=sibling)
            assert moved.status_code == 403
        # Nor can it start one of its own, or replace the running one.
        replaced = httpx.put(
            gateway.url + "/admin/config",
            params={"rollout": "canary", "tenants": "team-b"},
            content=yaml.safe_dump(changed),
            headers=sibling,
        )
        assert replaced.status_code == 403
        state = httpx.get(gateway.url + "/admin/config/rollout", headers=admin).json()
        assert state["state"] == "running"
        assert state["candidate"]["id"] == candidate


def test_a_canary_from_the_source_rolled_back_restores_the_source(
    upstreams: tuple[str, str], tmp_path: Path
) -> None:
    """`reload.rollout.mode: canary`: a version written to the config file starts as
    a canary; rolled back, the file gets the serving version's documents again, so a
    restart serves what served."""
    good, bad = upstreams
    path = tmp_path / "seawall.yaml"
    base = config(deployment("good", good), mode="canary", share=0.5)
    base["reload"]["resync_s"] = 0.2
    path.write_text(yaml.safe_dump(base))
    before = path.read_text()
    parsed = parse_config(yaml.safe_load(before), str(path))
    app = create_app(parsed, documents={path.name: before}, origin=str(path), source=str(path))
    with ServerThread(app) as gateway:
        bad_version = config(deployment("flaky", bad), mode="canary", share=0.5)
        bad_version["reload"]["resync_s"] = 0.2
        path.write_text(yaml.safe_dump(bad_version))
        deadline = time.monotonic() + 10
        while rollout(gateway)["state"] != "running":
            assert time.monotonic() < deadline, "the source's version never started a canary"
            time.sleep(0.02)
        drive(gateway, "rolled_back")
        deadline = time.monotonic() + 10
        while path.read_text() != before:
            assert time.monotonic() < deadline, "the source was not restored"
            time.sleep(0.02)
        # The restored source is the serving version: nothing new starts.
        time.sleep(0.5)  # two resyncs: a third rollout would show as a new step
        assert rollout(gateway)["state"] == "rolled_back"


def test_a_restart_mid_rollout_serves_the_baseline_and_every_step_is_audited(
    upstreams: tuple[str, str], tmp_path: Path
) -> None:
    """A person's canary is never written to the source before promotion: a gateway
    restarted mid-rollout serves the version that was serving. Each step of a
    rollout is a record of the (verified) audit chain."""
    good, _ = upstreams
    private, public = make_keypair(tmp_path)
    directory = tmp_path / "audit"
    path = tmp_path / "seawall.yaml"
    slow = {"bake_s": 3600, "check_interval_s": 60}
    base = config(deployment("good", good), **slow)
    base["audit"] = audit_section(directory, private)
    path.write_text(yaml.safe_dump(base))
    text = path.read_text()

    def app() -> Any:
        parsed = parse_config(yaml.safe_load(path.read_text()), str(path))
        return create_app(parsed, documents={path.name: text}, origin=str(path), source=str(path))

    candidate_config = {**base, "models": [{"name": "g", "deployments": [
        deployment("good", good), deployment("two", good)]}]}  # fmt: skip
    with ServerThread(app()) as gateway:
        baseline = rollout(gateway)["baseline"]["id"]
        started = put(gateway, candidate_config, rollout="canary", share="1")
        assert started.status_code == 200, started.text
        candidate = started.json()["version"]["id"]
        answer = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT)
        assert answer.headers[VERSION] == candidate
        assert path.read_text() == text  # not written: only a promotion is
    with ServerThread(app()) as gateway:  # the restart
        assert rollout(gateway)["state"] == "idle"
        assert rollout(gateway)["baseline"]["id"] == baseline
        answer = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT)
        assert answer.headers[VERSION] == baseline
        # Promoted by a person, the candidate is written to the source.
        put(gateway, candidate_config, rollout="canary", share="0.5")
        promoted = httpx.post(gateway.url + "/admin/config/rollout/promote")
        assert promoted.status_code == 200, promoted.text
        assert yaml.safe_load(path.read_text()) == candidate_config
    actions = [
        (r["action"], r["target"]) for r in audit_records(directory, "admin")
        if r["action"].startswith("config.rollout.")
    ]  # fmt: skip
    assert actions == [
        ("config.rollout.started", candidate),
        ("config.rollout.started", candidate),
        ("config.rollout.promoted", candidate),
    ]
    assert verify(directory, KeyRing.from_files([public])).ok
