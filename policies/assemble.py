"""From the outcomes of a tenant's rules, in chain order, to one `Decision`.

The first deny in order wins (a rule's, or an error's under `on_error: deny`);
flags and limit classes add up in order without repeats; pins intersect and
excludes add up, and pins that the excludes leave empty refuse the request.
"""

from __future__ import annotations

from policies.decision import Decision, Denial, ErrorKind, RuleError
from policies.rule import CompiledRule, Outcome


def assemble(
    version: str, rules: tuple[CompiledRule, ...], outcomes: list[Outcome | None]
) -> Decision:
    """The decision of `rules` (in chain order) given each one's outcome; `None` or
    `False`: the rule did not match."""
    build = _Building(version)
    for rule, outcome in zip(rules, outcomes, strict=True):
        if isinstance(outcome, tuple):
            build.failed(rule, *outcome)
        elif outcome:
            build.matched(rule)
    return build.decision()


class _Building:
    """A decision being assembled from rule outcomes, in evaluation order."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.deny: Denial | None = None
        self.flags: list[str] = []
        self.pin: frozenset[str] | None = None
        self.exclude: set[str] = set()
        self.route_rules: list[str] = []
        self.limit_classes: list[str] = []
        self.matches: list[str] = []
        self.errors: list[RuleError] = []

    def failed(self, rule: CompiledRule, kind: ErrorKind, detail: str) -> None:
        self.errors.append(RuleError(rule.id, kind, rule.on_error, detail))
        if rule.on_error == "deny" and self.deny is None:
            message = f"Request refused: policy rule '{rule.id}' could not be evaluated."
            self.deny = Denial(rule.id, message, "error")

    def matched(self, rule: CompiledRule) -> None:
        self.matches.append(rule.id)
        if rule.effect == "deny":
            if self.deny is None:
                assert rule.message is not None
                self.deny = Denial(rule.id, rule.message)
        elif rule.effect == "flag":
            assert rule.flag is not None
            if rule.flag not in self.flags:
                self.flags.append(rule.flag)
        elif rule.effect == "limit_class":
            assert rule.limit_class is not None
            if rule.limit_class not in self.limit_classes:
                self.limit_classes.append(rule.limit_class)
        else:
            self.route_rules.append(rule.id)
            if rule.pin is not None:
                self.pin = rule.pin if self.pin is None else self.pin & rule.pin
            if rule.exclude is not None:
                self.exclude |= rule.exclude

    def decision(self) -> Decision:
        deny = self.deny
        if deny is None and self.pin is not None and not (self.pin - self.exclude):
            rules = ", ".join(f"'{rule}'" for rule in self.route_rules)
            message = f"Request refused: policy rules {rules} leave no deployment to route to."
            deny = Denial(self.route_rules[-1], message, "route")
        return Decision(
            version=self.version,
            deny=deny,
            flags=tuple(self.flags),
            pin=self.pin,
            exclude=frozenset(self.exclude),
            route_rules=tuple(self.route_rules),
            limit_classes=tuple(self.limit_classes),
            matched=tuple(self.matches),
            errors=tuple(self.errors),
        )
