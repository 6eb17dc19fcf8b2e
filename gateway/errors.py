"""Client-facing errors, always in OpenAI's envelope.

`{"error": {"message", "type", "param", "code"}}` with the right status: the OpenAI
SDKs turn it into their typed exceptions (BadRequestError, NotFoundError, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response

from common.headers import DEPLOYMENT_HEADER
from common.redact import redact
from routing.outcomes import Failure, UpstreamError

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        #: Extra top-level members beside `error` (an admin refusal's `problems`).
        self.details = details
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPE_BY_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        if self.details:
            envelope.update(self.details)
        return envelope


def error_response(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    merged = {**(headers or {}), **error.headers}
    return Response(
        orjson.dumps(error.envelope()),
        status_code=error.status,
        headers=merged,
        media_type="application/json",
    )


def invalid_json(detail: str) -> GatewayError:
    return GatewayError(
        400,
        f"We could not parse the JSON body of your request: {detail}",
        code="invalid_json",
    )


#: How many characters of a client-sent value (a model name, a field value, a header)
#: an error message repeats. Enough to recognise it; never the whole of a megabyte
#: `model`, which would make the error as large as the request and be stored again
#: by every log and dashboard that keeps error messages.
MAX_ECHO_CHARS = 256


def echoed(value: str) -> str:
    """`value` as an error message may repeat it: whole up to `MAX_ECHO_CHARS`
    characters; beyond that its first `MAX_ECHO_CHARS`, an ellipsis and its length
    (`abc...[truncated, 1048576 characters]`), so the reader knows it was cut.

    Every error constructor that repeats client input passes it through here."""
    if len(value) <= MAX_ECHO_CHARS:
        return value
    return f"{value[:MAX_ECHO_CHARS]}...[truncated, {len(value)} characters]"


def invalid_type(param: str, expected: str, value: object) -> GatewayError:
    got = "an empty string" if value == "" else json_type(value)
    param = echoed(param)
    return GatewayError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        code="invalid_type",
        param=param,
    )


def invalid_value(param: str, message: str) -> GatewayError:
    """`message` says what is wrong; a client value quoted in it must already be
    `echoed` (the message is the caller's sentence, only the caller knows its parts)."""
    param = echoed(param)
    return GatewayError(
        400, f"Invalid value for '{param}': {message}", code="invalid_value", param=param
    )


def missing_parameter(param: str) -> GatewayError:
    param = echoed(param)
    return GatewayError(
        400,
        f"Missing required parameter: '{param}'.",
        code="missing_required_parameter",
        param=param,
    )


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{echoed(model)}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body exceeds the gateway limit of {limit} bytes (server.max_request_bytes).",
        code="request_too_large",
    )


def unauthorized(message: str) -> GatewayError:
    return GatewayError(
        401, message, code="invalid_api_key", headers={"www-authenticate": "Bearer"}
    )


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


#: Upstream statuses that point at the gateway's own configuration of a deployment
#: (its provider key, its api_base or model name), not at anything the caller sent.
DEPLOYMENT_PROBLEMS = {
    401: ("upstream_auth_failed", "rejected the gateway's provider credentials"),
    403: ("upstream_forbidden", "refused the gateway's provider credentials"),
    404: ("upstream_not_found", "does not know the configured model or path"),
}

#: Failures whose provider error body the client needs to fix its request.
_CALLER_FAILURES = (Failure.CLIENT, Failure.CONTEXT_LENGTH, Failure.CONTENT_POLICY)


class UpstreamErrors:
    """The client's view of a failed upstream attempt.

    What an upstream says when it fails is written for the gateway's operator: an
    exception names the host and IP it could not reach, a proxy's 500 page names
    internal services, and OpenAI's 401 quotes part of the gateway's own provider key.
    None of that is for clients. So a client gets the deployment id, the failure class
    and a stable sentence from the outcome table (`Policy.summary`); the detail goes to
    the server log beside the request id (see `gateway.stages.route`).

    Two exceptions. A 4xx that is the caller's fault (a bad parameter, a prompt too
    long, a content-policy refusal) keeps the provider's message, type, param and code,
    because rewriting it would lose what the caller must fix; the message is passed
    through `common.redact.redact` (key-like strings, IPs, host:port, and the gateway's
    own provider keys removed). And `server.expose_upstream_errors: true` restores the
    verbatim detail, for setups where the clients are the operators.
    """

    def __init__(self, expose: bool = False, secrets: Iterable[str] = ()) -> None:
        self.expose = expose
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, error: UpstreamError) -> GatewayError:
        status = error.client_status
        if not error.deployment:  # a group-level failure: no attempt was made
            return GatewayError(status, error.message, code=f"upstream_{error.failure.label}")
        headers = {**error.headers, DEPLOYMENT_HEADER: error.deployment}
        if error.retry_after is not None and status == 429:
            headers["retry-after-ms"] = str(int(error.retry_after * 1000))
            headers["retry-after"] = str(max(1, round(error.retry_after)))
        body = error.error_body or {}
        if error.failure is Failure.CLIENT and error.status in DEPLOYMENT_PROBLEMS:
            code, what = DEPLOYMENT_PROBLEMS[error.status]
            detail = (
                f" (upstream said: {body.get('message') or error.message})" if self.expose else ""
            )
            return GatewayError(
                status,
                f"Deployment '{error.deployment}' {what}{detail}. This is a gateway "
                "configuration problem, not a problem with your request or key.",
                code=code,
                type="upstream_error",
                headers=headers,
            )
        if error.failure in _CALLER_FAILURES and body:
            provider_code = body.get("code")
            if provider_code is None and error.failure is Failure.CONTEXT_LENGTH:
                provider_code = "context_length_exceeded"
            message = str(body.get("message") or error.failure.policy.summary)
            return GatewayError(
                status,
                message if self.expose else redact(message, self.secrets),
                code=provider_code if isinstance(provider_code, str) else None,
                param=body.get("param") if isinstance(body.get("param"), str) else None,
                type=body.get("type") if isinstance(body.get("type"), str) else None,
                headers=headers,
            )
        if self.expose:
            detail = error.message
        else:
            detail = error.failure.policy.summary
            if error.status is not None:
                detail += f" (HTTP {error.status})"
        return GatewayError(
            status,
            f"Deployment '{error.deployment}' failed: {detail}.",
            code=f"upstream_{error.failure.label}",
            headers=headers,
        )
