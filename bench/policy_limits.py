"""What tenants, 20 CEL policies and limits cost a request, measured in one run.

    .venv/bin/python bench/policy_limits.py [--seconds 4] [--turns 3]

Starts `bench/upstream.py` as the upstream, a `redis-server`, the bare aiohttp relay
(`bench/floor.py`) and four seawall configs side by side: plain (one group, no keys);
`policies` (a 3-level tenant tree, a key on its leaf, 20 rules of bench/cel_libraries.py
attached across the chain, decision cache on); `+ memory limits` (that, with RPM, TPM and
concurrency limits on every level, far above the load, in process); `+ Redis limits`
(the same on Redis). Then wrk measures each in turns (c=32 for RPS, c=1 for p50), so
the machine's drift falls on all of them alike, and prints each one's median over the
turns with its ratio to plain and to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml
from cel_libraries import HEADERS, RULES
from loadgen import run_wrk, write_script
from processes import free_port, redis_server

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
BODY = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}'
TOKEN = "sk-bench-acme-search"
LIMITS = {"requests_per_minute": 10**8, "tokens_per_minute": 10**12, "max_concurrent": 10**5}


def policy_rules() -> list[dict[str, Any]]:
    """The 20 rules, as config; route rules become flags (the bench has one deployment)."""
    classes = {"night": "night", "big-answers": "tight", "batch-keys": "batch"}
    rules = []
    for rule in RULES:
        entry = {k: v for k, v in rule.items() if k not in ("py", "route")}
        if rule["tenant"] == "root":
            del entry["tenant"]
        effect = entry["effect"]
        if effect == "deny":
            entry["message"] = f"Refused by {rule['id']}."
        elif effect in ("flag", "route"):
            entry["effect"], entry["flag"] = "flag", rule["id"]
        else:
            entry["limit_class"] = classes[rule["id"]]
        rules.append(entry)
    return rules


def config(upstream: int, *, policies: bool, limits: str | None) -> dict[str, Any]:
    deployment = {
        "id": "upstream",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": f"http://127.0.0.1:{upstream}/v1",
        "api_key": "sk-bench",
    }
    document: dict[str, Any] = {"models": [{"name": "gpt-4o-mini", "deployments": [deployment]}]}
    if not policies:
        return document
    levels = {"limits": dict(LIMITS)} if limits else {}
    document["tenants"] = [
        {"id": "acme", **levels},
        {"id": "acme-search", "parent": "acme", **levels},
        {"id": "acme-search-crawler", "parent": "acme-search", **levels},
    ]
    document["keys"] = [
        {"id": "bench", "key": TOKEN, "tenant": "acme-search-crawler", "roles": ["user"], **levels}
    ]
    document["policies"] = {"rules": policy_rules(), "headers": list(HEADERS)}
    # The `night` rule (hour >= 22 || hour < 6 UTC) matches every request at night;
    # its class limits nothing, so what a request costs does not depend on the hour
    # the bench runs at (with limits, from 22:00 UTC the rules-only target paid for
    # a limited level and the limited targets for a fifth one). The other classes are
    # selected by no bench request (max_tokens > 8000, a `batch-` key).
    classes: dict[str, Any] = {name: dict(LIMITS) for name in ("tight", "batch")}
    classes["night"] = {}
    if not limits:  # policies alone: no class limits anything either
        classes = {name: {} for name in classes}
    document["limits"] = {"store": limits or "memory", "classes": classes}
    return document


def measure(url: str, connections: int, seconds: int, script: Path) -> tuple[float, float]:
    """(requests/s, p50 ms) of one wrk run; any failed or non-2xx answer stops the bench."""
    result = run_wrk("wrk", url, script, connections, seconds)
    if result.errors or result.p50_ms is None:
        raise SystemExit(f"{url}: {result.errors} errors, {result.requests} requests")
    return result.rps, result.p50_ms


def wait_ready(url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(url, content=BODY, headers=headers, timeout=5)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never answered 200")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="per wrk run")
    parser.add_argument("--turns", type=int, default=3, help="runs of each target, in turns")
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)

        def start(argv: list[str]) -> None:
            processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=BENCH.parent))

        try:
            upstream = free_port()
            start([PYTHON, str(BENCH / "upstream.py"), "--port", str(upstream)])
            redis_url = stack.enter_context(redis_server())
            floor = free_port()
            start([PYTHON, str(BENCH / "floor.py"), "--port", str(floor),
                   "--upstream", f"http://127.0.0.1:{upstream}"])  # fmt: skip
            targets = {"floor": (floor, False)}
            variants: dict[str, dict[str, Any]] = {
                "seawall plain": dict(policies=False, limits=None),
                "seawall + tenants, 20 policies": dict(policies=True, limits=None),
                "  + limits in memory": dict(policies=True, limits="memory"),
                "  + limits on Redis": dict(policies=True, limits=redis_url),
            }
            for name, options in variants.items():
                port = free_port()
                path = folder / f"{port}.yaml"
                path.write_text(yaml.safe_dump(config(upstream, **options)))
                start([PYTHON, "-m", "gateway", "serve", "--config", str(path),
                       "--port", str(port), "--log-level", "warning"])  # fmt: skip
                targets[name] = (port, bool(options["policies"]))
            scripts = {}
            for keyed in (False, True):
                scripts[keyed] = folder / f"post-{keyed}.lua"
                auth = {"authorization": f"Bearer {TOKEN}"} if keyed else {}
                write_script(scripts[keyed], BODY.encode(), auth)
            for port, keyed in targets.values():
                headers = {"content-type": "application/json"}
                if keyed:
                    headers["authorization"] = f"Bearer {TOKEN}"
                wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions", headers)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for _ in range(args.turns):
                for name, (port, keyed) in targets.items():
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    rps, _ = measure(url, 32, args.seconds, scripts[keyed])
                    _, p50 = measure(url, 1, max(2, args.seconds // 2), scripts[keyed])
                    results[name].append((rps, p50))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)
    median_rps = {name: statistics.median(r for r, _ in runs) for name, runs in results.items()}
    median_p50 = {name: statistics.median(p for _, p in runs) for name, runs in results.items()}
    plain = "seawall plain"
    print("| target | RPS c=32 | p50 ms c=1 | RPS / plain | RPS / floor | p50 - plain (ms) |")
    print("|---|---|---|---|---|---|")
    for name in targets:
        rps, p50 = median_rps[name], median_p50[name]
        print(
            f"| {name} | {rps:,.0f} | {p50:.3f} | {rps / median_rps[plain]:.2f} "
            f"| {rps / median_rps['floor']:.2f} | {p50 - median_p50[plain]:+.3f} |"
        )
    print(f"\nmedians of {args.turns} turns; wrk -t1, {args.seconds} s at c=32 per turn")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
