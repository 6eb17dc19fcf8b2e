"""What one audit record says: the fields of each record kind.

Records are plain dicts (they are written as JSON lines and read back by the
verifier, the index and queries, none of which should need this module's classes).
These TypedDicts are the schema: docs/audit.md renders them field by field.

Every record has `seq`, `prev` (added by the writer, audit/__init__.py), `kind`,
and `time` (unix seconds, float, when the request's response ended or the admin
action was applied). A field whose value is unknown or does not apply is `null`
(or an empty list), never absent, so a query never has to guess.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class Hop(TypedDict):
    #: The deployment id tried.
    deployment: str
    #: What came of it: `ok`, or the outcome (`timeout`, `status_503`, `breaker_open`...).
    outcome: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class PolicyVerdict(TypedDict):
    #: The policy set's version (its content hash).
    version: str | None
    #: Ids of every rule that matched, in evaluation order.
    matched: list[str]
    #: Flags the matched rules raised.
    flags: list[str]
    #: The rule that denied the request, if one did.
    denied: str | None
    #: Rules that failed to evaluate (`rule: reason`).
    errors: list[str]


class LimitVerdict(TypedDict):
    #: The level: `key:<id>`, `tenant:<id>`, `class:<name>`.
    level: str
    #: `admitted` or `refused`.
    decision: str
    #: What was refused (`requests`, `tokens`, `spend`, `concurrency`) or null.
    limit: str | None


class GuardVerdict(TypedDict):
    #: `tool_result_forged`, `tool_call_invalid`, `prompt_too_large`... (gateway/events.py).
    kind: str
    #: What the gateway did: reject, warn, fallback, repair...
    action: str
    tool: str | None
    detail: str


class ChaosVerdict(TypedDict):
    #: The faults injected into this request (`latency`, `error_503`, `timeout`...).
    faults: list[str]
    #: The traffic colour the request carried, if any.
    colour: str | None


class Content(TypedDict):
    #: The request's prompt as sent (messages or input), JSON-encoded text.
    prompt: str | None
    #: The completion's text, when the gateway saw it whole (not for streams cut short).
    completion: str | None


class RequestRecord(TypedDict):
    seq: int
    prev: str
    kind: Literal["request"]
    time: float
    request_id: str
    #: W3C trace id of the request's span, when telemetry is on.
    trace_id: str | None
    #: The key's tenant (the leaf) and its chain from the top (`root` first).
    tenant: str | None
    tenants: list[str]
    #: The key's id (never the key itself).
    key: str | None
    #: `chat`, `responses`, `embeddings`, `tools`, `mcp` (an `/mcp` record also has
    #: `mcp`: the JSON-RPC messages it carried, docs/audit.md).
    endpoint: str
    #: The model group asked for.
    model: str | None
    #: The deployment that answered (the last hop), and every hop tried.
    deployment: str | None
    route: list[Hop]
    status: int
    #: The error code the client was given (OpenAI envelope `code`), null on success.
    error: str | None
    usage: Usage | None
    #: Estimated cost in USD from the deployment's prices; null when not priced.
    cost: float | None
    latency_ms: float
    #: Time to the first byte of a stream's first event; null for non-streams.
    ttft_ms: float | None
    stream: bool
    #: A stream that ended before its final event (upstream failure or client gone).
    cut: bool
    config_version: str
    policy: PolicyVerdict | None
    limits: list[LimitVerdict]
    guards: list[GuardVerdict]
    chaos: ChaosVerdict | None
    #: Only for tenants with `audit: {content: true}` (inherited); otherwise null.
    content: Content | None


class AdminRecord(TypedDict):
    seq: int
    prev: str
    kind: Literal["admin"]
    time: float
    request_id: str | None
    #: `config.applied`, `config.refused`, `config.rolled_back`, `config.frozen`,
    #: `config.rollout.started` (`.promoted`, `.rolled_back`, `.aborted`),
    #: `chaos.scheduled`, `chaos.cleared`, `audit.started`.
    action: str
    #: The acting key's id and the tenant its admin scope is rooted at; null for the
    #: gateway itself (a config source, the closed loop).
    actor: str | None
    scope: str | None
    #: The scope tenant's chain from the top (`root` first); `[]` for the gateway
    #: itself (then only a root-scoped auditor or admin reads the record).
    tenants: list[str]
    #: What the action concerned: a config version, a schedule id...
    target: str | None
    #: Action-specific details (a refusal's problems, a schedule's spec).
    detail: dict[str, object]


class TombstoneRecord(TypedDict):
    seq: int
    prev: str
    kind: Literal["tombstone"]
    time: float
    #: The range pruned (sequence numbers, inclusive) and the signed checkpoint
    #: that covered its last record, so the chain still verifies without it.
    pruned_first: int
    pruned_last: int
    checkpoint: dict[str, object]


RECORD_KINDS = ("request", "admin", "tombstone")

#: A request record's fields (beside `seq` and `prev`, which the writer adds), each
#: with its value where it does not apply: a record of a request that was never routed
#: (an `/mcp` one) takes these for what it lacks, so every record has every field.
NOT_APPLICABLE: dict[str, object] = {
    "kind": "request",
    "time": 0.0,
    "request_id": None,
    "trace_id": None,
    "tenant": None,
    "tenants": (),
    "key": None,
    "endpoint": None,
    "model": None,
    "deployment": None,
    "route": (),
    "status": 0,
    "error": None,
    "usage": None,
    "cost": None,
    "latency_ms": 0.0,
    "ttft_ms": None,
    "stream": False,
    "cut": False,
    "config_version": None,
    "policy": None,
    "limits": (),
    "guards": (),
    "chaos": None,
    "content": None,
}
