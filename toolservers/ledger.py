"""The ledger of results served per key: which MCP results a key may show a model.

When an agent sends an MCP tool's result on to the model (a `role: tool` message,
a `function_call_output`), it almost never forwards the receipt in `_meta`: agent
frameworks keep the content and drop the rest. The ledger lets the gateway check
the content anyway: every result `/mcp` served is remembered for its key as a few
fingerprints, and a tool message is recognised when one of its fingerprints is
among them.

A fingerprint is SHA-256 over (exposed tool name, canonical arguments, one *form*
of the content), length-prefixed. The forms cover how agents turn a CallToolResult
into a tool message (read in the OpenAI Agents SDK's `MCPUtil.invoke_mcp_tool`):

- `text:` the text parts joined with a newline (one text part: its text; several
  text parts sent as a list of parts: the gateway reads them joined the same way);
- `json:` the canonical JSON of any text part, of the joined text, and of
  `structuredContent` when they parse as JSON (the Agents SDK sends
  `json.dumps(structuredContent)` with `use_structured_content`; other agents
  re-indent or re-order keys), with null-valued object members dropped;
- `json:` each non-text part's canonical JSON (the Agents SDK sends a non-text
  block as its JSON dump, nulls included).

Limits (and why):
- **Per process**: the ledger lives in the worker that served the result; a
  result served by another worker or replica is unknown here. A receipt, which
  any replica with the same keys verifies, does not have this limit (a shared
  ledger in Redis is the next step for a fleet).
- **Bounded**: `max_entries_per_key` results and `max_bytes_per_key` bytes of
  fingerprints per key (the oldest goes first); `max_keys_per_tenant` keys and
  `max_bytes_per_tenant` bytes per tenant (the tenant's least recently served key,
  or its oldest results, go first); `max_keys` keys in all, where a new key
  evicts only its own tenant's least recently served key, and a tenant with none
  to give up is not recorded (its results still carry receipts); `ttl_s`. So one
  tenant can only ever evict its own. A genuine result evicted or expired is no
  longer recognised: a false "forged", which the bounds must be sized to avoid.
- **Not bound to the model's call**: an MCP call has no tool_call_id, so a genuine
  result can be shown again (another conversation of the same key) while it is
  remembered; it is bound to the key, the tool and the arguments.
- **Normalisation**: exact text, or the same JSON value; nothing else. An agent
  that truncates, summarises or reformats text results is not recognised.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tools.receipts import canonical, canonical_arguments
from toolservers.config import LedgerSettings

#: Forms remembered per result at most (the first found).
MAX_FORMS = 8
#: What one entry costs beside its fingerprints (its record, its index slots).
ENTRY_OVERHEAD = 64
DIGEST_BYTES = 32


def drop_nulls(value: Any) -> Any:
    """`value` with null-valued object members removed, at every level."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def json_form(text: str) -> bytes | None:
    """The canonical JSON of `text` when it is JSON (and not a bare string or
    number, which equal their text anyway)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    try:
        return canonical(drop_nulls(value))
    except orjson.JSONEncodeError:
        return None


def text_parts(result: dict[str, Any]) -> list[str]:
    content = result.get("content")
    parts = content if isinstance(content, list) else ()
    return [
        part["text"]
        for part in parts
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    ]


def result_forms(result: dict[str, Any]) -> list[bytes]:
    """The forms of a CallToolResult an agent may send on to a model."""
    forms: list[bytes] = []
    texts = text_parts(result)
    if texts:
        joined = "\n".join(texts)
        forms.append(b"text:" + joined.encode())
        for text in [joined, *texts] if len(texts) > 1 else [joined]:
            found = json_form(text)
            if found is not None:
                forms.append(b"json:" + found)
    structured = result.get("structuredContent")
    if structured is not None:
        with contextlib.suppress(orjson.JSONEncodeError):
            forms.append(b"json:" + canonical(drop_nulls(structured)))
    content = result.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") != "text":
            try:
                forms.append(b"json:" + canonical(drop_nulls(part)))
            except orjson.JSONEncodeError:
                continue
    unique = list(dict.fromkeys(forms))
    return unique[:MAX_FORMS]


def message_forms(text: str) -> list[bytes]:
    """The forms of a tool message's text (its content, text parts joined)."""
    forms = [b"text:" + text.encode()]
    found = json_form(text)
    if found is not None:
        forms.append(b"json:" + found)
    return forms


def fingerprint(tool: str, arguments: bytes, form: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (tool.encode(), arguments, form):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


@dataclass(slots=True)
class _Entry:
    expires: float
    prints: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + DIGEST_BYTES * len(self.prints)


class _KeyLedger:
    __slots__ = ("bytes", "entries", "index", "key_id", "next", "tenant")

    def __init__(self, key_id: str, tenant: str) -> None:
        self.key_id = key_id
        self.tenant = tenant
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        #: fingerprint -> the newest entry holding it
        self.index: dict[bytes, int] = {}
        self.bytes = 0
        self.next = 0


class _TenantLedger:
    """A tenant's keys (least recently served first) and the bytes they hold."""

    __slots__ = ("bytes", "keys")

    def __init__(self) -> None:
        self.keys: OrderedDict[str, None] = OrderedDict()
        self.bytes = 0


class Ledger:
    def __init__(
        self, settings: LedgerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._keys: dict[str, _KeyLedger] = {}
        self._tenants: dict[str, _TenantLedger] = {}
        self.evicted = 0
        #: Results not recorded: the ledger was full and their tenant had no key to
        #: give up (a metric; such results are still recognised by their receipts).
        self.unrecorded = 0

    def record(
        self, key_id: str, tool: str, arguments: Any, result: dict[str, Any], tenant: str = ""
    ) -> None:
        """Remembers that `key_id` (of `tenant`) was served `result` for `tool` called
        with `arguments`."""
        if not self.settings.enabled:
            return
        args = canonical_arguments(arguments)
        if args is None:
            return
        prints = tuple(fingerprint(tool, args, form) for form in result_forms(result))
        if not prints:
            return
        now = self._clock()
        ledger = self._keys.get(key_id)
        if ledger is None:
            ledger = self._admit_key(key_id, tenant)
            if ledger is None:
                self.unrecorded += 1
                return
        owner = self._tenants[ledger.tenant]
        owner.keys.move_to_end(key_id)
        entry = _Entry(now + self.settings.ttl_s, prints)
        number = ledger.next
        ledger.next += 1
        ledger.entries[number] = entry
        ledger.bytes += entry.size
        owner.bytes += entry.size
        for digest in prints:
            ledger.index[digest] = number
        self._trim(ledger, now)
        # Over the tenant's bytes: its least recently served keys' oldest results go.
        while owner.bytes > self.settings.max_bytes_per_tenant:
            victim = self._keys[next(iter(owner.keys))]
            self._drop_oldest(victim)
            self.evicted += 1

    def _admit_key(self, key_id: str, tenant: str) -> _KeyLedger | None:
        """A ledger for a key not seen yet, room made within its own tenant only; None
        when the ledger is full and the tenant has no key to give up."""
        owner = self._tenants.setdefault(tenant, _TenantLedger())
        settings = self.settings
        full = len(self._keys) >= settings.max_keys
        if owner.keys and (full or len(owner.keys) >= settings.max_keys_per_tenant):
            self._forget_key(next(iter(owner.keys)))
            self.evicted += 1
        elif full:
            if not owner.keys:
                del self._tenants[tenant]
            return None
        ledger = self._keys[key_id] = _KeyLedger(key_id, tenant)
        self._tenants.setdefault(tenant, _TenantLedger()).keys[key_id] = None
        return ledger

    def _forget_key(self, key_id: str) -> None:
        ledger = self._keys.pop(key_id)
        owner = self._tenants[ledger.tenant]
        del owner.keys[key_id]
        owner.bytes -= ledger.bytes
        if not owner.keys:
            del self._tenants[ledger.tenant]

    def _trim(self, ledger: _KeyLedger, now: float) -> None:
        settings = self.settings
        while ledger.entries:
            oldest = next(iter(ledger.entries.values()))
            over = (
                len(ledger.entries) > settings.max_entries_per_key
                or ledger.bytes > settings.max_bytes_per_key
            )
            if not over and oldest.expires > now:
                return
            self._drop_oldest(ledger)
            self.evicted += over

    def _drop_oldest(self, ledger: _KeyLedger) -> None:
        number, oldest = ledger.entries.popitem(last=False)
        ledger.bytes -= oldest.size
        self._tenants[ledger.tenant].bytes -= oldest.size
        for digest in oldest.prints:
            if ledger.index.get(digest) == number:
                del ledger.index[digest]
        if not ledger.entries:
            self._forget_key(ledger.key_id)

    def recognises(self, key_id: str, tool: str, arguments: Any, forms: Iterable[bytes]) -> bool:
        """Was `key_id` served, for `tool` called with `arguments`, a result one of
        whose forms is among `forms`, within the TTL?"""
        ledger = self._keys.get(key_id)
        if ledger is None:
            return False
        args = canonical_arguments(arguments)
        if args is None:
            return False
        now = self._clock()
        for form in forms:
            number = ledger.index.get(fingerprint(tool, args, form))
            if number is not None and ledger.entries[number].expires > now:
                return True
        return False

    def served(self, key_id: str) -> int:
        """Results remembered for `key_id` (expired ones included until trimmed)."""
        ledger = self._keys.get(key_id)
        return 0 if ledger is None else len(ledger.entries)

    def size(self, key_id: str) -> int:
        ledger = self._keys.get(key_id)
        return 0 if ledger is None else ledger.bytes
