"""What tests/test_frameworks.py shares across frameworks: the expected mock answers,
the tool and output model every framework is given, and a recorder of what each
framework actually sent.

The recorder is an httpx event hook on the client a framework is handed, so the
tests can tell which endpoint a framework's default path used and what the second
turn of its agent loop carried, without a proxy or a mock of the framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, Field

#: The embedded default config's model group (two in-process mock deployments).
GROUP = "demo"
#: What the mock deployments call themselves in their answers.
MOCK_MODEL = "mock-gpt"
#: A key no provider accepts: the default gateway has no keys, and nothing may
#: reach a real provider.
API_KEY = "sk-seawall-test-not-a-key"
#: Every framework client here is given this timeout (seconds): a hung gateway
#: fails the test instead of the pytest timeout.
CLIENT_TIMEOUT = 30.0
#: Model calls one agent loop may make before the framework must stop it: a tool
#: call, its answer, and slack for a framework's own retry.
LOOP_REQUEST_LIMIT = 4

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"


def mock_reply(question: str) -> str:
    """The mock's text answer to a conversation whose last user message is `question`."""
    return f"This is a mock reply from {MOCK_MODEL} to: {question}"


def tool_summary(result: str) -> str:
    """The mock's answer once the conversation ends in one tool result."""
    return f"The tool returned: {result}"


class Forecast(BaseModel):
    """A weather forecast: the structured output every framework is asked for.

    The constraints make "any JSON object" not good enough: the answer must follow
    the schema the framework sent, through whatever the framework turned it into.
    """

    city: str = Field(min_length=1, description="The city the forecast is for")
    celsius: int = Field(ge=-60, le=60)
    conditions: Literal["sunny", "cloudy", "rain"]


class WeatherStation:
    """The tool behind every agent loop: answers from the city and remembers each call,
    so a test can tell the framework ran the tool, how often, and with what."""

    def __init__(self) -> None:
        self.cities: list[str] = []

    def report(self, city: str) -> str:
        self.cities.append(city)
        return f"21C and sunny in {city}"

    @property
    def answers(self) -> list[str]:
        return [f"21C and sunny in {city}" for city in self.cities]


@dataclass(frozen=True, slots=True)
class Sent:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class Recorder:
    """Every request sent through the clients it made, in order."""

    sent: list[Sent] = field(default_factory=list)

    def _record(self, request: httpx.Request) -> None:
        body = orjson.loads(request.content) if request.content else None
        self.sent.append(Sent(request.method, request.url.path, body))

    async def _arecord(self, request: httpx.Request) -> None:
        self._record(request)

    def client(self) -> httpx.Client:
        return httpx.Client(event_hooks={"request": [self._record]}, timeout=CLIENT_TIMEOUT)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"request": [self._arecord]}, timeout=CLIENT_TIMEOUT)

    @property
    def paths(self) -> list[str]:
        return [sent.path for sent in self.sent]

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the POSTs, in order."""
        return [sent.body for sent in self.sent if sent.method == "POST" and sent.body]


def output_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """The structured-output format a chat or Responses body asked for, in chat's
    spelling (`{type, json_schema: {...}}`), or None."""
    if "response_format" in body:
        fmt: dict[str, Any] = body["response_format"]
        return fmt
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        fmt = dict(text["format"])
        if fmt.get("type") == "json_schema":
            spec = {key: fmt.pop(key) for key in ("name", "schema", "strict") if key in fmt}
            fmt["json_schema"] = spec
        return fmt
    return None


Api = Literal["chat_completions", "responses"]
APIS: tuple[Api, ...] = ("chat_completions", "responses")
PATH_OF: dict[Api, str] = {"chat_completions": CHAT_PATH, "responses": RESPONSES_PATH}
