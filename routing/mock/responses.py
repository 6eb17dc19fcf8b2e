"""The mock LLM in Responses mode: `POST /responses`, as an upstream that speaks the
Responses API natively (OpenAI, Azure OpenAI, vLLM) answers it.

It is what a deployment with `api: responses` and `provider: mock` talks to, so the
gateway's pass-through can be proven without a network: the request arrives as the
client sent it, and the answer has what only such an upstream returns:

- a **reasoning item** first in the output (`summary` empty, as a reasoning model
  without summaries answers), with `encrypted_content` when the request asks for it
  (`include: ["reasoning.encrypted_content"]`), so a stateless client can send it back;
- a **built-in tool**: when `web_search` (or `web_search_preview`) is among the tools,
  a `web_search_call` item (completed, with its query) before the message, the search
  run by the upstream itself, as OpenAI does;
- reasoning and `web_search_call` items sent back in `input` are accepted (and skipped:
  the mock reads the conversation's text).

The answer itself is the chat mock's (routing/mock/llm.py), through the gateway's own
translation (responses/): the same text, tool calls and structured output as chat.
The mock keeps no state: a `previous_response_id` is refused (400), as the gateway
sends a continued conversation's items in `input` (docs/responses.md).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import orjson

from responses.errors import ResponsesError
from responses.ids import new_id, new_response_id
from responses.request import PARAMETERS, to_chat
from responses.response import from_chat
from responses.stream import StreamTranslator
from routing.mock.errors import MockError
from routing.mock.llm import MockLLM

Json = dict[str, Any]

#: Built-in tool types the mock runs itself (the web search it pretends to do).
WEB_SEARCH = frozenset({"web_search", "web_search_preview"})
#: Input items the mock accepts and skips: what only a Responses upstream produces.
UPSTREAM_ITEMS = frozenset({"reasoning", "web_search_call"})
ENCRYPTED = "reasoning.encrypted_content"


class MockResponses:
    """Answers Responses API requests with the chat mock behind the translation."""

    def __init__(self, llm: MockLLM) -> None:
        self.llm = llm

    def _prepare(self, body: Json) -> tuple[Json, bool, bool]:
        """The request as the translation takes it (built-in tools and upstream-only
        items taken out), whether it offered a web search, and whether it wants
        encrypted reasoning."""
        if body.get("previous_response_id") is not None:
            raise MockError(
                400,
                "This mock keeps no conversations: send the earlier items in `input`.",
                "previous_response_id",
            )
        offered = body.get("tools")
        tools: list[Any] = offered if isinstance(offered, list) else []
        searched = any(isinstance(t, dict) and t.get("type") in WEB_SEARCH for t in tools)
        kept_tools = [t for t in tools if not (isinstance(t, dict) and t.get("type") in WEB_SEARCH)]
        items = body.get("input")
        if isinstance(items, list):
            items = [
                item
                for item in items
                if not (isinstance(item, dict) and item.get("type") in UPSTREAM_ITEMS)
            ]
        asked = body.get("include")
        include: list[Any] = asked if isinstance(asked, list) else []
        # Parameters the translation does not know are the real upstream's business
        # (new ones, background modes): the mock ignores them, as its answer would.
        known = {key: value for key, value in body.items() if key in PARAMETERS}
        known.pop("background", None)
        translated = {**known, "input": items, "tools": kept_tools or None}
        translated["include"] = [i for i in include if i != ENCRYPTED] or None
        translated.pop("store", None)
        return translated, searched, ENCRYPTED in include

    def respond(self, body: Json) -> Json:
        """The Response object for a non-streamed request."""
        prepared, searched, encrypted = self._prepare(body)
        try:
            translation = to_chat(prepared)
        except ResponsesError as exc:
            raise MockError(exc.status, exc.message, exc.param) from None
        chat = self.llm.chat({**translation.chat, "stream": False})
        response = from_chat(chat, translation, new_response_id(), int(time.time()))
        response["output"] = [*_upstream_items(body, searched, encrypted), *response["output"]]
        return response

    def events(self, body: Json) -> Iterator[bytes]:
        """The Responses SSE events of a streamed request: the chat mock's chunks
        through the gateway's stream translation, with the upstream-only items added
        before the answer's."""
        prepared, searched, encrypted = self._prepare(body)
        try:
            translation = to_chat(prepared)
        except ResponsesError as exc:
            raise MockError(exc.status, exc.message, exc.param) from None
        translator = StreamTranslator(translation, new_response_id(), int(time.time()))
        chunks = self.llm.chat_chunks({**translation.chat, "stream": True})
        first = next(chunks)  # a bad request fails here, before a 200 is committed
        yield translator.items(list(_upstream_items(body, searched, encrypted)))
        yield translator.feed(first)
        for chunk in chunks:
            yield translator.feed(chunk)
        yield translator.finish()


def _upstream_items(body: Json, searched: bool, encrypted: bool) -> Iterator[Json]:
    reasoning: Json = {"type": "reasoning", "id": new_id("rs"), "summary": []}
    if encrypted:
        # Opaque to the client, as OpenAI's is; derived from the input so a test can
        # tell that what comes back is what went out.
        digest = hashlib.sha256(orjson.dumps(body.get("input"))).digest()
        reasoning["encrypted_content"] = base64.b64encode(b"mock-reasoning:" + digest).decode()
    yield reasoning
    if searched:
        query = _last_user_text(body.get("input"))
        yield {
            "type": "web_search_call",
            "id": new_id("ws"),
            "status": "completed",
            "action": {"type": "search", "query": query},
        }


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    return str(part["text"])
    return ""
