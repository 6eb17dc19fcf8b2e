"""The parameters of an audit query, by name: what `parse_query` (audit/query.py)
accepts, the CLI takes as NAME=VALUE and `GET /admin/audit` as query parameters.
Apart from the query engine so the gateway's OpenAPI document can list them without
importing the engine (and SQLite) at start-up."""

from __future__ import annotations

#: A page of records: the default and the most a query may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: Filter parameters taken as they are (a non-empty string).
TEXT_PARAMS = (
    "subtree",
    "tenant",
    "key",
    "model",
    "deployment",
    "error",
    "rule",
    "flag",
    "refused",
    "endpoint",
    "request_id",
    "trace_id",
    "text",
)
#: Every parameter `parse_filter` accepts.
FILTER_PARAMS = (*TEXT_PARAMS, "status", "kind", "since", "until")
#: The parameters `parse_query` accepts beside the filter's.
QUERY_PARAMS = ("limit", "cursor", "by", "bucket", "metrics")
