"""Signed tool receipts: proof that a tool result is what the tool returned.

The invoke proxy signs each result; the agent sends the receipt back with the
result (`seawall_receipt` on the `role: tool` message); the gateway verifies it
before the model sees the result. A receipt binds the tool name, the tool call
id, the canonical arguments of the call, the exact content and the time of
signing, so changing any of them, or replaying a receipt on another call, breaks
it.

Content is what the model will see: a string is covered as its exact text; a list
of content parts is covered whole, as its canonical JSON plus a marker field, so
adding, removing or changing any part (an `image_url` next to the signed text)
breaks the receipt, and a list can never pass for a string with the same text. One
exception keeps the invoke proxy's string content usable when an agent wraps it: a
list of exactly one plain text part, `[{"type": "text", "text": S}]`, is the string
S.

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


#: The extra field that marks content given as a list of parts (see `_message`).
PARTS_MARKER = b"content:parts"

#: Message content: a string, or a list of content parts.
Content = str | list[Any]


def _content_fields(content: Content) -> list[bytes]:
    """The fields that stand for `content` in a signed message.

    A string is its UTF-8 text (the form every receipt for string content has
    always had). A list is its canonical JSON followed by `PARTS_MARKER`: the
    encoding is length-prefixed, so a message with the extra field can never
    equal one without it, whatever the texts. A list of one plain text part is
    the string it holds, which the model reads the same way.
    """
    if isinstance(content, str):
        return [content.encode()]
    if len(content) == 1 and _plain_text(content[0]):
        return [content[0]["text"].encode()]
    return [canonical(content), PARTS_MARKER]


def _plain_text(part: Any) -> bool:
    """`{"type": "text", "text": "..."}` and nothing more."""
    return (
        isinstance(part, dict)
        and part.keys() == {"type", "text"}
        and part["type"] == "text"
        and isinstance(part["text"], str)
    )


def _message(tool: str, call_id: str, arguments: bytes, content: Content, signed_at: int) -> bytes:
    text, *marker = _content_fields(content)
    parts = [
        VERSION.encode(),
        tool.encode(),
        call_id.encode(),
        arguments,
        text,
        str(signed_at).encode(),
        *marker,
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

    def sign(self, tool: str, call_id: str, arguments: str | Any, content: Content) -> str:
        """`arguments` as `verify` takes them: a value, or the call's JSON text;
        `content` as the agent will send it: a string (what the invoke proxy
        returns) or a list of content parts."""
        assert self._signing is not None, "no receipt keys configured"
        canonical_args = canonical_arguments(arguments)
        if canonical_args is None:
            raise ValueError("arguments are not valid JSON")
        signed_at = int(self._clock())
        message = _message(tool, call_id, canonical_args, content, signed_at)
        return f"{VERSION}.{self._signing}.{signed_at}.{self._mac(self._signing, message)}"

    def verify(
        self, receipt: Any, tool: str, call_id: str, arguments: str | Any, content: Content
    ) -> str | None:
        """None when the receipt holds; otherwise why it does not.

        `content` is the message's content as sent: a string or the whole list of
        parts (never only the text of the parts)."""
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
        try:
            message = _message(tool, call_id, canonical_args, content, signed_at)
        except orjson.JSONEncodeError:  # e.g. an integer past 64 bits in a part
            return "the content cannot be put in canonical form"
        expected = self._mac(key_id, message)
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            return "the receipt does not match this tool call and content"
        return None
