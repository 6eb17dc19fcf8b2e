"""Finding `$ref` cycles that validation would follow forever.

A `$ref` applies another schema to the *same* value, and so do `allOf`, `anyOf`,
`oneOf`, `not`, `if`/`then`/`else` and `dependentSchemas`. A cycle made only of
such steps never moves on to a smaller part of the value, so jsonschema follows it
until Python's recursion limit: `{"$ref": "#"}` is the shortest. A cycle through
`properties`, `items` and the like is fine (a recursive tree type): every turn
descends one level into the value, and values are depth-limited before validation.

The walk is iterative (a client's schema may nest deeply) and resolves what a
schema can reference locally: `#`, JSON pointers (`#/$defs/a`), anchors
(`$anchor`, `$dynamicAnchor`, draft-7 `"$id": "#name"`), each relative to the
nearest enclosing `$id` resource. `$dynamicRef` and `$recursiveRef` are followed to
every target they could have, so a cycle through them is never missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

#: Keywords that apply their subschemas to the same value.
_SAME_VALUE_ONE = ("not", "if", "then", "else")
_SAME_VALUE_MANY = ("allOf", "anyOf", "oneOf")
_SAME_VALUE_MAP = ("dependentSchemas", "dependencies")
#: Keywords that apply their subschemas to parts of the value.
_PART_ONE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
_PART_MANY = ("prefixItems", "items")
_PART_MAP = ("properties", "patternProperties", "$defs", "definitions")


@dataclass
class _Document:
    """Every schema object in a document, where it is, and what names it."""

    root: dict[str, Any]
    schemas: list[dict[str, Any]] = field(default_factory=list)
    pointer: dict[int, str] = field(default_factory=dict)
    resource: dict[int, dict[str, Any]] = field(default_factory=dict)
    anchors: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    dynamic: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recursive: list[dict[str, Any]] = field(default_factory=list)


def _subschemas(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """(pointer suffix, subschema) for every keyword that holds schemas."""
    found: list[tuple[str, Any]] = []
    for key in (*_SAME_VALUE_ONE, *_PART_ONE):
        if isinstance(schema.get(key), dict):
            found.append((f"/{key}", schema[key]))
    for key in (*_SAME_VALUE_MANY, *_PART_MANY):
        if isinstance(schema.get(key), list):
            found += [(f"/{key}/{i}", s) for i, s in enumerate(schema[key]) if isinstance(s, dict)]
    for key in (*_SAME_VALUE_MAP, *_PART_MAP):
        if isinstance(schema.get(key), dict):
            found += [
                (f"/{key}/{_escape(name)}", s)
                for name, s in schema[key].items()
                if isinstance(s, dict)
            ]
    return found


def _escape(name: str) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def _is_resource(schema: dict[str, Any]) -> bool:
    value = schema.get("$id")
    return isinstance(value, str) and not value.startswith("#")


def _index(root: dict[str, Any]) -> _Document:
    document = _Document(root)
    stack: list[tuple[dict[str, Any], str, dict[str, Any]]] = [(root, "#", root)]
    while stack:
        schema, pointer, resource = stack.pop()
        if id(schema) in document.pointer:
            continue
        if schema is not root and _is_resource(schema):
            resource = schema
        document.schemas.append(schema)
        document.pointer[id(schema)] = pointer
        document.resource[id(schema)] = resource
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(schema.get(key), str):
                document.anchors[(id(resource), schema[key])] = schema
        if isinstance(schema.get("$id"), str) and schema["$id"].startswith("#"):
            document.anchors[(id(resource), schema["$id"][1:])] = schema
        if isinstance(schema.get("$dynamicAnchor"), str):
            document.dynamic.setdefault(schema["$dynamicAnchor"], []).append(schema)
        if schema.get("$recursiveAnchor") is True:
            document.recursive.append(schema)
        for suffix, child in _subschemas(schema):
            stack.append((child, pointer + suffix, resource))
    return document


def _resolve(document: _Document, resource: dict[str, Any], fragment: str) -> Any:
    """The schema a local reference (`#...`) names, or None when it names none."""
    fragment = unquote(fragment[1:])
    if not fragment.startswith("/"):
        return resource if not fragment else document.anchors.get((id(resource), fragment))
    node: Any = resource
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _same_value_steps(
    document: _Document, schema: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(how it is named, schema) for each schema that validating `schema` applies
    to the same value."""
    at = document.pointer.get(id(schema), "#")
    steps: list[tuple[str, Any]] = [(f"{at}/{key}", schema.get(key)) for key in _SAME_VALUE_ONE]
    for key in _SAME_VALUE_MANY:
        if isinstance(schema.get(key), list):
            steps += [(f"{at}/{key}/{i}", s) for i, s in enumerate(schema[key])]
    for key in _SAME_VALUE_MAP:
        if isinstance(schema.get(key), dict):
            steps += [(f"{at}/{key}/{_escape(n)}", s) for n, s in schema[key].items()]
    resource = document.resource.get(id(schema), document.root)
    for key in ("$ref", "$dynamicRef", "$recursiveRef"):
        reference = schema.get(key)
        if isinstance(reference, str) and reference.startswith("#"):
            steps.append((reference, _resolve(document, resource, reference)))
    dynamic = schema.get("$dynamicRef")
    if isinstance(dynamic, str) and dynamic.startswith("#"):
        steps += [(dynamic, s) for s in document.dynamic.get(unquote(dynamic[1:]), [])]
    if schema.get("$recursiveRef") == "#":
        steps += [("#", s) for s in document.recursive]
    return [(name, step) for name, step in steps if isinstance(step, dict)]


def reference_cycle(schema: Any) -> list[str] | None:
    """Where one cycle that never consumes input runs (its first place repeated at
    the end), or None when there is none."""
    if not isinstance(schema, dict):
        return None
    document = _index(schema)
    done: set[int] = set()
    for start in document.schemas:
        if id(start) not in done:
            cycle = _cycle_from(document, start, done)
            if cycle is not None:
                return cycle
    return None


def _cycle_from(document: _Document, start: dict[str, Any], done: set[int]) -> list[str] | None:
    """Depth first from `start` along same-value steps; a step back onto the current
    path closes a cycle. Schemas explored to the end are `done`, never walked again,
    so the whole search is linear in the document."""
    on_path: dict[int, int] = {id(start): 0}
    path = [start]
    names = [document.pointer.get(id(start), "#")]
    pending = [iter(_same_value_steps(document, start))]
    while pending:
        found = next(pending[-1], None)
        if found is None:
            done.add(id(path[-1]))
            del on_path[id(path.pop())]
            names.pop()
            pending.pop()
            continue
        name, step = found
        if id(step) in on_path:
            return [*names[on_path[id(step)] :], name]
        if id(step) in done:
            continue
        if id(step) not in document.resource:  # reached through a pointer only
            document.resource[id(step)] = document.resource.get(id(path[-1]), document.root)
            document.pointer[id(step)] = name
        on_path[id(step)] = len(path)
        path.append(step)
        names.append(name)
        pending.append(iter(_same_value_steps(document, step)))
    return None
