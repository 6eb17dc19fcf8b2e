"""What the audit log and SLO accounting cost on the governed path, in one run.

    .venv/bin/python bench/audit_overhead.py [--seconds 5] [--rounds 3]

Starts nginx as the upstream (one worker, a fixed chat completion) and three seawall
servers of one worker each on the governed config of bench/governance.py (a 3-level
tenant tree, the key on its leaf, 20 rules across the chain including per-request
attributes, memory limits on every level far above the load): one with the audit
log off, one with it on (content off, fsync per batch, the default 50 ms window,
segments on this machine's disk in a temp directory), and one with two SLOs instead
(an availability and a latency SLO on the group: their accounting per request). In
`--rounds` rounds, wrk measures each in turn (c=32 requests per second; c=1 median
latency), so drift falls on all alike; the ratios are the medians of the per-round
ratios. At the end the log is verified, and its records counted.

Needs wrk and nginx (Debian).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import yaml
from governance import CHAT, Target, measure_rounds, print_rounds, round_ratio
from policy_limits import TOKEN, config
from processes import free_port, spawn
from targets import ensure_tool, nginx_argv

from audit.keys import KeyRing, generate_keypair
from audit.verify import verify


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run at c=32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = ensure_tool("wrk", "wrk")
    nginx = ensure_tool("nginx", "nginx-light")
    if wrk is None or nginx is None:
        raise SystemExit("wrk and nginx are needed (apt-get install wrk nginx-light)")
    # On disk, not tmpfs: the fsync per batch is part of the cost.
    with tempfile.TemporaryDirectory(dir=Path.home()) as scratch, ExitStack() as stack:
        folder = Path(scratch)
        upstream = free_port()
        stack.enter_context(spawn("nginx", nginx_argv(nginx, folder, upstream), folder, folder))
        private, public = folder / "audit.key", folder / "audit.pub"
        generate_keypair(private, public)
        log_dir = folder / "audit-log"
        audit = {"enabled": True, "directory": str(log_dir), "signing_key_file": str(private)}
        headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
        targets: dict[str, Target] = {}
        slos = [
            {"name": "availability", "kind": "availability", "objective": 0.999},
            {"name": "latency", "kind": "latency", "objective": 0.99, "threshold_ms": 1000},
        ]
        for name, extra in (("off", {}), ("on", {"audit": audit}), ("slos", {"slos": slos})):
            port = free_port()
            path = folder / f"{name}.yaml"
            path.write_text(
                yaml.safe_dump({**config(upstream, policies=True, limits="memory"), **extra})
            )
            argv = [sys.executable, "-m", "gateway", "serve", "--config", str(path),
                    "--port", str(port), "--log-level", "warning"]  # fmt: skip
            stack.enter_context(spawn(name, argv, folder, folder))
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            targets[name] = Target(name, url, CHAT, headers)
        measure_rounds(targets.values(), wrk, folder, args.seconds, args.rounds)
        stack.close()  # SIGTERM: the writer closes with a final checkpoint
        report = verify(log_dir, KeyRing.from_files([public]))
        size = sum(p.stat().st_size for p in log_dir.rglob("*.jsonl"))
        lines = subprocess.run(
            ["sh", "-c", f'cat {log_dir}/*/*.jsonl | grep -c \'"kind":"request"\''],
            capture_output=True,
            text=True,
        ).stdout.strip()
    on, off, slo = targets["on"], targets["off"], targets["slos"]
    rps = round_ratio(on, off, lambda x: x.rps)
    p50 = statistics.median(a - b for a, b in zip(on.p50, off.p50, strict=True))
    slo_rps = round_ratio(slo, off, lambda x: x.rps)
    print("| measure | this run | goal |")
    print("|---|---|---|")
    print(f"| audit on / off, c=32 RPS (governed) | {rps:.3f} (cost {1 - rps:.1%}) | >= 0.95 |")
    print(f"| audit on - off, c=1 p50 (ms) | {p50:+.3f} | <= 0.03 |")
    print(f"| 2 SLOs / none, c=32 RPS (governed) | {slo_rps:.3f} | >= 0.95 |")
    print()
    print_rounds(targets.values(), args.rounds, args.seconds)
    print(
        f"\nthe log: {lines} request records, {size / 1e6:.1f} MB "
        f"({size / max(1, int(lines or 0)):.0f} bytes a record); verified: "
        f"{'ok' if report.ok else 'FAILED'}"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
