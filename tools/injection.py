"""Markers of prompt injection in tool results: a signal, not a defence.

Tool results are text an attacker may control (a web page, an email, a file) that
the model then reads as context. These patterns catch the common, crude attempts:
instructions aimed at the model, tokens that spoof a chat role, requests to
exfiltrate secrets, and invisible Unicode that hides text from a human reviewer.
A determined attacker can phrase around any list like this, so a match flags the
result (header, metrics, events) and never blocks it on its own.
"""

from __future__ import annotations

import re

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


def scan(text: str) -> list[str]:
    """The kinds of injection markers found in `text`, in pattern order."""
    sample = text[:SCAN_LIMIT]
    return [kind for kind, pattern in PATTERNS if pattern.search(sample)]
