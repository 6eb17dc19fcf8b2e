"""What the mock reads from `messages`: the question, and where the agent loop is.

An agent loop is: the model calls tools, the client runs them and sends each
result back (`role: tool` with the call's `tool_call_id`, or for the deprecated
`functions` a `role: function` message), and the model answers. So a conversation
that ends in tool results is a loop about to end: the mock answers it (with text,
or with a framework's output tool) instead of calling a tool again, and agent loops
terminate.

Some frameworks keep the calls as text instead (smolagents writes the assistant turn
as "Calling tools: [{'id': 'call_...', ...}]" and sends the result as a user message,
"Observation: ..."). A user message right after an assistant message that quotes a
call id of the mock's own (`call_` and 24 hex digits, reply.py) is read as that
call's result the same way; its question is the user message before the call. Unless
the call was to a finishing tool (`final_answer`, tool_menu.py): that ended the run,
and what the user says next (smolagents sends it in the same message as the result)
is a new question.

A tool call left without its result is refused, as OpenAI refuses it: every
`tool_calls` message must be followed by one `role: tool` message per call before
anything else is said. That is the commonest agent-loop bug, and the mock is the
first model many loops meet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from routing.mock.errors import MockError
from routing.mock.tool_menu import is_finishing
from routing.tokens import content_text

#: The question is quoted this far in the mock's text answers.
QUESTION_CHARS = 120
#: Each tool result is quoted this far in the summary that ends an agent loop...
RESULT_CHARS = 200
#: ...and at most this many results are quoted (the rest are counted).
MAX_SUMMARISED_RESULTS = 8
#: At most this many unanswered call ids are named in the refusal.
MAX_NAMED_IDS = 5
#: The ids the mock gives its calls (reply.py's `CallReply.call_id`); OpenAI's mix cases.
_MOCK_CALL_ID = re.compile(r"\bcall_[0-9a-f]{24}\b")
#: The tool names in a call written as text (`'name': 'get_weather'`, JSON or Python).
_WRITTEN_NAME = re.compile(r"""["']name["']\s*:\s*["']([^"'\n]{1,64})["']""")
#: A first line that only labels what follows ("Observation:"), left out of a result.
_LABEL_LINE = re.compile(r"\A\s*[A-Za-z][A-Za-z ]{0,30}:[ \t]*\n")


@dataclass(frozen=True, slots=True)
class Conversation:
    #: The latest user message's text, whitespace collapsed, cut to QUESTION_CHARS.
    question: str
    #: The tool results the conversation ends with (empty: it ends otherwise).
    results: tuple[str, ...]

    @property
    def results_in(self) -> bool:
        return bool(self.results)


def read_conversation(messages: Sequence[Any]) -> Conversation:
    _check_calls_answered(messages)
    results: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") not in ("tool", "function"):
            break
        results.append(content_text(message.get("content")))
    results.reverse()
    asked = len(messages)  # the question is the last user message before this one
    if not results and _answers_a_written_call(messages):
        results.append(_LABEL_LINE.sub("", content_text(messages[-1].get("content")), count=1))
        asked -= 1
    question = ""
    for message in reversed(messages[:asked]):
        if isinstance(message, dict) and message.get("role") == "user":
            question = " ".join(content_text(message.get("content")).split())[:QUESTION_CHARS]
            break
    return Conversation(question, tuple(results))


def _answers_a_written_call(messages: Sequence[Any]) -> bool:
    """The conversation ends in a user message that follows an assistant message quoting
    one of the mock's call ids: a tool result sent back as text."""
    if len(messages) < 2:
        return False
    call, last = messages[-2], messages[-1]
    if not (
        isinstance(last, dict)
        and last.get("role") == "user"
        and isinstance(call, dict)
        and call.get("role") == "assistant"
    ):
        return False
    written = content_text(call.get("content"))
    if _MOCK_CALL_ID.search(written) is None:
        return False
    names = _WRITTEN_NAME.findall(written)
    return not names or not all(is_finishing(name, "") for name in names)


def summary(results: Sequence[str]) -> str:
    """The text that ends an agent loop: what the tools returned."""
    if len(results) == 1:
        return f"The tool returned: {results[0][:RESULT_CHARS]}"
    quoted = "; ".join(r[:RESULT_CHARS] for r in results[:MAX_SUMMARISED_RESULTS])
    more = len(results) - MAX_SUMMARISED_RESULTS
    tail = f"; and {more} more" if more > 0 else ""
    return f"The tools returned: {quoted}{tail}"


def _check_calls_answered(messages: Sequence[Any]) -> None:
    pending: dict[str, None] = {}  # an ordered set: ids named in the order called
    asked_at = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if isinstance(call_id, str):
                pending.pop(call_id, None)
            continue
        if pending:
            break
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    pending[call["id"]] = None
                    asked_at = index
    if pending:
        named = ", ".join(list(pending)[:MAX_NAMED_IDS])
        raise MockError(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {named}",
            f"messages.[{asked_at}].role",
        )
