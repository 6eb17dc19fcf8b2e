"""Error answers shaped like the providers' own, status by status.

Clients, SDKs and the gateway branch on these fields (OpenAI's `type` and `code`,
Anthropic's `error.type`), and the gateway relays most 4xx bodies to its caller
as they came. An injected `400` that says `type: server_error, message: HTTP 400`
would teach an agent to handle an error no provider sends, so each status gets
the type, code and wording the provider really uses (seen in its answers and
docs), and the request's model where the provider names it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

#: OpenAI: status -> (type, code, message). Its 4xx bodies mostly say
#: `invalid_request_error` and tell cases apart by `code`; 403 is the exception.
OPENAI: dict[int, tuple[str, str | None, str]] = {
    400: (
        "invalid_request_error",
        None,
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
        "but what was sent was not valid JSON.)",
    ),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-proj-****chaos. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM): Limit 500, Used 500, "
        "Requested 1. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
    529: ("server_error", None, "Overloaded"),
}

#: Anthropic: status -> (error.type, message); `{"type": "error", "error": {...}}`.
ANTHROPIC: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: at least one message is required"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests "
        "per minute. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    503: ("overloaded_error", "Overloaded"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def openai_error(status: int, model: str) -> dict[str, Any]:
    default = ("invalid_request_error" if status < 500 else "server_error", None, _phrase(status))
    kind, code, message = OPENAI.get(status, default)
    message = message.format(model=model or "gpt-4o")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_error(status: int, model: str) -> dict[str, Any]:
    # Anthropic uses invalid_request_error for 4xx statuses it does not list, api_error for 5xx.
    default = ("invalid_request_error" if status < 500 else "api_error", _phrase(status))
    kind, message = ANTHROPIC.get(status, default)
    message = message.format(model=model or "claude-sonnet-4-5")
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CHAOSINJECTED0000000000",
    }
