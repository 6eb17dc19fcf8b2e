"""The OpenAPI 3.1 document of the endpoints seawall serves, `GET /openapi.json`.

Built from code, never a hand-kept file: the request bodies come from the field
tables the validation stages check (`gateway.stages.validate`), the limits from the
serving config, the error envelope from `gateway.errors`. Each endpoint is one
`Operation` in `OPERATIONS`; an endpoint added to the app is one more entry there
(tests/test_openapi.py fails while a route is served but not documented, or
documented but not served).

The document describes only the API's shape and the server's limits: no model
group, deployment, tool or key name. So it is served to every caller, without a key,
like `/healthz`; what each endpoint requires is in its `security` and `x-seawall-role`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from audit.params import FILTER_PARAMS, QUERY_PARAMS
from chaos.faults import KINDS
from common.chat import MAX_TOKEN_FIELDS
from common.fields import INTEGER, Schema, nullable, optional_fields
from common.headers import (
    CHAOS_HEADER,
    COLOR_HEADER,
    CONFIG_VERSION_HEADER,
    INJECTED_HEADER,
    REQUEST_ID_HEADER,
    TIMEOUT_HEADER,
)
from gateway.admin.body import MAX_ADMIN_BODY
from gateway.admin.config import MAX_CONFIG_BYTES
from gateway.errors import MAX_ECHO_CHARS
from gateway.stages.validate import (
    ALLOWED_TOOLS_MODES,
    CHAT_FIELDS,
    CUSTOM_FORMATS,
    EMBEDDING_FIELDS,
    GRAMMAR_SYNTAXES,
    MESSAGE_FIELDS,
    ROLES,
    STREAM_OPTIONS_FIELDS,
    TOOL_CUSTOM_FIELDS,
    TOOL_FUNCTION_FIELDS,
)
from responses.request import PARAMETERS, RESPONSES_FIELDS

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.runtime import Runtime

OPENAPI_VERSION = "3.1.0"
#: Where the document is served.
OPENAPI_PATH = "/openapi.json"


# -- request bodies, from the validation tables -----------------------------------------


def _object(properties: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """An object with these `properties`; other members are allowed (they pass
    through to the provider untouched)."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return schema


def _content_part() -> Schema:
    part = _object({"type": {"type": "string"}}, ("type",))
    # A text part's `text` is read (token counting, tool-result checks): a string.
    part["if"] = {"properties": {"type": {"const": "text"}}}
    part["then"] = _object({"text": {"type": "string"}}, ("text",))
    return part


def _tool_call() -> Schema:
    """An earlier tool call in an assistant message: a custom tool's (`type:
    custom`, `custom.name` and its free-text `custom.input`) or a function's."""
    function = _object(
        {
            "function": _object(
                {"name": {"type": "string"}, "arguments": {"type": "string"}},
                ("name", "arguments"),
            )
        },
        ("function",),
    )
    custom = _object(
        {
            "custom": _object(
                {"name": {"type": "string"}, "input": {"type": "string"}}, ("name", "input")
            )
        },
        ("custom",),
    )
    return {
        "type": "object",
        "if": {"properties": {"type": {"const": "custom"}}, "required": ["type"]},
        "then": custom,
        "else": function,
    }


def _message() -> Schema:
    call = _tool_call()
    return _object(
        {
            "role": {"type": "string", "enum": sorted(ROLES)},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": _content_part()},
                    {"type": "null"},
                ]
            },
            **optional_fields(MESSAGE_FIELDS),
            "tool_calls": nullable({"type": "array", "items": call}),
        },
        ("role",),
    )


def _function() -> Schema:
    return _object(
        {"name": {"type": "string", "minLength": 1}, **optional_fields(TOOL_FUNCTION_FIELDS)},
        ("name",),
    )


def _custom_format() -> Schema:
    grammar = _object(
        {
            "definition": {"type": "string"},
            "syntax": {"type": "string", "enum": list(GRAMMAR_SYNTAXES)},
        },
        ("definition", "syntax"),
    )
    schema = _object({"type": {"type": "string", "enum": list(CUSTOM_FORMATS)}}, ("type",))
    schema["if"] = {"properties": {"type": {"const": "grammar"}}}
    schema["then"] = _object({"grammar": grammar}, ("grammar",))
    return schema


def _custom() -> Schema:
    return _object(
        {
            "name": {"type": "string", "minLength": 1},
            **optional_fields(TOOL_CUSTOM_FIELDS),
            "format": nullable(_custom_format()),
        },
        ("name",),
    )


def _tool() -> Schema:
    function = _object({"type": {"const": "function"}, "function": _function()}, ("function",))
    function["title"] = "Function tool"
    custom = _object({"type": {"const": "custom"}, "custom": _custom()}, ("type", "custom"))
    custom["title"] = "Custom tool"
    custom["description"] = "Takes free text, optionally under a grammar."
    return {"anyOf": [function, custom]}


def _named_tool(kind: str, type_required: bool = True) -> Schema:
    """`{"type": kind, kind: {"name"}}`: a tool named in `tool_choice`."""
    named = _object({"name": {"type": "string"}}, ("name",))
    return _object(
        {"type": {"const": kind}, kind: named}, ("type", kind) if type_required else (kind,)
    )


def _tool_choice() -> Schema:
    allowed = _object(
        {
            "mode": {"type": "string", "enum": list(ALLOWED_TOOLS_MODES)},
            "tools": {
                "type": "array",
                "items": {
                    "anyOf": [_named_tool("function", type_required=False), _named_tool("custom")]
                },
            },
        },
        ("mode", "tools"),
    )
    return {
        "anyOf": [
            {"type": "string"},
            _named_tool("function"),
            _named_tool("custom"),
            _object(
                {"type": {"const": "allowed_tools"}, "allowed_tools": allowed},
                ("type", "allowed_tools"),
            ),
        ]
    }


#: `max_tokens` and `max_completion_tokens` are not both set (null is unset).
ONE_MAX_TOKENS: Schema = {
    "not": {
        "required": list(MAX_TOKEN_FIELDS),
        "properties": {field: {"not": {"type": "null"}} for field in MAX_TOKEN_FIELDS},
    }
}


MODEL = {"type": "string", "minLength": 1, "description": "A model group name."}


def chat_request() -> Schema:
    properties = optional_fields(CHAT_FIELDS)
    properties["stream_options"] = nullable(_object({**optional_fields(STREAM_OPTIONS_FIELDS)}))
    properties["tools"] = nullable({"type": "array", "items": _tool()})
    properties["tool_choice"] = nullable(_tool_choice())
    properties["functions"] = nullable({"type": "array", "items": _function()})
    schema = _object(
        {
            "model": MODEL,
            "messages": {"type": "array", "minItems": 1, "items": _message()},
            **properties,
        },
        ("model", "messages"),
    )
    return {**schema, **ONE_MAX_TOKENS}


def responses_request() -> Schema:
    """A Responses create body: every parameter `responses.request` knows (any other is
    refused, as OpenAI refuses it), the simple ones with their kernel types; `input`
    and the structured ones are checked by the translation itself."""
    properties: dict[str, Schema] = {name: {} for name in sorted(PARAMETERS)}
    properties.update(optional_fields(RESPONSES_FIELDS))
    properties["model"] = MODEL
    properties["input"] = {"anyOf": [{"type": "string"}, {"type": "array"}]}
    return {**_object(properties, ("model", "input")), "additionalProperties": False}


def embeddings_request() -> Schema:
    token = dict(INTEGER.schema)
    return _object(
        {
            "model": MODEL,
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    {"type": "array", "minItems": 1, "items": token},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "array", "items": token},
                    },
                ]
            },
            **optional_fields(EMBEDDING_FIELDS),
        },
        ("model", "input"),
    )


def invocation_request() -> Schema:
    return _object(
        {
            "tool_call_id": {"type": "string", "minLength": 1},
            "arguments": {
                "type": "object",
                "description": "Checked against the tool's input_schema.",
            },
        },
        ("tool_call_id", "arguments"),
    )


def fault_request() -> Schema:
    value = {"type": ["string", "number", "boolean"]}
    schema = _object(
        {"fault": {"type": "string", "enum": sorted(KINDS)}, "duration_s": {"type": "number"}},
        ("fault", "duration_s"),
    )
    schema["additionalProperties"] = value
    schema["description"] = (
        "A fault and its keys, as in the x-seawall-chaos header (docs/chaos.md), "
        "scheduled for `duration_s` seconds."
    )
    return schema


def rollout_reason() -> Schema:
    reason = {"type": "string", "maxLength": 200, "description": "Kept with the step."}
    return _object({"reason": reason})


def rollback_request() -> Schema:
    version = {"type": ["integer", "string"], "description": "A version number or id."}
    return _object({"version": version}, ("version",))


# -- responses ----------------------------------------------------------------------------

ERROR_SCHEMA: Schema = {
    "type": "object",
    "description": "OpenAI's error envelope: the OpenAI SDKs raise their typed errors.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}

#: What each documented error status means, in general; the error's `code` says
#: precisely (README, Errors).
ERROR_STATUSES: Mapping[int, str] = {
    400: "The request is malformed or has an invalid field (`param` names it).",
    401: "Missing or wrong API key (when keys are configured).",
    403: "The key lacks the role this endpoint needs.",
    404: "No such model group, tool, fault or version.",
    408: "Headers or body stopped arriving.",
    409: "The request conflicts with the gateway's state (chaos mode off, read-only config).",
    412: "If-Match names another config version.",
    413: "The request body is over the limit.",
    429: "Rate limited upstream.",
    431: "Request line and headers over the limit.",
    502: "The upstream (or the tool endpoint) failed or answered badly.",
    503: "No deployment available, too many connections, or shutting down.",
    504: "The upstream, or the request's own deadline, timed out.",
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INT = {"type": "integer"}
OBJECT: Schema = {"type": "object"}
ARRAY_OF_OBJECTS = {"type": "array", "items": OBJECT}

CHAT_COMPLETION = _object(
    {
        "id": STRING,
        "object": {"const": "chat.completion"},
        "created": INT,
        "model": STRING,
        "choices": ARRAY_OF_OBJECTS,
        "usage": OBJECT,
    },
    ("id", "object", "choices"),
)
RESPONSE_OBJECT = _object(
    {"id": STRING, "object": {"const": "response"}, "status": STRING, "output": ARRAY_OF_OBJECTS},
    ("id", "object"),
)
DELETED = _object(
    {"id": STRING, "object": STRING, "deleted": {"type": "boolean"}}, ("id", "deleted")
)
ITEM_PAGE = _object(
    {"object": {"const": "list"}, "data": ARRAY_OF_OBJECTS, "has_more": {"type": "boolean"}},
    ("object", "data"),
)
EMBEDDING_LIST = _object(
    {"object": {"const": "list"}, "data": ARRAY_OF_OBJECTS, "model": STRING, "usage": OBJECT},
    ("object", "data"),
)
INVOCATION = _object(
    {
        "tool_call_id": STRING,
        "content": {"type": "string", "description": "The tool's JSON result, as text."},
        "receipt": {
            "type": ["string", "null"],
            "description": "HMAC receipt: send it back with the tool message.",
        },
    },
    ("tool_call_id", "content", "receipt"),
)
MODEL_CARD = _object(
    {"id": STRING, "object": {"const": "model"}, "created": INT, "owned_by": STRING},
    ("id", "object", "created", "owned_by"),
)
MODEL_LIST = _object(
    {"object": {"const": "list"}, "data": {"type": "array", "items": MODEL_CARD}},
    ("object", "data"),
)
STATUS = _object({"status": STRING}, ("status",))
READINESS = _object(
    {
        "status": {"enum": ["ready", "starting", "draining"]},
        "config_version": STRING,
        "config_number": INT,
        "model_groups": INT,
    },
    ("status",),
)
ROUTING_STATE = _object(
    {"groups": ARRAY_OF_OBJECTS, "retry_budget": OBJECT, "fallbacks": ARRAY_OF_OBJECTS},
    ("groups", "retry_budget", "fallbacks"),
)
CHAOS_STATE = _object(
    {"enabled": {"type": "boolean"}, "faults": ARRAY_OF_OBJECTS, "injected": ARRAY_OF_OBJECTS},
    ("enabled", "faults", "injected"),
)
SCHEDULED_FAULT = _object(
    {"id": STRING, "fault": STRING, "expires_in_s": NUMBER, "spec": STRING},
    ("id", "fault", "expires_in_s"),
)
CLEARED = _object({"cleared": INT}, ("cleared",))
VERSION = _object(
    {"id": STRING, "number": INT, "origin": STRING, "loaded_at": NUMBER},
    ("id", "number"),
)
LIMITS_STATE = _object(
    {
        "store": _object(
            {"kind": STRING, "shared": {"type": "boolean"}, "available": {"type": "boolean"}},
            ("kind", "shared", "available"),
        ),
        "levels": ARRAY_OF_OBJECTS,
    },
    ("store", "levels"),
)
CONFIG_STATE = _object({"version": VERSION, "config": OBJECT}, ("version", "config"))
AUDIT_ANSWER = _object(
    {"object": STRING, "data": ARRAY_OF_OBJECTS, "cursor": {"type": ["string", "null"]}},
    ("object", "data"),
)
SLO_STATE = _object({"slos": ARRAY_OF_OBJECTS}, ("slos",))
#: `GET /admin/ui/state` (gateway/admin/ui/state.py says what each section holds).
UI_SECTIONS = ("viewer", "config", "deployments", "slos", "limits", "chaos", "audit")
UI_STATE = _object(
    {"generated_at": NUMBER, **{name: OBJECT for name in UI_SECTIONS}, "slos": ARRAY_OF_OBJECTS},
    ("generated_at", *UI_SECTIONS),
)
GATE_REPORT = _object(
    {
        "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"]},
        "exit_code": INT,
        "slo": OBJECT,
        "candidate": OBJECT,
        "baseline": {"type": ["object", "null"]},
        "reasons": {"type": "array", "items": STRING},
        "markdown": STRING,
    },
    ("verdict", "exit_code", "slo", "candidate", "reasons", "markdown"),
)
CONFIG_VERSIONS = _object(
    {"current": STRING, "versions": {"type": "array", "items": VERSION}},
    ("current", "versions"),
)
ROLLOUT_STATES = ["idle", "running", "promoted", "rolled_back", "aborted"]
#: `GET /admin/config/rollout` (gateway/rollouts.py, rollouts/machine.py).
ROLLOUT_STATE = _object(
    {
        "state": {"type": "string", "enum": ROLLOUT_STATES},
        "baseline": _object({"id": STRING, "number": INT}, ("id", "number")),
        "candidate": {"type": ["object", "null"]},
        "samples": _object({"baseline": INT, "candidate": INT}),
        "verdict": OBJECT,
        "steps": ARRAY_OF_OBJECTS,
    },
    ("state", "baseline", "candidate", "steps"),
)
APPLIED = _object(
    {"version": VERSION, "rolled_back_to": STRING, "rollout": ROLLOUT_STATE}, ("version",)
)
JSONRPC_ERROR = _object(
    {
        "jsonrpc": {"const": "2.0"},
        "id": {},
        "error": _object({"code": INT, "message": STRING, "data": {}}, ("code", "message")),
    },
    ("jsonrpc", "error"),
)
#: What `/mcp` answers a refusal with: the envelope before MCP (no key, no role, not
#: ready), a JSON-RPC error from the transport on (what MCP clients read).
MCP_REFUSAL = _json(
    {"anyOf": [JSONRPC_ERROR, {"$ref": "#/components/schemas/Error"}]},
    "A JSON-RPC error (the transport's refusals: no session, unknown session, a bad "
    "body...), or the error envelope (no key, no `tools` role, not ready).",
)


def _mcp_refusals(*statuses: int) -> dict[str, Schema]:
    return {str(status): MCP_REFUSAL for status in (*statuses, "default")}


# -- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One documented endpoint: method, path, what it takes and what it answers."""

    method: str
    path: str
    summary: str
    #: The key role it needs when keys are configured; None: open to every caller.
    role: str | None
    #: Success responses by status (OpenAPI response objects).
    responses: Mapping[str, Schema]
    #: The error statuses worth naming here (any other error is `default`, the same
    #: envelope).
    errors: tuple[int, ...] = ()
    #: The JSON request body's schema, if it takes one (its limits are added).
    body: Schema | None = None
    #: Whether `body` is a pipeline body (server.max_request_bytes and max_json_depth)
    #: or an admin body (its own smaller limit).
    admin_body_limit: int | None = None
    #: A request body that is not JSON: (media type, description).
    raw_body: tuple[str, str] | None = None
    parameters: tuple[Schema, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _path_parameter(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _header_parameter(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


def _query_parameter(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}  # fmt: skip


#: `GET /admin/audit`'s parameters (audit/params.py; docs/audit.md says what each does).
AUDIT_PARAMETERS = tuple(
    _query_parameter(name, "A filter (docs/audit.md)") for name in FILTER_PARAMS
) + tuple(_query_parameter(name, "Paging or aggregation (docs/audit.md)") for name in QUERY_PARAMS)


#: The request headers every inference endpoint reads.
PIPELINE_HEADERS = (
    _header_parameter(
        CHAOS_HEADER,
        "Faults to inject (docs/chaos.md); honoured only for keys with the `chaos` role "
        f"when chaos mode is on, otherwise answered with `{CHAOS_HEADER}: ignored`.",
    ),
    _header_parameter(COLOR_HEADER, "A chaos traffic color (chaos.colors)."),
)
TIMEOUT_PARAMETER = _header_parameter(
    TIMEOUT_HEADER,
    "The client's own, lower, time limit for the whole request, in milliseconds "
    "(a positive number); it never raises routing.request_timeout_ms.",
)

PIPELINE_ERRORS = (400, 401, 403, 404, 413, 429, 502, 503, 504)
ADMIN_ERRORS = (400, 401, 403)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/v1/chat/completions",
        "Create a chat completion (OpenAI's API), streamed or not.",
        "user",
        {
            "200": {
                "description": "The provider's completion as it came; with `stream: true`, "
                "its server-sent events (`data: {chunk}` ... `data: [DONE]`). A stream that "
                "fails after it started ends with an `event: error` in the error envelope "
                "(code `stream_interrupted`).",
                "content": {
                    "application/json": {"schema": CHAT_COMPLETION},
                    "text/event-stream": {"schema": STRING},
                },
            }
        },
        PIPELINE_ERRORS,
        body=chat_request(),
        parameters=(*PIPELINE_HEADERS, TIMEOUT_PARAMETER),
        tags=("inference",),
    ),
    # The Responses API (docs/responses.md): the body from responses/request.py's own
    # tables (its parameters, their kernel types).
    Operation(
        "post",
        "/v1/responses",
        "Create a model response (OpenAI's Responses API), streamed or not.",
        "user",
        {
            "200": {
                "description": "The response object; with `stream: true`, its events.",
                "content": {
                    "application/json": {"schema": RESPONSE_OBJECT},
                    "text/event-stream": {"schema": STRING},
                },
            }
        },
        PIPELINE_ERRORS,
        body=responses_request(),
        parameters=(*PIPELINE_HEADERS, TIMEOUT_PARAMETER),
        tags=("inference",),
    ),
    Operation(
        "get",
        "/v1/responses/{response_id}",
        "A stored response (only the key that created it sees it).",
        "user",
        {"200": _json(RESPONSE_OBJECT, "The stored response.")},
        (400, 401, 403, 404),
        parameters=(
            _path_parameter("response_id", "The response's id."),
            _query_parameter("stream", "Not supported: `true` is refused."),
        ),
        tags=("inference",),
    ),
    Operation(
        "delete",
        "/v1/responses/{response_id}",
        "Delete a stored response.",
        "user",
        {"200": _json(DELETED, "The deletion.")},
        (401, 403, 404),
        parameters=(_path_parameter("response_id", "The response's id."),),
        tags=("inference",),
    ),
    Operation(
        "get",
        "/v1/responses/{response_id}/input_items",
        "A page of a stored response's input items.",
        "user",
        {"200": _json(ITEM_PAGE, "The page.")},
        (400, 401, 403, 404),
        parameters=(
            _path_parameter("response_id", "The response's id."),
            _query_parameter("limit", "Items per page, 1 to 100."),
            _query_parameter("order", "`asc` or `desc`."),
            _query_parameter("after", "An item id: the page starts after it."),
            _query_parameter("include", "Accepted, no effect."),
        ),
        tags=("inference",),
    ),
    Operation(
        "post",
        "/v1/embeddings",
        "Create embeddings (OpenAI's API).",
        "user",
        {"200": _json(EMBEDDING_LIST, "The provider's embeddings as they came.")},
        PIPELINE_ERRORS,
        body=embeddings_request(),
        parameters=(*PIPELINE_HEADERS, TIMEOUT_PARAMETER),
        tags=("inference",),
    ),
    Operation(
        "post",
        "/v1/tools/{name}/invoke",
        "Run a registered tool: arguments validated, result validated and signed.",
        "tools",
        {"200": _json(INVOCATION, "The tool's result and its receipt.")},
        (400, 401, 403, 404, 413, 502),
        body=invocation_request(),
        parameters=(_path_parameter("name", "A registered tool's name."), *PIPELINE_HEADERS),
        tags=("tools",),
    ),
    # MCP's Streamable HTTP transport (docs/mcp.md): the bodies are JSON-RPC, not
    # described here; a refusal before MCP (no key, no role) is the error envelope,
    # anything after it a JSON-RPC error.
    Operation(
        "post",
        "/mcp",
        "MCP (Streamable HTTP): send JSON-RPC messages to the aggregated MCP servers.",
        "tools",
        {
            "200": {
                "description": "The JSON-RPC answers (`initialize` also sets "
                "`Mcp-Session-Id`), as JSON or as one SSE event.",
                "content": {
                    "application/json": {"schema": OBJECT},
                    "text/event-stream": {"schema": STRING},
                },
            },
            "202": {"description": "Notifications and responses only: accepted."},
            **_mcp_refusals(400, 401, 403, 404, 406, 413, 415, 500, 503),
        },
        raw_body=("application/json", "A JSON-RPC message (or a batch, revision 2025-03-26)."),
        parameters=(_header_parameter("mcp-session-id", "The session, after initialize."),),
        tags=("tools",),
    ),
    Operation(
        "get",
        "/mcp",
        "MCP (Streamable HTTP): the session's server-to-client stream.",
        "tools",
        {
            "200": {
                "description": "Server-sent events: `notifications/*/list_changed`.",
                "content": {"text/event-stream": {"schema": STRING}},
            },
            **_mcp_refusals(400, 401, 403, 404, 406, 409, 500, 503),
        },
        parameters=(_header_parameter("mcp-session-id", "The session."),),
        tags=("tools",),
    ),
    Operation(
        "delete",
        "/mcp",
        "MCP (Streamable HTTP): end a session.",
        "tools",
        {
            "200": _json(OBJECT, "The session is closed."),
            **_mcp_refusals(400, 401, 403, 404, 500, 503),
        },
        parameters=(_header_parameter("mcp-session-id", "The session."),),
        tags=("tools",),
    ),
    Operation(
        "get",
        "/v1/models",
        "List the model groups.",
        "user",
        {"200": _json(MODEL_LIST, "Every configured model group.")},
        (401, 403),
        tags=("models",),
    ),
    Operation(
        "get",
        "/v1/models/{model}",
        "One model group.",
        "user",
        {"200": _json(MODEL_CARD, "The model group.")},
        (401, 403, 404),
        parameters=(_path_parameter("model", "A model group name (may contain '/')."),),
        tags=("models",),
    ),
    Operation(
        "get",
        "/healthz",
        "Liveness: the process answers.",
        None,
        {"200": _json(STATUS, 'Always `{"status": "ok"}`.')},
        tags=("operations",),
    ),
    Operation(
        "get",
        "/readyz",
        "Readiness: config loaded and upstream clients started.",
        None,
        {
            "200": _json(READINESS, "Ready to serve."),
            "503": _json(READINESS, "Starting, or draining after SIGTERM (`status` says)."),
        },
        tags=("operations",),
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics (docs/routing.md#observability).",
        "metrics",
        {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": STRING}},
            }
        },
        (401, 403),
        description="With keys configured, the `metrics` or the `admin` role.",
        tags=("operations",),
    ),
    Operation(
        "get",
        OPENAPI_PATH,
        "This document.",
        None,
        {"200": _json(OBJECT, "The OpenAPI 3.1 document of the endpoints served.")},
        tags=("operations",),
    ),
    Operation(
        "get",
        "/admin/routing",
        "Live routing state: groups, deployments, breakers, retry budget.",
        "admin",
        {"200": _json(ROUTING_STATE, "The routing state.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/chaos",
        "Chaos mode: scheduled faults and what was injected.",
        "admin",
        {"200": _json(CHAOS_STATE, "The chaos state.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "post",
        "/admin/chaos",
        "Schedule a fault on every request it matches, for a while.",
        "admin",
        {"201": _json(SCHEDULED_FAULT, "The scheduled fault.")},
        (*ADMIN_ERRORS, 409, 413),
        body=fault_request(),
        admin_body_limit=MAX_ADMIN_BODY,
        tags=("admin",),
    ),
    Operation(
        "delete",
        "/admin/chaos",
        "Clear every scheduled fault.",
        "admin",
        {"200": _json(CLEARED, "How many were cleared.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "delete",
        "/admin/chaos/{fault_id}",
        "Clear one scheduled fault.",
        "admin",
        {"200": _json(CLEARED, '`{"cleared": 1}`.')},
        (401, 403, 404),
        parameters=(_path_parameter("fault_id", "The id POST /admin/chaos answered."),),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/limits",
        "Every limit in the admin's scope: used, remaining and reset per level, and the store.",
        "admin",
        {"200": _json(LIMITS_STATE, "The limits and their store.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/audit",
        "Search or aggregate the audit log, within the caller's subtree.",
        "auditor",
        {"200": _json(AUDIT_ANSWER, "Records newest first, or aggregated rows.")},
        (400, 401, 403, 404),
        parameters=AUDIT_PARAMETERS,
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/slo",
        "Every SLO's burn rates, error budget and alerts, within the caller's scope.",
        "auditor",
        {"200": _json(SLO_STATE, "The SLOs.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/slo/evaluate",
        "The release gate: pass, fail or inconclusive for a candidate against an SLO.",
        "auditor",
        {"200": _json(GATE_REPORT, "The gate's report.")},
        (400, 401, 403, 404),
        parameters=(
            _query_parameter("slo", "The SLO's name."),
            _query_parameter(
                "candidate",
                "KIND=VALUE: config_version, policy_version, deployment, tenant or colour.",
            ),
            _query_parameter("baseline", "KIND=VALUE, as candidate."),
            _query_parameter("min_samples", "Fewer eligible requests: inconclusive.", INT),
            _query_parameter("max_deviation", "The baseline deviation allowed.", NUMBER),
        ),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/ui",
        "The admin page: routing, SLOs, limits, chaos, config and audit, live.",
        None,
        {"200": {"description": "The page (HTML).", "content": {"text/html": {"schema": STRING}}}},
        description="Holds no data: it asks `/admin/ui/state` with the key typed into it.",
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/ui/state",
        "What the admin page shows, within the caller's scope.",
        "auditor",
        {"200": _json(UI_STATE, "Every section of the page.")},
        (401, 403),
        description="The `admin` or the `auditor` role.",
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/ui/{name}",
        "A static file of the admin page (`app.js`, `app.css`, `icon.svg`).",
        None,
        {"200": {"description": "The file.", "content": {"*/*": {"schema": STRING}}}},
        (404,),
        parameters=(_path_parameter("name", "The file's name."),),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/config",
        "The serving config version and its config.",
        "admin",
        {"200": _json(CONFIG_STATE, "The serving config.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "put",
        "/admin/config",
        "Apply a new config document (validated whole first; nothing changes if it fails).",
        "admin",
        {"200": _json(APPLIED, "The new version.")},
        (*ADMIN_ERRORS, 409, 412, 413),
        raw_body=(
            "application/yaml",
            f"A whole config document, YAML or JSON, at most {MAX_CONFIG_BYTES} bytes. "
            "`If-Match: <version id>` applies it only over that version.",
        ),
        parameters=(
            _header_parameter("if-match", "The version id this change expects."),
            _query_parameter(
                "rollout", "`canary`: start it as a canary beside the serving version."
            ),
            _query_parameter("share", "With rollout=canary: the share of requests (0-1).", NUMBER),
            _query_parameter("tenants", "With rollout=canary: tenants it always serves, a,b."),
        ),
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/config/rollout",
        "The guarded rollout running, or the last one: versions, samples, verdict, steps.",
        "admin",
        {"200": _json(ROLLOUT_STATE, "The rollout.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "post",
        "/admin/config/rollout/promote",
        "Promote the running canary now.",
        "admin",
        {"200": _json(ROLLOUT_STATE, "The rollout, promoted.")},
        (*ADMIN_ERRORS, 409, 413),
        body=rollout_reason(),
        admin_body_limit=MAX_ADMIN_BODY,
        tags=("admin",),
    ),
    Operation(
        "post",
        "/admin/config/rollout/abort",
        "End the running canary now; the serving version keeps serving.",
        "admin",
        {"200": _json(ROLLOUT_STATE, "The rollout, aborted.")},
        (*ADMIN_ERRORS, 409, 413),
        body=rollout_reason(),
        admin_body_limit=MAX_ADMIN_BODY,
        tags=("admin",),
    ),
    Operation(
        "get",
        "/admin/config/versions",
        "The kept config versions and the refused ones.",
        "admin",
        {"200": _json(CONFIG_VERSIONS, "The history.")},
        (401, 403),
        tags=("admin",),
    ),
    Operation(
        "post",
        "/admin/config/rollback",
        "Apply a kept config version again.",
        "admin",
        {"200": _json(APPLIED, "The new version and the one rolled back to.")},
        (*ADMIN_ERRORS, 404, 409, 413),
        body=rollback_request(),
        admin_body_limit=MAX_ADMIN_BODY,
        tags=("admin",),
    ),
)


# -- the document ---------------------------------------------------------------------------

ERROR_RESPONSE = {"$ref": "#/components/responses/Error"}


def _operation(op: Operation, config: GatewayConfig) -> Schema:
    responses: dict[str, Schema] = dict(op.responses)
    for status in op.errors:
        responses[str(status)] = {**ERROR_RESPONSE}
    responses.setdefault("default", {**ERROR_RESPONSE})
    operation: Schema = {
        "operationId": f"{op.method} {op.path}",
        "summary": op.summary,
        "tags": list(op.tags),
        "responses": responses,
    }
    description = op.description
    if op.role is not None:
        operation["x-seawall-role"] = op.role
        description = description or f"With keys configured, a key with the `{op.role}` role."
        # With keys, a bearer token is required; without (loopback only), anything goes.
        operation["security"] = [{"bearer": []}] if config.keys else [{}, {"bearer": []}]
    else:
        operation["security"] = []
    if description:
        operation["description"] = description
    if op.parameters:
        operation["parameters"] = [dict(p) for p in op.parameters]
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": _body_limits(op, config),
            "content": {"application/json": {"schema": op.body}},
        }
    elif op.raw_body is not None:
        media_type, text = op.raw_body
        operation["requestBody"] = {
            "required": True,
            "description": text,
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    return operation


def _body_limits(op: Operation, config: GatewayConfig) -> str:
    if op.admin_body_limit is not None:
        return f"A JSON object of at most {op.admin_body_limit} bytes (413 beyond)."
    server = config.server
    return (
        f"A JSON object of at most {server.max_request_bytes} bytes "
        f"(server.max_request_bytes; 413 `request_too_large` beyond), nested at most "
        f"{server.max_json_depth} levels (server.max_json_depth; 400 `json_too_deep` "
        "beyond). Members not described here pass through to the provider untouched; "
        "null is the same as absent for every optional member. Integer members accept "
        "integral numbers (`2247.0`)."
    )


def openapi_document(
    config: GatewayConfig, operations: tuple[Operation, ...] = OPERATIONS
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations` as a gateway running `config` serves
    them (its limits, and whether a key is required)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, config)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "seawall",
            "version": _package_version(),
            "description": (
                "An OpenAI-compatible gateway for LLM agents. Every error, of every "
                'endpoint, is OpenAI\'s envelope `{"error": {"message", "type", '
                '"param", "code"}}` with a JSON content type; an error message '
                f"repeats at most {MAX_ECHO_CHARS} characters of any value the request "
                "sent (then `...[truncated, N characters]`). Every response carries "
                f"`{REQUEST_ID_HEADER}` and `{CONFIG_VERSION_HEADER}`; a request that "
                f"had faults injected says which in `{INJECTED_HEADER}`."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                "Error": _json(
                    {"$ref": "#/components/schemas/Error"},
                    "An error, in OpenAI's envelope; `code` says which "
                    "(README, Errors). "
                    + " ".join(f"{s}: {text}" for s, text in ERROR_STATUSES.items()),
                )
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A configured key (`keys`); roles decide what it may do.",
                }
            },
        },
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seawall")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0"


# -- the endpoint -----------------------------------------------------------------------------


class Served(Protocol):
    """What the endpoint needs of the gateway: the runtime being served, and the
    JSON response every gateway endpoint answers with."""

    runtime: Runtime

    def respond(self, payload: Any, status: int = 200) -> Response: ...


class OpenAPIEndpoint:
    """`GET /openapi.json`. The document depends on the config (limits, keys), so it
    is built once per config version and rebuilt after a reload."""

    def __init__(self, gateway: Served) -> None:
        self.gateway = gateway
        self._built: tuple[str, dict[str, Any]] | None = None

    async def get(self, request: Request) -> Response:
        runtime = self.gateway.runtime
        built = self._built
        if built is None or built[0] != runtime.version.id:
            built = self._built = (runtime.version.id, openapi_document(runtime.config))
        return self.gateway.respond(built[1])
