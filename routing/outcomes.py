"""What an upstream attempt can end in, and what each outcome means for routing.

One table (DESIGN.md section 4) decides retries, breaker accounting, failover and the
status the client finally sees. Keeping it as data on the enum means the router,
the breaker and the error renderer can never disagree about an outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Policy:
    retry_same_deployment: bool
    counts_for_breaker: bool
    fails_over: bool
    client_status: int | None  # None: relay the upstream status unchanged
    #: What a client is told happened. Stable wording, and nothing from the failure
    #: itself: an exception's text names hosts, IPs and library internals.
    summary: str


class Failure(enum.Enum):
    """Classes of upstream failure; `policy` says what each one means for routing."""

    CONNECT = "connect"  # refused, DNS, TLS
    TIMEOUT = "timeout"  # connect/total timeout, stall
    RATE_LIMITED = "rate_limited"
    SERVER = "server"  # 500/502/503/504/529 (503 and 529 map to 503)
    CONTEXT_LENGTH = "context_length"  # uses context_window_fallbacks
    CONTENT_POLICY = "content_policy"
    CLIENT = "client"  # other 4xx: the caller's problem
    BAD_RESPONSE = "bad_response"  # invalid JSON, truncated body
    STREAM_BROKEN = "stream_broken"  # after the first byte was relayed
    UNAVAILABLE = "unavailable"  # breakers keep every (remaining) deployment away
    DEADLINE = "deadline"  # the request's own time limit ran out

    @property
    def policy(self) -> Policy:
        return POLICIES[self]

    @property
    def label(self) -> str:
        return self.value


# A table, not enum values: equal values would silently make members aliases.
POLICIES: dict[Failure, Policy] = {
    #                         retry  breaker failover client status
    Failure.CONNECT: Policy(False, True, True, 502, "could not connect to its upstream"),
    Failure.TIMEOUT: Policy(True, True, True, 504, "its upstream timed out"),
    Failure.RATE_LIMITED: Policy(True, True, True, 429, "its upstream is rate limiting"),
    Failure.SERVER: Policy(True, True, True, 502, "its upstream returned a server error"),
    Failure.CONTEXT_LENGTH: Policy(False, False, False, 400, "the prompt is too long"),
    Failure.CONTENT_POLICY: Policy(False, False, False, 400, "refused on content policy"),
    Failure.CLIENT: Policy(False, False, False, None, "its upstream refused the request"),
    Failure.BAD_RESPONSE: Policy(
        True, True, True, 502, "its upstream sent an invalid or incomplete response"
    ),
    Failure.STREAM_BROKEN: Policy(False, True, False, 502, "its upstream stream broke off"),
    Failure.UNAVAILABLE: Policy(False, False, True, 503, "no deployment is available"),
    Failure.DEADLINE: Policy(False, False, False, 504, "the request's time limit ran out"),
}


SERVER_STATUSES = frozenset({500, 502, 503, 504, 529})
CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)
POLICY_MARKERS = ("content_policy", "content_filter", "content management policy", "safety system")


class UpstreamError(Exception):
    """An attempt on one deployment failed; `failure` says how."""

    def __init__(
        self,
        failure: Failure,
        deployment: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        error_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.deployment = deployment
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.error_body = error_body
        #: Provider response headers the client may see (see `Reply.headers`).
        self.headers = headers or {}

    @property
    def client_status(self) -> int:
        policy_status = self.failure.policy.client_status
        if policy_status is None:
            return self.status or 502
        if self.failure is Failure.SERVER and self.status in (503, 529):
            return 503
        return policy_status

    def __repr__(self) -> str:
        return f"UpstreamError({self.failure.label}, {self.deployment!r}, status={self.status})"


def classify_status(status: int, error: dict[str, Any] | None) -> Failure:
    """Map an upstream HTTP error status (and its error object) to a failure class."""
    if status == 429:
        return Failure.RATE_LIMITED
    if status in SERVER_STATUSES or status >= 500:
        return Failure.SERVER
    if status == 400 and error is not None:
        text = " ".join(str(error.get(k) or "") for k in ("code", "type", "message")).lower()
        if any(marker in text for marker in CONTEXT_MARKERS):
            return Failure.CONTEXT_LENGTH
        if any(marker in text for marker in POLICY_MARKERS):
            return Failure.CONTENT_POLICY
    if status == 408:
        return Failure.TIMEOUT
    return Failure.CLIENT


def error_object(raw: bytes | str) -> dict[str, Any] | None:
    """The error object of an error body: OpenAI's `{"error": {...}}`, Anthropic's
    `{"type": "error", "error": {...}}`, or `{"error": "text"}`; None if neither."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    return None


def parse_retry_after(headers: dict[str, str], cap_seconds: float) -> float | None:
    """Seconds to wait from `retry-after-ms` (preferred, as OpenAI sends it) or `retry-after`.

    Only the delta-seconds form of `retry-after` is honoured; HTTP dates from LLM
    providers are rare and a wrong clock would make them dangerous. Capped so one
    provider cannot park a request for minutes.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if value >= 0 and value == value:  # rejects NaN
            return min(value, cap_seconds)
    return None
