"""The chaos experiment runner (chaos/runner): the experiment schema, the probe and
statistics math, the report writers, the CLI, and runs against a real gateway."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import chaos.runner.execute as execute
from chaos.runner import command
from chaos.runner.execute import Run
from chaos.runner.injection import AdminFaults, HeaderFaults
from chaos.runner.load import OpenLoop
from chaos.runner.loading import ExperimentError, load_experiment, parse_experiment, shipped
from chaos.runner.markdown import render_markdown
from chaos.runner.probes import PROBES, Evidence, evaluate
from chaos.runner.promtext import MetricSnapshot, deltas_by_label
from chaos.runner.results import PhaseResult, RunResult, to_json
from chaos.runner.safety import SafetyMonitor, window
from chaos.runner.samples import SHED, TIMEOUT, Sample, hop_parts
from chaos.runner.schema import Experiment, FaultEntry, ProbeSpec
from chaos.runner.stats import percentile, ratio
from chaos.runner.streams import StreamReader
from chaos.runner.svg import breaker_runs, chart_svg, phase_spans
from chaos.runner.timeline import Point, Timeline
from gateway.app import create_app
from gateway.cli import main
from gateway.config import load_config
from tests.examples import examples
from tests.support import ServerThread, bound_socket, running_gateway

SHIPPED = [entry.name for entry in shipped()]
MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "title": "a tiny experiment",
    "load": {"rate": 10, "mix": {"chat": 1}},
    "hypothesis": [{"probe": "success_ratio", "min": 0.99}],
    "phases": [{"name": "before", "seconds": 1, "steady_state": True}],
}


def experiment(**changes: Any) -> Experiment:
    return parse_experiment({**MINIMAL, **changes}, "<test>")


def write(path: Path, data: Any) -> str:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sample(**fields: Any) -> Sample:
    base: dict[str, Any] = {"kind": "chat", "phase": "p", "sent": 0.0, "done": 0.01}
    return Sample(**{**base, **fields})


# -- the experiment file ------------------------------------------------------------


def test_bad_file_exits_2_listing_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        "name": "bad",
        "title": "bad",
        "colour": "blue",
        "load": {"rate": 0, "mix": {"chat": 1, "video": 2}},
        "hypothesis": [{"probe": "success_ratio"}],
        "phases": [
            {"name": "chaos", "seconds": 5, "faults": [{"via": "header", "spec": "gremlins"}]},
            {
                "name": "chaos",
                "seconds": 5,
                "faults": [
                    {"via": "admin", "spec": "latency;ms=5, connect_refused"},
                    {"via": "admin", "fault": "http_error", "status": 200},
                ],
                "headers": {"X-Seawall-Chaos": "latency"},
            },
        ],
    }
    code, out, err = run_cli(["chaos", "run", write(tmp_path / "bad.yaml", bad)], capsys)
    assert code == 2
    assert out == ""
    expected = [
        "colour: Extra inputs are not permitted",
        "load.rate: Input should be greater than 0",
        "load.mix.video",
        "unknown request kind",
        "hypothesis[0]: a probe needs a tolerance",
        "phases[0].faults[0]: unknown fault 'gremlins'",
        "phases[1].faults[0]: an admin fault is one fault",
        "phases[1].faults[1]: http_error: status='200': must be an HTTP error status",
        "phases[1].headers: put faults in `faults`",
    ]
    for problem in expected:
        assert problem in err, problem
    assert "Traceback" not in err


def test_cross_field_problems_are_all_listed() -> None:
    with pytest.raises(ExperimentError) as caught:
        experiment(
            hypothesis=[
                {"probe": "happiness", "min": 1},
                {"probe": "share", "min": 0.5},
                {"probe": "p99_ms", "max": 100, "mode": "wrong"},
                {"probe": "success_ratio", "kinds": ["stream"], "min": 1},
                {"probe": "breaker_openings", "kinds": ["chat"], "min": 1},
            ],
            phases=[
                {"name": "chaos", "seconds": 5, "faults": [{"via": "admin", "spec": "latency"}]},
                {"name": "calm", "seconds": 5, "steady_state": True},
                {
                    "name": "calm",
                    "seconds": 5,
                    "steady_state": True,
                    "faults": [{"via": "header", "spec": "latency", "steps": ["reply"]}],
                },
            ],
            safety={"max_seconds": 10, "abort": [{"probe": "breaker_openings", "below": 2}]},
        )
    problems = caught.value.problems
    assert "hypothesis[0].probe: unknown probe 'happiness'" in problems[0]
    assert "hypothesis[1]: probe 'share' needs 'deployment'" in problems
    assert "hypothesis[2].mode: probe 'p99_ms' does not take 'mode'" in problems
    assert "hypothesis[3].kinds: 'stream' is never sent (not in any load mix)" in problems
    assert "hypothesis[4].kinds: probe 'breaker_openings' does not take 'kinds'" in problems
    assert (
        "safety.abort[0].probe: abort rules take request probes only, not 'breaker_openings'"
        in problems
    )
    assert "phases: duplicate phase name 'calm'" in problems
    assert "phases[2]: a steady_state phase cannot inject faults" in problems
    assert "phases: the steady state must be checked before the first fault phase" in problems
    assert any(p.startswith("safety.max_seconds: 10 is less than the phases' 15") for p in problems)
    assert any(p.startswith("phases[2].faults[0].steps:") for p in problems)


def test_unknown_name_and_bad_yaml_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["chaos", "run", "no-such-experiment"], capsys)
    assert code == 2
    assert "no such file, nor a shipped experiment" in err and "provider-outage" in err
    code, _, err = run_cli(["chaos", "run", write(tmp_path / "x.yaml", "name: [")], capsys)
    assert code == 2 and "YAML syntax error" in err
    code, _, err = run_cli(["chaos", "run", write(tmp_path / "y.yaml", "- 1")], capsys)
    assert code == 2 and "the experiment must be a YAML mapping" in err


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiments_are_valid_and_dry_run(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = load_experiment(name)
    assert experiment.name == name
    code, out, _ = run_cli(["chaos", "run", name, "--dry-run"], capsys)
    assert code == 0
    assert out.startswith(f"experiment {name}: {experiment.title}")
    for phase in experiment.phases:
        assert f". {phase.name}: {phase.seconds:g} s" in out
    assert "rollback, always: DELETE /admin/chaos" in out


def test_library_has_the_ten_experiments(capsys: pytest.CaptureFixture[str]) -> None:
    required = {
        "latency-and-loss",
        "provider-outage",
        "dns-failure",
        "tls-handshake-timeout",
        "dyed-traffic",
        "llm-avalanche",
        "prompt-explosion",
        "forged-tool-replies",
        "rate-limit-storm",
        "mid-stream-cut",
    }
    assert required <= set(SHIPPED)
    code, out, _ = run_cli(["chaos", "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(SHIPPED)
    for entry in shipped():
        assert any(line.startswith(entry.name) and entry.title in line for line in lines)


def test_a_file_path_resolves_before_a_shipped_name(tmp_path: Path) -> None:
    path = write(tmp_path / "provider-outage", {**MINIMAL, "name": "local"})
    assert load_experiment(path).name == "local"


def test_scale_multiplies_phases_and_the_safety_limit_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    original = load_experiment("provider-outage")
    scaled = original.scaled(0.2)
    for before, after in zip(original.phases, scaled.phases, strict=True):
        assert after.seconds == pytest.approx(before.seconds * 0.2)
        assert after.wait_timeout_s == before.wait_timeout_s
    assert scaled.safety.max_seconds == pytest.approx(original.safety.max_seconds * 0.2)
    assert [r.window_s for r in scaled.safety.abort] == [r.window_s for r in original.safety.abort]
    code, out, _ = run_cli(
        ["chaos", "run", "provider-outage", "--dry-run", "--scale", "0.2"], capsys
    )
    assert code == 0
    assert "2. outage: 2.4 s" in out and "at scale 0.2" in out
    code, _, err = run_cli(["chaos", "run", "provider-outage", "--scale", "0"], capsys)
    assert code == 2 and "--scale must be above 0" in err


def test_fault_written_as_spec_or_keys_is_the_same_fault() -> None:
    as_keys = FaultEntry.model_validate(
        {
            "via": "admin",
            "fault": "http_error",
            "status": 429,
            "retry_after_ms": 200,
            "p": 0.5,
            "target": "mock-fast",
        }
    )
    as_spec = FaultEntry.model_validate(
        {"via": "admin", "spec": "http_error;status=429;retry_after_ms=200;p=0.5;target=mock-fast"}
    )
    expected = {
        "fault": "http_error",
        "target": "mock-fast",
        "p": 0.5,
        "status": 429,
        "retry_after_ms": 200,
        "duration_s": 12.0,
    }
    assert as_keys.admin_body(12) == expected == as_spec.admin_body(12)
    assert (
        as_keys.header_text() == "http_error;status=429;retry_after_ms=200;p=0.5;target=mock-fast"
    )


def test_header_faults_go_to_their_kinds_and_tool_steps() -> None:
    phase = experiment(
        load={"rate": 10, "mix": {"chat": 1, "tool": 1}},
        phases=[
            {"name": "before", "seconds": 1, "steady_state": True},
            {
                "name": "forge",
                "seconds": 1,
                "headers": {"x-extra": "1"},
                "faults": [
                    {"via": "header", "spec": "latency;ms=5"},
                    {
                        "via": "header",
                        "spec": "forge_tool;tool=get_weather;mode=wrong",
                        "kinds": ["tool"],
                        "steps": ["reply"],
                    },
                ],
            },
            {"name": "after", "seconds": 1, "steady_state": True},
        ],
    ).phases[1]
    faults = HeaderFaults(phase)
    chat, tool = faults.for_kind("chat"), faults.for_kind("tool")
    assert chat("call") == {"x-extra": "1", "x-seawall-chaos": "latency;ms=5"}
    assert tool("call")["x-seawall-chaos"] == "latency;ms=5"
    assert tool("reply")["x-seawall-chaos"] == (
        "latency;ms=5, forge_tool;tool=get_weather;mode=wrong"
    )
    assert faults.forge_mode("tool") == "wrong" and faults.forge_mode("chat") is None


# -- statistics and probes ----------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=200), st.floats(min_value=0, max_value=1))
def test_percentile_is_the_nearest_rank(values: list[float], q: float) -> None:
    """The smallest observed value with at least q of the data at or below it."""
    need = Fraction(q) * len(values)
    brute = min(v for v in values if sum(x <= v for x in values) >= max(need, 1))
    assert percentile(values, q) == brute


def test_percentile_edges() -> None:
    assert percentile([], 0.5) is None
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([3.0], 0.0) == 3.0
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 1.5)
    assert ratio(0, 0) is None and ratio(1, 4) == 0.25


statuses = st.sampled_from([200, 200, 200, 400, 429, 502, 503, 0])
kinds = st.sampled_from(["chat", "stream", "tool", "huge_prompt"])
faults = st.lists(st.sampled_from(["latency@a", "stream_cut@b", "forge_tool@tool:x"]), max_size=2)
hops = st.lists(st.sampled_from(["demo/a", "demo/a!503", "demo/b", "demo/b!429"]), max_size=3)
samples = st.lists(
    st.builds(
        lambda kind, status, injected, route, latency, deployment: sample(
            kind=kind,
            status=status,
            ok=status == 200,
            code=None if status == 200 else f"code{status}",
            injected=tuple(injected),
            routes=(" > ".join(route),) if route else (),
            deployment=deployment,
            done=latency,
        ),
        kinds,
        statuses,
        faults,
        hops,
        st.floats(min_value=0.001, max_value=5),
        st.sampled_from([None, "a", "b"]),
    ),
    max_size=60,
)


def measure(probe: str, data: list[Sample], **params: Any) -> float | None:
    spec = ProbeSpec.model_validate({"probe": probe, "min": 0, **params})
    return PROBES[probe].measure(spec, Evidence("demo", data))


@settings(max_examples=examples(200))
@given(
    samples,
    st.sampled_from([(), ("chat",), ("stream", "tool")]),
    st.sampled_from([None, "latency"]),
)
def test_request_probes_match_brute_force(
    data: list[Sample], kinds: tuple[str, ...], fault: str | None
) -> None:
    params: dict[str, Any] = {"kinds": list(kinds), "fault": fault}
    chosen = [
        s
        for s in data
        if (not kinds or s.kind in kinds)
        and (fault is None or any(e.startswith(fault + "@") for e in s.injected))
    ]
    expected_ok = [
        s
        for s in chosen
        if s.kind != "huge_prompt"
        and not any(e.split("@")[0] in ("stream_cut", "forge_tool") for e in s.injected)
    ]
    assert measure("requests", data, **params) == len(chosen)
    assert measure("success_ratio", data, **params) == (
        sum(s.status == 200 for s in expected_ok) / len(expected_ok) if expected_ok else None
    )
    errors = [s for s in chosen if s.status == 503]
    assert measure("error_count", data, status=503, **params) == len(errors)
    assert measure("error_ratio", data, status=503, **params) == (
        len(errors) / len(chosen) if chosen else None
    )
    routed = [s for s in chosen if s.routes]
    hopped = [s for s in routed if s.routes[0].count(">") >= 1]
    assert measure("fallback_rate", data, **params) == (
        len(hopped) / len(routed) if routed else None
    )
    assert measure("injected", data, **params) == sum(1 for s in chosen if s.injected)
    served = [s for s in chosen if s.status == 200 and s.deployment]
    assert measure("share", data, deployment="a", **params) == (
        sum(s.deployment == "a" for s in served) / len(served) if served else None
    )
    latencies = sorted(s.latency_ms for s in chosen if s.status == 200)
    if latencies:
        rank = math.ceil(Fraction(99, 100) * len(latencies))
        assert measure("p99_ms", data, **params) == latencies[rank - 1]
    else:
        assert measure("p99_ms", data, **params) is None


def test_route_probes() -> None:
    assert hop_parts("demo/mock-fast(hedge)!503") == ("demo/mock-fast", "503")
    assert hop_parts("demo/mock-slow") == ("demo/mock-slow", "")
    data = [
        sample(routes=("demo/a!429 > demo/a",), done=0.25, ok=True, status=200),
        sample(routes=("demo/a!429 > demo/a",), done=0.05, ok=True, status=200),
        sample(routes=("demo/a!429 > demo/b",), done=0.01, ok=True, status=200),
        sample(kind="huge_prompt", status=400, code="context_length_exceeded"),
        sample(kind="huge_prompt", status=400, routes=("demo/a!400",)),
    ]
    assert measure("retry_after_honoured", data, ms=200) == 0.5
    assert measure("provider_attempts_for_rejected", data) == 1
    assert measure("provider_attempts_for_rejected", data[:4]) == 0
    assert measure("provider_attempts_for_rejected", data[:3]) is None


def test_forged_detection_rate_by_mode() -> None:
    def forged(mode: str, caught: str | None) -> Sample:
        return sample(
            kind="tool", injected=("forge_tool@tool:x",), forge_mode=mode, caught_by=caught
        )

    data = [forged("wrong", "receipt"), forged("wrong", None), forged("invalid", "schema")]
    data.append(sample(kind="tool", ok=True, status=200))
    assert measure("forged_detection_rate", data) == pytest.approx(2 / 3)
    assert measure("forged_detection_rate", data, mode="wrong") == 0.5
    assert measure("forged_detection_rate", data, mode="inject") is None


def test_a_probe_without_data_fails() -> None:
    spec = ProbeSpec(probe="success_ratio", min=0.5)
    check = evaluate(spec, Evidence("demo", []))
    assert not check.ok and check.value is None and check.note == "no data"


METRICS = """\
# TYPE seawall_upstream_attempts_total counter
seawall_upstream_attempts_total{group="demo",deployment="a",outcome="ok"} 10.0
seawall_upstream_attempts_total{group="demo",deployment="b",outcome="connect"} 4.0
seawall_upstream_attempts_total{group="other",deployment="c",outcome="ok"} 100.0
# TYPE seawall_guard_events_total counter
seawall_guard_events_total{kind="prompt_too_large",action="reject"} 3.0
"""


def test_metric_probes_are_deltas_over_the_phase() -> None:
    before = MetricSnapshot.parse(METRICS)
    after = MetricSnapshot.parse(
        METRICS.replace("} 10.0", "} 30.0").replace("} 4.0", "} 9.0").replace("} 3.0", "} 5.0")
    )
    data = [sample(routes=("demo/a",)) for _ in range(15)]
    data += [sample(routes=("demo/b!connect > demo/a",)) for _ in range(5)]
    evidence = Evidence("demo", data, before, after)

    def value(probe: str, **params: Any) -> float | None:
        spec = ProbeSpec.model_validate({"probe": probe, "min": 0, **params})
        return PROBES[probe].measure(spec, evidence)

    assert value("upstream_attempts") == 25
    assert value("upstream_attempts", deployment="b") == 5
    assert value("upstream_attempts", labels={"outcome": "ok"}) == 20
    assert value("amplification") == 1.25
    assert value("guard_events", labels={"kind": "prompt_too_large"}) == 2
    assert deltas_by_label(before, after, "seawall_guard_events_total", "kind") == {
        "prompt_too_large": 2
    }
    # From the requests' own routes: no scrape needed, and none routed is no ratio.
    spec = ProbeSpec(probe="amplification", max=1)
    assert PROBES["amplification"].measure(spec, Evidence("demo", data)) == 1.25
    assert PROBES["amplification"].measure(spec, Evidence("demo", [sample()])) is None


# -- streams, the load, the timeline, safety ----------------------------------------


def feed(reader: StreamReader, *events: str) -> StreamReader:
    for event in events:
        for line in event.split("\n"):
            reader.feed(line)
        reader.feed("")
    return reader


def chunk(delta: dict[str, Any], finish: str | None = None, id: str = "c1") -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return "data: " + json.dumps({"id": id, "choices": [choice]})


def test_stream_reader_tells_complete_interrupted_truncated_and_spliced() -> None:
    whole = [chunk({"role": "assistant"}), chunk({"content": "hi"}), chunk({}, "stop")]
    complete = feed(StreamReader(), *whole, "data: [DONE]")
    assert complete.ok and not complete.silent_failure and complete.failure_code is None
    error = 'event: error\ndata: {"error": {"code": "stream_interrupted", "message": "x"}}'
    cut = feed(StreamReader(), *whole[:2], error)
    assert cut.errored and not cut.silent_failure and cut.failure_code == "stream_interrupted"
    truncated = feed(StreamReader(), *whole[:2])
    assert truncated.silent_failure and truncated.failure_code == "stream_truncated"
    spliced = feed(StreamReader(), *whole[:2], *whole, "data: [DONE]")
    assert spliced.spliced and spliced.silent_failure and not spliced.ok
    switched = feed(StreamReader(), whole[0], chunk({"content": "x"}, id="c2"), "data: [DONE]")
    assert switched.spliced


async def test_open_loop_sends_on_schedule_and_sheds_over_concurrency() -> None:
    recorded: list[Sample] = []
    never = asyncio.Event()
    clock = asyncio.get_running_loop().time

    async def issue(kind: str) -> Sample:
        await never.wait()
        raise AssertionError("unreachable")

    experiment_load = experiment(load={"rate": 100, "concurrency": 2, "mix": {"chat": 1}}).load
    loop = OpenLoop(experiment_load, "p", random.Random(0), issue, recorded.append, clock)
    await loop.run(0.1, asyncio.Event())
    assert loop.sent == 10 and loop.in_flight == 2
    assert [s.code for s in recorded] == [SHED] * 8
    await loop.drain(0)
    assert [s.code for s in recorded[8:]] == [TIMEOUT, TIMEOUT]
    assert loop.in_flight == 0


def test_timeline_counts_each_second_once() -> None:
    timeline = Timeline()
    done = [sample(ok=True, status=200, done=0.5), sample(code="x", done=0.9)]
    first = timeline.tick(1.0, "before", done, {"a": "open"}, 1)
    assert first.requests == 2 and first.success_ratio == 0.5 and first.open_breakers == ["a"]
    done.append(sample(ok=True, status=200, injected=("latency@a",), done=1.5))
    second = timeline.tick(2.0, "before", done, None, 0)
    assert second.requests == 1 and second.injected == {"latency": 1}


@given(
    st.lists(st.floats(min_value=0, max_value=100), max_size=50),
    st.floats(0, 100),
    st.floats(0.1, 20),
)
def test_safety_window_is_the_recent_completions(
    done: list[float], now: float, seconds: float
) -> None:
    completed = [sample(done=d) for d in sorted(done)]
    assert list(window(completed, now, seconds)) == [
        s for s in completed if s.done >= now - seconds
    ]


def test_safety_aborts_on_a_rule_or_the_time_limit() -> None:
    safety = experiment(
        safety={
            "max_seconds": 30,
            "abort": [{"probe": "success_ratio", "below": 0.5, "window_s": 2, "min_requests": 3}],
        }
    ).safety
    monitor = SafetyMonitor(safety, "demo", 30)
    failing = [sample(done=9.5, code="x") for _ in range(3)]
    assert monitor.check(10, failing[:2]) is None  # too few to judge
    reason = monitor.check(10, failing)
    assert reason is not None and "success_ratio = 0 < 0.5 over the last 2 s" in reason
    assert monitor.check(12, failing) is None  # out of the window
    assert "max_seconds" in (monitor.check(31, []) or "")


# -- reports ----------------------------------------------------------------------


def synthetic_result() -> RunResult:
    exp = load_experiment("forged-tool-replies")
    points = [
        Point(
            float(t),
            "before" if t < 4 else "forge-wrong",
            10,
            1.0,
            40.0,
            90.0 + t,
            {},
            {"mock-fast": "open" if 4 <= t < 7 else "closed", "mock-slow": "closed"},
        )
        for t in range(1, 10)
    ]
    forged = [
        sample(
            kind="tool",
            phase="forge-wrong",
            status=400,
            code="tool_result_forged",
            injected=("forge_tool@tool:get_weather",),
            forge_mode="wrong",
            caught_by="receipt",
        )
        for _ in range(4)
    ]
    check = evaluate(
        ProbeSpec(probe="forged_detection_rate", mode="wrong", min=1), Evidence("demo", forged)
    )
    phase = PhaseResult(
        "forge-wrong",
        False,
        8,
        3.0,
        9.0,
        ["header: forge_tool;mode=wrong"],
        [check],
        {
            "requests": 4,
            "ok": 0,
            "expected_to_fail": 4,
            "by_kind": {"tool": 4},
            "by_status": {"400": 4},
            "by_code": {},
            "by_deployment": {},
            "injected": {"forge_tool": 4},
            "chaos_ignored": 0,
        },
        guard_events={"tool_result_forged": 4},
    )
    return RunResult(
        exp,
        "forged-tool-replies",
        "http://x",
        1.0,
        "2026-01-01T00:00:00+00:00",
        phases=[phase],
        timeline=points,
        samples=forged,
    )


def test_svg_chart_draws_lines_phases_and_breaker_bands() -> None:
    result = synthetic_result()
    svg = chart_svg(result)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "before" in texts and "forge-wrong" in texts and "mock-fast" in texts
    assert len(root.findall(f"{ns}polyline")) == 2
    assert breaker_runs(result.timeline, "mock-fast") == [("open", 3.0, 6.0)]
    assert breaker_runs(result.timeline, "mock-slow") == []
    assert [(s.label, s.start, s.end) for s in phase_spans(result.timeline)] == [
        ("before", 0.0, 3.0),
        ("forge-wrong", 3.0, 9.0),
    ]
    assert sum(1 for r in root.iter(f"{ns}rect") if r.get("fill") == "#d9534f") == 1


def test_markdown_report_states_what_only_receipts_catch() -> None:
    markdown = render_markdown(synthetic_result(), "chart.svg")
    assert markdown.startswith("# Chaos experiment `forged-tool-replies`: PASSED")
    assert "![success ratio, p99 latency and breaker states over time](chart.svg)" in markdown
    assert "| forged_detection_rate(mode=wrong) | 1 | ≥ 1 | ok |" in markdown
    assert "**A schema cannot catch a schema-valid wrong value.**" in markdown
    assert "| wrong | 4 | 4 | 100% | receipt 4 | 4 | 0 | 0 |" in markdown
    assert "the output schema found 0 problem(s) with them, receipts flagged 4" in markdown
    # Modes the experiment declares appear even when no round was forged with them.
    assert "| invalid | 0 | 0 | no data |" in markdown


def test_json_report_and_files(tmp_path: Path) -> None:
    result = synthetic_result()
    paths = command.write_reports(result, tmp_path / "out" / "run.json")
    assert [p.name for p in paths] == ["run.json", "run.md", "run.svg"]
    report = json.loads(paths[0].read_text())
    assert report == to_json(result) | {"timeline": report["timeline"]}
    assert report["verdict"] == "passed" and report["exit_code"] == 0
    assert report["phases"][0]["checks"][0]["tolerance"] == {"min": 1.0, "max": None}
    assert report["forged_tool_rounds"] == [
        {"mode": "wrong", "rounds": 4, "caught": 4, "rate": 1.0, "caught_by": {"receipt": 4}}
    ]
    assert report["timeline"][3]["breakers"] == {"mock-fast": "open", "mock-slow": "closed"}
    assert "run.svg" in paths[1].read_text()
    name = command.default_report_path("x").name
    assert name.startswith("x-") and name.endswith("Z.json")


def test_runner_never_imports_the_gateway() -> None:
    code = (
        "import sys, chaos.runner.command, chaos.runner.execute\n"
        "bad = sorted(m for m in sys.modules if m == 'gateway' or m.startswith('gateway.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- against a real gateway --------------------------------------------------------

STEADY = {
    "name": "steady",
    "title": "every request kind, no faults",
    "load": {"rate": 25, "mix": {"chat": 2, "stream": 1, "tool": 1, "huge_prompt": 1}},
    "hypothesis": [
        {"probe": "requests", "min": 10},
        {"probe": "success_ratio", "min": 1},
        {"probe": "p99_ms", "max": 2000},
        {"probe": "provider_attempts_for_rejected", "max": 0},
        {
            "probe": "error_ratio",
            "kinds": ["huge_prompt"],
            "code": "context_length_exceeded",
            "min": 1,
        },
        {"probe": "silent_stream_failures", "max": 0},
        {"probe": "injected", "max": 0},
        {"probe": "breakers_open", "max": 0},
        {"probe": "amplification", "max": 1},
    ],
    "phases": [
        {"name": "before", "seconds": 1.5, "steady_state": True},
        {"name": "after", "seconds": 1.5, "steady_state": True, "wait_for": "breakers_closed"},
    ],
}


@pytest.fixture
def gateway() -> Iterator[ServerThread]:
    with ServerThread(create_app(load_config(None))) as server:
        yield server


def test_steady_state_run_end_to_end(
    gateway: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "steady.yaml", STEADY)
    report = tmp_path / "steady.json"
    code, out, err = run_cli(
        ["chaos", "run", path, "--url", gateway.url, "--report", str(report)], capsys
    )
    assert code == 0, out + err
    assert "[before        ] t=" in out  # progress, once a second
    assert "steady: PASSED" in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "passed"
    assert [p["name"] for p in data["phases"]] == ["before", "after"]
    for phase in data["phases"]:
        assert all(check["ok"] for check in phase["checks"])
        assert set(phase["counts"]["by_kind"]) == {"chat", "stream", "tool", "huge_prompt"}
    assert data["timeline"] and data["timeline"][0]["breakers"] == {
        "mock-fast": "closed",
        "mock-slow": "closed",
    }
    assert report.with_suffix(".md").exists() and report.with_suffix(".svg").exists()


def test_a_hypothesis_that_does_not_hold_exits_1(
    gateway: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = {**MINIMAL, "hypothesis": [{"probe": "p99_ms", "max": 0.001}]}
    path = write(tmp_path / "failing.yaml", failing)
    code, out, _ = run_cli(
        ["chaos", "run", path, "--url", gateway.url, "--report", str(tmp_path / "r.json")], capsys
    )
    assert code == 1
    assert "FAIL p99_ms" in out and "tiny: FAILED" in out


async def test_abort_rolls_back_and_exits_1(gateway: ServerThread) -> None:
    """Every deployment answers 503: the abort rule stops the run mid-phase."""
    aborting = experiment(
        phases=[
            {"name": "before", "seconds": 0.5, "steady_state": True},
            {"name": "outage", "seconds": 60, "faults": [{"via": "admin", "spec": "http_error"}]},
            {"name": "after", "seconds": 1, "steady_state": True},
        ],
        safety={
            "abort": [{"probe": "success_ratio", "below": 0.5, "window_s": 2, "min_requests": 3}]
        },
    )
    out = io.StringIO()
    result = await Run(aborting, gateway.url, out, "t", 1.0).execute()
    assert result.verdict == "aborted" and result.exit_code == 1
    assert result.aborted is not None and result.aborted.startswith("safety.abort: success_ratio")
    assert [p.name for p in result.phases] == ["before", "outage"]
    assert result.phases[1].end_s < 30
    assert "ABORT: safety.abort" in out.getvalue()
    assert await _scheduled(gateway.url) == []


async def test_interrupt_rolls_back_the_faults(
    gateway: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C cancels the run's task: it still removes its faults and reports."""
    scheduled = asyncio.Event()
    original = AdminFaults.schedule

    async def schedule(self: AdminFaults, duration_s: float) -> list[str]:
        ids = await original(self, duration_s)
        if ids:
            scheduled.set()
        return ids

    monkeypatch.setattr(AdminFaults, "schedule", schedule)
    outage = experiment(
        phases=[
            {"name": "before", "seconds": 0.5, "steady_state": True},
            {
                "name": "outage",
                "seconds": 60,
                "faults": [{"via": "admin", "fault": "connect_refused", "target": "mock-fast"}],
            },
            {"name": "after", "seconds": 1, "steady_state": True},
        ]
    )
    run = asyncio.create_task(Run(outage, gateway.url, io.StringIO(), "t", 1.0).execute())
    await scheduled.wait()
    assert len(await _scheduled(gateway.url)) == 1
    run.cancel()
    result = await run
    assert result.aborted == "interrupted" and result.exit_code == 1
    assert await _scheduled(gateway.url) == []


async def _scheduled(url: str) -> list[Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        return list((await client.get("/admin/chaos")).json()["faults"])


def test_unreachable_gateway_is_an_aborted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    monkeypatch.setattr(execute, "READY_TIMEOUT_S", 0.3)
    path = write(tmp_path / "t.yaml", MINIMAL)
    report = str(tmp_path / "r.json")
    code, out, _ = run_cli(["chaos", "run", path, "--url", url, "--report", report], capsys)
    assert code == 1
    assert "aborted: gateway: gateway at" in out and "not ready" in out


def test_a_gateway_with_keys_needs_the_api_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "sk-chaos-operator"
    config = {
        "models": [
            {"name": "demo", "deployments": [{"id": "m", "provider": "mock", "model": "x"}]}
        ],
        "keys": [
            {
                "id": "ops",
                "key_sha256": hashlib.sha256(token.encode()).hexdigest(),
                "roles": ["user", "chaos", "admin"],
            }
        ],
    }
    path = write(tmp_path / "tiny.yaml", MINIMAL)
    args = ["chaos", "run", path, "--report", str(tmp_path / "r.json")]
    with running_gateway(config) as gateway:
        monkeypatch.delenv(command.API_KEY_VARIABLE, raising=False)
        code, out, _ = run_cli([*args, "--url", gateway.url], capsys)
        assert code == 1 and "model group 'demo': HTTP 401" in out
        monkeypatch.setenv(command.API_KEY_VARIABLE, token)
        code, out, _ = run_cli([*args, "--url", gateway.url], capsys)
        assert code == 0, out
