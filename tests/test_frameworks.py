"""The agent frameworks people use, unchanged, with a running gateway as their endpoint.

Each framework is pointed at the embedded default config (model group `demo`, two
in-process mock LLMs) over loopback and does what its users do: a plain chat, a
stream, a tool round trip through the framework's own loop (the model calls a
tool, the framework runs it and sends the result, the model answers in text, the
loop ends), structured output the way the framework recommends, and for the agent
frameworks a second turn. Where a framework speaks both the Chat Completions and the
Responses API, both paths run. (The Node clients are in tests/test_frameworks_node.py.)

A framework's tests are skipped when its package is missing (`pytest.importorskip`);
CI installs them all (the `dev` extra). Nothing here may reach the network: every
client is given the gateway's URL and a fake key, `OPENAI_BASE_URL` points at the
gateway in case a framework builds a client of its own, and each framework's
tracing and telemetry is off.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import openai
import pytest

from tests.frameworks_support import (
    API_KEY,
    APIS,
    CHAT_PATH,
    CLIENT_TIMEOUT,
    GROUP,
    LOOP_REQUEST_LIMIT,
    PATH_OF,
    RESPONSES_PATH,
    Api,
    Forecast,
    Recorder,
    WeatherStation,
    mock_reply,
    output_format,
    tool_summary,
)
from tests.support import ServerThread

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "minLength": 1}},
    "required": ["city"],
    "additionalProperties": False,
}
#: The weather tool in the Responses API's shape, for the SDK and litellm.
RESPONSES_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}
#: ...and in Chat Completions' shape.
CHAT_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
#: JSON mode without a schema in the prompt is free-form; these frameworks leave it
#: to the prompt, as their documentation says, so the tests write the schema there.
JSON_MODE_PROMPT = "Answer in JSON that follows this JSON Schema: " + json.dumps(
    Forecast.model_json_schema()
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, default_gateway: ServerThread) -> None:
    """Whatever a framework does on its own goes to the gateway or nowhere."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", default_gateway.url + "/v1")
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    # litellm fetches its price table at import unless told to use its own copy.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # smolagents carries huggingface-hub's client; autogen traces its runtime.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("AUTOGEN_DISABLE_RUNTIME_TRACING", "true")


@pytest.fixture
def base_url(default_gateway: ServerThread) -> str:
    return default_gateway.url + "/v1"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def forecast_fits(value: Any) -> Forecast:
    """A structured answer, checked against the model it was asked for."""
    assert isinstance(value, Forecast), f"expected a Forecast, got {value!r}"
    return Forecast.model_validate(value.model_dump())


def last_tool_result(body: dict[str, Any]) -> str:
    """The tool result a chat or Responses body ends with (what the loop sent back)."""
    if "messages" in body:
        last = body["messages"][-1]
        assert last["role"] == "tool", last
        content = last["content"]
        if isinstance(content, list):
            content = "".join(part["text"] for part in content)
        return str(content)
    last = body["input"][-1]
    assert last["type"] == "function_call_output", last
    return str(last["output"])


# -- the openai SDK, Responses API ---------------------------------------------------


@pytest.fixture
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)


def test_responses_create(client: openai.OpenAI) -> None:
    response = client.responses.create(model=GROUP, input="What is a gateway?")
    assert response.status == "completed"
    assert response.output_text == mock_reply("What is a gateway?")
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_responses_stream(client: openai.OpenAI) -> None:
    with client.responses.stream(model=GROUP, input="Stream a reply") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == final.output_text == mock_reply("Stream a reply")
    # the streamed response was stored as it ended
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_responses_parse(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model=GROUP, input="Weather in Oslo?", text_format=Forecast)
    forecast_fits(parsed.output_parsed)


def test_responses_stream_parse(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=GROUP, input="Weather in Oslo?", text_format=Forecast
    ) as stream:
        final = stream.get_final_response()
    forecast_fits(final.output_parsed)


def test_previous_response_id_sends_the_history(client: openai.OpenAI) -> None:
    first = client.responses.create(model=GROUP, input="My name is Ada Lovelace.")
    chained = client.responses.create(
        model=GROUP, input="What is my name?", previous_response_id=first.id
    )
    alone = client.responses.create(model=GROUP, input="What is my name?")
    assert chained.previous_response_id == first.id
    assert chained.output_text == alone.output_text == mock_reply("What is my name?")
    # The upstream was sent the first turn (question and answer) in front.
    assert chained.usage is not None and alone.usage is not None
    assert chained.usage.input_tokens > alone.usage.input_tokens + 10


@pytest.mark.parametrize("chained", [True, False], ids=["previous_response_id", "stateless"])
def test_responses_function_tool_round_trip(client: openai.OpenAI, chained: bool) -> None:
    station = WeatherStation()
    question = "Weather in Oslo?"
    first = client.responses.create(model=GROUP, input=question, tools=[RESPONSES_WEATHER_TOOL])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMETERS)
    result = {"type": "function_call_output", "call_id": call.call_id, "output": ""}
    result["output"] = station.report(arguments["city"])
    if chained:
        second = client.responses.create(
            model=GROUP,
            previous_response_id=first.id,
            input=[result],  # type: ignore[list-item]
            tools=[RESPONSES_WEATHER_TOOL],  # type: ignore[list-item]
        )
    else:
        history = [{"role": "user", "content": question}, call.model_dump(exclude_none=True)]
        second = client.responses.create(
            model=GROUP,
            input=[*history, result],  # type: ignore[list-item]
            tools=[RESPONSES_WEATHER_TOOL],  # type: ignore[list-item]
        )
    assert second.output_text == tool_summary(station.answers[0])


def test_responses_streamed_function_tool_round_trip(client: openai.OpenAI) -> None:
    station = WeatherStation()
    with client.responses.stream(
        model=GROUP,
        input="Weather in Oslo?",
        tools=[RESPONSES_WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    [call] = first.output
    assert call.type == "function_call"
    output = station.report(json.loads(call.arguments)["city"])
    with client.responses.stream(
        model=GROUP,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": output}],
        tools=[RESPONSES_WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == tool_summary(output)


def test_responses_input_items_and_delete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=GROUP,
        input=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
    )
    items = client.responses.input_items.list(response.id, order="asc")
    assert [item.content[0].text for item in items.data] == ["first", "second"]  # type: ignore[union-attr]
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


async def test_responses_async_stream(base_url: str) -> None:
    aclient = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
    async with aclient, aclient.responses.stream(model=GROUP, input="Async, please") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == mock_reply("Async, please")


# -- OpenAI Agents SDK ---------------------------------------------------------------


@dataclass
class AgentsKit:
    """An Agents SDK set up on one of its two model paths against the gateway."""

    api: Api
    #: What `Agent(model=...)` is given: the group's name on the default (Responses)
    #: path, which the SDK resolves through the default client; a chat model otherwise.
    model: Any
    recorder: Recorder


@pytest.fixture(params=APIS)
async def agents_kit(
    request: pytest.FixtureRequest, base_url: str, recorder: Recorder
) -> AsyncIterator[AgentsKit]:
    agents = pytest.importorskip("agents")
    api: Api = request.param
    aclient = openai.AsyncOpenAI(
        base_url=base_url, api_key=API_KEY, max_retries=0, http_client=recorder.async_client()
    )
    agents.set_tracing_disabled(True)
    # The default path: a model named by a string, resolved through the default client
    # and the default API (Responses); it is set for every test, the SDK keeps no other.
    agents.set_default_openai_client(aclient, use_for_tracing=False)
    model: Any = GROUP
    if api == "chat_completions":
        model = agents.OpenAIChatCompletionsModel(model=GROUP, openai_client=aclient)
    yield AgentsKit(api, model, recorder)
    await aclient.close()


def agents_weather_tool(station: WeatherStation) -> Any:
    from agents import function_tool

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    return get_weather


async def test_agents_chat(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    agent = Agent(name="helper", instructions="Be brief.", model=agents_kit.model)
    result = await Runner.run(agent, "Hello there")
    assert result.final_output == mock_reply("Hello there")
    assert agents_kit.recorder.paths == [PATH_OF[agents_kit.api]]
    assert result.context_wrapper.usage.input_tokens > 0
    assert result.context_wrapper.usage.output_tokens > 0


async def test_agents_stream(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    agent = Agent(name="helper", model=agents_kit.model)
    result = Runner.run_streamed(agent, "Stream it")
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert len(deltas) > 1
    assert "".join(deltas) == result.final_output == mock_reply("Stream it")
    [body] = agents_kit.recorder.bodies()
    assert body["stream"] is True


async def test_agents_tool_round_trip(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    station = WeatherStation()
    agent = Agent(
        name="forecaster",
        instructions="Use the tool.",
        model=agents_kit.model,
        tools=[agents_weather_tool(station)],
    )
    result = await Runner.run(agent, "Weather in Oslo?", max_turns=LOOP_REQUEST_LIMIT)
    assert len(station.cities) == 1 and station.cities[0]
    assert result.final_output == tool_summary(station.answers[0])
    _first, second = agents_kit.recorder.bodies()
    assert agents_kit.recorder.paths == [PATH_OF[agents_kit.api]] * 2
    assert last_tool_result(second) == station.answers[0]


async def test_agents_streamed_tool_round_trip(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    station = WeatherStation()
    agent = Agent(name="forecaster", model=agents_kit.model, tools=[agents_weather_tool(station)])
    result = Runner.run_streamed(agent, "Weather in Oslo?", max_turns=LOOP_REQUEST_LIMIT)
    items = [
        event.item.type
        async for event in result.stream_events()
        if event.type == "run_item_stream_event"
    ]
    assert items == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert result.final_output == tool_summary(station.answers[0])


async def test_agents_structured_output(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    agent = Agent(name="forecaster", model=agents_kit.model, output_type=Forecast)
    result = await Runner.run(agent, "Weather in Oslo?")
    forecast_fits(result.final_output)
    [body] = agents_kit.recorder.bodies()
    fmt = output_format(body)
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True


async def test_agents_tools_then_structured_output(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    station = WeatherStation()
    agent = Agent(
        name="forecaster",
        model=agents_kit.model,
        tools=[agents_weather_tool(station)],
        output_type=Forecast,
    )
    result = Runner.run_streamed(agent, "Weather in Oslo?", max_turns=LOOP_REQUEST_LIMIT)
    async for _ in result.stream_events():
        pass
    assert len(station.cities) == 1
    forecast_fits(result.final_output)


async def test_agents_handoff(agents_kit: AgentsKit) -> None:
    from agents import Agent, Runner

    specialist = Agent(name="specialist", instructions="Answer.", model=agents_kit.model)
    triage = Agent(name="triage", model=agents_kit.model, handoffs=[specialist])
    result = await Runner.run(triage, "Route me", max_turns=LOOP_REQUEST_LIMIT)
    assert result.last_agent.name == "specialist"
    # the specialist's turn ends in the handoff's tool result, which the mock quotes
    assert result.final_output == tool_summary(json.dumps({"assistant": "specialist"}))


@pytest.mark.parametrize("agents_kit", ["responses"], indirect=True)
async def test_agents_continue_with_previous_response_id(agents_kit: AgentsKit) -> None:
    """The Responses path can send only the new items and the previous response's id;
    the gateway must replay the stored call for the tool result to be accepted."""
    from agents import Agent, Runner

    station = WeatherStation()
    agent = Agent(name="forecaster", model=agents_kit.model, tools=[agents_weather_tool(station)])
    result = await Runner.run(
        agent, "Weather in Oslo?", auto_previous_response_id=True, max_turns=LOOP_REQUEST_LIMIT
    )
    assert result.final_output == tool_summary(station.answers[0])
    first, second = agents_kit.recorder.bodies()
    assert "previous_response_id" not in first
    assert second["previous_response_id"]
    assert [item["type"] for item in second["input"]] == ["function_call_output"]


# -- pydantic-ai -----------------------------------------------------------------------


@dataclass
class PydanticAIKit:
    api: Api
    #: An OpenAIChatModel or OpenAIResponsesModel on the gateway.
    model: Any
    recorder: Recorder


@pytest.fixture(params=APIS)
async def pydantic_ai_kit(
    request: pytest.FixtureRequest, base_url: str, recorder: Recorder
) -> AsyncIterator[PydanticAIKit]:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    api: Api = request.param
    aclient = openai.AsyncOpenAI(
        base_url=base_url, api_key=API_KEY, max_retries=0, http_client=recorder.async_client()
    )
    provider = OpenAIProvider(openai_client=aclient)
    kind = OpenAIChatModel if api == "chat_completions" else OpenAIResponsesModel
    yield PydanticAIKit(api, kind(GROUP, provider=provider), recorder)
    await aclient.close()


def pydantic_ai_agent(kit: PydanticAIKit, **options: Any) -> Any:
    from pydantic_ai import Agent

    # No OpenTelemetry / Logfire spans: pydantic-ai instruments only when asked to.
    return Agent(kit.model, **options)


def loop_limits() -> Any:
    from pydantic_ai import UsageLimits

    return UsageLimits(request_limit=LOOP_REQUEST_LIMIT)


async def test_pydantic_ai_chat(pydantic_ai_kit: PydanticAIKit) -> None:
    agent = pydantic_ai_agent(pydantic_ai_kit, instructions="Be brief.")
    result = await agent.run("Hello there")
    assert result.output == mock_reply("Hello there")
    assert pydantic_ai_kit.recorder.paths == [PATH_OF[pydantic_ai_kit.api]]
    assert result.usage.input_tokens > 0


async def test_pydantic_ai_stream(pydantic_ai_kit: PydanticAIKit) -> None:
    agent = pydantic_ai_agent(pydantic_ai_kit)
    async with agent.run_stream("Stream it") as result:
        deltas = [text async for text in result.stream_text(delta=True, debounce_by=None)]
    assert len(deltas) > 1
    assert "".join(deltas) == mock_reply("Stream it")
    [body] = pydantic_ai_kit.recorder.bodies()
    assert body["stream"] is True


async def test_pydantic_ai_tool_round_trip(pydantic_ai_kit: PydanticAIKit) -> None:
    station = WeatherStation()
    agent = pydantic_ai_agent(pydantic_ai_kit)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    result = await agent.run("Weather in Oslo?", usage_limits=loop_limits())
    assert len(station.cities) == 1 and station.cities[0]
    assert result.output == tool_summary(station.answers[0])
    _first, second = pydantic_ai_kit.recorder.bodies()
    assert last_tool_result(second) == station.answers[0]


async def test_pydantic_ai_streamed_tool_round_trip(pydantic_ai_kit: PydanticAIKit) -> None:
    station = WeatherStation()
    agent = pydantic_ai_agent(pydantic_ai_kit)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    async with agent.run_stream("Weather in Oslo?", usage_limits=loop_limits()) as result:
        text = "".join([t async for t in result.stream_text(delta=True, debounce_by=None)])
    assert text == tool_summary(station.answers[0])


@pytest.mark.parametrize("how", ["tool", "native", "prompted"])
async def test_pydantic_ai_structured_output(pydantic_ai_kit: PydanticAIKit, how: str) -> None:
    """`output_type`: the default (an output tool, `final_result`), the model's own
    structured output (`NativeOutput`: json_schema), and the schema in the prompt
    (`PromptedOutput`)."""
    from pydantic_ai import NativeOutput, PromptedOutput

    output_type: Any = {
        "tool": Forecast,
        "native": NativeOutput(Forecast),
        "prompted": PromptedOutput(Forecast),
    }[how]
    agent = pydantic_ai_agent(pydantic_ai_kit, output_type=output_type)
    result = await agent.run("Weather in Oslo?", usage_limits=loop_limits())
    forecast_fits(result.output)
    [body] = pydantic_ai_kit.recorder.bodies()
    fmt = output_format(body)
    if how == "tool":
        names = [tool.get("name") or tool["function"]["name"] for tool in body["tools"]]
        assert names == ["final_result"]
    elif how == "native":
        assert fmt is not None and fmt["type"] == "json_schema"
    else:
        assert fmt is None or fmt["type"] in ("json_object", "text")


async def test_pydantic_ai_output_validator_retry(pydantic_ai_kit: PydanticAIKit) -> None:
    """A refused output goes back to the model as a retry prompt, and the loop ends
    with the model's next answer."""
    from pydantic_ai import ModelRetry

    agent = pydantic_ai_agent(pydantic_ai_kit, output_type=Forecast)
    seen: list[Forecast] = []

    @agent.output_validator
    def refuse_the_first(output: Forecast) -> Forecast:
        seen.append(output)
        if len(seen) == 1:
            raise ModelRetry("Check the forecast again.")
        return output

    result = await agent.run("Weather in Oslo?", usage_limits=loop_limits())
    forecast_fits(result.output)
    assert len(seen) == 2
    _first, second = pydantic_ai_kit.recorder.bodies()
    assert "Check the forecast again." in last_tool_result(second)


async def test_pydantic_ai_streamed_structured_output(pydantic_ai_kit: PydanticAIKit) -> None:
    station = WeatherStation()
    agent = pydantic_ai_agent(pydantic_ai_kit, output_type=Forecast)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    async with agent.run_stream("Weather in Oslo?", usage_limits=loop_limits()) as result:
        outputs = [output async for output in result.stream_output(debounce_by=None)]
    assert len(station.cities) == 1
    forecast_fits(outputs[-1])


# -- instructor ------------------------------------------------------------------------


@pytest.fixture
def instructor_openai(base_url: str, recorder: Recorder) -> Iterator[openai.OpenAI]:
    pytest.importorskip("instructor")
    with openai.OpenAI(
        base_url=base_url, api_key=API_KEY, max_retries=0, http_client=recorder.client()
    ) as raw:
        yield raw


ASK_WEATHER: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]


def test_instructor_chat(instructor_openai: openai.OpenAI) -> None:
    import instructor

    client = instructor.from_openai(instructor_openai)
    completion = client.chat.completions.create(
        model=GROUP, response_model=None, messages=[{"role": "user", "content": "Hello there"}]
    )
    assert completion.choices[0].message.content == mock_reply("Hello there")


def test_instructor_stream_partial(instructor_openai: openai.OpenAI, recorder: Recorder) -> None:
    import instructor

    client = instructor.from_openai(instructor_openai)
    partials = list(
        client.chat.completions.create_partial(
            model=GROUP, response_model=Forecast, messages=ASK_WEATHER
        )
    )
    assert len(partials) > 1
    assert partials[0].city is None  # the object fills in as the arguments arrive
    final = Forecast.model_validate(partials[-1].model_dump())
    assert final.city
    [body] = recorder.bodies()
    assert body["stream"] is True


def test_instructor_stream_iterable(instructor_openai: openai.OpenAI) -> None:
    import instructor

    client = instructor.from_openai(instructor_openai)
    forecasts = list(
        client.chat.completions.create_iterable(
            model=GROUP, response_model=Forecast, messages=ASK_WEATHER, stream=True
        )
    )
    assert len(forecasts) >= 1
    for forecast in forecasts:
        forecast_fits(forecast)


def test_instructor_reask_round_trip(instructor_openai: openai.OpenAI, recorder: Recorder) -> None:
    """instructor's own loop: a response model that refuses the first answer makes it
    send the tool call back with the validation error, and ask again."""
    import instructor
    from pydantic import field_validator

    seen: list[str] = []

    class CheckedForecast(Forecast):
        @field_validator("city")
        @classmethod
        def refuse_the_first(cls, city: str) -> str:
            seen.append(city)
            if len(seen) == 1:
                raise ValueError("name the city in capitals")
            return city

    client = instructor.from_openai(instructor_openai)
    forecast = client.chat.completions.create(
        model=GROUP, response_model=CheckedForecast, messages=ASK_WEATHER, max_retries=2
    )
    assert isinstance(forecast, CheckedForecast) and len(seen) == 2
    _first, second = recorder.bodies()
    assert "name the city in capitals" in last_tool_result(second)
    assert second["tool_choice"] == {"type": "function", "function": {"name": "CheckedForecast"}}


@pytest.mark.parametrize(
    "mode_name", ["TOOLS", "TOOLS_STRICT", "JSON", "JSON_SCHEMA", "RESPONSES_TOOLS"]
)
def test_instructor_response_model(
    instructor_openai: openai.OpenAI, recorder: Recorder, mode_name: str
) -> None:
    import instructor

    mode = instructor.Mode[mode_name]
    client = instructor.from_openai(instructor_openai, mode=mode)
    if mode_name.startswith("RESPONSES"):
        forecast = client.responses.create(
            model=GROUP, response_model=Forecast, input="Weather in Oslo?", max_retries=0
        )
    else:
        forecast = client.chat.completions.create(
            model=GROUP, response_model=Forecast, messages=ASK_WEATHER, max_retries=0
        )
    forecast_fits(forecast)
    [sent] = recorder.sent
    [body] = recorder.bodies()
    expected_path = RESPONSES_PATH if mode_name.startswith("RESPONSES") else CHAT_PATH
    assert sent.path == expected_path
    fmt = output_format(body)
    if mode_name in ("JSON", "JSON_SCHEMA"):
        assert fmt is not None and fmt["type"] == {"JSON": "json_object"}.get(
            mode_name, "json_schema"
        )
    else:
        assert body["tools"] and body["tool_choice"]


async def test_instructor_async(base_url: str) -> None:
    instructor = pytest.importorskip("instructor")
    async with openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0) as raw:
        client = instructor.from_openai(raw)
        forecast = await client.chat.completions.create(
            model=GROUP, response_model=Forecast, messages=ASK_WEATHER
        )
    forecast_fits(forecast)


# -- LangChain (langchain-openai) ------------------------------------------------------


@dataclass
class LangChainKit:
    api: Api
    #: A ChatOpenAI on the gateway, on the Chat Completions or the Responses path.
    model: Any
    recorder: Recorder


@pytest.fixture(params=APIS)
def langchain_kit(
    request: pytest.FixtureRequest, base_url: str, recorder: Recorder
) -> Iterator[LangChainKit]:
    langchain_openai = pytest.importorskip("langchain_openai")
    api: Api = request.param
    http_client, http_async_client = recorder.client(), recorder.async_client()
    model = langchain_openai.ChatOpenAI(
        model=GROUP,
        base_url=base_url,
        api_key=API_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
        use_responses_api=api == "responses",
        http_client=http_client,
        http_async_client=http_async_client,
    )
    yield LangChainKit(api, model, recorder)
    http_client.close()


def test_langchain_chat(langchain_kit: LangChainKit) -> None:
    reply = langchain_kit.model.invoke("Hello there")
    assert reply.text == mock_reply("Hello there")
    assert reply.usage_metadata["input_tokens"] > 0
    assert langchain_kit.recorder.paths == [PATH_OF[langchain_kit.api]]


def test_langchain_stream(langchain_kit: LangChainKit) -> None:
    chunks = list(langchain_kit.model.stream("Stream it"))
    texts = [chunk.text for chunk in chunks if chunk.text]
    assert len(texts) > 1
    assert "".join(texts) == mock_reply("Stream it")
    [body] = langchain_kit.recorder.bodies()
    assert body["stream"] is True


async def test_langchain_async_stream(langchain_kit: LangChainKit) -> None:
    texts = [chunk.text async for chunk in langchain_kit.model.astream("Async, please")]
    assert "".join(texts) == mock_reply("Async, please")


@pytest.mark.parametrize("streamed", [False, True], ids=["invoke", "stream"])
def test_langchain_tool_round_trip(langchain_kit: LangChainKit, streamed: bool) -> None:
    """LangChain's tool calling: `bind_tools`, the tool run by LangChain from the
    model's tool call (`tool.invoke(tool_call)` gives the ToolMessage), until the
    model answers in text."""
    from langchain_core.messages import BaseMessage, HumanMessage
    from langchain_core.tools import tool

    station = WeatherStation()

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    model = langchain_kit.model.bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage("Weather in Oslo?")]
    for _ in range(LOOP_REQUEST_LIMIT):
        if streamed:
            reply: Any = None
            for chunk in model.stream(messages):
                reply = chunk if reply is None else reply + chunk
        else:
            reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        messages.extend(get_weather.invoke(call) for call in reply.tool_calls)
    assert len(station.cities) == 1 and station.cities[0]
    assert reply.text == tool_summary(station.answers[0])
    assert len(langchain_kit.recorder.bodies()) == 2


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_langchain_structured_output(langchain_kit: LangChainKit, method: str) -> None:
    structured = langchain_kit.model.with_structured_output(Forecast, method=method)
    prompt: Any = "Weather in Oslo?"
    if method == "json_mode":
        prompt = [("system", JSON_MODE_PROMPT), ("user", "Weather in Oslo?")]
    forecast_fits(structured.invoke(prompt))
    [body] = langchain_kit.recorder.bodies()
    fmt = output_format(body)
    if method == "function_calling":
        assert body["tools"] and body["tool_choice"]
    else:
        expected = "json_schema" if method == "json_schema" else "json_object"
        assert fmt is not None and fmt["type"] == expected


# -- litellm as a client ---------------------------------------------------------------


@pytest.fixture
def litellm_options(base_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What every litellm call here is given: the gateway as an OpenAI-compatible base."""
    litellm = pytest.importorskip("litellm")
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    return {"model": f"openai/{GROUP}", "api_base": base_url, "api_key": API_KEY}


def test_litellm_chat(litellm_options: dict[str, Any]) -> None:
    import litellm

    response = litellm.completion(
        messages=[{"role": "user", "content": "Hello there"}], **litellm_options
    )
    assert response.choices[0].message.content == mock_reply("Hello there")
    assert response.usage.prompt_tokens > 0


def test_litellm_stream(litellm_options: dict[str, Any]) -> None:
    import litellm

    chunks = list(
        litellm.completion(
            messages=[{"role": "user", "content": "Stream it"}],
            stream=True,
            stream_options={"include_usage": True},
            **litellm_options,
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1
    assert "".join(texts) == mock_reply("Stream it")
    rebuilt = litellm.stream_chunk_builder(chunks)
    assert rebuilt is not None and rebuilt.usage.completion_tokens > 0


@pytest.mark.parametrize("streamed", [False, True], ids=["completion", "stream"])
def test_litellm_tool_round_trip(litellm_options: dict[str, Any], streamed: bool) -> None:
    """litellm has no agent loop of its own: this is the loop its docs show, with
    litellm's message objects sent back as they came."""
    import litellm

    station = WeatherStation()
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    for _ in range(LOOP_REQUEST_LIMIT):
        options = {"messages": messages, "tools": [CHAT_WEATHER_TOOL], **litellm_options}
        if streamed:
            response = litellm.stream_chunk_builder(
                list(litellm.completion(stream=True, **options)), messages=messages
            )
            assert response is not None
        else:
            response = litellm.completion(**options)
        message = response.choices[0].message
        messages.append(message)
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            city = json.loads(call.function.arguments)["city"]
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": station.report(city)}
            )
    assert len(station.cities) == 1
    assert message.content == tool_summary(station.answers[0])


def test_litellm_structured_output(litellm_options: dict[str, Any]) -> None:
    import litellm

    response = litellm.completion(messages=ASK_WEATHER, response_format=Forecast, **litellm_options)
    forecast_fits(Forecast.model_validate_json(response.choices[0].message.content))


async def test_litellm_async_chat_and_stream(litellm_options: dict[str, Any]) -> None:
    import litellm

    response = await litellm.acompletion(
        messages=[{"role": "user", "content": "Async, please"}], **litellm_options
    )
    assert response.choices[0].message.content == mock_reply("Async, please")
    stream = await litellm.acompletion(
        messages=[{"role": "user", "content": "Async stream"}], stream=True, **litellm_options
    )
    texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(texts) == mock_reply("Async stream")


def test_litellm_responses(litellm_options: dict[str, Any]) -> None:
    import litellm

    response = litellm.responses(input="Hello there", **litellm_options)
    [message] = response.output
    assert message.content[0].text == mock_reply("Hello there")


# -- smolagents ------------------------------------------------------------------------
#
# smolagents' ToolCallingAgent offers its tools with `tool_choice: "required"` and ends a
# run only when the model calls its `final_answer` tool; it writes each call into the
# history as assistant text ("Calling tools: [...]") and sends the result back as a user
# message ("Observation: ..."), not as a `tool` message.


def smolagents_task(question: str) -> str:
    """The user message a smolagents run opens with, as the mock quotes it."""
    return f"New task: {question}"


@pytest.fixture
def smolagents_model(base_url: str, recorder: Recorder) -> Any:
    smolagents = pytest.importorskip("smolagents")
    return smolagents.OpenAIServerModel(
        model_id=GROUP,
        api_base=base_url,
        api_key=API_KEY,
        client_kwargs={"max_retries": 0, "http_client": recorder.client()},
    )


def smolagents_agent(model: Any, tools: list[Any], **options: Any) -> Any:
    from smolagents import LogLevel, ToolCallingAgent

    return ToolCallingAgent(
        tools=tools,
        model=model,
        max_steps=LOOP_REQUEST_LIMIT,
        verbosity_level=LogLevel.OFF,
        **options,
    )


def smolagents_weather_tool(station: WeatherStation) -> Any:
    from smolagents import tool

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city.

        Args:
            city: The city to look up.
        """
        return station.report(city)

    return get_weather


def test_smolagents_chat(smolagents_model: Any, recorder: Recorder) -> None:
    """Without tools of its own the agent still answers through `final_answer`."""
    agent = smolagents_agent(smolagents_model, [])
    assert agent.run("Hello there") == mock_reply(smolagents_task("Hello there"))
    [body] = recorder.bodies()
    assert body["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in body["tools"]] == ["final_answer"]


def test_smolagents_stream(smolagents_model: Any, recorder: Recorder) -> None:
    from smolagents import ChatMessageStreamDelta, FinalAnswerStep

    agent = smolagents_agent(smolagents_model, [], stream_outputs=True)
    events = list(agent.run("Stream it", stream=True))
    deltas = [event for event in events if isinstance(event, ChatMessageStreamDelta)]
    assert len(deltas) > 1
    assert isinstance(events[-1], FinalAnswerStep)
    assert events[-1].output == mock_reply(smolagents_task("Stream it"))
    [body] = recorder.bodies()
    assert body["stream"] is True


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "stream"])
def test_smolagents_tool_loop(smolagents_model: Any, recorder: Recorder, streamed: bool) -> None:
    """The tool's result comes back as a user message; the next step calls
    `final_answer` with what the tool said, and the run ends there."""
    station = WeatherStation()
    agent = smolagents_agent(
        smolagents_model, [smolagents_weather_tool(station)], stream_outputs=streamed
    )
    if streamed:
        *_, final = agent.run("Weather in Oslo?", stream=True)
        output = final.output
    else:
        output = agent.run("Weather in Oslo?")
    assert len(station.cities) == 1 and station.cities[0]
    assert output == tool_summary(station.answers[0])
    first, second = recorder.bodies()
    assert first["tool_choice"] == second["tool_choice"] == "required"
    result = second["messages"][-1]
    assert result["role"] == "user"
    assert station.answers[0] in result["content"][0]["text"]


def test_smolagents_structured_output(smolagents_model: Any, recorder: Recorder) -> None:
    """smolagents' models take OpenAI's `response_format` as it is."""
    from smolagents import ChatMessage, MessageRole

    reply = smolagents_model.generate(
        [
            ChatMessage(
                role=MessageRole.USER, content=[{"type": "text", "text": "Weather in Oslo?"}]
            )
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "Forecast",
                "schema": Forecast.model_json_schema(),
                "strict": False,
            },
        },
    )
    forecast_fits(Forecast.model_validate_json(reply.content))
    [body] = recorder.bodies()
    fmt = output_format(body)
    assert fmt is not None and fmt["type"] == "json_schema"


def test_smolagents_second_turn(smolagents_model: Any, recorder: Recorder) -> None:
    """`reset=False` keeps the first run's memory: smolagents sends the new task in the
    same user message as the final answer's observation, and the second run is a
    loop of its own (the tool again, then `final_answer`)."""
    station = WeatherStation()
    agent = smolagents_agent(smolagents_model, [smolagents_weather_tool(station)])
    first = agent.run("Weather in Oslo?")
    second = agent.run("And in Bergen?", reset=False)
    assert first == tool_summary(station.answers[0])
    assert second == tool_summary(station.answers[1])
    bodies = recorder.bodies()
    assert len(bodies) == 4
    opening = bodies[2]["messages"]
    assert len(opening) > len(bodies[1]["messages"])
    assert "And in Bergen?" in opening[-1]["content"][0]["text"]


# -- autogen (autogen-agentchat + autogen-ext's OpenAI client) -------------------------


@pytest.fixture
def autogen_client(base_url: str, recorder: Recorder) -> Any:
    pytest.importorskip("autogen_agentchat")
    models = pytest.importorskip("autogen_ext.models.openai")
    from autogen_core.models import ModelFamily, ModelInfo

    return models.OpenAIChatCompletionClient(
        model=GROUP,
        base_url=base_url,
        api_key=API_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
        http_client=recorder.async_client(),
        # A model autogen does not know needs its capabilities stated.
        model_info=ModelInfo(
            vision=False,
            function_calling=True,
            json_output=True,
            structured_output=True,
            family=ModelFamily.UNKNOWN,
        ),
    )


def autogen_agent(client: Any, **options: Any) -> Any:
    from autogen_agentchat.agents import AssistantAgent

    return AssistantAgent("assistant", model_client=client, **options)


@pytest.mark.filterwarnings("ignore:Resolved model mismatch:UserWarning")
async def test_autogen_chat(autogen_client: Any, recorder: Recorder) -> None:
    result = await autogen_agent(autogen_client).run(task="Hello there")
    reply = result.messages[-1]
    assert reply.content == mock_reply("Hello there")
    assert reply.models_usage.prompt_tokens > 0
    assert recorder.paths == [CHAT_PATH]


@pytest.mark.filterwarnings("ignore:Resolved model mismatch:UserWarning")
async def test_autogen_stream(autogen_client: Any, recorder: Recorder) -> None:
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.messages import ModelClientStreamingChunkEvent

    agent = autogen_agent(autogen_client, model_client_stream=True)
    events = [event async for event in agent.run_stream(task="Stream it")]
    chunks = [e.content for e in events if isinstance(e, ModelClientStreamingChunkEvent)]
    assert len(chunks) > 1
    assert "".join(chunks) == mock_reply("Stream it")
    assert isinstance(events[-1], TaskResult)
    assert events[-1].messages[-1].content == mock_reply("Stream it")
    [body] = recorder.bodies()
    assert body["stream"] is True


@pytest.mark.filterwarnings("ignore:Resolved model mismatch:UserWarning")
async def test_autogen_tool_loop(autogen_client: Any, recorder: Recorder) -> None:
    """The agent's own loop (`max_tool_iterations`): it runs the call, sends the result,
    and stops when the model answers in text."""
    from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent

    station = WeatherStation()

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    agent = autogen_agent(
        autogen_client, tools=[get_weather], max_tool_iterations=LOOP_REQUEST_LIMIT
    )
    result = await agent.run(task="Weather in Oslo?")
    assert len(station.cities) == 1 and station.cities[0]
    kinds = [type(message) for message in result.messages]
    assert ToolCallExecutionEvent in kinds
    assert isinstance(result.messages[-1], TextMessage)
    assert result.messages[-1].content == tool_summary(station.answers[0])
    _first, second = recorder.bodies()
    assert last_tool_result(second) == station.answers[0]


@pytest.mark.filterwarnings("ignore:Resolved model mismatch:UserWarning")
# autogen's own model_dump of a parsed completion; not the gateway's.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_autogen_structured_output(autogen_client: Any, recorder: Recorder) -> None:
    from autogen_agentchat.messages import StructuredMessage

    agent = autogen_agent(autogen_client, output_content_type=Forecast)
    result = await agent.run(task="Weather in Oslo?")
    reply = result.messages[-1]
    assert isinstance(reply, StructuredMessage)
    forecast_fits(reply.content)
    [body] = recorder.bodies()
    fmt = output_format(body)
    assert fmt is not None and fmt["type"] == "json_schema"


@pytest.mark.filterwarnings("ignore:Resolved model mismatch:UserWarning")
async def test_autogen_second_turn(autogen_client: Any, recorder: Recorder) -> None:
    """An agent keeps its conversation: the second task is sent after the first."""
    agent = autogen_agent(autogen_client)
    await agent.run(task="My name is Ada Lovelace.")
    result = await agent.run(task="What is my name?")
    assert result.messages[-1].content == mock_reply("What is my name?")
    _first, second = recorder.bodies()
    roles = [message["role"] for message in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == mock_reply("My name is Ada Lovelace.")


# -- llama-index (llama-index-core + llama-index-llms-openai-like) ----------------------


@pytest.fixture
def llama_index_llm(base_url: str, recorder: Recorder) -> Iterator[Any]:
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    # OpenAILike, not llama-index's OpenAI class: that one refuses model names it does
    # not know (`demo`) when it sizes the context window.
    http_client, http_async_client = recorder.client(), recorder.async_client()
    yield openai_like.OpenAILike(
        model=GROUP,
        api_base=base_url,
        api_key=API_KEY,
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=16_384,
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
        http_client=http_client,
        async_http_client=http_async_client,
    )
    http_client.close()


def llama_index_weather_tool(station: WeatherStation) -> Any:
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return station.report(city)

    return get_weather


async def test_llama_index_chat(llama_index_llm: Any, recorder: Recorder) -> None:
    from llama_index.core.agent.workflow import FunctionAgent

    agent = FunctionAgent(llm=llama_index_llm, system_prompt="Be brief.")
    response = await agent.run("Hello there")
    assert str(response) == mock_reply("Hello there")
    assert recorder.paths == [CHAT_PATH]


async def test_llama_index_stream(llama_index_llm: Any, recorder: Recorder) -> None:
    from llama_index.core.agent.workflow import AgentStream, FunctionAgent

    agent = FunctionAgent(llm=llama_index_llm)
    handler = agent.run("Stream it")
    deltas = [
        event.delta async for event in handler.stream_events() if isinstance(event, AgentStream)
    ]
    response = await handler
    assert len([delta for delta in deltas if delta]) > 1
    assert "".join(deltas) == str(response) == mock_reply("Stream it")
    [body] = recorder.bodies()
    assert body["stream"] is True


async def test_llama_index_tool_loop(llama_index_llm: Any, recorder: Recorder) -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult

    station = WeatherStation()
    agent = FunctionAgent(llm=llama_index_llm, tools=[llama_index_weather_tool(station)])
    handler = agent.run("Weather in Oslo?", max_iterations=LOOP_REQUEST_LIMIT)
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    response = await handler
    assert len(station.cities) == 1 and station.cities[0]
    assert [result.tool_name for result in results] == ["get_weather"]
    assert str(response) == tool_summary(station.answers[0])
    _first, second = recorder.bodies()
    assert last_tool_result(second) == station.answers[0]


async def test_llama_index_handoff(llama_index_llm: Any, recorder: Recorder) -> None:
    """AgentWorkflow's handoff tool takes the next agent's name as a free string; the
    names are listed in the tool's description, and the handoff must name one."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent

    station = WeatherStation()
    triage = FunctionAgent(
        name="triage",
        description="Routes each request to the agent that can answer it.",
        llm=llama_index_llm,
        can_handoff_to=["forecaster"],
    )
    forecaster = FunctionAgent(
        name="forecaster",
        description="Knows the weather.",
        llm=llama_index_llm,
        tools=[llama_index_weather_tool(station)],
    )
    workflow = AgentWorkflow(agents=[triage, forecaster], root_agent="triage")
    response = await workflow.run(user_msg="Weather in Oslo?", max_iterations=LOOP_REQUEST_LIMIT)
    assert response.current_agent_name == "forecaster"
    _handoff, answer = recorder.bodies()
    [call] = answer["messages"][-2]["tool_calls"]
    assert call["function"]["name"] == "handoff"
    assert json.loads(call["function"]["arguments"])["to_agent"] == "forecaster"
    assert "forecaster is now handling the request" in last_tool_result(answer)
    assert str(response) == tool_summary(last_tool_result(answer))


async def test_llama_index_structured_output(llama_index_llm: Any, recorder: Recorder) -> None:
    """`structured_predict` (on a function-calling model: the output class as the one
    tool, its call required), and an agent's `output_cls`, which asks the same way once
    the agent has answered."""
    from llama_index.core import PromptTemplate
    from llama_index.core.agent.workflow import FunctionAgent

    forecast = await llama_index_llm.astructured_predict(
        Forecast, PromptTemplate("Weather in {city}?"), city="Oslo"
    )
    forecast_fits(forecast)
    agent = FunctionAgent(llm=llama_index_llm, output_cls=Forecast)
    response = await agent.run("Weather in Oslo?")
    forecast_fits(response.get_pydantic_model(Forecast))
    predicted, _answer, structured = recorder.bodies()
    for body in (predicted, structured):
        assert body["tool_choice"] == "required"
        assert [tool["function"]["name"] for tool in body["tools"]] == ["Forecast"]


async def test_llama_index_second_turn(llama_index_llm: Any, recorder: Recorder) -> None:
    """A Memory carries the conversation from one run of the agent to the next. (A
    reused `Context`, the other way its docs show, drops the memory between runs in
    this version: it cannot serialise it, and warns so.)"""
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.memory import Memory

    agent = FunctionAgent(llm=llama_index_llm)
    memory = Memory.from_defaults(session_id="second-turn", token_limit=8_000)
    await agent.run("My name is Ada Lovelace.", memory=memory)
    response = await agent.run("What is my name?", memory=memory)
    assert str(response) == mock_reply("What is my name?")
    _first, second = recorder.bodies()
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
