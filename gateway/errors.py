"""Client-facing errors, always in OpenAI's envelope.

`{"error": {"message", "type", "param", "code"}}` with the right status: the OpenAI
SDKs turn it into their typed exceptions (BadRequestError, NotFoundError, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from common import fields
from common.fields import MAX_ECHO_CHARS as MAX_ECHO_CHARS  # re-exported
from common.fields import FieldProblem
from common.fields import echoed as echoed  # re-exported
from common.fields import json_type as json_type  # re-exported
from common.headers import DEPLOYMENT_HEADER
from common.redact import Redactor
from routing.outcomes import Failure, UpstreamError

#: The code of the error event that ends a stream which broke after it started (an
#: upstream failure, a gateway shutting down): `Exchange.error_code` records it too.
STREAM_INTERRUPTED = "stream_interrupted"

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


def bad_request(problem: FieldProblem) -> GatewayError:
    """A refused request field (common/fields.py) as the 400 the client gets."""
    return GatewayError(400, problem.message, code=problem.code, param=problem.param)


def invalid_type(param: str, expected: str, value: object) -> GatewayError:
    return bad_request(fields.invalid_type(param, expected, value))


def invalid_value(param: str, message: str) -> GatewayError:
    """`message` says what is wrong; a client value quoted in it must already be
    `echoed` (the message is the caller's sentence, only the caller knows its parts)."""
    return bad_request(fields.invalid_value(param, message))


def missing_parameter(param: str) -> GatewayError:
    return bad_request(fields.missing_parameter(param))


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
    through `Redactor.client` (key-like strings, IPs, host:port, and every secret of
    the config removed). And `server.expose_upstream_errors: true` restores the
    verbatim detail, for setups where the clients are the operators, with the
    config's secrets still removed: exposing detail never exposes a credential.

    Everything of the upstream's that reaches the client on these paths (message,
    param, code, type, relayed headers) goes through the redactor; this runs only
    when an attempt failed, never on a successful request.
    """

    def __init__(self, expose: bool = False, redactor: Redactor | None = None) -> None:
        self.expose = expose
        self.redactor = redactor if redactor is not None else Redactor()

    def _detail(self, text: str) -> str:
        """Upstream wording as the client may see it."""
        return self.redactor.secrets(text) if self.expose else self.redactor.client(text)

    def _field(self, value: object) -> str | None:
        """A provider's `param`, `type` or `code`: kept (the SDKs read them), without
        the config's secrets."""
        return self.redactor.secrets(value) if isinstance(value, str) else None

    def __call__(self, error: UpstreamError) -> GatewayError:
        status = error.client_status
        if not error.deployment:  # a group-level failure: no attempt was made
            return GatewayError(
                status,
                self.redactor.secrets(error.message),
                code=f"upstream_{error.failure.label}",
            )
        headers = {k: self.redactor.secrets(v) for k, v in error.headers.items()}
        headers[DEPLOYMENT_HEADER] = error.deployment
        if error.retry_after is not None and status == 429:
            headers["retry-after-ms"] = str(int(error.retry_after * 1000))
            headers["retry-after"] = str(max(1, round(error.retry_after)))
        body = error.error_body or {}
        if error.failure is Failure.CLIENT and error.status in DEPLOYMENT_PROBLEMS:
            code, what = DEPLOYMENT_PROBLEMS[error.status]
            said = str(body.get("message") or error.message)
            detail = f" (upstream said: {self.redactor.secrets(said)})" if self.expose else ""
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
                self._detail(message),
                code=self._field(provider_code),
                param=self._field(body.get("param")),
                type=self._field(body.get("type")),
                headers=headers,
            )
        if self.expose:
            detail = self.redactor.secrets(error.message)
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
