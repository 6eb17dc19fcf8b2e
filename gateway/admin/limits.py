"""`GET /admin/limits`: every limit the admin's scope covers, as its store counts it now.

For each level (a tenant's own limits, a key's, a limit class's) and each of its
limits: the limit, what is used (reserved or settled) in its window, lease set or
period, what remains, and when room next frees up. A tenant's admin sees its subtree's
tenants and keys; limit classes, which any request can be put in, are the root admin's.
Also the store: which, whether shared, its failures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.base import AdminResource
from limits.claims import Level, StoreUnavailable
from limits.limiter import Limiter
from tenants.identity import Identity

if TYPE_CHECKING:
    from gateway.runtime import Runtime


async def limits_state(runtime: Runtime, limiter: Limiter, identity: Identity) -> dict[str, Any]:
    """Every limit `identity`'s scope covers, as the store counts it now (also the
    admin page's, gateway/admin/ui/)."""
    config = runtime.config
    levels = [
        Level(f"tenant:{t.id}", t.limits)
        for t in config.tenants
        if t.limits is not None and identity.within_scope(t.id)
    ]
    tenants = runtime.tenants
    for key in config.keys:
        owner = tenants.identity(key.id)
        if key.limits is not None and owner and identity.within_scope(owner.tenant_id):
            levels.append(Level(f"key:{key.id}", key.limits))
    if identity.root_scoped:
        levels += [Level(f"class:{n}", c) for n, c in config.limits.classes.items()]
    described: list[dict[str, Any]] = []
    store_error = None
    for level in levels:
        try:
            states = await limiter.usage([level])
        except StoreUnavailable as exc:
            store_error = str(exc)
            states = []
        described.append(
            {
                "level": level.name,
                "on_store_failure": level.config.on_store_failure,
                "limits": [
                    {
                        "limit": s.claim.name,
                        "max": s.claim.limit,
                        "used": s.used,
                        "remaining": s.remaining,
                        "reset_ms": s.reset_ms,
                    }
                    for s in states
                ],
            }
        )
    return {
        "store": {
            "kind": "redis" if limiter.store.shared else "memory",
            "shared": limiter.store.shared,
            "available": store_error is None,
            "errors": limiter.store_errors,
            "last_error": store_error or limiter.last_store_error,
        },
        "levels": described,
    }


class LimitsAdmin(AdminResource):
    async def get(self, request: Request) -> Response:
        identity = self.authorize(request)
        gateway = self.gateway
        return self.respond(await limits_state(gateway.runtime, gateway.state.limiter, identity))
