"""Fingerprints of MCP results: what the result ledger remembers and looks up.

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

Nothing else is normalised: an agent that truncates, summarises or reformats text
results is not recognised.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from tools.receipts import canonical, canonical_arguments

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


def result_prints(tool: str, arguments: Any, result: dict[str, Any]) -> tuple[bytes, ...]:
    """The fingerprints a served `result` is remembered by (none when the arguments
    have no canonical form)."""
    args = canonical_arguments(arguments)
    if args is None:
        return ()
    return tuple(fingerprint(tool, args, form) for form in result_forms(result))


def lookup_prints(tool: str, arguments: Any, forms: Iterable[bytes]) -> list[bytes]:
    """The fingerprints a tool message with `forms` would have been remembered by."""
    args = canonical_arguments(arguments)
    if args is None:
        return []
    return [fingerprint(tool, args, form) for form in forms]


def entry_size(prints: int) -> int:
    """What one remembered result with `prints` fingerprints counts against the
    ledger's byte bounds: its fingerprints and its bookkeeping."""
    return ENTRY_OVERHEAD + DIGEST_BYTES * prints
