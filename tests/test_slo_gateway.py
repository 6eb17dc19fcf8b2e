"""SLOs through a running gateway: requests counted good or bad, burn rates and
alerts at `GET /admin/slo` and in `/metrics`, scoped reads, the release gate over
HTTP and as `seawall gate`, the change freeze and its emergency path (audited), the
windows rebuilt from the audit log after a restart, and `seawall slo rules`.

Faults come from the chaos header on the shared group (every attempt answered 503),
so each failure is a real upstream failure as the router and the client see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from audit.keys import generate_keypair
from tests.isolation import call, chat, two_tenants
from tests.support import running_gateway, write_config

FAIL = {"x-seawall-chaos": "http_error;status=503;target=group:chat"}
SLOS = [
    {"name": "chat-availability", "kind": "availability", "objective": 0.99, "model_group": "chat"},
    {
        "name": "chat-latency",
        "kind": "latency",
        "objective": 0.99,
        "threshold_ms": 10_000,
        "model_group": "chat",
    },
    {"name": "red-availability", "kind": "availability", "objective": 0.9, "tenant": "red"},
]


#: red may aim faults at the shared group too (the isolation suite's red may not).
RED = {
    "allow": {
        "models": ["chat", "red-chat"],
        "chaos_targets": ["red-own", "group:red-chat", "group:chat"],
    }
}


def config(**extra: Any) -> dict[str, Any]:
    return two_tenants(slos=SLOS, tenant_extra={"red": RED}, **extra)


def slo_state(url: str, key: str = "root-admin") -> dict[str, dict[str, Any]]:
    answer = call(url, key, "GET", "/admin/slo")
    assert answer.status_code == 200, answer.text
    return {s["name"]: s for s in answer.json()["slos"]}


def window(state: dict[str, Any], label: str) -> dict[str, Any]:
    return next(w for w in state["windows"] if w["window"] == label)


def test_requests_count_toward_their_slos() -> None:
    with running_gateway(config()) as gw:
        for _ in range(8):
            assert chat(gw.url, "blue-user").status_code == 200
        for _ in range(2):
            assert chat(gw.url, "red-all", headers=FAIL).status_code == 503
        assert chat(gw.url, "red-user", model="blue-chat").status_code == 404  # excluded
        state = slo_state(gw.url)
        metrics = call(gw.url, "root-admin", "GET", "/metrics").text
        red_view = slo_state(gw.url, "red-all")
        blue_view = call(gw.url, "blue-all", "GET", "/admin/slo").json()["slos"]
        no_role = call(gw.url, "red-user", "GET", "/admin/slo").status_code
    availability = window(state["chat-availability"], "5m")
    assert (availability["samples"], availability["bad"]) == (10, 2)
    assert abs(availability["burn_rate"] - 20) < 1e-6  # 2 bad in 10 over a 1% budget
    firing = {(a["severity"], a["long_window"]) for a in state["chat-availability"]["alerts"]
              if a["firing"]}  # fmt: skip
    assert ("page", "1h") in firing  # 20x > 14.4 over 1h and 5m
    assert window(state["chat-latency"], "5m")["samples"] == 8  # failures are not latency
    red = window(state["red-availability"], "5m")
    assert (red["samples"], red["bad"]) == (2, 2)  # the 404 was the client's doing
    assert 'seawall_slo_events_total{result="bad",slo="chat-availability"} 2.0' in metrics
    assert 'seawall_slo_events_total{result="good",slo="chat-availability"} 8.0' in metrics
    assert "seawall_slo_burn_rate" in metrics and "seawall_slo_alert" in metrics
    # A tenant's key sees the SLOs of its subtree only.
    assert set(red_view) == {"red-availability"}
    assert blue_view == []
    assert no_role == 403


def evaluate(url: str, key: str = "root-admin", **params: Any) -> httpx.Response:
    return call(url, key, "GET", "/admin/slo/evaluate", params=params)


def test_the_release_gate_over_http_and_the_command() -> None:
    with running_gateway(config()) as gw:
        for _ in range(6):
            assert chat(gw.url, "blue-user").status_code == 200
            assert chat(gw.url, "red-all", headers=FAIL).status_code == 503
        good = evaluate(
            gw.url, slo="chat-availability", candidate="tenant=blue", min_samples=5
        ).json()
        bad = evaluate(
            gw.url,
            slo="chat-availability",
            candidate="tenant=red",
            baseline="tenant=blue",
            min_samples=5,
        ).json()
        few = evaluate(gw.url, slo="chat-availability", candidate="tenant=blue").json()
        unknown = evaluate(gw.url, slo="nope", candidate="tenant=blue")
        garbled = evaluate(gw.url, slo="chat-availability", candidate="version")
        sideways = evaluate(gw.url, "red-all", slo="red-availability", candidate="tenant=blue")

        def gate(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "gateway", "gate", "--url", gw.url, *args],
                capture_output=True,
                text=True,
                timeout=60,
                env={"SEAWALL_KEY": "root-admin", "PATH": "/usr/bin:/bin"},
            )

        passed = gate("--slo", "chat-availability", "--candidate", "tenant=blue",
                      "--min-samples", "5")  # fmt: skip
        failed = gate("--slo", "chat-availability", "--candidate", "tenant=red",
                      "--min-samples", "5", "--format", "json")  # fmt: skip
        unsure = gate("--slo", "chat-availability", "--candidate", "tenant=blue")
    assert (good["verdict"], bad["verdict"], few["verdict"]) == ("pass", "fail", "inconclusive")
    assert bad["candidate"]["samples"] == 6 and bad["baseline"]["samples"] == 6
    assert unknown.status_code == 404 and garbled.status_code == 400
    assert sideways.status_code == 403
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "pass" in passed.stdout.lower()
    assert failed.returncode == 1 and json.loads(failed.stdout)["verdict"] == "fail"
    assert unsure.returncode == 3


def test_the_freeze_refuses_changes_until_marked_as_the_fix(tmp_path: Path) -> None:
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_keypair(private, public)
    audit = {
        "enabled": True,
        "directory": str(tmp_path / "log"),
        "stream": "freeze",
        "signing_key_file": str(private),
        "batch_window_ms": 5,
    }
    document = config(audit=audit)
    with running_gateway(document) as gw:
        first = call(gw.url, "root-admin", "GET", "/admin/config").json()["version"]["id"]
        for _ in range(3):
            assert chat(gw.url, "red-all", headers=FAIL).status_code == 503
        changed = yaml.safe_dump({**document, "policies": {"rules": []}})
        frozen = call(gw.url, "root-admin", "PUT", "/admin/config", content=changed)
        fixed = call(
            gw.url,
            "root-admin",
            "PUT",
            "/admin/config",
            content=changed,
            headers={"x-seawall-emergency": "INC-42: revert the bad route"},
        )
        back = call(gw.url, "root-admin", "POST", "/admin/config/rollback", json={"version": first})
        records = call(gw.url, "root-admin", "GET", "/admin/audit", params={"kind": "admin"})
    assert frozen.status_code == 409, frozen.text
    assert frozen.json()["error"]["code"] == "change_frozen"
    assert "chat-availability" in frozen.json()["error"]["message"]
    assert fixed.status_code == 200, fixed.text
    assert back.status_code == 200, back.text  # a rollback is never frozen
    actions = {r["action"]: r for r in records.json()["data"]}
    assert actions["config.frozen"]["actor"] == "root-admin"
    assert actions["config.applied"]["detail"]["emergency"] == "INC-42: revert the bad route"
    assert "config.rolled_back" in actions


def test_the_windows_survive_a_restart(tmp_path: Path) -> None:
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    generate_keypair(private, public)
    audit = {
        "enabled": True,
        "directory": str(tmp_path / "log"),
        "stream": "restart",
        "signing_key_file": str(private),
    }
    with running_gateway(config(audit=audit)) as gw:
        for _ in range(4):
            assert chat(gw.url, "blue-user").status_code == 200
        assert chat(gw.url, "red-all", headers=FAIL).status_code == 503
        before = window(slo_state(gw.url)["chat-availability"], "1h")
    with running_gateway(config(audit=audit)) as gw:
        after = window(slo_state(gw.url)["chat-availability"], "1h")
    assert (before["samples"], before["bad"]) == (5, 1)
    assert after == before


def test_slo_rules_command(tmp_path: Path) -> None:
    path = write_config(tmp_path / "seawall.yaml", config())
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "slo", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    rules = yaml.safe_load(made.stdout)
    names = {rule.get("alert") for group in rules["groups"] for rule in group["rules"]}
    assert "SloErrorBudgetBurn" in names
    empty = write_config(tmp_path / "none.yaml", two_tenants())
    refused = subprocess.run(
        [sys.executable, "-m", "gateway", "slo", "rules", str(empty)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "no slos" in refused.stderr


def test_calibrate_reads_a_30_day_audit_history(tmp_path: Path) -> None:
    """A synthetic audit log: for each of the last 30 days, 20 requests in this hour
    of day, day k's slowest taking 100 + k ms (its nearest-rank p99), one request in
    20 failed on even days. The proposal: the p95 of the daily p99s, 128 ms (the 29th
    of 100..129), and 1 - the p95 of the daily error ratios (0.05 on 15 days, 0 on
    the others): 0.95, which is on the ladder."""
    import asyncio
    import time

    from audit.keys import Signer
    from audit.writer import Writer

    directory = tmp_path / "log"
    hour = int(time.time() // 3600) * 3600

    async def write() -> None:
        async with Writer(directory, "history-w0", Signer.generate()) as writer:
            for k in range(30):
                start = hour - (k + 1) * 86400 + 60
                for i in range(20):
                    failed = k % 2 == 0 and i == 0
                    await writer.submit_wait(
                        {
                            "kind": "request",
                            "time": start + i,
                            "tenants": ["root"],
                            "model": "chat",
                            "status": 503 if failed else 200,
                            "error": "upstream_error" if failed else None,
                            "latency_ms": 100.0 + k if i == 19 else 50.0,
                            "config_version": "v1",
                            "stream": False,
                        }
                    )

    asyncio.run(write())
    slos = [
        {"name": "lat", "kind": "latency", "objective": 0.99, "threshold_ms": 2000,
         "model_group": "chat"},
        {"name": "avail", "kind": "availability", "objective": 0.999, "model_group": "chat"},
    ]  # fmt: skip
    path = write_config(tmp_path / "seawall.yaml", {**two_tenants(), "slos": slos})
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "slo", "calibrate", str(path), "--audit",
         str(directory), "--days", "30"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    patch = yaml.safe_load(made.stdout)["slos"]
    proposed = {slo["name"]: slo for slo in patch}
    assert proposed["lat"]["threshold_ms"] == 128
    assert proposed["avail"]["objective"] == 0.95
    assert "# p95 (nearest rank) of the daily p99" in made.stdout
