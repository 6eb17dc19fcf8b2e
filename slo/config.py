"""The shape of `slos:` in the gateway's config (hot-reloadable with the rest).

    slos:
      - name: chat-availability
        kind: availability        # requests not failed by the gateway or its upstreams
        objective: 0.999          # the share of good requests
        period_days: 30
        model_group: chat         # optional: only this model group's requests
        tenant: acme              # optional: only requests of this tenant's subtree
      - name: chat-latency
        kind: latency             # requests answered under a threshold
        objective: 0.99
        threshold_ms: 2000        # to the last byte; for streams, to the first event (TTFT)
        model_group: chat

What counts (slo/events.py has the one classification): a request is *eligible* for
an SLO when its model group and tenant match. For availability, it is **bad** when
the gateway or its upstreams failed it (a 5xx other than a refusal the client caused,
a stream cut by the upstream); **excluded** (neither good nor bad) when the client
caused the outcome (4xx: bad input, auth, a policy denial, a limit refusal; a client
that left); **good** otherwise. For latency, only successful requests count: good
when under the threshold (TTFT for a stream), bad otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from common.config import Frozen, Identifier

SloKind = Literal["availability", "latency"]

#: The burn-rate alert windows of Google's SRE workbook (chapter 5, "Alerting on
#: SLOs", table 5-8 and the multiwindow section): (severity, burn-rate threshold, long
#: window seconds, short window seconds). An alert fires when the burn rate over both
#: windows is above the threshold. These assume a 30-day period; for another period
#: the thresholds scale so each alert still means the same share of budget spent
#: (slo/windows.py).
STANDARD_ALERTS: tuple[tuple[str, float, int, int], ...] = (
    ("page", 14.4, 3600, 300),
    ("page", 6.0, 6 * 3600, 1800),
    ("ticket", 3.0, 86400, 2 * 3600),
    ("ticket", 1.0, 3 * 86400, 6 * 3600),
)


class SloConfig(Frozen):
    name: Identifier
    kind: SloKind
    #: The share of eligible requests that must be good, e.g. 0.999.
    objective: float = Field(gt=0, lt=1)
    period_days: int = Field(30, ge=1, le=90)
    #: Only this model group's requests; None: every group's.
    model_group: str | None = None
    #: Only requests of this tenant's subtree; None: every tenant's.
    tenant: str | None = None
    #: latency only: the bound, in ms (to the last byte; a stream's TTFT).
    threshold_ms: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _threshold_for_latency(self) -> SloConfig:
        if self.kind == "latency" and self.threshold_ms is None:
            raise ValueError("a latency SLO needs threshold_ms")
        if self.kind == "availability" and self.threshold_ms is not None:
            raise ValueError("threshold_ms applies to latency SLOs only")
        return self

    @property
    def error_budget(self) -> float:
        """The share of eligible requests that may be bad: 1 - objective (rounded to
        12 places: 1 - 0.999 is 0.0010000000000000009 in binary floating point)."""
        return round(1.0 - self.objective, 12)


#: Config changes are frozen while any SLO has consumed more than this share of its
#: budget over its period (409 `change_frozen`; `x-seawall-emergency` passes).
DEFAULT_FREEZE_AT = 0.7
