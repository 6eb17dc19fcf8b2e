"""Policies: CEL rules compiled per Runtime, evaluated per request, with shadow and canary sets.

The gateway's side of it: build `KnownNames` from the tenants and the routing
config, `compile_policies(config.policies, known)` when a Runtime is built (off the
event loop), fill an `Attributes` per request (`policy_headers` for its headers,
`utc_hour_weekday` for the time) and call `CompiledPolicies.decide`. This package
never imports the gateway.

The CEL library (policies/library.py) is imported only when a config has rules:
nothing this package exports loads it.
"""

from policies.attributes import (
    ATTRIBUTES,
    Attributes,
    RepeatedHeader,
    policy_headers,
    raw_policy_headers,
    utc_hour_weekday,
)
from policies.compiled import CompiledPolicies
from policies.compiler import compile_policies
from policies.config import PoliciesConfig, PolicyError, parse_policies
from policies.decision import Decision, Denial, RuleError
from policies.known import KnownNames
from policies.ruleset import UnknownTenant

__all__ = [
    "ATTRIBUTES",
    "Attributes",
    "CompiledPolicies",
    "Decision",
    "Denial",
    "KnownNames",
    "PoliciesConfig",
    "PolicyError",
    "RepeatedHeader",
    "RuleError",
    "UnknownTenant",
    "compile_policies",
    "parse_policies",
    "policy_headers",
    "raw_policy_headers",
    "utc_hour_weekday",
]
