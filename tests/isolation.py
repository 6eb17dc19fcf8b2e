"""Two sibling tenants and an attacker: the shared ground of the isolation suite.

Every wall between tenants is tested the same way (DESIGN.md section 10b): tenant
`red` is the attacker, tenant `blue` the victim, siblings under `org`. Each tenant has
an ordinary inference key (`<tenant>-user`) and a key holding every role there is
(`<tenant>-all`: user, tools, chaos, metrics, auditor, admin), so a test that the
attacker cannot cross a wall is a test with the strongest key a tenant may hold.
`org-admin` administers both; `root-admin` the whole gateway.

Deployments: `shared-a` and `shared-b` serve group `chat`, which both tenants use;
`red-own` and `blue-own` serve each tenant's own group (`red-chat`, `blue-chat`).
A tenant may aim chaos only at its own deployment and group (`chaos_targets`).
All are in-process mocks unless a test passes its own deployments.

Bearer tokens are the key ids themselves (the config holds their sha256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import httpx

ALL_ROLES = ["user", "tools", "chaos", "metrics", "auditor", "admin"]
ATTACKER, VICTIM = "red", "blue"
TENANTS = (ATTACKER, VICTIM)

#: key id (= bearer token) -> (tenant or None for root, roles)
KEYS: dict[str, tuple[str | None, list[str]]] = {
    "root-admin": (None, ALL_ROLES),
    "org-admin": ("org", ["admin", "metrics", "auditor"]),
    **{f"{t}-user": (t, ["user"]) for t in TENANTS},
    **{f"{t}-all": (t, list(ALL_ROLES)) for t in TENANTS},
}


def mock(deployment_id: str, **extra: Any) -> dict[str, Any]:
    """An in-process mock deployment without retries (each call is one attempt)."""
    return {
        "id": deployment_id,
        "provider": "mock",
        "model": "mock-gpt",
        "retry": {"attempts": 1},
        **extra,
    }


def keys(spec: Mapping[str, tuple[str | None, list[str]]] | None = None) -> list[dict[str, Any]]:
    """`keys:` for the config: `spec` maps each key id (= its bearer token) to its tenant
    (None: the root) and roles; the isolation suite's `KEYS` by default."""
    out = []
    for key_id, (tenant, roles) in (KEYS if spec is None else spec).items():
        key: dict[str, Any] = {
            "id": key_id,
            "key_sha256": hashlib.sha256(key_id.encode()).hexdigest(),
            "roles": roles,
        }
        if tenant is not None:
            key["tenant"] = tenant
        out.append(key)
    return out


def two_tenants(
    *,
    shared: list[dict[str, Any]] | None = None,
    own: Mapping[str, list[dict[str, Any]]] | None = None,
    tenant_extra: Mapping[str, Mapping[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The isolation suite's config: group `chat` shared by both tenants, each
    tenant's own group, chaos on. `shared` and `own` replace the default mock
    deployments; `tenant_extra` adds settings to a tenant (`{"red": {...}}`);
    `extra` adds or replaces top-level sections."""
    shared = shared if shared is not None else [mock("shared-a"), mock("shared-b")]
    own = own if own is not None else {t: [mock(f"{t}-own")] for t in TENANTS}
    models = [{"name": "chat", "deployments": shared}]
    models += [{"name": f"{t}-chat", "deployments": own[t]} for t in TENANTS]
    tenants: list[dict[str, Any]] = [{"id": "org"}]
    for tenant in TENANTS:
        own_ids = [d["id"] for d in own[tenant]]
        tenants.append(
            {
                "id": tenant,
                "parent": "org",
                "allow": {
                    "models": ["chat", f"{tenant}-chat"],
                    "chaos_targets": [*own_ids, f"group:{tenant}-chat"],
                },
                **(tenant_extra or {}).get(tenant, {}),
            }
        )
    return {
        "models": models,
        "tenants": tenants,
        "keys": keys(),
        "chaos": {"enabled": True},
        **extra,
    }


def call(
    base_url: str, key: str, method: str, path: str, timeout: float = 10, **kwargs: Any
) -> httpx.Response:
    """One request to the gateway at `base_url` with `key`'s bearer token."""
    headers = {"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(method, base_url + path, headers=headers, timeout=timeout, **kwargs)


def chat(base_url: str, key: str, model: str = "chat", **kwargs: Any) -> httpx.Response:
    """A minimal chat completion; `json=` extras are merged into the body."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kwargs.pop("json", {}))
    return call(base_url, key, "POST", "/v1/chat/completions", json=body, **kwargs)
