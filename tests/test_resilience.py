"""Routing resilience over real sockets: breakers, SLA weighting, retries, fallbacks,
streams, hedging and deadlines, against scripted upstreams that count their calls."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.servers.scripted import (
    Answer,
    Script,
    ScriptedUpstream,
    chat_body,
    error_body,
    text_events,
)
from tests.support import FakeClock, ServerThread, running_gateway, sdk

NO_RETRY = {"attempts": 1}
OK = Answer(body=chat_body())
DOWN = Answer(503, error_body("upstream down"))


@contextmanager
def upstreams(**scripts: Script | Answer) -> Iterator[dict[str, tuple[ScriptedUpstream, str]]]:
    """Scripted upstreams by name: {name: (upstream, base url)}."""
    with ExitStack() as stack:
        servers = {}
        for name, script in scripts.items():
            upstream = ScriptedUpstream(script)
            server = stack.enter_context(ServerThread(upstream))
            servers[name] = (upstream, server.url)
        yield servers


def deployment(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "provider": "openai",
        "model": f"{name}-model",
        "api_base": url + "/v1",
        "api_key": "sk-test",
        **extra,
    }


def group(name: str, *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "deployments": list(deployments), **extra}


def chat(gateway: ServerThread, model: str = "g", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


async def chat_many(
    gateway: ServerThread, count: int, concurrency: int = 64, **extra: Any
) -> list[httpx.Response]:
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], **extra}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body) for _ in range(count))
            )
        )


def routing_state(gateway: ServerThread) -> dict[str, Any]:
    state = httpx.get(gateway.url + "/admin/routing").json()
    return {d["id"]: d for g in state["groups"] for d in g["deployments"]}


def metric(gateway: ServerThread, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when the series does not exist)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(gateway.url + "/metrics").text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, label_text = series.partition("{")
        present = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and present == wanted:
            return float(value)
    return 0.0


# -- circuit breakers ---------------------------------------------------------------


def test_breaker_opens_after_n_failures_and_recovers_through_capped_probes() -> None:
    clock = FakeClock()
    healthy = {"a": False}

    def flaky(n: int, body: dict[str, Any]) -> Answer:
        return Answer(body=chat_body("from a"), delay=0.3) if healthy["a"] else DOWN

    breaker = {
        "consecutive_failures": 3,
        "open_seconds": 30,
        "max_open_seconds": 300,
        "half_open_probes": 2,
    }
    with upstreams(a=flaky, b=OK) as up:
        (a, a_url), (_, b_url) = up["a"], up["b"]
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", a_url, breaker=breaker, retry=NO_RETRY),
                    deployment("b", b_url, retry=NO_RETRY),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config, clock) as gateway:
            for _ in range(3):  # a fails, b serves
                response = chat(gateway)
                assert response.status_code == 200
                assert response.headers["x-seawall-route"] == "g/a!503 > g/b"
            assert routing_state(gateway)["a"]["breaker"]["state"] == "open"
            for _ in range(5):  # open: a is not even tried
                assert chat(gateway).headers["x-seawall-route"] == "g/b"
            assert a.calls == 3

            healthy["a"] = True
            clock.advance(30)  # half-open: at most two probes at once
            responses = asyncio.run(chat_many(gateway, 6))
            assert [r.status_code for r in responses] == [200] * 6
            routes = sorted(r.headers["x-seawall-route"] for r in responses)
            assert routes == ["g/a", "g/a", "g/b", "g/b", "g/b", "g/b"]
            assert a.calls == 5
            state = routing_state(gateway)["a"]["breaker"]
            assert state == {
                "state": "closed",
                "openings": 1,
                "open_multiplier": 1,
                "reopens_in_ms": None,
            }
            assert chat(gateway).headers["x-seawall-route"] == "g/a"

            healthy["a"] = False  # trips again at once: opens for 2 x 30 s
            for _ in range(3):
                chat(gateway)
            state = routing_state(gateway)["a"]["breaker"]
            assert state["state"] == "open" and state["open_multiplier"] == 2
            assert state["reopens_in_ms"] == 60_000
            clock.advance(30)
            assert chat(gateway).headers["x-seawall-route"] == "g/b"
            clock.advance(30)
            assert chat(gateway).headers["x-seawall-route"].startswith("g/a!503")
            assert metric(gateway, "seawall_breaker_openings_total", group="g", deployment="a") == 3


def test_a_breaker_that_trips_mid_retry_stops_the_retries() -> None:
    # LiteLLM #32574: cooldowns were skipped by retries. Here retries ask the breaker.
    breaker = {"consecutive_failures": 2, "open_seconds": 60}
    retry = {"attempts": 5, "backoff_ms": 1, "max_backoff_ms": 2}
    with upstreams(a=DOWN, b=OK) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], breaker=breaker, retry=retry),
                    deployment("b", up["b"][1]),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config, FakeClock()) as gateway:
            response = chat(gateway)
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/a!503 > g/a!503 > g/b"
    assert up["a"][0].calls == 2


def test_a_group_is_never_ejected_whole() -> None:
    clock = FakeClock()
    breaker = {"consecutive_failures": 1, "open_seconds": 60}
    with upstreams(a=DOWN, b=DOWN) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], breaker=breaker, retry=NO_RETRY),
                    deployment("b", up["b"][1], breaker=breaker, retry=NO_RETRY),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config, clock) as gateway:
            first = chat(gateway)
            assert first.headers["x-seawall-route"] == "g/a!503 > g/b!503"
            clock.advance(1)
            second = chat(gateway)  # both open: a opened first, so a is tried anyway
            assert second.status_code == 503
            assert second.headers["x-seawall-route"] == "g/a(all-open)!503"
            assert up["a"][0].calls == 2 and up["b"][0].calls == 1


def test_a_group_with_open_breakers_fails_over_before_forcing_them() -> None:
    # Forcing an open deployment is the last resort: while a fallback group is left,
    # the request goes there at once instead of waiting on a known-bad upstream.
    clock = FakeClock()
    breaker = {"consecutive_failures": 1, "open_seconds": 60}
    with upstreams(a=DOWN, backup=OK) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], breaker=breaker, retry=NO_RETRY),
                    fallbacks=["backup"],
                ),
                group("backup", deployment("backup", up["backup"][1])),
            ]
        }
        with running_gateway(config, clock) as gateway:
            assert chat(gateway).headers["x-seawall-route"] == "g/a!503 > backup/backup"
            for _ in range(3):
                response = chat(gateway)
                assert response.status_code == 200
                assert response.headers["x-seawall-route"] == "backup/backup"
    assert up["a"][0].calls == 1


def test_a_breaker_that_trips_mid_retry_leaves_the_real_failure_and_no_fake_retries() -> None:
    # One deployment, no fallback: the first 429 opens the breaker, so a retry could
    # only be refused. None is counted or waited for, and the client gets the
    # provider's 429 with its retry-after, not a made-up 503.
    limited = Answer(
        429, error_body("slow down", "rate_limit_error"), headers={"retry-after-ms": "800"}
    )
    breaker = {"consecutive_failures": 1, "open_seconds": 60}
    retry = {"attempts": 3, "backoff_ms": 1, "max_backoff_ms": 2}
    with upstreams(a=limited) as up:
        config = {"models": [group("g", deployment("a", up["a"][1], breaker=breaker, retry=retry))]}
        with running_gateway(config, FakeClock()) as gateway:
            started = time.monotonic()
            response = chat(gateway)
            elapsed = time.monotonic() - started
            retries = metric(gateway, "seawall_retries_total", group="g", deployment="a")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert response.headers["x-seawall-route"] == "g/a!429"
    assert up["a"][0].calls == 1
    assert retries == 0
    assert elapsed < 0.8  # the 800 ms retry-after was not waited for a refused retry


# -- SLA-aware weighting ------------------------------------------------------------------


def test_traffic_shifts_away_from_a_deployment_breaking_its_p99_sla() -> None:
    # Only the slow deployment has a target (40 ms, against its 150 ms); the fast one
    # has none, so a hiccup of the test machine cannot move its weight.
    sla = {"p99_latency_ms": 40}
    with upstreams(slow=Answer(body=chat_body(), delay=0.15), fast=OK) as up:
        config = {
            "routing": {"sla_min_samples": 10},
            "models": [
                group(
                    "g",
                    deployment("slow", up["slow"][1], sla=sla),
                    deployment("fast", up["fast"][1]),
                )
            ],
        }
        with running_gateway(config) as gateway:
            for _ in range(40):  # warm-up: both get traffic, slow breaks its p99
                assert chat(gateway).status_code == 200
            slow_before = up["slow"][0].calls
            assert 8 <= slow_before <= 32  # roughly half of the warm-up
            state = routing_state(gateway)
            assert state["slow"]["window"]["p99_ms"] > 150
            assert state["slow"]["effective_weight"] < 0.1
            assert state["fast"]["effective_weight"] == 1.0
            responses = asyncio.run(chat_many(gateway, 200, concurrency=8))
            assert all(r.status_code == 200 for r in responses)
            slow_share = (up["slow"][0].calls - slow_before) / 200
            assert slow_share < 0.15  # ~5% expected: (40 ms / 169 ms)^2 = 0.056


# -- retries ------------------------------------------------------------------------------


def test_retry_after_ms_is_honoured() -> None:
    def once(n: int, body: dict[str, Any]) -> Answer:
        if n == 1:
            return Answer(
                429, error_body("slow down", "rate_limit_error"), headers={"retry-after-ms": "400"}
            )
        return OK

    with upstreams(a=once) as up:
        config = {"models": [group("g", deployment("a", up["a"][1], retry={"attempts": 3}))]}
        with running_gateway(config) as gateway:
            started = time.monotonic()
            response = chat(gateway)
            elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/a!429 > g/a"
    assert up["a"][0].calls == 2
    assert elapsed >= 0.4


def test_retry_after_past_the_deadline_is_not_waited_for() -> None:
    limited = Answer(429, error_body("later", "rate_limit_error"), headers={"retry-after": "5"})
    with upstreams(a=limited) as up:
        config = {"models": [group("g", deployment("a", up["a"][1], retry={"attempts": 3}))]}
        with running_gateway(config) as gateway:
            started = time.monotonic()
            response = chat(gateway, headers={"x-seawall-timeout-ms": "1000"})
            elapsed = time.monotonic() - started
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert response.headers["x-should-retry"] == "false"
    assert up["a"][0].calls == 1
    assert elapsed < 1.0


def test_retry_counts_are_exact() -> None:
    retry = {"attempts": 3, "backoff_ms": 10, "max_backoff_ms": 20}
    with upstreams(a=DOWN, b=DOWN) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], retry=retry),
                    deployment("b", up["b"][1], retry=retry),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config) as gateway:
            response = chat(gateway)
            assert metric(gateway, "seawall_retries_total", group="g", deployment="a") == 2
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-seawall-route"] == " > ".join(["g/a!503"] * 3 + ["g/b!503"] * 3)
    assert (up["a"][0].calls, up["b"][0].calls) == (3, 3)


def test_the_retry_budget_caps_retries_during_an_outage() -> None:
    retry = {"attempts": 3, "backoff_ms": 1, "max_backoff_ms": 2}
    budget = {"ratio": 0.1, "min_per_second": 0, "window_seconds": 60}
    with upstreams(a=DOWN) as up:
        config = {
            "routing": {"retry_budget": budget},
            "models": [
                group(
                    "g",
                    deployment(
                        "a", up["a"][1], retry=retry, breaker={"consecutive_failures": 1000}
                    ),
                )
            ],
        }
        with running_gateway(config) as gateway:
            responses = asyncio.run(chat_many(gateway, 50))
            denied = metric(gateway, "seawall_retry_budget_denied_total")
    assert all(r.status_code == 503 for r in responses)
    # 50 first attempts, and retries for at most 10% of them (without a budget: 150)
    assert 50 <= up["a"][0].calls <= 55
    assert denied >= 45


# -- fallbacks ----------------------------------------------------------------------------


def test_fallback_chain_and_route_header() -> None:
    with upstreams(p=DOWN, s=Answer(500, error_body("boom")), t=OK) as up:
        config = {
            "models": [
                group(
                    "primary",
                    deployment("p", up["p"][1], retry=NO_RETRY),
                    fallbacks=["secondary", "tertiary"],
                ),
                group("secondary", deployment("s", up["s"][1], retry=NO_RETRY)),
                group("tertiary", deployment("t", up["t"][1])),
            ]
        }
        with running_gateway(config) as gateway:
            response = chat(gateway, model="primary")
            assert (
                metric(
                    gateway, "seawall_fallbacks_total", **{"from": "secondary", "to": "tertiary"}
                )
                == 1
            )
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "primary/p!503 > secondary/s!500 > tertiary/t"
    assert response.headers["x-seawall-deployment"] == "t"


def test_context_length_errors_use_context_window_fallbacks_only() -> None:
    too_long = Answer(
        400,
        error_body(
            "This model's maximum context length is 8192 tokens",
            "invalid_request_error",
            "context_length_exceeded",
        ),
    )
    with upstreams(small=too_long, other=OK, long=OK) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("small", up["small"][1]),
                    fallbacks=["other"],
                    context_window_fallbacks=["long"],
                ),
                group("other", deployment("other", up["other"][1])),
                group("long", deployment("long", up["long"][1])),
            ]
        }
        with running_gateway(config) as gateway:
            response = chat(gateway)
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/small!400 > long/long"
    assert (up["small"][0].calls, up["other"][0].calls) == (1, 0)


@pytest.mark.parametrize("configured", [False, True])
def test_content_policy_refusals_fall_back_only_when_configured(configured: bool) -> None:
    refusal = Answer(
        400,
        error_body(
            "Flagged by the content management policy",
            "invalid_request_error",
            "content_policy_violation",
        ),
    )
    with upstreams(strict=refusal, other=OK) as up:
        extra = {"content_policy_fallbacks": ["other"]} if configured else {}
        config = {
            "models": [
                group("g", deployment("strict", up["strict"][1]), fallbacks=["other"], **extra),
                group("other", deployment("other", up["other"][1])),
            ]
        }
        with running_gateway(config) as gateway:
            response = chat(gateway)
    if configured:
        assert response.status_code == 200
        assert response.headers["x-seawall-route"] == "g/strict!400 > other/other"
    else:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "content_policy_violation"
        assert up["other"][0].calls == 0


# -- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [DOWN, Answer(events=[], done=False), Answer(events=text_events(["x"]), cut_after=0)],
    ids=["503", "empty-stream", "cut-before-first-event"],
)
def test_streams_fail_over_before_the_first_byte(failure: Answer) -> None:
    with upstreams(a=failure, b=Answer(events=text_events(["hello ", "world"]))) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], retry=NO_RETRY),
                    deployment("b", up["b"][1]),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config) as gateway:
            stream = sdk(gateway.url).chat.completions.with_raw_response.create(
                model="g", messages=[{"role": "user", "content": "x"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream.parse())
    assert text == "hello world"
    assert stream.headers["x-seawall-route"].endswith("> g/b")
    assert stream.headers["x-seawall-route"].startswith("g/a!")


def test_streams_broken_half_way_trip_the_breaker() -> None:
    # The first event is not a verdict: a deployment that breaks every stream after
    # it must still reach its consecutive-failure threshold.
    cut = Answer(events=text_events(["one ", "two ", "three"]), cut_after=2)
    breaker = {"consecutive_failures": 3, "open_seconds": 60}
    with upstreams(a=cut, b=Answer(events=text_events(["fine"]))) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1], breaker=breaker),
                    deployment("b", up["b"][1]),
                    strategy="priority",
                )
            ]
        }
        body = {"model": "g", "messages": [{"role": "user", "content": "x"}], "stream": True}
        with running_gateway(config, FakeClock()) as gateway:
            for _ in range(3):
                text = httpx.post(gateway.url + "/v1/chat/completions", json=body).text
                assert "event: error" in text or '"error"' in text
            assert routing_state(gateway)["a"]["breaker"]["state"] == "open"
            after = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert after.headers["x-seawall-route"] == "g/b"
    assert up["a"][0].calls == 3


def test_a_stream_outliving_the_clients_deadline_is_not_held_against_the_deployment() -> None:
    slow = Answer(events=text_events(["a"] * 40), event_delay=0.02)
    breaker = {"consecutive_failures": 1, "open_seconds": 60}
    with upstreams(a=slow) as up:
        config = {"models": [group("g", deployment("a", up["a"][1], breaker=breaker))]}
        body = {"model": "g", "messages": [{"role": "user", "content": "x"}], "stream": True}
        headers = {"x-seawall-timeout-ms": "200"}
        with running_gateway(config, FakeClock()) as gateway:
            for _ in range(2):
                response = httpx.post(
                    gateway.url + "/v1/chat/completions", json=body, headers=headers
                )
                assert response.status_code == 200  # headers went out with the first event
                assert "the request's time limit ran out" in response.text
            state = routing_state(gateway)["a"]
    assert state["breaker"]["state"] == "closed"
    assert state["breaker"]["openings"] == 0
    assert state["totals"]["outcomes"] == {"deadline": 2}
    assert up["a"][0].calls == 2


def test_streams_never_switch_after_the_first_byte() -> None:
    cut = Answer(events=text_events(["one ", "two ", "three"]), cut_after=2)
    with upstreams(a=cut, b=OK) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("a", up["a"][1]),
                    deployment("b", up["b"][1]),
                    strategy="priority",
                )
            ]
        }
        with running_gateway(config) as gateway:
            stream = sdk(gateway.url).chat.completions.create(
                model="g", messages=[{"role": "user", "content": "x"}], stream=True
            )
            received: list[str | None] = []

            def consume() -> None:
                for chunk in stream:
                    received.append(chunk.choices[0].delta.content)

            with pytest.raises(openai.APIError, match="'a'"):
                consume()
            state = routing_state(gateway)["a"]
    assert received == ["one ", "two "]
    assert up["b"][0].calls == 0
    assert state["totals"]["outcomes"] == {"stream_broken": 1}
    assert state["in_flight"] == 0


# -- hedging ------------------------------------------------------------------------------


def hedged_config(up: dict[str, tuple[ScriptedUpstream, str]]) -> dict[str, Any]:
    """`slow` first by priority, `quick` hedged in after 100 ms."""
    slow, quick = deployment("slow", up["slow"][1]), deployment("quick", up["quick"][1])
    return {"models": [group("g", slow, quick, strategy="priority", hedge_after_ms=100)]}


def test_hedging_wins_on_a_slow_primary() -> None:
    slow = Answer(body=chat_body("slow"), delay=3.0)
    with upstreams(slow=slow, quick=OK) as up, running_gateway(hedged_config(up)) as gateway:
        started = time.monotonic()
        response = chat(gateway)
        elapsed = time.monotonic() - started
        state = routing_state(gateway)
        hedges = metric(gateway, "seawall_hedges_total", group="g", deployment="quick")
        loser = metric(
            gateway,
            "seawall_upstream_attempts_total",
            group="g",
            deployment="slow",
            outcome="cancelled",
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "scripted reply"
    assert elapsed < 2.0
    assert response.headers["x-seawall-route"] == "g/quick(hedge) > g/slow!cancelled"
    assert hedges == 1
    assert (up["slow"][0].calls, up["quick"][0].calls) == (1, 1)
    assert state["slow"]["in_flight"] == 0 and state["slow"]["breaker"]["state"] == "closed"
    # The loser is counted as an attempt, with no verdict on its health.
    assert loser == 1
    assert state["slow"]["totals"]["outcomes"] == {"cancelled": 1}


def test_hedging_stream_winner_and_loser_stream_closed() -> None:
    slow = Answer(events=text_events(["late"]), delay=3.0)
    quick = Answer(events=text_events(["fast"]))
    with upstreams(slow=slow, quick=quick) as up, running_gateway(hedged_config(up)) as gateway:
        stream = sdk(gateway.url).chat.completions.create(
            model="g", messages=[{"role": "user", "content": "x"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "fast"
        assert routing_state(gateway)["slow"]["in_flight"] == 0


def test_a_client_leaving_a_stream_closes_its_upstream_connection() -> None:
    # What the provider sees when the agent goes away: its connection closes, so it
    # stops generating (and the gateway's pool does not reuse a half-read connection).
    trickle = Answer(events=text_events([f"w{i} " for i in range(200)]), event_delay=0.05)
    with upstreams(a=trickle) as up:
        config = {"models": [group("g", deployment("a", up["a"][1]))]}
        with running_gateway(config) as gateway:
            stream = sdk(gateway.url).chat.completions.create(
                model="g", messages=[{"role": "user", "content": "x"}], stream=True
            )
            first = next(iter(stream))
            stream.close()
            assert up["a"][0].abandoned.wait(10)
            assert first.choices[0].delta.content == "w0 "
            # The next request gets a fresh connection and a whole answer.
            up["a"][0].script = lambda n, body: Answer(body=chat_body("again"))
            assert chat(gateway).json()["choices"][0]["message"]["content"] == "again"


# -- deadlines ----------------------------------------------------------------------------


def test_client_deadline_header_bounds_the_request() -> None:
    with upstreams(a=Answer(body=chat_body(), delay=3.0)) as up:
        config = {"models": [group("g", deployment("a", up["a"][1]))]}
        with running_gateway(config) as gateway:
            started = time.monotonic()
            response = chat(gateway, headers={"x-seawall-timeout-ms": "300"})
            elapsed = time.monotonic() - started
            state = routing_state(gateway)["a"]
            bad = chat(gateway, headers={"x-seawall-timeout-ms": "soon"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_deadline"
    assert 0.3 <= elapsed < 1.5
    assert state["breaker"]["state"] == "closed" and state["window"]["errors"] == 0
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-seawall-timeout-ms"


# -- concurrency --------------------------------------------------------------------------


def test_hundreds_of_concurrent_requests_leave_consistent_counters() -> None:
    def every_third_fails(n: int, body: dict[str, Any]) -> Answer:
        if n % 3 == 0:
            return DOWN
        if body.get("stream"):
            return Answer(events=text_events(["a", "b"]))
        return OK

    def slow(n: int, body: dict[str, Any]) -> Answer:
        if body.get("stream"):
            return Answer(events=text_events(["s"]), event_delay=0.01)
        return Answer(body=chat_body(), delay=0.02)

    with upstreams(flaky=every_third_fails, slow=slow) as up:
        config = {
            "models": [
                group(
                    "g",
                    deployment("flaky", up["flaky"][1], retry={"attempts": 2, "backoff_ms": 1}),
                    deployment("slow", up["slow"][1]),
                    strategy="least-busy",
                )
            ]
        }
        with running_gateway(config) as gateway:

            async def run() -> list[httpx.Response]:
                plain = chat_many(gateway, 200)
                streams = chat_many(gateway, 100, stream=True)
                first, second = await asyncio.gather(plain, streams)
                return first + second

            responses = asyncio.run(run())
            state = routing_state(gateway)
            attempts = {d: sum(state[d]["totals"]["outcomes"].values()) for d in ("flaky", "slow")}
            served = metric(
                gateway,
                "seawall_responses_total",
                tenant="root",
                endpoint="chat",
                status="200",
                code="",
            )
    assert [r.status_code for r in responses] == [200] * 300
    assert all("data: [DONE]" in r.text for r in responses[200:])
    assert all(state[d]["in_flight"] == 0 for d in ("flaky", "slow"))
    assert attempts == {"flaky": up["flaky"][0].calls, "slow": up["slow"][0].calls}
    assert served == 300


# -- observability ------------------------------------------------------------------------


def test_admin_routing_needs_the_admin_role() -> None:
    user = hashlib.sha256(b"sk-user").hexdigest()
    admin = hashlib.sha256(b"sk-admin").hexdigest()
    with upstreams(a=OK) as up:
        config = {
            "models": [group("g", deployment("a", up["a"][1]))],
            "keys": [
                {"id": "user", "key_sha256": user},
                {"id": "ops", "key_sha256": admin, "roles": ["admin"]},
            ],
        }
        with running_gateway(config) as gateway:
            url = gateway.url + "/admin/routing"
            assert httpx.get(url).status_code == 401
            forbidden = httpx.get(url, headers={"authorization": "Bearer sk-user"})
            allowed = httpx.get(url, headers={"authorization": "Bearer sk-admin"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"
    assert allowed.status_code == 200
    assert allowed.json()["groups"][0]["deployments"][0]["id"] == "a"


def test_metrics_need_the_metrics_or_admin_role_when_keys_are_set() -> None:
    keys = [
        {"id": "user", "key_sha256": hashlib.sha256(b"sk-user").hexdigest()},
        {"id": "prom", "key_sha256": hashlib.sha256(b"sk-prom").hexdigest(), "roles": ["metrics"]},
    ]
    with upstreams(a=OK) as up:
        config = {"models": [group("g", deployment("a", up["a"][1]))], "keys": keys}
        with running_gateway(config) as gateway:
            url = gateway.url + "/metrics"
            anonymous = httpx.get(url)
            user = httpx.get(url, headers={"authorization": "Bearer sk-user"})
            scraper = httpx.get(url, headers={"authorization": "Bearer sk-prom"})
            health = httpx.get(gateway.url + "/healthz")
    assert anonymous.status_code == 401
    assert user.status_code == 403
    assert "lacks the 'metrics' role or the 'admin' role" in user.json()["error"]["message"]
    assert scraper.status_code == 200 and "seawall_upstream_attempts_total" in scraper.text
    assert health.status_code == 200  # orchestrators' probes stay open
