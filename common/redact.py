"""Removing secrets and internal addresses from text that leaves the gateway.

An upstream's error message is written for the gateway's operator, not for the
gateway's clients: OpenAI's own 401 quotes part of the key it refused
(`sk-upstr********XYZW`, the *gateway's* provider key), and a proxy in front of a
model server may name internal hosts and IPs. Where such text must reach a client
(a provider's 400 explaining what was wrong with the request), it goes through
`redact` first. The patterns are deliberately broad: a false positive costs a word
of an error message; a false negative leaks a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_PATTERNS = re.compile(
    "|".join(
        [
            r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{6,}",  # OpenAI / Anthropic-style keys, masked too
            r"(?i:\bbearer)\s+[A-Za-z0-9._~+/\-]+=*",  # Authorization values
            r"\bAIza[0-9A-Za-z_\-]{20,}",  # Google API keys
            r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}",  # AWS access key ids
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",  # JWTs
            r"(?i:\b(?:api[_-]?key|token|secret|password))\s*[=:]\s*\S+",  # key=value
            r"[^\s*]{2,}\*{4,}[^\s*]{2,}",  # any masked fragment: abcd****wxyz
            r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b",  # IPv4 (and port)
            r"\[?[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]?(?::\d{1,5})?(?=[\s,;)\]]|$)",  # IPv6
            r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:\d{2,5}\b",  # host:port
        ]
    )
)

#: A configured secret at least this long is also searched for by the fragments
#: providers quote (its first 8 and last 4 characters); shorter ones only whole.
FRAGMENT_MIN_SECRET = 24


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials, masked credentials, IPs and host:port pairs replaced by
    `[redacted]`, and every given secret (and, for long ones, the leading and trailing
    fragments providers quote) removed verbatim."""
    for secret in secrets:
        if not secret:
            continue
        pieces = [secret]
        if len(secret) >= FRAGMENT_MIN_SECRET:
            pieces += [secret[:8], secret[-4:]]
        for piece in pieces:
            if piece in text:
                text = text.replace(piece, REDACTED)
    return _PATTERNS.sub(REDACTED, text)
