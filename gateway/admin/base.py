"""What every admin handler shares: the gateway it manages, and who may call it.

Each admin resource is a module with one class whose methods are the handlers, one
method per verb. They reach the gateway through `AdminTarget` (not the app module),
read the runtime once per request like everything else, and require the `admin`
role of the calling key (the key-less local default has it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.sources.base import Source
from gateway.stages.authenticate import require
from tenants.identity import Identity

if TYPE_CHECKING:
    from gateway.reload import Reloader
    from gateway.rollouts import Rollouts
    from gateway.runtime import Runtime
    from gateway.state import State


class AdminTarget(Protocol):
    runtime: Runtime
    state: State
    reloader: Reloader
    rollouts: Rollouts
    source: Source | None

    def respond(self, payload: Any, status: int = 200) -> Response: ...


class AdminResource:
    def __init__(self, gateway: AdminTarget) -> None:
        self.gateway = gateway

    def authorize(self, request: Request) -> Identity:
        return require(self.gateway.runtime.tenants, request.headers.get("authorization"), "admin")

    def authorize_root(self, request: Request) -> Identity:
        """An admin of the whole gateway: what applies to every tenant at once (the
        config) is not a team admin's to read or change."""
        identity = self.authorize(request)
        if not identity.root_scoped:
            raise GatewayError(
                403,
                f"Key '{identity.key_id}' administers tenant '{identity.tenant_id}'; this "
                "needs an admin of the whole gateway (a key of the root tenant).",
                code="permission_denied",
            )
        return identity

    def respond(self, payload: Any, status: int = 200) -> Response:
        return self.gateway.respond(payload, status)

    def audit(
        self, action: str, identity: Identity, target: str | None, detail: dict[str, Any]
    ) -> None:
        """An audit record of this admin action (when the audit log is on)."""
        log = self.gateway.state.audit
        if log is not None:
            log.admin(action, identity, target, detail)
