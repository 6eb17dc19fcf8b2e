"""What policy decided for one request: a frozen value the gateway enforces and audits.

Every decision names the policy version that made it. Denies always win: there is
no allow effect, so a descendant tenant can add rules but never lift an ancestor's
deny. The gateway maps `deny` to 403 `policy_denied` naming `deny.rule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Why a request was denied: a deny rule matched; a rule failed with `on_error: deny`;
#: or the matched route rules left no deployment.
DenyCause = Literal["rule", "error", "route"]
#: How a rule failed: its evaluation raised; it ran over the time budget; it was
#: cut off for the caller's tenant after such an overrun, so it was not evaluated
#: (`policies.ruleset`); or an attribute it reads was over its size limit, so it was
#: not evaluated.
ErrorKind = Literal["error", "budget", "cutoff", "attribute"]


@dataclass(frozen=True, slots=True)
class Denial:
    rule: str
    #: Shown to the client.
    message: str
    cause: DenyCause = "rule"


@dataclass(frozen=True, slots=True)
class RuleError:
    rule: str
    kind: ErrorKind
    #: What `on_error` did: `deny` the request, or `ignore` the rule.
    action: Literal["deny", "ignore"]
    #: For logs and audit, never for the client (it can name library internals).
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    #: The version of the rule set that decided.
    version: str
    deny: Denial | None = None
    #: Tags of the matched flag rules, in rule order.
    flags: tuple[str, ...] = ()
    #: Deployments the request may use (the intersection of every matched pin);
    #: `None` when no pin matched.
    pin: frozenset[str] | None = None
    #: Deployments the request must not use (the union of every matched exclude).
    exclude: frozenset[str] = frozenset()
    #: Ids of the matched route rules (for a refusal when routing leaves nothing).
    route_rules: tuple[str, ...] = ()
    #: Limit classes selected, in rule order; every one applies.
    limit_classes: tuple[str, ...] = ()
    #: Ids of every rule whose condition held, in evaluation order.
    matched: tuple[str, ...] = ()
    errors: tuple[RuleError, ...] = ()
    #: The candidate set's decision in shadow mode: logged and counted, never enforced.
    shadow: Decision | None = None
    #: This request was decided by the candidate set (canary mode).
    canary: bool = False

    @property
    def denied(self) -> bool:
        return self.deny is not None

    def allows(self, deployment: str) -> bool:
        """May the request be routed to `deployment`?"""
        return (self.pin is None or deployment in self.pin) and deployment not in self.exclude

    def effects(self) -> list[tuple[str, str]]:
        """What the decision did, as (effect, rule) pairs for the guard events: the
        deny, each flag (`tag:<flag>`), each route rule, each rule error."""
        effects = [("deny", self.deny.rule)] if self.deny is not None else []
        effects += [("flag", f"tag:{flag}") for flag in self.flags]
        effects += [("route", rule) for rule in self.route_rules]
        effects += [("error", error.rule) for error in self.errors]
        return effects

    def agrees_with(self, other: Decision) -> bool:
        """Would enforcing `other` do the same (deny or not, the same routing and limits)?"""
        return (
            (self.deny is None) == (other.deny is None)
            and self.pin == other.pin
            and self.exclude == other.exclude
            and self.limit_classes == other.limit_classes
        )
