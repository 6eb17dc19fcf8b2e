"""`seawall slo rules|calibrate` and `seawall gate`: SLOs outside the serving process.

`slo rules` writes the Prometheus recording and alerting rules equivalent to the
in-process burn rates; `slo calibrate` proposes objectives from the audit log's
history (a patch to review, never applied); `gate` asks a running gateway's
`/admin/slo/evaluate` for a verdict and exits 0 (pass), 1 (fail) or 3
(inconclusive), which is what a CD pipeline's step needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.boot import load_served

#: Exit statuses of `seawall gate` besides the verdict's: the gateway could not answer.
EXIT_UNREACHABLE = 2


def rules(args: argparse.Namespace) -> int:
    from slo.rules import render

    config, _, _ = load_served(args.config, skip_env=True)
    if not config.slos:
        print(f"seawall slo rules: {args.config} has no slos", file=sys.stderr)
        return 2
    text = render(config.slos)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def calibrate(args: argparse.Namespace) -> int:
    from gateway.slos import history
    from slo.calibrate import calibrate as propose
    from slo.calibrate import render_patch

    config, _, _ = load_served(args.config, skip_env=True)
    if not config.slos:
        print(f"seawall slo calibrate: {args.config} has no slos", file=sys.stderr)
        return 2
    audit = config.audit
    if args.audit:
        audit = audit.model_copy(update={"directory": args.audit, "index": None})
    if not Path(audit.directory).is_dir():
        print(f"seawall slo calibrate: no audit log at {audit.directory}", file=sys.stderr)
        return 2
    now = time.time()
    # A day more than asked: the oldest day's hours start more than `days` days ago.
    outcomes = history(audit, config.slos, since=now - (args.days + 1) * 86400)
    proposals = propose(config.slos, outcomes, now, days=args.days, hours=args.hours)
    sys.stdout.write(render_patch(proposals, now))
    return 0


def gate(args: argparse.Namespace) -> int:
    import httpx

    params = {"slo": args.slo, "candidate": args.candidate, "min_samples": args.min_samples}
    if args.baseline:
        params["baseline"] = args.baseline
    if args.max_deviation is not None:
        params["max_deviation"] = args.max_deviation
    token = os.environ.get(args.key_env)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.get(
            args.url.rstrip("/") + "/admin/slo/evaluate", params=params, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"seawall gate: {args.url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if answer.status_code != 200:
        message = answer.json().get("error", {}).get("message", answer.text)
        print(f"seawall gate: {answer.status_code}: {message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    report = answer.json()
    if args.format == "json":
        print(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2))
    else:
        sys.stdout.write(report["markdown"])
    return int(report["exit_code"])


def add_slo_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    slo = command(
        commands,
        "slo",
        "SLOs: Prometheus rules, calibration from history",
        "Work with the config's SLOs outside the gateway.",
        "  seawall slo rules seawall.yaml > seawall-slo.rules.yaml\n"
        "  seawall slo calibrate seawall.yaml --days 30",
    ).add_subparsers(dest="slo_command", required=True, metavar="COMMAND")
    p = command(
        slo,
        "rules",
        "write the Prometheus recording and alerting rules of the config's SLOs",
        "The multi-window burn-rate rules (page at 14.4x over 1h and 5m, 6x over 6h and "
        "30m; ticket at 3x over 1d and 2h, 1x over 3d and 6h) over the gateway's "
        "seawall_slo_events_total counter; check them with `promtool check rules`.",
        "  seawall slo rules seawall.yaml --output seawall-slo.rules.yaml",
    )
    p.add_argument("config", help="the config file (or directory, or etcd://...)")
    p.add_argument("--output", help="write here instead of stdout")
    p.set_defaults(func=rules)
    p = command(
        slo,
        "calibrate",
        "propose SLO objectives from the audit log's history (printed, never applied)",
        "For each SLO, read the same hours of day over the last N days from the audit log, "
        "and propose the latency threshold (the 95th percentile of those hours' p99s) and "
        "the availability objective (from the observed error rates) as a YAML patch.",
        "  seawall slo calibrate seawall.yaml --days 30 --hours 1",
    )
    p.add_argument("config", help="the config file (or directory, or etcd://...)")
    p.add_argument("--audit", help="the audit log directory (default: the config's)")
    p.add_argument("--days", type=int, default=30, help="how many days back")
    p.add_argument("--hours", type=int, default=1, help="hours from now's hour, each day")
    p.set_defaults(func=calibrate)

    p = command(
        commands,
        "gate",
        "the release gate: a running gateway's verdict on a candidate (exit 0, 1 or 3)",
        "Ask a gateway's /admin/slo/evaluate whether a candidate (a config or policy "
        "version, a deployment, a tenant, a traffic colour) meets an SLO, against a "
        "baseline if given. Exit 0 pass, 1 fail, 3 inconclusive (too few samples), 2 when "
        "the gateway could not answer. The key (role auditor, metrics or admin) is read "
        "from the environment variable --key-env names.",
        "  seawall gate --url http://gw:8080 --slo chat-availability \\\n"
        "      --candidate config_version=3f2a9c --baseline config_version=91be04",
    )
    p.add_argument("--url", required=True, help="the gateway's base URL")
    p.add_argument("--slo", required=True, help="the SLO's name")
    p.add_argument("--candidate", required=True, help="KIND=VALUE")
    p.add_argument("--baseline", help="KIND=VALUE")
    p.add_argument("--min-samples", type=int, default=100)
    p.add_argument("--max-deviation", type=float)
    p.add_argument("--key-env", default="SEAWALL_KEY", help="the variable holding the key")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.set_defaults(func=gate)
