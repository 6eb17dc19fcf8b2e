"""`GET /admin/ui/state` at fleet size: how long the admin page's poll takes.

    .venv/bin/python bench/admin_ui.py                    # 50 deployments, 20 tenants
    .venv/bin/python bench/admin_ui.py --calls 5000

Builds a gateway of `--deployments` in-process mock deployments (10 model groups),
`--tenants` tenants under one org (each with its own limits, an SLO and an admin
key), gateway-wide SLOs, chaos on with a scheduled fault, and the audit log on (in a
temporary directory); sends `--traffic` chat requests first so every window has
samples (p50/p99 are computed from them) and the audit log has decisions (a policy
denial per tenant). Then times `--calls` state reads, in process through httpx's
ASGI transport (the whole app: routing, authentication, every section, JSON), for a
root admin and for a team admin, after a warm-up. Prints Markdown.

`config_for` is also what `bench/admin_ui_screenshots.py` serves.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit.keys import generate_keypair  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402

GROUPS = 10


def token_sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def config_for(
    deployments: int, tenants: int, audit_dir: Path | None, *, latency_ms: int = 0
) -> dict[str, Any]:
    """A fleet: `deployments` mocks over `GROUPS` groups, `tenants` tenants under
    `org` (tenant `t<i>` may use group `g<i % GROUPS>` and `shared`), an admin key per
    tenant (`t<i>-admin`, its own token), `root-admin`, `org-admin`, a user key per
    tenant (`t<i>-user`)."""
    groups = min(GROUPS, max(1, deployments // 2))
    models: list[dict[str, Any]] = [{"name": f"g{g}", "deployments": []} for g in range(groups)]
    for d in range(deployments):
        models[d % groups]["deployments"].append(
            {
                "id": f"d{d:02d}",
                "provider": "mock",
                "model": "mock-gpt",
                "mock": {"latency_ms": latency_ms + (d % 5) * 3},
                "retry": {"attempts": 1},
                "breaker": {"consecutive_failures": 3, "open_seconds": 30},
            }
        )
    tenant_list: list[dict[str, Any]] = [{"id": "org"}]
    keys: list[dict[str, Any]] = [
        {"id": "root-admin", "key_sha256": token_sha("root-admin"), "roles": ["admin"]},
        {
            "id": "org-admin",
            "key_sha256": token_sha("org-admin"),
            "tenant": "org",
            "roles": ["admin", "auditor"],
        },
    ]
    slos: list[dict[str, Any]] = [
        {"name": "all-availability", "kind": "availability", "objective": 0.99},
        {"name": "all-latency", "kind": "latency", "objective": 0.99, "threshold_ms": 500},
    ]
    rules = []
    for t in range(tenants):
        tenant = f"t{t:02d}"
        group = f"g{t % groups}"
        tenant_list.append(
            {
                "id": tenant,
                "parent": "org",
                "allow": {"models": [group], "chaos_targets": [f"group:{group}"]},
                "limits": {"requests_per_minute": 60 + 10 * t, "tokens_per_minute": 200_000},
            }
        )
        keys += [
            {
                "id": f"{tenant}-admin",
                "key_sha256": token_sha(f"{tenant}-admin"),
                "tenant": tenant,
                "roles": ["admin", "auditor"],
            },
            {
                "id": f"{tenant}-user",
                "key_sha256": token_sha(f"{tenant}-user"),
                "tenant": tenant,
                "roles": ["user"],
            },
        ]
        slos.append(
            {
                "name": f"{tenant}-availability",
                "kind": "availability",
                "objective": 0.995,
                "tenant": tenant,
            }
        )
        rules.append(
            {
                "id": f"{tenant}-no-big",
                "tenant": tenant,
                "when": "max_tokens > 1000",
                "effect": "deny",
                "message": "Too many tokens for this team.",
            }
        )
    config: dict[str, Any] = {
        "models": models,
        "tenants": tenant_list,
        "keys": keys,
        "slos": slos,
        "policies": {"rules": rules},
        "chaos": {"enabled": True},
    }
    if audit_dir is not None:
        private, public = audit_dir / "audit.key", audit_dir / "audit.pub"
        generate_keypair(private, public)
        config["audit"] = {
            "enabled": True,
            "directory": str(audit_dir / "log"),
            "stream": "bench",
            "signing_key_file": str(private),
            "fsync": False,
        }
    return config


async def traffic(client: httpx.AsyncClient, tenants: int, requests: int) -> None:
    """Chat requests from every tenant's user, one in ten over its policy's cap."""

    async def one(i: int) -> None:
        t = i % tenants
        body: dict[str, Any] = {
            "model": f"g{t % GROUPS}",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5000 if i % 10 == 0 else 16,
        }
        headers = {"authorization": f"Bearer t{t:02d}-user"}
        await client.post("/v1/chat/completions", json=body, headers=headers)

    for start in range(0, requests, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(requests, start + 50))))


async def timed(client: httpx.AsyncClient, key: str, calls: int) -> list[float]:
    headers = {"authorization": f"Bearer {key}"}
    for _ in range(50):  # warm-up: the audit answer is read once, then kept
        (await client.get("/admin/ui/state", headers=headers)).raise_for_status()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = await client.get("/admin/ui/state", headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def row(label: str, times: list[float], size: int) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    cells = [label, str(len(times)), f"{size / 1024:.1f}", f"{p50:.2f}", f"{p99:.2f}"]
    return "| " + " | ".join([*cells, f"{max(ordered):.2f}"]) + " |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--traffic", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        config = config_for(args.deployments, args.tenants, Path(directory))
        app = create_app(parse_config(config, "<bench>"))
        gateway = app.state.gateway
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await traffic(client, args.tenants, args.traffic)
                fault = {"fault": "latency", "ms": 1, "target": "group:g1", "duration_s": 600}
                headers = {"authorization": "Bearer root-admin"}
                (await client.post("/admin/chaos", json=fault, headers=headers)).raise_for_status()
                await gateway.state.audit.writer.flush()
                lines = [
                    f"`GET /admin/ui/state`, {args.deployments} deployments, {args.tenants} "
                    f"tenants, {len(config['slos'])} SLOs, audit log on, in process "
                    "(httpx ASGI transport):",
                    "",
                    "| viewer | calls | answer KiB | p50 ms | p99 ms | max ms |",
                    "|---|---:|---:|---:|---:|---:|",
                ]
                for label, key in (("root admin", "root-admin"), ("team admin", "t03-admin")):
                    times = await timed(client, key, args.calls)
                    sample = await client.get(
                        "/admin/ui/state", headers={"authorization": f"Bearer {key}"}
                    )
                    lines.append(row(label, times, len(sample.content)))
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
