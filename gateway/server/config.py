"""The `server:` section: where and how the gateway listens, and its front door.

It lives beside the front door it configures (frontdoor.py), so the server package
needs nothing above it: `gateway.config` composes it into the whole config.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, Field

from common.config import Frozen
from gateway.server.frontdoor import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS,
    FrontDoorLimits,
)

DEFAULT_HOST = "127.0.0.1"
#: Request bodies larger than this are refused with 413 before they are parsed.
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 64


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network (CIDR)") from None


#: An IP address or CIDR network, written back in its canonical form.
Network = Annotated[str, AfterValidator(_network)]


class ServerConfig(Frozen):
    host: str = DEFAULT_HOST
    port: int = Field(8080, ge=0, le=65535)
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    #: Request bodies nested deeper than this are refused with 400. At most 250:
    #: the body is re-serialized for the provider, and orjson writes at most 254 levels.
    max_json_depth: int = Field(DEFAULT_MAX_JSON_DEPTH, ge=4, le=250)
    # -- the front door (gateway/server/frontdoor.py has the why of each default) --
    #: Request line plus headers; more is a 431.
    max_header_bytes: int = Field(DEFAULT_MAX_HEADER_BYTES, ge=1024, le=1024 * 1024)
    max_headers: int = Field(DEFAULT_MAX_HEADERS, ge=8, le=1000)
    #: From a request's first byte (or the connection's opening) to its last header.
    header_timeout_s: float = Field(DEFAULT_HEADER_TIMEOUT_S, gt=0, le=300)
    #: The longest silence while a body is being received.
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, gt=0, le=300)
    keepalive_timeout_s: float = Field(DEFAULT_KEEPALIVE_TIMEOUT_S, gt=0, le=3600)
    #: Open connections per worker process.
    max_connections: int = Field(DEFAULT_MAX_CONNECTIONS, ge=1, le=1_000_000)
    #: After SIGTERM: /readyz answers 503 at once, new requests are still served this
    #: long (so a load balancer notices), then the listener closes.
    drain_s: float = Field(5.0, ge=0, le=600)
    #: Then in-flight requests get this long to finish; streams still open after it
    #: end with a `stream_interrupted` error event, other requests with a 503.
    shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    #: Relay upstream failure details (hosts, IPs, provider wording) to clients
    #: verbatim. Off: clients get the deployment id and the failure class only.
    expose_upstream_errors: bool = False
    #: Proxies in front of the gateway (IP addresses or CIDR networks) whose
    #: `X-Forwarded-For` and `X-Forwarded-Proto` are believed: the client's address
    #: (policies' `client_ip`) is then the one they forwarded. None by default: the
    #: peer's address is the client's, whatever a header says. Restart-only.
    trusted_proxies: tuple[Network, ...] = ()

    def front_door(self) -> FrontDoorLimits:
        return FrontDoorLimits(
            max_header_bytes=self.max_header_bytes,
            max_headers=self.max_headers,
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            keepalive_timeout_s=self.keepalive_timeout_s,
            max_connections=self.max_connections,
        )
