"""`/admin/config/rollout`: the guarded rollout of a config version, for people.

`GET` shows the running rollout (or the last one): versions, share and tenants,
samples per side, the judge's latest verdict and every step. `POST .../promote` and
`POST .../abort` (an optional JSON body `{"reason": "..."}`) end it by hand; 409
`no_rollout` when none is running. Only an admin of the whole gateway: a rollout
changes what every tenant is served. gateway/rollouts.py does the work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.base import AdminResource
from gateway.admin.body import read_body
from gateway.errors import GatewayError
from gateway.stages.body import json_object
from rollouts.machine import NotRunning, Step
from tenants.identity import Identity

#: A reason given for a promotion or an abort, at most (characters).
MAX_REASON = 200


class RolloutAdmin(AdminResource):
    async def get(self, request: Request) -> Response:
        self.authorize_root(request)
        return self.respond(self.gateway.rollouts.describe())

    async def promote(self, request: Request) -> Response:
        return await self._end(request, self.gateway.rollouts.promote)

    async def abort(self, request: Request) -> Response:
        return await self._end(request, self.gateway.rollouts.abort)

    async def _end(
        self, request: Request, end: Callable[[Identity, str], Awaitable[Step]]
    ) -> Response:
        """Ends the running rollout by hand with `end` (promote or abort), for the
        root admin who asked, with their reason; 409 when none is running."""
        identity = self.authorize_root(request)
        reason = await _reason(request)
        try:
            await end(identity, reason)
        except NotRunning as exc:
            raise _no_rollout(exc) from None
        return self.respond(self.gateway.rollouts.describe())


async def _reason(request: Request) -> str:
    raw = await read_body(request)
    if not raw.strip():
        return ""
    body = json_object(raw)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise GatewayError(
            400,
            f"'reason' must be a string of at most {MAX_REASON} characters.",
            code="invalid_value",
            param="reason",
        )
    return reason.strip()


def _no_rollout(exc: NotRunning) -> GatewayError:
    return GatewayError(409, f"No rollout is running ({exc.state}).", code="no_rollout")
