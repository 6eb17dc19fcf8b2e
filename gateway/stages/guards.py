"""Prompt-size guards: a context explosion never reaches a provider.

Checks, per model group: the number of messages, the size of each tool result,
and the prompt's tokens (messages and tool definitions, counted with tiktoken)
against `max_prompt_tokens` (default: the smallest context window of the group's
deployments). An over-long prompt is rejected, sent to a
`context_window_fallbacks` group that can take it, or truncated, per the group's
`on_overflow`.

Counting is kept off the hot path: a prompt cannot have more tokens than its
request has bytes (every token covers at least one byte), so most requests are
cleared by that bound with no counting at all. Near the limit the exact count
runs, and for large prompts it runs in a worker thread (tiktoken releases the
GIL) so the event loop keeps serving other requests. A count made here is left in
`exchange.prompt_count` (`PromptCount`): the limits stage, right after this one,
reserves the same prompt's tokens and reads it instead of counting again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, NamedTuple

from common.headers import GUARD_HEADER
from gateway.errors import GatewayError
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from gateway.truncation import truncate
from routing.router import ModelGroup, Router
from routing.tokens import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    content_text,
    count_text,
    count_tools,
    encoding_for,
    encoding_loaded,
    encoding_name_for,
    load_encoding,
    message_tokens,
)
from routing.turn_counts import CallerCounts, TurnCounts
from tools.shapes import as_list

#: Prompts whose byte bound exceeds this are counted in a worker thread:
#: ~64 KiB of text is ~16k tokens, ~2.5 ms of tiktoken on this machine.
OFFLOAD_BYTES = 64 * 1024


class PromptCount(NamedTuple):
    """A prompt as counted (`count_prompt`), for the stages after the one that counted
    it (`exchange.prompt_count`). It stands for `messages`, the very list it counted:
    a stage that replaces `body["messages"]` (truncation, a continued conversation)
    makes it stale, and `tokens_of` then says so."""

    messages: list[Any]
    #: The tiktoken encoding it was counted with: a fallback to a group of another
    #: encoding counts again.
    encoding: str
    #: Messages, tool definitions and reply priming.
    tokens: int

    def tokens_of(self, body: Mapping[str, Any], model: str) -> int | None:
        """The count, if it is the count of `body` for `model`; else None."""
        if body.get("messages") is self.messages and encoding_name_for(model) == self.encoding:
            return self.tokens
        return None


def count_prompt(
    body: Mapping[str, Any], model: str, remembered: CallerCounts | None = None
) -> tuple[list[int], int]:
    """(tokens per message, tokens outside the messages: tool definitions, priming).
    With the caller's `remembered` counts, the messages before the last (the
    conversation so far) and the tool definitions, which an agent sends again every
    turn, are counted once per caller."""
    encoding = encoding_for(model)
    messages = body["messages"]
    if remembered is None or len(messages) < 2:
        costs = [message_tokens(m, encoding) for m in messages]
    else:
        count = remembered.count
        costs = [message_tokens(m, encoding, count) for m in messages[:-1]]
        costs.append(message_tokens(messages[-1], encoding))
    # Every tool definition the model is shown: `tools`, and the legacy `functions`.
    offered = [*as_list(body.get("tools")), *as_list(body.get("functions"))]
    counter = count_text if remembered is None else remembered.count
    return costs, REPLY_PRIMING_TOKENS + count_tools(offered, encoding, counter)


async def count_prompt_off_loop(
    body: Mapping[str, Any], model: str, remembered: CallerCounts | None, *, big: bool
) -> tuple[list[int], int]:
    """`count_prompt`, in a worker thread for a `big` prompt (tiktoken releases the
    GIL, so the event loop keeps serving); a small one counts on the loop, once the
    encoding is loaded (a backstop: the Runtime loads it before serving)."""
    if big:
        return await asyncio.to_thread(count_prompt, body, model, remembered)
    if not encoding_loaded(model):
        await load_encoding(model)
    return count_prompt(body, model, remembered)


def remembered_counts(turns: TurnCounts | None, exchange: Exchange) -> CallerCounts | None:
    """The counts remembered for this request's caller (its key's identity; one
    caller for a gateway without keys). None for a prompt of one message without
    tools: only messages before the last, and tool definitions, are remembered."""
    if turns is None:
        return None
    body = exchange.body
    if len(body["messages"]) < 2 and not (body.get("tools") or body.get("functions")):
        return None
    return turns.of(exchange.identity)


class PromptGuard:
    def __init__(
        self,
        router: Router,
        limits: Mapping[str, int | None],
        events: Events,
        turns: TurnCounts | None = None,
    ) -> None:
        self.router = router
        self.limits = limits
        self.events = events
        #: Earlier turns' counts per caller, shared with the limits stage.
        self.turns = turns

    def _refuse(self, exchange: Exchange, kind: str, error: GatewayError) -> GatewayError:
        group = exchange.group.name if exchange.group else None
        self.events.emit(GuardEvent(kind, "reject", group, detail=error.message))
        return error

    async def __call__(self, exchange: Exchange) -> None:
        group = exchange.group
        assert group is not None
        config = group.config
        messages = exchange.body["messages"]
        if len(messages) > config.max_messages:
            raise self._refuse(
                exchange,
                "too_many_messages",
                GatewayError(
                    400,
                    f"The request has {len(messages)} messages; model group '{group.name}' "
                    f"accepts at most {config.max_messages} (max_messages).",
                    code="too_many_messages",
                    param="messages",
                ),
            )
        self._check_tool_messages(exchange, messages, config.max_tool_message_bytes)
        limit = self.limits.get(group.name)
        identity = exchange.identity
        cap = identity.permissions.max_prompt_tokens if identity is not None else None
        if cap is not None and (limit is None or cap < limit):
            limit = cap  # the tenant's cap (caps.max_prompt_tokens) is the tighter one
        if limit is None:
            return
        # The body's bytes bound its text's tokens; a continued conversation's are in
        # `history_bytes` (its stored items), not in `raw`.
        text_bytes = len(exchange.raw) + exchange.history_bytes
        bound = text_bytes + (TOKENS_PER_MESSAGE + 1) * len(messages) + REPLY_PRIMING_TOKENS
        if bound <= limit:
            return
        model = group.deployments[0].config.model
        remembered = remembered_counts(self.turns, exchange)
        costs, fixed = await count_prompt_off_loop(
            exchange.body, model, remembered, big=bound > OFFLOAD_BYTES
        )
        tokens = fixed + sum(costs)
        exchange.prompt_count = PromptCount(
            exchange.body["messages"], encoding_name_for(model), tokens
        )
        if tokens <= limit:
            return
        await self._overflow(exchange, group, tokens, limit, costs, fixed)

    def _check_tool_messages(
        self, exchange: Exchange, messages: list[dict[str, Any]], limit: int
    ) -> None:
        for index, message in enumerate(messages):
            if message.get("role") != "tool":
                continue
            text = content_text(message.get("content"))
            # A character is at most 4 UTF-8 bytes: most results need no encoding.
            if len(text) * 4 > limit and len(text.encode()) > limit:
                raise self._refuse(
                    exchange,
                    "tool_message_too_large",
                    GatewayError(
                        400,
                        f"The tool result in messages[{index}] is {len(text.encode())} bytes; "
                        f"the limit is {limit} (max_tool_message_bytes).",
                        code="tool_message_too_large",
                        param=f"messages[{index}].content",
                    ),
                )

    async def _overflow(
        self,
        exchange: Exchange,
        group: ModelGroup,
        tokens: int,
        limit: int,
        costs: list[int],
        fixed: int,
    ) -> None:
        action = group.config.on_overflow
        if action == "fallback":
            identity = exchange.identity
            for name in group.config.context_window_fallbacks:
                if identity is not None and not identity.may_use_model(name):
                    continue
                target_limit = self.limits.get(name)
                cap = identity.permissions.max_prompt_tokens if identity is not None else None
                if cap is not None and (target_limit is None or cap < target_limit):
                    target_limit = cap
                target = self.router.group(name)
                if target is not None and (target_limit is None or tokens <= target_limit):
                    exchange.group = target
                    exchange.headers[GUARD_HEADER] = (
                        f"fallback {group.name}>{name} ({tokens} tokens)"
                    )
                    self.events.emit(
                        GuardEvent(
                            "prompt_too_large",
                            "fallback",
                            group.name,
                            detail=f"{tokens} > {limit}, to {name}",
                        )
                    )
                    return
        elif action == "truncate":
            kept = truncate(exchange.body["messages"], costs, fixed, limit)
            if kept is not None:
                messages, dropped = kept
                exchange.body["messages"] = messages
                exchange.headers[GUARD_HEADER] = f"truncated {dropped} messages ({tokens} tokens)"
                self.events.emit(
                    GuardEvent(
                        "prompt_too_large",
                        "truncate",
                        group.name,
                        detail=f"{tokens} > {limit}, dropped {dropped}",
                    )
                )
                return
        raise self._refuse(
            exchange,
            "prompt_too_large",
            GatewayError(
                400,
                f"This request's prompt is {tokens} tokens (messages and tool definitions), over "
                f"the limit of {limit} for model group '{group.name}' (max_prompt_tokens).",
                code="context_length_exceeded",
                param="messages",
            ),
        )
