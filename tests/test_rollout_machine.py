"""The rollout state machine (rollouts/machine.py) and the split, property-tested.

Any sequence of verdicts, clock moves, promotions, aborts, roll-backs, reloads
(a new version supersedes: an abort) and restarts (the machine is gone; a fresh one
starts for the next candidate) keeps the invariants:

- a rollout moves out of `running` exactly once, and a final state never changes;
- the steps are `started` then at most one final step, which names the final state;
- the judge promotes only on a `pass`, after `bake_s`; a `fail` while running rolls
  back at once; no pass by `max_s` rolls back;
- a person's promote or abort of a finished rollout is refused (NotRunning).
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollouts.config import RolloutSettings
from rollouts.judge import Evidence, Judgement, judge
from rollouts.machine import FINAL, NotRunning, Rollout, VersionRef
from rollouts.split import Split
from slo.events import Outcome
from tests.examples import examples
from tests.slo_support import make_outcome

SETTINGS = RolloutSettings(bake_s=10, max_s=100, min_samples=5)

verdicts = st.sampled_from(["pass", "fail", "inconclusive"])
events = st.one_of(
    st.tuples(st.just("judge"), verdicts, st.floats(0, 30)),
    st.tuples(st.just("promote"), st.none(), st.floats(0, 5)),
    st.tuples(st.just("abort"), st.none(), st.floats(0, 5)),
    st.tuples(st.just("roll_back"), st.none(), st.floats(0, 5)),
    st.tuples(st.just("reload"), st.none(), st.floats(0, 5)),
    st.tuples(st.just("restart"), st.none(), st.floats(0, 5)),
)


def fresh(now: float, number: int) -> Rollout:
    return Rollout(
        VersionRef("base", 1), VersionRef(f"cand-{number}", number), SETTINGS, now, "test"
    )


def verdict(result: str) -> Judgement:
    return Judgement(result, (f"judged {result}",), 10, 10)  # type: ignore[arg-type]


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(events, max_size=40))
def test_any_sequence_keeps_the_invariants(sequence: list[tuple[str, str | None, float]]) -> None:
    now = 0.0
    number = 2
    rollout = fresh(now, number)
    for action, result, wait in sequence:
        now += wait
        before = rollout.state
        steps_before = list(rollout.steps)
        if action in ("reload", "restart"):
            # A reload supersedes a running rollout (an abort); a restart loses it.
            if action == "reload" and rollout.running:
                rollout.abort(now, None, "superseded")
                assert rollout.state == "aborted"
            number += 1
            rollout = fresh(now, number)
            continue
        if action == "judge":
            assert result is not None
            step = rollout.judge(verdict(result), now)
            elapsed = now - rollout.started_at
            if before != "running":
                assert step is None
            elif result == "fail":
                assert step is not None and rollout.state == "rolled_back"
            elif result == "pass" and elapsed >= SETTINGS.bake_s:
                assert step is not None and rollout.state == "promoted"
            elif elapsed >= SETTINGS.max_s:
                assert step is not None and rollout.state == "rolled_back"
            else:
                assert step is None and rollout.state == "running"
        else:
            move = getattr(rollout, action)
            if before == "running":
                args = (now, "ops", "why") if action != "roll_back" else (now, "why")
                step = move(*args)
                expected = {"promote": "promoted", "abort": "aborted"}.get(action, "rolled_back")
                assert rollout.state == expected == step.action
            else:
                with pytest.raises(NotRunning):
                    move(*((now, "ops") if action != "roll_back" else (now, "why")))
        if before in FINAL:
            assert rollout.state == before
            assert rollout.steps == steps_before
        actions = [step.action for step in rollout.steps]
        assert actions[0] == "started"
        assert len(actions) <= 2
        if rollout.state in FINAL:
            assert actions[-1] == rollout.state
        else:
            assert actions == ["started"]


def test_a_promotion_by_the_judge_needs_the_bake_time() -> None:
    rollout = fresh(100.0, 2)
    assert rollout.judge(verdict("pass"), 105.0) is None
    assert rollout.state == "running"
    step = rollout.judge(verdict("pass"), 110.0)
    assert step is not None and step.action == "promoted"
    assert rollout.describe()["samples"] == {"baseline": 10, "candidate": 10}


@settings(max_examples=examples(50), deadline=None)
@given(st.floats(0.01, 0.99), st.integers(0, 2**32))
def test_the_split_draws_its_share(share: float, seed: int) -> None:
    split = Split(share, (), str(seed))
    drawn = sum(split.candidate_serves(None) for _ in range(4000))
    # Binomial(4000, share): five standard deviations either side.
    spread = 5 * (4000 * share * (1 - share)) ** 0.5
    assert abs(drawn - 4000 * share) <= spread


def test_the_split_serves_named_tenants_subtrees_always_and_nobody_else_by_name() -> None:
    split = Split(0.0, ["team-a"], "v")
    assert split.candidate_serves(("root", "acme", "team-a"))
    assert split.candidate_serves(("root", "acme", "team-a", "project"))
    assert not split.candidate_serves(("root", "acme", "team-b"))
    assert not split.candidate_serves(None)


def outcomes(version: str, good: int, bad: int) -> list[Outcome]:
    return [make_outcome(config_version=version, status=200) for _ in range(good)] + [
        make_outcome(config_version=version, status=502) for _ in range(bad)
    ]


@pytest.mark.parametrize(
    ("candidate", "baseline", "result"),
    [
        ((100, 0), (100, 0), "pass"),
        ((70, 30), (100, 0), "fail"),  # burn and deviation
        ((3, 1), (100, 0), "inconclusive"),  # too few candidate samples
        ((100, 0), (0, 0), "pass"),  # no baseline traffic: judged on its burn alone
        ((60, 40), (0, 0), "fail"),
    ],
)
def test_the_judge(candidate: tuple[int, int], baseline: tuple[int, int], result: str) -> None:
    settings_ = RolloutSettings(min_samples=50)
    seen = outcomes("cand", *candidate) + outcomes("base", *baseline)
    evidence = Evidence("base", "cand", (), settings_)
    for one in [*seen, *outcomes("older", 5, 5)]:  # another version's are not evidence
        evidence.add(one)
    judgement = judge(evidence)
    assert judgement.result == result, judgement.reasons
    assert judgement.candidate_samples == sum(candidate)
    assert judgement.baseline_samples == sum(baseline)
    assert Counter(o.config_version for o in seen)["cand"] == sum(candidate)
