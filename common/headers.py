"""Every header name and httpx extension key seawall defines, in one place.

Clients, the chaos runner, the gateway's stages and the layers below routing all
read and write these; a name spelled twice is a name that drifts.
"""

from __future__ import annotations

from collections.abc import Iterable

# -- response headers the gateway sets -------------------------------------------------
#: The hops a request made, `group/deployment[!failure] > ...`.
ROUTE_HEADER = "x-seawall-route"
#: The deployment that answered (or failed last).
DEPLOYMENT_HEADER = "x-seawall-deployment"
#: The gateway's own id for the request; the server log carries it beside every detail
#: a client is not shown.
REQUEST_ID_HEADER = "x-seawall-request-id"
#: The id of the config version that served the request (gateway/versions.py).
CONFIG_VERSION_HEADER = "x-seawall-config-version"
#: Set to `false` once the gateway has spent its own retries (the OpenAI SDK honours it).
SHOULD_RETRY_HEADER = "x-should-retry"
#: What a prompt-size guard did (`truncated:N`, `fallback:GROUP`).
GUARD_HEADER = "x-seawall-guard"
VIOLATIONS_HEADER = "x-seawall-tool-violations"
FLAGS_HEADER = "x-seawall-tool-flags"
REPAIRED_HEADER = "x-seawall-tool-repaired"
#: Offered tools named like a registered tool but with another schema: the registered
#: contract does not apply to them (tools/binding.py).
COLLISION_HEADER = "x-seawall-tool-collision"
#: The policy rules that matched this request (denies and flags), and the version
#: of the rule set that decided: `deny:rule-id, flag:rule-id; version=v3`.
POLICY_HEADER = "x-seawall-policy"
#: The gateway limit that refused a request (`tokens_per_minute; level=tenant:acme`):
#: a gateway 429 is never mistaken for a provider's.
LIMIT_HEADER = "x-seawall-limit"
#: Faults actually injected into this request.
INJECTED_HEADER = "x-seawall-chaos-injected"

# -- request headers the gateway reads ---------------------------------------------------
#: Faults to inject (DESIGN.md section 5); answered with `ignored` when not allowed.
CHAOS_HEADER = "x-seawall-chaos"
#: A traffic partition (chaos colors).
COLOR_HEADER = "x-traffic-color"
#: On an admin config change: the change is the fix, applied through a change freeze
#: (an SLO over its budget); the value is the reason, recorded in the audit log.
EMERGENCY_HEADER = "x-seawall-emergency"
#: The client's own, lower, time limit for the whole request.
TIMEOUT_HEADER = "x-seawall-timeout-ms"

# -- headers on requests the gateway sends ------------------------------------------------
TOOL_CALL_ID_HEADER = "x-seawall-tool-call-id"
TOOL_HEADER = "x-seawall-tool"

# -- httpx request extensions (for the layers below routing) -------------------------------
#: The deployment id an upstream request is for.
DEPLOYMENT_EXTENSION = "seawall.deployment"
#: The registered tool an invoke-proxy request is for.
TOOL_EXTENSION = "seawall.tool"
#: The request's chaos plan.
PLAN_EXTENSION = "seawall.chaos"

# -- provider response headers relayed to clients -------------------------------------------
#: The provider's own request id keeps its name: it is what the OpenAI SDK reports as a
#: response's `_request_id`, and what a provider's support asks for.
PROVIDER_REQUEST_ID = "x-request-id"
#: Everything else relayed gets this prefix (and loses a leading `x-`):
#: `x-ratelimit-remaining-requests` becomes `x-upstream-ratelimit-remaining-requests`.
#: The unprefixed `x-ratelimit-*` names belong to the gateway's own limits: a
#: provider's counts describe the gateway's shared provider key, not this client.
UPSTREAM_PREFIX = "x-upstream-"
#: Names relayed (with the prefix) as they are...
_RELAYED_NAMES = frozenset({"request-id", "retry-after", "retry-after-ms", "openai-processing-ms"})
#: ...and families relayed by their start. Nothing else is: not hop-by-hop headers,
#: not set-cookie, not an organization or project id, nothing a provider says about
#: the gateway's own account beyond its rate limits.
_RELAYED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")


def relayed_name(name: str) -> str | None:
    """The client-facing name of provider response header `name` (lower case), or
    None when it is not relayed."""
    if name == PROVIDER_REQUEST_ID:
        return name
    if name in _RELAYED_NAMES or name.startswith(_RELAYED_PREFIXES):
        return UPSTREAM_PREFIX + name.removeprefix("x-")
    return None


#: Every relayed name starts with one of these: one C-level test rejects the rest.
_RELAYED_STARTS = tuple(
    name.encode() for name in (PROVIDER_REQUEST_ID, *_RELAYED_NAMES, *_RELAYED_PREFIXES)
)


def relayed_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The provider headers a client sees, by client-facing name, from raw header
    pairs. Runs on every reply: bytes are only decoded for the few that match."""
    relayed = {}
    for raw_name, raw_value in raw:
        lowered = raw_name.lower()
        if lowered.startswith(_RELAYED_STARTS):
            name = relayed_name(lowered.decode("latin-1"))
            if name is not None:
                relayed[name] = raw_value.decode("latin-1")
    return relayed
