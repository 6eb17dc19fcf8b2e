"""`/admin/config`: the serving config version, its history, a new one, a rollback.

`PUT /admin/config` takes a whole config document (YAML, or JSON, which is YAML);
with `If-Match: <version id>` it applies only over that version (412 otherwise), as
Caddy's `/load` does, so two operators cannot overwrite each other unknowingly. The
document is validated fully first (400 with every problem, nothing changed); then it
is written to the config source, when that source can be written (a file, etcd), so
every worker and replica watching it converges on it; then it is applied here. A
read-only source (a ConfigMap directory) answers 409: change it where it lives.
`POST /admin/config/rollback {"version": N or id}` does the same with a kept
version's documents.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from common.headers import EMERGENCY_HEADER
from gateway.admin.base import AdminResource
from gateway.admin.body import read_body, read_json_object
from gateway.errors import GatewayError, echoed
from gateway.reload import RESTART_ONLY, Conflict, Refused
from gateway.sources import SourceError
from gateway.versions import ConfigVersion
from rollouts.config import RolloutSettings
from tenants.identity import Identity

log = logging.getLogger("seawall")

#: A config document sent to `PUT /admin/config`, at most.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: The name a document sent over the admin API is kept under.
ADMIN_DOCUMENT = "seawall.yaml"


class ConfigAdmin(AdminResource):
    async def get(self, request: Request) -> Response:
        self.authorize_root(request)
        runtime, state = self.gateway.runtime, self.gateway.state
        refused = [r.describe() for r in state.versions.refused if r.at > runtime.version.loaded_at]
        return self.respond(
            {
                "version": runtime.version.describe(),
                "config": runtime.config.model_dump(mode="json"),
                "source": self.gateway.source.origin if self.gateway.source else None,
                "source_stats": self.gateway.source.stats.describe()
                if self.gateway.source
                else None,
                "writable": self._writable(),
                "refused_since": refused,
                "reloads": dict(state.reloads),
                #: Replaced versions still finishing their requests.
                "retiring": len(self.gateway.reloader.retiring),
                "restart_only": list(RESTART_ONLY),
            }
        )

    async def versions(self, request: Request) -> Response:
        self.authorize_root(request)
        state = self.gateway.state
        return self.respond(
            {
                "current": self.gateway.runtime.version.id,
                "versions": [v.describe() for v in reversed(list(state.versions))],
                "refused": [r.describe() for r in reversed(state.versions.refused)],
            }
        )

    async def put(self, request: Request) -> Response:
        identity = self.authorize_root(request)
        text = (await read_body(request, MAX_CONFIG_BYTES)).decode("utf-8", "replace")
        expected = _if_match(request)
        canary = self._canary(request)
        version = await self._apply(
            {ADMIN_DOCUMENT: text},
            f"admin PUT by key '{identity.key_id}'",
            expected,
            identity,
            emergency=_emergency(request),
            canary=canary,
        )
        payload: dict[str, object] = {"version": version.describe()}
        if canary is not None:
            payload["rollout"] = self.gateway.rollouts.describe()
        return self.respond(payload)

    def _canary(self, request: Request) -> RolloutSettings | None:
        """`?rollout=canary` (with `share=0.2`, `tenants=a,b` over the serving config's
        `reload.rollout`): the settings of the canary to start; None: apply at once."""
        params = request.query_params
        mode = params.get("rollout", "direct")
        if mode not in ("direct", "canary"):
            raise GatewayError(
                400, "'rollout' must be 'canary' or 'direct'.", code="invalid_value",
                param="rollout",
            )  # fmt: skip
        extra = set(params) & {"share", "tenants"}
        if mode == "direct":
            if extra:
                raise GatewayError(
                    400, f"'{sorted(extra)[0]}' needs rollout=canary.", code="invalid_value",
                    param=sorted(extra)[0],
                )  # fmt: skip
            return None
        runtime = self.gateway.runtime
        settings = runtime.config.reload.rollout.model_dump()
        if "share" in params:
            settings["share"] = params["share"]
        if "tenants" in params:
            settings["tenants"] = [t for t in params["tenants"].split(",") if t]
        try:
            canary = RolloutSettings.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise GatewayError(
                400, f"Bad rollout parameter {where}: {first['msg']}", code="invalid_value",
                param=str(first["loc"][0]),
            ) from None  # fmt: skip
        for tenant in canary.tenants:
            if tenant not in runtime.tenants:
                raise GatewayError(
                    400, f"Unknown tenant {echoed(tenant)!r} in 'tenants'.",
                    code="invalid_value", param="tenants",
                )  # fmt: skip
        if not (canary.share or canary.tenants):
            raise GatewayError(
                400, "A canary needs a 'share' above 0 or some 'tenants'.",
                code="invalid_value", param="share",
            )  # fmt: skip
        return canary

    async def rollback(self, request: Request) -> Response:
        identity = self.authorize_root(request)
        body = await read_json_object(request)
        name = body.get("version")
        if not isinstance(name, (int, str)) or isinstance(name, bool):
            raise GatewayError(
                400, "'version' must be a version number or id.", code="invalid_value",
                param="version",
            )  # fmt: skip
        old = self.gateway.state.versions.find(name)
        if old is None:
            raise GatewayError(
                404,
                f"No kept config version {echoed(str(name))!r} "
                "(GET /admin/config/versions lists them).",
                code="version_not_found",
                param="version",
            )
        origin = f"rollback to #{old.number} ({old.id}) by key '{identity.key_id}'"
        version = await self._apply(
            old.documents, origin, None, identity, action="config.rolled_back"
        )
        return self.respond({"version": version.describe(), "rolled_back_to": old.id})

    def _writable(self) -> bool:
        source = self.gateway.source
        return source is None or source.writable

    async def _apply(
        self,
        files: Mapping[str, str],
        origin: str,
        expected: str | None,
        actor: Identity,
        action: str = "config.applied",
        emergency: str | None = None,
        canary: RolloutSettings | None = None,
    ) -> ConfigVersion:
        """Check, write to the source (so every worker and replica follows), apply. A
        canary is not written: only its promotion is (gateway/rollouts.py)."""
        gateway = self.gateway
        source = gateway.source
        if not self._writable():
            raise GatewayError(
                409,
                f"The config is read from {source.origin if source else 'a source'}, which "
                "this gateway cannot write: change it there (every replica follows it).",
                code="config_source_read_only",
            )
        try:
            await gateway.reloader.check(
                files, origin, expected, actor=actor, action=action, emergency=emergency
            )
            if source is not None and canary is None:
                try:
                    await source.write(files)
                except SourceError as exc:
                    log.error("config source %s: write failed: %s", source.origin, exc)
                    raise GatewayError(
                        503,
                        f"The config source {source.origin} could not be written; "
                        "nothing was changed. Retry shortly.",
                        code="config_source_unavailable",
                    ) from None
            return await gateway.reloader.apply(
                files, origin, expected, actor=actor, action=action, emergency=emergency,
                canary=canary,
            )  # fmt: skip
        except Conflict as exc:
            raise GatewayError(
                412,
                f"The serving config version is {exc.current}, not {exc.expected} (If-Match).",
                code="version_mismatch",
                headers={"etag": f'"{exc.current}"'},
            ) from None
        except Refused as exc:
            problems = list(exc.refused.problems)
            if exc.frozen:
                raise GatewayError(
                    409,
                    f"Config changes are frozen: {problems[0]}",
                    code="change_frozen",
                    details={"problems": problems},
                ) from None
            raise GatewayError(
                400,
                f"The config has {len(problems)} problem(s); nothing was changed. "
                f"First: {problems[0]}",
                code="config_invalid",
                details={"problems": problems},
            ) from None


def _emergency(request: Request) -> str | None:
    """`x-seawall-emergency: <reason>`: this change is the fix; it passes a change
    freeze, and the reason is recorded with it in the audit log."""
    reason = request.headers.get(EMERGENCY_HEADER)
    if reason is None:
        return None
    reason = reason.strip()[:200]
    if not reason:
        raise GatewayError(
            400, f"{EMERGENCY_HEADER} needs a reason.", code="invalid_value", param=EMERGENCY_HEADER
        )
    return reason


def _if_match(request: Request) -> str | None:
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    return value.strip().removeprefix("W/").strip('"')
