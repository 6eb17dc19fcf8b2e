"""`seawall chaos run` and `seawall chaos list`, minus the gateway.

The CLI (`gateway.cli`) owns the one thing this package must not do: starting a
gateway in-process. It passes a factory for that; everything else (loading,
planning, running over HTTP, writing reports) happens here.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from chaos.runner.dryrun import plan_text
from chaos.runner.execute import run_experiment
from chaos.runner.loading import ExperimentError, load_experiment, shipped
from chaos.runner.markdown import render_markdown
from chaos.runner.results import RunResult, to_json
from chaos.runner.schema import Experiment
from chaos.runner.svg import chart_svg

EXIT_BAD_EXPERIMENT = 2
#: The bearer token for a gateway with keys (roles: user, chaos, admin).
API_KEY_VARIABLE = "SEAWALL_API_KEY"
#: Starts a gateway (the embedded default plus these config sections) and yields its
#: base URL for as long as the context is open.
GatewayFactory = Callable[[Mapping[str, Any]], AbstractContextManager[str]]
#: In an experiment's `gateway` sections, a stdio MCP server's `command` that means
#: the Python seawall runs on (where seawall's own modules, chaos/demo_mcp.py, are).
PYTHON = "{python}"


def embedded_sections(experiment: Experiment) -> dict[str, Any]:
    """The experiment's `gateway` sections, ready for the embedded gateway."""
    sections = copy.deepcopy(experiment.gateway)
    mcp = sections.get("mcp")
    servers = mcp.get("servers") if isinstance(mcp, dict) else None
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, dict) and server.get("command") == PYTHON:
            server["command"] = sys.executable
    return sections


def default_report_path(name: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path.cwd() / f"{name}-{stamp}.json"


def write_reports(result: RunResult, path: Path) -> list[Path]:
    """The JSON report at `path`, the markdown and the SVG chart next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chart = path.with_suffix(".svg")
    markdown = path.with_suffix(".md")
    path.write_text(json.dumps(to_json(result), indent=2) + "\n")
    chart.write_text(chart_svg(result))
    markdown.write_text(render_markdown(result, chart.name))
    return [path, markdown, chart]


def list_experiments(out: TextIO) -> int:
    entries = shipped()
    width = max((len(e.name) for e in entries), default=0)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.title}", file=out)
    return 0


def run(
    reference: str,
    *,
    url: str | None,
    report: str | None,
    dry_run: bool,
    scale: float,
    start_gateway: GatewayFactory,
    out: TextIO,
    err: TextIO,
) -> int:
    """Exit 0: the hypothesis held throughout; 1: it did not, or the run was aborted;
    2: the experiment file is bad."""
    if not scale > 0:
        print(f"--scale must be above 0, not {scale:g}", file=err)
        return EXIT_BAD_EXPERIMENT
    try:
        experiment = load_experiment(reference).scaled(scale)
    except ExperimentError as exc:
        print(exc.render(), file=err)
        return EXIT_BAD_EXPERIMENT
    if dry_run:
        print(plan_text(experiment, scale), file=out)
        return 0
    gateway = nullcontext(url) if url else start_gateway(embedded_sections(experiment))
    with gateway as base:
        print(f"running {experiment.name} against {base}", file=out, flush=True)
        key = os.environ.get(API_KEY_VARIABLE) or None
        result = asyncio.run(run_experiment(experiment, base, out, reference, scale, key))
    if url and experiment.gateway:
        note = (
            f"the experiment's gateway sections ({', '.join(sorted(experiment.gateway))}) "
            "were not applied: the gateway at --url must have them"
        )
        result.notes.append(note)
        print(f"  note: {note}", file=out)
    path = Path(report) if report else default_report_path(experiment.name)
    for written in write_reports(result, path):
        print(f"wrote {written}", file=out)
    return result.exit_code
