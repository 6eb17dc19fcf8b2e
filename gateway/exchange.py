"""The state of one client request as it flows through the stages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from common.chat import CHAT, Shape
from common.headers import COLOR_HEADER, CONFIG_VERSION_HEADER, REQUEST_ID_HEADER
from routing.router import Hop, ModelGroup, Routed
from tenants.identity import Identity
from tools.binding import NONE as NO_BINDINGS
from tools.binding import Bindings

#: `Exchange.error_code` of a request whose client left before its answer was sent.
CLIENT_CLOSED = "client_closed"


class RequestHeaders(Mapping[str, str]):
    """A request's headers read straight off its ASGI pairs (whose names the server
    gives in lowercase): a lookup is one scan, with no mapping built and no
    `KeyError` raised and caught for an absent header, which most of the headers
    the stages ask about are (`x-seawall-timeout-ms`, the chaos headers): ~0.3 µs
    less a lookup than Starlette's `Headers.get`. The first of repeated headers, as
    Starlette's."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str, default: Any = None) -> Any:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw:
            if key == wanted:
                return value.decode("latin-1")
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key.decode("latin-1") for key, _ in self.raw))

    def __len__(self) -> int:
        return len({key for key, _ in self.raw})


class Exchange:
    """Filled in stage by stage; each stage reads what earlier ones wrote.

    Slots instead of a dict: one of these is allocated per request on the hot path.
    """

    __slots__ = (
        "body",
        "bytes_sent",
        "chaos",
        "client_left",
        "completed",
        "deadline",
        "endpoint",
        "error_code",
        "finalizers",
        "first_byte",
        "group",
        "headers",
        "history_bytes",
        "hops",
        "identity",
        "limits",
        "observed",
        "policy",
        "prompt_count",
        "raw",
        "request",
        "request_id",
        "response",
        "responses",
        "routed",
        "shape",
        "started",
        "status",
        "stream",
        "strip_usage",
        "tool_bindings",
        "trail",
        "upstream_extensions",
        "upstream_only",
        "usage",
    )

    def __init__(self, request: Request, endpoint: str, request_id: str = "") -> None:
        self.request = request
        self.endpoint = endpoint
        self.request_id = request_id
        self.started = time.monotonic()
        #: Who is calling (`Authenticate`).
        self.identity: Identity | None = None
        self.raw = b""
        self.body: dict[str, Any] = {}
        #: How the stages read `body`: a Chat Completions body (also a translated
        #: Responses request), or a Responses body passed through (common/chat.py).
        self.shape: Shape = CHAT
        #: Bytes of stored conversation a Responses request continues
        #: (`previous_response_id`), not in `raw`: counted as prompt by policies,
        #: limits and the prompt guard (gateway/stages/responses.py).
        self.history_bytes = 0
        self.stream = False
        #: `time.monotonic()` instant the whole request must finish by.
        self.deadline: float | None = None
        self.group: ModelGroup | None = None
        self.routed: Routed | None = None
        #: Every hop of every trip upstream (`Forward`): the route header's content.
        self.hops: list[Hop] = []
        self.response: Response | None = None
        #: Headers added to the client response, error or not.
        self.headers: dict[str, str] = {REQUEST_ID_HEADER: request_id} if request_id else {}
        #: The chaos plan, when faults are in force for this request.
        self.chaos: Any = None
        #: Passed to every upstream request: extensions for the layers below
        #: routing, and the deployments this request may use (a traffic partition).
        self.upstream_extensions: dict[str, Any] | None = None
        #: The deployments this request may be routed to (None: any); only ever
        #: narrowed (`restrict`), so a later stage never undoes an earlier one's
        #: restriction (a policy's pin survives a traffic color).
        self.upstream_only: frozenset[str] | None = None
        #: Whether this request's upstream outcomes may teach the shared health
        #: (statistics, breakers, retry budget): False when faults were injected
        #: for one tenant (stages/chaos.py).
        self.observed = True
        #: The limits admission (its reservation is settled on completion).
        self.limits: Any = None
        #: The gateway asked the provider for stream usage the client did not ask for.
        self.strip_usage = False
        #: The policy decision for this request, when rules applied (stages/policy.py).
        self.policy: Any = None
        #: The prompt counted with tiktoken, by the first stage that needed the exact
        #: count, for the ones after it (a `PromptCount`, gateway/stages/guards.py):
        #: one count per request, valid while `body["messages"]` is the list it counted.
        self.prompt_count: Any = None
        #: A Responses API request being served (gateway/stages/responses.py).
        self.responses: Any = None
        #: The registered tools whose contracts bind this request (tools/binding.py).
        self.tool_bindings: Bindings = NO_BINDINGS
        #: Called with the final response, success or error, just before it is sent.
        self.finalizers: list[Callable[[Exchange, Response], None]] | None = None
        # -- the outcome, complete when the completion hooks run ------------------------
        #: The status sent (a stream that fails after its start stays 200 here).
        self.status = 0
        #: The error code the client was given, in the body or in a stream's error event
        #: (`CLIENT_CLOSED` when the client left first); None for a success.
        self.error_code: str | None = None
        self.client_left = False
        self.bytes_sent = 0
        #: The provider's reported usage (`usage` object), when it reported one.
        self.usage: dict[str, Any] | None = None
        #: `time.monotonic()` when the last byte was sent (or the response abandoned).
        self.completed = 0.0
        #: `time.monotonic()` when a stream's first event went out (0.0: not yet, or
        #: not a stream): the client's time to first token.
        self.first_byte = 0.0
        #: This request's guard events, in order, while the audit log is on (the
        #: audit stage opens it; `gateway.events.Events.emit` appends).
        self.trail: list[Any] | None = None

    @property
    def config_version(self) -> str:
        """The config version that served this request: the pipeline names it in the
        response's `x-seawall-config-version` before any stage runs."""
        return self.headers.get(CONFIG_VERSION_HEADER, "")

    @property
    def deployment(self) -> str | None:
        """The deployment that answered, else the last one tried; None when the request
        never reached the router (what audit, SLOs and the GenAI metrics name)."""
        routed = self.routed
        if routed is not None:
            return routed.reply.deployment
        return self.hops[-1].deployment if self.hops else None

    @property
    def request_headers(self) -> RequestHeaders:
        """The request's headers, for the stages to read (`RequestHeaders`)."""
        return RequestHeaders(self.request.scope["headers"])

    @property
    def colour(self) -> str | None:
        """The traffic colour the request carried, when chaos honoured it."""
        return self.request_headers.get(COLOR_HEADER) if self.chaos is not None else None

    def restrict(self, deployments: Iterable[str]) -> None:
        """Narrows the deployments this request may be routed to: the intersection
        with what earlier stages allowed, never more."""
        allowed = frozenset(deployments)
        only = self.upstream_only
        self.upstream_only = allowed if only is None else only & allowed
