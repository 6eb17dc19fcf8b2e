"""The request's overall time limit: retries, failovers and fallbacks included."""

from __future__ import annotations

from common.headers import TIMEOUT_HEADER
from gateway.errors import GatewayError, echoed
from gateway.exchange import Exchange
from routing.router import Router


class Deadline:
    """Sets `exchange.deadline` from `routing.request_timeout_ms`, which the client
    may lower (never raise) with the `x-seawall-timeout-ms` header."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, exchange: Exchange) -> None:
        raw = exchange.request_headers.get(TIMEOUT_HEADER)
        requested: float | None = None
        if raw is not None:
            try:
                requested = float(raw)
            except ValueError:
                requested = -1.0
            if not requested > 0:  # also catches NaN
                raise GatewayError(
                    400,
                    f"Invalid {TIMEOUT_HEADER} header {echoed(raw)!r}: expected a positive number "
                    "of milliseconds.",
                    code="invalid_header",
                    param=TIMEOUT_HEADER,
                )
        exchange.deadline = self.router.deadline_for(requested)
