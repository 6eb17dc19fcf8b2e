"""Build a value that satisfies a JSON Schema: the mock LLM's tool arguments and
structured outputs.

Covers what tool schemas and pydantic's `model_json_schema()` (and the OpenAI
SDK's strict rewrite of it) use in practice: types and type lists, properties and
`required`, `additionalProperties` (schemas for map values, `false`),
`min/maxProperties`, enums and `const`, numeric bounds (inclusive and exclusive)
and `multipleOf`, string lengths, `pattern` (routing/mock/pattern_example.py) and
common formats, arrays with `items`/`prefixItems`, `min/maxItems` and
`uniqueItems`, `anyOf`/`oneOf`/`allOf`, and local `$ref`s into `$defs` or
`definitions`, recursive ones included.

Recursion ends because a `$ref` met again inside itself (a tree node's children)
turns the example minimal: optional properties left out, arrays at their
`minItems`, nullable choices taking null. `not`, `if/then/else`, `contains` and
`dependentRequired` are not solved: such schemas get a best effort. `oneOf` takes
the first option, which suits pydantic's discriminated unions (their options
differ in a `const` tag) but may match several options of a hand-written schema.

Examples are deterministic. `variant` makes a sibling example differ (the k-th
item of an array), so `uniqueItems` arrays hold distinct items: every leaf of an
item moves with the variant together, so items whose leaves have few values (pairs
of booleans: two of their four values are reached) may fall short of `minItems`.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Callable
from typing import Any

import orjson

from routing.mock.pattern_example import pattern_example

#: Nesting past which no more value is built (a schema that cannot end gets None).
MAX_DEPTH = 32
#: Extra tries for distinct items of a `uniqueItems` array, beyond its length.
MAX_UNIQUE_RETRIES = 8
#: Array examples are built at this length at most (a `minItems` above it is not met).
MAX_ARRAY_ITEMS = 64
#: `example_json` remembers the examples of this many schemas...
MAX_CACHED_EXAMPLES = 256
#: ...each at most this long as JSON text (longer ones are built every time).
MAX_CACHED_SCHEMA_CHARS = 16_384

Json = dict[str, Any]

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


def _format_example(fmt: str, variant: int) -> str | None:
    """A valid string for a JSON Schema `format` (and pydantic's own formats)."""
    make = _FORMATS.get(fmt)
    return make(variant) if make is not None else None


def _day(variant: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(days=variant)


def _numbered(template: str) -> Callable[[int], str]:
    """`template` with `{n}` as the variant, left out for variant 0."""
    return lambda variant: template.format(n=variant or "")


_FORMATS: dict[str, Callable[[int], str]] = {
    "date-time": lambda v: _day(v).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "date": lambda v: _day(v).strftime("%Y-%m-%d"),
    "time": lambda v: f"00:00:{v % 60:02d}Z",
    "duration": lambda v: f"P{v + 1}D",
    "email": _numbered("user{n}@example.com"),
    "idn-email": _numbered("user{n}@example.com"),
    "uri": _numbered("https://example.com/{n}"),
    "url": _numbered("https://example.com/{n}"),
    "iri": _numbered("https://example.com/{n}"),
    "uri-reference": lambda v: f"/example/{v}",
    "iri-reference": lambda v: f"/example/{v}",
    "uri-template": _numbered("https://example.com/{{id}}{n}"),
    "uuid": lambda v: f"00000000-0000-4000-8000-{v:012d}",
    "ipv4": lambda v: f"192.0.2.{v % 254 + 1}",
    "ipv6": lambda v: f"2001:db8::{v % 65535 + 1:x}",
    "hostname": _numbered("host{n}.example.com"),
    "idn-hostname": _numbered("host{n}.example.com"),
    "json-pointer": lambda v: f"/example/{v}",
    "relative-json-pointer": str,
    "regex": _numbered("^example{n}$"),
    "path": _numbered("/tmp/example{n}"),
}


@functools.lru_cache(maxsize=MAX_CACHED_EXAMPLES)
def _example_text(schema_text: str) -> str:
    return orjson.dumps(example_for(orjson.loads(schema_text))).decode()


def example_json(schema: Any) -> str:
    """`example_for(schema)` as compact JSON text, cached by the schema's exact text:
    agents send the same tools and output schemas on every turn, and a schema with
    patterns costs hundreds of microseconds to walk."""
    schema_text = orjson.dumps(schema).decode()
    if len(schema_text) > MAX_CACHED_SCHEMA_CHARS:
        return orjson.dumps(example_for(schema)).decode()
    return _example_text(schema_text)


def example_for(schema: Any, root: Any = None, name: str = "value", depth: int = 0) -> Any:
    """A value valid for `schema`; `root` holds the `$defs` its `$ref`s point into
    (the schema itself by default); `name` words the example strings."""
    builder = _Builder(schema if root is None else root)
    return builder.build(schema, name, depth, variant=0, minimal=False)


class _Builder:
    def __init__(self, root: Any) -> None:
        self.root = root
        #: The `$ref`s being expanded: one met again is recursion.
        self.expanding: list[str] = []

    def build(self, schema: Any, name: str, depth: int, variant: int, minimal: bool) -> Any:
        if depth > MAX_DEPTH or not isinstance(schema, dict):
            return None  # also `true` (anything goes) and `false` (nothing does)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            minimal = minimal or ref in self.expanding
            self.expanding.append(ref)
            try:
                return self.build(_resolve(ref, self.root), name, depth + 1, variant, minimal)
            finally:
                self.expanding.pop()
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[variant % len(enum)]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                option = _minimal_option(options) if minimal else options[0]
                return self.build(option, name, depth + 1, variant, minimal)
        if isinstance(schema.get("allOf"), list):
            return self.build(self._merge_all_of(schema), name, depth + 1, variant, minimal)
        kind = _kind(schema, minimal)
        if kind == "object":
            return self._object(schema, depth, variant, minimal)
        if kind == "array":
            return self._array(schema, name, depth, variant, minimal)
        if kind == "string":
            return _string(schema, name, variant)
        if kind == "integer":
            return _integer(schema, variant)
        if kind == "number":
            return _number(schema, variant)
        if kind == "boolean":
            return variant % 2 == 0
        return None

    def _merge_all_of(self, schema: Json) -> Json:
        merged: Json = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                part = _resolve(part["$ref"], self.root)
            if not isinstance(part, dict):
                continue
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _object(self, schema: Json, depth: int, variant: int, minimal: bool) -> Json:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        extra = schema.get("additionalProperties")
        result: Json = {}
        for key, sub in properties.items():
            if minimal and key not in required:
                continue
            result[key] = self.build(sub, key, depth + 1, variant, minimal)
        for key in required:
            if key not in result:
                value_schema = extra if isinstance(extra, dict) else {}
                result[key] = self.build(value_schema, key, depth + 1, variant, minimal)
        least = schema.get("minProperties")
        if isinstance(least, int) and extra is not False:
            value_schema = extra if isinstance(extra, dict) else {}
            k = 0
            while len(result) < min(least, MAX_ARRAY_ITEMS):
                k += 1
                key = f"key{k}"
                if key not in result and key not in properties:
                    result[key] = self.build(value_schema, key, depth + 1, variant, minimal)
        most = schema.get("maxProperties")
        if isinstance(most, int) and len(result) > most:
            for key in [k for k in result if k not in required][: len(result) - most]:
                del result[key]
        return result

    def _array(self, schema: Json, name: str, depth: int, variant: int, minimal: bool) -> list[Any]:
        least = schema.get("minItems")
        least = least if isinstance(least, int) and least > 0 else 0
        count = least if minimal else max(1, least)
        most = schema.get("maxItems")
        if isinstance(most, int):
            count = min(count, max(most, 0))
        count = min(count, MAX_ARRAY_ITEMS)
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        if items is False:
            count = min(count, len(prefix))
        count = max(count, min(len(prefix), least))
        unique = schema.get("uniqueItems") is True
        result: list[Any] = []
        seen: set[bytes] = set()
        k = 0
        while len(result) < count and k < count + (MAX_UNIQUE_RETRIES if unique else 0):
            position = len(result)
            item_schema = prefix[position] if position < len(prefix) else items
            value = self.build(item_schema, name, depth + 1, variant + k, minimal)
            k += 1
            if unique:
                key = _identity(value)
                if key in seen:
                    continue
                seen.add(key)
            result.append(value)
        return result


def _identity(value: Any) -> bytes:
    """Equality as JSON Schema sees it: 1 and true differ, key order does not matter."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _minimal_option(options: list[Any]) -> Any:
    """The option that ends soonest: null, then one without a `$ref`."""
    for option in options:
        if isinstance(option, dict) and option.get("type") == "null":
            return option
    for option in options:
        if isinstance(option, dict) and "$ref" not in option:
            return option
    return options[0]


def _kind(schema: Json, minimal: bool) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        if minimal and "null" in kind:
            return "null"
        return next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _resolve(ref: str, root: Any) -> Any:
    """A local reference (`#/$defs/Name`, `#`); anything else resolves to `{}`."""
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node


def _string(schema: Json, name: str, variant: int) -> str:
    least = schema.get("minLength")
    least = least if isinstance(least, int) and least > 0 else 0
    most = schema.get("maxLength")
    most = most if isinstance(most, int) and most >= 0 else None
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        matching = pattern_example(pattern, variant, least, most)
        if matching is not None:
            return matching
    fmt = schema.get("format")
    if isinstance(fmt, str):
        formatted = _format_example(fmt, variant)
        if (
            formatted is not None
            and least <= len(formatted)
            and (most is None or len(formatted) <= most)
        ):
            return formatted
    text = f"example {name}"
    suffix = f" {variant}" if variant else ""
    if most is not None:
        text = text[: max(most - len(suffix), 0)]
    text = text + suffix
    if len(text) < least:
        text += "x" * (least - len(text))
    if most is not None and len(text) > most:
        text = text[len(text) - most :]  # keep the variant suffix: items stay distinct
    return text


def _bounds(schema: Json) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is exclusive, high, high is exclusive), from both drafts' spellings."""
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    for key, value in schema.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if key == "exclusiveMinimum" and value is True:  # draft 4: a flag on minimum
                low_open = True
            elif key == "exclusiveMaximum" and value is True:
                high_open = True
            continue
        if key == "minimum" and (low is None or value > low):
            low = value
        elif key == "exclusiveMinimum" and (low is None or value >= low):
            low, low_open = value, True
        elif key == "maximum" and (high is None or value < high):
            high = value
        elif key == "exclusiveMaximum" and (high is None or value <= high):
            high, high_open = value, True
    return low, low_open, high, high_open


def _number(schema: Json, variant: int) -> float:
    low, low_open, high, high_open = _bounds(schema)
    value: float = 1 + variant

    def fits(v: float) -> bool:
        above = low is None or (v > low if low_open else v >= low)
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    if not fits(value):
        if low is not None and high is not None:
            # Strictly inside, a different point for each variant.
            value = low + (high - low) / (2 + variant) if low != high else low
        elif low is not None:
            value = low + 1 + variant
        elif high is not None:
            value = high - 1 - variant
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        value = _multiple_near(value, step, fits)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _multiple_near(value: float, step: float, fits: Any) -> float:
    """A multiple of `step` within the bounds, the one just above `value` if it fits."""
    k = math.ceil(value / step)
    for candidate in (k, k - 1, k + 1):
        multiple = candidate * step
        if isinstance(step, float):
            multiple = round(multiple, 12)
        if fits(multiple):
            return multiple
    return k * step


def _integer(schema: Json, variant: int) -> int:
    low, low_open, high, high_open = _bounds(schema)
    least = None if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
    most = None if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
    # Variants count up from 1 (or from the bound), wrapping round a closed range, so
    # a `uniqueItems` array reaches every value the range has.
    if least is not None and most is not None:
        if least > most:
            return least  # no integer fits: the schema's fault
        start = min(max(1, least), most)
        value = least + (start - least + variant) % (most - least + 1)
    elif least is not None:
        value = max(1, least) + variant
    elif most is not None:
        value = min(1, most) - variant
    else:
        value = 1 + variant
    step = schema.get("multipleOf")
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        # (A fractional step is left alone: 0.5 divides every integer.)
        value = -(-value // step) * step
        if most is not None and value > most:
            value = (most // step) * step
    return value
