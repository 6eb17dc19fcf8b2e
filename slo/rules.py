"""The Prometheus recording and alerting rules equivalent to the in-process SLO state
(`seawall slo rules CONFIG`), so a team can alert from Prometheus with the gateway's own
definitions instead of re-deriving them by hand.

Everything is computed from one metric, the contract with the gateway's exporter:
`seawall_slo_events_total{slo, result="good"|"bad"}` (excluded and ineligible requests
are not counted; replicas' and workers' series are summed here).

Recording rules, per SLO, all labelled `{slo="<name>"}` (Sloth-like names):

- `slo:sli_error:ratio_rate<W>`: bad / (good + bad) over W, for every window an alert
  reads (5m, 30m, 1h, 2h, 6h, 1d, 3d) and for the period (e.g. 30d). Without traffic
  it has no value rather than NaN (the denominator is filtered on `> 0`), so silence
  never alerts; an SLO whose `bad` series does not exist yet reads 0, not nothing
  (`or` a zeroed `good`), so it still shows as healthy.
- `slo:objective:ratio`, `slo:error_budget:ratio` (1 - objective) and
  `slo:time_period:days`: the config, for dashboards and `seawall gate`.
- `slo:error_budget:remaining`: 1 - (the period's error ratio / the error budget),
  the same as `budget_remaining` in slo/windows.py; negative once overspent.

Alerting rules: `SloErrorBudgetBurn`, one rule per row of `STANDARD_ALERTS` per SLO (the
Google SRE workbook's multiwindow, multi-burn-rate alerts), labelled `severity`
(page|ticket), `slo`, `long_window` and `short_window`. A rule fires while the burn rate
(error ratio / error budget) is above the row's threshold over both its windows: the
long window says enough budget was spent to matter, the short one that it is still
being spent, so the alert resets soon after the burn stops. The alert's value is the
burn rate over the long window.

Thresholds scale with the period: the workbook's 14.4x / 6x / 3x / 1x assume 30 days
(14.4x over 1 h spends 14.4 * 1 h / 720 h = 2% of the budget). For a period of P days
the threshold is `threshold * P / 30`, so each alert still means the same share of the
budget spent in its long window (a 7-day SLO pages at 3.36x over 1 h); slo/windows.py
(`scaled_threshold`) applies the same rule in-process. A threshold times the error
budget can reach 1 for long periods with loose objectives; such an alert cannot fire,
which is what the arithmetic says, not a bug here.

`for:` is half the short window, whole minutes (2m, 15m, 1h, 3h, like the
kubernetes-mixin's API error-budget alerts). The workbook uses none; a little hold
keeps one evaluation's blip from paging (a replica's restart, a burst landing on a
scrape boundary) at a cost the budget barely notices: 2 minutes at 14.4x spends 0.07%
of a 30-day budget. The in-process state (`GET /admin/slo`) has no hold, so it may
show a burn a few minutes before Prometheus alerts on it.

Each SLO is one rule group: Prometheus evaluates a group's rules in order at one
timestamp, so the alerts read the ratios recorded in the same evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from slo.config import STANDARD_ALERTS, SloConfig
from slo.windows import scaled_threshold, window_label

#: The one metric every expression reads (the contract with the gateway's exporter).
METRIC = "seawall_slo_events_total"
#: The name of every alerting rule; `severity`, `slo` and the windows tell them apart.
ALERT_NAME = "SloErrorBudgetBurn"
ERROR_RATIO = "slo:sli_error:ratio_rate"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
PERIOD_DAYS = "slo:time_period:days"
BUDGET_REMAINING = "slo:error_budget:remaining"

DAY_S = 86400


def number(value: float) -> str:
    """A float as PromQL reads it, without binary noise: 1 - 0.999 is `0.001`, not
    `0.0010000000000000009` (10 significant digits are far beyond any objective's)."""
    return f"{value:.10g}"


def ratio_rule(window_s: int) -> str:
    """The name of the recorded error ratio over a window (the SLO is a label)."""
    return f"{ERROR_RATIO}{window_label(window_s)}"


def windows(slo: SloConfig) -> list[int]:
    """Every window (seconds) a ratio is recorded for: the alerts' and the period."""
    alert_windows = {w for _, _, long_s, short_s in STANDARD_ALERTS for w in (long_s, short_s)}
    return sorted({*alert_windows, slo.period_days * DAY_S})


def error_ratio_expr(slo: str, window_s: int) -> str:
    """bad / (good + bad) over a window, summed over replicas; no value without traffic
    (the denominator is kept only when positive), 0 when only `good` series exist. The
    name goes into the selector as is: an `Identifier` has no quote or backslash."""
    selector = f'{METRIC}{{slo="{slo}",result="%s"}}'
    w = window_label(window_s)
    bad = f"rate({selector % 'bad'}[{w}])"
    good = f"rate({selector % 'good'}[{w}])"
    eligible = f'rate({METRIC}{{slo="{slo}",result=~"good|bad"}}[{w}])'
    return (
        f"(\n  sum by (slo) ({bad})\n  or\n  0 * sum by (slo) ({good})\n)\n"
        f"/\n(sum by (slo) ({eligible}) > 0)\n"
    )


def recording_rules(slo: SloConfig) -> list[dict[str, Any]]:
    """The ratios over every window, the config as series, and the remaining budget."""
    labels = {"slo": slo.name}
    rules: list[dict[str, Any]] = [
        {"record": ratio_rule(w), "expr": error_ratio_expr(slo.name, w), "labels": labels}
        for w in windows(slo)
    ]
    budget = number(slo.error_budget)
    period = ratio_rule(slo.period_days * DAY_S)
    rules += [
        {"record": OBJECTIVE, "expr": f"vector({number(slo.objective)})", "labels": labels},
        {"record": ERROR_BUDGET, "expr": f"vector({budget})", "labels": labels},
        {"record": PERIOD_DAYS, "expr": f"vector({slo.period_days})", "labels": labels},
        {
            "record": BUDGET_REMAINING,
            "expr": f'1 - {period}{{slo="{slo.name}"}} / {budget}',
            "labels": labels,
        },
    ]
    return rules


def hold(short_s: int) -> str:
    """An alert's `for:`: half its short window, whole minutes (module docstring)."""
    return window_label(short_s // 2 // 60 * 60)


def burn_expr(slo: SloConfig, threshold: float, long_s: int, short_s: int) -> str:
    """Both windows' burn rates above the threshold; the value is the long window's."""
    budget = number(slo.error_budget)
    bound = number(threshold)
    long_ratio = f'{ratio_rule(long_s)}{{slo="{slo.name}"}}'
    short_ratio = f'{ratio_rule(short_s)}{{slo="{slo.name}"}}'
    return f"{long_ratio} / {budget} > {bound}\nand\n{short_ratio} / {budget} > {bound}\n"


def alerting_rules(slo: SloConfig) -> list[dict[str, Any]]:
    """One `SloErrorBudgetBurn` rule per STANDARD_ALERTS row, threshold scaled to the
    SLO's period."""
    rules: list[dict[str, Any]] = []
    budget_pct = number(slo.error_budget * 100)
    for severity, workbook, long_s, short_s in STANDARD_ALERTS:
        threshold = scaled_threshold(workbook, slo.period_days)
        long_w, short_w = window_label(long_s), window_label(short_s)
        share = f"{threshold * long_s / (slo.period_days * DAY_S) * 100:.3g}"
        rules.append(
            {
                "alert": ALERT_NAME,
                "expr": burn_expr(slo, threshold, long_s, short_s),
                "for": hold(short_s),
                "labels": {
                    "severity": severity,
                    "slo": slo.name,
                    "long_window": long_w,
                    "short_window": short_w,
                },
                "annotations": {
                    "summary": (
                        f"{slo.name} is burning its error budget above {number(threshold)}x "
                        f"over {long_w} and {short_w}"
                    ),
                    "description": (
                        f'{slo.name} spent its error budget {{{{ printf "%.1f" $value }}}}x '
                        f"as fast as sustainable over the last {long_w}, and above "
                        f"{number(threshold)}x over the last {short_w} too. The budget is "
                        f"{budget_pct}% of eligible requests over {slo.period_days} days; "
                        f"at {number(threshold)}x, {long_w} spends {share}% of it."
                    ),
                },
            }
        )
    return rules


def prometheus_rules(slos: Sequence[SloConfig]) -> dict[str, Any]:
    """A Prometheus rule-file document: one group per SLO, its recording rules first."""
    return {
        "groups": [
            {"name": f"seawall-slo-{slo.name}", "rules": recording_rules(slo) + alerting_rules(slo)}
            for slo in slos
        ]
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks and no anchors, so the file
    reads like a hand-written one; a subclass, not a global representer."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by `seawall slo rules` from the gateway's `slos:` config (slo/rules.py).\n"
    "# Regenerate instead of editing: the thresholds and windows match the gateway's own.\n"
)


def render(slos: Sequence[SloConfig]) -> str:
    """The rule file as YAML, for `promtool check rules` and Prometheus's rule_files."""
    body = yaml.dump(prometheus_rules(slos), Dumper=_Dumper, sort_keys=False, width=120)
    return HEADER + body
