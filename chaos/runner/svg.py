"""The run as a chart: success ratio, p99 latency and breaker states over time.

Hand-written SVG (no plotting dependency): three panels on one time axis, phases
marked with a line and their name, phases that injected faults tinted, and each
deployment's open (and half-open) breaker shown as a shaded band.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from chaos.runner.results import RunResult
from chaos.runner.timeline import Point

WIDTH = 960
LEFT, RIGHT, TOP = 70, 20, 64
#: Phase names sit in two alternating rows above the panels, so short phases'
#: names do not run into each other.
LABEL_ROWS = (34, 48)
PANEL_HEIGHT = 120
GAP = 30
ROW_HEIGHT = 18
FAULT_TINT = "#fdecea"
BREAKER_COLORS = {"open": "#d9534f", "half-open": "#f0ad4e"}
LINE_STYLE = "fill:none;stroke:#1f6feb;stroke-width:1.5"
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class Span:
    label: str
    start: float
    end: float


def phase_spans(points: Sequence[Point]) -> list[Span]:
    """Consecutive seconds with the same phase label, as spans of time."""
    spans: list[Span] = []
    previous_end = 0.0
    for point in points:
        if spans and spans[-1].label == point.phase:
            spans[-1] = Span(point.phase, spans[-1].start, point.t)
        else:
            spans.append(Span(point.phase, previous_end, point.t))
        previous_end = point.t
    return spans


def nice_step(span: float, target_ticks: int = 10) -> float:
    for step in NICE_STEPS:
        if span / step <= target_ticks:
            return step
    return NICE_STEPS[-1] * math.ceil(span / NICE_STEPS[-1] / target_ticks)


def _ceiling(value: float) -> float:
    """A round number at or above `value`, for an axis maximum."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


class Chart:
    def __init__(self, duration: float, deployments: Sequence[str]) -> None:
        self.duration = max(duration, 1.0)
        self.deployments = list(deployments)
        self.plot_width = WIDTH - LEFT - RIGHT
        self.success_top = TOP
        self.latency_top = self.success_top + PANEL_HEIGHT + GAP
        self.breaker_top = self.latency_top + PANEL_HEIGHT + GAP
        self.height = self.breaker_top + ROW_HEIGHT * max(1, len(self.deployments)) + 40
        self.parts: list[str] = []

    def x(self, t: float) -> float:
        return LEFT + self.plot_width * min(max(t, 0.0), self.duration) / self.duration

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(self, x: float, y: float, content: str, **attrs: str) -> None:
        extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
        self.add(f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, style: str) -> None:
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" style="{style}"/>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, opacity: float = 1) -> None:
        self.add(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{h:.1f}" '
            f'fill="{fill}" fill-opacity="{opacity:g}"/>'
        )

    def series(self, values: Iterable[tuple[float, float | None]], top: float, high: float) -> None:
        """A line through the points with values; a gap where a value is missing."""
        run: list[str] = []
        for t, value in [*values, (math.inf, None)]:
            if value is None:
                if len(run) > 1:
                    self.add(f'<polyline points="{" ".join(run)}" style="{LINE_STYLE}"/>')
                elif run:
                    cx, cy = run[0].split(",")
                    self.add(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="#1f6feb"/>')
                run = []
                continue
            y = top + PANEL_HEIGHT * (1 - min(value, high) / high)
            run.append(f"{self.x(t):.1f},{y:.1f}")

    def panel(
        self, top: float, title: str, high: float, ticks: Sequence[tuple[float, str]]
    ) -> None:
        self.text(LEFT, top - 6, title, font_weight="bold")
        for value, label in ticks:
            y = top + PANEL_HEIGHT * (1 - value / high)
            self.line(LEFT, y, LEFT + self.plot_width, y, "stroke:#ddd")
            self.text(LEFT - 6, y + 4, label, text_anchor="end")
        self.add(
            f'<rect x="{LEFT}" y="{top}" width="{self.plot_width}" height="{PANEL_HEIGHT}" '
            'fill="none" stroke="#999"/>'
        )

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{self.height}" '
            f'viewBox="0 0 {WIDTH} {self.height}" font-family="sans-serif" font-size="11">\n'
            f'<rect width="{WIDTH}" height="{self.height}" fill="white"/>\n{body}\n</svg>\n'
        )


def _phases(chart: Chart, spans: Sequence[Span], faulted: set[str]) -> None:
    bottom = chart.breaker_top + ROW_HEIGHT * max(1, len(chart.deployments))
    for number, span in enumerate(spans):
        x1, x2 = chart.x(span.start), chart.x(span.end)
        label_y = LABEL_ROWS[number % len(LABEL_ROWS)]
        if span.label in faulted:
            chart.rect(x1, label_y - 10, x2 - x1, bottom - label_y + 10, FAULT_TINT)
        chart.line(x1, label_y - 10, x1, bottom, "stroke:#888;stroke-dasharray:3,3")
        chart.text(x1 + 3, label_y, span.label, font_size="10", fill="#444")


def _breakers(chart: Chart, points: Sequence[Point]) -> None:
    chart.text(
        LEFT,
        chart.breaker_top - 8,
        "circuit breakers (red: open, orange: half-open)",
        font_weight="bold",
    )
    for row, deployment in enumerate(chart.deployments):
        y = chart.breaker_top + row * ROW_HEIGHT
        chart.text(LEFT - 6, y + 13, deployment, text_anchor="end")
        chart.line(LEFT, y + ROW_HEIGHT, LEFT + chart.plot_width, y + ROW_HEIGHT, "stroke:#eee")
        for state, start, end in breaker_runs(points, deployment):
            x1 = chart.x(start)
            chart.rect(x1, y + 2, chart.x(end) - x1, ROW_HEIGHT - 4, BREAKER_COLORS[state], 0.8)


def breaker_runs(points: Sequence[Point], deployment: str) -> list[tuple[str, float, float]]:
    """(state, start, end) for each stretch the breaker spent open or half-open; a
    point stands for the second that ends at its `t`."""
    runs: list[tuple[str, float, float]] = []
    previous = 0.0
    for point in points:
        state = (point.breakers or {}).get(deployment)
        if state in BREAKER_COLORS:
            if runs and runs[-1][0] == state and runs[-1][2] == previous:
                runs[-1] = (state, runs[-1][1], point.t)
            else:
                runs.append((state, previous, point.t))
        previous = point.t
    return runs


def _time_axis(chart: Chart) -> None:
    y = chart.breaker_top + ROW_HEIGHT * max(1, len(chart.deployments))
    step = nice_step(chart.duration)
    t = 0.0
    while t <= chart.duration + 1e-9:
        x = chart.x(t)
        chart.line(x, y, x, y + 4, "stroke:#999")
        chart.text(x, y + 16, f"{t:g}s", text_anchor="middle")
        t += step


def chart_svg(result: RunResult) -> str:
    points = result.timeline
    duration = points[-1].t if points else 1.0
    deployments = sorted({d for p in points for d in (p.breakers or {})})
    chart = Chart(duration, deployments)
    title = f"{result.experiment.name}: {result.verdict}"
    chart.text(LEFT, 16, title, font_weight="bold", font_size="13")
    faulted = {phase.name for phase in result.phases if phase.faults}
    _phases(chart, phase_spans(points), faulted)
    chart.panel(
        chart.success_top,
        "success ratio (per second)",
        1.0,
        [(0.0, "0"), (0.5, "0.5"), (0.9, "0.9"), (1.0, "1")],
    )
    chart.series(((p.t, p.success_ratio) for p in points), chart.success_top, 1.0)
    high = _ceiling(max((p.p99_ms or 0 for p in points), default=0) * 1.1)
    ticks = [(high * f, f"{high * f:g} ms") for f in (0, 0.5, 1)]
    chart.panel(chart.latency_top, "p99 latency (per second)", high, ticks)
    chart.series(((p.t, p.p99_ms) for p in points), chart.latency_top, high)
    _breakers(chart, points)
    _time_axis(chart)
    return chart.render()
