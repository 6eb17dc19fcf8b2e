"""Chat chunks translated to Responses stream events (`responses.stream`).

Every event is parsed from the bytes the translator produced and validated with the
openai SDK's `ResponseStreamEvent` union; the replay test checks that a stream
reassembles to the object the non-streamed translation gives for the same answer.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from responses.errors import BadUpstreamReply
from responses.ids import new_response_id
from responses.request import ChatTranslation, to_chat
from responses.response import from_chat
from responses.stream import StreamTranslator
from routing.config import MockSettings
from routing.mock.llm import MockLLM

EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False},
    {"type": "function", "name": "get_time", "parameters": WEATHER, "strict": False},
]
BASE = {
    "id": "chatcmpl-9",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "upstream-2025",
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        **BASE,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(prompt: int = 50, completion: int = 30) -> dict[str, Any]:
    return {
        **BASE,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    }


def events(data: bytes) -> list[dict[str, Any]]:
    """The events in SSE bytes, each checked: framing, SDK type, sequence number."""
    assert data.endswith(b"\n\n")
    parsed = []
    for block in data[:-2].split(b"\n\n"):
        head, body = block.split(b"\n")
        assert head.startswith(b"event: ") and body.startswith(b"data: ")
        payload = orjson.loads(body[6:])
        assert head[7:].decode() == payload["type"]
        EVENT.validate_python(payload)
        parsed.append(payload)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


def run(
    chunks: list[dict[str, Any]], translation: ChatTranslation | None = None
) -> tuple[list[dict], StreamTranslator]:
    translation = translation or to_chat(
        {"model": "gpt-4o", "input": "q", "stream": True, "tools": TOOLS}
    )
    translator = StreamTranslator(translation, new_response_id(), 1_700_000_000.0)
    data = translator.start() + b"".join(translator.feed(c) for c in chunks) + translator.finish()
    return events(data), translator


def types(evs: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in evs]


def text_chunks(text: str, size: int = 3) -> list[dict[str, Any]]:
    return [chunk({"role": "assistant", "content": ""})] + [
        chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)
    ]


def call_chunks(
    index: int, call_id: str, name: str, arguments: str, size: int = 4
) -> list[dict[str, Any]]:
    head = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return [chunk({"tool_calls": [head]})] + [
        chunk(
            {"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + size]}}]}
        )
        for i in range(0, len(arguments), size)
    ]


def test_text_stream_event_order() -> None:
    evs, translator = run([*text_chunks("Sunny and warm."), chunk({}, "stop"), usage_chunk()])
    assert types(evs) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert (
        "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta")
        == "Sunny and warm."
    )
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["output"] == []
    final = Response.model_validate(evs[-1]["response"])
    assert final.output_text == "Sunny and warm."
    assert final.status == "completed"
    assert final.model == "upstream-2025"
    assert final.usage is not None and final.usage.total_tokens == 80
    assert translator.response == evs[-1]["response"]


def test_item_ids_and_indices_agree() -> None:
    evs, _ = run(
        [
            *text_chunks("Hi."),
            *call_chunks(0, "call_1", "get_weather", '{"city":"Oslo"}'),
            chunk({}, "tool_calls"),
        ]
    )
    added = [e for e in evs if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
    ]
    for e in evs:
        if "item_id" in e:
            assert e["item_id"] == added[e["output_index"]]["item"]["id"]
    done = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert done == evs[-1]["response"]["output"]


def realistic_stream() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Text, then two parallel tool calls with arguments split over many chunks, the
    finish chunk and the usage chunk; and the same answer as one chat completion."""
    text = "I'll look up both cities for you. Meanwhile: pack an umbrella!"
    paris = '{"city": "Paris, France"}'
    tokyo = '{"city": "Tokyo"}'
    chunks = [
        *text_chunks(text, 5),
        *call_chunks(0, "call_paris", "get_weather", paris, 3),
        *call_chunks(1, "call_tokyo", "get_time", tokyo, 2),
        chunk({}, "tool_calls"),
        usage_chunk(120, 45),
    ]
    reply = {
        **BASE,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": text,
                    "tool_calls": [
                        {
                            "id": "call_paris",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": paris},
                        },
                        {
                            "id": "call_tokyo",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": tokyo},
                        },
                    ],
                },
            }
        ],
        "usage": usage_chunk(120, 45)["usage"],
    }
    return chunks, reply


def without_ids(response: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(response)
    for item in copied["output"]:
        item.pop("id")
    return copied


def test_replay_reassembles_to_the_non_stream_translation() -> None:
    chunks, reply = realistic_stream()
    translation = to_chat({"model": "gpt-4o", "input": "q", "stream": True, "tools": TOOLS})
    evs, translator = run(chunks, translation)
    streamed = translator.response
    assert streamed is not None
    direct = from_chat(reply, translation, streamed["id"], streamed["created_at"])
    assert without_ids(streamed) == without_ids(direct)

    # What a client rebuilds from the deltas alone equals the done events and the end.
    texts: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for e in evs:
        if e["type"] == "response.output_text.delta":
            texts[e["output_index"]] = texts.get(e["output_index"], "") + e["delta"]
        elif e["type"] == "response.function_call_arguments.delta":
            arguments[e["output_index"]] = arguments.get(e["output_index"], "") + e["delta"]
    output = streamed["output"]
    assert texts == {0: output[0]["content"][0]["text"]}
    assert arguments == {1: output[1]["arguments"], 2: output[2]["arguments"]}
    dones = {
        e["output_index"]: e for e in evs if e["type"] == "response.function_call_arguments.done"
    }
    assert {k: (d["name"], d["arguments"]) for k, d in dones.items()} == {
        1: ("get_weather", '{"city": "Paris, France"}'),
        2: ("get_time", '{"city": "Tokyo"}'),
    }
    # Each item is closed before the next one opens.
    lifecycle = [
        (e["type"], e["output_index"]) for e in evs if e["type"].startswith("response.output_item")
    ]
    assert lifecycle == [
        ("response.output_item.added", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.output_item.done", 1),
        ("response.output_item.added", 2),
        ("response.output_item.done", 2),
    ]


def test_length_ends_incomplete() -> None:
    evs, _translator = run([*text_chunks("It is sun"), chunk({}, "length"), usage_chunk()])
    assert evs[-1]["type"] == "response.incomplete"
    final = Response.model_validate(evs[-1]["response"])
    assert final.status == "incomplete"
    assert (
        final.incomplete_details is not None
        and final.incomplete_details.reason == "max_output_tokens"
    )
    assert evs[-2]["item"]["status"] == "incomplete"


def test_content_filter_ends_incomplete() -> None:
    evs, _ = run([*text_chunks("Well"), chunk({}, "content_filter")])
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_usage_in_the_finish_chunk_is_read_too() -> None:
    last = chunk({}, "stop")
    last["usage"] = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    evs, _ = run([*text_chunks("x"), last])
    assert evs[-1]["response"]["usage"]["total_tokens"] == 3


def test_no_usage_chunk_means_no_usage() -> None:
    evs, _ = run([*text_chunks("x"), chunk({}, "stop")])
    assert "usage" not in evs[-1]["response"]  # optional, never null (OpenAI's document)


def test_text_after_a_tool_call_opens_a_new_message() -> None:
    _evs, translator = run(
        [
            *call_chunks(0, "c1", "get_weather", "{}"),
            chunk({"content": "and more"}),
            chunk({}, "stop"),
        ]
    )
    assert translator.response is not None
    assert [item["type"] for item in translator.response["output"]] == ["function_call", "message"]
    assert Response.model_validate(translator.response).output_text == "and more"


def test_interleaved_tool_calls_are_refused() -> None:
    translator = StreamTranslator(
        to_chat({"model": "m", "input": "q", "stream": True, "tools": TOOLS}), "resp_1", 0.0
    )
    translator.feed(call_chunks(0, "c1", "get_weather", "{}")[0])
    translator.feed(call_chunks(1, "c2", "get_time", "{}")[0])
    with pytest.raises(BadUpstreamReply):
        translator.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))


def test_refusal_stream() -> None:
    evs, translator = run(
        [
            chunk({"role": "assistant", "refusal": "I can"}),
            chunk({"refusal": "'t."}),
            chunk({}, "stop"),
        ]
    )
    assert "response.refusal.delta" in types(evs) and "response.refusal.done" in types(evs)
    assert translator.response is not None
    assert translator.response["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I can't."}
    ]


def test_an_empty_stream_ends_with_an_empty_message() -> None:
    _, translator = run([chunk({"role": "assistant", "content": ""}), chunk({}, "stop")])
    assert translator.response is not None
    assert [item["type"] for item in translator.response["output"]] == ["message"]
    direct = from_chat(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "stop",
                }
            ],
            "model": "upstream-2025",
        },
        to_chat({"model": "gpt-4o", "input": "q", "stream": True, "tools": TOOLS}),
        translator.response["id"],
        translator.response["created_at"],
    )
    assert without_ids(translator.response) == without_ids(direct)


def test_other_choices_and_junk_are_ignored() -> None:
    other = chunk({"content": "second choice"})
    other["choices"][0]["index"] = 1
    _evs, translator = run(
        [
            chunk({"content": "first"}),
            other,
            {"choices": "junk"},
            {"choices": [7]},
            chunk({}, "stop"),
        ]
    )
    assert translator.response is not None
    assert Response.model_validate(translator.response).output_text == "first"


def test_failed_ends_with_an_error_event_and_response_failed() -> None:
    translation = to_chat({"model": "gpt-4o", "input": "q", "stream": True})
    translator = StreamTranslator(translation, "resp_1", 0.0)
    data = (
        translator.start()
        + translator.feed(chunk({"content": "Half an ans"}))
        + translator.failed("server_error", "the upstream stream broke off")
    )
    evs = events(data)
    assert types(evs)[-2:] == ["error", "response.failed"]
    error = evs[-2]
    assert (error["code"], error["message"]) == ("server_error", "the upstream stream broke off")
    assert error["error"] == {
        "type": "server_error",
        "code": "server_error",
        "message": "the upstream stream broke off",
        "param": None,
    }
    failed = Response.model_validate(evs[-1]["response"])
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "server_error"
    assert failed.output_text == "Half an ans"
    assert evs[-1]["response"]["output"][0]["status"] == "incomplete"
    assert translator.ended
    assert translator.failed("server_error", "again") == b""
    with pytest.raises(RuntimeError):
        translator.feed(chunk({"content": "late"}))
    with pytest.raises(RuntimeError):
        translator.finish()


def test_failed_before_anything_still_starts_the_stream() -> None:
    translator = StreamTranslator(
        to_chat({"model": "m", "input": "q", "stream": True}), "resp_1", 0.0
    )
    evs = events(translator.failed("rate_limit_exceeded", "slow down"))
    assert types(evs) == ["response.created", "response.in_progress", "error", "response.failed"]
    assert evs[2]["error"]["type"] == "rate_limit_error"
    assert evs[3]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_failed_with_an_unlisted_code_reports_server_error_in_the_response() -> None:
    translator = StreamTranslator(
        to_chat({"model": "m", "input": "q", "stream": True}), "resp_1", 0.0
    )
    evs = events(translator.failed("timeout", "too slow"))
    assert evs[2]["code"] == "timeout"
    assert evs[3]["response"]["error"]["code"] == "server_error"


def test_delta_events_do_not_grow_with_the_response() -> None:
    """Per-chunk work stays small: a delta event carries its delta, not the text so far."""
    translator = StreamTranslator(
        to_chat({"model": "m", "input": "q", "stream": True}), "resp_1", 0.0
    )
    translator.start()
    translator.feed(chunk({"content": "x" * 10_000}))
    sizes = [len(translator.feed(chunk({"content": "abc"}))) for _ in range(200)]
    assert max(sizes) < 250
    assert len(set(sizes)) <= 3  # only the sequence number's width changes


def test_with_the_mock_llm_stream() -> None:
    mock = MockLLM("mock-gpt", MockSettings())
    for body in (
        {"model": "gpt-4o", "input": "Tell me about streams", "stream": True},
        {"model": "gpt-4o", "input": "Weather?", "stream": True, "tools": TOOLS},
    ):
        translation = to_chat(body)
        _evs, translator = run(list(mock.chat_chunks(translation.chat)), translation)
        assert translator.response is not None
        direct = from_chat(
            mock.chat({**translation.chat, "stream": False}),
            translation,
            translator.response["id"],
            translator.response["created_at"],
        )
        assert without_ids(translator.response) == without_ids(direct)
