"""Chat completion chunks in, Responses stream events (SSE bytes) out, as they arrive.

Feed each parsed `chat.completion.chunk` to `StreamTranslator.feed` and send what it
returns; call `finish` when the upstream stream ends, or `failed` when it breaks.
Events come in the order OpenAI sends them, with `sequence_number` counting from 0:

    response.created, response.in_progress
    per output item, one after the other:
      message:       output_item.added, content_part.added, output_text.delta...,
                     output_text.done, content_part.done, output_item.done
                     (a refusal: refusal.delta... refusal.done in its own part)
      function_call: output_item.added, function_call_arguments.delta...,
                     function_call_arguments.done, output_item.done
      custom_tool_call: output_item.added, custom_tool_call_input.delta...,
                     custom_tool_call_input.done, output_item.done
    response.completed (or response.incomplete), with usage from the usage chunk

An item is closed when the next one starts: chat streams its text, then each tool
call by index, one after another. A chunk that goes back to a tool call already
closed (interleaved calls) is refused with `BadUpstreamReply`: an item's `done`
event cannot be taken back. Text that comes after a tool call opens a new message
item, so nothing is reordered.

On the hot path (one text or argument delta) the event is three byte strings
prepared when the item opened, the sequence number and the JSON-encoded delta;
nothing else is serialized. The whole Response is serialized twice per stream: once
for `response.created` and `response.in_progress`, once for the final event.

`failed(code, message)` ends a stream that broke: an `error` event, then
`response.failed`. The `error` event carries the error both at its top level (the
documented `ResponseErrorEvent` shape, which the Agents SDK reads) and as a nested
`error` object (what the API actually sends, and what makes the openai SDK raise
`APIError` out of `client.responses.stream(...)` instead of ending silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from common.chat import tool_call_parts
from responses.errors import BadUpstreamReply
from responses.ids import new_id
from responses.request import ChatTranslation
from responses.response import (
    INCOMPLETE_REASONS,
    function_call_item,
    message_item,
    output_text_part,
    refusal_part,
    response_object,
    usage,
)
from responses.tool_params import CUSTOM_CALL_PREFIX, custom_call_item

Json = dict[str, Any]

#: Codes a Response's `error` may carry (the API's closed list, in the part a
#: gateway can produce); any other code is reported there as `server_error`.
RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
#: The `type` of the nested error object, by code.
ERROR_TYPES = {"rate_limit_exceeded": "rate_limit_error", "invalid_prompt": "invalid_request_error"}


def sse(event_type: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class _Part:
    """One content part of a message: output text or a refusal."""

    __slots__ = ("chunks", "index", "kind", "prefix")

    def __init__(self, kind: str, index: int, prefix: bytes) -> None:
        self.kind = kind
        self.index = index
        self.chunks: list[str] = []
        #: This part's delta event between sequence number and delta (`_delta_prefix`).
        self.prefix = prefix

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def done(self) -> Json:
        if self.kind == "output_text":
            return output_text_part(self.text)
        return refusal_part(self.text)


class _Message:
    __slots__ = ("item_id", "output_index", "parts")

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.parts: dict[str, _Part] = {}

    def item(self, status: str) -> Json:
        return message_item(self.item_id, [part.done() for part in self.parts.values()], status)


class _Call:
    """A function call, or a custom tool's call (`custom`: its `arguments` are the
    call's free-text input)."""

    __slots__ = ("arguments", "call_id", "custom", "item_id", "name", "output_index", "prefix")

    def __init__(
        self, item_id: str, call_id: str, name: str, output_index: int, custom: bool = False
    ) -> None:
        self.item_id = item_id
        self.call_id = call_id
        self.name = name
        self.output_index = output_index
        self.custom = custom
        self.arguments: list[str] = []
        self.prefix = _delta_prefix({"item_id": item_id, "output_index": output_index})

    def item(self, status: str) -> Json:
        build = custom_call_item if self.custom else function_call_item
        return build(self.item_id, self.call_id, self.name, "".join(self.arguments), status)


def _delta_prefix(fields: Json) -> bytes:
    """The bytes of a delta event between its sequence number and its delta: the
    fields that never change within an item, encoded once."""
    encoded = orjson.dumps(fields)  # {"item_id":...,"output_index":...}
    return b"," + encoded[1:-1] + b',"delta":'


#: A custom tool call's input events (openai-openapi 2.3.0:
#: ResponseCustomToolCallInputDeltaEvent, ResponseCustomToolCallInputDoneEvent).
CUSTOM_INPUT_DELTA = "response.custom_tool_call_input.delta"
CUSTOM_INPUT_DONE = "response.custom_tool_call_input.done"
#: The delta event of each content part kind.
DELTA_EVENTS = {"output_text": "response.output_text.delta", "refusal": "response.refusal.delta"}
#: A delta event's bytes up to its sequence number's value.
_EVENT_HEADS: dict[str, bytes] = {
    kind: b"event: "
    + kind.encode()
    + b'\ndata: {"type":"'
    + kind.encode()
    + b'","sequence_number":'
    for kind in (
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        CUSTOM_INPUT_DELTA,
    )
}


class StreamTranslator:
    """Translates one chat stream into one Responses stream (see the module docstring).

    `response` is the final Response object once the stream has ended (completed,
    incomplete or failed): what the gateway stores.
    """

    def __init__(self, translation: ChatTranslation, response_id: str, created_at: float) -> None:
        self._translation = translation
        self._id = response_id
        self._created_at = created_at
        self._model = translation.model
        self._sequence = 0
        self._started = False
        self._done: list[Json] = []  # closed output items, in output order
        self._current: _Message | _Call | None = None
        self._calls: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._usage: Json | None = None
        self.response: Json | None = None

    @property
    def ended(self) -> bool:
        return self.response is not None

    def start(self) -> bytes:
        """`response.created` and `response.in_progress` (also sent by the first
        `feed`, `finish` or `failed` if not sent before)."""
        if self._started:
            return b""
        self._started = True
        snapshot = self._response("in_progress", [], None)
        # One encoding of the snapshot serves both events (orjson.Fragment embeds it).
        encoded = orjson.Fragment(orjson.dumps(snapshot))
        return self._event("response.created", {"response": encoded}) + self._event(
            "response.in_progress", {"response": encoded}
        )

    def items(self, done: list[Json]) -> bytes:
        """Output items that come before the translated ones, already complete (an
        upstream's own: the mock's reasoning and built-in tool items): their
        `output_item.added` and `.done` events; they lead the final output."""
        out = [self.start()]
        for item in done:
            fields = {"output_index": len(self._done), "item": item}
            out.append(self._event("response.output_item.added", fields))
            out.append(self._event("response.output_item.done", fields))
            self._done.append(item)
        return b"".join(out)

    def feed(self, chunk: Any) -> bytes:
        """The events for one parsed `chat.completion.chunk` (may be empty); a chunk
        that is not a JSON object is a `BadUpstreamReply`."""
        if self.ended:
            raise RuntimeError("the stream has ended")
        if not isinstance(chunk, dict):
            raise BadUpstreamReply(
                "A chunk of the upstream stream is not an object.", code="bad_upstream_reply"
            )
        out = [self.start()] if not self._started else []
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self._model = model
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and not choice.get("index"):
                    self._choice(choice, out)
        return b"".join(out)

    def finish(self) -> bytes:
        """Close the open item and end with `response.completed` or `response.incomplete`."""
        if self.ended:
            raise RuntimeError("the stream has ended")
        out = [self.start()]
        reason = INCOMPLETE_REASONS.get(str(self._finish_reason))
        if self._current is None and not self._done:
            self._open_message(out)  # neither text nor calls: an empty message, as from_chat
            assert isinstance(self._current, _Message)
            self._open_part(self._current, "output_text", out)
        if self._current is not None:
            self._close(out, "incomplete" if reason else "completed")
        status = "incomplete" if reason else "completed"
        self.response = self._response(status, self._done, usage(self._usage), reason)
        out.append(self._event(f"response.{status}", {"response": self.response}))
        return b"".join(out)

    def failed(self, code: str, message: str) -> bytes:
        """End a broken stream: an `error` event, then `response.failed` carrying what
        was produced so far. Nothing once the stream has ended."""
        if self.ended:
            return b""
        out = [self.start()]
        error_type = ERROR_TYPES.get(code, "server_error")
        out.append(
            self._event(
                "error",
                {
                    "code": code,
                    "message": message,
                    "param": None,
                    "error": {"type": error_type, "code": code, "message": message, "param": None},
                },
            )
        )
        output = list(self._done)
        if self._current is not None:
            output.append(self._current.item("incomplete"))
            self._current = None
        reported = code if code in RESPONSE_ERROR_CODES else "server_error"
        self.response = self._response(
            "failed", output, usage(self._usage), error={"code": reported, "message": message}
        )
        out.append(self._event("response.failed", {"response": self.response}))
        return b"".join(out)

    # -- one chunk ---------------------------------------------------------------------

    def _choice(self, choice: Json, out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if content and isinstance(content, str):
                self._text("output_text", content, out)
            refusal = delta.get("refusal")
            if refusal and isinstance(refusal, str):
                self._text("refusal", refusal, out)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._call(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish_reason = finish

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        message = self._current
        if not isinstance(message, _Message):
            message = self._open_message(out)
        part = message.parts.get(kind) or self._open_part(message, kind, out)
        part.chunks.append(text)
        out.append(self._delta(DELTA_EVENTS[kind], part.prefix, text))

    def _call(self, call: Json, out: list[bytes]) -> None:
        index = call.get("index")
        index = index if isinstance(index, int) else 0
        name, arguments, custom = tool_call_parts(call)
        state = self._calls.get(index)
        if state is None:
            if self._current is not None:
                self._close(out, "completed")
            call_id = call.get("id")
            state = _Call(
                new_id(CUSTOM_CALL_PREFIX if custom else "fc"),
                call_id if isinstance(call_id, str) and call_id else new_id("call"),
                name if isinstance(name, str) else "",
                len(self._done),
                custom,
            )
            self._calls[index] = state
            self._current = state
            out.append(
                self._event(
                    "response.output_item.added",
                    {"output_index": state.output_index, "item": state.item("in_progress")},
                )
            )
        elif state is not self._current:
            raise BadUpstreamReply(
                f"The upstream stream went back to tool call {index} after it had ended.",
                code="bad_upstream_reply",
            )
        elif isinstance(name, str) and name:
            state.name += name  # a name split over chunks (rare)
        if arguments and isinstance(arguments, str):
            state.arguments.append(arguments)
            event = CUSTOM_INPUT_DELTA if state.custom else "response.function_call_arguments.delta"
            out.append(self._delta(event, state.prefix, arguments))

    # -- items -------------------------------------------------------------------------

    def _open_message(self, out: list[bytes]) -> _Message:
        if self._current is not None:
            self._close(out, "completed")
        message = _Message(new_id("msg"), len(self._done))
        self._current = message
        out.append(
            self._event(
                "response.output_item.added",
                {"output_index": message.output_index, "item": message.item("in_progress")},
            )
        )
        return message

    def _open_part(self, message: _Message, kind: str, out: list[bytes]) -> _Part:
        index = len(message.parts)
        fields: Json = {
            "item_id": message.item_id,
            "output_index": message.output_index,
            "content_index": index,
        }
        if kind == "output_text":
            part = _Part(kind, index, _delta_prefix({**fields, "logprobs": []}))
            empty = output_text_part("")
        else:
            part = _Part(kind, index, _delta_prefix(fields))
            empty = refusal_part("")
        message.parts[kind] = part
        out.append(self._event("response.content_part.added", {**fields, "part": empty}))
        return part

    def _close(self, out: list[bytes], status: str) -> None:
        current = self._current
        assert current is not None
        self._current = None
        fields = {"item_id": current.item_id, "output_index": current.output_index}
        if isinstance(current, _Message):
            for part in current.parts.values():
                where = {**fields, "content_index": part.index}
                if part.kind == "output_text":
                    done = {**where, "text": part.text, "logprobs": []}
                    out.append(self._event("response.output_text.done", done))
                else:
                    out.append(
                        self._event("response.refusal.done", {**where, "refusal": part.text})
                    )
                out.append(
                    self._event("response.content_part.done", {**where, "part": part.done()})
                )
        elif current.custom:
            done = {**fields, "input": "".join(current.arguments)}
            out.append(self._event(CUSTOM_INPUT_DONE, done))
        else:
            done = {**fields, "name": current.name, "arguments": "".join(current.arguments)}
            out.append(self._event("response.function_call_arguments.done", done))
        item = current.item(status)
        self._done.append(item)
        out.append(
            self._event(
                "response.output_item.done", {"output_index": current.output_index, "item": item}
            )
        )

    # -- events ------------------------------------------------------------------------

    def _event(self, event_type: str, fields: Json) -> bytes:
        payload = {"type": event_type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return sse(event_type, payload)

    def _delta(self, event_type: str, prefix: bytes, delta: str) -> bytes:
        sequence = self._sequence
        self._sequence += 1
        return (
            _EVENT_HEADS[event_type]
            + str(sequence).encode()
            + prefix
            + orjson.dumps(delta)
            + b"}\n\n"
        )

    def _response(
        self,
        status: str,
        output: list[Json],
        usage: Json | None,
        incomplete_reason: str | None = None,
        error: Json | None = None,
    ) -> Json:
        return response_object(
            self._translation,
            self._id,
            self._created_at,
            model=self._model,
            status=status,
            output=output,
            usage=usage,
            incomplete_reason=incomplete_reason,
            error=error,
        )
