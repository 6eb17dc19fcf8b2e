"""`GET /admin/ui` (the page), its three static files, and `GET /admin/ui/state`.

The page, its script and its style sheet are package data (gateway/admin/ui/static/),
read once and served as they are: no build step, nothing fetched from elsewhere. They
hold no data, so they are served without a key (a browser cannot send a bearer token
when it opens a URL); the page then calls `/admin/ui/state` with the key typed into
it, and that endpoint requires the `admin` or `auditor` role and answers only what the
key's tenant scope covers (state.py). With the key-less local default, every caller
on loopback is the local identity, which has both roles.

Every answer forbids framing, sniffing, caching and any script or style not served
from here (Content-Security-Policy: no inline script, no other origin).
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.audit import AuditAdmin
from gateway.admin.base import AdminResource, AdminTarget
from gateway.admin.ui.decisions import RecentDecisions
from gateway.admin.ui.history import BurnHistory
from gateway.admin.ui.state import page_state
from gateway.errors import GatewayError
from gateway.stages.authenticate import require

ROLES = ("admin", "auditor")

#: The static files and their media types; the page is `index.html`.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _load(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


class UiAdmin(AdminResource):
    def __init__(self, gateway: AdminTarget, audit: AuditAdmin) -> None:
        super().__init__(gateway)
        self.history = BurnHistory()
        self.decisions = RecentDecisions(audit.read)
        self._assets: dict[str, bytes] = {}

    async def page(self, request: Request) -> Response:
        return self._asset("index.html")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS or name == "index.html":
            raise GatewayError(404, "No such file of the admin page.", code="not_found")
        return self._asset(name)

    async def state(self, request: Request) -> Response:
        gateway = self.gateway
        runtime = gateway.runtime
        identity = require(runtime.tenants, request.headers.get("authorization"), *ROLES)
        payload = await page_state(gateway, runtime, identity, self.history, self.decisions)
        response = self.respond(payload)
        response.headers.update(HEADERS)
        return response

    def _asset(self, name: str) -> Response:
        body = self._assets.get(name)
        if body is None:
            body = self._assets[name] = _load(name)
        return Response(body, media_type=ASSETS[name], headers=HEADERS)
