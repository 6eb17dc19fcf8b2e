"""What `GET /admin/ui/state` answers: every section of the admin page, each built
by the function its own admin endpoint uses, so the page and the API scope alike.

- `deployments`: `routing_state` (gateway/admin/routing.py): the groups and
  deployments the viewer's tenant may use;
- `slos`: the SLOs `visible_slos` allows (gateway/admin/slo.py), each with its short
  burn history (history.py);
- `limits`: the limits `limits_state` covers (gateway/admin/limits.py), the fullest
  first; the refusals by level come with the audit section (they are read there);
- `chaos`: `chaos_state` (gateway/admin/chaos.py) for the viewer's scope;
- `config`: the serving version for everyone; its origin, the recent versions,
  refused documents and reloads for a root viewer only (as `GET /admin/config`);
  the rollout, whole for a root viewer, its state, versions, samples and verdict
  only for a team's;
- `audit`: recent decisions in the viewer's scope (decisions.py), or that the
  audit log is off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.admin.base import AdminTarget
from gateway.admin.chaos import chaos_state
from gateway.admin.limits import limits_state
from gateway.admin.routing import routing_state
from gateway.admin.slo import visible_slos
from gateway.admin.ui.decisions import RecentDecisions
from gateway.admin.ui.history import BurnHistory
from tenants.identity import Identity

if TYPE_CHECKING:
    from gateway.runtime import Runtime

#: A limit this full (used / max) is *near exhaustion* on the page.
NEAR_EXHAUSTION = 0.8
#: Limits listed, the fullest first.
SHOWN_LIMITS = 20
#: Recent config versions and refused documents listed (root viewers).
SHOWN_VERSIONS = 5
#: Problems listed per refused document.
SHOWN_PROBLEMS = 3
#: What a team's viewer sees of a rollout: no reasons, which may name other tenants.
TEAM_ROLLOUT_FIELDS = ("state", "baseline", "candidate", "samples")


async def page_state(
    gateway: AdminTarget,
    runtime: Runtime,
    identity: Identity,
    history: BurnHistory,
    decisions: RecentDecisions | None,
) -> dict[str, Any]:
    """Every section for `identity`, all from `runtime` (the one the request read
    first: a reload between two sections does not mix two versions)."""
    now = time.time()
    return {
        "generated_at": round(now, 3),
        "viewer": {
            "key": identity.key_id,
            "tenant": identity.tenant_id,
            "root": identity.root_scoped,
            "roles": sorted(identity.roles),
            "tenants": sorted(identity.visible_tenants),
        },
        "config": config_section(gateway, runtime, identity),
        "deployments": routing_state(runtime.router, identity),
        "slos": slo_section(gateway, runtime, identity, history, now),
        "limits": await limits_section(gateway, runtime, identity),
        "chaos": chaos_state(runtime.chaos, identity.scope),
        "audit": await audit_section(gateway, identity, decisions),
    }


def config_section(gateway: AdminTarget, runtime: Runtime, identity: Identity) -> dict[str, Any]:
    version = runtime.version
    rollout = rollout_section(gateway, identity)
    if not identity.root_scoped:
        return {
            "version": {"id": version.id, "number": version.number, "loaded_at": version.loaded_at},
            "rollout": rollout,
        }
    state = gateway.state
    versions = list(state.versions)[-SHOWN_VERSIONS:]
    refused = list(state.versions.refused)[-SHOWN_VERSIONS:]
    return {
        "version": version.describe(),
        "versions": [_version(v.describe()) for v in reversed(versions)],
        "refused": [
            {**r.describe(), "problems": list(r.problems[:SHOWN_PROBLEMS])}
            for r in reversed(refused)
        ],
        "reloads": dict(state.reloads),
        "rollout": rollout,
    }


def _version(described: dict[str, Any]) -> dict[str, Any]:
    described.pop("documents", None)
    return described


def rollout_section(gateway: AdminTarget, identity: Identity) -> dict[str, Any]:
    """The guarded rollout (gateway/rollouts.py): running, or the last one."""
    described: dict[str, Any] = gateway.rollouts.describe()
    if identity.root_scoped:
        return described
    verdict = described.get("verdict") or {}
    return {
        **{name: described.get(name) for name in TEAM_ROLLOUT_FIELDS},
        "verdict": {"result": verdict.get("result")},
    }


def slo_section(
    gateway: AdminTarget, runtime: Runtime, identity: Identity, history: BurnHistory, now: float
) -> list[dict[str, Any]]:
    statuses = gateway.state.slos.tracker.snapshot(now)
    history.sample(statuses, now)
    names = {slo.name for slo in visible_slos(runtime.config.slos, identity)}
    return [
        {**status.describe(), "history": history.of(status.name)}
        for status in statuses
        if status.name in names
    ]


async def limits_section(
    gateway: AdminTarget, runtime: Runtime, identity: Identity
) -> dict[str, Any]:
    described = await limits_state(runtime, gateway.state.limiter, identity)
    rows = [
        {**limit, "level": level["level"], "share": _share(limit["used"], limit["max"])}
        for level in described["levels"]
        for limit in level["limits"]
    ]
    rows.sort(key=lambda row: (-row["share"], row["level"], row["limit"]))
    for row in rows:
        row["near"] = row["share"] >= NEAR_EXHAUSTION
    section: dict[str, Any] = {
        "store": described["store"],
        "count": len(rows),
        "near": sum(1 for row in rows if row["near"]),
        "limits": rows[:SHOWN_LIMITS],
    }
    if identity.root_scoped:
        # Since the process started, by limit and level kind (tenant, key, class).
        section["refused_totals"] = [
            {"limit": limit, "level": level, "count": count}
            for (limit, level, result), count in sorted(gateway.state.limiter.decisions.items())
            if result == "refused"
        ]
    return section


def _share(used: float, maximum: float) -> float:
    return round(used / maximum, 4) if maximum > 0 else 1.0


async def audit_section(
    gateway: AdminTarget, identity: Identity, decisions: RecentDecisions | None
) -> dict[str, Any]:
    if gateway.state.audit is None or decisions is None:
        return {"enabled": False}
    scope = None if identity.root_scoped else identity.tenant_id
    return {"enabled": True, **await decisions.get(scope)}
