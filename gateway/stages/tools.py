"""Tool verification in both directions.

`VerifyToolResults` (before routing): the tool results an agent sends back
(`role: tool`, and legacy `role: function` messages) are checked (receipts, output
schema, injection markers) and their
`seawall_receipt` fields are removed before any provider sees the request. It
also refuses offered tool schemas that validation could never finish with (a
`$ref` cycle), while the request can still get a 400 and before a model is paid.
A result whose call names an MCP tool the caller may use (`server__tool`, served
through `/mcp`) is checked by the MCP layer instead (`McpService.check_tool_message`:
its `_meta` receipt, or the key's ledger of results served), in its server's
`verification.mode`: a result that did not come through `/mcp` for this key, or
was altered, is `tool_result_forged` (docs/mcp.md, "Verification").

`VerifyToolCalls` (the forwarding stage's reply flow): the tool calls a model
answers with are checked against the schemas the request offered. In `enforce` mode
an invalid call gets one repair attempt, the model told what was wrong, and then a
502; in `warn` mode the answer passes with `x-seawall-tool-violations`. A repair is
one more round trip, so the flow yields it to `Forward` (gateway/stages/route.py),
which sends it: only that stage talks to the router.

Streams: a stream that turns out to be a tool call is held until its arguments
are complete and valid (so a bad call can still be repaired or refused with a
proper status); a stream that starts with text is relayed at once, and a tool call
that follows text can then only be reported at the end of the stream (an error
event in `enforce` mode, an SSE comment in `warn` mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, cast

import orjson

from common.chat import has_tool_results, offered_tools, offers_tools
from common.headers import COLLISION_HEADER, FLAGS_HEADER, REPAIRED_HEADER, VIOLATIONS_HEADER
from gateway.errors import GatewayError, echoed
from gateway.events import Events, GuardEvent
from gateway.exchange import Exchange
from gateway.mcp.callers import caller_of
from gateway.stages.render import sse_error_event
from routing.call import Reply
from routing.sse import DONE_EVENT, data_payloads
from tenants.identity import Identity
from tools.binding import bind
from tools.calls import OfferedTools, ToolCall, ToolCallAssembler, calls_in_reply
from tools.config import Mode, ToolPolicy
from tools.registry import ToolRegistry
from tools.results import RECEIPT_FIELD, ResultChecker, ToolResult, tool_results
from tools.schemas import SchemaCache, TenantSchemaCaches, UnsafeSchema
from tools.violations import Violation, header_value, strictest
from toolservers.caller import LOCAL, Caller
from toolservers.ledger import LedgerUnavailable
from toolservers.service import McpService

#: A tool-call stream is held in memory up to this size; past it, it is refused.
MAX_HELD_BYTES = 4 * 1024 * 1024

#: The schema cache of a request that offered no tool (nothing is ever put in it).
NO_OFFERED_SCHEMAS = SchemaCache(0)

RESULT_KINDS = {
    "forged": "tool_result_forged",
    "injection": "tool_result_injection",
    "unverified": "tool_result_unverified",
}


class VerifyToolResults:
    def __init__(
        self,
        checker: ResultChecker,
        events: Events,
        caches: TenantSchemaCaches | None = None,
        mcp: Callable[[], McpService | None] | None = None,
    ) -> None:
        self.checker = checker
        self.events = events
        #: The Runtime's MCP layer (built when the Runtime starts), for results of
        #: MCP tools; None: no result is one.
        self.mcp = mcp
        # The registry's caches are the ones `VerifyToolCalls` uses too: a schema
        # compiled here on first sight is not compiled again after routing.
        self.caches = caches or checker.registry.offered

    async def __call__(self, exchange: Exchange) -> None:
        body = exchange.body
        if offers_tools(body):
            self._refuse_unsafe_schemas(body, self.caches.of(tenant_of(exchange)))
        bindings = bind(body, self.checker.registry)
        exchange.tool_bindings = bindings
        if bindings.collisions:
            exchange.headers[COLLISION_HEADER] = ", ".join(bindings.collisions)
        messages = body["messages"]
        if not has_tool_results(messages):
            return
        results = tool_results(messages)
        for result in results:
            if RECEIPT_FIELD in messages[result.index]:
                messages[result.index] = {
                    k: v for k, v in messages[result.index].items() if k != RECEIPT_FIELD
                }
        # Each finding with the message it is about: ids may repeat (duplicates,
        # unmatched results), so an id does not say which message to name.
        service = self.mcp() if self.mcp is not None else None
        if service is not None and service.catalog.upstreams:
            caller = _caller(exchange.identity)
            found = [
                (result.index, v)
                for result in results
                for v in await self._check(result, bindings, service, caller)
            ]
        else:
            found = [
                (result.index, v)
                for result in results
                for v in self.checker.check(result, bindings)
            ]
        if not found:
            return
        violations = [v for _, v in found]
        group = exchange.group.name if exchange.group else None
        flags = [v for v in violations if v.kind == "injection"]
        problems = [v for v in violations if v.kind != "injection"]
        for violation in violations:
            kind = RESULT_KINDS.get(violation.kind, "tool_result_invalid")
            action = "reject" if violation.mode == "enforce" and violation in problems else "warn"
            self.events.emit(GuardEvent(kind, action, group, violation.tool, violation.message))
        if flags:
            exchange.headers[FLAGS_HEADER] = header_value(flags)
        if problems and strictest(problems) == "enforce":
            index, first = next(
                (i, v) for i, v in found if v.mode == "enforce" and v.kind != "injection"
            )
            code = "tool_result_forged" if first.kind == "forged" else "tool_result_invalid"
            raise GatewayError(
                400,
                f"Tool result in messages[{index}] rejected: {first}.",
                code=code,
                param=f"messages[{index}].content",
            )
        if problems:
            exchange.headers[VIOLATIONS_HEADER] = header_value(problems)

    async def _check(
        self, result: ToolResult, bindings: Any, service: McpService, caller: Caller
    ) -> list[Violation]:
        """An MCP tool's result by the MCP layer's rules; any other by the registry's.
        When only the ledger could vouch for it and its store does not answer:
        `mcp.ledger.on_store_failure` says whether the request is refused (503) or
        the result passes unverified (flagged)."""
        server = service.mcp_tool(caller, result.tool) if result.tool is not None else None
        if server is None:
            return self.checker.check(result, bindings)
        assert result.tool is not None
        mode = cast(Mode, service.result_mode(server))
        if mode == "off":
            return []
        content = result.parts if result.parts is not None else result.content
        try:
            verdict = await service.check_tool_message(
                caller, result.tool, result.arguments, content, result.receipt
            )
        except LedgerUnavailable:
            if service.config.ledger.on_store_failure == "fail_closed":
                raise GatewayError(
                    503,
                    "The tool result could not be verified: the gateway's record of MCP "
                    "results is unavailable. Retry shortly.",
                    code="tool_result_ledger_unavailable",
                    type="server_error",
                ) from None
            unverified = Violation(
                result.tool,
                "unverified",
                "ledger_unavailable",
                "not verified: the record of MCP results is unavailable",
                "warn",
                result.call_id,
            )
            return [unverified, *self.checker.injection_flags(result.tool, result)]
        found = []
        if not verdict.genuine:
            reason = verdict.reason or "not a result served through /mcp"
            found.append(
                Violation(result.tool, "forged", verdict.how, reason, mode, result.call_id)
            )
        return found + self.checker.injection_flags(result.tool, result)

    def _refuse_unsafe_schemas(self, body: dict[str, Any], cache: SchemaCache) -> None:
        """400 for an offered schema whose `$ref`s loop without consuming input.

        Other invalid offered schemas are only skipped when calls are checked (the
        provider judges them); this one would recurse until Python gives up.
        """
        for tool in offered_tools(body):
            parameters = tool.parameters
            if parameters is None:
                continue
            try:
                cache.lookup(parameters)
            except UnsafeSchema as exc:
                raise GatewayError(
                    400,
                    f"Invalid schema for function '{echoed(tool.name)}': {exc}.",
                    code="invalid_function_parameters",
                    param=f"{tool.where}.parameters",
                ) from None


def tenant_of(exchange: Exchange) -> str | None:
    """Whose schema cache a request's offered schemas go to: its key's tenant (None
    for a gateway without keys)."""
    identity = exchange.identity
    return None if identity is None else identity.tenant_id


def _caller(identity: Identity | None) -> Caller:
    """The MCP caller a chat request's key is (what `/mcp` served it as)."""
    return LOCAL if identity is None else caller_of(identity)


def repair_messages(
    body: dict[str, Any], calls: list[ToolCall], violations: list[Violation]
) -> dict[str, Any]:
    """The request again, plus the invalid calls and, as each call's tool result,
    what was wrong with it: the form a model best understands as feedback. Each call
    is repeated in the kind the model made it (a custom tool's call as one)."""
    tool_calls: list[dict[str, Any]] = []
    results = []
    for number, call in enumerate(calls):
        call_id = call.id or f"call_seawall_repair_{number}"
        if call.custom:
            part = {"type": "custom", "custom": {"name": call.name, "input": call.arguments}}
        else:
            part = {
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        tool_calls.append({"id": call_id, **part})
        problems = [v.message for v in violations if v.call_id == call.id] or ["none"]
        results.append(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": "The gateway did not run this call because it is invalid: "
                + "; ".join(problems)
                + ". Call the tool again with arguments that satisfy its schema, and call only "
                "the tools you were offered.",
            }
        )
    assistant = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return {**body, "messages": [*body["messages"], assistant, *results]}


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class VerifyToolCalls:
    """The tool calls a model answers with, checked, repaired or refused.

    Not a stage: it needs further round trips (a repair asks the model again), and
    only the forwarding stage sends requests upstream. It is the `Forward` stage's
    reply flow (`gateway.stages.route.ReplyFlow`, the shape of httpx's auth flow):
    `steps` looks at the reply in `exchange.routed` and, when it must be checked,
    returns the steps that yield the body to send next when a repair is due, and end
    when the reply stands, or raise the 502. A plain reply needs none (None).
    """

    def __init__(
        self,
        registry: ToolRegistry,
        policy: ToolPolicy,
        events: Events,
        caches: TenantSchemaCaches | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.events = events
        self.caches = caches or registry.offered

    def steps(self, exchange: Exchange) -> AsyncIterator[dict[str, Any]] | None:
        assert exchange.routed is not None
        if not offers_tools(exchange.body):
            # Calls to tools nobody offered are violations too, in `offered_mode`.
            # A plain chat must stay cheap: a reply body is searched for the key
            # (C speed) before anything is parsed, and a stream is relayed at once
            # with any tool call in it judged at the end (nothing is held).
            reply = exchange.routed.reply
            if self.policy.offered_mode == "off":
                return None
            if reply.events is not None:
                self._judge_at_end(exchange, reply)
                return None
            if b'"tool_calls"' not in reply.body and b'"function_call"' not in reply.body:
                return None
        offered = OfferedTools(
            offered_tools(exchange.body),
            self.registry,
            self.caches.of(tenant_of(exchange)),
            self.policy,
            exchange.tool_bindings,
        )
        if offered.mode == "off":
            return None
        return self._check(exchange, offered)

    async def _check(
        self, exchange: Exchange, offered: OfferedTools
    ) -> AsyncIterator[dict[str, Any]]:
        """Checks the reply; yields a repair request while one is due."""
        assert exchange.routed is not None
        body = exchange.body
        violations_before: list[Violation] = []
        for attempt in range(self.policy.repair_attempts + 1):
            calls, violations = await self._inspect(exchange, offered)
            if not violations:
                if attempt:
                    exchange.headers[REPAIRED_HEADER] = str(attempt)
                    self.report(exchange, violations_before, "repaired")
                return
            if strictest(violations) != "enforce":
                self.report(exchange, violations, "warn")
                exchange.headers[VIOLATIONS_HEADER] = header_value(violations)
                return
            self.report(
                exchange,
                violations,
                "repair" if attempt < self.policy.repair_attempts else "reject",
            )
            violations_before = violations
            if attempt == self.policy.repair_attempts:
                break
            await exchange.routed.reply.close()
            body = repair_messages(body, calls, violations)
            yield body  # Forward sends it; the reply is in `exchange.routed` after
        await exchange.routed.reply.close()
        exchange.headers[VIOLATIONS_HEADER] = header_value(violations)
        raise GatewayError(
            502,
            f"The model's tool call is invalid after {self.policy.repair_attempts} repair "
            f"attempt(s): {violations[0]}.",
            code="tool_call_invalid",
        )

    def _judge_at_end(self, exchange: Exchange, reply: Reply) -> None:
        """Relays a stream untouched, judging any tool call in it when it ends."""
        assert reply.events is not None and exchange.routed is not None
        offered = OfferedTools((), self.registry, NO_OFFERED_SCHEMAS, self.policy)
        tail = self._check_late_calls(reply.events, ToolCallAssembler(), offered, exchange)
        exchange.routed.reply = replace(reply, events=tail)

    def report(self, exchange: Exchange, violations: list[Violation], action: str) -> None:
        """Each finding as a guard event (metrics, and the audit log later)."""
        group = exchange.group.name if exchange.group else None
        for violation in violations:
            self.events.emit(
                GuardEvent("tool_call_invalid", action, group, violation.tool, violation.message)
            )

    async def _inspect(
        self, exchange: Exchange, offered: OfferedTools
    ) -> tuple[list[ToolCall], list[Violation]]:
        assert exchange.routed is not None
        reply = exchange.routed.reply
        if reply.events is None:
            calls = calls_in_reply(reply.data or {})
            return calls, offered.check_all(calls)
        return await self._hold(exchange, offered, reply)

    async def _hold(
        self, exchange: Exchange, offered: OfferedTools, reply: Reply
    ) -> tuple[list[ToolCall], list[Violation]]:
        """Reads until the stream shows what it is; holds a tool-call stream whole. A
        stream that breaks while held raises its `UpstreamError`: nothing reached the
        client yet, so the forwarding stage answers it as the router's failure."""
        assert reply.events is not None and exchange.routed is not None
        held: list[bytes] = []
        size = 0
        assembler = ToolCallAssembler()
        saw_text = saw_call = False
        async for chunk in reply.events:
            held.append(chunk)
            size += len(chunk)
            for payload in data_payloads(chunk):
                event = _parse(payload)
                assembler.feed(event)
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
                    called = delta.get("tool_calls") or delta.get("function_call")
                    saw_call = saw_call or bool(called)
                    saw_text = saw_text or bool(delta.get("content"))
            if size > MAX_HELD_BYTES:
                violation = Violation(
                    "?",
                    "too_large",
                    "stream",
                    f"the tool-call stream passed {MAX_HELD_BYTES} bytes",
                    offered.mode,
                )
                return [], [violation]
            if saw_text and not saw_call:
                # A text answer: stream it from here on, checking any late tool call.
                tail = self._check_late_calls(reply.events, assembler, offered, exchange)
                exchange.routed.reply = replace(reply, events=_chain(held, tail))
                return [], []
        calls = assembler.calls()
        exchange.routed.reply = replace(reply, events=_replay(held))
        return calls, offered.check_all(calls)

    async def _check_late_calls(
        self,
        events: AsyncIterator[bytes],
        assembler: ToolCallAssembler,
        offered: OfferedTools,
        exchange: Exchange,
    ) -> AsyncIterator[bytes]:
        """Relays the rest of a text stream; a tool call in it is checked at the end.

        The final `data: [DONE]` is held back until then: clients stop reading at it,
        so a verdict must come before it (an error event replaces it in enforce mode).
        """
        saw_call = False
        done = b""
        async for chunk in events:
            # C-speed test (`"tool_calls"` and a legacy `"function_call"` both hold
            # `_call`); parse only such chunks.
            if b"_call" in chunk:
                saw_call = True
                for payload in data_payloads(chunk):
                    assembler.feed(_parse(payload))
            at = chunk.rfind(DONE_EVENT)
            if at >= 0:
                chunk, done = chunk[:at], chunk[at:]
            if chunk:
                yield chunk
        violations = offered.check_all(assembler.calls()) if saw_call else []
        if violations:
            enforce = strictest(violations) == "enforce"
            self.report(exchange, violations, "reject" if enforce else "warn")
            if enforce:
                error = GatewayError(
                    502,
                    f"The model's tool call is invalid: {violations[0]}.",
                    code="tool_call_invalid",
                )
                exchange.error_code = "tool_call_invalid"
                yield sse_error_event(error, code=None)
                return
            yield f": {VIOLATIONS_HEADER}: {header_value(violations)}\n\n".encode()
        if done:
            yield done


def _parse(payload: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


async def _chain(head: list[bytes], tail: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in tail:
        yield chunk
