"""Build a value that satisfies a JSON Schema, for the mock LLM's tool calls.

Covers what tool schemas use in practice: types, properties/required, enums and
const, numeric bounds, string lengths and common formats, arrays with
min/maxItems, anyOf/oneOf/allOf and local `$ref`s. `pattern` and `not` are not
solved (the example may not match them); schemas that need them get a best effort.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 32

_FORMAT_EXAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def example_for(schema: Any, root: Any = None, name: str = "value", depth: int = 0) -> Any:
    root = schema if root is None else root
    if depth > MAX_DEPTH or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return example_for(_resolve(schema["$ref"], root), root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return example_for(options[0], root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = (
                _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            )
            if isinstance(part, dict):
                for key, value in part.items():
                    if key == "properties" and isinstance(value, dict):
                        merged.setdefault("properties", {}).update(value)
                    elif key == "required" and isinstance(value, list):
                        merged["required"] = [*merged.get("required", []), *value]
                    else:
                        merged.setdefault(key, value)
        return example_for(merged, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    maker = _MAKERS.get(kind)
    return maker(schema, root, name, depth) if maker else None


def _resolve(ref: Any, root: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def _object(schema: dict[str, Any], root: Any, name: str, depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    result: dict[str, Any] = {}
    for key, sub in properties.items():
        result[key] = example_for(sub, root, key, depth + 1)
    for key in schema.get("required") or []:
        if key not in result:
            result[key] = "example"
    return result


def _string(schema: dict[str, Any], root: Any, name: str, depth: int) -> str:
    fmt = schema.get("format")
    if fmt in _FORMAT_EXAMPLES:
        return _FORMAT_EXAMPLES[fmt]
    text = f"example {name}"
    min_length = schema.get("minLength")
    max_length = schema.get("maxLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = text + "x" * (min_length - len(text))
    if isinstance(max_length, int) and len(text) > max_length:
        text = text[:max_length]
    return text


def _number(schema: dict[str, Any], root: Any, name: str, depth: int) -> float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
        low = ex_low + 1 if low is None else max(low, ex_low + 1)
    if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
        high = ex_high - 1 if high is None else min(high, ex_high - 1)
    value: float = 1
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(high, (int, float)) and value > high:
        value = high
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
    return value


def _integer(schema: dict[str, Any], root: Any, name: str, depth: int) -> int:
    return math.ceil(_number(schema, root, name, depth))


def _array(schema: dict[str, Any], root: Any, name: str, depth: int) -> list[Any]:
    count = max(1, schema.get("minItems") or 0)
    max_items = schema.get("maxItems")
    if isinstance(max_items, int):
        count = min(count, max_items)
    items = schema.get("items", {})
    if isinstance(schema.get("prefixItems"), list):
        prefix = [example_for(s, root, name, depth + 1) for s in schema["prefixItems"]]
        return prefix[: max(count, len(prefix))]
    return [example_for(items, root, name, depth + 1) for _ in range(count)]


_MAKERS: dict[str, Any] = {
    "object": _object,
    "string": _string,
    "number": _number,
    "integer": _integer,
    "boolean": lambda *_: True,
    "array": _array,
    "null": lambda *_: None,
}
