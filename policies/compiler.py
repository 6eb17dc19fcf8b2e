"""From `policies:` to `CompiledPolicies`, or every problem at once.

Checks what the config models cannot: each condition compiles and checks
(`policies.expression`), each rule's tenant exists, each route names known
deployments, each limit class exists, the canary's tenants exist, the rules that
apply to any one tenant stay within `cost.MAX_CHAIN_STEPS` together, and the
candidate's version differs from the active one's. Problems are reported as
`policies.rules[3].when: 1:7: undeclared reference to 'strem'`.

Compilation is CPU work (about a millisecond a rule, most of it the trial
evaluations); the gateway runs it off the event loop with the rest of a Runtime.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from policies.cache import Clock, DecisionCache
from policies.compiled import CompiledPolicies, subtree_of
from policies.config import PoliciesConfig, PolicyError, RuleConfig
from policies.cost import MAX_CHAIN_STEPS
from policies.known import KnownNames
from policies.rule import CompiledRule
from policies.ruleset import Cached, RuleSet, Timer

if TYPE_CHECKING:
    import cel

    from policies.expression import Expression, ExpressionError

#: Characters of the content hash used as a version when the config names none.
VERSION_HASH_CHARS = 12


def compile_policies(
    config: PoliciesConfig,
    known: KnownNames,
    *,
    source: str = "<config>",
    clock: Clock = time.monotonic,
    timer: Timer = time.perf_counter_ns,
) -> CompiledPolicies:
    """`config` compiled against the names in `known`; raises `PolicyError` listing
    every problem. `clock` drives the decision caches' time to live; `timer` (ns)
    times each evaluation against the budget."""
    problems: list[str] = []
    compiler = _Compiler(config.headers, known, problems)
    active_rules = compiler.rules(config.rules, "policies.rules")
    active_version = config.version or content_version(config.rules)
    candidate_config = config.candidate
    candidate_rules: tuple[CompiledRule, ...] = ()
    candidate_version = ""
    if candidate_config is not None:
        candidate_rules = compiler.rules(candidate_config.rules, "policies.candidate.rules")
        candidate_version = candidate_config.version or content_version(candidate_config.rules)
        if candidate_version == active_version:
            problems.append(
                f"policies.candidate.version: {candidate_version!r} is the active version too; "
                "a candidate needs rules or a version of its own"
            )
        for index, tenant in enumerate(candidate_config.tenants):
            compiler.tenant(tenant, f"policies.candidate.tenants[{index}]")
    if problems:
        raise PolicyError(source, problems)

    def rule_set(version: str, rules: tuple[CompiledRule, ...]) -> RuleSet:
        cache: DecisionCache[Cached] = DecisionCache(
            config.cache.max_entries, config.cache.ttl_seconds, clock
        )
        budget = config.evaluation_budget_ms / 1000
        return RuleSet(version, rules, known.chains, budget, cache, timer)

    active = rule_set(active_version, active_rules)
    if candidate_config is None:
        return CompiledPolicies(active, config.headers)
    return CompiledPolicies(
        active,
        config.headers,
        rule_set(candidate_version, candidate_rules),
        candidate_config.mode,
        candidate_config.share or 0.0,
        subtree_of(frozenset(candidate_config.tenants), known.chains),
    )


def content_version(rules: Iterable[RuleConfig]) -> str:
    """A short hash of `rules`' content: the same rules always get the same version."""
    canonical = json.dumps(
        [rule.model_dump(mode="json") for rule in rules], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:VERSION_HASH_CHARS]


class _Compiler:
    """Compiles rules, collecting problems; one condition text compiles once even
    when the active set and the candidate both have it."""

    def __init__(self, headers: tuple[str, ...], known: KnownNames, problems: list[str]) -> None:
        self.headers = headers
        self.known = known
        self.problems = problems
        #: The trial contexts, made with the first condition compiled: a config
        #: without rules never loads the CEL library (policies/library.py).
        self.contexts: tuple[cel.Context, ...] | None = None
        self.compiled: dict[str, Expression | ExpressionError] = {}

    def rules(self, configs: tuple[RuleConfig, ...], path: str) -> tuple[CompiledRule, ...]:
        compiled = []
        for index, config in enumerate(configs):
            rule = self.rule(config, f"{path}[{index}]")
            if rule is not None:
                compiled.append(rule)
        rules = tuple(compiled)
        if len(rules) == len(configs):
            self.chain_costs(rules, path)
        return rules

    def rule(self, config: RuleConfig, path: str) -> CompiledRule | None:
        before = len(self.problems)
        self.tenant(config.tenant, f"{path}.tenant")
        if config.route is not None:
            kind = "pin" if config.route.pin is not None else "exclude"
            for index, name in enumerate(config.route.deployments):
                self.name(
                    name, self.known.deployments, "deployment", f"{path}.route.{kind}[{index}]"
                )
        if config.limit_class is not None:
            self.name(
                config.limit_class, self.known.limit_classes, "limit class", f"{path}.limit_class"
            )
        expression = self.expression(config.when, f"{path}.when")
        if expression is None or len(self.problems) > before:
            return None
        route = config.route
        return CompiledRule(
            id=config.id,
            tenant=config.tenant,
            effect=config.effect,
            expression=expression,
            on_error=config.on_error,
            message=config.message,
            pin=frozenset(route.pin) if route is not None and route.pin is not None else None,
            exclude=(
                frozenset(route.exclude)
                if route is not None and route.exclude is not None
                else None
            ),
            flag=config.flag,
            limit_class=config.limit_class,
        )

    def expression(self, text: str, path: str) -> Expression | None:
        from policies.expression import ExpressionError, compile_expression, probe_contexts

        if self.contexts is None:
            self.contexts = probe_contexts(self.headers)
        result = self.compiled.get(text)
        if result is None:
            try:
                result = compile_expression(text, self.headers, self.contexts)
            except ExpressionError as exc:
                result = exc
            self.compiled[text] = result
        if isinstance(result, ExpressionError):
            self.problems += [f"{path}: {problem}" for problem in result.problems]
            return None
        return result

    def tenant(self, tenant: str, path: str) -> None:
        self.name(tenant, self.known.chains.keys(), "tenant", path)

    def name(self, name: str, valid: Iterable[str], noun: str, path: str) -> None:
        names = list(valid)
        if name not in names:
            self.problems.append(f"{path}: unknown {noun} {name!r}{_hint(name, names)}")

    def chain_costs(self, rules: tuple[CompiledRule, ...], path: str) -> None:
        """The rules applying to one tenant must stay within `MAX_CHAIN_STEPS` together."""
        steps_at = _steps_by_tenant(rules)
        over = {
            tenant: total
            for tenant, chain in self.known.chains.items()
            if (total := sum(steps_at.get(t, 0) for t in chain)) > MAX_CHAIN_STEPS
        }
        if over:
            worst = max(over, key=lambda tenant: over[tenant])
            others = f" (and {len(over) - 1} other tenants)" if len(over) > 1 else ""
            self.problems.append(
                f"{path}: the rules applying to tenant {worst!r}{others} may cost up to "
                f"{over[worst]} steps together, over the limit of {MAX_CHAIN_STEPS}"
            )


def _hint(name: str, names: list[str]) -> str:
    if not names:
        return " (none configured)"
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _steps_by_tenant(rules: tuple[CompiledRule, ...]) -> Mapping[str, int]:
    totals: dict[str, int] = {}
    for rule in rules:
        totals[rule.tenant] = totals.get(rule.tenant, 0) + rule.expression.steps
    return totals
