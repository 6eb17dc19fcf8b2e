"""What the router sends upstream and what comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The upstream API a request is sent to: Chat Completions, embeddings, or the
#: Responses API (a deployment with `api: responses`, passed through).
Endpoint = Literal["chat", "embeddings", "responses"]


@dataclass(slots=True)
class UpstreamRequest:
    """One client request, as the router sees it.

    `body` is the parsed client JSON; providers copy it before changing `model`, so
    retries and failovers always start from what the client sent. `extensions` are
    passed to the httpx request untouched: layers below routing (the chaos
    transport, tracing) read their per-request settings there.
    """

    endpoint: Endpoint
    body: dict[str, Any]
    stream: bool = False
    extensions: dict[str, Any] = field(default_factory=dict)
    #: When set, only these deployments may serve the request (a traffic partition,
    #: the caller's allowed deployments).
    only: frozenset[str] | None = None
    #: When set, only these groups may serve it as fallbacks (the caller's allowed
    #: model groups): a fallback the caller may not use is skipped.
    groups: frozenset[str] | None = None
    #: Whether what this request meets teaches the shared health: statistics,
    #: breakers (so SLA weights and strategies), the retry budget, hedge and fallback
    #: counts. False for a request whose failures may be staged for one caller (faults
    #: injected for one tenant): routing it still retries and fails over, but what it
    #: meets moves no other caller's traffic. Its in-flight attempts still count (they
    #: are real load).
    observed: bool = True


async def _no_close() -> None:
    return None


@dataclass(slots=True)
class Reply:
    """A successful upstream answer: a parsed JSON body, or an SSE event stream.

    For streams the first event has already arrived (the router only commits to a
    deployment once it has), and `events` yields complete SSE events only.
    """

    deployment: str
    status: int = 200
    body: bytes = b""
    data: dict[str, Any] | None = None
    events: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] = _no_close
    #: Provider response headers the client sees, by client-facing name
    #: (`common.headers.relayed_name`).
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_stream(self) -> bool:
        return self.events is not None
