"""Fitting a conversation into a token budget by dropping its oldest turns.

Rules, in order:
- system and developer messages are never dropped;
- the last turn (the request being answered) is never dropped;
- an assistant message that called tools and the tool results answering it form
  one turn: they are dropped together or not at all (a model sees a tool result
  without its call as a protocol error, and most providers refuse it);
- the oldest droppable turn goes first, until the prompt fits.
If everything droppable is gone and the prompt still does not fit, there is no
truncation that helps: the caller rejects the request instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PINNED_ROLES = frozenset({"system", "developer"})


def turns(messages: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Indexes of `messages` grouped into turns (tool calls with their results)."""
    grouped: list[list[int]] = []
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        call_id = message.get("tool_call_id")
        if message.get("role") == "tool" and grouped and call_id in open_calls:
            grouped[-1].append(index)
            continue
        grouped.append([index])
        open_calls = {
            call["id"]
            for call in message.get("tool_calls") or []
            if isinstance(call, dict) and isinstance(call.get("id"), str)
        }
    return grouped


def truncate(
    messages: Sequence[dict[str, Any]], costs: Sequence[int], fixed: int, budget: int
) -> tuple[list[dict[str, Any]], int] | None:
    """(kept messages, messages dropped), or None if no truncation fits `budget`.

    `costs[i]` is message i's token count; `fixed` the tokens the messages do not
    account for (tool definitions, reply priming).
    """
    groups = turns(messages)
    total = fixed + sum(costs)
    dropped: set[int] = set()
    droppable = [
        group
        for group in groups[:-1]
        if not any(messages[i].get("role") in PINNED_ROLES for i in group)
    ]
    for group in droppable:
        if total <= budget:
            break
        dropped.update(group)
        total -= sum(costs[i] for i in group)
    if total > budget:
        return None
    return [m for i, m in enumerate(messages) if i not in dropped], len(dropped)
