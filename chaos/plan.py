"""The faults in force for one request, and when each of them fires.

A plan is built per request from three sources: the `x-seawall-chaos` header, the
request's traffic color, and the faults scheduled through the admin API. It
travels to the chaos transport in the httpx request's extensions, so the layers
in between (routing, breakers, retries) never know it exists: they see failures
that look exactly like real ones.

Header and color faults live for the request: their `after` and `count` count
the calls this request makes (attempts, retries, failovers). Scheduled faults
are shared by all requests, so theirs count across the whole gateway.

Every fault has a scope: the tenant on whose behalf it was injected (the caller's
tenant for header and color faults, the scheduling admin's for scheduled ones).
A plan holding any fault below the root scope is not `observed`: what its request
meets is staged for one tenant, so it must not teach the health every tenant's
routing shares (statistics, breakers, SLA weights, the retry budget). A root-scoped
drill is observed: it opens real breakers, as a real outage would.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping
from typing import Any

from chaos.config import ChaosConfig
from chaos.faults import DURATION_KEYS, FaultError, FaultSpec

#: The scope of a fault injected for the whole gateway (a root-scoped key's header,
#: a root admin's schedule): every request.
ROOT_SCOPE = "root"


class ActiveFault:
    """A fault and its trigger state: how many matching calls it saw and hit."""

    def __init__(self, spec: FaultSpec, scope: str = ROOT_SCOPE) -> None:
        self.spec = spec
        #: The tenant it was injected for (`ROOT_SCOPE`: the whole gateway).
        self.scope = scope
        self.seen = 0
        self.hits = 0
        self._rng = random.Random(spec.seed)

    def matches(self, where: str, group: str | None) -> bool:
        """Does this fault apply to a call to `where` (a deployment, or `tool:NAME`)?

        Tool endpoints get transport and HTTP faults and `forge_tool` (a forged
        result); model calls get everything else, `forge_tool_call` included.
        """
        on_tool = where.startswith("tool:")
        layer = self.spec.kind.layer
        if layer == "mcp":
            return False  # MCP calls pick their faults themselves (gateway/mcp/)
        if on_tool and not (layer in ("transport", "http") or self.spec.name == "forge_tool"):
            return False
        if not on_tool and self.spec.name == "forge_tool":
            return False
        target = self.spec.target
        if target is None:
            return True
        if target.startswith("group:"):
            return group is not None and target[len("group:") :] == group
        return target == where

    def fires(self) -> bool:
        """Called once per matching call: does the fault hit this one?"""
        self.seen += 1
        if self.seen <= self.spec.after:
            return False
        if self.spec.count is not None and self.hits >= self.spec.count:
            return False
        if self._rng.random() >= self.spec.p:
            return False
        self.hits += 1
        return True


def apply_caps(spec: FaultSpec, config: ChaosConfig) -> FaultSpec:
    """The server's caps always win: clamp the fault within them, or refuse it."""
    limits: dict[str, Any] = {}
    if spec.p > config.max_probability:
        limits["p"] = config.max_probability
    params = dict(spec.params)
    for key in DURATION_KEYS & params.keys():
        if params[key] > config.max_latency_ms:
            params[key] = config.max_latency_ms
    retry_after = params.get("retry_after")
    if retry_after is not None and retry_after * 1000 > config.max_latency_ms:
        params["retry_after"] = config.max_latency_ms / 1000
    if params != spec.params:
        limits["params"] = params
    if not limits:
        return spec
    if config.over_cap == "refuse":
        raise FaultError(
            f"{spec.name}: over the server's chaos caps (max_probability "
            f"{config.max_probability}, max_latency_ms {config.max_latency_ms})"
        )
    return dataclasses.replace(spec, **limits)


class ChaosPlan:
    def __init__(self, faults: Iterable[ActiveFault], groups: Mapping[str, str]) -> None:
        self.faults = list(faults)
        self._groups = groups  # deployment id -> group name, for `group:` targets
        #: What was injected, `fault@where`, each once (the response header).
        self.injected: list[str] = []
        #: How many times, by (scope, fault, where) (metrics, scoped views).
        self.counts: dict[tuple[str, str, str], int] = {}
        #: Whether this request's outcomes may teach the shared health: only when
        #: every fault in force is root-scoped.
        self.observed = all(fault.scope == ROOT_SCOPE for fault in self.faults)

    def firing(self, where: str) -> list[FaultSpec]:
        """The faults that hit this call to `where` (a deployment id or `tool:NAME`),
        each recorded as injected."""
        group = self._groups.get(where)
        hits = []
        for fault in self.faults:
            if fault.matches(where, group) and fault.fires():
                hits.append(fault.spec)
                self.record(fault, where)
        return hits

    def record(self, fault: ActiveFault, where: str) -> None:
        key = (fault.scope, fault.spec.name, where)
        self.counts[key] = self.counts.get(key, 0) + 1
        entry = f"{fault.spec.name}@{where}"
        if entry not in self.injected:
            self.injected.append(entry)

    def tool_faults(self, name: str) -> list[FaultSpec]:
        """`forge_tool` faults aimed at results of tool `name` (request side)."""
        hits = []
        for fault in self.faults:
            spec = fault.spec
            if spec.name != "forge_tool":
                continue
            if spec.target in (None, f"tool:{name}") and fault.fires():  # last: it counts
                hits.append(spec)
                self.record(fault, f"tool:{name}")
        return hits
