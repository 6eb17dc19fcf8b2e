"""The requests of the load, one function per kind, each ending in a `Sample`.

Kinds: `chat` (non-stream), `stream` (SSE, read to the end), `tool` (a full tool
round: the model asks for the tool, the invoke proxy runs it, the result goes back
with its receipt), `huge_prompt` (far over the context window: must be refused
before any provider sees it), `colored:<color>` (a chat in a traffic partition).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from chaos.runner.samples import TIMEOUT, TRANSPORT, Sample, parse_injected
from chaos.runner.schema import COLORED_PREFIX, Load, Target
from chaos.runner.streams import StreamReader
from common.headers import (
    CHAOS_HEADER,
    COLOR_HEADER,
    DEPLOYMENT_HEADER,
    FLAGS_HEADER,
    INJECTED_HEADER,
    ROUTE_HEADER,
)

#: Request headers for each step of a request ("call"; tool rounds also "invoke"
#: and "reply").
StepHeaders = Callable[[str], dict[str, str]]
CHAT_PATH = "/v1/chat/completions"
#: How a forged tool result is caught, by the gateway's error code.
CAUGHT_BY_CODE = {"tool_result_invalid": "schema", "tool_result_forged": "receipt"}
INJECTION_FLAG = ":injection:"


@dataclass
class Reply:
    """One HTTP answer, reduced to what the probes read."""

    status: int
    headers: httpx.Headers
    body: Any = None

    @property
    def code(self) -> str | None:
        if 200 <= self.status < 300:
            return None
        error = self.body.get("error") if isinstance(self.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return str(code) if code else f"http_{self.status}"

    @property
    def route(self) -> str | None:
        return self.headers.get(ROUTE_HEADER)


@dataclass
class Outcome:
    """What a request of any kind came to, before it becomes a Sample."""

    status: int = 0
    code: str | None = None
    ok: bool = False
    routes: list[str] = field(default_factory=list)
    deployment: str | None = None
    injected: list[str] = field(default_factory=list)
    chaos_ignored: bool = False
    stream: StreamReader | None = None
    caught_by: str | None = None

    def observe(self, reply: Reply) -> None:
        self.status, self.code, self.ok = reply.status, reply.code, 200 <= reply.status < 300
        if reply.route:
            self.routes.append(reply.route)
        self.deployment = reply.headers.get(DEPLOYMENT_HEADER, self.deployment)
        for entry in parse_injected(reply.headers.get(INJECTED_HEADER)):
            if entry not in self.injected:
                self.injected.append(entry)
        self.chaos_ignored |= reply.headers.get(CHAOS_HEADER, "") == "ignored"


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


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

    def _chat_body(self, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.target.model,
            "messages": [{"role": "user", "content": text}],
            **extra,
        }

    async def _post(self, path: str, headers: dict[str, str], **kwargs: Any) -> Reply:
        response = await self.client.post(path, headers=headers, **kwargs)
        return Reply(response.status_code, response.headers, _json(response))

    async def run(self, kind: str, headers: StepHeaders, outcome: Outcome) -> None:
        """Send one request of `kind`, recording into `outcome` as it goes (so a
        timeout half-way through a tool round keeps what was seen)."""
        if kind == "stream":
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
                outcome.observe(Reply(response.status_code, response.headers, _json(response)))
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
        calls = _tool_calls(reply.body) if reply.status == 200 else []
        if not calls:
            if reply.status == 200:
                outcome.ok, outcome.code = False, "no_tool_call"
            return
        call = calls[0]
        arguments = _arguments(call)
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


def _tool_calls(body: Any) -> list[dict[str, Any]]:
    try:
        calls = body["choices"][0]["message"]["tool_calls"]
    except (KeyError, IndexError, TypeError):
        return []
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _arguments(call: dict[str, Any]) -> Any:
    text = (call.get("function") or {}).get("arguments") or "{}"
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}


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
        chaos_ignored=outcome.chaos_ignored,
        stream_error=reader is not None and reader.errored,
        stream_silent_failure=reader is not None and reader.silent_failure,
        forge_mode=forge_mode,
        caught_by=outcome.caught_by,
    )
