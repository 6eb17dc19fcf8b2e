"""The mock's refusals, worded as OpenAI words them.

A client developed against the mock should meet the same 400s it would meet on the
real API (a `tool_choice` naming a tool that was not offered, a tool call left
without its result), so the mock checks what OpenAI checks, with the same wording
where it is known, and the transport renders the error in OpenAI's envelope.
"""

from __future__ import annotations

from typing import Any


class MockError(Exception):
    """A request the mock refuses, with the HTTP status and OpenAI error object."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }


def invalid_value(param: str, message: str, code: str | None = "invalid_value") -> MockError:
    return MockError(400, f"Invalid value for '{param}': {message}", param, code)


def missing(param: str) -> MockError:
    return MockError(
        400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )
