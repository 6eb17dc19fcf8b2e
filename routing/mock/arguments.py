"""A call's arguments where a schema's bare example would stall an agent loop.

The example of a tool's schema (schema_example.py) is valid and says nothing:
`"example to_agent"` is a string, and no agent has that name, so llama-index's
handoff refuses it and the run ends without the agent it was routed to. A model
reads the tool's description and the conversation; the mock does the little of that
which agent loops depend on, for the top-level properties of a function's arguments:

- a finishing tool's answer (`answer`, `result`, `response`..., or its only
  property when that is a string) is the text the mock would otherwise have
  answered (the summary of the tool results, or its reply to the question), so the
  framework's final answer says what the tools returned;
- a free string that names a participant (`to_agent`, `recipient`, `coworker`...)
  is one of the names the tool's description lists, the way handoff tools list the
  agents they can hand off to ("{'forecaster': 'Knows the weather'}", "- writer: ...");
- a free string whose own description names values ("'celsius' or 'fahrenheit'",
  'e.g. "Oslo"') is one of those;
- an `enum` keeps its values.

Among the candidates the one the conversation's question names wins, else the first
named. A value that would break the property's schema (a length limit) leaves the
example in place, and so does a property with a `pattern` or `format`. Same request,
same arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from routing.mock.schema_example import example_json
from routing.mock.tool_menu import OfferedTool

Json = dict[str, Any]

#: A name or value quoted in a description: 'x', "x" or `x`.
_QUOTED = re.compile(r"""'([^'\n]{1,64})'|"([^"\n]{1,64})"|`([^`\n]{1,64})`""")
#: A list item that names something: "- writer: drafts text", "* Senior Researcher",
#: "writer: drafts text" (a name of one word when there is no bullet).
_LISTED = re.compile(
    r"^[ \t]*(?:[-*•][ \t]+([^:\n]{1,40}?)[ \t]*(?::|$)|([A-Za-z_][\w.-]{0,63}):[ \t]+\S)",
    re.MULTILINE,
)
#: A bulleted item longer than this many words is a sentence, not a name.
MAX_NAME_WORDS = 4
#: Words of a property's name that make it name a participant of the conversation.
PARTICIPANT_WORDS = frozenset(
    {"agent", "assistant", "coworker", "worker", "expert", "specialist", "recipient"}
    | {"target", "speaker", "member", "delegate", "handoff", "destination"}
)
#: Names of a finishing tool's property that carry the answer itself.
ANSWER_NAMES = frozenset(
    {"answer", "final_answer", "result", "response", "output", "text", "content"}
    | {"message", "reply", "summary"}
)
_NAME_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
#: Keywords that constrain a string beyond its length: such a property keeps its example.
_SHAPED = ("enum", "const", "pattern", "format")
#: A candidate shorter than this is not looked for in the question: "a" or "c" (an enum
#: of units) would be found in any sentence.
MIN_NAMED_CHARS = 3


def arguments(tool: OfferedTool, question: str, answer: str) -> str:
    """The JSON text of a call to function `tool`: its schema's example, with the
    properties above filled from its description, the `question` and the `answer`
    the mock would have given in text."""
    schema = tool.parameters or {"type": "object"}
    example = example_json(schema)
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return example
    value = orjson.loads(example)
    if not isinstance(value, dict):
        return example
    changed = False
    alone = len(properties) == 1
    for key, sub in properties.items():
        if key not in value or not isinstance(sub, dict):
            continue
        chosen = _chosen(tool, key, sub, alone, question, answer)
        if chosen is not None and chosen != value[key] and _fits(chosen, sub):
            value[key] = chosen
            changed = True
    return orjson.dumps(value).decode() if changed else example


def _chosen(
    tool: OfferedTool, key: str, sub: Json, alone: bool, question: str, answer: str
) -> str | None:
    if isinstance(sub.get("enum"), list):
        named = [option for option in sub["enum"] if isinstance(option, str)]
        return _named_in(named, question)  # None keeps the example: the first value
    if not _free_string(sub):
        return None
    if tool.is_output and (alone or key in ANSWER_NAMES):
        return answer
    own = sub.get("description")
    if _names_a_participant(key):
        listed = list(_candidates(tool.description))
        if listed:
            return _named_in(listed, question) or listed[0]
    if isinstance(own, str):
        quoted = list(_candidates(own, listed=False))
        if quoted:
            return _named_in(quoted, question) or quoted[0]
    return None


def _free_string(schema: Any) -> bool:
    if not isinstance(schema, dict) or any(key in schema for key in _SHAPED):
        return False
    kind = schema.get("type")
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _names_a_participant(key: str) -> bool:
    return any(word.lower() in PARTICIPANT_WORDS for word in _NAME_WORDS.split(key))


def _candidates(text: str, *, listed: bool = True) -> Iterator[str]:
    """The names `text` quotes or lists, in the order written, each once."""
    found: list[tuple[int, str]] = []
    for match in _QUOTED.finditer(text):
        found.append((match.start(), next(group for group in match.groups() if group)))
    if listed:
        for match in _LISTED.finditer(text):
            name = (match.group(1) or match.group(2)).strip()
            if len(name.split()) <= MAX_NAME_WORDS:
                found.append((match.start(), name))
    seen: set[str] = set()
    for _, name in sorted(found):
        if name and name not in seen:
            seen.add(name)
            yield name


def _named_in(candidates: Sequence[str], question: str) -> str | None:
    """The first candidate the question names as a word of its own."""
    lowered = question.lower()
    for candidate in candidates:
        if len(candidate) >= MIN_NAMED_CHARS and re.search(
            rf"(?<!\w){re.escape(candidate.lower())}(?!\w)", lowered
        ):
            return candidate
    return None


def _fits(value: str, schema: Json) -> bool:
    least, most = schema.get("minLength"), schema.get("maxLength")
    return not (
        (isinstance(least, int) and len(value) < least)
        or (isinstance(most, int) and len(value) > most)
    )
