"""What the mock answers: text, or a call to one tool, decided from the request alone.

The rules, so that agent frameworks see the behaviour they were built against:
- no tools offered, or `tool_choice: none`: text;
- tools offered and the conversation does not end in tool results: call one, the
  first allowed tool that does some work (a function, then a custom tool) before
  a framework's output tool (`final_result`, tool_menu.py);
- the conversation ends in tool results (an agent loop's last step; results sent
  back as user messages count, conversation.py): call the output tool when one is
  allowed (pydantic-ai's `final_result`, smolagents' `final_answer` and their kin,
  tool_menu.py: their runs end that way); otherwise text summarising the results,
  unless `tool_choice` forces a call (`required`, or a named tool: instructor forces
  its response-model tool and asks again after a validation error), in which case
  that call is made again.

A text answer follows `response_format` (structured.py). Function arguments are an
example of the tool's schema, with the names its description offers and the text
answer a finishing tool carries filled in (arguments.py); a custom tool gets the
question as its free-text input (grammars are not solved). Same request, same answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from routing.mock.arguments import arguments
from routing.mock.conversation import Conversation, read_conversation, summary
from routing.mock.errors import MockError
from routing.mock.structured import read_format
from routing.mock.tool_menu import OfferedTool, ToolMenu, read_menu

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextReply:
    content: str


@dataclass(frozen=True, slots=True)
class CallReply:
    tool: OfferedTool
    #: Function arguments (JSON text), or a custom tool's input.
    payload: str
    #: Answer in the deprecated `function_call` form (the request used `functions`).
    legacy: bool
    #: Where the call ids come from: a digest of the conversation and the tool.
    seed: str

    def call_id(self, choice: int) -> str:
        """The id of this call in choice `choice`: stable, and distinct per choice."""
        if choice == 0:
            return "call_" + self.seed[:24]
        return "call_" + hashlib.sha256(f"{self.seed}:{choice}".encode()).hexdigest()[:24]


Reply = TextReply | CallReply


def decide(body: Json, model: str) -> Reply:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MockError(400, "messages must be a non-empty array", "messages")
    conversation = read_conversation(messages)
    menu = read_menu(body)
    output = read_format(body)
    tool = _pick(menu, conversation) if menu is not None else None
    if conversation.results_in:
        text = summary(conversation.results)
    else:
        text = f"This is a mock reply from {model} to: {conversation.question}"
    if tool is not None:
        assert menu is not None
        return _call(tool, menu.legacy, messages, conversation, text)
    return TextReply(output.render(text) if output is not None else text)


def _pick(menu: ToolMenu, conversation: Conversation) -> OfferedTool | None:
    if menu.mode == "none" or not menu.tools:
        return None
    if conversation.results_in:
        for tool in menu.tools:
            if tool.is_output:
                return tool
        if menu.mode == "auto":
            return None
    for kind in ("function", "custom"):
        for tool in menu.tools:
            if tool.kind == kind and not tool.is_output:
                return tool
    return menu.tools[0]


def _call(
    tool: OfferedTool, legacy: bool, messages: list[Any], conversation: Conversation, text: str
) -> CallReply:
    """A call to `tool`; `text` is what the mock would have answered instead."""
    if tool.kind == "custom":
        payload = conversation.question or f"example input for {tool.name}"
    else:
        payload = arguments(tool, conversation.question, text)
    seed = hashlib.sha256(repr((messages, tool.name)).encode()).hexdigest()
    return CallReply(tool, payload, legacy, seed)
