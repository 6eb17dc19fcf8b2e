"""Signed tool receipts (`tools.receipts`): round trips, tampering, expiry, rotation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from tools.config import ReceiptKey, ReceiptsConfig
from tools.receipts import Receipts, canonical, canonical_arguments

NOW = 1_700_000_000
MAX_AGE = 600
MISMATCH = "the receipt does not match this tool call and content"
MALFORMED = "the receipt is malformed"
CALL: dict[str, Any] = {
    "tool": "get_weather",
    "call_id": "call_abc",
    "arguments": '{"city": "Oslo", "days": 3, "opts": {"units": "metric", "hourly": false}}',
    "content": '{"temp": 21.5, "sky": "clear"}',
}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def receipts(*key_ids: str, clock: Clock | None = None) -> Receipts:
    keys = tuple(ReceiptKey(id=k, secret=f"secret-for-{k}-0123456789") for k in key_ids)
    config = ReceiptsConfig(keys=keys, max_age_seconds=MAX_AGE)
    return Receipts(config, clock=clock or Clock())


def sign(signer: Receipts, **fields: Any) -> str:
    call = {**CALL, **fields}
    return signer.sign(
        call["tool"], call["call_id"], orjson.loads(call["arguments"]), call["content"]
    )


def verify(verifier: Receipts, receipt: Any, **changes: Any) -> str | None:
    call = {**CALL, **changes}
    return verifier.verify(
        receipt, call["tool"], call["call_id"], call["arguments"], call["content"]
    )


def replace_at(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


@pytest.fixture
def signer() -> Receipts:
    return receipts("k1")


def test_round_trip_and_format(signer: Receipts) -> None:
    receipt = sign(signer)
    version, key_id, stamp, mac = receipt.split(".")
    assert (version, key_id, stamp) == ("v1", "k1", str(NOW))
    assert len(mac) == 43 and "=" not in mac  # 32 bytes, base64url without padding
    assert set(mac) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert verify(signer, receipt) is None
    assert signer.enabled


def test_signing_is_deterministic_for_the_same_time(signer: Receipts) -> None:
    assert sign(signer) == sign(signer)


def test_receipts_without_keys_are_disabled() -> None:
    assert not Receipts(ReceiptsConfig()).enabled


@pytest.mark.parametrize(
    "arguments",
    [
        '{"days":3,"city":"Oslo","opts":{"hourly":false,"units":"metric"}}',
        '{\n  "opts": {"hourly": false, "units": "metric"},\n  "days": 3, "city": "Oslo"\n}',
        {"opts": {"units": "metric", "hourly": False}, "city": "Oslo", "days": 3},
    ],
    ids=["key-order", "whitespace", "parsed"],
)
def test_equivalent_arguments_still_verify(signer: Receipts, arguments: Any) -> None:
    assert verify(signer, sign(signer), arguments=arguments) is None


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"content": '{"temp": 21.6, "sky": "clear"}'}, id="content-one-char"),
        pytest.param({"content": '{"temp": 21.5, "sky": "clear"} '}, id="content-whitespace"),
        pytest.param({"content": '{"sky": "clear", "temp": 21.5}'}, id="content-reordered"),
        pytest.param({"content": ""}, id="content-empty"),
        pytest.param(
            {
                "arguments": '{"city": "Bergen", "days": 3, "opts": {"units": "metric", '
                '"hourly": false}}'
            },
            id="arguments-value",
        ),
        pytest.param(
            {
                "arguments": '{"city": "Oslo", "days": 3, "opts": {"units": "metric", '
                '"hourly": false}, "x": 1}'
            },
            id="arguments-added-key",
        ),
        pytest.param({"arguments": '{"city": "Oslo"}'}, id="arguments-removed-keys"),
        pytest.param({"arguments": ""}, id="arguments-empty"),
        pytest.param({"tool": "get_weathe"}, id="tool-name"),
        pytest.param({"call_id": "call_abd"}, id="replayed-on-another-call"),
    ],
)
def test_tampering_breaks_the_receipt(signer: Receipts, changes: dict[str, Any]) -> None:
    assert verify(signer, sign(signer), **changes) == MISMATCH


def test_invalid_json_arguments_are_reported(signer: Receipts) -> None:
    assert verify(signer, sign(signer), arguments="{nope") == (
        "the call's arguments are not valid JSON"
    )


def test_unknown_key_id(signer: Receipts) -> None:
    receipt = sign(receipts("k9"))
    assert verify(signer, receipt) == "unknown receipt key id 'k9'"


def test_same_key_id_with_another_secret_does_not_verify(signer: Receipts) -> None:
    other = Receipts(ReceiptsConfig(keys=(ReceiptKey(id="k1", secret="another-secret-0123"),)))
    assert verify(signer, sign(other)) == MISMATCH


def test_expiry_is_exact() -> None:
    clock = Clock()
    signer = receipts("k1", clock=clock)
    receipt = sign(signer)
    clock.now = NOW + MAX_AGE
    assert verify(signer, receipt) is None
    clock.now = NOW + MAX_AGE + 1
    assert verify(signer, receipt) == "the receipt has expired"


def test_fractional_clock_is_truncated_to_seconds() -> None:
    clock = Clock(NOW + 0.9)
    signer = receipts("k1", clock=clock)
    assert sign(signer).split(".")[2] == str(NOW)
    assert verify(signer, sign(signer)) is None


@pytest.mark.parametrize(
    "receipt",
    [
        "",
        "v1",
        "v1.k1.1700000000",
        "v1.k1.1700000000.mac.extra",
        "v2.k1.1700000000.mac",
        "V1.k1.1700000000.mac",
        "v1.k1.-5.mac",
        "v1.k1.17e8.mac",
        "v1.k1..mac",
        "v1.k1. 1700000000.mac",
    ],
)
def test_malformed_receipts(signer: Receipts, receipt: str) -> None:
    assert verify(signer, receipt) == MALFORMED


@pytest.mark.parametrize("receipt", [None, 12, b"v1.k1.1.x", ["v1"], {"v": 1}])
def test_non_string_receipts(signer: Receipts, receipt: Any) -> None:
    assert verify(signer, receipt) == "the receipt is not a string"


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("9" * 5000, id="5000-digits"),
    ],
)
def test_odd_digit_timestamps_give_a_reason_not_an_exception(signer: Receipts, stamp: str) -> None:
    # str.isdigit() accepts these, int() does not: the receipt comes from the client.
    assert isinstance(verify(signer, f"v1.k1.{stamp}.mac"), str)


def test_non_ascii_mac_gives_a_reason_not_an_exception(signer: Receipts) -> None:
    # hmac.compare_digest refuses str arguments with non-ASCII characters.
    receipt = sign(signer)
    assert isinstance(verify(signer, receipt[:-1] + "\u00e9"), str)


def test_every_single_mac_character_flip_fails(signer: Receipts) -> None:
    receipt = sign(signer)
    head, mac = receipt.rsplit(".", 1)
    for index, char in enumerate(mac):
        flipped = "A" if char != "A" else "B"
        assert verify(signer, f"{head}.{replace_at(mac, index, flipped)}") == MISMATCH
    assert verify(signer, f"{head}.{mac[:-1]}") == MISMATCH
    assert verify(signer, f"{head}.{mac}A") == MISMATCH


def test_changed_signing_time_fails(signer: Receipts) -> None:
    version, key_id, stamp, mac = sign(signer).split(".")
    assert verify(signer, f"{version}.{key_id}.{int(stamp) - 1}.{mac}") == MISMATCH


def test_key_rotation() -> None:
    old_receipt = sign(receipts("k1"))
    rotated = receipts("k2", "k1")
    assert verify(rotated, old_receipt) is None
    new_receipt = sign(rotated)
    assert new_receipt.split(".")[1] == "k2"
    assert verify(rotated, new_receipt) is None
    assert verify(receipts("k1"), new_receipt) == "unknown receipt key id 'k2'"


def test_key_ids_with_dots_round_trip() -> None:
    # Key ids are Identifiers, which allow '.', and the receipt format splits on '.'.
    signer = receipts("prod.2024")
    assert verify(signer, sign(signer)) is None


def test_arguments_given_as_json_text_round_trip(signer: Receipts) -> None:
    # verify() reads a str as the call's JSON text (OpenAI's format); sign() should too.
    receipt = signer.sign(CALL["tool"], CALL["call_id"], CALL["arguments"], CALL["content"])
    assert verify(signer, receipt) is None


@pytest.mark.parametrize(
    ("signed", "presented"),
    [
        ({"call_id": "c", "content": "ab"}, {"call_id": "ca", "content": "b"}),
        ({"call_id": "c", "content": "ab"}, {"call_id": "bc", "content": "a"}),
        ({"tool": "ab", "call_id": "c"}, {"tool": "a", "call_id": "bc"}),
        ({"tool": "t", "call_id": ""}, {"tool": "", "call_id": "t"}),
        ({"call_id": "x", "content": ""}, {"call_id": "", "content": "x"}),
    ],
)
def test_moving_text_between_fields_does_not_verify(
    signer: Receipts, signed: dict[str, str], presented: dict[str, str]
) -> None:
    assert verify(signer, sign(signer, **signed), **signed) is None
    assert verify(signer, sign(signer, **signed), **presented) == MISMATCH


def test_canonical_forms() -> None:
    assert canonical({"b": 1, "a": [2, {"d": 3, "c": 4}]}) == b'{"a":[2,{"c":4,"d":3}],"b":1}'
    assert canonical_arguments('{ "b" : 1, "a" : 2 }') == b'{"a":2,"b":1}'
    assert canonical_arguments("") == b"{}"
    assert canonical_arguments("{") is None
    assert canonical_arguments({"x": None}) == b'{"x":null}'


# --- content given as a list of parts ------------------------------------------------

TEXT_PART = {"type": "text", "text": CALL["content"]}
IMAGE_PART = {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([TEXT_PART, IMAGE_PART], id="text-and-image"),
        pytest.param([TEXT_PART, TEXT_PART], id="two-text-parts"),
        pytest.param([IMAGE_PART], id="image-only"),
        pytest.param([], id="empty"),
        pytest.param([{**TEXT_PART, "cache_control": {"type": "ephemeral"}}], id="extra-key"),
    ],
)
def test_list_content_round_trips_and_is_covered_whole(signer: Receipts, parts: list[Any]) -> None:
    receipt = sign(signer, content=parts)
    assert verify(signer, receipt, content=parts) is None
    # key order inside a part does not matter (canonical JSON) ...
    reordered = [dict(reversed(list(p.items()))) for p in parts]
    assert verify(signer, receipt, content=reordered) is None
    # ... but every part does: added, removed, changed, or the list read as its text.
    assert verify(signer, receipt, content=[*parts, IMAGE_PART]) == MISMATCH
    if parts:
        assert verify(signer, receipt, content=parts[:-1]) == MISMATCH
    assert verify(signer, receipt, content=[*parts[:-1], {"type": "text", "text": "x"}]) == MISMATCH
    assert verify(signer, receipt, content=CALL["content"]) == MISMATCH


def test_a_receipt_for_text_does_not_cover_an_added_part(signer: Receipts) -> None:
    # Computed before list content was covered whole: receipts already issued for
    # string content (what the invoke proxy signs) must keep verifying.
    receipt = "v1.k1.1700000000.AnnQn4AO6gNMom6lMtLW6lPRfU1YyPV6v-1fNaewSBo"
    assert sign(signer, arguments='{"city": "Oslo"}') == receipt
    assert verify(signer, receipt, arguments='{"city": "Oslo"}') is None
    for parts in ([TEXT_PART, IMAGE_PART], [IMAGE_PART, TEXT_PART], [TEXT_PART, TEXT_PART]):
        assert verify(signer, receipt, content=parts, arguments='{"city": "Oslo"}') == MISMATCH


def test_one_plain_text_part_is_the_string_it_holds(signer: Receipts) -> None:
    # An agent may wrap the invoke proxy's string content in a text part.
    assert verify(signer, sign(signer), content=[TEXT_PART]) is None
    assert verify(signer, sign(signer, content=[TEXT_PART])) is None
    # Only exactly that shape: any other key or type is a list like any other.
    assert verify(signer, sign(signer), content=[{**TEXT_PART, "x": 1}]) == MISMATCH
    assert verify(signer, sign(signer), content=[{**TEXT_PART, "type": "input_text"}]) == MISMATCH


def test_a_list_cannot_pass_for_its_canonical_json_text(signer: Receipts) -> None:
    # A tool whose result is a list gets its canonical JSON signed as a string; the
    # same bytes sent as real parts must not verify (the model would read them apart).
    parts = [IMAGE_PART]
    text = canonical(parts).decode()
    assert verify(signer, sign(signer, content=text), content=parts) == MISMATCH
    assert verify(signer, sign(signer, content=parts), content=text) == MISMATCH


def test_uncanonical_list_content_gives_a_reason_not_an_exception(signer: Receipts) -> None:
    # orjson parses integers past 64 bits as floats, but a caller may pass anything.
    assert verify(signer, sign(signer), content=[{"type": "x", "n": 2**70}]) == (
        "the content cannot be put in canonical form"
    )


# --- properties --------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "\n", "line one\nline two\r\n", "héllo wörld", "天気は晴れ", "🌧️ rain", "a.b.c"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)
arguments_objects = st.dictionaries(texts, json_values, max_size=4)


@settings(max_examples=examples(200))
@given(tool=texts, call_id=texts, arguments=arguments_objects, content=texts, data=st.data())
def test_round_trip_and_single_character_changes(
    tool: str, call_id: str, arguments: dict[str, Any], content: str, data: st.DataObject
) -> None:
    signer = receipts("k1")
    receipt = signer.sign(tool, call_id, arguments, content)
    as_text = orjson.dumps(arguments).decode()
    assert signer.verify(receipt, tool, call_id, as_text, content) is None
    assert signer.verify(receipt, tool, call_id, arguments, content) is None

    index = data.draw(st.integers(0, len(content)))
    char = data.draw(st.characters(codec="utf-8"))
    edits = [content[:index] + char + content[index:]]  # insertion
    if index < len(content):
        edits.append(content[:index] + content[index + 1 :])  # deletion
        edits.append(replace_at(content, index, char))  # substitution
    for changed in (edit for edit in edits if edit != content):
        assert signer.verify(receipt, tool, call_id, as_text, changed) == MISMATCH
