"""Prometheus text from `GET /metrics`, read into a snapshot that can be diffed.

Probes such as upstream amplification or breaker openings are counter deltas over a
phase: a scrape when the phase starts, one when it ends. Only the series matter
here, not the metric metadata, so a snapshot is a flat map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class MetricSnapshot:
    series: Mapping[SeriesKey, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MetricSnapshot:
        series: dict[SeriesKey, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(series)

    def total(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """Sum of the series of `name` whose labels include `labels`."""
        wanted = set((labels or {}).items())
        return sum(
            value
            for (series_name, series_labels), value in self.series.items()
            if series_name == name and wanted <= series_labels
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {
            value
            for (series_name, labels) in self.series
            if series_name == name
            for key, value in labels
            if key == label
        }


def delta(
    before: MetricSnapshot,
    after: MetricSnapshot,
    name: str,
    labels: Mapping[str, str] | None = None,
) -> float:
    """How much a counter (summed over matching series) grew between two scrapes."""
    return after.total(name, labels) - before.total(name, labels)


def deltas_by_label(
    before: MetricSnapshot, after: MetricSnapshot, name: str, label: str
) -> dict[str, float]:
    """A counter's growth per value of one label (those that grew)."""
    grown = {
        value: delta(before, after, name, {label: value})
        for value in sorted(after.label_values(name, label))
    }
    return {value: amount for value, amount in grown.items() if amount}
