"""What a request counts as (slo/events.py) and the release gate (slo/gate.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from slo.config import SloConfig
from slo.events import Outcome, classify, latency_measure
from slo.gate import Selector, decide, measure, two_proportion_z

AVAILABILITY = SloConfig(
    name="chat-availability", kind="availability", objective=0.999, model_group="chat"
)
LATENCY = SloConfig(
    name="chat-latency", kind="latency", objective=0.99, threshold_ms=2000, model_group="chat"
)
T0 = 1_800_000_000.0


def outcome(status: int = 200, error: str | None = None, **kw: Any) -> Outcome:
    fields: dict[str, Any] = {
        "time": T0,
        "model_group": "chat",
        "tenants": ("root", "acme", "acme-dev"),
        "status": status,
        "error": error,
        "latency_ms": 100.0,
        "config_version": "v1",
        **kw,
    }
    return Outcome(**fields)


# -- classification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "verdict"),
    [
        (200, None, "good"),
        (200, "stream_interrupted", "bad"),  # a stream the upstream cut
        (499, "client_closed", "excluded"),
        (200, "client_closed", "excluded"),
        (400, "invalid_request", "excluded"),
        (401, "invalid_api_key", "excluded"),
        (403, "policy_denied", "excluded"),
        (408, None, "excluded"),
        (429, "rate_limit_exceeded", "excluded"),
        (500, "internal_error", "bad"),
        (502, "tool_call_invalid", "bad"),
        (503, "limit_store_unavailable", "bad"),  # the store failing, not the client
        (503, "audit_unavailable", "bad"),
        (503, "server_shutting_down", "bad"),
        (504, None, "bad"),
    ],
)
def test_availability_classification(status: int, error: str | None, verdict: str) -> None:
    assert classify(AVAILABILITY, outcome(status, error)) == verdict


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"latency_ms": 1999.0}, "good"),
        ({"latency_ms": 2000.0}, "good"),  # at the threshold is under it
        ({"latency_ms": 2000.5}, "bad"),
        ({"latency_ms": 9000.0, "stream": True, "ttft_ms": 300.0}, "good"),  # TTFT
        ({"latency_ms": 300.0, "stream": True, "ttft_ms": 2500.0}, "bad"),
        ({"latency_ms": 2500.0, "stream": True, "ttft_ms": None}, "bad"),  # no first token
        ({"latency_ms": 9000.0, "status": 502}, "excluded"),  # availability's business
        ({"latency_ms": 100.0, "error": "stream_interrupted"}, "excluded"),
        ({"latency_ms": 100.0, "status": 429}, "excluded"),
    ],
)
def test_latency_classification(fields: dict, verdict: str) -> None:
    assert classify(LATENCY, outcome(**fields)) == verdict


def test_eligibility_by_model_group_and_tenant_subtree() -> None:
    acme = SloConfig(name="acme", kind="availability", objective=0.99, tenant="acme")
    assert classify(AVAILABILITY, outcome(model_group="embed")) == "ineligible"
    assert classify(AVAILABILITY, outcome(model_group=None)) == "ineligible"
    assert classify(acme, outcome(model_group="embed")) == "good"  # every group
    assert classify(acme, outcome(tenants=("root", "globex"))) == "ineligible"
    assert classify(acme, outcome(tenants=("root", "acme"))) == "good"
    assert latency_measure(outcome(stream=True, ttft_ms=5.0)) == 5.0
    assert latency_measure(outcome(stream=False, ttft_ms=5.0)) == 100.0


# -- selectors -----------------------------------------------------------------------


def test_selectors_parse_and_match() -> None:
    assert Selector.parse("config_version=v2") == Selector("config_version", "v2")
    assert Selector.parse(" color = canary ") == Selector("colour", "canary")
    assert str(Selector.parse("deployment=gpt-east")) == "deployment=gpt-east"
    for bad in ("v2", "region=eu", "deployment=", "=x"):
        with pytest.raises(ValueError, match="KIND=VALUE"):
            Selector.parse(bad)
    assert Selector.parse("tenant=acme").matches(outcome())
    assert not Selector.parse("tenant=globex").matches(outcome())
    assert Selector.parse("policy_version=p7").matches(outcome(policy_version="p7"))
    assert not Selector.parse("colour=canary").matches(outcome(colour=None))


# -- the gate ------------------------------------------------------------------------


def batch(
    version: str, n: int, bad: int = 0, latency_ms: float = 100.0, **kw: Any
) -> list[Outcome]:
    """n outcomes of a config version, the first `bad` of them 502s."""
    return [
        outcome(502 if i < bad else 200, config_version=version, latency_ms=latency_ms, **kw)
        for i in range(n)
    ]


V1, V2 = Selector.parse("config_version=v1"), Selector.parse("config_version=v2")


def test_too_few_samples_is_inconclusive() -> None:
    report = decide(AVAILABILITY, V2, batch("v2", 99))
    assert report.verdict == "inconclusive" and report.exit_code == 3
    assert "fewer than 100" in report.reasons[0]
    # client-caused outcomes are no evidence
    noise = batch("v2", 99) + [outcome(429, config_version="v2")] * 50
    assert decide(AVAILABILITY, V2, noise).verdict == "inconclusive"
    # nor is a candidate that fails badly on too few requests (the alerts catch that)
    assert decide(AVAILABILITY, V2, batch("v2", 50, bad=50)).verdict == "inconclusive"
    # a baseline needs its samples too
    report = decide(AVAILABILITY, V2, batch("v2", 200) + batch("v1", 20), baseline=V1)
    assert report.verdict == "inconclusive"
    assert report.reasons == ("baseline config_version=v1 has 20 samples, fewer than 100",)


def test_a_healthy_candidate_passes() -> None:
    report = decide(AVAILABILITY, V2, batch("v2", 1000, bad=1) + batch("v1", 500, bad=400))
    assert report.verdict == "pass" and report.exit_code == 0
    assert report.candidate.samples == 1000
    assert report.candidate.burn_rate == pytest.approx(1.0)
    assert report.baseline is None


def test_burning_faster_than_the_page_threshold_fails() -> None:
    report = decide(AVAILABILITY, V2, batch("v2", 1000, bad=20))  # 2%: burn 20 > 14.4
    assert report.verdict == "fail" and report.exit_code == 1
    assert "burn rate 20.00x is above 14.4x" in report.reasons[0]
    assert decide(AVAILABILITY, V2, batch("v2", 1000, bad=14)).verdict == "pass"  # 14x
    weekly = AVAILABILITY.model_copy(update={"period_days": 7})  # 14.4 * 7/30 = 3.36
    assert decide(weekly, V2, batch("v2", 1000, bad=4)).verdict == "fail"
    assert decide(AVAILABILITY, V2, batch("v2", 1000, bad=4), max_burn_rate=3).verdict == "fail"


def test_worse_than_the_baseline_fails_when_significant() -> None:
    history = batch("v1", 5000, bad=0) + batch("v2", 5000, bad=10)  # burn 2 vs 0
    report = decide(AVAILABILITY, V2, history, baseline=V1)
    assert report.verdict == "fail"
    assert report.deviation == pytest.approx(2.0)
    assert report.significance is not None and report.significance > 1.96
    assert "by 2 error budgets" in report.reasons[0]
    # the same ratios on a hundred requests each are chance
    chance = batch("v1", 100, bad=0) + batch("v2", 100, bad=1)
    report = decide(AVAILABILITY, V2, chance, baseline=V1)
    assert report.verdict == "pass"
    assert report.deviation == pytest.approx(10.0)
    assert decide(AVAILABILITY, V2, chance, baseline=V1, significance_z=0).verdict == "fail"
    # within the allowed deviation
    close = batch("v1", 5000, bad=5) + batch("v2", 5000, bad=5)
    assert decide(AVAILABILITY, V2, close, baseline=V1).verdict == "pass"


def test_latency_against_the_baseline_p95() -> None:
    base = batch("v1", 200, latency_ms=1000.0)
    assert decide(LATENCY, V2, base + batch("v2", 200, latency_ms=1150.0), baseline=V1).verdict == (
        "pass"
    )
    report = decide(LATENCY, V2, base + batch("v2", 200, latency_ms=1151.0), baseline=V1)
    assert report.verdict == "fail"
    assert report.deviation == pytest.approx(0.151)
    assert "above baseline p95 1000.0 ms x 1.15 = 1150.0 ms" in report.reasons[0]
    # over the SLO's own threshold on every request: burns (100% / 1%) = 100x
    slow = decide(LATENCY, V2, batch("v2", 200, latency_ms=2500.0))
    assert slow.verdict == "fail" and slow.candidate.burn_rate == pytest.approx(100)


def test_stats_use_nearest_rank_percentiles() -> None:
    outcomes = [outcome(latency_ms=float(ms), config_version="v2") for ms in range(1, 101)]
    outcomes.append(outcome(502, latency_ms=99999.0, config_version="v2"))  # not a latency
    stats = measure(AVAILABILITY, V2, outcomes)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == (50.0, 95.0, 99.0)
    assert (stats.samples, stats.bad, stats.latency_samples) == (101, 1, 100)
    empty = measure(AVAILABILITY, V1, outcomes)
    assert (empty.samples, empty.error_ratio, empty.p95_ms) == (0, 0.0, None)
    assert two_proportion_z(0, 10, 0, 10) == 0.0


def test_reports_render() -> None:
    history = batch("v1", 5000, bad=0) + batch("v2", 5000, bad=10)
    report = decide(AVAILABILITY, V2, history, baseline=V1)
    data = json.loads(report.to_json())
    assert data["verdict"] == "fail" and data["exit_code"] == 1
    assert data["candidate"]["bad"] == 10 and data["baseline"]["selector"] == "config_version=v1"
    assert data["slo"]["name"] == "chat-availability"
    markdown = report.to_markdown()
    assert markdown.startswith("## Release gate: FAIL (exit 1)")
    assert "| bad | 10 | 0 |" in markdown
    assert report.reasons[0] in markdown
    alone = decide(AVAILABILITY, V2, batch("v2", 100)).to_markdown()
    assert "| | candidate |\n" in alone and "against baseline" not in alone
