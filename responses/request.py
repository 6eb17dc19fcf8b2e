"""A Responses create body (`POST /v1/responses`) as a Chat Completions body.

`to_chat` either translates a parameter faithfully or refuses it with an
`InvalidRequest` naming it; nothing that would change what the model is asked is
dropped quietly. Parameters fall in four groups (`PARAMETERS` lists every one):

- translated: `input` (with the history of `previous_response_id` in front: put
  there by `items.join` once the history is read, see `ChatTranslation.continuation`),
  `instructions` (a leading system message, never stored as history: the API does
  not carry a previous response's instructions over), `tools`, `tool_choice`,
  `text` (`response_format`, `verbosity`), `max_output_tokens`
  (`max_completion_tokens`), `reasoning.effort` (`reasoning_effort`), `stream`
  (with `stream_options.include_usage` forced on, so the final event can report
  usage), and the ones chat shares: `temperature`, `top_p`, `parallel_tool_calls`,
  `user`, `safety_identifier`, `service_tier`, `prompt_cache_key`,
  `prompt_cache_retention`;
- kept for the response only, never sent upstream: `metadata`, `store`,
  `previous_response_id`, `truncation`, `max_tool_calls` (it limits built-in tool
  calls, which translation refuses anyway);
- accepted with no effect, because they only shape things translation never
  produces: `include` (except `message.output_text.logprobs`), `reasoning.summary`
  and `reasoning.context` (no reasoning items come back from a chat upstream),
  `prompt_cache_options`, `stream_options.include_obfuscation`;
- refused: `background`, `conversation`, `prompt`, `moderation`,
  `context_management`, `top_logprobs`, log probabilities in `include`,
  `reasoning.mode` other than `standard`, and any parameter not listed (OpenAI
  refuses unknown parameters too).

`truncation: auto` is echoed but not performed: an input over the model's context
window fails (400 `context_length_exceeded` from the upstream) as with `disabled`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from common.fields import (
    ARRAY,
    BOOLEAN,
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    STRING_OR_OBJECT,
    FieldProblem,
    Fields,
    check_fields,
)
from responses.errors import (
    InvalidRequest,
    invalid_type,
    invalid_value,
    missing,
    refused,
    unknown_parameter,
    unsupported,
)
from responses.items import (
    Continuation,
    Conversation,
    Item,
    Message,
    join,
    normalize_input,
    reference_ids,
    replay,
    substitute,
)
from responses.tool_params import chat_tool_choice, chat_tools, echoed_tools

Json = dict[str, Any]

#: Metadata limits, as OpenAI defines them: it is stored with the response.
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512

#: Parameters copied to the chat body under the same name when given.
SHARED_WITH_CHAT = (
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
)
#: Every parameter `to_chat` knows; anything else is refused as unknown.
PARAMETERS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "metadata",
        "store",
        "previous_response_id",
        "reasoning",
        "include",
        "truncation",
        "max_tool_calls",
        "prompt_cache_options",
        "background",
        "conversation",
        "prompt",
        "moderation",
        "context_management",
        "top_logprobs",
        *SHARED_WITH_CHAT,
    }
)
#: Parameters refused whenever they are set (to anything but null/false/empty).
REFUSED = {
    "background": "Background responses",
    "conversation": "The Conversations API",
    "prompt": "Prompt templates",
    "moderation": "Moderated completions",
    "context_management": "Context management (compaction)",
}
#: `include` values that only add data translation never produces.
INCLUDES_WITHOUT_EFFECT = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
    }
)
TEXT_FORMATS = ("text", "json_schema", "json_object")
TRUNCATIONS = ("auto", "disabled")

#: Type checks for the simple parameters (null is accepted for each), with the kernel
#: the chat validator uses (common/fields.py): the same words, the same integers (an
#: integral `2247.0` is one), and the JSON Schema `/openapi.json` documents.
RESPONSES_FIELDS: Fields = {
    "instructions": STRING,
    "max_output_tokens": INTEGER,
    "max_tool_calls": INTEGER,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "top_logprobs": INTEGER,
    "parallel_tool_calls": BOOLEAN,
    "stream": BOOLEAN,
    "store": BOOLEAN,
    "stream_options": OBJECT,
    "previous_response_id": STRING,
    "user": STRING,
    "safety_identifier": STRING,
    "service_tier": STRING,
    "prompt_cache_key": STRING,
    "prompt_cache_retention": STRING,
    "reasoning": OBJECT,
    "text": OBJECT,
    "include": ARRAY,
    "truncation": STRING,
    "metadata": OBJECT,
    "tools": ARRAY,
    "tool_choice": STRING_OR_OBJECT,
}

#: Each field's place in `RESPONSES_FIELDS`, the order `_check_types` checks in.
_FIELD_ORDER = {key: place for place, key in enumerate(RESPONSES_FIELDS)}
_SHARED = frozenset(SHARED_WITH_CHAT)


@dataclass(slots=True)
class ChatTranslation:
    """A translated request: the chat body to send, and what the response needs.

    `input_items` are this request's items in canonical form (ids assigned): what
    the store keeps, `/input_items` lists and a later `previous_response_id`
    replays. `echo` holds the request parameters a Response object repeats.
    `continuation` is set when the request continues a stored conversation: its
    chat messages are then its own input's only, and `items.join` puts the history
    in front once it is read (after admission: reading it is work).

    `references` are the ids the input's item references name, in order. While
    there are any, `input_items` holds the references and the chat messages are
    provisional (the input without them, unchecked for calls a referenced item may
    answer): `resolve_references` makes the translation whole once the items are
    read (after admission, like a history).

    Read-only by convention, not `frozen`: a frozen dataclass sets each field with
    `object.__setattr__`, which made the one built per request cost four times as
    much (its dicts and lists were never frozen anyway). `replace` makes a changed one.
    """

    chat: Json
    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    input_items: list[Item]
    echo: Json
    continuation: Continuation | None = None
    references: tuple[str, ...] = ()


def to_chat(body: dict[str, Any], history: list[Item] | None = None) -> ChatTranslation:
    """Translate a Responses create body. With `previous_response_id`, the chat
    messages are the input's own, ready for `items.join` with the stored history
    (the gateway joins it after admission); given `history` (prior input and output
    items, oldest first, see `responses.conversation`), it is joined here."""
    for key in body:
        if key not in PARAMETERS:
            raise InvalidRequest(
                f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter"
            )
    try:
        _check_types(body)
    except FieldProblem as problem:
        raise refused(problem) from None
    if not REFUSED.keys().isdisjoint(body):
        for key, what in REFUSED.items():
            if body.get(key):
                raise unsupported(key, what)
    if body.get("top_logprobs"):
        raise unsupported("top_logprobs", "Log probabilities")
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid_type("model", "a non-empty string", model)
    if "input" not in body or body["input"] is None:
        raise missing("input")
    previous = body.get("previous_response_id")
    if previous is None and history is not None:
        # A caller bug, not a client error: the history belongs to previous_response_id.
        raise ValueError("history is given only when previous_response_id is set")

    items = normalize_input(body["input"])
    instructions = body.get("instructions")
    if isinstance(body["input"], str):
        references: tuple[str, ...] = ()
        messages, continuation = _text_input(body["input"], instructions, previous is not None)
    else:
        references = reference_ids(items)
        if references and history is not None:
            raise ValueError("item references are resolved before a history is joined")
        conversation = _conversation(
            items, instructions, continues=previous is not None, provisional=bool(references)
        )
        messages = conversation.finish()
        continuation = None
        if previous is not None and not references:
            continuation = conversation.continuation(1 if instructions else 0)
    if continuation is not None and history is not None:
        messages = join(messages, replay(history), continuation)

    stream = body.get("stream") is True
    chat: Json = {"model": model, "messages": messages}
    tools = chat_tools(body["tools"]) if body.get("tools") is not None else []
    choice = body.get("tool_choice")
    if choice is not None:
        chat_choice, tools = chat_tool_choice(choice, tools)
        if chat_choice is not None:
            chat["tool_choice"] = chat_choice
    if tools:
        chat["tools"] = tools
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    text = _text(body.get("text"), chat)
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    reasoning = _reasoning(body.get("reasoning"), chat)
    if not _SHARED.isdisjoint(body):
        for key in SHARED_WITH_CHAT:
            if body.get(key) is not None:
                chat[key] = body[key]
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    _check_include(body.get("include"))
    truncation = body.get("truncation") or "disabled"
    if truncation not in TRUNCATIONS:
        raise invalid_value("truncation", f"'{truncation}' is not one of {list(TRUNCATIONS)}.")
    metadata = _metadata(body.get("metadata"))
    store = body.get("store") is not False

    echo: Json = {
        "background": False,
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": metadata,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": previous,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": reasoning,
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier"),
        "store": store,
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": choice if choice is not None else "auto",
        "tools": echoed_tools(body.get("tools") or []),
        "top_logprobs": body.get("top_logprobs"),
        "top_p": body.get("top_p"),
        "truncation": truncation,
    }
    if body.get("user") is not None:
        echo["user"] = body["user"]  # a string, never null, in OpenAI's document
    return ChatTranslation(
        chat=chat,
        model=model,
        stream=stream,
        store=store,
        previous_response_id=previous,
        input_items=items,
        echo=echo,
        continuation=continuation,
        references=references,
    )


def _check_types(body: dict[str, Any]) -> None:
    """`check_fields` for the `RESPONSES_FIELDS` the body has, in that order (so the
    first refused is the one a check of every field would refuse): a body sets a
    few of the 23, and looking up the others took a tenth of the translation."""
    present = [key for key in body if key in RESPONSES_FIELDS]
    if not present:
        return
    if len(present) > 1:
        present.sort(key=_FIELD_ORDER.__getitem__)
    check_fields(body, {key: RESPONSES_FIELDS[key] for key in present})


def _text_input(
    text: str, instructions: str | None, continues: bool
) -> tuple[list[Message], Continuation | None]:
    """What `_conversation` makes of a string input, the commonest one (a user
    message of one text part), without building a `Conversation` (a fifth of the
    translation's own work): the instructions' system message, the user's, and when
    the request continues a conversation, a continuation with no calls, no outputs
    and no leading assistant message, for a history that goes before the user's."""
    messages: list[Message] = [{"role": "system", "content": instructions}] if instructions else []
    messages.append({"role": "user", "content": str(text)})
    continuation = Continuation((), (), False, len(messages) - 1) if continues else None
    return messages, continuation


def _conversation(
    items: list[Item], instructions: str | None, *, continues: bool, provisional: bool = False
) -> Conversation:
    """The input's items as chat messages, after the instructions' system message."""
    conversation = Conversation(continues=continues, provisional=provisional)
    if instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        conversation.add(item, i)
    return conversation


def resolve_references(
    translation: ChatTranslation, found: Mapping[str, Item]
) -> tuple[ChatTranslation, list[Message]]:
    """The translation once its item references are read (`found`: each referenced
    id -> the stored item), and its chat messages: the input with each reference
    replaced by its item, translated and checked as if the client had sent the
    items themselves (a referenced call answered by a later output, every call
    answered...). The input items kept with the response are the items, not the
    references: a later `previous_response_id` replays them, whatever became of
    the responses they were read from."""
    items = substitute(translation.input_items, found)
    instructions = translation.echo.get("instructions")
    continues = translation.previous_response_id is not None
    conversation = _conversation(items, instructions, continues=continues)
    messages = conversation.finish()
    continuation = conversation.continuation(1 if instructions else 0) if continues else None
    resolved = replace(translation, input_items=items, continuation=continuation, references=())
    return resolved, messages


def _text(value: Json | None, chat: Json) -> Json:
    """The echoed `text`, after putting `response_format`/`verbosity` on `chat`."""
    if value is None:
        return {"format": {"type": "text"}}
    echoed = dict(value)
    fmt = value.get("format")
    if fmt is None:
        echoed["format"] = {"type": "text"}
    else:
        if not isinstance(fmt, dict):
            raise invalid_type("text.format", "an object", fmt)
        kind = fmt.get("type")
        if kind not in TEXT_FORMATS:
            raise invalid_value("text.format.type", f"'{kind}' is not one of {list(TEXT_FORMATS)}.")
        if kind == "json_schema":
            chat["response_format"] = {"type": "json_schema", "json_schema": _json_schema(fmt)}
        elif kind == "json_object":
            chat["response_format"] = {"type": "json_object"}
    verbosity = value.get("verbosity")
    if verbosity is not None:
        if not isinstance(verbosity, str):
            raise invalid_type("text.verbosity", "a string", verbosity)
        chat["verbosity"] = verbosity
    for key in value:
        if key not in ("format", "verbosity"):
            raise InvalidRequest(
                f"Unknown parameter: 'text.{key}'.", param=f"text.{key}", code="unknown_parameter"
            )
    return echoed


def _json_schema(fmt: Json) -> Json:
    name = fmt.get("name")
    if name is None:
        raise missing("text.format.name")
    if not isinstance(name, str) or not name:
        raise invalid_type("text.format.name", "a non-empty string", name)
    schema = fmt.get("schema")
    if schema is None:
        raise missing("text.format.schema")
    if not isinstance(schema, dict):
        raise invalid_type("text.format.schema", "an object", schema)
    translated: Json = {"name": name, "schema": schema}
    for key, kind, expected in (("strict", bool, "a boolean"), ("description", str, "a string")):
        value = fmt.get(key)
        if value is not None:
            if not isinstance(value, kind):
                raise invalid_type(f"text.format.{key}", expected, value)
            translated[key] = value
    return translated


#: `reasoning`'s fields in OpenAI's API (openai-openapi 2.3.0, schema Reasoning).
REASONING_KEYS = ("mode", "effort", "summary", "generate_summary", "context")


def _reasoning(value: Json | None, chat: Json) -> Json | None:
    if value is None:
        return None
    for key in value:
        if key not in REASONING_KEYS:
            # Echoed and stored with the response: only what the API defines.
            raise unknown_parameter(f"reasoning.{key}")
    mode = value.get("mode")
    if mode not in (None, "standard"):
        raise unsupported("reasoning.mode", f"Reasoning mode '{mode}'")
    effort = value.get("effort")
    if effort is not None:
        if not isinstance(effort, str):
            raise invalid_type("reasoning.effort", "a string", effort)
        chat["reasoning_effort"] = effort
    return dict(value)


def _check_include(value: list[Any] | None) -> None:
    for k, entry in enumerate(value or ()):
        if not isinstance(entry, str):
            raise invalid_type(f"include[{k}]", "a string", entry)
        if entry == "message.output_text.logprobs":
            raise unsupported(f"include[{k}]", "Log probabilities")
        if entry not in INCLUDES_WITHOUT_EFFECT:
            raise invalid_value(f"include[{k}]", f"'{entry}' is not a known includable.")


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_type("metadata", "an object", value)
    if len(value) > METADATA_MAX_PAIRS:
        raise invalid_value(
            "metadata", f"at most {METADATA_MAX_PAIRS} key-value pairs are allowed."
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise invalid_value(
                "metadata", f"keys are at most {METADATA_MAX_KEY_CHARS} characters."
            )
        if not isinstance(item, str):
            raise invalid_type(f"metadata.{key}", "a string", item)
        if len(item) > METADATA_MAX_VALUE_CHARS:
            raise invalid_value(
                f"metadata.{key}", f"values are at most {METADATA_MAX_VALUE_CHARS} characters."
            )
    return dict(value)
