"""Verification of MCP tool calls, receipts on their results, and the check the
gateway runs when an agent later shows such a result to a model.

On the way through `/mcp` (per the server's `verification.mode`):

1. `check_arguments`: the call's arguments against the tool's `inputSchema`
   (tools/schemas.py: bounded depth, timed patterns, no remote `$ref`), before the
   server is called. Invalid in `enforce`: the server is not called, and the agent
   gets a tool error naming the problem (the 2025-11-25 spec's advice: input
   errors are tool execution errors, so the model can correct itself).
2. `check_result`: the result's size (`max_result_bytes`, as serialized) and, when
   the tool declares an `outputSchema`, its `structuredContent` (required then, as
   the spec says) against it. Failing in `enforce`: the agent gets a tool error
   naming the violation instead of the result; in `warn`, the result with
   `_meta.seawall_violations`.
3. `seal`: every result that passes (error results included: they are what the
   tool said) gets receipts in `_meta` and is recorded in the key's ledger.

**Receipts** are tools/receipts.py's, with the same keys (`receipts.keys`) and
format (`v1.<key id>.<unix time>.<mac>`). What one binds, since an MCP call has no
model tool_call_id:
- tool: the exposed name (`server__tool`), the name the model calls;
- call id: `mcp:<key id>`: a receipt vouches for a result served to that key, and
  no other key can use it;
- arguments: the call's, canonical (so the result cannot be passed off as the
  answer to a call with other arguments);
- content: `_meta.seawall_receipt` covers the text parts joined with newlines (what
  a tool message carries), as canonical JSON (nulls dropped) when that text is JSON;
  `_meta.seawall_receipt_structured` covers the canonical JSON of
  `structuredContent` (what an agent using structured content sends).

**The model-side check** (`check_tool_message`), called by the gateway's tool-result
stage for a result whose call names an MCP tool: with a receipt, the receipt is
verified against the message's text (exactly, or as the same JSON value); without
one, the ledger must recognise the text for this key, tool and arguments. Either
way a result that did not come through `/mcp` for this key, or was altered, is
`forged`. Its limits are the ledger's (ledger.py) and: non-text parts are only
recognised by the ledger, as their JSON; a result the agent rewrites (truncates,
summarises) is a forgery by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from routing.tokens import content_text
from tools.receipts import Receipts, canonical
from tools.schemas import SchemaCache, UnsafeSchema, problems
from toolservers.catalog import CatalogTool
from toolservers.config import Mode, Verification
from toolservers.fingerprints import (
    drop_nulls,
    json_form,
    lookup_prints,
    message_forms,
    result_prints,
    text_parts,
)
from toolservers.ledger import LedgerStore

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

RECEIPT_META = "seawall_receipt"
STRUCTURED_RECEIPT_META = "seawall_receipt_structured"
VIOLATIONS_META = "seawall_violations"
#: At most this many problems are named per value.
MAX_PROBLEMS = 3

Kind = Literal["arguments", "schema", "too_large", "forged", "unchecked"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with a call or a result."""

    tool: str
    kind: Kind
    where: str
    message: str
    mode: Mode

    def __str__(self) -> str:
        return f"tool '{self.tool}': {self.message}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The model-side check of one tool message."""

    #: False when the message is not a genuine result of this tool for this key.
    genuine: bool
    #: What vouched for it (`receipt`, `ledger`), or why it is refused.
    how: str
    reason: str | None = None


def tool_error(text: str) -> dict[str, Any]:
    """A CallToolResult that reports an error to the model."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


class Verifier:
    def __init__(
        self,
        receipts: Receipts,
        ledger: LedgerStore | None = None,
        cache: SchemaCache | None = None,
    ) -> None:
        self.receipts = receipts
        self.ledger = ledger
        #: Compiled schemas by canonical text: servers list the same schemas again
        #: after every list_changed, and many tools share one.
        self.cache = cache or SchemaCache(1024)

    # -- on the way through /mcp -------------------------------------------------------

    def _validator(self, tool: CatalogTool, which: str, schema: Any) -> Validator | None:
        """The compiled schema, `UnsafeSchema` when it could never be validated
        with, None when there is none or it is not JSON Schema (not checked)."""
        if not isinstance(schema, dict):
            return None
        return self.cache.lookup(schema)

    def check_arguments(
        self, tool: CatalogTool, arguments: Any, settings: Verification
    ) -> list[Finding]:
        mode = settings.mode
        if mode == "off":
            return []
        if not isinstance(arguments, dict):
            return [
                Finding(tool.exposed, "arguments", "$", "the arguments must be an object", mode)
            ]
        try:
            validator = self._validator(tool, "input", tool.input_schema)
        except UnsafeSchema as exc:
            return [
                Finding(tool.exposed, "unchecked", "$", f"its inputSchema is unusable: {exc}", mode)
            ]
        if validator is None:
            return []
        return [
            Finding(tool.exposed, "arguments", p.path, f"arguments at {p.path}: {p.message}", mode)
            for p in problems(validator, arguments)[:MAX_PROBLEMS]
        ]

    def check_result(
        self, tool: CatalogTool, result: dict[str, Any], settings: Verification
    ) -> list[Finding]:
        mode = settings.mode
        if mode == "off":
            return []
        found = []
        size = len(orjson.dumps(result))
        if size > settings.max_result_bytes:
            found.append(
                Finding(
                    tool.exposed,
                    "too_large",
                    "$",
                    f"the result is {size} bytes, over this server's max_result_bytes "
                    f"({settings.max_result_bytes})",
                    mode,
                )
            )
        if result.get("isError") is True or tool.output_schema is None:
            return found
        try:
            validator = self._validator(tool, "output", tool.output_schema)
        except UnsafeSchema as exc:
            return [
                *found,
                Finding(
                    tool.exposed, "unchecked", "$", f"its outputSchema is unusable: {exc}", mode
                ),
            ]
        if validator is None:
            return found
        structured = result.get("structuredContent")
        if structured is None:
            return [
                *found,
                Finding(
                    tool.exposed,
                    "schema",
                    "structuredContent",
                    "the tool declares an outputSchema but its result has no structuredContent",
                    mode,
                ),
            ]
        return found + [
            Finding(
                tool.exposed, "schema", p.path, f"structuredContent at {p.path}: {p.message}", mode
            )
            for p in problems(validator, structured)[:MAX_PROBLEMS]
        ]

    async def seal(
        self,
        key_id: str,
        tool: CatalogTool,
        arguments: Any,
        result: dict[str, Any],
        settings: Verification,
        tenant: str = "",
    ) -> dict[str, Any]:
        """`result` with its receipts in `_meta`, recorded in the key's ledger (bounded
        per key and per `tenant`)."""
        if settings.mode == "off":
            return result
        meta = dict(result.get("_meta") or {})
        # A server cannot hand out receipts of its own making.
        meta.pop(RECEIPT_META, None)
        meta.pop(STRUCTURED_RECEIPT_META, None)
        if self.receipts.enabled:
            call_id = receipt_call_id(key_id)
            text = "\n".join(text_parts(result))
            # Text that is JSON is signed as its canonical form: an agent that
            # re-serializes it (another indent, key order) still shows the same value.
            as_json = json_form(text)
            signed = as_json.decode() if as_json is not None else text
            meta[RECEIPT_META] = self.receipts.sign(tool.exposed, call_id, arguments, signed)
            structured = result.get("structuredContent")
            if structured is not None:
                try:
                    structured_text = canonical(drop_nulls(structured)).decode()
                except orjson.JSONEncodeError:
                    structured_text = None
                if structured_text is not None:
                    meta[STRUCTURED_RECEIPT_META] = self.receipts.sign(
                        tool.exposed, call_id, arguments, structured_text
                    )
        if self.ledger is not None:
            prints = result_prints(tool.exposed, arguments, result)
            await self.ledger.record(key_id, tenant, prints)
        return {**result, "_meta": meta} if meta else result

    # -- when the agent shows the result to a model --------------------------------------

    async def check_tool_message(
        self,
        key_id: str,
        tool: str,
        arguments: str | Any,
        content: str | list[Any] | None,
        receipt: Any = None,
    ) -> Verdict:
        """Is `content` (a tool message's, or a function_call_output's translated to
        one) a result `/mcp` served `key_id` for `tool` (the exposed name the model
        called) with `arguments` (the model's call's, JSON text or a value)?

        The gateway's tool-result stage calls this for every result whose call names
        an MCP tool the caller may use, and turns a False into a `forged` violation
        in the server's mode. `receipt`: the message's `seawall_receipt`, if any.
        Raises `LedgerUnavailable` when only the ledger could say and its store
        cannot."""
        if isinstance(content, list) and not all(_is_text_part(p) for p in content):
            text = None
        else:
            text = content_text(content)
        if receipt is not None:
            if text is None:
                return Verdict(False, "receipt", "a receipt vouches for text content only")
            reason = self._receipt_problem(key_id, tool, arguments, text, receipt)
            return Verdict(reason is None, "receipt", reason)
        if self.ledger is None or not self.ledger.settings.enabled:
            return Verdict(False, "ledger", "the result carries no receipt and no ledger is kept")
        forms = message_forms(text) if text is not None else _parts_forms(content)
        if await self.ledger.recognises(key_id, lookup_prints(tool, arguments, forms)):
            return Verdict(True, "ledger")
        return Verdict(
            False,
            "ledger",
            "no result with this content was served to this key through /mcp for this "
            "tool and these arguments",
        )

    def _receipt_problem(
        self, key_id: str, tool: str, arguments: Any, text: str, receipt: Any
    ) -> str | None:
        if not self.receipts.enabled:
            return "the result carries a receipt but this gateway has no receipt keys"
        call_id = receipt_call_id(key_id)
        reason = self.receipts.verify(receipt, tool, call_id, arguments, text)
        if reason is None:
            return None
        found = json_form(text)
        if (
            found is not None
            and self.receipts.verify(receipt, tool, call_id, arguments, found.decode()) is None
        ):
            return None
        return reason


def receipt_call_id(key_id: str) -> str:
    """What an MCP receipt binds in place of a model's tool_call_id."""
    return f"mcp:{key_id}"


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") in ("text", "input_text")
        and isinstance(part.get("text"), str)
    )


def _parts_forms(content: Any) -> list[bytes]:
    """A list with non-text parts: each part's JSON (what a non-text block becomes)."""
    forms = []
    for part in content if isinstance(content, list) else ():
        try:
            forms.append(b"json:" + canonical(drop_nulls(part)))
        except orjson.JSONEncodeError:
            continue
    return forms


def violations_meta(findings: list[Finding]) -> list[dict[str, str]]:
    return [{"kind": f.kind, "where": f.where, "message": f.message} for f in findings]
