"""The requests of the load, one function per kind, each ending in a `Sample`.

Kinds: `chat` (non-stream), `stream` (SSE, read to the end), `tool` (a full tool
round: the model asks for the tool, the invoke proxy runs it, the result goes back
with its receipt), `huge_prompt` (far over the context window: must be refused
before any provider sees it), `colored:<color>` (a chat in a traffic partition),
`tool_race:<role>` (a two-turn agent conversation with the tool, honest or
cheating on its last turn: `chaos.runner.race`), `mcp_agent` (an agent loop whose
tool is behind `/mcp`: `chaos.runner.mcp_agent`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from chaos.runner.mcp_agent import McpAgent
from chaos.runner.race import StepHeaders, ToolRace
from chaos.runner.replies import (
    CHAT_PATH,
    Outcome,
    Reply,
    call_arguments,
    json_body,
    tool_calls,
)
from chaos.runner.samples import TIMEOUT, TRANSPORT, Sample
from chaos.runner.schema import COLORED_PREFIX, MCP_AGENT, Load, Target, race_role
from chaos.runner.streams import StreamReader
from common.headers import COLOR_HEADER, FLAGS_HEADER

__all__ = ["CAUGHT_BY_CODE", "StepHeaders", "Traffic", "send"]

#: How a forged tool result is caught, by the gateway's error code.
CAUGHT_BY_CODE = {"tool_result_invalid": "schema", "tool_result_forged": "receipt"}
INJECTION_FLAG = ":injection:"


class Traffic:
    def __init__(self, client: httpx.AsyncClient, target: Target, load: Load) -> None:
        self.client = client
        self.target = target
        words = " ".join(["word"] * load.huge_prompt_tokens)
        self._huge = orjson.dumps(self._chat_body(f"Summarise this: {words}"))
        function: dict[str, Any] = {"name": target.tool}
        if target.tool_parameters is not None:
            function["parameters"] = target.tool_parameters
        self._tools = [{"type": "function", "function": function}]
        self.race = ToolRace(self._post, target.model, target.tool, self._tools, load.timeout_s)
        self.mcp = McpAgent(self._post, target.model, target.tool)

    def _chat_body(self, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.target.model,
            "messages": [{"role": "user", "content": text}],
            **extra,
        }

    async def _post(self, path: str, headers: dict[str, str], **kwargs: Any) -> Reply:
        response = await self.client.post(path, headers=headers, **kwargs)
        return Reply(response.status_code, response.headers, json_body(response))

    async def run(self, kind: str, headers: StepHeaders, outcome: Outcome) -> None:
        """Send one request of `kind`, recording into `outcome` as it goes (so a
        timeout half-way through a tool round keeps what was seen)."""
        role = race_role(kind)
        if role is not None:
            await self.race.run(role, headers, outcome)
        elif kind == MCP_AGENT:
            await self.mcp.run(headers, outcome)
        elif kind == "stream":
            await self._stream(headers("call"), outcome)
        elif kind == "tool":
            await self._tool_round(headers, outcome)
        elif kind == "huge_prompt":
            outcome.observe(await self._post(CHAT_PATH, headers("call"), content=self._huge))
        else:
            extra = {}
            if kind.startswith(COLORED_PREFIX):
                extra[COLOR_HEADER] = kind.removeprefix(COLORED_PREFIX)
            body = self._chat_body("Hello! How are you today?")
            outcome.observe(await self._post(CHAT_PATH, {**headers("call"), **extra}, json=body))

    async def _stream(self, headers: dict[str, str], outcome: Outcome) -> None:
        body = self._chat_body("Tell me a short story.", stream=True)
        async with self.client.stream("POST", CHAT_PATH, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                outcome.observe(Reply(response.status_code, response.headers, json_body(response)))
                return
            outcome.observe(Reply(200, response.headers))
            reader = outcome.stream = StreamReader()
            async for line in response.aiter_lines():
                reader.feed(line)
        outcome.ok, outcome.code = reader.ok, reader.failure_code

    async def _tool_round(self, headers: StepHeaders, outcome: Outcome) -> None:
        tool = self.target.tool
        question = self._chat_body("What is the weather in Oslo?", tools=self._tools)
        reply = await self._post(CHAT_PATH, headers("call"), json=question)
        outcome.observe(reply)
        calls = tool_calls(reply.body) if reply.status == 200 else []
        if not calls:
            if reply.status == 200:
                outcome.ok, outcome.code = False, "no_tool_call"
            return
        call = calls[0]
        arguments = call_arguments(call)
        invoke = await self._post(
            f"/v1/tools/{tool}/invoke",
            headers("invoke"),
            json={"tool_call_id": call.get("id"), "arguments": arguments},
        )
        outcome.observe(invoke)
        if invoke.status != 200 or not isinstance(invoke.body, dict):
            outcome.caught_by = CAUGHT_BY_CODE.get(invoke.code or "")
            return
        result = {
            "role": "tool",
            "tool_call_id": call.get("id"),
            "content": invoke.body.get("content"),
            "seawall_receipt": invoke.body.get("receipt"),
        }
        assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
        answer = {**question, "messages": [*question["messages"], assistant, result]}
        final = await self._post(CHAT_PATH, headers("reply"), json=answer)
        outcome.observe(final)
        outcome.caught_by = CAUGHT_BY_CODE.get(final.code or "")
        if outcome.caught_by is None and INJECTION_FLAG in final.headers.get(FLAGS_HEADER, ""):
            outcome.caught_by = "flag"


async def send(
    traffic: Traffic,
    kind: str,
    phase: str,
    headers: StepHeaders,
    clock: Callable[[], float],
    forge_mode: str | None = None,
) -> Sample:
    """One request of the load, whatever happens to it, as a Sample."""
    sent = clock()
    outcome = Outcome()
    try:
        await traffic.run(kind, headers, outcome)
    except httpx.TimeoutException:
        outcome.status, outcome.code, outcome.ok = 0, TIMEOUT, False
    except httpx.TransportError:
        outcome.status, outcome.code, outcome.ok = 0, TRANSPORT, False
    reader = outcome.stream
    return Sample(
        kind=kind,
        phase=phase,
        sent=sent,
        done=clock(),
        status=outcome.status,
        code=outcome.code,
        ok=outcome.ok,
        routes=tuple(outcome.routes),
        deployment=outcome.deployment,
        injected=tuple(outcome.injected),
        config_versions=tuple(outcome.config_versions),
        chaos_ignored=outcome.chaos_ignored,
        stream_error=reader is not None and reader.errored,
        stream_silent_failure=reader is not None and reader.silent_failure,
        forge_mode=forge_mode,
        caught_by=outcome.caught_by,
        cheats=tuple(outcome.cheats),
        genuine=tuple(outcome.genuine),
    )
