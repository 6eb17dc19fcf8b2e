"""Who may inject faults, how much, and for how long: the chaos header's grammar and
permissions, the server's caps, and faults scheduled through the admin API."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.faults import KEY_PARSERS, KINDS, FaultError, build
from chaos.grammar import parse
from tests.support import FakeClock, ServerThread, running_gateway


def config(
    chaos: dict[str, Any] | None = None, keys: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    deployments = [
        {
            "id": name,
            "provider": "mock",
            "model": "m",
            "retry": {"attempts": 1},
            "breaker": {"consecutive_failures": 10_000},
        }
        for name in ("a", "b")
    ]
    result: dict[str, Any] = {
        "models": [{"name": "g", "strategy": "priority", "deployments": deployments}],
        "chaos": chaos if chaos is not None else {"enabled": True},
    }
    if keys:
        result["keys"] = keys
    return result


def key(token: str, *roles: str) -> dict[str, Any]:
    return {
        "id": token,
        "key_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "roles": list(roles),
    }


def chat(gateway: ServerThread, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "g", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
        timeout=30,
    )


def admin(
    gateway: ServerThread, method: str, path: str = "", token: str | None = None, **body: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, gateway.url + "/admin/chaos" + path, json=body or None, headers=headers, timeout=30
    )


REFUSE = {"x-seawall-chaos": "connect_refused;target=a"}


# -- permissions -----------------------------------------------------------------------


def test_chaos_needs_the_chaos_role() -> None:
    keys = [key("sk-user", "user"), key("sk-chaos", "user", "chaos")]
    with running_gateway(config(keys=keys)) as gateway:
        plain = chat(gateway, "sk-user", **REFUSE)
        allowed = chat(gateway, "sk-chaos", **REFUSE)
    assert plain.status_code == 200
    assert plain.headers["x-seawall-chaos"] == "ignored"
    assert plain.headers["x-seawall-route"] == "g/a"
    assert "x-seawall-chaos-injected" not in plain.headers
    assert allowed.headers["x-seawall-route"] == "g/a!connect > g/b"
    assert allowed.headers["x-seawall-chaos-injected"] == "connect_refused@a"


def test_chaos_disabled_ignores_headers_and_refuses_schedules() -> None:
    with running_gateway(config(chaos={"enabled": False})) as gateway:
        response = chat(gateway, **REFUSE)
        scheduled = admin(gateway, "POST", fault="connect_refused", duration_s=10)
    assert response.headers["x-seawall-chaos"] == "ignored"
    assert response.headers["x-seawall-route"] == "g/a"
    assert scheduled.status_code == 409
    assert scheduled.json()["error"]["code"] == "chaos_disabled"


def test_a_malformed_header_from_an_unauthorized_caller_is_just_ignored() -> None:
    with running_gateway(config(keys=[key("sk-user", "user")])) as gateway:
        response = chat(gateway, "sk-user", **{"x-seawall-chaos": "this is ;; not grammar"})
    assert response.status_code == 200
    assert response.headers["x-seawall-chaos"] == "ignored"


# -- caps ----------------------------------------------------------------------------------


def test_refused_caps_are_a_400() -> None:
    chaos = {"enabled": True, "max_probability": 0.5, "over_cap": "refuse"}
    with running_gateway(config(chaos=chaos)) as gateway:
        over = chat(gateway, **{"x-seawall-chaos": "connect_refused;p=0.9"})
        within = chat(gateway, **{"x-seawall-chaos": "connect_refused;p=0.5;seed=1;target=a"})
    assert over.status_code == 400
    assert "over the server's chaos caps" in over.json()["error"]["message"]
    assert within.status_code == 200


def test_clamped_probability_still_applies_the_fault() -> None:
    chaos = {"enabled": True, "max_probability": 0.0}
    with running_gateway(config(chaos=chaos)) as gateway:
        response = chat(gateway, **{"x-seawall-chaos": "connect_refused;target=a"})
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/a"  # p clamped to 0: never fires


def test_max_active_faults_limits_a_header() -> None:
    chaos = {"enabled": True, "max_active_faults": 2}
    with running_gateway(config(chaos=chaos)) as gateway:
        response = chat(gateway, **{"x-seawall-chaos": "latency;ms=1, latency;ms=1, latency;ms=1"})
    assert response.status_code == 400
    assert "max_active_faults" in response.json()["error"]["message"]


# -- the admin schedule --------------------------------------------------------------------


@pytest.fixture
def clocked() -> Iterator[tuple[ServerThread, FakeClock]]:
    clock = FakeClock()
    with running_gateway(config(), clock) as gateway:
        yield gateway, clock


def test_scheduled_faults_apply_to_every_request_until_they_expire(clocked: Any) -> None:
    gateway, clock = clocked
    created = admin(gateway, "POST", fault="connect_refused", target="a", duration_s=60)
    assert created.status_code == 201
    fault = created.json()
    assert fault["fault"] == "connect_refused" and fault["target"] == "a"
    assert fault["expires_in_s"] == 60
    for _ in range(3):  # no header needed: the schedule applies to all traffic
        assert chat(gateway).headers["x-seawall-route"] == "g/a!connect > g/b"
    listed = admin(gateway, "GET").json()
    assert [f["id"] for f in listed["faults"]] == [fault["id"]]
    assert listed["faults"][0]["injected"] == 3
    assert listed["injected"] == [{"fault": "connect_refused", "where": "a", "count": 3}]
    metrics = httpx.get(gateway.url + "/metrics").text
    series = 'seawall_faults_injected_total{fault="connect_refused",scope="root",target="a"}'
    assert f"{series} 3.0" in metrics
    clock.advance(60)  # expired by itself
    assert chat(gateway).headers["x-seawall-route"] == "g/a"
    assert admin(gateway, "GET").json()["faults"] == []


def test_scheduled_faults_can_be_cleared(clocked: Any) -> None:
    gateway, _ = clocked
    first = admin(gateway, "POST", fault="http_error", status=503, target="a", duration_s=60).json()
    admin(gateway, "POST", fault="latency", ms=1, duration_s=60)
    assert admin(gateway, "DELETE", "/" + first["id"]).json() == {"cleared": 1}
    assert admin(gateway, "DELETE", "/" + first["id"]).status_code == 404
    assert admin(gateway, "DELETE").json() == {"cleared": 1}
    assert chat(gateway).headers["x-seawall-route"] == "g/a"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fault": "nope", "duration_s": 5}, "unknown fault 'nope'"),
        ({"fault": "latency", "duration_s": 5, "ms": "soon"}, "not a whole number"),
        ({"fault": "latency", "duration_s": 0}, "duration_s must be more than 0 and at most 86400"),
        ({"fault": "latency", "duration_s": 5, "ms": None}, "latency: ms is null"),
        ({"fault": "latency"}, "'duration_s' must be a number"),
        ({"duration_s": 5}, "'fault' must be a fault name"),
    ],
)
def test_bad_schedules_are_400s(clocked: Any, body: dict[str, Any], message: str) -> None:
    gateway, _ = clocked
    response = admin(gateway, "POST", **body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize("target", ["nonexistent", "group:nope", "tool:nope"])
def test_scheduled_faults_must_aim_at_something_that_exists(clocked: Any, target: str) -> None:
    gateway, _ = clocked
    response = admin(gateway, "POST", fault="connect_refused", target=target, duration_s=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_fault" and error["param"] == "target"
    assert f"unknown target {target!r} (valid: a, b, group:g)" in error["message"]
    assert admin(gateway, "GET").json()["faults"] == []


def test_a_group_target_is_valid(clocked: Any) -> None:
    gateway, _ = clocked
    created = admin(gateway, "POST", fault="connect_refused", target="group:g", duration_s=60)
    assert created.status_code == 201
    assert chat(gateway).status_code == 502  # both deployments of g refuse


def test_a_header_aimed_at_nothing_is_a_400() -> None:
    with running_gateway(config()) as gateway:
        response = chat(gateway, **{"x-seawall-chaos": "latency;ms=1;target=nope"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_chaos_header"
    assert "latency: unknown target 'nope' (valid: a, b, group:g)" in error["message"]


def test_the_admin_api_needs_the_admin_role() -> None:
    keys = [key("sk-chaos", "chaos"), key("sk-ops", "admin")]
    with running_gateway(config(keys=keys)) as gateway:
        denied = admin(gateway, "POST", token="sk-chaos", fault="latency", duration_s=5)
        granted = admin(gateway, "POST", token="sk-ops", fault="latency", ms=1, duration_s=5)
    assert denied.status_code == 403
    assert granted.status_code == 201


# -- grammar ---------------------------------------------------------------------------------

EXAMPLE_VALUES = {
    "target": "mock-fast",
    "p": "0.25",
    "seed": "7",
    "after": "2",
    "count": "3",
    "ms": "150",
    "jitter_ms": "20",
    "after_bytes": "64",
    "after_events": "4",
    "status": "529",
    "retry_after": "1.5",
    "retry_after_ms": "250",
    "style": "anthropic",
    "tool": "get_weather",
}


@st.composite
def fault_texts(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    name = draw(st.sampled_from(sorted(KINDS)))
    kind = KINDS[name]
    keys = draw(
        st.lists(
            st.sampled_from(["target", "p", "seed", "after", "count", *kind.keys]), unique=True
        )
    )
    values = {k: EXAMPLE_VALUES[k] for k in keys if k != "mode"}
    if kind.modes:
        values["mode"] = draw(st.sampled_from(kind.modes))
    if name == "forge_tool":
        values.pop("target", None)  # forge_tool targets tools; `tool=` says which
    return name, values


@given(st.lists(fault_texts(), min_size=1, max_size=5), st.sampled_from(["", " ", "  "]))
def test_valid_headers_parse_to_what_was_written(
    faults: list[tuple[str, dict[str, str]]], pad: str
) -> None:
    header = f",{pad}".join(
        ";".join([name, *(f"{k}{pad}={pad}{v}" for k, v in values.items())])
        for name, values in faults
    )
    parsed = parse(header)
    assert [spec.name for spec in parsed] == [name for name, _ in faults]
    for spec, (_, values) in zip(parsed, faults, strict=True):
        assert spec == build(spec.name, values)
        assert parse(spec.describe()) == [spec]  # describe() is grammar again


@given(st.text(max_size=80))
def test_any_text_parses_or_fails_with_a_fault_error(text: str) -> None:
    try:
        parse(text)
    except FaultError as exc:
        message = str(exc)
    else:
        message = "parsed"
    assert message  # never another exception, never an empty explanation


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "fault #1 is empty"),
        ("latency,", "fault #2 is empty"),
        ("latency;ms=1;ms=2", "ms is given twice"),
        ("latency;=3", "'=3' is not key=value"),
        ("http_error;status=200", "must be an HTTP error status"),
        ("latency;p=nan", "not a finite number"),
        ("stream_cut;after_events=-1", "must be >= 0"),
        ("forge_tool_call;mode=wrong", "mode must be one of unknown_tool, bad_args"),
        ("latency;" + "x" * 5000, "longer than 4096"),
    ],
)
def test_grammar_errors_say_what_is_wrong(header: str, message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse(header)


def test_every_key_has_a_parser() -> None:
    for kind in KINDS.values():
        assert set(kind.keys) <= set(KEY_PARSERS)
