"""A chat completion as a Response object (`object: response`).

The Response repeats the request's parameters (`ChatTranslation.echo`) and carries
the model's turn as output items: a `message` item with the text (`output_text`)
and any refusal, then one `function_call` item per tool call (`custom_tool_call`
for a custom tool's), in the order chat gives them (chat's "text, then calls"
turn). `call_id` is the chat tool call's id, so the client's `function_call_output`
finds its way back to the same call.

Status follows chat's `finish_reason`: `length` is `incomplete` with reason
`max_output_tokens`, `content_filter` is `incomplete` with reason `content_filter`,
anything else (`stop`, `tool_calls`, an unknown reason) is `completed`. In an
incomplete response the last output item is the one that was cut, so it alone is
marked `incomplete`.

Not carried: `reasoning_content` (vLLM's and DeepSeek's reasoning text) and
`logprobs`; Responses would need reasoning items and `include`d log probabilities,
which translation does not produce (`request` refuses asking for log probabilities).

The shapes here are shared with `responses.stream`, so a streamed response ends in
exactly the object a non-streamed one would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from responses.errors import BadUpstreamReply
from responses.ids import new_id
from responses.request import ChatTranslation
from responses.tool_params import custom_call_from_chat, is_custom_call

Json = dict[str, Any]

#: Chat finish reasons that cut the answer short, and the Responses reason for each.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def from_chat(
    chat: Mapping[str, Any], translation: ChatTranslation, response_id: str, created_at: float
) -> Json:
    """The Response for a non-streamed chat completion (`chat` is its parsed body)."""
    choices = chat.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadUpstreamReply("The upstream reply has no choices.", code="bad_upstream_reply")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BadUpstreamReply("The upstream reply has no message.", code="bad_upstream_reply")
    reason = INCOMPLETE_REASONS.get(str(choice.get("finish_reason")))

    output: list[Json] = []
    text = _text(message.get("content"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        calls = []
    if text or refusal or not calls:
        parts = []
        if text or not refusal:
            parts.append(output_text_part(text))
        if refusal:
            parts.append(refusal_part(refusal))
        output.append(message_item(new_id("msg"), parts, "completed"))
    for k, call in enumerate(calls):
        output.append(_function_call(call, k))
    if reason is not None and output:
        output[-1]["status"] = "incomplete"
    model = chat.get("model")
    return response_object(
        translation,
        response_id,
        created_at,
        model=model if isinstance(model, str) and model else translation.model,
        status="incomplete" if reason else "completed",
        output=output,
        usage=usage(chat.get("usage")),
        incomplete_reason=reason,
    )


def _text(content: Any) -> str:
    """Chat content is a string; a few servers send a list of text parts instead."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _function_call(call: Any, k: int) -> Json:
    if is_custom_call(call):
        return custom_call_from_chat(call, k)  # a `custom_tool_call` item
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise BadUpstreamReply(
            f"Tool call {k} of the upstream reply has no function name.", code="bad_upstream_reply"
        )
    assert isinstance(function, dict) and isinstance(call, dict)
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        # Some servers send the arguments as an object; the API promises a JSON string.
        arguments = "" if arguments is None else orjson.dumps(arguments).decode()
    call_id = call.get("id")
    return function_call_item(
        new_id("fc"),
        call_id if isinstance(call_id, str) and call_id else new_id("call"),
        name,
        arguments,
        "completed",
    )


# -- shapes shared with the stream ----------------------------------------------------------


def output_text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> Json:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[Json], status: str) -> Json:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def usage(chat_usage: Any) -> Json | None:
    """Chat's usage in Responses' terms; None when the upstream reported none (the
    Response then has no `usage`)."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = _count(chat_usage.get("prompt_tokens"))
    completion = _count(chat_usage.get("completion_tokens"))
    total = chat_usage.get("total_tokens")
    prompt_details = chat_usage.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = chat_usage.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens")),
            "cache_write_tokens": _count(
                prompt_details.get(
                    "cache_write_tokens", prompt_details.get("cache_creation_tokens")
                )
            ),
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _count(completion_details.get("reasoning_tokens")),
        },
        "total_tokens": _count(total) if total is not None else prompt + completion,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def response_object(
    translation: ChatTranslation,
    response_id: str,
    created_at: float,
    *,
    model: str,
    status: str,
    output: list[Json],
    usage: Json | None,
    incomplete_reason: str | None = None,
    error: Json | None = None,
) -> Json:
    """A whole Response object: identity, state, output, then the echoed request.

    `usage` is left out, not null, when the upstream reported none (and in the
    `response.created` / `in_progress` snapshots): OpenAI's document (openai-openapi
    2.3.0, `Response`) makes it optional and never null, and a count the gateway
    made up would be billed as real."""
    response: Json = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": model,
        "output": output,
    }
    if usage is not None:
        response["usage"] = usage
    response.update(translation.echo)
    return response
