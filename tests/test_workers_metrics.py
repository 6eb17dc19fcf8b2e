"""`--workers 2`: one scrape of `/metrics` shows the whole gateway, not the worker
that happened to answer it (gateway/metrics.py, gateway/server/workers.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import merge
from tests.support import SeawallProcess, gateway_config, mock_group, write_config

HI = [{"role": "user", "content": "hi"}]


def totals(url: str) -> tuple[float, float, set[str]]:
    """Chat responses counted, GenAI operations counted, and deployments with breaker
    series, in one scrape."""
    text = httpx.get(url + "/metrics", timeout=10).text
    responses = operations = 0.0
    deployments: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "seawall_responses_total" and sample.labels["endpoint"] == "chat":
                responses += sample.value
            elif sample.name == "gen_ai_client_operation_duration_seconds_count":
                operations += sample.value
            elif sample.name == "seawall_breaker_state":
                deployments.add(sample.labels["deployment"])
    return responses, operations, deployments


def test_one_scrape_counts_the_requests_of_both_workers(tmp_path: Path) -> None:
    path = write_config(tmp_path / "seawall.yaml", gateway_config(mock_group()))
    process = SeawallProcess(["serve", "--config", str(path), "--port", "0", "--workers", "2"])
    process.start()
    try:
        process.wait_ready()
        prefixes: dict[str, int] = {}
        sent = 0
        with httpx.Client(base_url=process.url, timeout=10) as client:
            # New connections spread over the workers (the kernel picks the acceptor):
            # keep going until both served some.
            while len(prefixes) < 2 or sent < 20:
                assert sent < 2000, f"one worker served everything: {prefixes}"
                reply = httpx.post(
                    process.url + "/v1/chat/completions",
                    json={"model": "demo", "messages": HI},
                    headers={"connection": "close"},
                )
                assert reply.status_code == 200
                prefix = reply.headers["x-seawall-request-id"].rsplit("-", 1)[0]
                prefixes[prefix] = prefixes.get(prefix, 0) + 1
                sent += 1
            # The other worker's share is at most `PUBLISH_S` old: within a few seconds
            # a single scrape, whichever worker answers, shows every request.
            deadline = time.monotonic() + 10
            while True:
                responses, operations, deployments = totals(client.base_url.__str__())
                if (responses, operations) == (sent, sent) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert (responses, operations) == (sent, sent), prefixes
        assert deployments == {"demo-mock"}  # gauges merged, not duplicated
        assert len(prefixes) == 2
    finally:
        process.stop()
    assert process.proc is not None and process.proc.returncode == 0


class Viewer:
    """A tenant-scoped viewer: group `red`, deployment `red-d`, tenant `red`."""

    def may_use_model(self, name: str) -> bool:
        return name == "red"

    def may_use_deployment(self, name: str) -> bool:
        return name == "red-d"

    def within_scope(self, tenant: str) -> bool:
        return tenant == "red"


def snapshot(name: str, kind: str, *samples: tuple[str, dict[str, str], float]) -> dict[str, Any]:
    return {"name": name, "type": kind, "doc": "d", "samples": [list(s) for s in samples]}


def test_merge_sums_counters_keeps_the_dead_and_filters_for_a_scoped_viewer() -> None:
    mine = CounterMetricFamily("seawall_responses", "d", labels=["tenant"])
    mine.add_metric(["red"], 2)
    state = GaugeMetricFamily("seawall_breaker_state", "d", labels=["group", "deployment"])
    state.add_metric(["red", "red-d"], 0)
    other = [
        snapshot(
            "seawall_responses", "counter",
            ("seawall_responses_total", {"tenant": "red"}, 3.0),
            ("seawall_responses_total", {"tenant": "blue"}, 5.0),
        ),
        snapshot(
            "seawall_breaker_state", "gauge",
            ("seawall_breaker_state", {"group": "red", "deployment": "red-d"}, 2.0),
            ("seawall_breaker_state", {"group": "blue", "deployment": "blue-d"}, 2.0),
        ),
        snapshot("seawall_guard_events", "counter", ("seawall_guard_events_total", {}, 1.0)),
    ]  # fmt: skip

    def values(merged: list[Metric]) -> dict[tuple[str, str], float]:
        return {
            (s.name, ",".join(sorted(s.labels.values()))): s.value
            for family in merged
            for s in family.samples
        }

    root = values(merge([mine, state], [(True, other), (False, other)], None))
    assert root[("seawall_responses_total", "red")] == 2 + 3 + 3  # the dead's count too
    assert root[("seawall_responses_total", "blue")] == 10
    assert root[("seawall_breaker_state", "red,red-d")] == 2  # the worst live worker
    assert root[("seawall_guard_events_total", "")] == 2
    scoped = values(merge([mine, state], [(True, other)], cast(Any, Viewer())))
    assert scoped == {
        ("seawall_responses_total", "red"): 5,
        ("seawall_breaker_state", "red,red-d"): 2,
    }
