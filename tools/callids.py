"""Tool call ids the gateway mints, so that a receipt verifies for one call only.

A receipt (tools/receipts.py) binds the tool, the `tool_call_id`, the arguments and
the content. That pins a result to its call only if call ids are unique, and many
upstreams do not make them so: the mock, and open-source servers that number calls
`call_0`, `call_1` in every reply. Two conversations asking the same question then
get the same id and arguments, and one conversation's receipted result (or an
earlier turn's) verifies as the other's own: a replay or a swap passes.

So every call to a registered tool that binds the request (tools/binding.py) leaves
the gateway under a fresh id, `call_` + 24 hex digits of `secrets`: the agent runs
the tool through the invoke proxy with that id, the receipt binds it, and no other
call anywhere can carry it. Upstreams treat call ids as opaque (they only require a
tool message to name an id of the assistant message before it), so the renamed
history the agent sends back is as valid upstream as the original. Calls to tools
that are not bound keep the upstream's id: nothing verifies them by receipt.

In a stream, a call's id arrives in its first delta (some servers repeat it in
every delta); `StreamCallIds` gives every delta of one call (choice index, call
index) the same minted id.
"""

from __future__ import annotations

import secrets
from typing import Any

from common.chat import tool_call_parts
from tools.binding import Bindings
from tools.shapes import as_dict, as_index, as_list

PREFIX = "call_"


def mint_call_id() -> str:
    return PREFIX + secrets.token_hex(12)


def _name(call: dict[str, Any]) -> Any:
    """The called tool's name: a function's or a custom tool's (a custom call to a
    bound name carries a receipt's call id like any other)."""
    return tool_call_parts(call)[0]


def rename_reply_calls(data: dict[str, Any], bindings: Bindings) -> bool:
    """Gives each bound call of a `chat.completion` body a minted id, in place.
    Returns whether anything changed."""
    renamed = False
    for choice in as_list(data.get("choices")):
        message = as_dict(as_dict(choice).get("message"))
        for call in as_list(message.get("tool_calls")):
            if isinstance(call, dict) and "id" in call and bindings.binds(_name(call)):
                call["id"] = mint_call_id()
                renamed = True
    return renamed


class StreamCallIds:
    """Renames the bound calls of one stream, chunk by chunk (one per stream)."""

    def __init__(self, bindings: Bindings) -> None:
        self.bindings = bindings
        self._minted: dict[tuple[int, int], str] = {}

    def rename(self, event: dict[str, Any]) -> bool:
        """Renames the call ids in one `chat.completion.chunk`, in place. Returns
        whether anything changed."""
        renamed = False
        for choice in as_list(event.get("choices")):
            choice = as_dict(choice)
            for call in as_list(as_dict(choice.get("delta")).get("tool_calls")):
                if not isinstance(call, dict) or not isinstance(call.get("id"), str):
                    continue
                key = (as_index(choice.get("index")), as_index(call.get("index")))
                minted = self._minted.get(key)
                if minted is None:
                    if not self.bindings.binds(_name(call)):
                        continue
                    minted = self._minted[key] = mint_call_id()
                call["id"] = minted
                renamed = True
        return renamed
