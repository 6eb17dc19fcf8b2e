"""A config version's policies, ready to decide: the active rule set and, optionally,
a candidate in shadow or canary mode.

Built by `policies.compiler.compile_policies` and never changed afterwards apart
from its caches and counters, which live as long as it does (one Runtime).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from policies.attributes import Attributes
from policies.canary import in_share
from policies.decision import Decision
from policies.rule import CompiledRule
from policies.ruleset import RuleSet
from policies.stats import PolicyStats

CandidateMode = Literal["shadow", "canary"]


class CompiledPolicies:
    def __init__(
        self,
        active: RuleSet,
        headers: tuple[str, ...] = (),
        candidate: RuleSet | None = None,
        mode: CandidateMode | None = None,
        share: float = 0.0,
        canary_tenants: frozenset[str] = frozenset(),
    ) -> None:
        self.active = active
        #: The header names rules may read: what the gateway puts in `headers`.
        self.headers = headers
        self.candidate = candidate
        self.mode = mode if candidate is not None else None
        self.share = share
        #: Every tenant the canary always decides: those listed and their descendants.
        self.canary_tenants = canary_tenants
        self.shadow_decisions = 0
        self.shadow_disagreements = 0
        self.canary_decisions = 0

    @property
    def version(self) -> str:
        return self.active.version

    def rules_for(self, tenant: str) -> tuple[CompiledRule, ...]:
        """The active rules that apply to `tenant`: every tenant's in its chain, root first."""
        return self.active.rules_for(tenant)

    def decide(self, attrs: Attributes, request_key: str) -> Decision:
        """The decision to enforce for one request. `request_key` is a stable
        per-request string (a request id, or a session id for stickiness) that
        samples the canary share. Raises `ruleset.UnknownTenant` for a tenant these
        policies were not compiled with."""
        candidate = self.candidate
        if candidate is not None and self.mode == "canary" and self._in_canary(attrs, request_key):
            self.canary_decisions += 1
            return dataclasses.replace(candidate.decide(attrs), canary=True)
        decision = self.active.decide(attrs)
        if candidate is not None and self.mode == "shadow":
            shadow = candidate.decide(attrs)
            self.shadow_decisions += 1
            if not decision.agrees_with(shadow):
                self.shadow_disagreements += 1
            decision = dataclasses.replace(decision, shadow=shadow)
        return decision

    def _in_canary(self, attrs: Attributes, request_key: str) -> bool:
        assert self.candidate is not None
        return attrs.tenant in self.canary_tenants or in_share(
            self.candidate.version, request_key, self.share
        )

    def stats(self) -> PolicyStats:
        return PolicyStats(
            active=self.active.stats(),
            candidate=self.candidate.stats() if self.candidate is not None else None,
            shadow_decisions=self.shadow_decisions,
            shadow_disagreements=self.shadow_disagreements,
            canary_decisions=self.canary_decisions,
        )


def subtree_of(listed: frozenset[str], chains: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """Every tenant whose chain passes through one of `listed`."""
    return frozenset(tenant for tenant, chain in chains.items() if listed.intersection(chain))
