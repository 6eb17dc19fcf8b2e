"""Request validation over real HTTP: integral numbers, bounded echoes, and the
invoke endpoint's response headers. Each test is a regression for a failure the
fuzz run (tests/test_openapi.py) or a report found."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from common.fields import FieldProblem, check_fields
from common.headers import CHAOS_HEADER, CONFIG_VERSION_HEADER, REQUEST_ID_HEADER
from gateway.errors import MAX_ECHO_CHARS, echoed
from gateway.stages.validate import CHAT_FIELDS, INT_MAX, INTEGER
from tests.support import ServerThread, running_gateway

CHAT_INTEGERS = sorted(name for name, kind in CHAT_FIELDS.items() if kind is INTEGER)
HELLO = [{"role": "user", "content": "Hello"}]


def chat(server: ServerThread, **body: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "demo", "messages": HELLO, **body},
        timeout=30,
    )


def embed(server: ServerThread, **body: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/embeddings", json={"model": "demo", "input": "hi", **body}, timeout=30
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# -- integral numbers -----------------------------------------------------------------------


def test_an_integral_float_dimension_is_the_integer(default_gateway: ServerThread) -> None:
    response = embed(default_gateway, dimensions=2247.0, encoding_format="base64")
    assert response.status_code == 200, response.text
    vector = base64.b64decode(response.json()["data"][0]["embedding"])
    # The mock upstream refuses a non-int `dimensions`: it got the integer 2247.
    assert len(struct.unpack(f"<{len(vector) // 4}f", vector)) == 2247


def test_a_fractional_dimension_is_an_invalid_type(default_gateway: ServerThread) -> None:
    response = embed(default_gateway, dimensions=2247.5)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_type", "dimensions")
    assert "expected an integer, but got a decimal" in error["message"]  # as OpenAI words it


@pytest.mark.parametrize("name", CHAT_INTEGERS)
def test_every_chat_integer_field_takes_an_integral_float(
    default_gateway: ServerThread, name: str
) -> None:
    accepted = chat(default_gateway, **{name: 3.0})
    refused = chat(default_gateway, **{name: 3.5})
    assert accepted.status_code == 200, accepted.text
    assert refused.status_code == 400
    assert (error_of(refused)["code"], error_of(refused)["param"]) == ("invalid_type", name)


def test_max_tokens_reaches_the_upstream_as_an_integer(default_gateway: ServerThread) -> None:
    # The mock cuts its reply at max_tokens only when it is an int.
    response = chat(default_gateway, max_tokens=1.0)
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("value", [2.0**63, 2**63, -(2.0**64), 1e300])
def test_integers_beyond_64_bits_are_invalid_values(
    default_gateway: ServerThread, value: float
) -> None:
    response = chat(default_gateway, seed=value)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_value", "seed")
    assert str(INT_MAX) in error["message"]


def test_integral_float_token_ids_are_token_ids(default_gateway: ServerThread) -> None:
    assert embed(default_gateway, input=[1.0, 2.0, 3]).status_code == 200
    assert embed(default_gateway, input=[[1.0, 2], [3.0]]).status_code == 200
    refused = embed(default_gateway, input=[1.5, 2])
    assert refused.status_code == 400
    assert error_of(refused)["param"] == "input"
    huge = embed(default_gateway, input=[2.0**70])
    assert (huge.status_code, error_of(huge)["code"]) == (400, "invalid_value")


# -- what an error repeats of the request -----------------------------------------------------


@given(st.text(max_size=2 * MAX_ECHO_CHARS))
def test_echoed_keeps_short_values_and_marks_cut_ones(value: str) -> None:
    shown = echoed(value)
    if len(value) <= MAX_ECHO_CHARS:
        assert shown == value
    else:
        assert shown.startswith(value[:MAX_ECHO_CHARS])
        assert shown.endswith(f"...[truncated, {len(value)} characters]")
        assert len(shown) < MAX_ECHO_CHARS + 50


def test_a_megabyte_model_name_is_not_echoed_whole(default_gateway: ServerThread) -> None:
    model = "m" * (1024 * 1024)
    for response in (
        chat(default_gateway, model=model),
        embed(default_gateway, model=model),
    ):
        assert response.status_code == 404
        error = error_of(response)
        assert error["code"] == "model_not_found"
        assert len(error["message"]) < 400
        assert f"[truncated, {len(model)} characters]" in error["message"]


def test_a_long_model_path_is_not_echoed_whole(default_gateway: ServerThread) -> None:
    model = "x" * 20_000  # within the 32 KiB header limit
    response = httpx.get(f"{default_gateway.url}/v1/models/{model}")
    assert response.status_code == 404
    assert len(error_of(response)["message"]) < 400


def test_a_long_role_is_not_echoed_whole(default_gateway: ServerThread) -> None:
    response = chat(default_gateway, messages=[{"role": "r" * 100_000, "content": "hi"}])
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "messages[0].role"
    assert len(error["message"]) < 500


def test_a_long_tool_name_is_not_echoed_whole(default_gateway: ServerThread) -> None:
    name = "t" * 20_000
    response = httpx.post(
        f"{default_gateway.url}/v1/tools/{name}/invoke",
        json={"tool_call_id": "c1", "arguments": {}},
    )
    assert response.status_code == 404
    assert len(error_of(response)["message"]) < 400


@pytest.mark.parametrize("header", [CHAOS_HEADER, "x-seawall-timeout-ms"])
def test_a_long_header_value_is_not_echoed_whole(
    default_gateway: ServerThread, header: str
) -> None:
    response = httpx.post(
        default_gateway.url + "/v1/chat/completions",
        json={"model": "demo", "messages": HELLO},
        headers={header: "z" * 20_000},
    )
    assert response.status_code == 400
    assert len(error_of(response)["message"]) < 500


# -- the invoke endpoint ----------------------------------------------------------------------

TOKEN = "tools-but-not-chaos"


@pytest.fixture(scope="module")
def keyed_gateway() -> Iterator[ServerThread]:
    """The default config (chaos mode on) with one key that may invoke tools but
    may not use chaos."""
    text = resources.files("gateway").joinpath("default_config.yaml").read_text()
    config = yaml.safe_load(text)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    config["keys"] = [{"id": "agent", "key_sha256": digest, "roles": ["user", "tools"]}]
    with running_gateway(config) as server:
        yield server


def invoke(server: ServerThread, **headers: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/tools/seawall_demo_weather/invoke",
        json={"tool_call_id": "call_1", "arguments": {"city": "Oslo"}},
        headers={"authorization": f"Bearer {TOKEN}", **headers},
        timeout=30,
    )


def test_invoke_says_when_it_ignores_a_chaos_header(keyed_gateway: ServerThread) -> None:
    response = invoke(keyed_gateway, **{CHAOS_HEADER: "connect_refused"})
    assert response.status_code == 200, response.text
    assert response.headers[CHAOS_HEADER] == "ignored"
    assert response.json()["tool_call_id"] == "call_1"


def test_invoke_success_carries_the_request_headers(keyed_gateway: ServerThread) -> None:
    response = invoke(keyed_gateway)
    assert response.status_code == 200
    assert response.headers[REQUEST_ID_HEADER]
    assert response.headers[CONFIG_VERSION_HEADER]
    assert CHAOS_HEADER not in response.headers


def test_chat_still_says_when_it_ignores_a_chaos_header(keyed_gateway: ServerThread) -> None:
    response = httpx.post(
        keyed_gateway.url + "/v1/chat/completions",
        json={"model": "demo", "messages": HELLO},
        headers={"authorization": f"Bearer {TOKEN}", CHAOS_HEADER: "connect_refused"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers[CHAOS_HEADER] == "ignored"


def _fields_in_order(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The reference: every chat field in `CHAT_FIELDS`' order, as the check was
    written first; what the body becomes, or the first problem's parameter."""
    body = dict(body)
    for name, kind in CHAT_FIELDS.items():
        value = body.get(name)
        if value is not None:
            try:
                kept = kind.read(name, value)
            except FieldProblem as problem:
                return body, problem.param
            if kept is not value:
                body[name] = kept
    return body, None


_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(CHAT_FIELDS)), st.text(max_size=6)),
        _field_values,
        max_size=8,
    )
)
def test_check_fields_walks_the_body_and_names_the_first_problem_in_field_order(
    body: dict[str, Any],
) -> None:
    """Walking the body's own keys (the fast way) decides as walking every field in
    order does: the same body after, or the same parameter named when refused."""
    expected_body, expected_param = _fields_in_order(body)
    checked = dict(body)
    if expected_param is None:
        check_fields(checked, CHAT_FIELDS)
        assert checked == expected_body
    else:
        with pytest.raises(FieldProblem) as refused:
            check_fields(checked, CHAT_FIELDS)
        assert refused.value.param == expected_param
