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
  "text, then calls" turn is one message);
- a `function_call_output` becomes a `role: tool` message; one for a call never made,
  a second one for the same call, or a call left without one is refused, as OpenAI
  refuses them (a chat upstream would fail later with a vaguer error);
- `reasoning` items are kept in the record but send nothing: chat has no field
  that carries another model's reasoning back;
- anything else (item references, built-in tool calls, MCP items...) is refused by
  name: dropping it would change what the model is told.
"""

from __future__ import annotations

from typing import Any

from responses.errors import InvalidRequest, invalid_type, invalid_value, missing, unsupported
from responses.ids import new_id

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
#: Item types a client may send that have no Chat Completions form.
UNTRANSLATABLE_ITEMS = {
    "item_reference": "Item references (an input item that points at a stored item by id)",
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
    if kind == "message":
        return _normalize_message(raw, i)
    if kind == "function_call":
        return _normalize_call(raw, i)
    if kind == "function_call_output":
        return _normalize_output(raw, i)
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


def _normalize_message(raw: Item, i: int) -> Item:
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
    if kind == "input_text" or (kind == "output_text" and role == "assistant"):
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid_type(at(i, f".content[{k}].text"), "a string", text)
        if role == "assistant":
            return {"type": "output_text", "text": text, "annotations": []}
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
    canonical: Item = {"type": "input_file", "file_data": data}
    filename = part.get("filename")
    if filename is not None:
        if not isinstance(filename, str):
            raise invalid_type(f"{where}.filename", "a string", filename)
        canonical["filename"] = filename
    return canonical


def _normalize_call(raw: Item, i: int) -> Item:
    call_id = _required_string(raw, "call_id", i)
    name = _required_string(raw, "name", i)
    arguments = _required_string(raw, "arguments", i)
    if raw.get("namespace"):
        raise unsupported(at(i, ".namespace"), "A function call in a tool namespace")
    return {
        "id": _optional_id(raw, i) or new_id("fc"),
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": _status(raw, i),
    }


def _normalize_output(raw: Item, i: int) -> Item:
    call_id = _required_string(raw, "call_id", i)
    output = raw.get("output")
    if isinstance(output, list):
        output = [_output_part(part, i, k) for k, part in enumerate(output)]
    elif not isinstance(output, str):
        raise invalid_type(at(i, ".output"), "a string or an array of content parts", output)
    return {
        "id": _optional_id(raw, i) or new_id("fco"),
        "type": "function_call_output",
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
    if not isinstance(part.get("text"), str):
        raise invalid_type(f"{where}.text", "a string", part.get("text"))
    return {"type": "input_text", "text": part["text"]}


def _normalize_reasoning(raw: Item, i: int) -> Item:
    item_id = _optional_id(raw, i)
    if item_id is None:
        raise missing(at(i, ".id"))
    summary = raw.get("summary")
    if not isinstance(summary, list):
        raise invalid_type(at(i, ".summary"), "an array", summary)
    return {**raw, "id": item_id, "type": "reasoning"}


def _required_string(raw: Item, name: str, i: int) -> str:
    value = raw.get(name)
    if isinstance(value, str) and (value or name == "arguments"):
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


class Conversation:
    """Chat messages built from canonical items, added in conversation order.

    `index` is the item's place in `input`, for errors; None for replayed history.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        #: Calls waiting for their output: call id -> index of the call's item.
        self._open_calls: dict[str, int | None] = {}
        self._answered: set[str] = set()
        #: The assistant message that following calls join, while it is the last one.
        self._assistant: Message | None = None

    def add(self, item: Item, index: int | None) -> None:
        kind = item["type"]
        if kind == "message":
            self._add_message(item)
        elif kind == "function_call":
            self._add_call(item, index)
        elif kind == "function_call_output":
            self._add_output(item, index)
        # reasoning: kept in the record, nothing to send (see the module docstring)

    def finish(self) -> list[Message]:
        """The messages, once every call has its output."""
        if self._open_calls:
            call_id, index = next(iter(self._open_calls.items()))
            raise InvalidRequest(
                f"No tool output found for function call {call_id}.",
                param=at(index),
                code="missing_function_call_output",
            )
        if not self.messages:
            raise InvalidRequest(
                "The input has no message to send to the model.", param="input", code="empty_input"
            )
        return self.messages

    def _add_message(self, item: Item) -> None:
        role = item["role"]
        if role == "assistant":
            message = _assistant_message(item["content"])
            self.messages.append(message)
            self._assistant = message
            return
        self.messages.append({"role": CHAT_ROLE[role], "content": _chat_content(item["content"])})
        self._assistant = None

    def _add_call(self, item: Item, index: int | None) -> None:
        if item["call_id"] in self._open_calls or item["call_id"] in self._answered:
            raise InvalidRequest(
                f"Duplicate function call id {item['call_id']}.",
                param=at(index, ".call_id"),
                code="duplicate_function_call",
            )
        call = {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        if self._assistant is None:
            self._assistant = {"role": "assistant", "content": None}
            self.messages.append(self._assistant)
        self._assistant.setdefault("tool_calls", []).append(call)
        self._open_calls[item["call_id"]] = index

    def _add_output(self, item: Item, index: int | None) -> None:
        call_id = item["call_id"]
        if call_id not in self._open_calls:
            if call_id in self._answered:
                detail = f"Duplicate output for function call {call_id}."
            else:
                detail = f"No function call found for function call output with call_id {call_id}."
            raise InvalidRequest(
                detail, param=at(index, ".call_id"), code="invalid_function_call_output"
            )
        del self._open_calls[call_id]
        self._answered.add(call_id)
        output = item["output"]
        content: Any = output
        if isinstance(output, list):
            content = [{"type": "text", "text": part["text"]} for part in output]
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        self._assistant = None


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
