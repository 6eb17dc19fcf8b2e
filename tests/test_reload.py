"""Hot reload through the admin API: validate, swap, keep state, refuse, roll back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import create_app
from gateway.config import parse_config
from tests.servers.scripted import Answer, ScriptedUpstream, chat_body, text_events
from tests.support import FakeClock, ServerThread, running_gateway, scripted_deployment

CHAT = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}


deployment = scripted_deployment


def config_with(*deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"models": [{"name": "g", "deployments": list(deployments)}], **extra}


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    scripted = ScriptedUpstream(Answer(body=chat_body("from a")))
    with ServerThread(scripted) as server:
        yield scripted, server


def put(gateway: ServerThread, config: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.put(
        gateway.url + "/admin/config",
        content=yaml.safe_dump(config),
        headers={"content-type": "application/yaml", **headers},
        timeout=10,
    )


def ask(gateway: ServerThread) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=10)


def serving(gateway: ServerThread) -> str:
    return str(httpx.get(gateway.url + "/readyz").json()["config_version"])


def breaker(gateway: ServerThread, name: str) -> str:
    groups = httpx.get(gateway.url + "/admin/routing").json()["groups"]
    state = next(d for g in groups for d in g["deployments"] if d["id"] == name)["breaker"]
    return str(state["state"])


def test_a_new_config_serves_from_the_next_request(upstream: Any) -> None:
    _, server = upstream
    first = config_with(deployment("a", server.url))
    second = config_with(deployment("a", server.url), deployment("b", server.url))
    with running_gateway(first) as gateway:
        before = ask(gateway)
        reply = put(gateway, second, **{"if-match": before.headers["x-seawall-config-version"]})
        assert reply.status_code == 200, reply.text
        version = reply.json()["version"]
        assert version["number"] == 2
        after = ask(gateway)
        assert after.headers["x-seawall-config-version"] == version["id"] == serving(gateway)
        assert before.headers["x-seawall-config-version"] != version["id"]
        groups = httpx.get(gateway.url + "/admin/routing").json()["groups"]
        assert [d["id"] for d in groups[0]["deployments"]] == ["a", "b"]
        metrics = httpx.get(gateway.url + "/metrics").text
    assert 'seawall_config_reloads_total{result="applied"} 1.0' in metrics
    assert f'seawall_config_version_info{{id="{version["id"]}",number="2"}} 1.0' in metrics


def test_an_invalid_config_never_serves(upstream: Any) -> None:
    _, server = upstream
    good = config_with(deployment("a", server.url))
    bad = config_with(deployment("a", server.url, weight=-1), {"id": "a", "model": "m"})
    with running_gateway(good) as gateway:
        version = serving(gateway)
        reply = put(gateway, bad)
        assert reply.status_code == 400
        body = reply.json()
        assert body["error"]["code"] == "config_invalid"
        assert "models[0].deployments[0].weight: Input should be greater than 0" in body["problems"]
        assert "models: duplicate deployment id 'a'" in body["problems"]
        assert serving(gateway) == version
        assert ask(gateway).status_code == 200
        state = httpx.get(gateway.url + "/admin/config").json()
        assert state["version"]["id"] == version
        assert state["refused_since"][0]["problems"] == body["problems"]


def test_if_match_protects_against_a_lost_update(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config_with(deployment("a", server.url))) as gateway:
        reply = put(
            gateway,
            config_with(deployment("a", server.url, weight=2)),
            **{"if-match": '"0123abcd"'},
        )
        assert reply.status_code == 412
        assert reply.json()["error"]["code"] == "version_mismatch"
        assert reply.headers["etag"] == f'"{serving(gateway)}"'


def test_a_restart_only_change_is_refused_whole(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config_with(deployment("a", server.url))) as gateway:
        changed = config_with(deployment("a", server.url, weight=5), server={"port": 9999})
        reply = put(gateway, changed)
        assert reply.status_code == 400
        (problem,) = reply.json()["problems"]
        assert problem.startswith("server.port: cannot change without a restart")
        groups = httpx.get(gateway.url + "/admin/routing").json()["groups"]
        assert groups[0]["deployments"][0]["weight"] == 1.0  # not half-applied


def test_an_open_breaker_stays_open_across_a_reload(upstream: Any) -> None:
    scripted, server = upstream
    scripted.script = lambda n, body: Answer(status=503, body={"error": {"message": "down"}})
    clock = FakeClock()
    with running_gateway(config_with(deployment("a", server.url)), clock) as gateway:
        for _ in range(2):
            assert ask(gateway).status_code == 503
        assert breaker(gateway, "a") == "open"
        # New weight and thresholds, same upstream: the breaker is the same one.
        reply = put(gateway, config_with(deployment("a", server.url, weight=3)))
        assert reply.status_code == 200
        assert breaker(gateway, "a") == "open"
        # The same id at another upstream is another deployment: fresh health.
        moved = deployment("a", server.url.replace("127.0.0.1", "localhost"))
        assert put(gateway, config_with(moved)).status_code == 200
        assert breaker(gateway, "a") == "closed"


def test_rollback_serves_an_older_version_again(upstream: Any) -> None:
    _, server = upstream
    with running_gateway(config_with(deployment("a", server.url))) as gateway:
        first = serving(gateway)
        assert put(gateway, config_with(deployment("a", server.url, weight=2))).status_code == 200
        second = serving(gateway)
        versions = httpx.get(gateway.url + "/admin/config/versions").json()
        assert [v["number"] for v in versions["versions"]] == [2, 1]
        reply = httpx.post(gateway.url + "/admin/config/rollback", json={"version": 1})
        assert reply.status_code == 200, reply.text
        assert serving(gateway) == first != second
        missing = httpx.post(gateway.url + "/admin/config/rollback", json={"version": 42})
        assert missing.status_code == 404


def test_a_request_in_flight_finishes_on_its_own_version(upstream: Any) -> None:
    scripted, server = upstream
    release = threading.Event()

    def slow(number: int, body: dict[str, Any]) -> Answer:
        return Answer(events=text_events(["one", "two", "three"]), event_delay=0.2)

    scripted.script = slow
    with running_gateway(config_with(deployment("a", server.url))) as gateway:
        events: list[str] = []
        headers: dict[str, str] = {}

        def stream() -> None:
            with httpx.stream(
                "POST",
                gateway.url + "/v1/chat/completions",
                json={**CHAT, "stream": True},
                timeout=10,
            ) as response:
                headers.update(response.headers)
                for line in response.iter_lines():
                    if line:
                        events.append(line)
                        release.set()

        thread = threading.Thread(target=stream)
        thread.start()
        assert release.wait(10)
        old = serving(gateway)
        assert put(gateway, config_with(deployment("a", server.url, weight=2))).status_code == 200
        assert serving(gateway) != old
        thread.join(10)
        assert headers["x-seawall-config-version"] == old
        assert events[-1] == "data: [DONE]"
        # The old version is closed once its last request is done.
        deadline = time.monotonic() + 5
        while httpx.get(gateway.url + "/admin/config").json()["retiring"]:
            assert time.monotonic() < deadline, "the old version was never retired"
            time.sleep(0.02)


def test_a_config_object_version_rolls_back_with_its_secrets(upstream: Any) -> None:
    """A gateway built from a config object (no documents) keeps version #1 as the
    config says it, secrets included: a rollback to it must not serve the masked
    `**********` in place of a credential."""
    _, server = upstream
    secret = "a-receipt-key-of-32-characters!!"
    first = config_with(deployment("a", server.url, api_key="sk-upstream-secret"))
    first["receipts"] = {"keys": [{"id": "k1", "secret": secret}]}
    with ServerThread(create_app(parse_config(first, "<object>"))) as gateway:
        assert put(gateway, config_with(deployment("a", server.url))).status_code == 200
        back = httpx.post(gateway.url + "/admin/config/rollback", json={"version": 1})
        assert back.status_code == 200, back.text
        assert ask(gateway).status_code == 200
    assert upstream[0].headers[-1]["authorization"] == "Bearer sk-upstream-secret"


def test_every_response_names_the_version_that_served_it() -> None:
    """Not only the endpoints that answer themselves: a 404, a 405, an admin API error
    and an admin answer name the serving version too, and a new version at once."""
    mock = {"id": "m", "provider": "mock", "model": "mock-gpt"}
    with running_gateway(config_with(mock)) as gateway:
        first = serving(gateway)
        answers = [
            httpx.get(gateway.url + "/no/such/path"),
            httpx.get(gateway.url + "/v1/chat/completions"),
            httpx.get(gateway.url + "/admin/config/versions/no-such-version"),
            httpx.put(gateway.url + "/admin/config", content=b"models: [", timeout=10),
            httpx.get(gateway.url + "/admin/routing"),
            httpx.get(gateway.url + "/v1/models"),
        ]
        assert [a.status_code for a in answers] == [404, 405, 404, 400, 200, 200]
        assert {a.headers.get("x-seawall-config-version") for a in answers} == {first}
        assert put(gateway, config_with(mock, routing={"request_timeout_ms": 5000})).is_success
        second = serving(gateway)
        assert second != first
        assert httpx.get(gateway.url + "/nope").headers["x-seawall-config-version"] == second
