"""Every header name and httpx extension key seawall defines, in one place.

Clients, the chaos runner, the gateway's stages and the layers below routing all
read and write these; a name spelled twice is a name that drifts.
"""

from __future__ import annotations

# -- response headers the gateway sets -------------------------------------------------
#: The hops a request made, `group/deployment[!failure] > ...`.
ROUTE_HEADER = "x-seawall-route"
#: The deployment that answered (or failed last).
DEPLOYMENT_HEADER = "x-seawall-deployment"
#: The gateway's own id for the request; the server log carries it beside every detail
#: a client is not shown.
REQUEST_ID_HEADER = "x-seawall-request-id"
#: Set to `false` once the gateway has spent its own retries (the OpenAI SDK honours it).
SHOULD_RETRY_HEADER = "x-should-retry"
#: What a prompt-size guard did (`truncated:N`, `fallback:GROUP`).
GUARD_HEADER = "x-seawall-guard"
VIOLATIONS_HEADER = "x-seawall-tool-violations"
FLAGS_HEADER = "x-seawall-tool-flags"
REPAIRED_HEADER = "x-seawall-tool-repaired"
#: Faults actually injected into this request.
INJECTED_HEADER = "x-seawall-chaos-injected"

# -- request headers the gateway reads ---------------------------------------------------
#: Faults to inject (DESIGN.md section 5); answered with `ignored` when not allowed.
CHAOS_HEADER = "x-seawall-chaos"
#: A traffic partition (chaos colors).
COLOR_HEADER = "x-traffic-color"
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
