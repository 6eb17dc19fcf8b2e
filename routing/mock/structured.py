"""`response_format`: the mock's text answers as JSON when the request asks for it.

- `{type: json_schema, json_schema: {name, schema, strict}}`: the content is an
  example of the schema (routing/mock/schema_example.py), the same generator that
  builds tool arguments, so `client.chat.completions.parse(response_format=Model)`
  gets a document its model accepts.
- `{type: json_object}`: the content is a JSON object. As on OpenAI, the messages
  must say "json" somewhere. Frameworks in this mode put the schema they want in
  the prompt (instructor's JSON mode, pydantic-ai's prompted output), so the
  first JSON Schema found in the system, developer or user messages is followed;
  without one the object is `{"answer": <the text answer>}`.
- `{type: text}` or none: plain text.

The Responses API's `text.format` reaches the mock as this field: the gateway
translates Responses requests to Chat Completions for chat upstreams.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from routing.mock.errors import MockError, invalid_value, missing
from routing.mock.schema_example import example_json
from routing.tokens import content_text

Json = dict[str, Any]

#: A prompt is searched this far for an embedded JSON Schema...
MAX_SCHEMA_SCAN_CHARS = 65_536
#: ...trying at most this many `{` as the start of one.
MAX_SCHEMA_CANDIDATES = 32
#: Keys that make a JSON object in a prompt a schema rather than example data.
_SCHEMA_KEYS = ("properties", "$defs", "definitions", "anyOf", "oneOf", "allOf")
_ROLES_SEARCHED = (("system", "developer"), ("user",))
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class OutputFormat:
    kind: Literal["json_object", "json_schema"]
    #: What the content must satisfy; None: any JSON object.
    schema: Json | None

    def render(self, text: str) -> str:
        """The answer's content: an example of the schema, or `text` wrapped."""
        if self.schema is not None:
            return example_json(self.schema)
        return orjson.dumps({"answer": text}).decode()


def read_format(body: Json) -> OutputFormat | None:
    """The request's output format, or None for plain text."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid_value("response_format", "expected an object.", "invalid_type")
    kind = fmt.get("type")
    if kind == "text":
        return None
    messages = body.get("messages") or []
    if kind == "json_object":
        if not _mentions_json(messages):
            raise MockError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "messages",
            )
        return OutputFormat("json_object", schema_in_prompt(messages))
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise missing("response_format.json_schema")
        if not isinstance(spec.get("name"), str):
            raise missing("response_format.json_schema.name")
        schema = spec.get("schema")
        return OutputFormat("json_schema", schema if isinstance(schema, dict) else None)
    if kind is None:
        raise missing("response_format.type")
    raise invalid_value(
        "response_format.type",
        f"'{kind}'. Supported values are: 'json_object', 'json_schema', and 'text'.",
    )


def schema_in_prompt(messages: Sequence[Any]) -> Json | None:
    """The first JSON Schema written into the system/developer, then user, messages."""
    for roles in _ROLES_SEARCHED:
        for message in messages:
            if isinstance(message, dict) and message.get("role") in roles:
                found = _schema_in(content_text(message.get("content"))[:MAX_SCHEMA_SCAN_CHARS])
                if found is not None:
                    return found
    return None


def _schema_in(text: str) -> Json | None:
    start = text.find("{")
    tried = 0
    while start != -1 and tried < MAX_SCHEMA_CANDIDATES:
        tried += 1
        try:
            value, end = _decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and (
            value.get("type") == "object" or any(key in value for key in _SCHEMA_KEYS)
        ):
            return value
        start = text.find("{", end)
    return None


def _mentions_json(messages: Sequence[Any]) -> bool:
    return any(
        isinstance(message, dict) and "json" in content_text(message.get("content")).lower()
        for message in messages
    )
