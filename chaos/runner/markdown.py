"""The markdown report: the verdict, each phase's checks (and config rollout, with
its steps), the chart, (for forged tool replies) what caught each kind of forgery
and what nothing but a receipt can, and (for tool races) how every genuine and
cheating conversation fared."""

from __future__ import annotations

from typing import Any

from chaos.runner.probes import Check, tolerance_text
from chaos.runner.results import ForgeSummary, PhaseResult, RaceSummary, RunResult
from chaos.runner.samples import PASSED, cheat_verdict
from chaos.runner.schema import is_cheat

SCHEMA_LIMIT = (
    "**A schema cannot catch a schema-valid wrong value.** A `wrong` forgery keeps the "
    "shape the output schema asks for and changes only the values (another temperature, "
    "a flipped flag), so output-schema validation passes it. It is caught only by the "
    "receipt: the HMAC the invoke proxy computed over the exact content the tool returned "
    "no longer matches. `invalid` forgeries are caught by the schema, `inject` forgeries "
    "are flagged by the injection scan (and refused when their receipt no longer matches). "
    "A receipt proves the content is what the tool returned, not that the tool told the "
    "truth: a tool endpoint that itself lies is signed as it answered."
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _checks_table(checks: list[Check]) -> list[str]:
    lines = ["| check | value | tolerance | result |", "|---|---|---|---|"]
    for check in checks:
        result = "ok" if check.ok else "**FAILED**"
        note = f" ({check.note})" if check.note else ""
        lines.append(
            f"| {_cell(check.name)} | {check.shown}{_cell(note)} | "
            f"{tolerance_text(check.min, check.max, ascii=False)} | {result} |"
        )
    return lines


def _tally(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or "none"


def _phase(phase: PhaseResult) -> list[str]:
    kind = "steady state, " if phase.steady_state else ""
    held = "held" if phase.ok else "**did not hold**"
    counts = phase.counts
    lines = [
        f"### {phase.name} ({kind}{phase.end_s - phase.start_s:.1f} s): {held}",
        "",
        "Faults: " + ("; ".join(f"`{_cell(f)}`" for f in phase.faults) or "none") + ".",
    ]
    if phase.waited_s is not None:
        lines.append(f"Waited {phase.waited_s:g} s for recovery before the phase.")
    lines += [
        "",
        *_checks_table(phase.checks),
        "",
        f"Requests {counts['requests']}, succeeded {counts['ok']}, expected to fail "
        f"{counts['expected_to_fail']}; by kind: {_tally(counts['by_kind'])}; "
        f"by status: {_tally(counts['by_status'])}; served by: "
        f"{_tally(counts['by_deployment'])}; injected: {_tally(counts['injected'])}.",
        "",
    ]
    if phase.rollout is not None:
        lines += _rollout(phase.rollout)
    return lines


def _rollout(answer: dict[str, Any]) -> list[str]:
    """A phase's rollout as `GET /admin/config/rollout` last showed it: the versions,
    the verdict, and every step, timed from its start."""
    candidate = (answer.get("candidate") or {}).get("id", "?")
    baseline = (answer.get("baseline") or {}).get("id", "?")
    samples = answer.get("samples") or {}
    verdict = answer.get("verdict") or {}
    tenants = ", ".join(answer.get("tenants") or []) or "none"
    started = float(answer.get("started_at") or 0)
    lines = [
        f"Rollout of config version `{candidate}` beside `{baseline}` (share "
        f"{answer.get('share')}, tenants {tenants}): **{answer.get('state')}**; samples "
        f"baseline {samples.get('baseline', '?')}, candidate {samples.get('candidate', '?')}; "
        f"last verdict {verdict.get('result')}.",
        "",
        "| at | step | version | reason | by |",
        "|---|---|---|---|---|",
    ]
    for step in answer.get("steps") or []:
        at = float(step.get("at") or 0) - started
        lines.append(
            f"| +{at:.2f} s | {step.get('action')} | `{step.get('version')}` | "
            f"{_cell(str(step.get('reason') or ''))} | {step.get('actor') or 'the gateway'} |"
        )
    return [*lines, ""]


#: Guard event kinds that say which check saw a forged tool result.
EVIDENCE_KINDS = ("tool_result_forged", "tool_result_invalid", "tool_result_injection")


def _phase_modes(result: RunResult) -> dict[str, set[str]]:
    """Forge modes each phase asked for, by phase name."""
    return {
        phase.name: {m for f in phase.faults if (m := f.forge_mode()) is not None}
        for phase in result.experiment.phases
    }


def _guard_counts(result: RunResult, mode: str) -> list[float]:
    """Receipt mismatches, schema violations and injection flags the gateway
    counted in the phases that forged with `mode` (every check, not just the
    first to refuse)."""
    modes = _phase_modes(result)
    phases = [p for p in result.phases if mode in modes.get(p.name, set())]
    return [sum(p.guard_events.get(kind, 0) for p in phases) for kind in EVIDENCE_KINDS]


def _forge_row(result: RunResult, summary: ForgeSummary) -> str:
    rate = "no data" if summary.rate is None else f"{summary.rate:.0%}"
    seen = " | ".join(f"{count:g}" for count in _guard_counts(result, summary.mode))
    return (
        f"| {summary.mode} | {summary.rounds} | {summary.caught} | {rate} | "
        f"{_tally(summary.caught_by)} | {seen} |"
    )


def _forged(result: RunResult) -> list[str]:
    summaries = {s.mode: s for s in result.forged}
    for modes in _phase_modes(result).values():
        for mode in sorted(modes - summaries.keys()):
            summaries[mode] = ForgeSummary(mode, 0, 0, {})
    if not summaries:
        return []
    lines = [
        "## Forged tool replies",
        "",
        'Caught = refused (400) or flagged (`x-seawall-tool-flags`); "refused by" is the '
        "check named in the refusal; the last three columns count every finding of the "
        "gateway's checks in the phases with that forge mode.",
        "",
        "| forge mode | forged rounds | caught | detection rate | refused by | "
        "receipt mismatches | schema violations | injection flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_forge_row(result, summary) for summary in summaries.values()]
    lines += ["", SCHEMA_LIMIT]
    wrong = summaries.get("wrong")
    if wrong is not None and wrong.rounds:
        receipts, schema, _ = _guard_counts(result, "wrong")
        lines += [
            "",
            f"In this run: {wrong.rounds} `wrong` results were forged; the output schema "
            f"found {schema:g} problem(s) with them, receipts flagged {receipts:g} and "
            f"{wrong.caught} were caught in all.",
        ]
    return [*lines, ""]


RECEIPT_SCOPE = (
    "**What a receipt vouches for.** A receipt binds the tool, the tool call id, the "
    "call's arguments, the content and the second it was signed, and nothing else: not "
    "the conversation, the caller or the invocation it was issued to. A result issued "
    "for another call with the same tool, id and arguments (another conversation's, or "
    "an earlier turn's when the model reuses its ids) verifies as that call's own, and "
    "the gateway checks each request alone. Cheating results that passed are those."
)


def _race_row(summary: RaceSummary) -> str:
    role = summary.kind.partition(":")[2]
    if is_cheat(summary.kind):
        served = "-"
        cheats, caught = str(summary.cheats), str(summary.caught)
        rate = "no data" if summary.rate is None else f"{summary.rate:.0%}"
    else:
        served, cheats, caught, rate = str(summary.succeeded), "-", "-", "-"
    return (
        f"| {role} | {summary.conversations} | {served} | {cheats} | {caught} | {rate} | "
        f"{_cell(_tally(summary.outcomes))} |"
    )


def _race(result: RunResult) -> list[str]:
    summaries = result.race
    if not summaries:
        return []
    lines = [
        "## Tool race",
        "",
        "Conversations with one tool, two turns each; cheats cheat on the last turn. A "
        "genuine conversation must be served cleanly (every step 2xx, nothing flagged); "
        "each cheating result must be caught: refused (400 `tool_result_forged` or "
        "`tool_result_invalid`) or flagged (`x-seawall-tool-violations`). A result the "
        "gateway did not judge (a timeout, a 5xx) counts as not caught.",
        "",
        "| kind | conversations | served cleanly | cheating results | caught | "
        "detection rate | outcomes |",
        "|---|---|---|---|---|---|---|",
        *(_race_row(summary) for summary in summaries),
    ]
    passed = {
        s.kind.partition(":")[2]: sum(
            n for entry, n in s.outcomes.items() if cheat_verdict(entry) == PASSED
        )
        for s in summaries
    }
    passed = {role: n for role, n in passed.items() if n}
    if passed:
        tally = ", ".join(f"{role} {n}" for role, n in passed.items())
        lines += [
            "",
            f"In this run {sum(passed.values())} cheating result(s) passed as genuine: {tally}.",
            "",
            RECEIPT_SCOPE,
        ]
    return [*lines, ""]


def render_markdown(result: RunResult, chart_file: str | None) -> str:
    experiment = result.experiment
    verdict = result.verdict.upper()
    lines = [f"# Chaos experiment `{experiment.name}`: {verdict}", "", f"> {experiment.title}", ""]
    if experiment.description:
        lines += [experiment.description.strip(), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| verdict | **{result.verdict}** (exit {result.exit_code}) |",
        f"| gateway | {result.url} |",
        f"| started | {result.started_at} |",
        f"| scale | {result.scale:g} |",
        f"| requests | {len(result.samples)} |",
        f"| rollback | {_cell(result.rollback)} |",
    ]
    if result.aborted:
        lines.append(f"| aborted | {_cell(result.aborted)} |")
    lines.append("")
    lines += [f"Note: {note}" for note in result.notes]
    if chart_file:
        lines += ["", f"![success ratio, p99 latency and breaker states over time]({chart_file})"]
    lines += ["", "## Phases", ""]
    for phase in result.phases:
        lines += _phase(phase)
    lines += _forged(result)
    lines += _race(result)
    return "\n".join(lines).rstrip() + "\n"
