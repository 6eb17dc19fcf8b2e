"""The shape of `policies:` in the gateway's config.

Checked here: each rule's effect and its fields (an effect's own field is required,
the other effects' fields are refused), unique rule ids, the candidate's mode and
its fields. What needs the rest of the config (tenants, deployments, limit classes)
or the CEL compiler is checked by `policies.compiler.compile_policies`, which
reports every problem of both kinds at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from common.config import DocumentError, Frozen, Identifier, validate_document
from policies.attributes import MAX_HEADERS

#: Rules in one set (the active one, or the candidate).
MAX_RULES = 500
#: Characters of a deny message (it is shown to the client).
MAX_MESSAGE = 500

Effect = Literal["deny", "route", "flag", "limit_class"]
OnError = Literal["deny", "ignore"]
#: Each effect's own field; every other effect's field is refused on a rule.
EFFECT_FIELDS: dict[str, str] = {
    "deny": "message",
    "route": "route",
    "flag": "flag",
    "limit_class": "limit_class",
}

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$")


class PolicyError(DocumentError):
    """A policy set that cannot be served; `problems` lists each as `path: reason`."""

    kind = "policies"


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be a lowercase HTTP header name (at most 64 characters)")
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]


def _unique(names: tuple[str, ...], noun: str) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    repeated = []
    for index, name in enumerate(names):
        if name in seen:
            repeated.append(f"{noun} {name!r} at [{seen[name]}] and [{index}]")
        else:
            seen[name] = index
    if repeated:
        raise ValueError("duplicate " + "; duplicate ".join(repeated))
    return names


class RouteConfig(Frozen):
    """Pin a request to these deployments, or keep it off them: exactly one of the two."""

    pin: tuple[Identifier, ...] | None = None
    exclude: tuple[Identifier, ...] | None = None

    @model_validator(mode="after")
    def _one_list(self) -> RouteConfig:
        given = [name for name in ("pin", "exclude") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'pin' or 'exclude'")
        if not getattr(self, given[0]):
            raise ValueError(f"'{given[0]}' must list at least one deployment")
        return self

    @property
    def deployments(self) -> tuple[str, ...]:
        return self.pin or self.exclude or ()


class RuleConfig(Frozen):
    id: Identifier
    #: The tenant it attaches to: it applies to that tenant and every descendant.
    tenant: Identifier = "root"
    #: CEL; must evaluate to bool.
    when: str = Field(min_length=1)
    effect: Effect
    #: `deny`: what the client is told.
    message: str | None = Field(None, min_length=1, max_length=MAX_MESSAGE)
    route: RouteConfig | None = None
    flag: Identifier | None = None
    limit_class: Identifier | None = None
    #: What an evaluation error, an attribute over its limit, or a blown time budget
    #: means for this rule: `deny` the request (fail closed) or `ignore` the rule.
    on_error: OnError = "deny"

    @model_validator(mode="after")
    def _effect_fields(self) -> RuleConfig:
        problems = []
        own = EFFECT_FIELDS[self.effect]
        if getattr(self, own) is None:
            problems.append(f"effect {self.effect!r} needs {own!r}")
        for effect, name in EFFECT_FIELDS.items():
            if name != own and getattr(self, name) is not None:
                problems.append(f"{name!r} belongs to effect {effect!r}, not {self.effect!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _unique_rule_ids(rules: tuple[RuleConfig, ...]) -> tuple[RuleConfig, ...]:
    _unique(tuple(rule.id for rule in rules), "rule id")
    return rules


Rules = Annotated[
    tuple[RuleConfig, ...], Field(max_length=MAX_RULES), AfterValidator(_unique_rule_ids)
]


class CandidateConfig(Frozen):
    """A second rule set being tried. `shadow`: evaluated beside the active set, counted,
    never enforced. `canary`: enforced instead of the active set for a `share` of
    requests and for every request of `tenants` (and their descendants)."""

    mode: Literal["shadow", "canary"]
    share: float | None = Field(None, ge=0, le=1)
    tenants: tuple[Identifier, ...] = ()
    version: Identifier | None = None
    rules: Rules = ()

    @field_validator("tenants")
    @classmethod
    def _unique_tenants(cls, tenants: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(tenants, "tenant")

    @model_validator(mode="after")
    def _mode_fields(self) -> CandidateConfig:
        if self.mode == "shadow" and (self.share is not None or self.tenants):
            raise ValueError(
                "'share' and 'tenants' are for mode 'canary'; shadow sees every request"
            )
        if self.mode == "canary" and not (self.share or self.tenants):
            raise ValueError("a canary needs a 'share' above 0 or some 'tenants'")
        return self


class CacheConfig(Frozen):
    """The decision cache of each rule set. `max_entries: 0` turns it off."""

    max_entries: int = Field(4096, ge=0, le=1_000_000)
    ttl_seconds: float = Field(60.0, gt=0, le=3600)


class PoliciesConfig(Frozen):
    #: A label for this rule set; default: a short hash of its rules.
    version: Identifier | None = None
    rules: Rules = ()
    candidate: CandidateConfig | None = None
    #: Request headers rules may read (lowercase names), as the `headers` attribute.
    headers: Annotated[tuple[HeaderName, ...], Field(max_length=MAX_HEADERS)] = ()
    #: The most one rule's evaluation may take; over it counts as an error (`on_error`).
    evaluation_budget_ms: float = Field(1.0, gt=0, le=100)
    cache: CacheConfig = CacheConfig()

    @field_validator("headers")
    @classmethod
    def _unique_headers(cls, headers: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(headers, "header")


class _Document(Frozen):
    policies: PoliciesConfig = PoliciesConfig()


def parse_policies(data: Any, source: str = "<config>") -> PoliciesConfig:
    """`policies:` from YAML data, or `PolicyError` listing every problem, with paths
    from `policies` (`policies.rules[3].route: ...`)."""
    document = validate_document(_Document, {"policies": data}, [], PolicyError, source)
    return document.policies
