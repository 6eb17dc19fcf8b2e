"""An agent whose tools are behind `/mcp` (`mcp_agent`): MCP results back to the model.

The other request kinds reach tools through the invoke proxy; this one is the loop
an MCP agent runs, and the only way to see what the gateway does with an MCP
result once the agent shows it to the model. One conversation, in one MCP session:

1. `initialize` on `/mcp`, then `tools/list`, and the experiment's tool offered to
   the model with the `inputSchema` the server listed (as MCP clients do);
2. per question: ask the model (it answers with a call), run the call with
   `tools/call` on `/mcp`, send the result back through `/v1/chat/completions`
   with its receipt (`_meta.seawall_receipt`), read the answer.

Every question names another city, so every call has other arguments (the demo
server, chaos/demo_mcp.py, lists the cities the mock model picks from).

Header faults reach the `/mcp` requests as the `invoke` step, the model calls as
`call` and `reply`. A result is *forged* when the `/mcp` answer says a fault
rewrote it after the gateway sealed it: `forge_tool` (use `mode=wrong`: the other
modes act before the seal, so the gateway serves an honest tool error or flags
an injection), or `mcp_wrong_call` when the session's previous call had other
arguments (the fault serves that call's sealed result; on a session's first call
there is none, and the result served is genuine). Each forged result sent must be
refused (or flagged): its verdict goes with the tool-race cheats
(`cheat_detection_rate`), and the agent then drops that question and asks the
next, as an agent told its tool result was refused would. Each genuine result
must be served cleanly (2xx, no `x-seawall-tool-violations`): its verdict goes to
`genuine_served_rate`. The conversation succeeds when every result fared as it
should.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from chaos.runner.race import StepHeaders, judge
from chaos.runner.replies import CHAT_PATH, Outcome, Reply, call_arguments, tool_calls
from chaos.runner.samples import (
    FAILED,
    FLAGGED,
    REFUSED,
    SERVED,
    cheat_verdict,
    fault_of,
    parse_injected,
)
from common.headers import INJECTED_HEADER, VIOLATIONS_HEADER

MCP_PATH = "/mcp"
PROTOCOL_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
SESSION_HEADER = "mcp-session-id"
#: One question per turn, each naming another city (so each call has other arguments).
QUESTIONS = (
    "What is the weather in Oslo?",
    "And what about Lima?",
    "How is it in Pune?",
    "And in Quito?",
)
#: Faults that rewrite a served result after the gateway sealed it.
FORGE = "forge_tool"
WRONG_CALL = "mcp_wrong_call"
#: Client-side codes for a conversation that could not go on.
NO_TOOL_CALL = "no_tool_call"
NOT_LISTED = "mcp_tool_not_listed"
MCP_ERROR = "mcp_error"
FORGERY_PASSED = "forged_result_passed"

Post = Callable[..., Awaitable[Reply]]


class McpAgent:
    """Runs `mcp_agent` conversations against one MCP tool (`server__tool`)."""

    def __init__(self, post: Post, model: str, tool: str) -> None:
        self.post = post
        self.model = model
        self.tool = tool

    async def run(self, headers: StepHeaders, outcome: Outcome) -> None:
        await _Conversation(self, headers, outcome).run()


class _Conversation:
    def __init__(self, agent: McpAgent, headers: StepHeaders, outcome: Outcome) -> None:
        self.agent = agent
        self.headers = headers
        self.outcome = outcome
        self.session: str | None = None
        self.ids = 0
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        #: The arguments of the session's previous `tools/call` (what `mcp_wrong_call`
        #: would serve the sealed result of).
        self.previous: Any = None

    async def run(self) -> None:
        if not await self._open():
            return
        for question in QUESTIONS:
            if not await self._turn(question):
                return
        # Every step went as it should, refused forgeries included.
        self.outcome.ok, self.outcome.code = True, None

    def _fail(self, code: str) -> bool:
        self.outcome.ok, self.outcome.code = False, code
        return False

    async def _mcp(self, method: str, params: Any, notify: bool = False) -> Reply:
        headers = {**self.headers("invoke"), "accept": ACCEPT}
        if self.session is not None:
            headers[SESSION_HEADER] = self.session
            headers["mcp-protocol-version"] = PROTOCOL_VERSION
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not notify:
            self.ids += 1
            body["id"] = self.ids
        reply = await self.agent.post(MCP_PATH, headers, json=body)
        self.outcome.observe(reply)
        return reply

    async def _open(self) -> bool:
        """A session, and the tool offered to the model as the server lists it."""
        hello = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "seawall-chaos", "version": "1"},
        }
        reply = await self._mcp("initialize", hello)
        self.session = reply.headers.get(SESSION_HEADER)
        if _result(reply) is None or self.session is None:
            return self._fail(_mcp_code(reply))
        await self._mcp("notifications/initialized", {}, notify=True)
        listed = _result(await self._mcp("tools/list", {})) or {}
        found = [t for t in listed.get("tools") or [] if t.get("name") == self.agent.tool]
        if not found:
            return self._fail(NOT_LISTED)
        tool = found[0]
        function = {"name": tool["name"], "parameters": tool.get("inputSchema") or {}}
        if tool.get("description"):
            function["description"] = tool["description"]
        self.tools = [{"type": "function", "function": function}]
        return True

    async def _turn(self, question: str) -> bool:
        """One question: True to go on with the next."""
        self.messages.append({"role": "user", "content": question})
        body = {"model": self.agent.model, "messages": self.messages, "tools": self.tools}
        reply = await self.agent.post(CHAT_PATH, self.headers("call"), json=body)
        self.outcome.observe(reply)
        if reply.status != 200:
            return False
        calls = [c for c in tool_calls(reply.body) if isinstance(c.get("id"), str)]
        if not calls:
            return self._fail(NO_TOOL_CALL)
        call = calls[0]
        arguments = call_arguments(call)
        called = await self._mcp("tools/call", {"name": self.agent.tool, "arguments": arguments})
        result = _result(called)
        if result is None or result.get("isError"):
            return self._fail(_mcp_code(called))
        faults = {fault_of(e) for e in parse_injected(called.headers.get(INJECTED_HEADER))}
        forged = FORGE in faults or (
            WRONG_CALL in faults and self.previous is not None and self.previous != arguments
        )
        self.previous = arguments
        assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
        shown = {
            "role": "tool",
            "tool_call_id": call["id"],
            "content": _text(result),
            "seawall_receipt": (result.get("_meta") or {}).get("seawall_receipt"),
        }
        body = {**body, "messages": [*self.messages, assistant, shown]}
        answer = await self.agent.post(CHAT_PATH, self.headers("reply"), json=body)
        self.outcome.observe(answer)
        verdict = judge(answer)
        if forged:
            self.outcome.cheats.append(verdict)
            if cheat_verdict(verdict) not in (REFUSED, FLAGGED):
                return self._fail(FORGERY_PASSED if verdict == "passed" else answer.code or FAILED)
            # Refused: the agent drops the question and asks the next one.
            self.messages.pop()
            return True
        served = answer.status == 200 and not answer.headers.get(VIOLATIONS_HEADER)
        self.outcome.genuine.append(SERVED if served else verdict)
        if not served:
            return self._fail(answer.code or cheat_verdict(verdict))
        self.messages += [assistant, shown, _answer(answer)]
        return True


def _result(reply: Reply) -> dict[str, Any] | None:
    body = reply.body
    if reply.status != 200 or not isinstance(body, dict):
        return None
    result = body.get("result")
    return result if isinstance(result, dict) else None


def _mcp_code(reply: Reply) -> str:
    """`mcp_error:<JSON-RPC code>`, or the HTTP error's code."""
    body = reply.body
    error = body.get("error") if isinstance(body, dict) else None
    if reply.status == 200 and isinstance(error, dict):
        return f"{MCP_ERROR}:{error.get('code')}"
    if reply.status == 200:
        return f"{MCP_ERROR}:tool_error"
    return reply.code or f"http_{reply.status}"


def _text(result: dict[str, Any]) -> str:
    """The result's text content, as an agent shows it to the model."""
    parts = result.get("content") or []
    return "".join(
        p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"
    )


def _answer(reply: Reply) -> dict[str, Any]:
    try:
        content = reply.body["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        content = None
    return {"role": "assistant", "content": content or ""}
