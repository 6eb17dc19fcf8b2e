"""The request attributes a policy rule can read: declared once, here.

`ATTRIBUTES` is the one table the checker (names and CEL types), the evaluator
(limits, values), the gateway's attribute builder (Python types) and the docs
(`reference_table`) all read, so none of them can drift from the others.

Each list, map and string attribute has a size limit. Rule cost is bounded at
compile time by assuming every attribute at its limit (see `policies.cost`), so
the limits are part of the evaluation bound: a request whose attribute exceeds one
(an agent offering 300 tools) does not evaluate the rules that read it; those
rules fail as evaluation errors and their `on_error` decides.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter

from policies.celtypes import BOOL, INT, STRING, CelType, list_of, map_of

#: Tools a request may offer and still be checked: OpenAI's API refuses more than 128.
MAX_TOOLS = 128
#: The tenant chain: the tree is at most 16 levels below the root (`tenants.build.MAX_DEPTH`).
MAX_CHAIN = 17
#: Roles: the closed set has 6 (`tenants.roles`); room for a few more.
MAX_ROLES = 16
#: Headers a config may show to policy (`policies.headers`).
MAX_HEADERS = 32
#: Argument names of an MCP tool call that rules may read.
MAX_ARGUMENTS = 64
#: An MCP tool's annotations (the specification defines four hints).
MAX_ANNOTATIONS = 16
#: Characters in any string attribute, a header value included.
MAX_STRING = 1024
#: CEL's int is 64-bit signed; the library turns a larger Python int into uint or
#: double, which would make `prompt_tokens + 1` a type error.
INT_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    name: str
    cel_type: CelType
    #: How the gateway fills it (the `Attributes` field's type).
    python_type: str
    description: str
    #: Items of a list or entries of a map, or characters of a string.
    limit: int | None = None
    #: Different on nearly every request (an agent's prompt grows each turn): rules
    #: that read it are evaluated every time instead of cached (`policies.ruleset`).
    per_request: bool = False

    @property
    def is_list(self) -> bool:
        return self.cel_type.name == "list"


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec(
        "tenant",
        STRING,
        "str",
        'The caller\'s tenant id; "root" for a root-scoped key.',
        MAX_STRING,
    ),
    AttributeSpec(
        "tenants",
        list_of(STRING),
        "tuple[str, ...]",
        'The chain from "root" down to the caller\'s tenant.',
        MAX_CHAIN,
    ),
    AttributeSpec(
        "key",
        STRING,
        "str",
        'The caller\'s key id; "local" when no keys are configured.',
        MAX_STRING,
    ),
    AttributeSpec("roles", list_of(STRING), "tuple[str, ...]", "The caller's roles.", MAX_ROLES),
    AttributeSpec("model", STRING, "str", "The requested model group.", MAX_STRING),
    AttributeSpec("endpoint", STRING, "str", '"chat", "responses" or "embeddings".', MAX_STRING),
    AttributeSpec("prompt_tokens", INT, "int", "Estimated prompt tokens.", per_request=True),
    AttributeSpec(
        "max_tokens",
        INT,
        "int",
        "The request's max_completion_tokens / max_tokens (never both: refused) / "
        "max_output_tokens; 0 when absent.",
    ),
    AttributeSpec("stream", BOOL, "bool", "The client asked for a stream."),
    AttributeSpec(
        "tools",
        list_of(STRING),
        "tuple[str, ...]",
        "Names of the tools offered, however offered: function and custom tools, the "
        "legacy `functions`, the Responses API's tools.",
        MAX_TOOLS,
    ),
    AttributeSpec(
        "tool_results",
        BOOL,
        "bool",
        "The request carries tool results (`tool` or legacy `function` messages).",
    ),
    AttributeSpec(
        "headers",
        map_of(STRING, STRING),
        "Mapping[str, str]",
        'Every header named in `policies.headers` (lowercase names), "" when the '
        "request lacks it; no other header. One sent twice is refused (400 "
        "`repeated_header`).",
        MAX_HEADERS,
    ),
    AttributeSpec("hour", INT, "int", "Hour of the day, 0-23, UTC."),
    AttributeSpec("weekday", INT, "int", "Day of the week, 0-6, Monday 0, UTC."),
    AttributeSpec(
        "client_ip",
        STRING,
        "str",
        "The client's IP address: the peer's, or what a proxy in "
        "`server.trusted_proxies` forwarded.",
        MAX_STRING,
    ),
    AttributeSpec(
        "server",
        STRING,
        "str",
        'An MCP `tools/call`\'s server (`endpoint == "mcp"`); "" for a model request.',
        MAX_STRING,
    ),
    AttributeSpec(
        "tool",
        STRING,
        "str",
        "An MCP `tools/call`'s tool as exposed (`server__tool`, what `allow.tools` "
        'names); "" for a model request.',
        MAX_STRING,
    ),
    AttributeSpec(
        "argument_names",
        list_of(STRING),
        "tuple[str, ...]",
        "An MCP `tools/call`'s argument names, sorted; [] for a model request.",
        MAX_ARGUMENTS,
    ),
    AttributeSpec(
        "annotations",
        list_of(STRING),
        "tuple[str, ...]",
        "The annotations the called MCP tool declares true (`readOnlyHint`, "
        "`destructiveHint`, `idempotentHint`, `openWorldHint`); [] for a model request.",
        MAX_ANNOTATIONS,
    ),
)

SPECS: Mapping[str, AttributeSpec] = {spec.name: spec for spec in ATTRIBUTES}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(SPECS)
#: Attributes whose rules are never cached (see `AttributeSpec.per_request`).
PER_REQUEST = frozenset(spec.name for spec in ATTRIBUTES if spec.per_request)


@dataclass(slots=True)
class Attributes:
    """One request's attributes, filled by the gateway. Every field is required, so
    an attribute cannot be forgotten; `headers` should come from `policy_headers`.

    Not frozen, though nothing changes one after it is built: one is built per request
    on the governed path, and a frozen dataclass's `__init__` sets each of its 19
    fields through `object.__setattr__` (docs/performance.md). The decision cache keys
    on field values (`key_function`), never on the object."""

    tenant: str
    tenants: tuple[str, ...]
    key: str
    roles: tuple[str, ...]
    model: str
    endpoint: str
    prompt_tokens: int
    max_tokens: int
    stream: bool
    tools: tuple[str, ...]
    tool_results: bool
    headers: Mapping[str, str]
    hour: int
    weekday: int
    client_ip: str
    server: str
    tool: str
    argument_names: tuple[str, ...]
    annotations: tuple[str, ...]


class RepeatedHeader(ValueError):
    """A header rules may read was sent more than once."""

    def __init__(self, name: str) -> None:
        super().__init__(f"header {name!r} is sent more than once")
        self.name = name


def policy_headers(headers: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """The `headers` attribute: each allowed (lowercase) name with the request's value,
    "" when absent, so a rule can index any allowed header without a missing-key error.

    A header rules may read and the request sends twice is refused (`RepeatedHeader`):
    joined as RFC 9110 reads it (`a, b`), it would make `headers["x"] == "a"` false, and
    a caller could walk around a rule by repeating the header its condition compares."""
    wanted = dict.fromkeys(allowed, "")
    seen: set[str] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            if lowered in seen:
                raise RepeatedHeader(lowered)
            seen.add(lowered)
            wanted[lowered] = value
    return wanted


def raw_policy_headers(
    headers: Iterable[tuple[bytes, bytes]], allowed: tuple[str, ...]
) -> dict[str, str]:
    """`policy_headers` from a request's raw (ASGI) header pairs: only the allowed
    ones are decoded (decoding all of them, as a header mapping does, cost ~9 µs a
    request), in one loop over the pairs."""
    wanted = _encoded_names(allowed)
    found = dict.fromkeys(allowed, "")
    seen: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            if lowered in seen:
                raise RepeatedHeader(lowered.decode("latin-1"))
            seen.add(lowered)
            found[lowered.decode("latin-1")] = value.decode("latin-1")
    return found


@functools.lru_cache(maxsize=64)
def _encoded_names(allowed: tuple[str, ...]) -> frozenset[bytes]:
    return frozenset(name.lower().encode("latin-1") for name in allowed)


#: The weekday of the epoch's first day (1970-01-01 was a Thursday; Monday is 0).
_EPOCH_WEEKDAY = 3


def utc_hour_weekday(epoch_seconds: float) -> tuple[int, int]:
    """`hour` and `weekday` (Monday 0) for a wall-clock time in seconds since the
    epoch, in UTC: plain arithmetic, as a POSIX day is 86,400 seconds (no datetime
    built per request; a test holds it to `datetime`'s answer)."""
    seconds = math.floor(epoch_seconds)
    days, rest = divmod(seconds, 86_400)
    return rest // 3600, (days + _EPOCH_WEEKDAY) % 7


def over_limit(attributes: Attributes, name: str) -> str | None:
    """Why attribute `name` is too large to evaluate, or `None` when it is within its limit."""
    spec = SPECS[name]
    value = getattr(attributes, name)
    if spec.cel_type == INT:
        return None if value in INT_RANGE else f"{name!r} is {value}, outside CEL's int range"
    limit = spec.limit
    if limit is None:
        return None
    if name == "headers":
        if len(value) > limit:
            return f"'headers' has {len(value)} entries, over the limit of {limit}"
        longest = max((len(v) for v in value.values()), default=0)
        if longest > MAX_STRING:
            return f"a header value has {longest} characters, over the limit of {MAX_STRING}"
        return None
    if spec.is_list:
        if len(value) > limit:
            return f"{name!r} has {len(value)} items, over the limit of {limit}"
        longest = max((len(item) for item in value), default=0)
        if longest > MAX_STRING:
            return f"an item of {name!r} has {longest} characters, over the limit of {MAX_STRING}"
        return None
    if len(value) > limit:
        return f"{name!r} has {len(value)} characters, over the limit of {limit}"
    return None


def key_function(names: tuple[str, ...]) -> Callable[[Attributes], Hashable]:
    """A fast cache key: the tenant and the values of `names` (one C-level getter;
    `headers`, a mapping, as its sorted items). A list where a tuple belongs makes
    an unhashable key; `key_value` is the slow path that converts."""
    getter = attrgetter("tenant", *(name for name in names if name != "headers"))
    if "headers" not in names:
        return getter
    return lambda attrs: (getter(attrs), tuple(sorted(attrs.headers.items())))


def key_value(attributes: Attributes, name: str) -> object:
    """Attribute `name` as a hashable value for the decision cache's key."""
    value = getattr(attributes, name)
    if name == "headers":
        return tuple(sorted(value.items()))
    if SPECS[name].is_list:
        return tuple(value)
    return value


def cel_value(attributes: Attributes, name: str) -> object:
    """Attribute `name` as the CEL library takes it (a plain dict for `headers`)."""
    value = getattr(attributes, name)
    return dict(value) if name == "headers" else value


def reference_table() -> str:
    """The attribute reference as a Markdown table, for the docs."""
    lines = [
        "| attribute | CEL type | `Attributes` field | limit | meaning |",
        "|---|---|---|---|---|",
    ]
    per_request = " Rules reading it are evaluated on every request, not cached."
    for spec in ATTRIBUTES:
        if spec.cel_type == INT:
            limit = "64-bit"
        elif spec.cel_type == STRING:
            limit = f"{spec.limit} chars"
        elif spec.limit is not None:
            limit = f"{spec.limit} {'entries' if spec.name == 'headers' else 'items'}"
        else:
            limit = ""
        meaning = spec.description + (per_request if spec.per_request else "")
        lines.append(
            f"| `{spec.name}` | `{spec.cel_type}` | `{spec.python_type}` | {limit} | {meaning} |"
        )
    return "\n".join(lines)
