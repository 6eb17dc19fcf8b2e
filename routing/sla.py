"""How a deployment's SLA record turns into its effective weight.

    effective_weight = weight x f_latency x f_ttft x f_errors

    f_latency = min(1, (target_p99 / observed_p99) ** 2)
    f_ttft    = min(1, (target_ttft / observed_ttft_p99) ** 2)
    f_errors  = min(1, (max_error_rate + 0.01) / (observed_error_rate + 0.01))

Each factor is 1 while its target is met and falls smoothly as the target is
missed: twice the p99 target quarters the weight, ten times the allowed error
rate divides it by about eight. No factor goes below `MIN_FACTOR`, so a
degraded deployment keeps a trickle of traffic that measures its recovery; the
breaker, not this, takes a deployment out entirely. Factors apply only once the
window holds `min_samples` attempts, so a few early slow calls cannot condemn a
deployment. The window slides, so the weight comes back as bad samples age out.
"""

from __future__ import annotations

from routing.config import SLA
from routing.stats import WindowSnapshot

MIN_FACTOR = 0.02
#: Added to both sides of the error ratio: keeps a 0% target meaningful and makes
#: one error in a small window count less than a trend.
ERROR_SMOOTHING = 0.01


def latency_factor(target_ms: float, observed_seconds: float | None) -> float:
    if observed_seconds is None or observed_seconds <= 0:
        return 1.0
    return min(1.0, (target_ms / 1000 / observed_seconds) ** 2)


def error_factor(max_rate: float, observed_rate: float) -> float:
    return min(1.0, (max_rate + ERROR_SMOOTHING) / (observed_rate + ERROR_SMOOTHING))


def sla_factor(sla: SLA, window: WindowSnapshot, min_samples: int) -> float:
    """The product of the SLA factors, in [MIN_FACTOR, 1]."""
    if window.attempts < min_samples:
        return 1.0
    factor = 1.0
    if sla.p99_latency_ms is not None:
        factor *= max(MIN_FACTOR, latency_factor(sla.p99_latency_ms, window.p99))
    if sla.ttft_ms is not None:
        factor *= max(MIN_FACTOR, latency_factor(sla.ttft_ms, window.ttft_p99))
    if sla.max_error_rate is not None:
        factor *= max(MIN_FACTOR, error_factor(sla.max_error_rate, window.error_rate))
    return max(MIN_FACTOR, factor)
