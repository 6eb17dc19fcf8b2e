"""Responses input items: checked, normalized, and turned into chat messages.

Two steps, because the two results live differently. `normalize_item` turns what a
client sent (a bare `{"role", "content": "text"}` or a full item) into one canonical
item with an id: that is what a response stores, lists at `/input_items` and replays
for `previous_response_id`. `Conversation` then turns canonical items, history first,
into Chat Completions messages, in order:

- a message item becomes a message of the same role (`developer` becomes `system`:
  the same authority, and the role open-weight chat templates know);
- `function_call` items become `tool_calls` of one assistant message: consecutive
  calls share it, and so does an assistant message item right before them (chat's
  "text, then calls" turn is one message); `custom_tool_call` items too, as chat's
  custom tool calls (responses/tool_params.py);
- a `function_call_output` (or `custom_tool_call_output`) becomes a `role: tool`
  message; one for a call never made, a second one for the same call, or a call left
  without one is refused, as OpenAI refuses them (a chat upstream would fail later
  with a vaguer error);
- `reasoning` items are kept in the record but send nothing: chat has no field
  that carries another model's reasoning back;
- an `item_reference` (`{"type": "item_reference", "id"}`, or `{"id"}` alone) stands
  for a stored item of the same owner: it stays a reference in the canonical input
  until the gateway reads the item (after admission), then `substitute` puts the
  item in its place and the input is translated again, whole (an id referred to
  twice, or referred to and sent too, is refused as OpenAI refuses it);
- anything else (built-in tool calls, MCP items...) is refused by name: dropping it
  would change what the model is told.

A field an item or content part does not have in OpenAI's API is refused
(`unknown_parameter`, `param` naming its path: `input[0].content[1].foo`), as OpenAI
refuses it: the canonical item keeps only what it translates, so what is stored is
what was checked and counted. Fields OpenAI defines that a chat upstream has no use
for (`phase`, `prompt_cache_breakpoint`, an `input_file`'s `detail`, a call output's
`name`, `annotations` and `logprobs` of client-sent output text) are checked and not
kept.

A request that continues a stored conversation (`previous_response_id`) is translated
in two steps: its own input first (`Conversation(continues=True)`, before the history
is read, so everything before admission stays cheap), then `join` puts the replayed
history (`replay`, or a `Conversation` the history's items were added to) in front and
checks the two as one conversation (an output for a call the history made, a call the
history left open, a call id used twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.fields import echoed
from responses.errors import (
    InvalidRequest,
    invalid_type,
    invalid_value,
    missing,
    unknown_parameter,
    unsupported,
)
from responses.ids import new_id
from responses.tool_params import (
    CUSTOM_CALL,
    CUSTOM_CALL_FIELDS,
    CUSTOM_CALL_OUTPUT,
    CUSTOM_CALL_PREFIX,
    CUSTOM_OUTPUT_FIELDS,
    CUSTOM_OUTPUT_PREFIX,
    chat_tool_call,
)

Item = dict[str, Any]
Message = dict[str, Any]

INPUT_ROLES = ("user", "system", "developer", "assistant")
#: Chat's role for each Responses role.
CHAT_ROLE = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
ITEM_STATUSES = ("in_progress", "completed", "incomplete")
IMAGE_DETAILS = ("low", "high", "auto", "original")
#: Content part types each role may send (system and developer: text only, as in chat).
PART_TYPES = {
    "user": ["input_text", "input_image", "input_file"],
    "assistant": ["input_text", "output_text", "refusal"],
}
#: Item types a client may send that have no Chat Completions form (each refused by
#: name; a type not listed here is refused as `Input items of type '...'`).
UNTRANSLATABLE_ITEMS: dict[str, str] = {}
#: An input item that stands for an item of an earlier stored response, by id
#: (openai-openapi 2.3.0: ItemReferenceParam; its `type` may be left out).
REFERENCE = "item_reference"
REFERENCE_FIELDS = frozenset({"type", "id"})
MESSAGE_PHASES = ("commentary", "final_answer")
FILE_DETAILS = ("auto", "low", "high")

# The fields each item and content part may carry: OpenAI's OpenAPI document 2.3.0
# (github.com/openai/openai-openapi, MIT), schemas EasyInputMessage, InputMessage and
# OutputMessage (a message item: `id` too, which the API returns on input items and
# clients send back), FunctionToolCall, FunctionCallOutputItemParam, ReasoningItem,
# InputTextContent, InputImageContent, InputFileContent, OutputTextContent,
# RefusalContent, SummaryTextContent, ReasoningTextContent. tests/data holds them.
MESSAGE_FIELDS = frozenset({"type", "role", "content", "status", "id", "phase"})
CALL_FIELDS = frozenset(
    {"type", "id", "call_id", "name", "arguments", "status", "namespace", "caller"}
)
OUTPUT_FIELDS = frozenset(
    {"type", "id", "call_id", "output", "status", "name", "namespace", "caller"}
)
REASONING_FIELDS = frozenset({"type", "id", "summary", "content", "encrypted_content", "status"})
PART_FIELDS = {
    "input_text": frozenset({"type", "text", "prompt_cache_breakpoint"}),
    "input_image": frozenset({"type", "image_url", "file_id", "detail", "prompt_cache_breakpoint"}),
    "input_file": frozenset(
        {
            "type",
            "file_id",
            "filename",
            "file_data",
            "file_url",
            "detail",
            "prompt_cache_breakpoint",
        }
    ),
    "output_text": frozenset({"type", "text", "annotations", "logprobs"}),
    "refusal": frozenset({"type", "refusal"}),
    "summary_text": frozenset({"type", "text"}),
    "reasoning_text": frozenset({"type", "text"}),
}


# -- normalization --------------------------------------------------------------------


def normalize_input(value: Any) -> list[Item]:
    """The request's `input` (a string or a list of items) as canonical items."""
    if isinstance(value, str):
        return [_message("user", [{"type": "input_text", "text": value}], None, "completed")]
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    return [normalize_item(item, i) for i, item in enumerate(value)]


def at(index: int | None, rest: str = "") -> str:
    """The `param` naming item `index` of `input` (None: the replayed history).
    Built only when an error needs it: formatting paths for every item and part
    would be a good share of the translation's time."""
    return "previous_response_id" if index is None else f"input[{index}]{rest}"


def normalize_item(raw: Any, i: int) -> Item:
    """Item `i` of `input` as a canonical item (ids and statuses filled in)."""
    if not isinstance(raw, dict):
        raise invalid_type(at(i), "an object", raw)
    kind = raw.get("type")
    if kind is None and "role" in raw:
        kind = "message"
    elif kind is None and "id" in raw and raw.keys() <= REFERENCE_FIELDS:
        kind = REFERENCE
    if kind == "message":
        return _normalize_message(raw, i)
    if kind == REFERENCE:
        _check_fields(raw, REFERENCE_FIELDS, at(i))
        item_id = _optional_id(raw, i)
        if item_id is None:
            raise missing(at(i, ".id"))
        return {"type": REFERENCE, "id": item_id}
    if kind in ("function_call", CUSTOM_CALL):
        return _normalize_call(raw, i, kind)
    if kind in ("function_call_output", CUSTOM_CALL_OUTPUT):
        return _normalize_output(raw, i, kind)
    if kind == "reasoning":
        return _normalize_reasoning(raw, i)
    if kind is None:
        raise missing(at(i, ".type"))
    if not isinstance(kind, str):
        raise invalid_type(at(i, ".type"), "a string", kind)
    what = UNTRANSLATABLE_ITEMS.get(kind, f"Input items of type '{kind}'")
    raise unsupported(at(i, ".type"), what)


def _message(role: str, content: list[Item], item_id: str | None, status: str) -> Item:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "role": role,
        "status": status,
        "content": content,
    }


def _check_fields(raw: Item, allowed: frozenset[str], where: str) -> None:
    """Refuses a field `allowed` does not name. A loop over the item's own keys: most
    items have four or five, so this costs less than a set difference."""
    for key in raw:
        if key not in allowed:
            raise unknown_parameter(f"{where}.{key}")


def _normalize_message(raw: Item, i: int) -> Item:
    _check_fields(raw, MESSAGE_FIELDS, at(i))
    phase = raw.get("phase")
    if phase is not None and phase not in MESSAGE_PHASES:
        raise invalid_value(at(i, ".phase"), f"'{phase}' is not one of {list(MESSAGE_PHASES)}.")
    role = raw.get("role")
    if role is None:
        raise missing(at(i, ".role"))
    if role not in INPUT_ROLES:
        raise invalid_value(at(i, ".role"), f"'{role}' is not one of {list(INPUT_ROLES)}.")
    content = raw.get("content")
    if content is None:
        raise missing(at(i, ".content"))
    if isinstance(content, str):
        parts: list[Any] = [
            {"type": "output_text" if role == "assistant" else "input_text", "text": content}
        ]
    elif isinstance(content, list) and content:
        parts = content
    elif isinstance(content, list):
        raise invalid_value(at(i, ".content"), "must not be an empty array.")
    else:
        raise invalid_type(at(i, ".content"), "a string or an array of content parts", content)
    canonical = [_normalize_part(part, role, i, k) for k, part in enumerate(parts)]
    return _message(role, canonical, _optional_id(raw, i), _status(raw, i))


def _normalize_part(part: Any, role: str, i: int, k: int) -> Item:
    if not isinstance(part, dict):
        raise invalid_type(at(i, f".content[{k}]"), "an object", part)
    kind = part.get("type")
    allowed = PART_FIELDS.get(kind) if isinstance(kind, str) else None
    if allowed is not None and kind not in ("summary_text", "reasoning_text"):
        _check_fields(part, allowed, at(i, f".content[{k}]"))
        _check_cache_breakpoint(part, at(i, f".content[{k}]"))
    if kind == "input_text" or (kind == "output_text" and role == "assistant"):
        if kind == "output_text":
            for field in ("annotations", "logprobs"):
                if part.get(field) is not None and not isinstance(part[field], list):
                    raise invalid_type(at(i, f".content[{k}].{field}"), "an array", part[field])
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_type(at(i, f".content[{k}].text"), "a string", text)
        if role == "assistant":
            # OpenAI's `OutputTextContent` requires both arrays; the client's own
            # annotations and log probabilities are checked, not kept.
            return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {"type": "input_text", "text": text}
    where = at(i, f".content[{k}]")
    if kind == "refusal" and role == "assistant":
        refusal = part.get("refusal")
        if not isinstance(refusal, str):
            raise invalid_type(f"{where}.refusal", "a string", refusal)
        return {"type": "refusal", "refusal": refusal}
    if kind in ("input_image", "input_file"):
        if role != "user":
            raise unsupported(f"{where}.type", f"An '{kind}' part in a '{role}' message")
        if kind == "input_image":
            return _normalize_image(part, where)
        return _normalize_file(part, where)
    supported = PART_TYPES.get(role, ["input_text"])
    raise invalid_value(f"{where}.type", f"'{kind}' is not one of {supported}.")


def _normalize_image(part: Item, where: str) -> Item:
    if part.get("file_id") is not None:
        raise unsupported(f"{where}.file_id", "An image given by file id (the Files API)")
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise invalid_type(f"{where}.image_url", "a URL or a data URL", url)
    detail = part.get("detail") or "auto"
    if detail not in IMAGE_DETAILS:
        raise invalid_value(f"{where}.detail", f"'{detail}' is not one of {list(IMAGE_DETAILS)}.")
    return {"type": "input_image", "image_url": url, "detail": detail}


def _normalize_file(part: Item, where: str) -> Item:
    for field, what in (
        ("file_id", "A file given by id (the Files API)"),
        ("file_url", "A file given by URL"),
    ):
        if part.get(field) is not None:
            raise unsupported(f"{where}.{field}", what)
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        raise invalid_type(f"{where}.file_data", "a base64 data URL", data)
    detail = part.get("detail")
    if detail is not None and detail not in FILE_DETAILS:
        raise invalid_value(f"{where}.detail", f"'{detail}' is not one of {list(FILE_DETAILS)}.")
    canonical: Item = {"type": "input_file", "file_data": data}
    filename = part.get("filename")
    if filename is not None:
        if not isinstance(filename, str):
            raise invalid_type(f"{where}.filename", "a string", filename)
        canonical["filename"] = filename
    return canonical


def _normalize_call(raw: Item, i: int, kind: str) -> Item:
    """A `function_call`, or a `custom_tool_call` (its free-text `input` where a
    function's call has `arguments`: responses/tool_params.py)."""
    custom = kind == CUSTOM_CALL
    text = "input" if custom else "arguments"
    _check_fields(raw, CUSTOM_CALL_FIELDS if custom else CALL_FIELDS, at(i))
    call_id = _required_string(raw, "call_id", i)
    name = _required_string(raw, "name", i)
    arguments = _required_string(raw, text, i)
    if raw.get("namespace"):
        raise unsupported(at(i, ".namespace"), "A function call in a tool namespace")
    _check_caller(raw, i)
    return {
        "id": _optional_id(raw, i) or new_id(CUSTOM_CALL_PREFIX if custom else "fc"),
        "type": kind,
        "call_id": call_id,
        "name": name,
        text: arguments,
        "status": _status(raw, i),
    }


def _check_caller(raw: Item, i: int) -> None:
    """A call's `caller`: the model itself (`direct`, or none) is what chat knows; a
    call a program made is refused by name."""
    caller = raw.get("caller")
    if caller is None:
        return
    if not isinstance(caller, dict):
        raise invalid_type(at(i, ".caller"), "an object", caller)
    kind = caller.get("type")
    if kind == "program":
        raise unsupported(at(i, ".caller"), "A function call made by a program")
    if kind != "direct":
        raise invalid_value(at(i, ".caller.type"), f"'{kind}' is not one of ['direct', 'program'].")
    _check_fields(caller, frozenset({"type"}), at(i, ".caller"))


def _check_cache_breakpoint(part: Item, where: str) -> None:
    value = part.get("prompt_cache_breakpoint")
    if value is not None and not isinstance(value, dict):
        raise invalid_type(f"{where}.prompt_cache_breakpoint", "an object", value)


def _normalize_output(raw: Item, i: int, kind: str) -> Item:
    custom = kind == CUSTOM_CALL_OUTPUT
    _check_fields(raw, CUSTOM_OUTPUT_FIELDS if custom else OUTPUT_FIELDS, at(i))
    call_id = _required_string(raw, "call_id", i)
    if raw.get("namespace"):
        raise unsupported(at(i, ".namespace"), "A function call output in a tool namespace")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_type(at(i, ".name"), "a string", name)
    _check_caller(raw, i)
    output = raw.get("output")
    if isinstance(output, list):
        output = [_output_part(part, i, k) for k, part in enumerate(output)]
    elif not isinstance(output, str):
        raise invalid_type(at(i, ".output"), "a string or an array of content parts", output)
    return {
        "id": _optional_id(raw, i) or new_id(CUSTOM_OUTPUT_PREFIX if custom else "fco"),
        "type": kind,
        "call_id": call_id,
        "output": output,
        "status": _status(raw, i),
    }


def _output_part(part: Any, i: int, k: int) -> Item:
    where = at(i, f".output[{k}]")
    if not isinstance(part, dict):
        raise invalid_type(where, "an object", part)
    if part.get("type") != "input_text":
        raise unsupported(
            f"{where}.type",
            f"A function call output part of type '{part.get('type')}' (chat tool messages "
            "carry text only)",
        )
    _check_fields(part, PART_FIELDS["input_text"], where)
    _check_cache_breakpoint(part, where)
    if not isinstance(part.get("text"), str):
        raise invalid_type(f"{where}.text", "a string", part.get("text"))
    return {"type": "input_text", "text": part["text"]}


def _normalize_reasoning(raw: Item, i: int) -> Item:
    """Kept (another turn may send it back) and never sent: only its defined fields,
    each checked, so what is stored is what the API allows."""
    _check_fields(raw, REASONING_FIELDS, at(i))
    item_id = _optional_id(raw, i)
    if item_id is None:
        raise missing(at(i, ".id"))
    summary = raw.get("summary")
    if not isinstance(summary, list):
        raise invalid_type(at(i, ".summary"), "an array", summary)
    canonical: Item = {
        "id": item_id,
        "type": "reasoning",
        "summary": _reasoning_parts(summary, "summary_text", at(i, ".summary")),
    }
    content = raw.get("content")
    if content is not None:
        if not isinstance(content, list):
            raise invalid_type(at(i, ".content"), "an array", content)
        canonical["content"] = _reasoning_parts(content, "reasoning_text", at(i, ".content"))
    encrypted = raw.get("encrypted_content")
    if encrypted is not None:
        if not isinstance(encrypted, str):
            raise invalid_type(at(i, ".encrypted_content"), "a string", encrypted)
        canonical["encrypted_content"] = encrypted
    if raw.get("status") is not None:
        canonical["status"] = _status(raw, i)
    return canonical


def _reasoning_parts(parts: list[Any], kind: str, where: str) -> list[Item]:
    checked = []
    for k, part in enumerate(parts):
        if not isinstance(part, dict):
            raise invalid_type(f"{where}[{k}]", "an object", part)
        if part.get("type") != kind:
            raise invalid_value(f"{where}[{k}].type", f"'{part.get('type')}' is not '{kind}'.")
        _check_fields(part, PART_FIELDS[kind], f"{where}[{k}]")
        if not isinstance(part.get("text"), str):
            raise invalid_type(f"{where}[{k}].text", "a string", part.get("text"))
        checked.append({"type": kind, "text": part["text"]})
    return checked


def _required_string(raw: Item, name: str, i: int) -> str:
    value = raw.get(name)
    if isinstance(value, str) and (value or name in ("arguments", "input")):
        return value
    if value is None:
        raise missing(at(i, f".{name}"))
    if not isinstance(value, str):
        raise invalid_type(at(i, f".{name}"), "a string", value)
    raise invalid_value(at(i, f".{name}"), "must not be empty.")


def _optional_id(raw: Item, i: int) -> str | None:
    value = raw.get("id")
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid_type(at(i, ".id"), "a non-empty string", value)
    return value


def _status(raw: Item, i: int) -> str:
    status = raw.get("status")
    if status is None:
        return "completed"
    if status not in ITEM_STATUSES:
        raise invalid_value(at(i, ".status"), f"'{status}' is not one of {list(ITEM_STATUSES)}.")
    return str(status)


# -- chat messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Continuation:
    """What joining a request's input to the history it continues needs to check:
    the calls its input makes and the outputs it gives for calls it does not make
    (each with its index in `input`), whether its first message is an assistant
    message of calls alone (which joins a history ending in an assistant message,
    as in one pass), and where in the chat messages the history goes (after the
    instructions)."""

    calls: tuple[tuple[str, int], ...]
    answers: tuple[tuple[str, int], ...]
    leading_calls: bool
    at: int


class Conversation:
    """Chat messages built from canonical items, added in conversation order.

    `index` is the item's place in `input`, for errors; None for replayed history.
    With `continues`, the items are a request's input that a stored history will be
    put in front of (`join`): an output for a call the input does not make is taken
    to answer one of the history's, and checked when the history is joined.
    `provisional` translates an input whose item references are not resolved yet
    (what admission counts and the checks before it read): references are left out,
    and a call may be left open (a referenced output may answer it). The input is
    translated again, checked whole, once they are (`request.resolve_references`).
    """

    def __init__(self, continues: bool = False, provisional: bool = False) -> None:
        self.messages: list[Message] = []
        #: Calls waiting for their output: call id -> index of the call's item.
        self._open_calls: dict[str, int | None] = {}
        self._answered: set[str] = set()
        #: The assistant message that following calls join, while it is the last one.
        self._assistant: Message | None = None
        self.continues = continues or provisional
        self.provisional = provisional
        self._calls: list[tuple[str, int]] = []
        self._answers: list[tuple[str, int]] = []
        #: The first message an item made (not the instructions), and where it is.
        self._first: Message | None = None
        self._start: int | None = None

    def add(self, item: Item, index: int | None) -> None:
        if self._start is None:
            self._start = len(self.messages)
        kind = item["type"]
        if kind == "message":
            self._add_message(item)
        elif kind in ("function_call", CUSTOM_CALL):
            self._add_call(item, index)
        elif kind in ("function_call_output", CUSTOM_CALL_OUTPUT):
            self._add_output(item, index)
        elif kind == REFERENCE and not self.provisional:
            raise ValueError("an item reference is resolved before it is translated")
        # reasoning: kept in the record, nothing to send (see the module docstring)

    def finish(self) -> list[Message]:
        """The messages, once every call has its output (and, unless a history will
        be joined, once there is something to send)."""
        if self._open_calls and not self.provisional:
            call_id, index = next(iter(self._open_calls.items()))
            raise InvalidRequest(
                f"No tool output found for function call {call_id}.",
                param=at(index),
                code="missing_function_call_output",
            )
        if not self.messages and not self.continues:
            raise _empty_input()
        return self.messages

    def continuation(self, at: int) -> Continuation:
        """What `join` needs, for a history that goes at message `at`."""
        first = self._first
        leading = (
            first is not None
            and first["role"] == "assistant"
            and first["content"] is None
            and self._start == at
            and len(self.messages) > at
            and self.messages[at] is first
        )
        return Continuation(tuple(self._calls), tuple(self._answers), leading, at)

    def _made(self, message: Message) -> None:
        self.messages.append(message)
        if self._first is None:
            self._first = message

    def _add_message(self, item: Item) -> None:
        role = item["role"]
        if role == "assistant":
            message = _assistant_message(item["content"])
            self._made(message)
            self._assistant = message
            return
        self._made({"role": CHAT_ROLE[role], "content": _chat_content(item["content"])})
        self._assistant = None

    def _add_call(self, item: Item, index: int | None) -> None:
        if item["call_id"] in self._open_calls or item["call_id"] in self._answered:
            raise InvalidRequest(
                f"Duplicate function call id {item['call_id']}.",
                param=at(index, ".call_id"),
                code="duplicate_function_call",
            )
        call = chat_tool_call(item)
        if self._assistant is None:
            self._assistant = {"role": "assistant", "content": None}
            self._made(self._assistant)
        self._assistant.setdefault("tool_calls", []).append(call)
        self._open_calls[item["call_id"]] = index
        if index is not None:
            self._calls.append((item["call_id"], index))

    def _add_output(self, item: Item, index: int | None) -> None:
        call_id = item["call_id"]
        if call_id in self._open_calls:
            del self._open_calls[call_id]
        elif self.continues and index is not None and call_id not in self._answered:
            self._answers.append((call_id, index))  # one of the history's calls: `join`
        else:
            raise _bad_output(call_id, call_id in self._answered, index)
        self._answered.add(call_id)
        output = item["output"]
        content: Any = output
        if isinstance(output, list):
            content = [{"type": "text", "text": part["text"]} for part in output]
        self._made({"role": "tool", "tool_call_id": call_id, "content": content})
        self._assistant = None


def reference_ids(items: list[Item]) -> tuple[str, ...]:
    """The ids the input's item references name, in order. Each item of a
    conversation appears once, as OpenAI has it: an id referred to twice, or
    referred to and also sent as an item, is refused (`duplicate_item`)."""
    referred = [item["id"] for item in items if item["type"] == REFERENCE]
    if not referred:
        return ()
    seen: set[str] = set()
    for item_id in referred:
        if item_id in seen:
            raise duplicate_item(item_id)
        seen.add(item_id)
    for item in items:
        if item["type"] != REFERENCE and item.get("id") in seen:
            raise duplicate_item(item["id"])
    return tuple(referred)


def substitute(items: list[Item], found: Mapping[str, Item]) -> list[Item]:
    """`items` with each item reference replaced by the stored item it names."""
    return [found[item["id"]] if item["type"] == REFERENCE else item for item in items]


def duplicate_item(item_id: str) -> InvalidRequest:
    """OpenAI's refusal of an item that appears twice in one conversation (its words,
    `param: input`, no code)."""
    return InvalidRequest(
        f"Duplicate item found with id {echoed(item_id)}. Remove duplicate items from "
        "your input and try again.",
        param="input",
    )


def replay(history: Iterable[Item]) -> Conversation:
    """The stored conversation's items (canonical, oldest first) as chat messages."""
    past = Conversation()
    for item in history:
        past.add(item, None)
    return past


def join(messages: list[Message], past: Conversation, continuation: Continuation) -> list[Message]:
    """The chat messages of a continued conversation: `messages` (a request's input,
    translated with `Conversation(continues=True)`) with the conversation it
    continues (`past`, the history's items added to it: `replay`) put in front of
    them, after the instructions.

    Checked as one conversation, with the errors one pass would give: an output must
    answer a call the history left open, every call the history left open must be
    answered, and a call id is used once. `past` is spent."""
    events = sorted(
        [(index, 0, call_id) for call_id, index in continuation.calls]
        + [(index, 1, call_id) for call_id, index in continuation.answers]
    )
    for index, is_answer, call_id in events:
        if not is_answer:
            if call_id in past._open_calls or call_id in past._answered:
                raise InvalidRequest(
                    f"Duplicate function call id {call_id}.",
                    param=at(index, ".call_id"),
                    code="duplicate_function_call",
                )
        elif call_id in past._open_calls:
            del past._open_calls[call_id]
            past._answered.add(call_id)
        else:
            raise _bad_output(call_id, call_id in past._answered, index)
    if past._open_calls:
        call_id = next(iter(past._open_calls))
        raise InvalidRequest(
            f"No tool output found for function call {call_id}.",
            param=at(None),
            code="missing_function_call_output",
        )
    start = continuation.at
    current = messages[start:]
    if continuation.leading_calls and past._assistant is not None and current:
        # Calls that open the input join the assistant message that ends the history.
        past._assistant.setdefault("tool_calls", []).extend(current[0]["tool_calls"])
        current = current[1:]
    joined = [*messages[:start], *past.messages, *current]
    if not joined:
        raise _empty_input()
    return joined


def _bad_output(call_id: str, answered: bool, index: int | None) -> InvalidRequest:
    if answered:
        detail = f"Duplicate output for function call {call_id}."
    else:
        detail = f"No function call found for function call output with call_id {call_id}."
    return InvalidRequest(detail, param=at(index, ".call_id"), code="invalid_function_call_output")


def _empty_input() -> InvalidRequest:
    return InvalidRequest(
        "The input has no message to send to the model.", param="input", code="empty_input"
    )


def _assistant_message(parts: list[Item]) -> Message:
    """One string of text (what every chat template reads), and a refusal if any."""
    texts = [part["text"] for part in parts if part["type"] == "output_text"]
    message: Message = {"role": "assistant", "content": "".join(texts)}
    refusals = [part["refusal"] for part in parts if part["type"] == "refusal"]
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _chat_content(parts: list[Item]) -> str | list[Item]:
    """A lone text part is sent as a plain string, the form every chat server reads."""
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return str(parts[0]["text"])
    return [_chat_part(part) for part in parts]


def _chat_part(part: Item) -> Item:
    kind = part["type"]
    if kind == "input_text":
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        return {
            "type": "image_url",
            "image_url": {"url": part["image_url"], "detail": part["detail"]},
        }
    file: Item = {"file_data": part["file_data"]}
    if "filename" in part:
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}
