"""Every shipped chaos experiment, in short form, against the embedded default.

Each runs as a user would: `seawall chaos run NAME --scale S`, which starts the
embedded default gateway in-process and drives it over loopback (one that waits
for breakers to close runs at `--url`, against the embedded default with its
breakers scaled too: `SCALED_BREAKERS`). The experiment must pass (exit 0), and
every fault it declares must have taken effect, seen by the client
(`x-seawall-chaos-injected`) or counted by the gateway: a run whose faults never
fired proves nothing.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.runner.loading import load_experiment, shipped
from gateway.cli import main
from routing.config import BreakerSettings
from tests.support import running_gateway

#: Short enough for the whole file to take about two minutes: most experiments
#: take ~7 s at this scale.
SCALE = 0.15
#: Experiments that wait (unscaled) for a breaker to close again: with the embedded
#: default's breakers (open for 30 s) provider-outage spent ~30 s of its ~34 s in
#: that wait. They run against the embedded default with the breakers' open time
#: scaled like the phases, so it still outlasts the outage as at full length;
#: `make experiments` runs them at full length on the embedded default itself.
SCALED_BREAKERS = {"provider-outage"}
#: Experiments another file runs, with these checks and more, at the same scale:
#: bad-config-rollout (tests/test_chaos_rollout.py; ~14 s, it injects no faults).
RUN_ELSEWHERE = {"bad-config-rollout"}


def failures(report: dict[str, Any]) -> list[str]:
    found = [f"aborted: {report['aborted']}"] if report["aborted"] else []
    for phase in report["phases"]:
        for check in phase["checks"]:
            if not check["ok"]:
                found.append(
                    f"{phase['name']}: {check['name']} = {check['value']} "
                    f"(want {check['tolerance']}) {check.get('note', '')}"
                )
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "name", [entry.name for entry in shipped() if entry.name not in RUN_ELSEWHERE]
)
def test_experiment_passes_and_its_faults_fire(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.json"
    args = ["chaos", "run", name, "--scale", str(SCALE), "--report", str(path)]
    if name in SCALED_BREAKERS:
        breaker = {"open_seconds": BreakerSettings().open_seconds * SCALE}
        with running_gateway(demo_config(breaker)) as gateway:
            code = main([*args, "--url", gateway.url])
    else:
        code = main(args)
    output = capsys.readouterr().out
    report = json.loads(path.read_text())
    assert code == 0, "\n".join(failures(report)) + "\n" + output
    assert report["verdict"] == "passed"
    experiment = load_experiment(name)
    by_phase = {phase["name"]: phase for phase in report["phases"]}
    assert list(by_phase) == [phase.name for phase in experiment.phases]
    for phase in experiment.phases:
        effects = {e["fault"]: e for e in by_phase[phase.name]["fault_effects"]}
        for fault in {n for entry in phase.faults for n in entry.names()}:
            effect = effects[fault]
            assert max(effect["observed"], effect["counted"] or 0) > 0, (phase.name, effect)
    assert path.with_suffix(".md").read_text().startswith(f"# Chaos experiment `{name}`: PASSED")


def demo_config(breaker: dict[str, Any] | None = None, *deployments: str) -> dict[str, Any]:
    """The embedded default's demo group (or some of its deployments), chaos on."""
    config: dict[str, Any] = yaml.safe_load(
        resources.files("gateway").joinpath("default_config.yaml").read_text()
    )
    group = config["models"][0]
    if deployments:
        group["deployments"] = [d for d in group["deployments"] if d["id"] in deployments]
        config["chaos"]["colors"] = {}
    for deployment in group["deployments"]:
        deployment["breaker"] = breaker or {}
    return config


def run_against(config: dict[str, Any], name: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "report.json"
    with running_gateway(config) as gateway:
        code = main(
            [
                "chaos",
                "run",
                name,
                "--scale",
                str(SCALE),
                "--url",
                gateway.url,
                "--report",
                str(path),
            ]
        )
    return code, json.loads(path.read_text())


def failed_checks(report: dict[str, Any]) -> set[str]:
    return {
        f"{phase['name']}: {check['name']}"
        for phase in report["phases"]
        for check in phase["checks"]
        if not check["ok"]
    }


def test_avalanche_fails_when_breakers_never_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tolerances can fail: without a breaker, the 503 storm multiplies attempts."""
    code, report = run_against(
        demo_config({"consecutive_failures": 10_000}), "llm-avalanche", tmp_path
    )
    capsys.readouterr()
    assert code == 1
    assert {
        "avalanche: breaker_openings(deployment=mock-fast)",
        "avalanche: amplification",
    } <= failed_checks(report)


def test_outage_fails_without_a_deployment_to_fail_over_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tolerances can fail: with nowhere to fail over, the outage reaches clients
    and the safety rule stops the run."""
    code, report = run_against(demo_config(None, "mock-fast"), "provider-outage", tmp_path)
    capsys.readouterr()
    assert code == 1
    assert report["verdict"] == "aborted"
    assert report["aborted"].startswith("safety.abort: success_ratio")
    assert report["phases"][-1]["name"] == "outage"
    assert "outage: success_ratio" in failed_checks(report)


def mcp_config(**server: Any) -> dict[str, Any]:
    """The embedded default with the demo MCP server the experiment declares
    (chaos/demo_mcp.py, started by the gateway over stdio), and `server`'s settings."""
    config = demo_config()
    demo = {"name": "demo", "transport": "stdio", "command": sys.executable}
    config["mcp"] = {"servers": [{**demo, "args": ["-m", "chaos.demo_mcp"], **server}]}
    return config


@pytest.mark.timeout(60)
def test_mcp_forged_results_are_all_caught_and_genuine_ones_all_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mcp-forged-results` through the runner against a gateway at --url: MCP
    results forged after the seal (`forge_tool;mode=wrong`, `mcp_wrong_call`) at a
    rate; each one the agent shows the model is refused as `tool_result_forged`, and
    every genuine result, in the same conversations too, is served."""
    code, report = run_against(mcp_config(), "mcp-forged-results", tmp_path)
    output = capsys.readouterr().out
    assert code == 0, "\n".join(failures(report)) + "\n" + output
    phases = {phase["name"]: phase["counts"] for phase in report["phases"]}
    forged = phases["forged"]
    assert set(forged["injected"]) == {"forge_tool", "mcp_wrong_call"}
    results = forged["mcp_results"]
    assert list(results["forged"]) == ["refused:tool_result_forged"], results
    assert list(results["genuine"]) == ["served"], results
    assert results["forged"]["refused:tool_result_forged"] >= 3
    assert results["genuine"]["served"] >= 3
    for steady in ("before", "after"):
        assert phases[steady]["mcp_results"]["forged"] == {}
        assert phases[steady]["injected"] == {}
    assert any("gateway sections (mcp) were not applied" in note for note in report["notes"])


@pytest.mark.timeout(60)
def test_mcp_forged_results_fails_without_receipts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tolerances can fail: with the server's verification off, results carry no
    receipt and the forgeries reach the model."""
    code, report = run_against(
        mcp_config(verification={"mode": "off"}), "mcp-forged-results", tmp_path
    )
    capsys.readouterr()
    assert code == 1
    assert "forged: forged results caught" in failed_checks(report)
    forged = next(p for p in report["phases"] if p["name"] == "forged")
    assert "passed" in forged["counts"]["mcp_results"]["forged"]
