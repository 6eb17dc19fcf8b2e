"""Regenerates `openai_responses_2.3.0.json`: the Responses schemas of OpenAI's OpenAPI
document that the conformance tests (tests/test_responses_conformance.py) validate
every shape the gateway emits against.

    python tests/data/vendor_openai_responses.py OPENAPI_JSON COMMIT LICENSE \
        > tests/data/openai_responses_2.3.0.json

`OPENAPI_JSON` and `LICENSE` are files of a checkout of github.com/openai/openai-openapi
(MIT) at `COMMIT`. Kept: every schema the roots below reach through `$ref`, with what
only documents (descriptions, titles, examples, `x-*` extensions) removed; nothing a
validator reads is changed. A copy rather than a fetch: the suite runs offline, and a
test must not change because the document did.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: What the gateway emits: a Response (the object, the stored copy, and inside
#: `response.*` events), every stream event, an `input_items` page, an error; and the
#: input item forms a client sends (item references among them).
ROOTS = ("Response", "ResponseStreamEvent", "ResponseItemList", "ErrorResponse", "InputItem")
#: Keys that only document. `format` is kept (`unixtime` is informative; validators
#: ignore formats they do not know).
DROPPED = frozenset({"description", "title", "example", "examples", "deprecated", "default"})


def strip(node: Any, in_properties: bool = False) -> Any:
    """`node` without documentation keys; a `properties` map's keys are property
    names (a tool's `description` property stays)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if not in_properties and (key in DROPPED or key.startswith("x-")):
                continue
            out[key] = strip(value, key == "properties" and not in_properties)
        return out
    if isinstance(node, list):
        return [strip(value) for value in node]
    return node


def reachable(schemas: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack = [schemas[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    todo.append(ref.rsplit("/", 1)[-1])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return sorted(seen)


def main(openapi_path: str, commit: str, licence_path: str) -> None:
    with open(openapi_path) as f:
        document = json.load(f)
    with open(licence_path) as f:
        licence = f.read()
    schemas = document["components"]["schemas"]
    kept = {name: strip(schemas[name]) for name in reachable(schemas, ROOTS)}
    out = {
        "source": "https://github.com/openai/openai-openapi openapi.json",
        "version": document["info"]["version"],
        "commit": commit,
        "licence": licence,
        "note": "Schemas reachable from " + ", ".join(ROOTS) + "; descriptions, titles, "
        "examples, defaults and x- extensions removed (tests/data/vendor_openai_responses.py).",
        "components": {"schemas": kept},
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
