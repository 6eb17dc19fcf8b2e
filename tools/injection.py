"""Markers of prompt injection in tool results: a signal, not a defence.

Tool results are text an attacker may control (a web page, an email, a file) that
the model then reads as context. These patterns catch the common, crude attempts:
instructions aimed at the model, tokens that spoof a chat role, requests to
exfiltrate secrets, and invisible Unicode that hides text from a human reviewer.
A determined attacker can phrase around any list like this, so a match flags the
result (header, metrics, events) and never blocks it on its own.

The cheapest disguises are still seen through: the text is scanned as sent, then
NFKC-normalised (full-width and other compatibility letters become plain ones)
with invisible characters removed and whitespace runs, newlines included, collapsed
to one space. A result that is JSON text with escapes in it (`\\u200b`, `\\n`) is
also scanned as its decoded strings. Hidden Unicode is looked for before
normalising, since NFKC drops some of it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

#: Only this much of a result is scanned: enough for any realistic marker.
SCAN_LIMIT = 256 * 1024

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "instruction_override",
        re.compile(
            r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}"
            r"\b(previous|prior|above|earlier|all|any|your)\b[^.\n]{0,40}"
            r"\b(instructions?|prompts?|rules|directions|guidelines)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "role_claim",
        re.compile(
            r"\b(you are now|from now on,? you|new (system )?instructions?:|"
            r"(reveal|print|show) (your|the) system prompt|developer mode)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "role_spoofing",
        re.compile(
            r"<\|(im_start|im_end|system|assistant|user|endoftext)\|>|\[/?INST\]|<</?SYS>>"
            r"|^\s*#{2,}\s*(system|assistant|developer)\s*:|^\s*(system|assistant)\s*:\s",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "exfiltration",
        re.compile(
            r"\b(send|post|forward|upload|email|leak)\b[^.\n]{0,60}"
            r"\b(api[ _-]?keys?|passwords?|credentials|secrets?|access tokens?)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "hidden_unicode",
        re.compile(
            "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
        ),
    ),
)


_HIDDEN = PATTERNS[-1][1]
_JSON_START = re.compile(r"\s*[\[{\"]")


#: Matched against the normalised, collapsed text only: in it a phrase is never
#: split by a line break or a run of spaces, so the text as sent adds nothing.
_PHRASES = frozenset({"instruction_override", "role_claim", "exfiltration"})


def scan(text: str) -> list[str]:
    """The kinds of injection markers found in `text`, in pattern order.

    Each view costs one C-speed pass over at most `SCAN_LIMIT` characters, and each
    pattern runs on the views it needs: phrases on the collapsed text, role tokens
    (which depend on line starts) on the text as sent and normalised, hidden
    characters on the text as sent.
    """
    sent = _as_sent(text)
    normal = [_normalised(view) for view in sent]
    collapsed = [" ".join(view.split()) for view in normal]
    views = {
        "hidden_unicode": sent,
        "role_spoofing": list(dict.fromkeys(sent + normal)),
    }
    return [
        kind
        for kind, pattern in PATTERNS
        if any(
            pattern.search(view)
            for view in (collapsed if kind in _PHRASES else views.get(kind, sent))
        )
    ]


def _as_sent(text: str) -> list[str]:
    """The text, and, for JSON text with escapes in it, its decoded strings (JSON
    without escapes already shows its strings as they are)."""
    sample = text[:SCAN_LIMIT]
    if "\\" in sample and len(text) <= SCAN_LIMIT and _JSON_START.match(sample):
        decoded = _json_strings(text)
        if decoded:
            return [sample, decoded]
    return [sample]


def _normalised(text: str) -> str:
    """NFKC, invisible characters removed (ASCII text has neither to change)."""
    if text.isascii():
        return text
    return _HIDDEN.sub("", unicodedata.normalize("NFKC", text))


def _json_strings(text: str) -> str:
    """Every string (keys too) in JSON `text`, one per line; '' when not JSON."""
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ""
    found: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            found += node.keys()
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return "\n".join(found)
