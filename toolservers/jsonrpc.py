"""JSON-RPC 2.0 messages as MCP uses them, and parsing with bounds.

Everything that reaches `/mcp` or comes back from an upstream server is parsed
here: size first (before any parsing), then JSON (orjson), then depth (a bounded
level-by-level walk, no recursion), then shape. A message that fails says why in
a `ParseFailure` carrying the JSON-RPC code to answer with and, when the message
got that far, its id (so the error answers the right request).

MCP narrows JSON-RPC: ids are strings or integers (never null, never a boolean,
unique per session and direction), `params` is an object, and batches (arrays of
messages) exist only in protocol revision 2025-03-26; later revisions removed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tools.schemas import depth_exceeds

# JSON-RPC 2.0's codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors, as the official SDKs number them.
CONNECTION_CLOSED = -32000  # the upstream server is down, or went away mid-call
REQUEST_TIMEOUT = -32001  # the upstream server did not answer in time
# MCP's own.
RESOURCE_NOT_FOUND = -32002

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": self.id, "method": self.method}
        if self.params is not None:
            out["params"] = self.params
        return out


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jsonrpc": "2.0", "method": self.method}
        if self.params is not None:
            out["params"] = self.params
        return out


@dataclass(frozen=True, slots=True)
class Response:
    id: RequestId
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.id, "result": self.result}


@dataclass(frozen=True, slots=True)
class Error:
    """An error response. `id` is None only when the request's id could not be read."""

    id: RequestId | None
    code: int
    message: str
    data: Any = None

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": self.id, "error": error}


Message = Request | Notification | Response | Error


class ParseFailure(ValueError):
    """A message that cannot be used: the code and message to answer with."""

    def __init__(self, code: int, message: str, id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def error(self) -> Error:
        return Error(self.id, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every parse runs under."""

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    #: Messages in one batch; 0: batches are refused.
    max_batch: int = 0


def parse(raw: bytes | str, limits: Limits = Limits()) -> Message | list[Message]:
    """One message, or a batch when `limits.max_batch` allows them.

    Raises `ParseFailure` for a body that is too large, not JSON, too deep, a batch
    where none is allowed (or an empty or too long one), or a malformed message.
    In a batch, each member must be well-formed: one bad member fails the batch
    (answering the good members while refusing one would need per-member errors
    for messages that may have no id)."""
    size = len(raw)
    if size > limits.max_bytes:
        raise ParseFailure(INVALID_REQUEST, f"message larger than {limits.max_bytes} bytes")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ParseFailure(PARSE_ERROR, "Parse error: the body is not valid JSON") from None
    if depth_exceeds(value, limits.max_depth):
        raise ParseFailure(INVALID_REQUEST, f"JSON nested deeper than {limits.max_depth} levels")
    if isinstance(value, list):
        if not limits.max_batch:
            raise ParseFailure(
                INVALID_REQUEST, "batches are not supported by this protocol revision"
            )
        if not value:
            raise ParseFailure(INVALID_REQUEST, "an empty batch")
        if len(value) > limits.max_batch:
            raise ParseFailure(INVALID_REQUEST, f"more than {limits.max_batch} messages in a batch")
        return [message(item) for item in value]
    return message(value)


def _id(value: Any) -> RequestId | None:
    """The id when it is one MCP allows (a string or an integer), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return value
    return None


def message(value: Any) -> Message:
    """A decoded JSON value as a message, or `ParseFailure` saying what is wrong."""
    if not isinstance(value, dict):
        raise ParseFailure(INVALID_REQUEST, "a JSON-RPC message must be an object")
    raw_id = value.get("id")
    id = _id(raw_id)
    if value.get("jsonrpc") != "2.0":
        raise ParseFailure(INVALID_REQUEST, 'the message must have "jsonrpc": "2.0"', id)
    method = value.get("method")
    if method is not None:
        if not isinstance(method, str) or not method:
            raise ParseFailure(INVALID_REQUEST, '"method" must be a non-empty string', id)
        params = value.get("params")
        if params is not None and not isinstance(params, dict):
            raise ParseFailure(INVALID_PARAMS, '"params" must be an object', id)
        if "id" not in value:
            return Notification(method, params)
        if id is None:
            raise ParseFailure(INVALID_REQUEST, '"id" must be a string or an integer')
        return Request(id, method, params)
    if "result" in value:
        if id is None:
            raise ParseFailure(INVALID_REQUEST, 'a response needs a string or integer "id"')
        result = value["result"]
        if not isinstance(result, dict):
            raise ParseFailure(INVALID_REQUEST, '"result" must be an object', id)
        return Response(id, result)
    error = value.get("error")
    if isinstance(error, dict):
        code, text = error.get("code"), error.get("message")
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(text, str):
            raise ParseFailure(INVALID_REQUEST, "an error needs an integer code and a message", id)
        if raw_id is not None and id is None:
            raise ParseFailure(
                INVALID_REQUEST, 'an error\'s "id" must be a string, integer or null'
            )
        return Error(id, code, text, error.get("data"))
    raise ParseFailure(INVALID_REQUEST, "neither a request, a notification nor a response", id)


def dumps(message: Message | list[Message]) -> bytes:
    if isinstance(message, list):
        return orjson.dumps([m.to_json() for m in message])
    return orjson.dumps(message.to_json())
