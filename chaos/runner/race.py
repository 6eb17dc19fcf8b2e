"""Agent conversations racing on one tool, some of them cheating (`tool_race:<role>`).

Each conversation is an agent loop of two turns with the experiment's tool: ask the
model (which answers with a call to the offered tool), run the call through the
invoke proxy, send the result back with its receipt, read the model's answer; then
ask again. Every conversation asks the same questions, so the model's tool call ids
collide across conversations on purpose (the mock derives an id from the
conversation so far, as a model numbering its calls `call_1` would repeat it): a
result from another conversation then answers a call with the same tool, the same
id and the same arguments, and only something bound to the conversation itself
could tell it apart. Honest turns keep their results, receipts included, in the
history, as agents do, so the gateway verifies them again on the next turn.

On its last turn a conversation plays its role:

- `genuine`: sends its own result, as the invoke proxy returned it;
- `replay`: sends another conversation's result (content and receipt) for its own
  call, without running the call;
- `duplicate`: runs its call and sends the result twice (two `role: tool` messages
  for one call);
- `swap`: two conversations run side by side, both run their calls, then each sends
  the other's result;
- `earlier_turn`: sends its first turn's result for the new call, without running it.

Each result a cheat sends is judged by the gateway's answer (`judge`): refused,
flagged, passed or failed. A genuine conversation succeeds only if every step is
2xx and nothing is flagged: a flag on an honest result is a false positive.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from chaos.runner.replies import CHAT_PATH, Outcome, Reply, call_arguments, tool_calls
from chaos.runner.samples import (
    FAILED,
    FLAGGED,
    FLAGGED_CODE,
    PASSED,
    REFUSED,
    TIMEOUT,
    TRANSPORT,
)
from chaos.runner.schema import RACE_GENUINE
from common.headers import VIOLATIONS_HEADER

#: The questions of a conversation's turns; the last turn is where a cheat cheats.
QUESTIONS = ("What is the weather in Oslo?", "And what will it be like tomorrow?")
#: The gateway's codes for a refused tool result: receipt, or duplicate/unmatched/schema.
CAUGHT_CODES = frozenset({"tool_result_forged", "tool_result_invalid"})
#: Client-side codes for a conversation that could not play its role.
NO_TOOL_CALL = "no_tool_call"
NO_RESULT_TO_REPLAY = "race_no_result_to_replay"
NO_PARTNER = "race_swap_partner_failed"

#: Request headers for each step of a request ("call"; tool rounds and tool-race
#: conversations also "invoke" and "reply").
StepHeaders = Callable[[str], dict[str, str]]
#: POST `path` with these headers and keyword arguments for httpx, as a Reply.
Post = Callable[..., Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Invoked:
    """A result as the invoke proxy returned it, and where it came from."""

    conversation: int
    turn: int
    call_id: str
    content: Any
    receipt: Any

    def message(self, call_id: str) -> dict[str, Any]:
        """The `role: tool` message that sends this result as the answer to `call_id`."""
        return {
            "role": "tool",
            "tool_call_id": call_id,
            "content": self.content,
            "seawall_receipt": self.receipt,
        }


class Board:
    """The latest result each turn produced, for replays: what a cheating agent
    could pick up from another (a shared cache, a log, a neighbour's traffic)."""

    def __init__(self) -> None:
        self._latest: dict[int, Invoked] = {}
        self._changed = asyncio.Condition()

    async def post(self, invoked: Invoked) -> None:
        async with self._changed:
            self._latest[invoked.turn] = invoked
            self._changed.notify_all()

    async def other(self, turn: int, conversation: int, timeout_s: float) -> Invoked | None:
        """The latest result of `turn` from another conversation, waiting up to
        `timeout_s` for one; None if none came."""

        def found() -> bool:
            latest = self._latest.get(turn)
            return latest is not None and latest.conversation != conversation

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(found), timeout_s)
            except TimeoutError:
                return None
            return self._latest[turn]


class Swap:
    """Two conversations handing each other their last result. A side that fails
    before it has one gives None, so its partner never waits for nothing."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._results: tuple[asyncio.Future[Invoked | None], ...] = (
            loop.create_future(),
            loop.create_future(),
        )

    def give(self, side: int, invoked: Invoked | None) -> None:
        if not self._results[side].done():
            self._results[side].set_result(invoked)

    async def take(self, side: int) -> Invoked | None:
        return await self._results[1 - side]


def violation_kinds(header: str | None) -> list[str]:
    """`x-seawall-tool-violations: tool:kind:where, ...` -> the kinds, sorted."""
    entries = (entry.strip().split(":") for entry in (header or "").split(","))
    return sorted({parts[1] for parts in entries if len(parts) >= 2})


def judge(reply: Reply) -> str:
    """How a cheating result fared, from the gateway's answer to it."""
    if 200 <= reply.status < 300:
        kinds = violation_kinds(reply.headers.get(VIOLATIONS_HEADER))
        return f"{FLAGGED}:{'+'.join(kinds)}" if kinds else PASSED
    if reply.code in CAUGHT_CODES:
        return f"{REFUSED}:{reply.code}"
    return f"{FAILED}:{reply.code}"


class ToolRace:
    """Runs `tool_race` conversations against one tool; one `Board` for them all."""

    def __init__(
        self, post: Post, model: str, tool: str, tools: list[dict[str, Any]], timeout_s: float
    ) -> None:
        self.post = post
        self.model = model
        self.tool = tool
        self.tools = tools
        #: How long a replay waits for another conversation's result.
        self.timeout_s = timeout_s
        self.board = Board()
        self._numbers = itertools.count(1)

    def number(self) -> int:
        return next(self._numbers)

    async def run(self, role: str, headers: StepHeaders, outcome: Outcome) -> None:
        """One conversation of `role` (a swap: two), recorded into `outcome`."""
        if role != "swap":
            await Conversation(self, role, headers, outcome).run()
            return
        swap = Swap()
        partner = Outcome()
        ran = await asyncio.gather(
            Conversation(self, role, headers, outcome, swap, 0).run(),
            Conversation(self, role, headers, partner, swap, 1).run(),
            return_exceptions=True,
        )
        outcome.merge(partner)
        for result in ran:
            if isinstance(result, BaseException):
                raise result


class Conversation:
    """One agent's conversation: its history, its first result, its role."""

    def __init__(
        self,
        race: ToolRace,
        role: str,
        headers: StepHeaders,
        outcome: Outcome,
        swap: Swap | None = None,
        side: int = 0,
    ) -> None:
        self.race = race
        self.role = role
        self.headers = headers
        self.outcome = outcome
        self.swap = swap
        self.side = side
        self.number = race.number()
        self.messages: list[dict[str, Any]] = []
        self.first: Invoked | None = None

    async def run(self) -> None:
        try:
            await self._turns()
        finally:
            if self.swap is not None:
                self.swap.give(self.side, None)

    async def _turns(self) -> None:
        for turn, question in enumerate(QUESTIONS):
            self.messages.append({"role": "user", "content": question})
            call = await self._ask()
            if call is None:
                return
            cheating = turn == len(QUESTIONS) - 1 and self.role != RACE_GENUINE
            if cheating:
                results = await self._cheat(turn, call)
                if results is not None:
                    await self._send_cheat(results)
                return
            invoked = await self._invoke(turn, call)
            if invoked is None:
                return
            self.first = self.first or invoked
            results = [invoked.message(call["id"])]
            reply = await self._send(results)
            if not self.outcome.ok:
                return
            self.messages += [*results, _answer(reply)]

    async def _ask(self) -> dict[str, Any] | None:
        """The model's call for this turn (its first), now in the history."""
        body = {"model": self.race.model, "messages": self.messages, "tools": self.race.tools}
        reply = await self.race.post(CHAT_PATH, self.headers("call"), json=body)
        self.outcome.observe(reply)
        if reply.status != 200:
            return None
        calls = [c for c in tool_calls(reply.body) if isinstance(c.get("id"), str)]
        if not calls:
            self.outcome.ok, self.outcome.code = False, NO_TOOL_CALL
            return None
        call = calls[0]
        self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        return call

    async def _invoke(self, turn: int, call: dict[str, Any]) -> Invoked | None:
        reply = await self.race.post(
            f"/v1/tools/{self.race.tool}/invoke",
            self.headers("invoke"),
            json={"tool_call_id": call["id"], "arguments": call_arguments(call)},
        )
        self.outcome.observe(reply)
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict):
            return None
        invoked = Invoked(self.number, turn, call["id"], body.get("content"), body.get("receipt"))
        await self.race.board.post(invoked)
        return invoked

    async def _cheat(self, turn: int, call: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The tool messages this role sends instead of its own result, once."""
        call_id = call["id"]
        if self.role == "replay":
            donor = await self.race.board.other(turn, self.number, self.race.timeout_s)
            if donor is None:
                self.outcome.ok, self.outcome.code = False, NO_RESULT_TO_REPLAY
                return None
            return [donor.message(call_id)]
        if self.role == "earlier_turn":
            assert self.first is not None  # the first turn was honest and succeeded
            return [self.first.message(call_id)]
        invoked = await self._invoke(turn, call)
        if self.role == "duplicate":
            return None if invoked is None else [invoked.message(call_id)] * 2
        assert self.swap is not None, f"unknown role {self.role!r}"
        self.swap.give(self.side, invoked)
        partner = await self.swap.take(self.side)
        if invoked is None:
            return None
        if partner is None:
            self.outcome.ok, self.outcome.code = False, NO_PARTNER
            return None
        return [partner.message(call_id)]

    async def _send(self, results: list[dict[str, Any]]) -> Reply:
        """The history plus `results`; a 2xx answer with violations is not a success."""
        body = {
            "model": self.race.model,
            "messages": [*self.messages, *results],
            "tools": self.race.tools,
        }
        reply = await self.race.post(CHAT_PATH, self.headers("reply"), json=body)
        self.outcome.observe(reply)
        if self.outcome.ok and reply.headers.get(VIOLATIONS_HEADER):
            self.outcome.ok, self.outcome.code = False, FLAGGED_CODE
        return reply

    async def _send_cheat(self, results: list[dict[str, Any]]) -> None:
        try:
            reply = await self._send(results)
        except httpx.TimeoutException:
            self.outcome.cheats.append(f"{FAILED}:{TIMEOUT}")
            raise
        except httpx.TransportError:
            self.outcome.cheats.append(f"{FAILED}:{TRANSPORT}")
            raise
        self.outcome.cheats.append(judge(reply))


def _answer(reply: Reply) -> dict[str, Any]:
    """The model's answer to a turn, as the history keeps it."""
    try:
        message = reply.body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        message = None
    if not isinstance(message, dict):
        return {"role": "assistant", "content": ""}
    return {"role": "assistant", "content": message.get("content") or ""}
