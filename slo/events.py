"""What one completed request counts toward: the `Outcome` the gateway records and the
one classification every SLO consumer (windows, gate, calibration) shares.

One function decides good / bad / excluded / ineligible so the in-process budgets,
the release gate and calibration can never disagree about what a request was.

The rules, exactly (`classify`):

Eligibility (both kinds): the SLO's `model_group` is None or equals the outcome's,
and its `tenant` is None or appears in the outcome's tenant chain (a tenant's SLO
covers its whole subtree). Anything else is **ineligible**.

Availability, in this order:

1. `error == "client_closed"` (any status): **excluded**, the client left first.
2. `status >= 500`: **bad**, whatever the code: the gateway or its upstreams failed.
   This includes 503 `limit_store_unavailable` (a refusal, but the limit store failing,
   not the client), 503 `audit_unavailable`, 503 `server_shutting_down`, 500
   `internal_error` and 502/504 from upstream failures.
3. `400 <= status < 500`: **excluded**: the client caused it (bad input, auth, a policy
   denial, 429 `rate_limit_exceeded`, 499, a 408 from a client that stalled).
4. `status < 400` with an error code (a stream that started and then broke, status 200
   and `stream_interrupted`): **bad**.
5. Otherwise **good**.

Latency: only `status < 400` with no error code is eligible for a verdict (anything
else is **excluded**: failures are the availability SLO's business); **good** when
`latency_measure(outcome) <= threshold_ms`, **bad** otherwise, where the measure is
the time to first token for a stream that has one and the whole latency otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slo.config import SloConfig

Verdict = Literal["good", "bad", "excluded", "ineligible"]

#: Error codes that mean the client, not the gateway, ended the request: excluded from
#: availability at any status.
CLIENT_CAUSED_ERRORS: frozenset[str] = frozenset({"client_closed"})


@dataclass(slots=True, kw_only=True)
class Outcome:
    """One completed request, as the SLO machinery sees it.

    Keyword-only: a dozen fields of similar types are too easy to misplace by position.
    Not frozen, though nothing changes one after it is built: one is built per request
    while SLOs or a rollout count, and a frozen dataclass's `__init__` (a
    `object.__setattr__` per field) took 1.17 us against 0.48 us.
    """

    #: When the request completed, unix seconds.
    time: float
    #: The model group the request asked for; None when it never resolved to one.
    model_group: str | None
    #: The caller's tenant chain from the root, e.g. ("root", "acme", "acme-dev").
    tenants: tuple[str, ...]
    #: The status sent to the client (200 for a stream that broke after it started).
    status: int
    #: Total time to the last byte, ms.
    latency_ms: float
    #: The config version that served the request (the gate's `config_version=`).
    config_version: str
    #: The error code the client got, None for a success.
    error: str | None = None
    #: Time to the first streamed event, ms; None when not a stream or nothing came.
    ttft_ms: float | None = None
    stream: bool = False
    policy_version: str | None = None
    #: The deployment that answered (the last one tried), None when none did.
    deployment: str | None = None
    #: The rollout colour (e.g. canary) the request was routed by, None for none.
    colour: str | None = None


def latency_measure(outcome: Outcome) -> float:
    """The latency an SLO judges: TTFT for a stream that has one (a stream's length is
    the model's output, not the gateway's speed), the whole latency otherwise."""
    if outcome.stream and outcome.ttft_ms is not None:
        return outcome.ttft_ms
    return outcome.latency_ms


def eligible(slo: SloConfig, outcome: Outcome) -> bool:
    """Whether the outcome falls under the SLO's selectors (model group, tenant subtree)."""
    if slo.model_group is not None and outcome.model_group != slo.model_group:
        return False
    return slo.tenant is None or slo.tenant in outcome.tenants


def succeeded(outcome: Outcome) -> bool:
    """A complete, successful answer: the only requests whose latency means anything."""
    return outcome.status < 400 and outcome.error is None


def classify_availability(outcome: Outcome) -> Verdict:
    """Availability verdict of an eligible outcome (rules 1-5 of the module docstring)."""
    if outcome.error in CLIENT_CAUSED_ERRORS:
        return "excluded"
    if outcome.status >= 500:
        return "bad"
    if outcome.status >= 400:
        return "excluded"
    if outcome.error is not None:
        return "bad"
    return "good"


def classify_latency(outcome: Outcome, threshold_ms: float) -> Verdict:
    """Latency verdict of an eligible outcome: successes only, judged by the threshold."""
    if not succeeded(outcome):
        return "excluded"
    return "good" if latency_measure(outcome) <= threshold_ms else "bad"


def classify(slo: SloConfig, outcome: Outcome) -> Verdict:
    """What the outcome counts as for the SLO (the module docstring has the rules)."""
    if not eligible(slo, outcome):
        return "ineligible"
    if slo.kind == "availability":
        return classify_availability(outcome)
    assert slo.threshold_ms is not None  # SloConfig refuses a latency SLO without one
    return classify_latency(outcome, slo.threshold_ms)
