"""A mock reply in the Chat Completions wire format: the message of a
`chat.completion` choice, and the deltas of a `chat.completion.chunk` stream.

Shapes, as OpenAI sends them:
- text: `{role, content}`; streamed as a role delta with empty content, then
  content pieces;
- a function call: `tool_calls: [{id, type: function, function: {name,
  arguments}}]` with `content: null`; streamed as the id and name with empty
  arguments, then argument pieces;
- a custom tool call: `tool_calls: [{id, type: custom, custom: {name, input}}]`,
  streamed like a function call with `custom.input` pieces (OpenAI's published
  chunk schema does not list this shape yet and the openai SDK's stream helper
  cannot assemble it; raw chunks and the gateway's assembler can);
- a legacy call (`functions` in the request): `function_call: {name, arguments}`,
  no id; streamed the same way under `function_call`.
"""

from __future__ import annotations

from typing import Any

from routing.mock.reply import Reply, TextReply

Json = dict[str, Any]


def message(reply: Reply, choice: int) -> Json:
    if isinstance(reply, TextReply):
        return {"role": "assistant", "content": reply.content}
    name = reply.tool.name
    if reply.legacy:
        function_call = {"name": name, "arguments": reply.payload}
        return {"role": "assistant", "content": None, "function_call": function_call}
    call: Json = {"id": reply.call_id(choice), "type": reply.tool.kind}
    if reply.tool.kind == "custom":
        call["custom"] = {"name": name, "input": reply.payload}
    else:
        call["function"] = {"name": name, "arguments": reply.payload}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def head_delta(reply: Reply, choice: int) -> Json:
    """The first delta of a choice: the role, and a call's id and name."""
    if isinstance(reply, TextReply):
        return {"role": "assistant", "content": ""}
    name = reply.tool.name
    if reply.legacy:
        return {
            "role": "assistant",
            "content": None,
            "function_call": {"name": name, "arguments": ""},
        }
    field, empty = ("custom", "input") if reply.tool.kind == "custom" else ("function", "arguments")
    head = {
        "index": 0,
        "id": reply.call_id(choice),
        "type": reply.tool.kind,
        field: {"name": name, empty: ""},
    }
    return {"role": "assistant", "content": None, "tool_calls": [head]}


def piece_delta(reply: Reply, piece: str) -> Json:
    if isinstance(reply, TextReply):
        return {"content": piece}
    if reply.legacy:
        return {"function_call": {"arguments": piece}}
    if reply.tool.kind == "custom":
        return {"tool_calls": [{"index": 0, "custom": {"input": piece}}]}
    return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
