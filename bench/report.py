"""The benchmark's results: their shape, the markdown table and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen import WrkResult
from upstream import STREAM_EVENTS

OK, FAILED, NOT_RUN = "ok", "FAILED", "not run"
NON_STREAM, STREAM = "non-stream", "stream"
KINDS = (NON_STREAM, STREAM)
CONCURRENCIES = (1, 32)
BASELINE = "direct"
#: The target every other one is compared with, cell by cell, in the ratios table.
SUBJECT = "seawall"


@dataclass(frozen=True)
class Cell:
    """One wrk measurement, and the CPU used meanwhile by each party on the machine.

    CPU is in % of one core: it shows which process was the bottleneck of a cell, and
    `other_cpu_pct` how much unrelated work on the machine competed with it.
    """

    wrk: WrkResult
    cpu_pct: float
    upstream_cpu_pct: float
    wrk_cpu_pct: float
    other_cpu_pct: float


@dataclass
class Phase:
    """One target serving one kind of request, from one fresh server process."""

    kind: str
    upstream: str
    status: str = OK
    reason: str | None = None
    correctness: str | None = None
    ready_s: float | None = None
    rss_mb: float | None = None
    cells: dict[int, Cell] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.status, self.reason = FAILED, reason


@dataclass
class TargetResult:
    name: str
    phases: list[Phase]

    def phase(self, kind: str) -> Phase:
        return next(p for p in self.phases if p.kind == kind)


@dataclass
class Report:
    stamp: str
    started_utc: str
    wall_s: float
    settings: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, Any]
    targets: list[TargetResult]

    def rows(self) -> list[dict[str, Any]]:
        """One row per target x scenario; `added_p50_ms` is relative to `direct`'s same cell."""
        baseline = next((t for t in self.targets if t.name == BASELINE), None)
        return [
            _row(target.name, phase, concurrency, baseline)
            for target in self.targets
            for phase in target.phases
            for concurrency in CONCURRENCIES
        ]

    def ratios(self) -> list[dict[str, Any]]:
        """seawall over each other target, same scenario: RPS, p50 and p99 ratios.

        Both cells come from this one run, so the machine's drift between runs does
        not enter them. A ratio is None where either cell was not measured.
        """
        subject = next((t for t in self.targets if t.name == SUBJECT), None)
        if subject is None:
            return []
        return [
            _ratio_row(subject, other, phase.kind, concurrency)
            for other in self.targets
            if other.name != SUBJECT
            for phase in other.phases
            for concurrency in CONCURRENCIES
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "started_utc": self.started_utc,
            "wall_s": round(self.wall_s, 1),
            "settings": self.settings,
            "machine": self.machine,
            "versions": self.versions,
            "rows": self.rows(),
            "ratios": self.ratios(),
            "targets": [
                {
                    "name": t.name,
                    "phases": [
                        {**asdict(p), "cells": {str(c): _cell_json(r) for c, r in p.cells.items()}}
                        for p in t.phases
                    ],
                }
                for t in self.targets
            ],
        }


def _cell_json(cell: Cell) -> dict[str, Any]:
    return {
        **asdict(cell.wrk),
        "errors": cell.wrk.errors,
        "cpu_pct": cell.cpu_pct,
        "upstream_cpu_pct": cell.upstream_cpu_pct,
        "wrk_cpu_pct": cell.wrk_cpu_pct,
        "other_cpu_pct": cell.other_cpu_pct,
    }


def _row(
    target: str, phase: Phase, concurrency: int, baseline: TargetResult | None
) -> dict[str, Any]:
    found = phase.cells.get(concurrency)
    row: dict[str, Any] = {
        "target": target,
        "scenario": f"{phase.kind} c={concurrency}",
        "status": phase.status,
        "rps": None,
        "p50_ms": None,
        "p99_ms": None,
        "added_p50_ms": None,
        "events_per_s": None,
        "errors": None,
        "error_detail": {},
        "cpu_pct": None,
        "upstream_cpu_pct": None,
        "wrk_cpu_pct": None,
        "other_cpu_pct": None,
    }
    if found is None:
        return row
    cell = found.wrk
    if cell.requests == 0:
        # A cell in which no request completed measured nothing: it is not `ok`.
        row["status"] = "no request completed"
    base = baseline.phase(phase.kind).cells.get(concurrency) if baseline else None
    row.update(
        rps=cell.rps,
        p50_ms=cell.p50_ms,
        p99_ms=cell.p99_ms,
        events_per_s=cell.rps * STREAM_EVENTS if phase.kind == STREAM else None,
        errors=cell.errors,
        error_detail=_error_detail(cell),
        cpu_pct=found.cpu_pct,
        upstream_cpu_pct=found.upstream_cpu_pct,
        wrk_cpu_pct=found.wrk_cpu_pct,
        other_cpu_pct=found.other_cpu_pct,
    )
    if target != BASELINE and base and base.wrk.p50_ms is not None and cell.p50_ms is not None:
        row["added_p50_ms"] = cell.p50_ms - base.wrk.p50_ms
    return row


def _ratio_row(
    subject: TargetResult, other: TargetResult, kind: str, concurrency: int
) -> dict[str, Any]:
    mine, theirs = subject.phase(kind), other.phase(kind)
    a, b = mine.cells.get(concurrency), theirs.cells.get(concurrency)
    row: dict[str, Any] = {
        "versus": other.name,
        "scenario": f"{kind} c={concurrency}",
        "status": mine.status if a is None else theirs.status,
        "rps_ratio": None,
        "p50_ratio": None,
        "p99_ratio": None,
    }
    if a is None or b is None:
        return row
    row.update(
        rps_ratio=_quotient(a.wrk.rps, b.wrk.rps),
        p50_ratio=_quotient(a.wrk.p50_ms, b.wrk.p50_ms),
        p99_ratio=_quotient(a.wrk.p99_ms, b.wrk.p99_ms),
    )
    return row


def _quotient(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _error_detail(cell: WrkResult) -> dict[str, int]:
    counts = {
        "connect": cell.connect_errors,
        "read": cell.read_errors,
        "write": cell.write_errors,
        "timeout": cell.timeouts,
        "non-2xx": cell.non_2xx,
    }
    return {kind: count for kind, count in counts.items() if count}


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _rps(value: float | None) -> str:
    """Whole requests, but a decimal where the rate is too low for integers to compare."""
    return _num(value, 1 if value is not None and value < 100 else 0)


def _cpu(row: dict[str, Any]) -> str:
    """`target / upstream / wrk / other`; for `direct` the target is the upstream: `—`."""
    if row["cpu_pct"] is None:
        return "—"
    upstream = "—" if row["target"] == BASELINE else f"{row['upstream_cpu_pct']:.0f}"
    return (
        f"{row['cpu_pct']:.0f} / {upstream} / {row['wrk_cpu_pct']:.0f} / {row['other_cpu_pct']:.0f}"
    )


def _errors(row: dict[str, Any]) -> str:
    if row["errors"] is None:
        return "—"
    detail = ", ".join(f"{kind} {count}" for kind, count in row["error_detail"].items())
    return f"{row['errors']} ({detail})" if detail else "0"


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return out


def render_markdown(report: Report) -> str:
    settings, machine, versions = report.settings, report.machine, report.versions
    out = [
        f"# seawall benchmark, {report.started_utc}",
        "",
        f"{machine['nproc']} cores ({machine['cpu']}), Python {machine['python']}, "
        f"seawall {versions['seawall']}, litellm {versions.get('litellm', {}).get('litellm', '—')},"
        f" Portkey gateway {versions.get('portkey', {}).get('gateway', '—')}"
        f" (Node {versions.get('portkey', {}).get('node', '—')})."
        f" wrk -t1, {settings['duration_s']} s per cell after a {settings['warmup_s']} s warm-up"
        f" at c={max(CONCURRENCIES)}; a stream is {STREAM_EVENTS} chunk events + [DONE]."
        f" Whole run: {report.wall_s:.0f} s. Machine busy just before the run (other work):"
        f" {machine['busy_pct_before_run']:.0f} % of a core.",
        "",
    ]
    out += _table(
        [
            "target",
            "scenario",
            "status",
            "RPS",
            "p50 (ms)",
            "p99 (ms)",
            "added p50 vs direct (ms)",
            "events/s",
            "errors",
            "CPU % target / upstream / wrk / other",
        ],
        [
            [
                row["target"],
                row["scenario"],
                row["status"],
                _rps(row["rps"]),
                _num(row["p50_ms"], 2),
                _num(row["p99_ms"], 2),
                _num(row["added_p50_ms"], 2),
                _num(row["events_per_s"]),
                _errors(row),
                _cpu(row),
            ]
            for row in report.rows()
        ],
    )
    out += ["", *_ratio_table(report), "", *_target_table(report.targets)]
    out += ["", *_notes(report.targets)]
    return "\n".join(out) + "\n"


def _ratio_table(report: Report) -> list[str]:
    """RPS above 1 means seawall served more; a latency ratio above 1, that it was slower."""
    lines = [
        [
            f"{SUBJECT} / {row['versus']}",
            row["scenario"],
            row["status"],
            _num(row["rps_ratio"], 2),
            _num(row["p50_ratio"], 2),
            _num(row["p99_ratio"], 2),
        ]
        for row in report.ratios()
    ]
    if not lines:
        return [f"(no ratios: {SUBJECT} was not among the targets)"]
    header = ["ratio", "scenario", "status", "RPS", "p50", "p99"]
    return _table(header, lines)


def _target_table(targets: list[TargetResult]) -> list[str]:
    lines = []
    for target in targets:
        plain, stream = target.phase(NON_STREAM), target.phase(STREAM)
        lines.append(
            [
                target.name,
                f"{plain.upstream} / {stream.upstream}",
                _num(plain.ready_s, 2),
                _num(stream.ready_s, 2),
                _num(plain.rss_mb, 1),
                _num(stream.rss_mb, 1),
            ]
        )
    return _table(
        [
            "target",
            "upstream (non-stream / stream)",
            "ready, non-stream (s)",
            "ready, stream (s)",
            "RSS after non-stream (MB)",
            "RSS after stream (MB)",
        ],
        lines,
    )


def _notes(targets: list[TargetResult]) -> list[str]:
    out = [
        "Ready = spawn to the first HTTP 200 of a real chat completion (for `direct`: the"
        " upstream, started once for the whole run). RSS = VmRSS of the server process plus"
        " all its descendants, summed, read after the phase's last cell (shared pages count"
        " once per process). CPU % = CPU time of a process tree during the cell over the"
        " cell's wall time (100 = one core, 200 = the whole machine): a target near 100 is the"
        " bottleneck; an upstream or wrk near 100 means the cell measures them, not the gateway;"
        " other = the rest of the machine's busy time (processes this run did not start, kernel"
        " threads): above a few % it skews the cell. Ratio = seawall's value over the other"
        " target's, same cell of this run: RPS above 1 means seawall served more, p50/p99"
        " above 1 that it was slower; status is the other target's (or seawall's) when a"
        " cell is missing.",
        "",
        "Correctness checks and problems:",
        "",
    ]
    for target in targets:
        if all(p.status == NOT_RUN for p in target.phases):
            out.append(f"- {target.name}: {NOT_RUN}: {target.phases[0].reason}")
            continue
        for phase in target.phases:
            detail = f"{phase.status}: {phase.reason}" if phase.reason else phase.correctness
            out.append(f"- {target.name} {phase.kind}: {detail}".replace("\n", " / "))
    return out


def write_results(report: Report, directory: Path) -> tuple[Path, Path]:
    """Write `<stamp>.json/.md` and refresh `latest.json/.md`; returns the stamped pair."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.stamp
    text_json = json.dumps(report.to_json(), indent=2) + "\n"
    text_md = render_markdown(report)
    for name in (stamp, "latest"):
        (directory / f"{name}.json").write_text(text_json)
        (directory / f"{name}.md").write_text(text_md)
    return directory / f"{stamp}.json", directory / f"{stamp}.md"
