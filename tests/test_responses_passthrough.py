"""Responses pass-through: a model group whose upstreams speak the Responses API gets
`/v1/responses` as the client sent it, governed by the gateway's stages in that shape.

Upstreams: the mock in Responses mode (`provider: mock`, `api: responses`), and a
scripted upstream answering with the mock's Responses (tests/servers/scripted.py), which
records what it was sent, so a test can see the request arrive as sent.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.config import ConfigError, parse_config
from routing.config import MockSettings
from routing.mock.llm import MockLLM
from routing.mock.responses import MockResponses
from tests.isolation import call, two_tenants
from tests.servers.scripted import Answer, ScriptedUpstream
from tests.support import ServerThread, running_gateway

MOCK = MockResponses(MockLLM("mock-gpt", MockSettings()))


def native(deployment_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "provider": "mock",
        "model": "mock-gpt",
        "api": "responses",
        "retry": {"attempts": 1},
        **extra,
    }


def scripted(request_number: int, body: dict[str, Any]) -> Answer:
    """The mock's Response to what the scripted upstream was sent."""
    return Answer(body=MOCK.respond(body))


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ServerThread]]:
    recorder = ScriptedUpstream(scripted)
    with ServerThread(recorder) as server:
        yield recorder, server


@pytest.fixture(scope="module")
def gateway(upstream: tuple[ScriptedUpstream, ServerThread]) -> Iterator[ServerThread]:
    _, server = upstream
    recorded = {
        "id": "recorded",
        "provider": "openai",
        "model": "upstream-model",
        "api": "responses",
        "api_base": server.url + "/v1",
        "api_key": "sk-upstream",
        "retry": {"attempts": 1},
    }
    config = {
        "models": [
            {"name": "native", "deployments": [native("native-a"), native("native-b")]},
            {"name": "recorded", "deployments": [recorded]},
            {"name": "demo", "deployments": [{"id": "chat", "provider": "mock", "model": "m"}]},
        ],
        "chaos": {"enabled": True},
    }
    with running_gateway(config) as gw:
        yield gw


def client(gw: ServerThread, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


WEB_SEARCH = [{"type": "web_search"}]
ENCRYPTED = ["reasoning.encrypted_content"]


def test_built_in_tools_and_reasoning_items_survive(gateway: ServerThread) -> None:
    first = client(gateway).responses.create(
        model="native", input="What is new in Oslo?", tools=WEB_SEARCH, include=ENCRYPTED
    )
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "web_search_call", "message"]
    reasoning = first.output[0]
    assert reasoning.encrypted_content  # type: ignore[union-attr]
    # Stateless upstream, stateful gateway: the next turn continues by id, and the
    # reasoning item (with its encrypted content) goes back to the upstream.
    second = client(gateway).responses.create(
        model="native", input="And tomorrow?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert second.output_text
    stored = client(gateway).responses.retrieve(first.id)
    assert [item.type for item in stored.output] == kinds


def test_the_request_arrives_as_sent(
    gateway: ServerThread, upstream: tuple[ScriptedUpstream, ServerThread]
) -> None:
    recorder, _ = upstream
    body = {
        "model": "recorded",
        "input": [{"role": "user", "content": "search the news"}],
        "tools": WEB_SEARCH,
        "include": ENCRYPTED,
        "reasoning": {"effort": "high", "summary": "auto"},
        "background": False,
        "a_parameter_from_next_year": {"x": 1},
    }
    first = httpx.post(gateway.url + "/v1/responses", json=body, timeout=10)
    assert first.status_code == 200, first.text
    sent = recorder.requests[-1]
    assert sent == {**body, "model": "upstream-model"}
    # A continuation: the upstream gets the whole conversation as items, the stored
    # reasoning item and its encrypted content included, and no id to look up.
    earlier = first.json()
    second = httpx.post(
        gateway.url + "/v1/responses",
        json={"model": "recorded", "input": "more", "previous_response_id": earlier["id"]},
        timeout=10,
    )
    assert second.status_code == 200, second.text
    sent = recorder.requests[-1]
    assert "previous_response_id" not in sent
    assert sent["input"][: len(earlier["output"]) + 1][1:] == earlier["output"]
    assert sent["input"][-1]["content"] == "more"
    assert second.json()["previous_response_id"] == earlier["id"]


def test_streams_pass_through_and_are_stored(gateway: ServerThread) -> None:
    events = list(
        client(gateway).responses.create(
            model="native", input="stream it", tools=WEB_SEARCH, stream=True
        )
    )
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    final = events[-1].response  # type: ignore[union-attr]
    assert [item.type for item in final.output][:2] == ["reasoning", "web_search_call"]
    stored = client(gateway).responses.retrieve(final.id)
    assert stored.output_text == final.output_text


def test_failover_and_chaos_apply(gateway: ServerThread) -> None:
    refused = {"x-seawall-chaos": "connect_refused;target=native-a"}
    for _ in range(4):
        response = httpx.post(
            gateway.url + "/v1/responses",
            json={"model": "native", "input": "hi"},
            headers=refused,
            timeout=10,
        )
        assert response.status_code == 200
        assert response.headers["x-seawall-deployment"] == "native-b"
    cut = {"x-seawall-chaos": "stream_cut;after_events=3"}
    with httpx.stream(
        "POST",
        gateway.url + "/v1/responses",
        json={"model": "native", "input": "hi", "stream": True},
        headers=cut,
        timeout=10,
    ) as streamed:
        text = "".join(streamed.iter_text())
    assert "event: error" in text and '"code":"stream_interrupted"' in text


def test_a_responses_only_feature_on_a_translated_group_names_the_fix(
    gateway: ServerThread,
) -> None:
    refused = httpx.post(
        gateway.url + "/v1/responses",
        json={"model": "demo", "input": "hi", "tools": WEB_SEARCH},
        timeout=10,
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "unsupported_parameter" and "api: responses" in error["message"]


def test_a_group_speaks_one_api() -> None:
    mixed = {"models": [{"name": "g", "deployments": [native("a"), {"id": "b", "model": "m"}]}]}
    with pytest.raises(ConfigError, match="must all speak one api"):
        parse_config(mixed, "<test>")
    litellm = {"models": [{"name": "g", "deployments": [
        {"id": "c", "provider": "anthropic", "model": "claude", "api": "responses"}]}]}  # fmt: skip
    with pytest.raises(ConfigError, match="OpenAI-compatible provider"):
        parse_config(litellm, "<test>")


# -- governed in the Responses shape ------------------------------------------------------

RULES = [
    {
        "id": "no-web-search",
        "tenant": "red",
        "when": '"web_search" in tools',
        "effect": "deny",
        "message": "No web search for red.",
    },
    {
        "id": "results",
        "tenant": "red",
        "when": "tool_results",
        "effect": "flag",
        "flag": "results",
    },
]


@pytest.fixture(scope="module")
def governed() -> Iterator[ServerThread]:
    shared = [native("shared-a"), native("shared-b")]
    own = {t: [native(f"{t}-own")] for t in ("red", "blue")}
    capped = {"red": {"caps": {"max_tokens": 50}}}
    config = two_tenants(shared=shared, own=own, tenant_extra=capped, policies={"rules": RULES})
    # A key of red's of its own, so its limit counts this module's one test alone.
    config["keys"].append(
        {
            "id": "red-metered",
            "key_sha256": hashlib.sha256(b"red-metered").hexdigest(),
            "tenant": "red",
            "limits": {"tokens_per_minute": 100_000},
        }
    )
    with running_gateway(config) as gw:
        yield gw


def post(gw: ServerThread, key: str, **body: Any) -> httpx.Response:
    return call(gw.url, key, "POST", "/v1/responses", json={"model": "chat", **body})


def test_policies_read_the_responses_shape(governed: ServerThread) -> None:
    denied = post(governed, "red-user", input="hi", tools=WEB_SEARCH)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "policy_denied"
    assert post(governed, "blue-user", input="hi", tools=WEB_SEARCH).status_code == 200
    items = [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]
    flagged = post(governed, "red-user", input=items)
    assert flagged.status_code == 200
    assert flagged.headers["x-seawall-policy"].startswith("results")


def test_caps_and_limits_apply_in_the_responses_shape(governed: ServerThread) -> None:
    over = post(governed, "red-metered", input="hi", max_output_tokens=500)
    assert over.status_code == 400 and over.json()["error"]["code"] == "max_tokens_over_cap"
    served = post(governed, "red-metered", input="hi")
    assert served.status_code == 200
    assert served.json()["max_output_tokens"] == 50  # the cap, written where it applies
    # Settled with the usage the upstream reported, in the Responses API's names.
    usage = served.json()["usage"]
    actual = usage["input_tokens"] + usage["output_tokens"]
    assert 0 < actual < 50 + 1  # less than the reservation (the prompt estimate and the cap)
    assert tokens_used(governed, "key:red-metered", actual) == actual


def tokens_used(gw: ServerThread, level_name: str, expected: int) -> int:
    """The level's tokens_per_minute use, read until it is `expected` (settlement is
    a completion hook, after the last byte: it may land after the client has the
    response) or 5 s have passed."""
    deadline = time.monotonic() + 5
    while True:
        limits = call(gw.url, "red-all", "GET", "/admin/limits").json()
        (level,) = [level for level in limits["levels"] if level["level"] == level_name]
        (tokens,) = [row for row in level["limits"] if row["limit"] == "tokens_per_minute"]
        used = int(tokens["used"])
        if used == expected or time.monotonic() > deadline:
            return used


def test_a_sibling_cannot_continue_or_read_a_passed_through_response(
    governed: ServerThread,
) -> None:
    blue = post(governed, "blue-user", input="a secret plan", include=ENCRYPTED)
    assert blue.status_code == 200
    blue_id = blue.json()["id"]
    stolen = post(governed, "red-all", input="go on", previous_response_id=blue_id)
    assert stolen.status_code == 400
    assert stolen.json()["error"]["code"] == "previous_response_not_found"
    read = call(governed.url, "red-all", "GET", f"/v1/responses/{blue_id}")
    assert read.status_code == 404
    reasoning_id = blue.json()["output"][0]["id"]
    referenced = post(governed, "red-all", input=[{"type": "item_reference", "id": reasoning_id}])
    assert referenced.status_code == 404
    # blue continues its own, on whichever deployment is chosen.
    own = post(governed, "blue-user", input="go on", previous_response_id=blue_id)
    assert own.status_code == 200 and own.json()["previous_response_id"] == blue_id
