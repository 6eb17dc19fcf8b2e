"""What a running canary costs, in one run: the same governed gateway with and without
a config rollout in progress.

    .venv/bin/python bench/rollout_overhead.py [--seconds 5] [--rounds 3]

Starts nginx as the upstream (one worker, a fixed chat completion) and two seawall
servers of one worker each on the governed config of bench/governance.py (a 3-level
tenant tree, the key on its leaf, 20 rules including per-request attributes, memory
limits on every level). On `canary`, a candidate (the same config, its one deployment's
weight changed: no per-request work changes)
is started with `PUT /admin/config?rollout=canary&share=0.5` and kept running for the
whole run (bake_s and max_s of a day, the judge looking every second over up to
20,000 outcomes): every request is split between two runtimes, both record their
outcomes, the judge runs. In `--rounds` rounds, wrk measures each in turn (c=32
requests per second; c=1 median latency); the ratios are the medians of the
per-round ratios. The rollout is checked to be still running at the end, with the
judge's time on the event loop reported.

Needs wrk and nginx (Debian).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml
from governance import CHAT, Target, measure_rounds, print_rounds, round_ratio, wait_ok
from policy_limits import TOKEN, config
from processes import free_port, spawn
from targets import ensure_tool, nginx_argv

ADMIN_TOKEN = "sk-bench-admin"
#: The judge never decides during the run: the rollout is kept running throughout.
ROLLOUT = {"bake_s": 86_400, "max_s": 86_400, "min_samples": 1_000_000, "check_interval_s": 1}


def governed(upstream: int) -> dict[str, Any]:
    document = config(upstream, policies=True, limits="memory")
    document["keys"] = [
        *document["keys"],
        {"id": "bench-admin", "key": ADMIN_TOKEN, "roles": ["admin"]},
    ]
    document["reload"] = {"rollout": ROLLOUT}
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run at c=32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.5, help="of requests the canary serves")
    args = parser.parse_args()
    wrk = ensure_tool("wrk", "wrk")
    nginx = ensure_tool("nginx", "nginx-light")
    if wrk is None or nginx is None:
        raise SystemExit("wrk and nginx are needed (apt-get install wrk nginx-light)")
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        folder = Path(scratch)
        upstream = free_port()
        stack.enter_context(spawn("nginx", nginx_argv(nginx, folder, upstream), folder, folder))
        headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
        targets: dict[str, Target] = {}
        bases: dict[str, str] = {}
        for name in ("off", "canary"):
            port = free_port()
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(governed(upstream)))
            argv = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
                    "--port", str(port), "--log-level", "warning"]  # fmt: skip
            stack.enter_context(spawn(name, argv, folder, folder))
            bases[name] = f"http://127.0.0.1:{port}"
            targets[name] = Target(name, bases[name] + "/v1/chat/completions", CHAT, headers)
        for target in targets.values():
            wait_ok(target.url, target.body, target.headers)
        candidate = governed(upstream)
        # A new version that changes no per-request work (the only deployment's weight):
        # what is measured is the rollout itself, not a bigger rule set.
        candidate["models"][0]["deployments"][0]["weight"] = 2
        started = httpx.put(
            bases["canary"] + "/admin/config",
            params={"rollout": "canary", "share": str(args.share)},
            content=yaml.safe_dump(candidate),
            headers=admin,
            timeout=30,
        )
        assert started.status_code == 200, started.text
        measure_rounds(targets.values(), wrk, folder, args.seconds, args.rounds)
        state = httpx.get(bases["canary"] + "/admin/config/rollout", headers=admin).json()
        assert state["state"] == "running", state
        versions = {
            httpx.post(
                bases["canary"] + "/v1/chat/completions", json=CHAT, headers=headers
            ).headers["x-seawall-config-version"]
            for _ in range(40)
        }
        assert len(versions) == (2 if 0.05 < args.share < 0.95 else len(versions)), versions
    canary, off = targets["canary"], targets["off"]
    rps = round_ratio(canary, off, lambda x: x.rps)
    p50 = statistics.median(a - b for a, b in zip(canary.p50, off.p50, strict=True))
    print("| measure | this run | goal |")
    print("|---|---|---|")
    print(f"| canary on {args.share:g} running / none, c=32 RPS (governed) | {rps:.3f} "
          f"(cost {1 - rps:.1%}) "
          "| >= 0.97 |")  # fmt: skip
    print(f"| canary running - none, c=1 p50 (ms) | {p50:+.3f} | |")
    print()
    print_rounds(targets.values(), args.rounds, args.seconds)
    samples = state["samples"]
    print(
        f"\nthe rollout at the end: {state['state']}, {samples['candidate']:,} candidate and "
        f"{samples['baseline']:,} baseline samples judged; the judge looked "
        f"{state['judge']['looks']} times, {state['judge']['seconds'] * 1000:.0f} ms on the "
        "event loop in all"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
