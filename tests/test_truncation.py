"""Dropping the oldest turns to fit a token budget (`gateway.truncation`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.truncation import PINNED_ROLES, truncate, turns
from tests.examples import examples


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    groups: list[list[int]]  # the turns, as built
    costs: list[int]


def tool_turn(first_id: int, count: int, result_order: list[int]) -> list[dict[str, Any]]:
    ids = [f"call_{first_id + n}" for n in range(count)]
    calls = [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]
    assistant = {"role": "assistant", "content": None, "tool_calls": calls}
    return [assistant] + [
        {"role": "tool", "tool_call_id": ids[n], "content": "r"} for n in result_order
    ]


@st.composite
def turn_messages(draw: st.DrawFn, first_id: int) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["user", "assistant", "tools", "developer"]))
    if kind != "tools":
        return [{"role": kind, "content": "text"}]
    count = draw(st.integers(1, 3))
    return tool_turn(first_id, count, draw(st.permutations(range(count))))


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    messages: list[dict[str, Any]] = []
    groups: list[list[int]] = []
    units = [[{"role": "system", "content": "rules"}]] if draw(st.booleans()) else []
    for number in range(draw(st.integers(1, 10))):
        units.append(draw(turn_messages(first_id=number * 10)))
    for unit in units:
        groups.append(list(range(len(messages), len(messages) + len(unit))))
        messages.extend(unit)
    costs = draw(st.lists(st.integers(1, 40), min_size=len(messages), max_size=len(messages)))
    return Conversation(messages, groups, costs)


def is_droppable(conversation: Conversation, group: list[int]) -> bool:
    return group is not conversation.groups[-1] and not any(
        conversation.messages[i]["role"] in PINNED_ROLES for i in group
    )


def kept_indexes(messages: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[int]:
    position = {id(m): i for i, m in enumerate(messages)}
    return [position[id(m)] for m in kept]


@settings(max_examples=examples(300))
@given(conversation=conversations(), fixed=st.integers(0, 20), data=st.data())
def test_truncate_properties(conversation: Conversation, fixed: int, data: st.DataObject) -> None:
    messages, costs, groups = conversation.messages, conversation.costs, conversation.groups
    budget = data.draw(st.integers(0, fixed + sum(costs) + 10))
    assert turns(messages) == groups
    droppable = [g for g in groups if is_droppable(conversation, g)]
    floor = fixed + sum(costs) - sum(costs[i] for g in droppable for i in g)

    outcome = truncate(messages, costs, fixed, budget)
    if outcome is None:
        assert floor > budget
        return
    kept, dropped_count = outcome
    indexes = kept_indexes(messages, kept)
    kept_set = set(indexes)
    assert indexes == sorted(indexes)  # original order, no duplicates
    assert len(set(indexes)) == len(indexes)
    assert dropped_count == len(messages) - len(kept)
    assert fixed + sum(costs[i] for i in indexes) <= budget
    for group in groups:
        statuses = {i in kept_set for i in group}
        assert len(statuses) == 1  # a tool call and its results go together
        if not is_droppable(conversation, group):
            assert statuses == {True}
    dropped_groups = [g for g in droppable if g[0] not in kept_set]
    assert dropped_groups == droppable[: len(dropped_groups)]  # the oldest go first
    if dropped_groups:  # and no more than needed
        last = dropped_groups[-1]
        assert fixed + sum(costs[i] for i in indexes) + sum(costs[i] for i in last) > budget


def test_turns_group_tool_calls_with_their_results() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        *tool_turn(0, 2, [1, 0]),
        {"role": "tool", "tool_call_id": "call_9", "content": "orphan"},
        {"role": "assistant", "content": "a"},
        *tool_turn(5, 1, [0]),
    ]
    assert turns(messages) == [[0], [1], [2, 3, 4], [5], [6], [7, 8]]


def test_tool_result_after_another_message_starts_a_new_turn() -> None:
    messages = [*tool_turn(0, 2, [0]), {"role": "user", "content": "u"}, *tool_turn(0, 2, [1])[1:]]
    assert turns(messages) == [[0, 1], [2], [3]]


def test_fits_without_dropping() -> None:
    messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert truncate(messages, [5, 5], 2, 12) == (messages, 0)


def test_drops_oldest_turns_until_it_fits() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "old"},
        *tool_turn(0, 2, [0, 1]),
        {"role": "user", "content": "new"},
    ]
    costs = [1, 10, 5, 5, 5, 10]
    assert truncate(messages, costs, 3, 30) == ([messages[0], *messages[2:]], 1)
    assert truncate(messages, costs, 3, 14) == ([messages[0], messages[5]], 4)
    assert truncate(messages, costs, 3, 13) is None


def test_last_turn_is_kept_even_when_it_is_a_tool_turn() -> None:
    messages = [{"role": "user", "content": "u"}, *tool_turn(0, 2, [0, 1])]
    assert truncate(messages, [10, 1, 1, 1], 0, 3) == (messages[1:], 1)
    assert truncate(messages, [10, 1, 1, 1], 0, 2) is None
