"""The error table of DESIGN.md section 4, as code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import UpstreamErrors
from routing.outcomes import POLICIES, Failure, UpstreamError, classify_status, parse_retry_after


def test_every_failure_has_its_own_policy_entry() -> None:
    assert set(POLICIES) == set(Failure)
    assert len({f.value for f in Failure}) == len(Failure)


@pytest.mark.parametrize(
    ("status", "error", "failure"),
    [
        (429, None, Failure.RATE_LIMITED),
        (500, None, Failure.SERVER),
        (503, None, Failure.SERVER),
        (529, None, Failure.SERVER),
        (400, {"code": "context_length_exceeded"}, Failure.CONTEXT_LENGTH),
        (
            400,
            {"message": "prompt is too long: 210000 tokens > 200000 maximum"},
            Failure.CONTEXT_LENGTH,
        ),
        (400, {"code": "content_policy_violation"}, Failure.CONTENT_POLICY),
        (400, {"message": "Invalid value for 'n'"}, Failure.CLIENT),
        (400, None, Failure.CLIENT),
        (401, None, Failure.CLIENT),
        (404, None, Failure.CLIENT),
        (422, None, Failure.CLIENT),
        (408, None, Failure.TIMEOUT),
    ],
)
def test_classify_status(status: int, error: dict[str, str] | None, failure: Failure) -> None:
    assert classify_status(status, error) is failure


@pytest.mark.parametrize(
    ("failure", "status", "client"),
    [
        (Failure.CONNECT, None, 502),
        (Failure.TIMEOUT, None, 504),
        (Failure.RATE_LIMITED, 429, 429),
        (Failure.SERVER, 500, 502),
        (Failure.SERVER, 503, 503),
        (Failure.SERVER, 529, 503),
        (Failure.BAD_RESPONSE, 200, 502),
        (Failure.CLIENT, 403, 403),
        (Failure.CLIENT, 422, 422),
        (Failure.CONTEXT_LENGTH, 400, 400),
    ],
)
def test_client_status(failure: Failure, status: int | None, client: int) -> None:
    error = UpstreamError(failure, "dep-1", "boom", status=status)
    assert error.client_status == client
    rendered = UpstreamErrors()(error)
    assert rendered.status == client
    assert rendered.headers["x-seawall-deployment"] == "dep-1"


def test_retry_after_prefers_ms_and_is_capped() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, 60) == 0.25
    assert parse_retry_after({"retry-after": "3"}, 60) == 3
    assert parse_retry_after({"retry-after": "3600"}, 60) == 60
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 60) is None
    assert parse_retry_after({"retry-after-ms": "nan"}, 60) is None
    assert parse_retry_after({}, 60) is None


@given(
    st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x"]), st.text(max_size=12))
)
def test_retry_after_never_raises_and_stays_in_bounds(headers: dict[str, str]) -> None:
    value = parse_retry_after(headers, 60)
    assert value is None or 0 <= value <= 60
