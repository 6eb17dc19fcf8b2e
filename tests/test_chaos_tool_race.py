"""The `tool-race` experiment and its request kind, `tool_race:<role>`.

Agents hold two-turn conversations with one tool at once; some cheat on their last
turn (a replayed, duplicated, swapped or earlier-turn result). The experiment runs
as a user runs it, `seawall chaos run tool-race --scale S`, against the embedded
default (tool in `enforce`), and against variants of it: the tool in `warn` (cheats
must be flagged, not refused) and in `off` (nothing is checked, so the detection
probes must fail: the tolerances can fail).

The experiment first found replays and swaps passing: the model's call ids collide
across conversations, and a receipt binds the call id, so another conversation's
receipted result verified as this call's own. The gateway now mints the ids of
calls to bound registered tools (tools/callids.py). The last tests hold that fix
without the runner, with a tool whose answer changes from call to call, so a passed
cheat would put another call's content in front of the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from chaos.runner.loading import ExperimentError, load_experiment, parse_experiment
from chaos.runner.probes import PROBES, Evidence
from chaos.runner.race import Board, Invoked, Swap, judge, violation_kinds
from chaos.runner.replies import Outcome, Reply
from chaos.runner.results import race_summaries
from chaos.runner.samples import Sample
from chaos.runner.schema import RACE_CHEATS, ProbeSpec
from gateway.cli import main
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, tool_call_body
from tests.support import ServerThread, running_gateway, tool_stack_config
from tools.violations import Violation, header_value

#: As in tests/test_chaos_experiments.py: a run of about seven seconds.
SCALE = 0.15
ROLES = ("genuine", *RACE_CHEATS)
#: The race phase's check for each cheat, by its label in tool-race.yaml.
LABELS = {
    "replay": "replayed results caught",
    "duplicate": "duplicated results caught",
    "swap": "swapped results caught",
    "earlier_turn": "earlier-turn results caught",
}


@dataclass(frozen=True)
class RaceRun:
    code: int
    report: dict[str, Any]
    markdown: str

    def kind(self, role: str) -> dict[str, Any]:
        return next(r for r in self.report["tool_race"] if r["kind"] == f"tool_race:{role}")

    def phase(self, name: str) -> dict[str, Any]:
        return next(p for p in self.report["phases"] if p["name"] == name)

    def check(self, phase: str, name: str) -> dict[str, Any]:
        return next(c for c in self.phase(phase)["checks"] if c["name"] == name)


def run_tool_race(directory: Path, url: str | None = None) -> RaceRun:
    path = directory / "tool-race.json"
    args = ["chaos", "run", "tool-race", "--scale", str(SCALE), "--report", str(path)]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*args, *(["--url", url] if url else [])])
    return RaceRun(code, json.loads(path.read_text()), path.with_suffix(".md").read_text())


def default_config(mode: str) -> dict[str, Any]:
    """The embedded default, its demo tool in `mode`."""
    config: dict[str, Any] = yaml.safe_load(
        resources.files("gateway").joinpath("default_config.yaml").read_text()
    )
    (tool,) = config["tools"]
    tool["mode"] = mode
    return config


@pytest.fixture(scope="module")
def enforce(tmp_path_factory: pytest.TempPathFactory) -> RaceRun:
    """The short form against the embedded default, run once for this module."""
    return run_tool_race(tmp_path_factory.mktemp("enforce"))


@pytest.fixture(scope="module")
def warn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaceRun]:
    with running_gateway(default_config("warn")) as gateway:
        yield run_tool_race(tmp_path_factory.mktemp("warn"), gateway.url)


def assert_accounted(run: RaceRun) -> None:
    """Every conversation is in the counts once, and every cheat got to cheat."""
    genuine = run.kind("genuine")
    assert genuine["conversations"] > 0
    assert sum(genuine["outcomes"].values()) == genuine["conversations"]
    for role in RACE_CHEATS:
        row = run.kind(role)
        assert row["conversations"] > 0, role
        assert row["cheating_results"] == row["conversations"], row
        assert sum(row["outcomes"].values()) == row["conversations"], row
        caught = sum(n for v, n in row["outcomes"].items() if v.split(":")[0] != "passed")
        assert row["caught"] == caught, row
        assert row["detection_rate"] == pytest.approx(row["caught"] / row["conversations"])


# -- the experiment, short form -------------------------------------------------------


@pytest.mark.timeout(120)
def test_genuine_conversations_are_served_cleanly(enforce: RaceRun) -> None:
    genuine = enforce.kind("genuine")
    assert genuine["outcomes"] == {"ok": genuine["conversations"]}
    for phase in ("before", "race", "after"):
        assert enforce.check(phase, "genuine conversations served cleanly")["value"] == 1
    assert enforce.report["phases"][0]["counts"]["by_kind"] == {
        "tool_race:genuine": enforce.report["phases"][0]["counts"]["requests"]
    }


@pytest.mark.timeout(120)
def test_every_outcome_is_counted_by_kind_in_both_reports(enforce: RaceRun) -> None:
    assert_accounted(enforce)
    for role in RACE_CHEATS:
        row = enforce.kind(role)
        check = enforce.check("race", LABELS[role])
        assert check["value"] == pytest.approx(row["detection_rate"])
        rate = f"{row['detection_rate']:.0%}"
        assert (
            f"| {role} | {row['conversations']} | - | {row['cheating_results']} | "
            f"{row['caught']} | {rate} |"
        ) in enforce.markdown
    genuine = enforce.kind("genuine")
    assert f"| genuine | {genuine['conversations']} | {genuine['conversations']} |" in (
        enforce.markdown
    )
    assert "## Tool race" in enforce.markdown
    # The exit code follows the checks, whatever they say.
    checks = [c["ok"] for p in enforce.report["phases"] for c in p["checks"]]
    assert enforce.code == (0 if all(checks) else 1)


@pytest.mark.timeout(120)
def test_duplicated_and_earlier_turn_results_are_refused(enforce: RaceRun) -> None:
    """The duplicate check refuses a second result for one call; the receipt refuses
    the first turn's result for the second turn's call (the mock's ids differ from
    turn to turn, so the receipt names another call)."""
    duplicate, earlier = enforce.kind("duplicate"), enforce.kind("earlier_turn")
    assert duplicate["outcomes"] == {"refused:tool_result_invalid": duplicate["conversations"]}
    assert earlier["outcomes"] == {"refused:tool_result_forged": earlier["conversations"]}
    events = enforce.phase("race")["guard_events"]
    assert events["tool_result_invalid"] >= duplicate["conversations"]
    assert events["tool_result_forged"] >= earlier["conversations"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("role", ["replay", "swap"])
def test_replayed_and_swapped_results_are_caught(enforce: RaceRun, role: str) -> None:
    assert enforce.kind(role)["detection_rate"] == 1


@pytest.mark.timeout(120)
def test_warn_mode_flags_cheats_instead_of_refusing_them(warn: RaceRun) -> None:
    assert_accounted(warn)
    genuine = warn.kind("genuine")
    assert genuine["outcomes"] == {"ok": genuine["conversations"]}
    duplicate, earlier = warn.kind("duplicate"), warn.kind("earlier_turn")
    assert duplicate["outcomes"] == {"flagged:duplicate": duplicate["conversations"]}
    assert earlier["outcomes"] == {"flagged:forged": earlier["conversations"]}
    for phase in warn.report["phases"]:
        assert set(phase["counts"]["by_status"]) == {"200"}, phase["counts"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("role", ["replay", "swap"])
def test_replayed_and_swapped_results_are_flagged_in_warn_mode(warn: RaceRun, role: str) -> None:
    assert warn.kind(role)["detection_rate"] == 1


@pytest.mark.timeout(120)
def test_the_detection_probes_fail_when_nothing_is_checked(tmp_path: Path) -> None:
    """With the tool's checks off every cheat passes: the experiment must say so."""
    with running_gateway(default_config("off")) as gateway:
        run = run_tool_race(tmp_path, gateway.url)
    assert run.code == 1 and run.report["verdict"] == "failed"
    assert_accounted(run)
    for role in RACE_CHEATS:
        assert run.kind(role)["outcomes"] == {"passed": run.kind(role)["conversations"]}
        assert run.kind(role)["detection_rate"] == 0
    failed = {c["name"] for c in run.phase("race")["checks"] if not c["ok"]}
    assert failed == set(LABELS.values())
    assert run.kind("genuine")["outcomes"] == {"ok": run.kind("genuine")["conversations"]}
    assert "cheating result(s) passed as genuine" in run.markdown


# -- the request kind and its counters, without a gateway -------------------------------


def test_race_kinds_are_checked_by_name() -> None:
    base = yaml.safe_load(
        resources.files("chaos").joinpath("experiments/tool-race.yaml").read_text()
    )
    parsed = parse_experiment(base, "tool-race.yaml")
    assert parsed == load_experiment("tool-race")
    with pytest.raises(ExperimentError) as caught:
        parse_experiment({**base, "load": {"rate": 1, "mix": {"tool_race:cheat": 1}}}, "x")
    assert "tool_race:<genuine|replay|duplicate|swap|earlier_turn>" in str(caught.value)


def reply(status: int, code: str | None = None, violations: str | None = None) -> Reply:
    headers = httpx.Headers({"x-seawall-tool-violations": violations} if violations else {})
    body = {"error": {"code": code}} if code else {}
    return Reply(status, headers, body)


BOTH = "w:forged:receipt, w:duplicate:tool_call_id"


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (reply(400, "tool_result_forged"), "refused:tool_result_forged"),
        (reply(400, "tool_result_invalid"), "refused:tool_result_invalid"),
        (reply(200, violations=BOTH), "flagged:duplicate+forged"),
        (reply(200), "passed"),
        (reply(400, "context_length_exceeded"), "failed:context_length_exceeded"),
        (reply(502), "failed:http_502"),
    ],
)
def test_a_cheat_is_judged_by_the_gateways_answer(answer: Reply, verdict: str) -> None:
    assert judge(answer) == verdict


violations = st.lists(
    st.builds(
        Violation,
        tool=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        kind=st.sampled_from(["forged", "duplicate", "unmatched", "schema", "invalid_json"]),
        where=st.text(st.characters(codec="ascii", exclude_characters=","), max_size=20),
        message=st.just("m"),
        mode=st.just("warn"),
    ),
    max_size=4,
)


@given(violations)
def test_violation_kinds_read_what_the_gateway_writes(found: list[Violation]) -> None:
    assert violation_kinds(header_value(found)) == sorted({v.kind for v in found})


def race_sample(kind: str, cheats: tuple[str, ...] = (), ok: bool = True) -> Sample:
    status, code = (200, None) if ok else (0, "client_timeout")
    return Sample(kind, "race", 0.0, 1.0, status, code, ok, cheats=cheats)


def detection(samples: list[Sample], *kinds: str) -> float | None:
    spec = ProbeSpec(probe="cheat_detection_rate", kinds=kinds, min=1)
    return PROBES["cheat_detection_rate"].measure(spec, Evidence("demo", samples))


def test_detection_rate_counts_every_cheating_result_and_only_catches() -> None:
    samples = [
        race_sample("tool_race:genuine"),
        race_sample("tool_race:swap", ("refused:tool_result_forged", "passed")),
        race_sample("tool_race:duplicate", ("flagged:duplicate",)),
        race_sample("tool_race:replay", ("failed:client_timeout",), ok=False),
        race_sample("tool_race:replay", (), ok=False),  # never got to cheat
    ]
    assert detection(samples) == pytest.approx(2 / 4)
    assert detection(samples, "tool_race:swap") == pytest.approx(1 / 2)
    assert detection(samples, "tool_race:replay") == 0
    assert detection(samples, "tool_race:genuine") is None
    assert [s.expected_ok for s in samples] == [True, False, False, False, False]
    summary = {s.kind: s for s in race_summaries(samples)}
    assert summary["tool_race:swap"].conversations == 2
    assert summary["tool_race:replay"].outcomes == {
        "failed:client_timeout": 1,
        "not sent:client_timeout": 1,
    }
    assert summary["tool_race:genuine"].outcomes == {"ok": 1}


def test_a_swap_reports_its_first_failure_and_both_cheats() -> None:
    first, second = Outcome(), Outcome()
    first.observe(reply(200))
    first.cheats.append("passed")
    second.observe(reply(400, "tool_result_forged"))
    second.cheats.append("refused:tool_result_forged")
    first.merge(second)
    assert (first.ok, first.status, first.code) == (False, 400, "tool_result_forged")
    assert first.cheats == ["passed", "refused:tool_result_forged"]


async def test_a_replay_takes_another_conversations_result_or_gives_up() -> None:
    board = Board()
    assert await board.other(1, conversation=7, timeout_s=0.01) is None
    await board.post(Invoked(7, 1, "call_1", "mine", "r7"))
    waiting = asyncio.create_task(board.other(1, conversation=7, timeout_s=5))
    await asyncio.sleep(0)
    assert not waiting.done()  # its own result is not another's
    await board.post(Invoked(8, 1, "call_1", "theirs", "r8"))
    assert (await waiting).content == "theirs"


async def test_a_swap_partner_that_failed_never_leaves_the_other_waiting() -> None:
    swap = Swap()
    mine = Invoked(1, 1, "call_1", "a", "ra")
    swap.give(0, mine)
    swap.give(1, None)  # the partner's invoke failed
    swap.give(1, Invoked(2, 1, "call_1", "late", "rl"))  # a side gives once
    assert await swap.take(0) is None
    assert await swap.take(1) == mine


# -- the gap, reproduced with a tool whose answer changes -------------------------------

METER_INPUT = {
    "type": "object",
    "properties": {"meter": {"type": "string"}},
    "required": ["meter"],
    "additionalProperties": False,
}
OFFERED = [{"type": "function", "function": {"name": "meter"}}]  # by reference


def meter_stack() -> tuple[ScriptedUpstream, ScriptedUpstream]:
    """A model that calls `meter` with id `call_1` (ids colliding across
    conversations and turns, as a model numbering its calls gives them) until the
    conversation ends in a tool result, and a tool that reads a counter."""

    def model(number: int, body: dict[str, Any]) -> Answer:
        if body["messages"][-1]["role"] == "tool":
            return Answer(body=chat_body("noted"))
        return Answer(body=tool_call_body("meter", '{"meter": "m1"}', "call_1"))

    return ScriptedUpstream(model), ScriptedUpstream(lambda n, body: Answer(body={"reading": n}))


@contextlib.contextmanager
def meter_gateway() -> Iterator[httpx.Client]:
    model, tool = meter_stack()
    with ServerThread(model) as model_server, ServerThread(tool) as tool_server:
        meter = {
            "name": "meter",
            "input_schema": METER_INPUT,
            "endpoint": tool_server.url + "/meter",
        }
        config = tool_stack_config(model_server.url, {**meter, "mode": "enforce"})
        with running_gateway(config) as gateway, httpx.Client(base_url=gateway.url) as client:
            yield client


def ask(client: httpx.Client, messages: list[dict[str, Any]]) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", json={"model": "g", "messages": messages, "tools": OFFERED}
    )


def turn(client: httpx.Client, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """Ask, and run the model's call: (the assistant message, the invoke answer)."""
    answer = ask(client, messages)
    assert answer.status_code == 200, answer.text
    call = answer.json()["choices"][0]["message"]["tool_calls"][0]
    invoked = client.post(
        "/v1/tools/meter/invoke",
        json={"tool_call_id": call["id"], "arguments": json.loads(call["function"]["arguments"])},
    )
    assert invoked.status_code == 200, invoked.text
    return {"role": "assistant", "content": None, "tool_calls": [call]}, invoked.json()


def result(call_id: str, invoked: dict[str, Any]) -> dict[str, Any]:
    content, receipt = invoked["content"], invoked["receipt"]
    return {"role": "tool", "tool_call_id": call_id, "content": content, "seawall_receipt": receipt}


QUESTION = {"role": "user", "content": "Read the meter."}
AGAIN = {"role": "user", "content": "And now?"}


def test_a_result_swapped_between_conversations_is_refused() -> None:
    with meter_gateway() as client:
        call_a, mine = turn(client, [QUESTION])
        _, theirs = turn(client, [QUESTION])
        # The model said `call_1` both times; each conversation got an id of its own.
        assert len({mine["tool_call_id"], theirs["tool_call_id"], "call_1"}) == 3
        assert mine["content"] != theirs["content"]  # two readings: {"reading":1}, 2
        own_id = mine["tool_call_id"]
        honest = ask(client, [QUESTION, call_a, result(own_id, mine)])
        assert honest.status_code == 200
        swapped = ask(client, [QUESTION, call_a, result(own_id, theirs)])
        assert swapped.status_code == 400, "another conversation's reading was accepted"
        assert swapped.json()["error"]["code"] == "tool_result_forged"


def test_an_earlier_turns_result_for_a_reused_call_id_is_refused() -> None:
    with meter_gateway() as client:
        call, first = turn(client, [QUESTION])
        history = [QUESTION, call, result(first["tool_call_id"], first)]
        answer = ask(client, history).json()["choices"][0]["message"]
        history += [{"role": "assistant", "content": answer["content"]}, AGAIN]
        call_again, second = turn(client, history)
        assert second["content"] != first["content"]
        assert second["tool_call_id"] != first["tool_call_id"]
        again_id = second["tool_call_id"]
        honest = ask(client, [*history, call_again, result(again_id, second)])
        assert honest.status_code == 200
        stale = ask(client, [*history, call_again, result(again_id, first)])
        assert stale.status_code == 400, "the first turn's reading was accepted for the second"
        assert stale.json()["error"]["code"] == "tool_result_forged"
