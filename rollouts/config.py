"""The shape of `reload.rollout:` in the gateway's config.

    reload:
      rollout:
        mode: canary            # versions from the config source start as canaries
        share: 0.1              # of requests the candidate serves
        tenants: [acme-dev]     # tenants (and their subtrees) it always serves
        min_samples: 100        # requests with a verdict the candidate needs first
        bake_s: 300             # and this long running, healthy, before promotion
        max_s: 3600             # still undecided after this long: rolled back
        check_interval_s: 1     # how often the judge looks
        objective: 0.99         # the rollout's own availability objective
        max_deviation: 0.15     # worse than the baseline by more: rolled back

The settings that judge a rollout are the *serving* version's: a candidate cannot
loosen its own gate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.config import Frozen, Identifier
from slo.gate import DEFAULT_MAX_DEVIATION, DEFAULT_MIN_SAMPLES, DEFAULT_SIGNIFICANCE_Z

RolloutMode = Literal["direct", "canary"]

#: Latencies a rollout keeps per version and per SLO judged, for the percentiles: the
#: newest (a float in a deque, ~32 bytes each, so ~1.3 MB per SLO at the default).
#: The good and bad counts are kept whole, since the rollout began.
DEFAULT_KEEP_LATENCIES = 20_000


class RolloutSettings(Frozen):
    #: How a version from the config source (file, directory, etcd) starts: `direct`
    #: serves it at once (after validation), `canary` serves it beside the current
    #: one until judged. `PUT /admin/config?rollout=canary` starts one either way.
    mode: RolloutMode = "direct"
    #: The share of requests (0-1) the candidate serves, each request drawn alone.
    share: float = Field(0.1, ge=0, le=1)
    #: Tenants whose requests (their subtree's) the candidate always serves.
    tenants: tuple[Identifier, ...] = ()
    #: Requests with a verdict (good + bad) each side needs before the gate decides
    #: on a deviation from the baseline, and the candidate needs before promotion.
    min_samples: int = Field(DEFAULT_MIN_SAMPLES, ge=1, le=1_000_000)
    #: How long the candidate must run, healthy, before it is promoted.
    bake_s: float = Field(300.0, ge=0, le=7 * 86400)
    #: A rollout with no verdict after this long is rolled back (too little traffic
    #: to judge it is no reason to promote it).
    max_s: float = Field(3600.0, gt=0, le=7 * 86400)
    #: How often the judge looks: the bound on how late a decision can be.
    check_interval_s: float = Field(1.0, ge=0.05, le=60)
    #: The rollout's own availability objective over all its traffic (beside the
    #: config's SLOs), so a config without SLOs is still judged.
    objective: float = Field(0.99, gt=0, lt=1)
    #: Worse than the baseline by more than this (slo/gate.py: the burn-rate
    #: difference for availability, the p95 ratio for latency): rolled back.
    max_deviation: float = Field(DEFAULT_MAX_DEVIATION, gt=0, le=10)
    #: The one-sided z a deviation must reach to count (0: any deviation counts).
    significance_z: float = Field(DEFAULT_SIGNIFICANCE_Z, ge=0, le=10)
    #: A burn rate above this over the candidate's samples rolls it back; None: the
    #: fast page threshold (14.4x for a 30-day period).
    max_burn_rate: float | None = Field(None, gt=0)
    #: Latencies kept per version and per SLO judged (the newest), for the percentiles.
    keep_latencies: int = Field(DEFAULT_KEEP_LATENCIES, ge=100, le=1_000_000)
