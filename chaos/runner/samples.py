"""What one request (or one tool round) of the load came to, as the client saw it.

Probes, the timeline and the abort rules all read these records and nothing else
that is per request, so what the report says about requests is exactly what an
agent talking to the gateway would have observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.runner.schema import MCP_AGENT, is_cheat

#: Faults whose failure the gateway cannot hide by design: a stream cut after its
#: first byte must end in an error event (never be spliced with another answer), and
#: a forged tool result must be refused. Requests they hit are not expected to succeed.
UNMASKABLE = frozenset({"stream_cut", "reset", "sse_truncated", "forge_tool", "forge_tool_call"})
#: Client-side failure codes (no usable HTTP answer).
SHED = "client_shed"
TIMEOUT = "client_timeout"
TRANSPORT = "client_transport_error"
#: A 2xx answer that carried `x-seawall-tool-violations` (warn mode): served, but
#: not cleanly; for an honest tool result, a false positive.
FLAGGED_CODE = "tool_violations_flagged"

#: How one cheating tool result fared (a tool-race cheat), as `verdict[:detail]`:
#: refused with 400 `tool_result_forged`/`tool_result_invalid` (`refused:<code>`),
#: served with `x-seawall-tool-violations` (`flagged:<violation kinds>`), served as
#: if genuine (`passed`), or failed some other way, which judges nothing
#: (`failed:<code>`, e.g. a timeout).
REFUSED, FLAGGED, PASSED, FAILED = "refused", "flagged", "passed", "failed"
CHEAT_VERDICTS = (REFUSED, FLAGGED, PASSED, FAILED)
#: A genuine tool result (`mcp_agent`) the model was shown cleanly (2xx, nothing
#: flagged); any other verdict of a genuine result is one of CHEAT_VERDICTS.
SERVED = "served"


def cheat_verdict(entry: str) -> str:
    return entry.partition(":")[0]


def cheat_caught(entry: str) -> bool:
    return cheat_verdict(entry) in (REFUSED, FLAGGED)


def parse_injected(header: str | None) -> tuple[str, ...]:
    """`x-seawall-chaos-injected: fault@where, fault@where` -> its entries."""
    if not header:
        return ()
    return tuple(entry.strip() for entry in header.split(",") if entry.strip())


def fault_of(entry: str) -> str:
    return entry.partition("@")[0]


def route_hops(route: str) -> list[str]:
    """`demo/mock-fast!503 > demo/mock-slow` -> its hops."""
    return [hop.strip() for hop in route.split(">") if hop.strip()]


def hop_parts(hop: str) -> tuple[str, str]:
    """A hop's (group/deployment, outcome): outcome "" for success; notes such as
    `(hedge)` are dropped from the name."""
    name, _, outcome = hop.partition("!")
    return name.partition("(")[0].strip(), outcome.strip()


@dataclass(slots=True)
class Sample:
    kind: str
    phase: str
    #: Seconds since the run started: when it was sent and when it finished.
    sent: float
    done: float
    #: Final HTTP status; 0 when there was no HTTP answer (shed, timeout, transport).
    status: int = 0
    #: The error code: OpenAI envelope `code`, an SSE error event's code, or a
    #: client-side code (SHED, TIMEOUT, TRANSPORT); None on success.
    code: str | None = None
    ok: bool = False
    #: x-seawall-route of each model call that entered the router.
    routes: tuple[str, ...] = ()
    deployment: str | None = None
    injected: tuple[str, ...] = ()
    #: The config versions that answered it (`x-seawall-config-version`), in order,
    #: each once: a tool round's steps may straddle a rollout's versions.
    config_versions: tuple[str, ...] = ()
    #: The gateway answered `x-seawall-chaos: ignored` (this caller may not use chaos).
    chaos_ignored: bool = False
    #: Streams: an SSE error event arrived; the stream ended neither with [DONE] nor
    #: with an error event, or mixed two answers (silently broken).
    stream_error: bool = False
    stream_silent_failure: bool = False
    #: Tool rounds: the forge mode the round's chaos header asked for, and what
    #: caught the forgery: "schema" (tool_result_invalid), "receipt"
    #: (tool_result_forged) or "flag" (x-seawall-tool-flags :injection:).
    forge_mode: str | None = None
    caught_by: str | None = None
    #: Tool-race conversations: one entry per cheating result sent (a swap sends
    #: two, one per conversation), each `verdict[:detail]` (CHEAT_VERDICTS).
    cheats: tuple[str, ...] = ()
    #: `mcp_agent` conversations: the verdict of each genuine result sent (SERVED
    #: or one of CHEAT_VERDICTS); their forged results are in `cheats`.
    genuine: tuple[str, ...] = ()
    faults: frozenset[str] = field(default_factory=frozenset, init=False)

    def __post_init__(self) -> None:
        self.faults = frozenset(fault_of(entry) for entry in self.injected)

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000

    @property
    def expected_ok(self) -> bool:
        """Should the gateway have served this one? Huge prompts must be refused,
        faults in UNMASKABLE must surface, and tool-race cheats are judged by their
        own probe; everything else should succeed. An `mcp_agent` conversation
        judges each of its results itself (forged ones refused, genuine ones
        served), so it should succeed whatever was injected on it."""
        if self.kind == MCP_AGENT:
            return True
        if self.kind == "huge_prompt" or is_cheat(self.kind):
            return False
        return not (self.faults & UNMASKABLE)

    @property
    def forged(self) -> bool:
        return "forge_tool" in self.faults

    @property
    def hops(self) -> int:
        return sum(len(route_hops(route)) for route in self.routes)
