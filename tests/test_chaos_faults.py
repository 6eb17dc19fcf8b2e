"""Every fault class, injected through `x-seawall-chaos`, and what the gateway does
about it as a client sees it: status, error code, route, headers, counters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from chaos.faults import FaultSpec
from chaos.targets import Targets, UnknownTarget
from tests.support import ServerThread, running_gateway

WEATHER_OUT = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temp": {"type": "number"},
        "unit": {"enum": ["c", "f"]},
        "conditions": {"type": "string"},
    },
    "required": ["city", "temp", "unit", "conditions"],
    "additionalProperties": False,
}
WEATHER_IN = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OFFERED = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_IN}}]


def mock(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "provider": "mock",
        "model": "mock-gpt",
        "retry": {"attempts": 1},
        "breaker": {"consecutive_failures": 10_000},
        "timeouts": {"connect_ms": 200, "ttft_ms": 400, "total_ms": 1500},
        "mock": {"chunk_delay_ms": 1, "stream_chunks": 6},
        **extra,
    }


CONFIG = {
    # The faults must look exactly like real failures, down to the detail; a trusted
    # setup sees that detail (the default hides it: tests/test_upstream_leaks.py).
    "server": {"expose_upstream_errors": True},
    "models": [
        {"name": "g", "deployments": [mock("d")], "context_window_fallbacks": ["long"]},
        {"name": "long", "deployments": [mock("long-d")]},
        {"name": "pair", "deployments": [mock("p1"), mock("p2")], "strategy": "priority"},
    ],
    "tools": [
        {
            "name": "get_weather",
            "input_schema": WEATHER_IN,
            "output_schema": WEATHER_OUT,
            "endpoint": "mock://weather",
            "retry": {"attempts": 1},
        }
    ],
    "receipts": {"keys": [{"id": "k", "secret": "chaos-test-secret-0123456789"}]},
    "chaos": {"enabled": True, "max_latency_ms": 5000, "colors": {"blue": {"deployments": ["p2"]}}},
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerThread]:
    with running_gateway(CONFIG) as server:
        yield server


def ask(
    gateway: ServerThread, chaos: str | None = None, model: str = "g", **body: Any
) -> httpx.Response:
    headers = {"x-seawall-chaos": chaos} if chaos else {}
    headers.update(body.pop("headers", {}))
    payload = {"model": model, "messages": [{"role": "user", "content": "hello chaos"}], **body}
    return httpx.post(
        gateway.url + "/v1/chat/completions", json=payload, headers=headers, timeout=30
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def sse_error(response: httpx.Response) -> str:
    """The code of the error event that ended a stream ('' if it ended cleanly)."""
    for line in response.text.splitlines():
        if line.startswith("data: {") and '"error"' in line:
            return line
    return ""


def content_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


# -- transport faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "detail"),
    [
        ("connect_refused", 502, "upstream_connect", "Connection refused"),
        ("tls_error", 502, "upstream_connect", "CERTIFICATE_VERIFY_FAILED"),
        ("dns_error", 502, "upstream_connect", "Name or service not known"),
        ("connect_timeout", 504, "upstream_timeout", "connect timeout"),
        ("latency;ms=3000", 504, "upstream_timeout", "timed out"),
        ("stall;ms=3000", 504, "upstream_timeout", "timed out"),
        ("reset;after_bytes=5", 502, "upstream_bad_response", "Connection reset by peer"),
    ],
)
def test_transport_faults_surface_as_real_failures(
    gateway: ServerThread, fault: str, status: int, code: str, detail: str
) -> None:
    response = ask(gateway, fault)
    assert response.status_code == status
    assert error_code(response) == code
    assert detail in response.json()["error"]["message"]
    assert response.headers["x-seawall-chaos-injected"] == f"{fault.split(';')[0]}@d"
    assert response.headers["x-seawall-route"].startswith("g/d!")


def test_latency_delays_without_failing(gateway: ServerThread) -> None:
    started = time.monotonic()
    response = ask(gateway, "latency;ms=300;jitter_ms=50")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.25
    assert response.headers["x-seawall-chaos-injected"] == "latency@d"


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("stream_cut;after_events=2", "peer closed connection"),
        ("reset;after_bytes=400", "Connection reset by peer"),
        ("stall;ms=3000", "stalled"),
        ("sse_truncated", "before [DONE]"),
        ("truncated", "peer closed connection"),
    ],
)
def test_stream_faults_after_the_first_byte_end_with_an_error_event(
    gateway: ServerThread, fault: str, message: str
) -> None:
    response = ask(gateway, fault, stream=True)
    assert response.status_code == 200  # already streaming when it broke
    event = sse_error(response)
    assert '"code":"stream_interrupted"' in event and message in event
    assert response.text.count("data: [DONE]") == 0
    assert response.text.startswith("data: {")  # the events before the break arrived


def test_slow_first_token_past_ttft_is_a_504_before_any_byte(gateway: ServerThread) -> None:
    response = ask(gateway, "slow_ttft;ms=3000", stream=True)
    assert response.status_code == 504
    assert error_code(response) == "upstream_timeout"


def test_slow_chunks_slow_the_stream_down(gateway: ServerThread) -> None:
    started = time.monotonic()
    response = ask(gateway, "slow_chunks;ms=60", stream=True)
    assert response.status_code == 200 and "data: [DONE]" in response.text
    assert time.monotonic() - started >= 0.3  # several chunks, 60 ms apart


# -- http faults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("http_error", 503, "overloaded"),
        ("http_error;status=500", 502, "had an error"),
        ("http_error;status=529;style=anthropic", 503, "Overloaded"),
        ("http_error;status=404", 404, "does not know the configured model"),
    ],
)
def test_http_errors_are_provider_shaped(
    gateway: ServerThread, fault: str, status: int, message: str
) -> None:
    response = ask(gateway, fault)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("fault", "body"),
    [
        (
            "http_error;status=400",
            {
                "error": {
                    "message": "We could not parse the JSON body of your request. (HINT: This "
                    "likely means you aren't using your HTTP library correctly. The OpenAI API "
                    "expects a JSON payload, but what was sent was not valid JSON.)",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            "http_error;status=422",
            {
                "error": {
                    "message": "Unprocessable Entity",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            "http_error;status=400;style=anthropic",
            {  # Anthropic's `{"type": "error", ...}`, relayed in OpenAI's envelope
                "error": {
                    "message": "messages: at least one message is required",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
    ],
)
def test_client_errors_reach_the_caller_as_the_provider_shaped_them(
    gateway: ServerThread, fault: str, body: dict[str, Any]
) -> None:
    # The gateway relays a provider's 4xx body as it came: what chaos injects is
    # what the caller sees, so it must be what the provider would have said.
    response = ask(gateway, fault)
    assert response.status_code == int(fault.split("status=")[1].split(";")[0])
    assert response.json() == body


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("http_error;status=401", "Incorrect API key provided"),
        ("http_error;status=403", "Country, region, or territory not supported"),
        ("http_error;status=404", "The model `mock-gpt` does not exist or you do not have access"),
        ("http_error;status=401;style=anthropic", "invalid x-api-key"),
        ("http_error;status=404;style=anthropic", "model: mock-gpt"),
    ],
)
def test_credential_and_model_errors_quote_what_the_provider_said(
    gateway: ServerThread, fault: str, said: str
) -> None:
    # The gateway answers these itself (its own config is at fault), quoting the
    # provider: the quote is the provider's real wording, the model the one asked for.
    response = ask(gateway, fault)
    assert response.status_code == int(fault.split("status=")[1].split(";")[0])
    assert response.json()["error"]["type"] == "upstream_error"
    assert f"(upstream said: {said}" in response.json()["error"]["message"]


def test_rate_limits_carry_retry_after(gateway: ServerThread) -> None:
    response = ask(gateway, "http_error;status=429;retry_after_ms=1500")
    assert response.status_code == 429
    assert error_code(response) == "upstream_rate_limited"
    assert response.headers["retry-after-ms"] == "1500"


def test_a_fault_with_count_fails_once_then_the_retry_succeeds(gateway: ServerThread) -> None:
    retrying = {"retry": {"attempts": 2, "backoff_ms": 1, "max_backoff_ms": 2}}
    config = {
        **CONFIG,
        "models": [{"name": "g", "deployments": [mock("d", **retrying)]}],
        "chaos": {"enabled": True},
    }
    with running_gateway(config) as server:
        response = ask(server, "http_error;status=503;count=1")
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/d!503 > g/d"


# -- payload faults ---------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["invalid_json", "truncated", "wrong_content_type"])
def test_broken_bodies_are_502s(gateway: ServerThread, fault: str) -> None:
    response = ask(gateway, fault)
    assert response.status_code == 502
    assert error_code(response) == "upstream_bad_response"


def data_payloads(response: httpx.Response) -> list[str]:
    return [
        event[len("data: ") :]
        for event in response.text.split("\n\n")
        if event.startswith("data: ")
    ]


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_invalid_json_on_a_stream_becomes_the_documented_error_event(
    gateway: ServerThread,
) -> None:
    # The stream has started (200, headers sent) before the broken event exists. The
    # relay checks every event's JSON: the events before the broken one are relayed,
    # the broken one never is, and the stream ends with the error event (the client's
    # SDK raises APIError, not a JSON decode error), without [DONE].
    clean = data_payloads(ask(gateway, stream=True))
    response = ask(gateway, "invalid_json", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-seawall-chaos-injected"] == "invalid_json@d"
    payloads = data_payloads(response)
    assert all(is_json(payload) for payload in payloads)

    def timeless(payload: str) -> dict[str, Any]:  # `created` may tick between the two
        return {k: v for k, v in json.loads(payload).items() if k != "created"}

    assert timeless(payloads[0]) == timeless(clean[0])
    assert "[DONE]" not in payloads
    assert response.text.endswith("\n\n") and "event: error\n" in response.text
    error = json.loads(sse_error(response).removeprefix("data: "))["error"]
    assert error["code"] == "stream_interrupted"
    assert "not valid JSON" in error["message"]  # this gateway exposes upstream detail


def test_the_sdk_raises_a_typed_error_for_an_invalid_event(gateway: ServerThread) -> None:
    client = openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key="x",
        max_retries=0,
        default_headers={"x-seawall-chaos": "invalid_json"},
    )
    stream = client.chat.completions.create(
        model="g", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as raised:
        for _ in stream:
            pass
    assert not isinstance(raised.value.__cause__, json.JSONDecodeError)
    assert "not valid JSON" in str(raised.value)


def test_wrong_content_type_on_a_stream_is_caught_before_any_byte(gateway: ServerThread) -> None:
    response = ask(gateway, "wrong_content_type", stream=True)
    assert response.status_code == 502
    assert "content-type 'text/html" in response.json()["error"]["message"]


def test_duplicated_events_pass_through_visibly(gateway: ServerThread) -> None:
    # The gateway relays events without parsing them, so a duplicate reaches the
    # client: the injected header is what tells the test (and the user) why.
    clean = ask(gateway, stream=True).text
    doubled = ask(gateway, "sse_duplicate", stream=True)
    assert doubled.status_code == 200
    assert doubled.text.count("data: {") == clean.count("data: {") + 1
    assert doubled.headers["x-seawall-chaos-injected"] == "sse_duplicate@d"


# -- semantic faults --------------------------------------------------------------------


def test_finish_length_cuts_the_answer(gateway: ServerThread) -> None:
    full, cut = content_of(ask(gateway)), ask(gateway, "finish_length")
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    assert content_of(cut) == full[: len(full) // 2]


@pytest.mark.parametrize(
    ("fault", "finish"), [("finish_content_filter", "content_filter"), ("empty_content", "stop")]
)
def test_filtered_and_empty_answers(gateway: ServerThread, fault: str, finish: str) -> None:
    response = ask(gateway, fault)
    assert response.status_code == 200
    assert content_of(response) == ""
    assert response.json()["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("fault", ["finish_length", "finish_content_filter", "empty_content"])
def test_semantic_faults_on_streams(gateway: ServerThread, fault: str) -> None:
    response = ask(gateway, fault, stream=True)
    assert response.status_code == 200 and "data: [DONE]" in response.text
    finishes = {
        "finish_length": '"finish_reason":"length"',
        "finish_content_filter": '"finish_reason":"content_filter"',
        "empty_content": '"finish_reason":"stop"',
    }
    assert finishes[fault] in response.text


def test_context_length_uses_the_context_window_fallback(gateway: ServerThread) -> None:
    response = ask(gateway, "context_length;target=d")
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "g/d!400 > long/long-d"


# -- tool faults ------------------------------------------------------------------------


def invoke(gateway: ServerThread, chaos: str | None = None) -> httpx.Response:
    headers = {"x-seawall-chaos": chaos} if chaos else {}
    return httpx.post(
        gateway.url + "/v1/tools/get_weather/invoke",
        json={"tool_call_id": "call_1", "arguments": {"city": "Oslo"}},
        headers=headers,
        timeout=30,
    )


def tool_round(
    gateway: ServerThread, chaos: str | None, with_receipt: bool = True
) -> httpx.Response:
    signed = invoke(gateway).json()
    tool_message: dict[str, Any] = {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": signed["content"],
    }
    if with_receipt:
        tool_message["seawall_receipt"] = signed["receipt"]
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        tool_message,
    ]
    return ask(gateway, chaos, messages=messages, tools=OFFERED)


@pytest.mark.parametrize(
    ("mode", "receipt", "status", "signal"),
    [
        ("invalid", False, 400, "tool_result_invalid"),
        ("inject", False, 200, "x-seawall-tool-flags"),
        ("wrong", True, 400, "tool_result_forged"),
        ("wrong", False, 200, None),  # schema-valid and unsigned: nothing can tell
    ],
)
def test_forged_tool_results(
    gateway: ServerThread, mode: str, receipt: bool, status: int, signal: str | None
) -> None:
    response = tool_round(gateway, f"forge_tool;tool=get_weather;mode={mode}", receipt)
    assert response.status_code == status
    assert response.headers["x-seawall-chaos-injected"] == "forge_tool@tool:get_weather"
    if status == 400:
        assert error_code(response) == signal
    elif signal is not None:
        assert ":injection:" in response.headers[signal]


@pytest.mark.parametrize(
    ("fault", "status", "check"),
    [
        ("forge_tool_call;mode=unknown_tool", 502, "tool_call_invalid"),
        ("forge_tool_call;mode=bad_args", 502, "tool_call_invalid"),
        ("forge_tool_call;mode=bad_args;count=1", 200, "repaired"),
    ],
)
def test_forged_tool_calls_are_caught(
    gateway: ServerThread, fault: str, status: int, check: str
) -> None:
    response = ask(
        gateway,
        fault,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_IN}}],
    )
    assert response.status_code == status
    if status == 502:
        assert error_code(response) == check
    else:
        assert response.headers["x-seawall-tool-repaired"] == "1"


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("bad_args", "tool 'get_weather': arguments are not valid JSON"),
        ("unknown_tool", "the model called 'forged_tool', which the request did not offer"),
    ],
)
def test_forged_tool_calls_use_the_offered_tools(
    gateway: ServerThread, mode: str, said: str
) -> None:
    # bad_args corrupts a call to a tool the request offered (read from the
    # upstream request body), so the arguments check is what catches it.
    response = ask(gateway, f"forge_tool_call;mode={mode}", tools=OFFERED)
    assert response.status_code == 502
    assert said in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("forge_tool;target=tool:get_weather;mode=invalid", 502, "tool_result_invalid"),
        ("connect_refused;target=tool:get_weather", 502, "tool_endpoint_failed"),
    ],
)
def test_faults_on_the_tool_endpoint(
    gateway: ServerThread, fault: str, status: int, code: str
) -> None:
    response = invoke(gateway, fault)
    assert response.status_code == status
    assert error_code(response) == code


def test_a_wrong_result_from_the_endpoint_itself_gets_signed(gateway: ServerThread) -> None:
    # A compromised tool is not a forged reply: the proxy vouches only for what
    # the tool returned. The chaos header says what happened.
    honest, forged = (
        invoke(gateway).json(),
        invoke(gateway, "forge_tool;tool=get_weather;mode=wrong"),
    )
    assert forged.status_code == 200
    assert forged.json()["content"] != honest["content"]
    assert forged.headers["x-seawall-chaos-injected"] == "forge_tool@tool:get_weather"


# -- targets, partitions, permissions, caps --------------------------------------------


def test_targets_pick_the_deployment(gateway: ServerThread) -> None:
    response = ask(gateway, "connect_refused;target=p1", model="pair")
    assert response.status_code == 200
    assert response.headers["x-seawall-route"] == "pair/p1!connect > pair/p2"
    by_group = ask(gateway, "connect_refused;target=group:pair", model="pair")
    assert by_group.status_code == 502
    assert by_group.headers["x-seawall-chaos-injected"] == "connect_refused@p1, connect_refused@p2"


@pytest.mark.parametrize(
    "header",
    [
        "latency;target=nope",
        "connect_refused;target=group:nope",
        "connect_refused;target=tool:nope",
        "forge_tool;tool=nope",
        "latency;target=d, latency;target=nope",
    ],
)
def test_unknown_targets_are_400s_listing_the_valid_ones(
    gateway: ServerThread, header: str
) -> None:
    # A fault aimed at nothing would silently test nothing.
    response = ask(gateway, header)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_chaos_header" and error["param"] == "x-seawall-chaos"
    target = header.rpartition("=")[2]
    target = f"tool:{target}" if header.startswith("forge_tool") else target
    assert f"unknown target {target!r}" in error["message"]
    valid = "d, group:g, group:long, group:pair, long-d, p1, p2, tool:get_weather"
    assert f"(valid: {valid})" in error["message"]
    assert "x-seawall-chaos-injected" not in response.headers


def test_the_config_source_is_a_target_for_config_faults_only() -> None:
    targets = Targets({"d": "g"})
    assert targets.check(FaultSpec("config_watch_drop", target="config")).target == "config"
    with pytest.raises(UnknownTarget, match=r"unknown target 'd' \(valid: config\)"):
        targets.check(FaultSpec("config_watch_drop", target="d"))
    with pytest.raises(UnknownTarget, match=r"unknown target 'config' \(valid: d, group:g\)"):
        targets.check(FaultSpec("latency", target="config"))


def test_a_traffic_color_partitions_routing(gateway: ServerThread) -> None:
    dyed = ask(gateway, model="pair", headers={"x-traffic-color": "blue"})
    plain = ask(gateway, model="pair")
    assert dyed.headers["x-seawall-route"] == "pair/p2"
    assert plain.headers["x-seawall-route"] == "pair/p1"


def test_malformed_headers_are_400s_naming_the_problem(gateway: ServerThread) -> None:
    response = ask(gateway, "latency;ms=soon")
    assert response.status_code == 400
    assert error_code(response) == "invalid_chaos_header"
    assert "latency: ms='soon': not a whole number" in response.json()["error"]["message"]
    color = ask(gateway, headers={"x-traffic-color": "purple"})
    assert color.status_code == 400 and "unknown traffic color 'purple'" in color.text


def test_caps_clamp_latency() -> None:
    # The deployment would wait out the whole 3 s requested, so only the cap
    # (200 ms) can make the answer arrive well before it.
    patient = {"timeouts": {"connect_ms": 200, "ttft_ms": 10_000, "total_ms": 10_000}}
    config = {
        "models": [{"name": "g", "deployments": [mock("d", **patient)]}],
        "chaos": {"enabled": True, "max_latency_ms": 200},
    }
    with running_gateway(config) as server:
        started = time.monotonic()
        response = ask(server, "latency;ms=3000")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-seawall-chaos-injected"] == "latency@d"
    assert 0.15 <= elapsed < 1.5  # the clamped delay, not none and not the 3 s asked for
