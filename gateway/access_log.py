"""The access line: one INFO line per request, written when its last byte went out.

    2026-12-07T05:17:21.123Z INFO    seawall.access [3f9a1c0b2e-17] POST
    /v1/chat/completions 200 status=200 route=gpt/a latency_ms=12.4 tenant=acme
    key=ci-bot config_version=9c1e2f

(one line, wrapped here).

It is a completion hook (gateway/pipeline.py): it sees the final outcome, streams
included (a stream that broke after its start is a 200 with its error code). The
fields: `status`, `error` (the error code the client was given, absent on
success), `route` (every hop upstream, `x-seawall-route`), `latency_ms` (arrival to
last byte), `ttfb_ms` (a stream's first event), `tenant`, `key`, `config_version`,
and the request id in the line's prefix (`request_id` in JSON).

Guard decisions are not access lines: they are in the audit log, and at DEBUG.

Cost: the hook does nothing unless the `seawall.access` logger is enabled for INFO
(`seawall serve --no-access-log`, or a log level above info, turn it off);
measured in docs/configuration.md ("Logs").
"""

from __future__ import annotations

import logging

from common.headers import CONFIG_VERSION_HEADER, ROUTE_HEADER
from gateway.exchange import Exchange
from gateway.pipeline import CompletionHook

log = logging.getLogger("seawall.access")

_INFO = logging.INFO
_NAME = log.name


class AccessLog:
    """The completion hook that writes the access line."""

    __slots__ = ()

    async def __call__(self, exchange: Exchange) -> None:
        if not log.isEnabledFor(_INFO):
            return
        scope = exchange.request.scope
        headers = exchange.headers
        identity = exchange.identity
        fields = {
            "request_id": exchange.request_id,
            "status": exchange.status,
            "error": exchange.error_code,
            "route": headers.get(ROUTE_HEADER),
            "latency_ms": round((exchange.completed - exchange.started) * 1000, 1),
            "ttfb_ms": (
                round((exchange.first_byte - exchange.started) * 1000, 1)
                if exchange.first_byte
                else None
            ),
            "tenant": identity.tenant_id if identity is not None else None,
            "key": identity.key_id if identity is not None else None,
            "config_version": headers.get(CONFIG_VERSION_HEADER),
        }
        path = scope["path"]
        if not path.isprintable():  # a newline a client smuggled in percent-encoded
            path = path.encode("unicode_escape").decode("ascii")
        # One pre-built message, no arguments: the record factory's secret scrub
        # (common/redact.py) then checks one string; the fields are scrubbed by the
        # formatter (gateway/server/logs.py).
        # `makeRecord` and `handle` rather than `info`: no caller lookup (a stack walk
        # that would name this line anyway).
        message = f"{scope['method']} {path} {exchange.status}"
        log.handle(log.makeRecord(_NAME, _INFO, __file__, 0, message, (), None, extra=fields))


#: The hook, typed as one (the app lists it beside the metrics' bound method).
ACCESS_LOG: CompletionHook = AccessLog()
