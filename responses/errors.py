"""What the Responses layer refuses, and why, in terms the gateway can render.

Each exception carries OpenAI's error fields (`message`, `param`, `code`); its class
says which HTTP status it means, so the gateway maps classes, never messages:

- `InvalidRequest`: 400 `invalid_request_error`: a body, a parameter or an item the
  translation cannot honour (an unknown parameter, a built-in tool, an item reference).
- `NotFound`: 404 `invalid_request_error`: `GET`/`DELETE /v1/responses/{id}` for a
  response that is not stored for this caller (absent, expired, or someone else's).
- `BadUpstreamReply`: 502: the chat completion an upstream returned cannot be turned
  into a Response (no choices, a tool call without a name...).
"""

from __future__ import annotations


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


def unsupported(param: str, what: str) -> InvalidRequest:
    """A parameter OpenAI accepts that translation to Chat Completions cannot honour."""
    return InvalidRequest(
        f"{what} is not supported when this model is served through translation to "
        "Chat Completions.",
        param=param,
        code="unsupported_parameter",
    )


def invalid_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, detail: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for '{param}': {detail}", param=param, code="invalid_value"
    )


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
