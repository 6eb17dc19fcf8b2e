"""The openai SDK against the translation, over real loopback HTTP.

`ResponsesApp` is the smallest server that wires the package the way the gateway
will (translate, call a chat model, translate back, store; errors in OpenAI's
envelope with each exception class's status), so the SDK's own client code, not a
copy of it, decides whether the objects and streams are right: `create`, `parse`,
`stream`, `retrieve`, `delete` and `input_items.list`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import orjson
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from responses.config import ResponsesConfig
from responses.conversation import Bounds, check_head, conversation_history
from responses.errors import NotFound, ResponsesError
from responses.ids import new_response_id
from responses.listing import input_items_page, parse_page_query
from responses.memory import MemoryResponseStore
from responses.request import to_chat
from responses.response import from_chat
from responses.store import EMPTY, Owner, StoredResponse
from responses.stream import StreamTranslator
from routing.config import MockSettings
from routing.mock.llm import MockLLM
from tests.support import ServerThread

BOUNDS = Bounds.of(ResponsesConfig())
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}
]


class Broken(Exception):
    """Put in a scripted stream: the upstream breaks off there."""


class Upstream:
    """The chat model behind the app: the project's mock LLM, unless a test scripts
    the next reply. Records every chat body it is sent."""

    def __init__(self) -> None:
        self.mock = MockLLM("mock-gpt", MockSettings())
        self.bodies: list[dict[str, Any]] = []
        self.next_reply: dict[str, Any] | None = None
        self.next_chunks: list[Any] | None = None

    def reply(self, chat: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(chat)
        reply, self.next_reply = self.next_reply, None
        return reply or self.mock.chat(chat)

    def chunks(self, chat: dict[str, Any]) -> Iterator[Any]:
        self.bodies.append(chat)
        chunks, self.next_chunks = self.next_chunks, None
        return iter(chunks) if chunks is not None else self.mock.chat_chunks(chat)


def envelope(error: ResponsesError) -> Response:
    kind = "server_error" if error.status >= 500 else "invalid_request_error"
    body = {
        "error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}
    }
    return Response(orjson.dumps(body), error.status, media_type="application/json")


class ResponsesApp:
    def __init__(self) -> None:
        self.upstream = Upstream()
        self.store = MemoryResponseStore()
        self.app = Starlette(
            routes=[
                Route("/v1/responses", self.create, methods=["POST"]),
                Route("/v1/responses/{id}", self.retrieve, methods=["GET"]),
                Route("/v1/responses/{id}", self.delete, methods=["DELETE"]),
                Route("/v1/responses/{id}/input_items", self.input_items, methods=["GET"]),
            ]
        )

    @staticmethod
    def owner(request: Request) -> Owner:
        return Owner("sdk", request.headers["authorization"])

    async def create(self, request: Request) -> Response:
        owner = self.owner(request)
        body = orjson.loads(await request.body())
        try:
            previous = body.get("previous_response_id")
            chain, history = EMPTY, None
            if previous:
                chain = await check_head(self.store, previous, owner, BOUNDS)
                history = await conversation_history(self.store, previous, owner, BOUNDS)
            translation = to_chat(body, history)
        except ResponsesError as error:
            return envelope(error)
        response_id, created_at = new_response_id(), int(time.time())
        if not translation.stream:
            response = from_chat(
                self.upstream.reply(translation.chat), translation, response_id, created_at
            )
            await self.store.put(StoredResponse(response, translation.input_items, owner, chain))
            return Response(orjson.dumps(response), media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            translator = StreamTranslator(translation, response_id, created_at)
            yield translator.start()
            try:
                for chunk in self.upstream.chunks(translation.chat):
                    if isinstance(chunk, Broken):
                        raise chunk
                    yield translator.feed(chunk)
                end = translator.finish()
            except (Broken, ResponsesError) as error:
                end = translator.failed("server_error", f"The upstream stream broke off: {error}")
            assert translator.response is not None
            # Stored before the last event goes out: a client that has seen the end
            # can retrieve or continue the response at once.
            await self.store.put(
                StoredResponse(translator.response, translation.input_items, owner, chain)
            )
            yield end

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _stored(self, request: Request) -> StoredResponse:
        record = await self.store.get(request.path_params["id"], self.owner(request))
        if record is None:
            raise NotFound(
                f"Response with id '{request.path_params['id']}' not found.", param="response_id"
            )
        return record

    async def retrieve(self, request: Request) -> Response:
        try:
            record = await self._stored(request)
        except ResponsesError as error:
            return envelope(error)
        return Response(orjson.dumps(record.response), media_type="application/json")

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["id"]
        if not await self.store.delete(response_id, self.owner(request)):
            return envelope(NotFound(f"Response with id '{response_id}' not found."))
        body = {"id": response_id, "object": "response.deleted", "deleted": True}
        return Response(orjson.dumps(body), media_type="application/json")

    async def input_items(self, request: Request) -> Response:
        try:
            record = await self._stored(request)
            page = input_items_page(record.input_items, **parse_page_query(request.query_params))
        except ResponsesError as error:
            return envelope(error)
        return Response(orjson.dumps(page), media_type="application/json")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ResponsesApp, ServerThread]]:
    app = ResponsesApp()
    with ServerThread(app.app, lifespan="off") as server:
        yield app, server


@pytest.fixture
def app(served: tuple[ResponsesApp, ServerThread]) -> ResponsesApp:
    served[0].upstream.bodies.clear()
    return served[0]


def client(served: tuple[ResponsesApp, ServerThread], key: str = "key-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1].url + "/v1", api_key=key, max_retries=0)


def text_reply(content: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion",
        "created": 1,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def text_chunks(content: str, size: int = 4) -> list[Any]:
    base = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    return [chunk({"content": content[i : i + size]}) for i in range(0, len(content), size)] + [
        chunk({}, "stop")
    ]


class Weather(BaseModel):
    city: str
    celsius: int


def test_create_text(app: ResponsesApp, served: Any) -> None:
    response = client(served).responses.create(model="mock-gpt", input="How are streams built?")
    assert response.output_text == "This is a mock reply from mock-gpt to: How are streams built?"
    assert response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert app.upstream.bodies[-1]["messages"] == [
        {"role": "user", "content": "How are streams built?"}
    ]


def test_tool_round_trip_with_previous_response_id(app: ResponsesApp, served: Any) -> None:
    sdk = client(served)
    first = sdk.responses.create(
        model="mock-gpt", instructions="Use tools.", input="Weather in Paris?", tools=TOOLS
    )
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    second = sdk.responses.create(
        model="mock-gpt",
        previous_response_id=first.id,
        tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21C, sunny"}],
    )
    assert second.output_text == "The tool returned: 21C, sunny"
    assert second.previous_response_id == first.id
    # The upstream saw the whole conversation, without the first turn's instructions.
    assert [m["role"] for m in app.upstream.bodies[-1]["messages"]] == ["user", "assistant", "tool"]


def test_parse_with_a_text_format(app: ResponsesApp, served: Any) -> None:
    app.upstream.next_reply = text_reply('{"city": "Paris", "celsius": 21}')
    parsed = client(served).responses.parse(model="mock-gpt", input="Weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", celsius=21)
    sent = app.upstream.bodies[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True


def test_stream_ends_in_the_stored_response(app: ResponsesApp, served: Any) -> None:
    sdk = client(served)
    with sdk.responses.stream(model="mock-gpt", input="Weather in Oslo?", tools=TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.parsed_arguments == orjson.loads(call.arguments)  # strict tools are parsed
    stored = sdk.responses.retrieve(final.id)
    assert stored.model_dump(exclude={"output"}) == final.model_dump(exclude={"output"})
    assert stored.output[0].model_dump() == call.model_dump(exclude={"parsed_arguments"})


def test_streamed_and_plain_answers_agree(app: ResponsesApp, served: Any) -> None:
    sdk = client(served)
    with sdk.responses.stream(model="mock-gpt", input="Say something") as stream:
        snapshots = [
            event.snapshot for event in stream if event.type == "response.output_text.delta"
        ]
        streamed = stream.get_final_response()
    plain = sdk.responses.create(model="mock-gpt", input="Say something")
    assert streamed.output_text == plain.output_text == snapshots[-1]
    assert len(snapshots) > 1
    assert streamed.usage == plain.usage


def test_stream_parse(app: ResponsesApp, served: Any) -> None:
    app.upstream.next_chunks = text_chunks('{"city": "Rome", "celsius": 25}')
    with client(served).responses.stream(
        model="mock-gpt", input="?", text_format=Weather
    ) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Weather(city="Rome", celsius=25)


def test_a_broken_stream_raises_a_typed_error(app: ResponsesApp, served: Any) -> None:
    app.upstream.next_chunks = [*text_chunks("Half of an answ")[:-1], Broken("connection reset")]
    sdk = client(served)
    seen: list[Any] = []
    with (
        pytest.raises(openai.APIError) as caught,
        sdk.responses.stream(model="mock-gpt", input="?") as stream,
    ):
        seen.extend(stream)  # keeps the events before the error
    assert "response.output_text.delta" in [event.type for event in seen]
    assert caught.value.code == "server_error"
    assert "broke off" in caught.value.message
    # what was stored is the failed response, with the text produced before the break
    stored = sdk.responses.retrieve(seen[0].response.id)
    assert stored.status == "failed"
    assert stored.error is not None and stored.error.code == "server_error"
    assert stored.output_text == "Half of an answ"


def test_a_broken_raw_stream_raises_too(app: ResponsesApp, served: Any) -> None:
    app.upstream.next_chunks = [Broken("gone")]
    events = client(served).responses.create(model="mock-gpt", input="?", stream=True)
    with pytest.raises(openai.APIError):
        for _ in events:
            pass


def test_retrieve_delete_and_owners(app: ResponsesApp, served: Any) -> None:
    mine, theirs = client(served, "key-a"), client(served, "key-b")
    response = mine.responses.create(model="mock-gpt", input="private")
    assert mine.responses.retrieve(response.id).id == response.id
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        theirs.responses.create(model="mock-gpt", input="hi", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"
    mine.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(response.id)


def test_store_false_is_not_retrievable(app: ResponsesApp, served: Any) -> None:
    sdk = client(served)
    response = sdk.responses.create(model="mock-gpt", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_input_items_pages(app: ResponsesApp, served: Any) -> None:
    sdk = client(served)
    sent = [{"role": "user", "content": f"message {k}"} for k in range(5)]
    response = sdk.responses.create(model="mock-gpt", input=sent)  # type: ignore[arg-type]
    first = sdk.responses.input_items.list(response.id, limit=2, order="asc")
    assert [item.content[0].text for item in first.data] == ["message 0", "message 1"]  # type: ignore[union-attr]
    assert first.has_more is True
    everything = list(sdk.responses.input_items.list(response.id, limit=2, order="asc"))
    assert [item.content[0].text for item in everything] == [f"message {k}" for k in range(5)]  # type: ignore[union-attr]
    newest = sdk.responses.input_items.list(response.id)
    assert newest.data[0].content[0].text == "message 4"  # type: ignore[union-attr]


def test_untranslatable_requests_are_bad_requests(app: ResponsesApp, served: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(served).responses.create(
            model="mock-gpt", input="search", tools=[{"type": "web_search"}]
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "tools[0].type"
    assert not app.upstream.bodies
