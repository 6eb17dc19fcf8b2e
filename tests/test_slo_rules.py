"""The generated SLO rules (slo/rules.py) as Prometheus runs them: `promtool check rules`
accepts the file, and `promtool test rules` replays counters of the contract metric,
`seawall_slo_events_total{slo, result}`, through it and asserts the exact alerts that
fire, and that none fires, at chosen times.

Every scenario has healthy history first (0.01% errors), so the long windows mean what
they mean in production, then the incident. Traffic is 10,000 requests a minute per
SLO, so "200 bad a minute" is 2% errors. The expected firing times follow from the
arithmetic written next to each case (the window's error ratio crossing the threshold,
then the rule's `for:`); each is checked at a time on either side of it, with margin.

The three SLOs differ in objective, and one has a 7-day period, whose thresholds are
the workbook's scaled by 7/30 (it pages at 3.36x over 1 h, not 14.4x).

A missing `promtool` fails these tests (never skips them): `make deps` installs
Debian's `prometheus`, which ships it (tests/services.py).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.config import STANDARD_ALERTS, SloConfig
from slo.rules import (
    ALERT_NAME,
    METRIC,
    prometheus_rules,
    render,
)
from tests.examples import examples

AVAILABILITY = SloConfig(name="chat-availability", kind="availability", objective=0.999)
LATENCY = SloConfig(name="chat-latency", kind="latency", objective=0.99, threshold_ms=2000)
#: Budget 0.5% over 7 days: page thresholds 3.36x (1.68% errors) and 1.4x (0.7%).
WEEKLY = SloConfig(name="batch-availability", kind="availability", objective=0.995, period_days=7)
SLOS = (AVAILABILITY, LATENCY, WEEKLY)

#: Requests a minute in every scenario, so bad a minute / 10,000 is the error ratio.
TRAFFIC = 10_000
HEALTHY = 1  # bad a minute: 0.01%
VALUE = '{{ printf "%.1f" $value }}'


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: `make deps` installs it (Debian's prometheus)",
            pytrace=False,
        )
    return found


def run_promtool(*args: str) -> None:
    """Runs promtool; its exit status is the verdict, its whole output the message."""
    proc = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(
            f"promtool {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slo-rules") / "slo-rules.yml"
    path.write_text(render(SLOS))
    return path


# -- the input series ------------------------------------------------------------------


def counter(steps: Sequence[tuple[int, int]]) -> str:
    """promtool's expanding notation for a counter from 0 that grows by `per_step` for
    `count` steps, phase after phase: [(360, 1), (60, 200)] is 0 1 2 ... 360 560 ..."""
    parts: list[str] = []
    value = 0
    for count, per_step in steps:
        if not parts:
            parts.append(f"0+{per_step}x{count}")
        elif count > 0:
            parts.append(f"{value + per_step}+{per_step}x{count - 1}")
        value += per_step * count
    return " ".join(parts)


def events(slo: SloConfig, interval_m: int, *phases: tuple[int, int]) -> list[dict[str, str]]:
    """Good and bad counters of one SLO: each phase is (minutes, bad a minute) out of
    TRAFFIC requests a minute, sampled every `interval_m` minutes."""
    assert all(m % interval_m == 0 for m, _ in phases)
    good = [(m // interval_m, (TRAFFIC - bad) * interval_m) for m, bad in phases]
    bad = [(m // interval_m, b * interval_m) for m, b in phases]
    return [
        series(slo, "good", counter(good)),
        series(slo, "bad", counter(bad)),
    ]


def series(slo: SloConfig, result: str, values: str) -> dict[str, str]:
    return {
        "series": f'{METRIC}{{slo="{slo.name}",result="{result}",instance="gw-1"}}',
        "values": values,
    }


# -- the expectations ------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One firing `SloErrorBudgetBurn`: its SLO and row, and the burn rate over the long
    window its description shows (one decimal)."""

    slo: SloConfig
    severity: str
    long_window: str
    short_window: str
    burn: str

    def expected(self) -> dict[str, Any]:
        labels = {
            "severity": self.severity,
            "slo": self.slo.name,
            "long_window": self.long_window,
            "short_window": self.short_window,
        }
        return {"exp_labels": labels, "exp_annotations": filled_annotations(labels, self.burn)}


def filled_annotations(labels: dict[str, str], burn: str) -> dict[str, str]:
    """The rule's annotations with its one template, the burn rate, filled in."""
    for group in prometheus_rules(SLOS)["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT_NAME and rule["labels"] == labels:
                text = rule["annotations"]
                assert VALUE in text["description"] and "{{" not in text["summary"]
                return {**text, "description": text["description"].replace(VALUE, burn)}
    raise AssertionError(f"no rule with labels {labels}")


def page_fast(slo: SloConfig, burn: str) -> Alert:
    return Alert(slo, "page", "1h", "5m", burn)


def page_slow(slo: SloConfig, burn: str) -> Alert:
    return Alert(slo, "page", "6h", "30m", burn)


def ticket(slo: SloConfig, burn: str) -> Alert:
    return Alert(slo, "ticket", "1d", "2h", burn)


def ticket_slow(slo: SloConfig, burn: str) -> Alert:
    return Alert(slo, "ticket", "3d", "6h", burn)


def burning(window: str, threshold: float) -> str:
    """1 when the 30-day 0.999 SLO's burn rate over the window is above the threshold."""
    return f'slo:sli_error:ratio_rate{window}{{slo="chat-availability"}} / 0.001 > bool {threshold}'


@dataclass(frozen=True)
class Case:
    """One `promtool test rules` run: the series, and at each minute the exact set of
    alerts firing (empty: none) and the values of some expressions."""

    name: str
    interval_m: int
    input_series: list[dict[str, str]]
    alerts: dict[int, list[Alert]]
    exprs: list[tuple[int, str, list[tuple[str, float]]]] = field(default_factory=list)

    def document(self, rule_file: Path) -> dict[str, Any]:
        group: dict[str, Any] = {
            "name": self.name,
            "interval": f"{self.interval_m}m",
            "input_series": self.input_series,
            "alert_rule_test": [
                {
                    "eval_time": f"{minute}m",
                    "alertname": ALERT_NAME,
                    "exp_alerts": [alert.expected() for alert in firing],
                }
                for minute, firing in self.alerts.items()
            ],
        }
        if self.exprs:
            group["promql_expr_test"] = [
                {
                    "eval_time": f"{minute}m",
                    "expr": expr,
                    "exp_samples": [{"labels": labels, "value": value} for labels, value in out],
                }
                for minute, expr, out in self.exprs
            ]
        return {
            "rule_files": [str(rule_file)],
            "evaluation_interval": f"{self.interval_m}m",
            "tests": [group],
        }


CASES = [
    # 6 h healthy, then 2% errors on the 30-day 0.999 SLO (20x) and on the 7-day 0.995
    # one (4x, above its scaled 3.36x; the unscaled 14.4x, 7.2% errors, would never
    # page). 1h window over 14.4x (1.44%) after 43.7 min of errors, + for 2m: fires at
    # 46; the weekly one's 1.68% after 50.4 min, fires at 53. The slower rows have not
    # had their long windows (6h: 0.6% after 107 min) or their holds (1x over 3d: 3h).
    Case(
        "page_fast",
        interval_m=1,
        input_series=[
            *events(AVAILABILITY, 1, (360, HEALTHY), (60, 200)),
            *events(WEEKLY, 1, (360, HEALTHY), (60, 200)),
        ],
        alerts={
            400: [],
            408: [page_fast(AVAILABILITY, "16.0")],
            418: [page_fast(AVAILABILITY, "19.3"), page_fast(WEEKLY, "3.9")],
        },
    ),
    # A day healthy, then 0.8% errors (8x: under 14.4x, over 6x), sampled every 5 min.
    # The 6h window passes 0.6% after 269 min (seen at 270), + for 15m: fires at 285.
    # The 1d window is still at 0.17% (ticket: 0.3%); 1x over 3d holds from 186 min
    # (seen at 190), so its 3h hold ends at 370.
    Case(
        "page_slow",
        interval_m=5,
        input_series=events(AVAILABILITY, 5, (1440, HEALTHY), (300, 80)),
        alerts={1440 + 260: [], 1440 + 300: [page_slow(AVAILABILITY, "6.7")]},
    ),
    # Three days healthy, then 4% errors on the 0.99 SLO (4x: over 3x, under 6x),
    # sampled every 30 min (no 5m ratio then: these alerts do not read it). The 1d
    # window passes 3% after 1079 min (seen at 1080), + for 1h: fires at 1140. The 3d
    # window passes 1% at 1072 (seen at 1080), but its 3h hold ends at 1260.
    Case(
        "ticket",
        interval_m=30,
        input_series=events(LATENCY, 30, (4320, HEALTHY), (1200, 400)),
        alerts={4320 + 1110: [], 4320 + 1200: [ticket(LATENCY, "3.3")]},
    ),
    # Three days healthy, then 1.5% errors on the 0.99 SLO (1.5x: under 3x, over 1x),
    # every 30 min. The 3d window passes 1% after 2871 min (seen at 2880), + for 3h:
    # fires at 3060.
    Case(
        "ticket_slow",
        interval_m=30,
        input_series=events(LATENCY, 30, (4320, HEALTHY), (3120, 150)),
        alerts={4320 + 3000: [], 4320 + 3120: [ticket_slow(LATENCY, "1.1")]},
    ),
    # 0.01% errors for 2 hours on every SLO (the weekly one has no `bad` series at all,
    # as before its first failure): nothing fires, ever; a SLO without bad events reads
    # 0, not nothing, and the budget left is what was not spent.
    Case(
        "healthy",
        interval_m=1,
        input_series=[
            *events(AVAILABILITY, 1, (120, HEALTHY)),
            *events(LATENCY, 1, (120, HEALTHY)),
            series(WEEKLY, "good", counter([(120, TRAFFIC)])),
        ],
        alerts={minute: [] for minute in (2, 5, 30, 60, 120)},
        exprs=[
            (
                120,
                'slo:sli_error:ratio_rate5m{slo="batch-availability"}',
                [('slo:sli_error:ratio_rate5m{slo="batch-availability"}', 0)],
            ),
            (
                120,
                "round(slo:error_budget:remaining, 0.0001)",
                [
                    ('{slo="chat-availability"}', 0.9),
                    ('{slo="chat-latency"}', 0.99),
                    ('{slo="batch-availability"}', 1),
                ],
            ),
        ],
    ),
    # 6 h healthy, then 2 minutes of 15% errors, then healthy again: the short windows
    # trip (5m: 6% at the spike's end, over 14.4x; 30m: 1%, over 6x) but their long
    # windows do not (1h: 0.51%, under 1.44%; 6h: 0.093%, under 0.6% and even under the
    # ticket's 0.1%; 2h: 0.26%, under 0.3%): nothing pages, nothing tickets.
    Case(
        "spike",
        interval_m=1,
        input_series=events(AVAILABILITY, 1, (360, HEALTHY), (2, 1500), (118, HEALTHY)),
        alerts={minute: [] for minute in (362, 364, 380, 420, 480)},
        exprs=[
            (362, burning("5m", 14.4), [('{slo="chat-availability"}', 1)]),
            (362, burning("1h", 14.4), [('{slo="chat-availability"}', 0)]),
            (362, burning("30m", 6), [('{slo="chat-availability"}', 1)]),
            (362, burning("6h", 6), [('{slo="chat-availability"}', 0)]),
        ],
    ),
    # Counters that do not move (earlier failures included): no traffic, no ratio, no
    # budget figure, no alert; never a NaN that fires. The config series still exist.
    Case(
        "no_traffic",
        interval_m=1,
        input_series=[
            s
            for slo in SLOS
            for s in (series(slo, "good", "9000+0x60"), series(slo, "bad", "1000+0x60"))
        ],
        alerts={minute: [] for minute in (5, 30, 60)},
        exprs=[
            (60, "slo:sli_error:ratio_rate5m", []),
            (60, "slo:sli_error:ratio_rate30d", []),
            (60, "slo:error_budget:remaining", []),
            (
                60,
                "slo:objective:ratio",
                [
                    ('slo:objective:ratio{slo="chat-availability"}', 0.999),
                    ('slo:objective:ratio{slo="chat-latency"}', 0.99),
                    ('slo:objective:ratio{slo="batch-availability"}', 0.995),
                ],
            ),
        ],
    ),
    # Every request bad from the start, no `good` series at all (a fresh gateway in an
    # outage), for 30 min, then no traffic: page at once (1h and 5m over 14.4x from
    # the first minute, + 2m), the slow page after its 15m hold; once traffic stops the
    # 5m window has no value and the fast page resolves; the 30m one still holds the
    # outage, so the slow page stays.
    Case(
        "outage",
        interval_m=1,
        input_series=[series(LATENCY, "bad", counter([(30, 100), (30, 0)]))],
        alerts={
            2: [],
            5: [page_fast(LATENCY, "100.0")],
            20: [page_fast(LATENCY, "100.0"), page_slow(LATENCY, "100.0")],
            40: [page_slow(LATENCY, "100.0")],
        },
    ),
]


def test_promtool_accepts_the_rule_file(rule_file: Path) -> None:
    """The rule file for the three SLOs is one Prometheus loads."""
    run_promtool("check", "rules", str(rule_file))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_promtool_unit_tests(case: Case, rule_file: Path, tmp_path: Path) -> None:
    """Each scenario is its own `promtool test rules` run: exit 0 or fail with its output."""
    tests = tmp_path / f"{case.name}.test.yml"
    tests.write_text(yaml.safe_dump(case.document(rule_file), sort_keys=False))
    run_promtool("test", "rules", str(tests))


def test_without_promtool_the_tests_fail_naming_make_deps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine without promtool must not pass these tests by skipping them."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="make deps"):
        promtool()


def test_the_yaml_is_the_document() -> None:
    """`render` is `prometheus_rules` as YAML, headed by where it comes from."""
    text = render(SLOS)
    assert text.startswith("# Generated by `seawall slo rules`")
    assert yaml.safe_load(text) == prometheus_rules(SLOS)
    assert "&id" not in text and "*id" not in text  # no YAML anchors: plain to read


# -- properties of every generated document ---------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
OBJECTIVES = st.floats(min_value=0.5, max_value=0.99999)
PERIODS = st.integers(min_value=1, max_value=90)
ANY_SLO = st.one_of(
    st.builds(
        SloConfig, name=NAMES, kind=st.just("availability"), objective=OBJECTIVES,
        period_days=PERIODS,
    ),
    st.builds(
        SloConfig, name=NAMES, kind=st.just("latency"), objective=OBJECTIVES,
        period_days=PERIODS, threshold_ms=st.floats(min_value=1, max_value=60_000),
    ),
)  # fmt: skip

#: Everything in an expression that is not a selector, a number or a range.
PROMQL_WORDS = {"sum", "by", "slo", "rate", "or", "and", "vector", "bool"}
NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[-+]?\d+)?")
WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")
BURN = re.compile(
    r'slo:sli_error:ratio_rate(\w+)\{slo="([^"]+)"\} / (\S+) > (\S+)\n'
    r"and\n"
    r'slo:sli_error:ratio_rate(\w+)\{slo="([^"]+)"\} / (\S+) > (\S+)\n'
)
LABELS = {300: "5m", 1800: "30m", 3600: "1h", 7200: "2h", 21600: "6h", 86400: "1d"}


def label(seconds: int) -> str:
    return LABELS.get(seconds) or f"{seconds // 86400}d"


@settings(max_examples=examples(200), deadline=None)
@given(slo=ANY_SLO)
def test_every_expression_reads_only_the_contract_metric(slo: SloConfig) -> None:
    """Each group is one SLO; an expression reads the contract metric of that SLO, with
    only `good`/`bad` results, or series recorded earlier in the same group, and
    nothing else (no other metric, no other SLO)."""
    (group,) = prometheus_rules([slo])["groups"]
    recorded: set[str] = set()
    for rule in group["rules"]:
        expr = rule["expr"]
        for name, matchers in SELECTOR.findall(expr):
            if name == METRIC:
                assert matchers.startswith(f'slo="{slo.name}",result')
                assert matchers.split(",", 1)[1] in {
                    'result="good"',
                    'result="bad"',
                    'result=~"good|bad"',
                }
            else:
                assert name in recorded and matchers == f'slo="{slo.name}"'
        bare = NUMBER.sub(" ", re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr))
        for word in WORD.findall(bare):
            assert word in PROMQL_WORDS or f"{word}{{" in expr, word
        assert rule["labels"]["slo"] == slo.name
        if "record" in rule:
            recorded.add(rule["record"])
    assert len(recorded) == sum("record" in rule for rule in group["rules"])  # no duplicates
    windows = {label(w) for _, _, long_s, short_s in STANDARD_ALERTS for w in (long_s, short_s)}
    period = f"{slo.period_days}d"
    assert {f"slo:sli_error:ratio_rate{w}" for w in {*windows, period}} <= recorded
    assert {"slo:error_budget:remaining", "slo:objective:ratio"} <= recorded


@settings(max_examples=examples(200), deadline=None)
@given(slo=ANY_SLO)
def test_thresholds_are_the_workbooks_scaled_to_the_period(slo: SloConfig) -> None:
    """Row by row: above 14.4/6/3/1 x period/30 x (1 - objective) error ratio over
    both of the row's windows."""
    alerts = [r for r in prometheus_rules([slo])["groups"][0]["rules"] if "alert" in r]
    assert len(alerts) == len(STANDARD_ALERTS)
    for rule, (severity, workbook, long_s, short_s) in zip(alerts, STANDARD_ALERTS, strict=True):
        assert rule["alert"] == ALERT_NAME
        assert rule["labels"] == {
            "severity": severity,
            "slo": slo.name,
            "long_window": label(long_s),
            "short_window": label(short_s),
        }
        match = BURN.fullmatch(rule["expr"])
        assert match is not None, rule["expr"]
        long_w, long_slo, long_budget, long_bound, short_w, short_slo, *short = match.groups()
        assert (long_w, short_w) == (label(long_s), label(short_s))
        assert long_slo == short_slo == slo.name
        assert [long_budget, long_bound] == short
        budget, bound = float(long_budget), float(long_bound)
        assert math.isclose(budget, 1 - slo.objective, rel_tol=1e-8)
        assert math.isclose(
            bound * budget, workbook * slo.period_days / 30 * (1 - slo.objective), rel_tol=1e-8
        )


@settings(max_examples=examples(5), deadline=None)
@given(slos=st.lists(ANY_SLO, min_size=1, max_size=4, unique_by=lambda slo: slo.name))
def test_promtool_accepts_any_config(
    slos: list[SloConfig], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whatever the names, objectives (1e-05 budgets) and periods, the file is valid."""
    path = tmp_path_factory.mktemp("any") / "rules.yml"
    path.write_text(render(slos))
    run_promtool("check", "rules", str(path))
