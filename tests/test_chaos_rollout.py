"""`bad-config-rollout` and the runner's config rollouts (chaos/runner/rollout.py).

The experiment runs as a user would (`seawall chaos run NAME --scale S --url URL`)
against the embedded default with the experiment's `gateway:` sections, served from
its documents (so `POST /admin/config/rollback` can serve the version the run found
again). Its canaries are judged by the gateway itself; the runner only watches. The
tolerances can fail: a bad canary expected to be promoted fails its check, and a
rollout still running when the run ends is aborted. The schema refuses bad steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chaos.runner.gateway_api import GatewayProblem
from chaos.runner.loading import ExperimentError, load_experiment, parse_experiment
from chaos.runner.merge_patch import apply_patch
from chaos.runner.rollout import candidate_document
from chaos.runner.schema import RolloutStep
from gateway.app import create_app
from gateway.cli import main
from gateway.config import DEFAULT_CONFIG_RESOURCE
from gateway.reload import validate
from tests.support import ServerThread

NAME = "bad-config-rollout"
#: As tests/test_chaos_experiments.py runs the library: the bounds do not scale
#: (a rollout's phase runs until it is decided), so the short form takes ~13 s.
SCALE = 0.15
VERSION = "x-seawall-config-version"


def experiment_source() -> dict[str, Any]:
    path = resources.files("chaos").joinpath("experiments", f"{NAME}.yaml")
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.fixture
def gateway() -> Iterator[ServerThread]:
    """The embedded default plus the experiment's `gateway:` sections, as `seawall
    chaos run` builds it, but served with its documents (version #1 can be served
    again by `POST /admin/config/rollback`)."""
    default = resources.files("gateway").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
    sections = load_experiment(NAME).gateway
    files = {DEFAULT_CONFIG_RESOURCE: default, "experiment.yaml": yaml.safe_dump(sections)}
    config = validate(files, "<test>", serve_on="127.0.0.1")
    with ServerThread(create_app(config, documents=files, origin="<test>")) as server:
        yield server


def serving(gateway: ServerThread) -> str:
    return str(httpx.get(gateway.url + "/readyz", timeout=10).headers[VERSION])


def run(reference: str, gateway: ServerThread, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "report.json"
    args = ["chaos", "run", reference, "--scale", str(SCALE), "--url", gateway.url]
    code = main([*args, "--report", str(path)])
    return code, json.loads(path.read_text())


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{phase['name']}: {check['name']}": check
        for phase in report["phases"]
        for check in phase["checks"]
    }


def failed(report: dict[str, Any]) -> set[str]:
    return {name for name, check in checks(report).items() if not check["ok"]}


@pytest.mark.timeout(90)
def test_bad_canary_rolled_back_in_bound_good_one_promoted_and_the_found_version_restored(
    gateway: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = serving(gateway)
    code, report = run(NAME, gateway, tmp_path)
    output = capsys.readouterr().out
    assert code == 0, f"{failed(report)}\n{output}"
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert list(phases) == ["before", "bad-canary", "good-canary", "after"]

    bad = phases["bad-canary"]["rollout"]
    assert bad["state"] == "rolled_back"
    assert bad["baseline"]["id"] == found
    assert [step["action"] for step in bad["steps"]] == ["started", "rolled_back"]
    assert "burn rate" in bad["steps"][-1]["reason"]
    # The documented bound: min_samples / (rate x share) + check_interval_s = 4.5 s,
    # checked as at most 6 s; and not before the candidate had its samples.
    decided = checks(report)["bad-canary: rollout decided within 6 s"]["value"]
    assert 0 < decided <= 6
    assert bad["samples"]["candidate"] >= 40
    assert checks(report)["bad-canary: the serving version's traffic saw no failure"][
        "value"
    ] == pytest.approx(1.0)
    assert checks(report)["bad-canary: the candidate's failures reached its clients"]["value"] > 0

    good = phases["good-canary"]["rollout"]
    assert good["state"] == "promoted"
    assert [step["action"] for step in good["steps"]] == ["started", "promoted"]
    promoted_after = checks(report)["good-canary: rollout decided within 7 s"]["value"]
    assert 5 <= promoted_after <= 7  # bake_s, and at most the bound

    # Left as found: the promoted version replaced by the one the run began with.
    assert "restored config version " + found in report["rollback"], report["rollback"]
    assert serving(gateway) == found
    markdown = tmp_path.joinpath("report.md").read_text()
    assert "| +0.00 s | started |" in markdown
    assert "| rolled_back |" in markdown and "| promoted |" in markdown


@pytest.mark.timeout(60)
def test_a_bad_canary_expected_to_be_promoted_fails_its_check(
    gateway: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = experiment_source()
    source["name"] = "bad-canary-expected-promoted"
    before, bad, _, after = source["phases"]
    bad["rollout"]["expect"] = "promoted"
    source["phases"] = [before, bad, after]
    path = tmp_path / "expects-promoted.yaml"
    path.write_text(yaml.safe_dump(source))
    code, report = run(str(path), gateway, tmp_path)
    capsys.readouterr()
    assert code == 1
    assert report["verdict"] == "failed"
    assert failed(report) == {"bad-canary: rollout ended promoted"}
    check = checks(report)["bad-canary: rollout ended promoted"]
    assert check["value"] == 0 and check["note"].startswith("rolled_back: ")


@pytest.mark.timeout(60)
def test_a_rollout_still_running_at_the_end_is_aborted(
    gateway: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The good canary needs bake_s (5 s) but the step allows 1 s: the phase ends with
    it running, the check fails, and the run's rollback aborts it."""
    source = experiment_source()
    source["name"] = "undecided-rollout"
    before, _, good, after = source["phases"]
    good["rollout"]["within_s"] = 1
    source["phases"] = [before, good, after]
    path = tmp_path / "undecided.yaml"
    path.write_text(yaml.safe_dump(source))
    found = serving(gateway)
    code, report = run(str(path), gateway, tmp_path)
    capsys.readouterr()
    assert code == 1
    assert failed(report) == {
        "good-canary: rollout ended promoted",
        "good-canary: rollout decided within 1 s",
    }
    note = checks(report)["good-canary: rollout ended promoted"]["note"]
    assert note.startswith("running (last verdict: "), note
    assert "aborted the rollout of config version" in report["rollback"]
    state = httpx.get(gateway.url + "/admin/config/rollout", timeout=10).json()
    assert state["state"] == "aborted"
    assert state["steps"][-1]["reason"] == "chaos experiment undecided-rollout ended"
    assert serving(gateway) == found


# -- the schema ------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "name": "rollout",
    "title": "a rollout",
    "load": {"rate": 10, "mix": {"chat": 1}},
    "hypothesis": [{"probe": "success_ratio", "min": 0.99}],
}
STEP: dict[str, Any] = {
    "candidate": {"models": [{"name": "demo", "deployments": []}]},
    "expect": "rolled_back",
    "within_s": 6,
}


def problems(step: dict[str, Any], **phase: Any) -> list[str]:
    phases = [
        {"name": "before", "seconds": 1, "steady_state": True},
        {"name": "canary", "seconds": 1, "rollout": step, **phase},
        {"name": "after", "seconds": 1, "steady_state": True},
    ]
    try:
        parse_experiment({**BASE, "phases": phases}, "<test>")
    except ExperimentError as exc:
        return list(exc.problems)
    return []


def test_a_good_step_is_valid() -> None:
    assert problems(STEP) == []
    assert problems({**STEP, "share": 0, "tenants": ["acme"]}) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"candidate": {}}, "phases[1].rollout.candidate: an empty patch changes nothing"),
        (
            {"candidate": {"reload": {"frozen_until": date(2026, 1, 1)}}},
            "phases[1].rollout.candidate: not a JSON merge patch: "
            "reload.frozen_until: a date is not a JSON value (quote it)",
        ),
        (
            {"candidate": {"models": {1: "x"}}},
            "phases[1].rollout.candidate: not a JSON merge patch: models: key 1 is not a string",
        ),
        ({"candidate": {"x": float("nan")}}, "not a JSON merge patch: x: nan is not a JSON number"),
        ({"candidate": "models: []"}, "phases[1].rollout.candidate: Input should be a valid dict"),
        (
            {"expect": "done"},
            "phases[1].rollout.expect: Input should be 'promoted' or 'rolled_back'",
        ),
        ({"expect": None}, "phases[1].rollout.expect"),
        ({"within_s": 0}, "phases[1].rollout.within_s: Input should be greater than 0"),
        ({"share": 1.5}, "phases[1].rollout.share: Input should be less than or equal to 1"),
        ({"share": 0}, "a canary needs a share above 0 or some tenants"),
        ({"surprise": 1}, "phases[1].rollout.surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_steps_are_refused(change: dict[str, Any], expected: str) -> None:
    found = problems({**STEP, **change})
    assert any(expected in problem for problem in found), found


def test_rollout_phase_rules() -> None:
    steady = problems(STEP, steady_state=True)
    assert "phases[1]: a steady_state phase cannot start a rollout" in steady
    faulted = problems(STEP, faults=[{"via": "header", "spec": "latency;ms=5"}])
    assert any("injects faults or starts a rollout, not both" in p for p in faulted)
    with pytest.raises(ExperimentError) as caught:
        parse_experiment(
            {
                **BASE,
                "hypothesis": [
                    {"probe": "success_ratio", "version": "baseline", "min": 1},
                    {"probe": "rollout_decided_s", "max": 5},
                ],
                "phases": [
                    {"name": "canary", "seconds": 1, "rollout": STEP},
                    {"name": "after", "seconds": 1, "steady_state": True},
                ],
                "safety": {"abort": [{"probe": "requests", "version": "candidate", "below": 1}]},
            },
            "<test>",
        )
    found = caught.value.problems
    assert "phases: the steady state must be checked before the first fault phase" in found
    assert (
        "hypothesis[0].version: only a phase with a rollout has a baseline and a candidate" in found
    )
    assert (
        "hypothesis[1].probe: only a phase with a rollout has a baseline and a candidate" in found
    )
    assert (
        "safety.abort[0].version: only a phase with a rollout has a baseline and a candidate"
        in found
    )
    assert problems(STEP, hypothesis=[{"probe": "rollout_decided_s", "max": 5}]) == []
    assert any(
        "probe 'rollout_decided_s' does not take 'kinds'" in p
        for p in problems(
            STEP, hypothesis=[{"probe": "rollout_decided_s", "kinds": ["chat"], "max": 5}]
        )
    )


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "list": [3]}
    assert apply_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "list": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # not changed
    assert apply_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert apply_patch({"a": "foo"}, {"a": {"b": "c"}}) == {"a": {"b": "c"}}


def test_a_candidate_still_holding_a_masked_secret_is_refused_by_path() -> None:
    serving = {
        "receipts": {"keys": [{"id": "demo", "secret": "**********"}]},
        "limits": {"store": "redis://user:***@host:6379/0"},
        "models": [],
    }
    step = RolloutStep.model_validate({**STEP, "candidate": {"models": [{"name": "x"}]}})
    with pytest.raises(GatewayProblem) as caught:
        candidate_document(serving, step)
    assert "receipts.keys[0].secret, limits.store" in str(caught.value)
    restated = {"receipts": {"keys": [{"id": "demo", "secret": "env:RECEIPT_KEY"}]}}
    fixed = RolloutStep.model_validate(
        {**STEP, "candidate": {**restated, "limits": {"store": "memory"}}}
    )
    document = json.loads(candidate_document(serving, fixed))
    assert document["receipts"]["keys"][0]["secret"] == "env:RECEIPT_KEY"
