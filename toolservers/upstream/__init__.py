"""Connectors to upstream MCP servers: Streamable HTTP (`http.py`) and supervised
stdio child processes (`stdio.py`), behind one `Upstream` per server (`server.py`:
breaker, deadlines, safe retries, paginated lists)."""

from toolservers.upstream.base import (
    ProtocolViolation,
    RemoteError,
    ServerDown,
    ServerTimeout,
    UpstreamError,
)
from toolservers.upstream.server import Upstream, connect

__all__ = [
    "ProtocolViolation",
    "RemoteError",
    "ServerDown",
    "ServerTimeout",
    "Upstream",
    "UpstreamError",
    "connect",
]
