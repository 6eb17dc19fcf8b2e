"""Signed tool receipts: proof that a tool result is what the tool returned.

The invoke proxy signs each result; the agent sends the receipt back with the
result (`seawall_receipt` on the `role: tool` message); the gateway verifies it
before the model sees the result. A receipt binds the tool name, the tool call
id, the canonical arguments of the call, the exact content and the time of
signing, so changing any of them, or replaying a receipt on another call, breaks
it.

Format: `v1.<key id>.<unix time>.<base64url HMAC-SHA256>`. The signing time is in
the clear because the verifier needs it (DESIGN.md sketched the format without
it). Fields are length-prefixed before hashing, so no choice of contents can make
two different field lists hash alike. The first configured key signs; every key
verifies, so keys can be rotated without invalidating receipts in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from tools.config import ReceiptsConfig

VERSION = "v1"
#: Unix seconds, ASCII digits only (str.isdigit would admit other scripts' digits).
RECEIPT_TIME = re.compile(r"[0-9]{1,12}")


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: equal values, equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def canonical_arguments(arguments: str | Any) -> bytes | None:
    """Canonical form of a call's arguments (a JSON string in OpenAI's format)."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            return None
    return canonical(arguments)


def _message(tool: str, call_id: str, arguments: bytes, content: str, signed_at: int) -> bytes:
    parts = [
        VERSION.encode(),
        tool.encode(),
        call_id.encode(),
        arguments,
        content.encode(),
        str(signed_at).encode(),
    ]
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Receipts:
    def __init__(self, config: ReceiptsConfig, clock: Callable[[], float] = time.time) -> None:
        self._keys = {key.id: key.secret.get_secret_value().encode() for key in config.keys}
        self._signing = config.keys[0].id if config.keys else None
        self._max_age = config.max_age_seconds
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._signing is not None

    def _mac(self, key_id: str, message: bytes) -> str:
        return _b64(hmac.new(self._keys[key_id], message, hashlib.sha256).digest())

    def sign(self, tool: str, call_id: str, arguments: str | Any, content: str) -> str:
        """`arguments` as `verify` takes them: a value, or the call's JSON text."""
        assert self._signing is not None, "no receipt keys configured"
        canonical_args = canonical_arguments(arguments)
        if canonical_args is None:
            raise ValueError("arguments are not valid JSON")
        signed_at = int(self._clock())
        message = _message(tool, call_id, canonical_args, content, signed_at)
        return f"{VERSION}.{self._signing}.{signed_at}.{self._mac(self._signing, message)}"

    def verify(
        self, receipt: Any, tool: str, call_id: str, arguments: str | Any, content: str
    ) -> str | None:
        """None when the receipt holds; otherwise why it does not."""
        if not isinstance(receipt, str):
            return "the receipt is not a string"
        if not receipt.isascii():
            return "the receipt is malformed"
        version, _, rest = receipt.partition(".")
        parts = rest.rsplit(".", 2)  # key ids may contain dots; time and MAC cannot
        if version != VERSION or len(parts) != 3 or not RECEIPT_TIME.fullmatch(parts[1]):
            return "the receipt is malformed"
        key_id, stamp, mac = parts
        if key_id not in self._keys:
            return f"unknown receipt key id '{key_id[:40]}'"
        signed_at = int(stamp)
        if self._clock() - signed_at > self._max_age:
            return "the receipt has expired"
        canonical_args = canonical_arguments(arguments)
        if canonical_args is None:
            return "the call's arguments are not valid JSON"
        expected = self._mac(key_id, _message(tool, call_id, canonical_args, content, signed_at))
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            return "the receipt does not match this tool call and content"
        return None
