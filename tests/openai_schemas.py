"""OpenAI's published Responses schemas (openai-openapi 2.3.0, vendored in tests/data),
as validators for what the gateway emits.

`check(value, "Response")` raises `AssertionError` listing every violation (path and
message), not the first one: a conformance failure says all that is wrong at once.
A stream event is checked against the event schema its `type` names
(`check_event`), not against `ResponseStreamEvent`'s `anyOf` of fifty events, whose
failure would only say that none of them matched.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PATH = Path(__file__).parent / "data" / "openai_responses_2.3.0.json"
BASE = "https://seawall.test/openai-openapi-2.3.0.json"


@cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PATH.read_text())
    return data


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    resource = Resource.from_contents(
        {"components": document()["components"]}, default_specification=DRAFT202012
    )
    return Registry().with_resource(BASE, resource)


@cache
def validator(name: str) -> Draft202012Validator:
    schema = {"$ref": f"{BASE}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry())


@cache
def event_schemas() -> dict[str, str]:
    """Stream event type (`response.output_text.delta`) -> its schema's name."""
    schemas = document()["components"]["schemas"]
    out = {}
    for branch in schemas["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[-1]
        for kind in schemas[name]["properties"]["type"].get("enum", ()):
            out[kind] = name
    return out


def problems(value: Any, name: str) -> list[str]:
    """Every violation of schema `name` by `value`, deepest first."""
    errors = sorted(validator(name).iter_errors(value), key=lambda e: -len(e.absolute_path))
    out = []
    for error in errors:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        detail = error.message if len(error.message) < 300 else error.message[:300] + "..."
        out.append(f"{name} at {where}: {detail}")
        for sub in _branch_errors(error)[:6]:
            sub_where = "/".join(str(p) for p in sub.absolute_path) or "(root)"
            out.append(f"    {sub_where}: {sub.message[:200]}")
    return out


def _branch_errors(error: ValidationError) -> list[ValidationError]:
    """Why the branches of a failed `oneOf`/`anyOf` failed, leaving out the branches
    whose `type` discriminator does not match (a function tool is not a web search
    tool: saying so fifty times hides the one branch that matters)."""
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    out = []
    for subs in branches.values():
        if any(
            sub.validator in ("enum", "const") and list(sub.absolute_path)[-1:] == ["type"]
            for sub in subs
        ):
            continue
        out.extend(subs)
    return sorted(out, key=lambda e: -len(e.absolute_path))


def check(value: Any, name: str) -> None:
    found = problems(value, name)
    assert not found, "\n".join(found)


def check_event(event: dict[str, Any]) -> str:
    """Checks one stream event against its own schema; returns the schema's name."""
    kind = event.get("type")
    name = event_schemas().get(str(kind))
    assert name is not None, f"no event of type {kind!r} in the document"
    check(event, name)
    return name
