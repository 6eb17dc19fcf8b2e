"""What the Responses layer refuses, and why, in terms the gateway can render.

Each exception carries OpenAI's error fields (`message`, `param`, `code`); its class
says which HTTP status it means, so the gateway maps classes, never messages:

- `InvalidRequest`: 400 `invalid_request_error`: a body, a parameter or an item the
  translation cannot honour (an unknown parameter, a built-in tool, an item reference).
- `NotFound`: 404 `invalid_request_error`: `GET`/`DELETE /v1/responses/{id}` for a
  response that is not stored for this caller (absent, expired, or someone else's).
- `BadUpstreamReply`: 502: the chat completion an upstream returned cannot be turned
  into a Response (no choices, a tool call without a name...).
- `StoreUnavailable`: 503: the response store (Redis) did not answer in time; the
  message names no host (the store's own log line does).
"""

from __future__ import annotations

from common import fields
from common.fields import FieldProblem


class ResponsesError(Exception):
    """Base class: an OpenAI-style error with `message`, `param` and `code`."""

    status = 400

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, param={self.param!r}, code={self.code!r})"


class InvalidRequest(ResponsesError):
    """The request cannot be translated as sent (HTTP 400)."""

    status = 400


class NotFound(ResponsesError):
    """No stored response with that id for this caller (HTTP 404)."""

    status = 404


class BadUpstreamReply(ResponsesError):
    """The upstream's chat completion cannot be read as a Response (HTTP 502)."""

    status = 502


class StoreUnavailable(ResponsesError):
    """The response store cannot be read now (HTTP 503): down, or slower than its
    timeout. Never a hang, and never the store's address in the message."""

    status = 503

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "The response store is unavailable; retry the request.",
            code="response_store_unavailable",
        )
        #: Why, for the server log only (it may name the store's host).
        self.detail = detail


def unsupported(param: str, what: str) -> InvalidRequest:
    """A parameter OpenAI accepts that translation to Chat Completions cannot honour."""
    return InvalidRequest(
        f"{what} is not supported when this model is served through translation to "
        "Chat Completions; a model group whose deployments speak the Responses API "
        "(`api: responses`) gets it passed through.",
        param=param,
        code="unsupported_parameter",
    )


def refused(problem: FieldProblem) -> InvalidRequest:
    """A request field refused by the kernel both validators share (common/fields.py)."""
    return InvalidRequest(problem.message, param=problem.param, code=problem.code)


def invalid_type(param: str, expected: str, value: object) -> InvalidRequest:
    return refused(fields.invalid_type(param, expected, value))


def unknown_parameter(param: str) -> InvalidRequest:
    """A field OpenAI's API does not define, refused as OpenAI refuses it (a long name
    is cut: the error never grows with the request)."""
    return refused(fields.unknown_parameter(param))


def invalid_value(param: str, detail: str) -> InvalidRequest:
    return refused(fields.invalid_value(param, detail))


def missing(param: str) -> InvalidRequest:
    return refused(fields.missing_parameter(param))
