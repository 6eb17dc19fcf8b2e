"""The SLO completion hook: each finished request counts toward every SLO it is
eligible for (slo/events.py decides good, bad or excluded).

Runs after the last byte went out, so a stream's time to first token and its real
ending are what count. Installed only when the config has SLOs.

Reads `exchange.identity`, `.group`, `.status`, `.error_code`, `.started`,
`.completed`, `.first_byte`, `.stream`, `.policy`, `.deployment`, `.colour`.
Writes nothing on the exchange.
"""

from __future__ import annotations

import time

from gateway.exchange import Exchange
from gateway.slos import SloState
from slo.events import Outcome


def outcome(exchange: Exchange, version: str) -> Outcome:
    """A finished request as the SLO machinery sees it (served by config `version`)."""
    identity = exchange.identity
    group = exchange.group
    started = exchange.started
    return Outcome(
        time=time.time(),
        model_group=group.name if group is not None else None,
        tenants=identity.chain if identity is not None else (),
        status=exchange.status,
        latency_ms=(exchange.completed - started) * 1000,
        config_version=version,
        error=exchange.error_code,
        ttft_ms=(exchange.first_byte - started) * 1000 if exchange.first_byte else None,
        stream=exchange.stream,
        policy_version=exchange.policy.version if exchange.policy is not None else None,
        deployment=exchange.deployment,
        colour=exchange.colour,
    )


class ObserveSlos:
    def __init__(self, slos: SloState, version: str) -> None:
        self.slos = slos
        self.version = version

    async def __call__(self, exchange: Exchange) -> None:
        self.slos.observe(outcome(exchange, self.version))
