"""The gateway's control plane as the runner uses it, over HTTP only.

Readiness, the model group, admin faults, `/admin/routing`, `/metrics`, and config
rollouts (`/admin/config`, `/admin/config/rollout`). The
runner never imports the gateway: it drives a real one, local or remote, exactly
as an operator's tooling would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from chaos.runner.promtext import MetricSnapshot

READY_POLL_S = 0.1


class GatewayProblem(Exception):
    """The gateway could not be used for the experiment; the message says why."""


#: Problems of a refused config quoted in a GatewayProblem, at most.
MAX_PROBLEMS = 5


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", {})
        message = str(error.get("message") or response.text[:300])
        problems = body.get("problems")
        if isinstance(problems, list) and len(problems) > 1:
            message += "; all: " + "; ".join(str(p) for p in problems[:MAX_PROBLEMS])
        return message
    except (ValueError, AttributeError):
        return response.text[:300]


def _object(response: httpx.Response, what: str) -> dict[str, Any]:
    """A 200 answer's JSON object, else GatewayProblem saying what failed."""
    if response.status_code != 200:
        raise GatewayProblem(f"{what}: HTTP {response.status_code}: {_detail(response)}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayProblem(f"{what}: the answer is not a JSON object")
    return body


class GatewayAPI:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def wait_ready(self, timeout_s: float) -> None:
        """Until `/readyz` says ready: a gateway just started may still be opening its
        upstream pools (its socket already accepts, so connections queue)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = "no answer"
        while loop.time() < deadline:
            try:
                response = await self.client.get("/readyz")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(READY_POLL_S)
        raise GatewayProblem(
            f"gateway at {self.client.base_url} not ready after {timeout_s:g} s ({last})"
        )

    async def check_model(self, model: str) -> None:
        response = await self.client.get(f"/v1/models/{model}")
        if response.status_code != 200:
            raise GatewayProblem(
                f"model group {model!r}: HTTP {response.status_code}: {_detail(response)}"
            )

    async def active_faults(self) -> list[dict[str, Any]]:
        response = await self.client.get("/admin/chaos")
        if response.status_code != 200:
            return []
        faults = response.json().get("faults", [])
        return faults if isinstance(faults, list) else []

    async def schedule(self, body: dict[str, Any]) -> str:
        response = await self.client.post("/admin/chaos", json=body)
        if response.status_code not in (200, 201):
            raise GatewayProblem(
                f"POST /admin/chaos {body}: HTTP {response.status_code}: {_detail(response)}"
            )
        return str(response.json()["id"])

    async def remove(self, fault_id: str) -> None:
        """Delete one scheduled fault; already expired (404) is fine."""
        response = await self.client.delete(f"/admin/chaos/{fault_id}")
        if response.status_code not in (200, 204, 404):
            raise GatewayProblem(f"DELETE /admin/chaos/{fault_id}: HTTP {response.status_code}")

    async def clear(self) -> int | None:
        """Clear every scheduled fault; None when the gateway has no chaos admin API."""
        response = await self.client.delete("/admin/chaos")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GatewayProblem(
                f"DELETE /admin/chaos: HTTP {response.status_code}: {_detail(response)}"
            )
        return int(response.json().get("cleared", 0))

    async def breakers(self, model: str) -> dict[str, str] | None:
        """deployment -> breaker state for the model group; None if unavailable."""
        try:
            response = await self.client.get("/admin/routing")
            if response.status_code != 200:
                return None
            for group in response.json().get("groups", []):
                if group.get("name") == model:
                    return {d["id"]: d["breaker"]["state"] for d in group.get("deployments", [])}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return None

    async def burn_rates(self, window: str) -> list[tuple[str, float]] | None:
        """(SLO, burn rate over `window`) of every SLO the key may read (`GET
        /admin/slo`); None when the gateway has none or does not answer."""
        try:
            response = await self.client.get("/admin/slo")
            if response.status_code != 200:
                return None
            return [
                (slo["name"], float(w["burn_rate"]))
                for slo in response.json().get("slos", [])
                for w in slo.get("windows", [])
                if w.get("window") == window
            ]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def metrics(self) -> MetricSnapshot | None:
        try:
            response = await self.client.get("/metrics")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return MetricSnapshot.parse(response.text)

    # -- config rollouts ---------------------------------------------------------------

    async def serving_config(self) -> tuple[str, dict[str, Any]]:
        """The serving version's id and its config as JSON (secrets masked)."""
        body = _object(await self.client.get("/admin/config"), "GET /admin/config")
        try:
            return str(body["version"]["id"]), dict(body["config"])
        except (KeyError, TypeError, ValueError):
            raise GatewayProblem("GET /admin/config: no version or config in the answer") from None

    async def rollout(self) -> dict[str, Any]:
        """`GET /admin/config/rollout`: the running rollout, or the last one."""
        return _object(await self.client.get("/admin/config/rollout"), "GET /admin/config/rollout")

    async def start_canary(
        self, document: str, share: float, tenants: tuple[str, ...]
    ) -> dict[str, Any]:
        """`PUT /admin/config?rollout=canary`: the answer (`version`, `rollout`)."""
        params = {"rollout": "canary", "share": f"{share:g}"}
        if tenants:
            params["tenants"] = ",".join(tenants)
        response = await self.client.put(
            "/admin/config",
            params=params,
            content=document,
            headers={"content-type": "application/json"},
        )
        return _object(response, "PUT /admin/config?rollout=canary")

    async def abort_rollout(self, reason: str) -> bool:
        """Abort the running rollout; False when none was running (409)."""
        response = await self.client.post("/admin/config/rollout/abort", json={"reason": reason})
        if response.status_code == 409:
            return False
        _object(response, "POST /admin/config/rollout/abort")
        return True

    async def restore_version(self, version: str) -> None:
        """`POST /admin/config/rollback`: serve a kept version's documents again."""
        response = await self.client.post("/admin/config/rollback", json={"version": version})
        _object(response, f"POST /admin/config/rollback to {version}")
