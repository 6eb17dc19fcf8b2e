"""Experiments that abort themselves on the gateway's own signals (`safety.abort_on`):
an SLO burning its budget too fast, or latency straying from the run's own baseline.
Real runs of the runner against a real gateway; the faults are rolled back and the
report says why and when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cli import main
from tests.support import running_gateway
from tests.test_chaos_experiments import demo_config

SLOS = [{"name": "demo-availability", "kind": "availability", "objective": 0.99}]


def experiment(abort_on: dict[str, Any], fault: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "abort-on",
        "title": "an outage the gateway's own signals stop",
        "target": {"model": "demo"},
        "load": {"rate": 40, "concurrency": 32, "mix": {"chat": 1}},
        "hypothesis": [{"probe": "requests", "min": 10}],
        "phases": [
            {"name": "before", "seconds": 3, "steady_state": True},
            {"name": "outage", "seconds": 20, "faults": [fault]},
            {"name": "after", "seconds": 2, "steady_state": True},
        ],
        "safety": {"max_seconds": 40, "abort_on": abort_on},
    }


def run(tmp_path: Path, document: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    config = demo_config(None, "mock-fast")
    config["slos"] = SLOS
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    report = tmp_path / "report.json"
    with running_gateway(config) as gateway:
        code = main(["chaos", "run", str(path), "--url", gateway.url, "--report", str(report)])
        left = httpx.get(gateway.url + "/admin/chaos", timeout=5).json()["faults"]
    return code, json.loads(report.read_text()), json.dumps(left)


def test_an_experiment_stops_when_an_slo_burns_too_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = experiment(
        {"burn_rate": 14.4, "slo": "demo-availability"},
        {"via": "admin", "fault": "connect_refused", "target": "mock-fast"},
    )
    code, report, faults_left = run(tmp_path, document)
    capsys.readouterr()
    assert code == 1 and report["verdict"] == "aborted"
    assert report["aborted"].startswith("abort_on.burn_rate: SLO demo-availability")
    assert "(phase outage)" in report["aborted"]
    assert faults_left == "[]"  # rolled back
    # It stopped long before the 20-second outage would have ended.
    outage = next(p for p in report["phases"] if p["name"] == "outage")
    assert outage["end_s"] - outage["start_s"] < 10


def test_an_experiment_stops_when_latency_strays_from_its_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = experiment(
        {"baseline_deviation": 0.15, "window_s": 2, "min_requests": 10},
        {"via": "admin", "fault": "latency", "ms": 300, "target": "mock-fast"},
    )
    code, report, faults_left = run(tmp_path, document)
    capsys.readouterr()
    assert code == 1 and report["verdict"] == "aborted"
    assert report["aborted"].startswith("abort_on.baseline_deviation: p95")
    assert "baseline" in report["aborted"] and "(phase outage)" in report["aborted"]
    assert faults_left == "[]"


def test_a_baseline_must_be_a_phase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = experiment(
        {"baseline_deviation": 0.15, "baseline_phase": "warmup"},
        {"via": "admin", "fault": "latency", "ms": 1, "target": "mock-fast"},
    )
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["chaos", "run", str(path), "--dry-run"]) == 2
    assert "no phase named 'warmup'" in capsys.readouterr().err
