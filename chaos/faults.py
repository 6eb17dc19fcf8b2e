"""The fault taxonomy: every fault seawall can inject, its layer and its settings.

One table drives the header grammar, the admin API and the injection code, so a
fault name or key means the same thing everywhere. Layers say where a fault acts:

- transport: the connection or the byte stream (refused, timeouts, resets, stalls);
- http: a provider-shaped error answer instead of the real one;
- payload: a broken body (invalid JSON, truncated, wrong type, broken SSE);
- semantic: a well-formed answer that says the wrong thing (cut off, filtered, empty);
- tool: forged tool results (`forge_tool`) or forged tool calls (`forge_tool_call`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Keys every fault accepts: where it applies and when it fires.
COMMON_KEYS = ("target", "p", "seed", "after", "count")


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("not a whole number") from None


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return number


def _non_negative_int(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: str) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError("must be >= 1")
    return number


def _probability(value: str) -> float:
    number = _number(value)
    if not 0 <= number <= 1:
        raise ValueError("must be between 0 and 1")
    return number


def _seconds(value: str) -> float:
    number = _number(value)
    if not 0 <= number <= 3600:
        raise ValueError("must be between 0 and 3600")
    return number


def _status(value: str) -> int:
    number = _integer(value)
    if not 400 <= number <= 599:
        raise ValueError("must be an HTTP error status (400-599)")
    return number


def _choice(*options: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return check


def _name(value: str) -> str:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "_-.:" for c in value):
        raise ValueError("must be 1-64 letters, digits, '_', '-', '.' or ':'")
    return value


Parser = Callable[[str], Any]

#: How each key's text value is read (header values and admin JSON alike).
KEY_PARSERS: Mapping[str, Parser] = {
    "target": _name,
    "p": _probability,
    "seed": _integer,
    "after": _non_negative_int,
    "count": _positive_int,
    "ms": _non_negative_int,
    "jitter_ms": _non_negative_int,
    "after_bytes": _non_negative_int,
    "after_events": _non_negative_int,
    "status": _status,
    "retry_after": _seconds,
    "retry_after_ms": _non_negative_int,
    "style": _choice("openai", "anthropic"),
    "tool": _name,
    "mode": _choice("wrong", "invalid", "inject", "unknown_tool", "bad_args"),
}

#: Keys that are durations in milliseconds: capped by `chaos.max_latency_ms`.
DURATION_KEYS = frozenset({"ms", "jitter_ms", "retry_after_ms"})


#: Layers whose faults act on the whole gateway rather than on one request's calls
#: (the config source): only a root-scoped admin may inject them.
GATEWAY_WIDE_LAYERS = frozenset({"config"})


@dataclass(frozen=True)
class FaultKind:
    name: str
    layer: str
    keys: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] = ()

    @property
    def gateway_wide(self) -> bool:
        return self.layer in GATEWAY_WIDE_LAYERS


KINDS: Mapping[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind("latency", "transport", ("ms", "jitter_ms"), {"ms": 1000, "jitter_ms": 0}),
        FaultKind("connect_refused", "transport"),
        FaultKind("connect_timeout", "transport"),
        FaultKind("tls_error", "transport"),
        FaultKind("dns_error", "transport"),
        FaultKind("reset", "transport", ("after_bytes",), {"after_bytes": 0}),
        FaultKind("stall", "transport", ("ms",), {"ms": 30_000}),
        FaultKind("slow_ttft", "transport", ("ms",), {"ms": 5000}),
        FaultKind("slow_chunks", "transport", ("ms",), {"ms": 500}),
        FaultKind("stream_cut", "transport", ("after_events",), {"after_events": 2}),
        FaultKind(
            "http_error",
            "http",
            ("status", "retry_after", "retry_after_ms", "style"),
            {"status": 503, "style": "openai"},
        ),
        FaultKind("invalid_json", "payload"),
        FaultKind("truncated", "payload"),
        FaultKind("wrong_content_type", "payload"),
        FaultKind("sse_truncated", "payload"),
        FaultKind("sse_duplicate", "payload"),
        FaultKind("finish_length", "semantic"),
        FaultKind("finish_content_filter", "semantic"),
        FaultKind("empty_content", "semantic"),
        FaultKind("context_length", "semantic"),
        FaultKind(
            "forge_tool",
            "tool",
            ("tool", "mode"),
            {"mode": "invalid"},
            ("wrong", "invalid", "inject"),
        ),
        # The config source's change notifications (a watch event, a file-system
        # event) are dropped, as a lossy watch would: only admin-scheduled, target
        # `config`; the source's periodic resync must still converge.
        FaultKind("config_watch_drop", "config"),
        # MCP calls through /mcp only (toolservers/chaos.py): the session the call
        # came in is dropped (the client must initialize again); the call is answered
        # with the session's previous sealed result (a result for the wrong call).
        FaultKind("mcp_drop_session", "mcp"),
        FaultKind("mcp_wrong_call", "mcp"),
        FaultKind(
            "forge_tool_call",
            "tool",
            ("tool", "mode"),
            {"mode": "unknown_tool"},
            ("unknown_tool", "bad_args"),
        ),
    )
}


@dataclass(frozen=True)
class FaultSpec:
    """One fault as asked for: which, where, when, and its own settings.

    `target`: a deployment id, `group:NAME`, `tool:NAME`, or None for every
    upstream call. `p`: the chance each matching call is hit. `after`: matching
    calls to let through first. `count`: most calls to hit (`after` + `count`
    makes a burst). `seed`: makes the sequence of hits repeat exactly.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    p: float = 1.0
    seed: int | None = None
    after: int = 0
    count: int | None = None

    @property
    def kind(self) -> FaultKind:
        return KINDS[self.name]

    def param(self, key: str) -> Any:
        return self.params.get(key, self.kind.defaults.get(key))

    def describe(self) -> str:
        """The fault in header grammar, settings included."""
        parts = [self.name]
        if self.target is not None:
            parts.append(f"target={self.target}")
        if self.p != 1.0:
            parts.append(f"p={self.p!r}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.after:
            parts.append(f"after={self.after}")
        if self.count is not None:
            parts.append(f"count={self.count}")
        parts += [f"{k}={v}" for k, v in sorted(self.params.items())]
        return ";".join(parts)


class FaultError(ValueError):
    """A fault that cannot be injected as written; the message says why."""

    #: Where the fault came from, for the error's `param`: "header" (the chaos
    #: header, or an admin's body) or "color" (a traffic color's faults).
    source = "header"


def build(name: str, values: Mapping[str, str]) -> FaultSpec:
    """A `FaultSpec` from a fault name and its key=value texts, every one checked."""
    kind = KINDS.get(name)
    if kind is None:
        raise FaultError(f"unknown fault {name!r} (known: {', '.join(sorted(KINDS))})")
    common: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, text in values.items():
        if key not in COMMON_KEYS and key not in kind.keys:
            allowed = ", ".join((*COMMON_KEYS, *kind.keys))
            raise FaultError(f"{name}: unknown key {key!r} (allowed: {allowed})")
        try:
            value = KEY_PARSERS[key](text)
        except ValueError as exc:
            raise FaultError(f"{name}: {key}={text!r}: {exc}") from None
        (common if key in COMMON_KEYS else params)[key] = value
    if kind.modes and params.get("mode", kind.defaults.get("mode")) not in kind.modes:
        raise FaultError(f"{name}: mode must be one of {', '.join(kind.modes)}")
    if name == "forge_tool":
        # `tool=NAME` and `target=tool:NAME` say the same thing: keep them in step.
        target = common.get("target")
        if "tool" in params and target is None:
            common["target"] = f"tool:{params['tool']}"
        elif isinstance(target, str) and target.startswith("tool:"):
            params.setdefault("tool", target[len("tool:") :])
    return FaultSpec(name=name, params=params, **common)
