"""The Node clients people use, unchanged, with a running gateway as their endpoint:
the official openai SDK, and the Vercel AI SDK (`ai` + `@ai-sdk/openai`) on both of its
OpenAI providers, `openai(model)` (the Responses API, its default) and
`openai.chat(model)` (Chat Completions).

Each client runs its checks (chat, stream, a tool loop to its end, structured output, a
second turn) in one `node tests/node/clients.mjs <client>` process against the embedded
default config on loopback, the gateway's URL in `SEAWALL_BASE_URL`: node's start-up
(half a second) is paid once per client, not per check. The script reports what each
check returned and sent, as JSON; the expectations are here, one function per check,
and a test fails naming every check that did not meet them.

The packages are pinned in tests/node/package.json and its lock file and installed by
`make deps` (tests/node_packages.py): a missing `node` or `node_modules` fails these
tests, it does not skip them. The clients are given the gateway's URL and a key no
provider accepts, and neither SDK sends telemetry unless asked to.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from tests.frameworks_support import (
    API_KEY,
    CHAT_PATH,
    GROUP,
    RESPONSES_PATH,
    Forecast,
    mock_reply,
    output_format,
    tool_summary,
)
from tests.node_packages import NODE_DIR, node_binary, packages_installed
from tests.support import ServerThread

#: One client's checks may take this long (seconds) before the test fails: node starts
#: in half a second, and each check makes at most six requests to a local mock.
RUN_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Seen:
    """What one check returned (`values`) and sent (path and JSON body per request)."""

    values: dict[str, Any]
    sent: list[dict[str, Any]]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def paths(self) -> list[str]:
        return [request["path"] for request in self.sent]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.sent]


Expectation = Callable[[Seen], None]


@pytest.fixture(scope="module")
def node() -> str:
    binary = node_binary()
    if binary is None:
        pytest.fail("node is not installed (`make deps` installs it)")
    if not packages_installed():
        pytest.fail(f"the Node packages are not installed in {NODE_DIR} (`make deps`)")
    return binary


@pytest.fixture
def run_client(node: str, default_gateway: ServerThread) -> Callable[[str], dict[str, Any]]:
    """Runs every check of a client in one node process; the reports by check name."""

    def run(client: str) -> dict[str, Any]:
        url = default_gateway.url + "/v1"
        env = {
            **os.environ,
            "SEAWALL_BASE_URL": url,
            "SEAWALL_MODEL": GROUP,
            "SEAWALL_API_KEY": API_KEY,
            # Whatever builds a client of its own still reaches only the gateway.
            "OPENAI_BASE_URL": url,
            "OPENAI_API_KEY": API_KEY,
        }
        done = subprocess.run(
            [node, "clients.mjs", client],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert done.returncode == 0, f"node exited with {done.returncode}:\n{done.stderr}"
        reports: dict[str, Any] = json.loads(done.stdout)
        return reports

    return run


def meet(reports: dict[str, Any], expectations: dict[str, Expectation]) -> None:
    """Each check's report against its expectation; fails naming every check that
    failed in the client (with the HTTP status and what it sent) or missed here."""
    assert set(reports) == set(expectations), "the script's checks are not the test's"
    failures = []
    for check, expect in expectations.items():
        report = dict(reports[check])
        sent = report.pop("sent")
        if "error" in report:
            failures.append(
                f"{check}: the client failed (HTTP status {report['status']}): "
                f"{report['error'].splitlines()[0]}\n    sent: {json.dumps(sent)[:1500]}"
            )
            continue
        try:
            expect(Seen(report, sent))
        except (AssertionError, KeyError, IndexError, ValueError) as failed:
            failures.append(f"{check}: {type(failed).__name__}: {failed}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def forecast_fits(value: Any) -> None:
    """A structured answer as the SDK parsed it: an object the Forecast model accepts."""
    jsonschema.validate(value, Forecast.model_json_schema())
    Forecast.model_validate(value)


# -- the official openai SDK ---------------------------------------------------------


def openai_chat(seen: Seen) -> None:
    assert seen["chat_text"] == seen["responses_text"] == mock_reply("Hello there")
    assert seen["chat_usage"]["prompt_tokens"] > 0
    assert seen["responses_status"] == "completed"
    assert seen.paths == [CHAT_PATH, RESPONSES_PATH]


def openai_stream(seen: Seen) -> None:
    assert len(seen["chat_deltas"]) > 1
    assert "".join(seen["chat_deltas"]) == mock_reply("Stream it")
    assert seen["chat_usage"]["completion_tokens"] > 0
    kinds = seen["responses_event_types"]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert len(seen["responses_deltas"]) > 1
    assert "".join(seen["responses_deltas"]) == seen["responses_text"] == mock_reply("Stream it")
    assert all(body["stream"] is True for body in seen.bodies)


def openai_tool_loop(seen: Seen) -> None:
    """`runTools`: the SDK's loop runs the call, sends the result, and ends on text."""
    [answer] = seen["answers"]
    assert seen["cities"][0]
    assert seen["text"] == tool_summary(answer)
    assert seen.paths == [CHAT_PATH, CHAT_PATH]
    result = seen.bodies[1]["messages"][-1]
    assert result["role"] == "tool" and result["content"] == answer


def openai_structured(seen: Seen) -> None:
    """`chat.completions.parse` with `zodResponseFormat`, `responses.parse` with
    `zodTextFormat`: each parsed by the SDK against the zod schema."""
    forecast_fits(seen["chat_parsed"])
    forecast_fits(seen["responses_parsed"])
    for body in seen.bodies:
        fmt = output_format(body)
        assert fmt is not None and fmt["type"] == "json_schema"


def openai_second_turn(seen: Seen) -> None:
    """Chat sends the history back; Responses chains to the stored first turn."""
    assert seen["chat_text"] == seen["responses_text"] == mock_reply("What is my name?")
    first_tokens, second_tokens = seen["chat_prompt_tokens"]
    assert second_tokens > first_tokens + 10  # the first turn went back with it
    assert [m["role"] for m in seen.bodies[1]["messages"]] == ["user", "assistant", "user"]
    assert seen["responses_previous"] == seen["responses_opening"]


def openai_custom_tool(seen: Seen) -> None:
    """A custom (free-text) tool on Chat Completions: the call, then its result in a
    history that carries the custom call back."""
    call = seen["call"]
    assert seen["finish_reason"] == "tool_calls"
    assert call["type"] == "custom" and call["custom"]["name"] == "shell"
    assert call["custom"]["input"] == "List the files"
    assert seen["text"] == tool_summary("README.md")
    assert seen.bodies[1]["messages"][1]["tool_calls"][0]["type"] == "custom"


def test_openai_node_sdk(run_client: Callable[[str], dict[str, Any]]) -> None:
    meet(
        run_client("openai"),
        {
            "chat": openai_chat,
            "stream": openai_stream,
            "tool_loop": openai_tool_loop,
            "structured": openai_structured,
            "second_turn": openai_second_turn,
            "custom_tool": openai_custom_tool,
        },
    )


# -- the Vercel AI SDK ---------------------------------------------------------------


def ai_sdk_expectations(path: str) -> dict[str, Expectation]:
    """The AI SDK's checks, for the provider whose requests go to `path`."""

    def chat(seen: Seen) -> None:
        assert seen["text"] == mock_reply("Hello there")
        assert seen["finish_reason"] == "stop"
        assert seen["usage"]["inputTokens"] > 0 and seen["usage"]["outputTokens"] > 0
        assert seen.paths == [path]

    def stream(seen: Seen) -> None:
        assert len(seen["deltas"]) > 1
        assert "".join(seen["deltas"]) == seen["text"] == mock_reply("Stream it")
        assert seen["usage"]["outputTokens"] > 0
        [body] = seen.bodies
        assert body["stream"] is True

    def tool_loop(seen: Seen) -> None:
        """`generateText` with tools and `stopWhen`: a step with the call, a step with
        the answer, and the loop stops because the model answered in text."""
        [answer] = seen["answers"]
        assert seen["steps"] == ["tool-calls", "stop"]
        assert seen["text"] == tool_summary(answer)
        assert seen.paths == [path, path]

    def structured(seen: Seen) -> None:
        """`generateText` with `output: Output.object({schema})`, the SDK's way now."""
        forecast_fits(seen["output"])
        [body] = seen.bodies
        fmt = output_format(body)
        assert fmt is not None and fmt["type"] == "json_schema"

    def second_turn(seen: Seen) -> None:
        """A chat app's second user turn: the first turn's messages go back as the SDK
        keeps them. On the Responses provider that means `item_reference` items naming
        the stored output, which the gateway must resolve."""
        first, second = seen["answers"]
        assert seen["texts"] == [tool_summary(first), tool_summary(second)]
        assert seen["steps"] == [2, 2]
        opening = seen.bodies[2]
        if path == RESPONSES_PATH:
            assert "item_reference" in [item.get("type") for item in opening["input"]]
        else:
            roles = [message["role"] for message in opening["messages"]]
            assert roles == ["user", "assistant", "tool", "assistant", "user"]

    return {
        "chat": chat,
        "stream": stream,
        "tool_loop": tool_loop,
        "structured": structured,
        "second_turn": second_turn,
    }


@pytest.mark.parametrize(
    ("client", "path"),
    [("ai-responses", RESPONSES_PATH), ("ai-chat", CHAT_PATH)],
    ids=["openai(model)", "openai.chat(model)"],
)
def test_vercel_ai_sdk(run_client: Callable[[str], dict[str, Any]], client: str, path: str) -> None:
    meet(run_client(client), ai_sdk_expectations(path))
