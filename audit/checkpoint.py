"""Signed checkpoints: what they say, how they are signed, how they are checked.

A checkpoint signs the chain up to a record (audit/__init__.py has the fields). The
signature covers the canonical JSON of every field but `sig` (sorted keys, `,` and
`:` separators, no whitespace), recomputed from the parsed line, so the order the
writer happens to put the fields in on disk does not matter, and any field added
later is signed too. Checkpoints chain to each other by `prev_checkpoint` (the hash of
the previous checkpoint line's bytes), like records chain by `prev`: deleting or
replacing one breaks the next.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import orjson

from audit.keys import KeyRing, Signer

KIND: Final = "checkpoint"

#: The fields of a checkpoint and their JSON types (`sig` last, unsigned).
FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "kind": (str,),
    "stream": (str,),
    "first": (int,),
    "last": (int,),
    "head": (str,),
    "prev_checkpoint": (str,),
    "time": (int, float),
    "key_id": (str,),
    "sig": (str,),
}


class SignatureCheck(StrEnum):
    OK = "ok"
    UNKNOWN_KEY = "unknown key"
    BAD_SIGNATURE = "bad signature"


def payload(checkpoint: Mapping[str, Any]) -> bytes:
    """The bytes signed: canonical JSON of every field except `sig`."""
    return orjson.dumps(
        {key: value for key, value in checkpoint.items() if key != "sig"},
        option=orjson.OPT_SORT_KEYS,
    )


def build(
    signer: Signer,
    *,
    stream: str,
    first: int,
    last: int,
    head: str,
    prev_checkpoint: str,
    time: float,
) -> dict[str, Any]:
    """A signed checkpoint covering records `first`..`last` of `stream`."""
    fields: dict[str, Any] = {
        "kind": KIND,
        "stream": stream,
        "first": first,
        "last": last,
        "head": head,
        "prev_checkpoint": prev_checkpoint,
        # milliseconds: a float that survives any JSON round trip unchanged
        "time": round(time, 3),
        "key_id": signer.key_id,
    }
    fields["sig"] = signer.sign(payload(fields))
    return fields


def to_line(checkpoint: Mapping[str, Any]) -> bytes:
    """The line written for a checkpoint (fields in the order given, `sig` last)."""
    return orjson.dumps(checkpoint)


def malformed(obj: object) -> str | None:
    """What is wrong with the shape of a parsed checkpoint line, or None."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    if obj.get("kind") != KIND:
        return f"kind is {obj.get('kind')!r}, not a record nor a checkpoint"
    for name, types in FIELDS.items():
        value = obj.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            return f"field {name!r} is missing or not {types[0].__name__}"
    return None


def _decode_sig(text: str) -> bytes | None:
    """The signature bytes, or None unless `text` is their canonical base64 (a
    lenient decoder would accept several spellings of one signature: a flipped
    padding bit must not pass for the original)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def check_signature(checkpoint: Mapping[str, Any], keyring: KeyRing) -> SignatureCheck:
    """Whether a (well-formed) checkpoint is signed by a key of the ring."""
    kid = checkpoint["key_id"]
    if kid not in keyring:
        return SignatureCheck.UNKNOWN_KEY
    sig = _decode_sig(checkpoint["sig"])
    if sig is None or not keyring.verify(kid, payload(checkpoint), sig):
        return SignatureCheck.BAD_SIGNATURE
    return SignatureCheck.OK
