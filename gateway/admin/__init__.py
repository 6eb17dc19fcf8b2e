"""The admin API: one module per resource, each handler one method; `admin_routes`
mounts them. Every admin endpoint requires the `admin` role, but the audit log's,
which an `auditor` may read too, the SLOs', which `auditor` and `metrics` may, and
the admin page's state, which an `auditor` may read (its static files need no key)."""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin.audit import AuditAdmin
from gateway.admin.base import AdminTarget
from gateway.admin.chaos import ChaosAdmin
from gateway.admin.config import ConfigAdmin
from gateway.admin.limits import LimitsAdmin
from gateway.admin.rollout import RolloutAdmin
from gateway.admin.routing import RoutingAdmin
from gateway.admin.slo import SloAdmin
from gateway.admin.ui import UiAdmin


def admin_routes(gateway: AdminTarget) -> list[Route]:
    routing = RoutingAdmin(gateway)
    chaos = ChaosAdmin(gateway)
    config = ConfigAdmin(gateway)
    limits = LimitsAdmin(gateway)
    audit = AuditAdmin(gateway)
    slo = SloAdmin(gateway)
    rollout = RolloutAdmin(gateway)
    ui = UiAdmin(gateway, audit)
    return [
        Route("/admin/routing", routing.get, methods=["GET"]),
        Route("/admin/chaos", chaos.get, methods=["GET"]),
        Route("/admin/chaos", chaos.post, methods=["POST"]),
        Route("/admin/chaos", chaos.delete, methods=["DELETE"]),
        Route("/admin/chaos/{fault_id}", chaos.delete, methods=["DELETE"]),
        Route("/admin/config", config.get, methods=["GET"]),
        Route("/admin/config", config.put, methods=["PUT"]),
        Route("/admin/config/versions", config.versions, methods=["GET"]),
        Route("/admin/config/rollback", config.rollback, methods=["POST"]),
        Route("/admin/config/rollout", rollout.get, methods=["GET"]),
        Route("/admin/config/rollout/promote", rollout.promote, methods=["POST"]),
        Route("/admin/config/rollout/abort", rollout.abort, methods=["POST"]),
        Route("/admin/limits", limits.get, methods=["GET"]),
        Route("/admin/audit", audit.get, methods=["GET"]),
        Route("/admin/slo", slo.get, methods=["GET"]),
        Route("/admin/slo/evaluate", slo.evaluate, methods=["GET"]),
        Route("/admin/ui", ui.page, methods=["GET"]),
        Route("/admin/ui/state", ui.state, methods=["GET"]),
        Route("/admin/ui/{name}", ui.asset, methods=["GET"]),
    ]
